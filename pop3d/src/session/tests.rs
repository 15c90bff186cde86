//! Session tests: conversations fed as bytes (whole, split at every position, byte by byte)
//! through the line framing and a fake driver that answers authd, the maildrop and TLS like
//! `io.rs` does, so the replies must come out the same every way.

use super::*;
use crate::conn::{Input, Lines};

fn cfg() -> SessionConfig {
    SessionConfig {
        hostname: "mail.example.test".into(),
        max_commands_before_auth: 10,
        max_errors: 5,
        tls_available: true,
    }
}

const MESSAGES: [&[u8]; 2] = [
    b"Subject: one\n\nfirst\n",
    b"Subject: two\n\n.dot\nsecond\n",
];

/// What the fake driver saw besides the bytes it wrote.
#[derive(Debug, Default, Clone, PartialEq)]
struct Effects {
    tls_started: bool,
    verified: Vec<(String, String)>,
    committed: Option<Update>,
    closed: bool,
    listings: usize,
}

fn infos() -> Vec<MessageInfo> {
    MESSAGES
        .iter()
        .enumerate()
        .map(|(i, m)| MessageInfo {
            size: crate::reply::wire_size(m),
            uidl: format!("uid{i}"),
        })
        .collect()
}

/// Runs the driver's part of one step, like io.rs.
fn drive(s: &mut Session, lines: &mut Lines, step: Step, out: &mut Vec<u8>, fx: &mut Effects) {
    let mut step = step;
    loop {
        step = match step {
            Step::Reply(r) => return r.write_to(out),
            Step::Close(r) => {
                fx.closed = true;
                return r.write_to(out);
            }
            Step::StartTls(r) => {
                r.write_to(out);
                lines.discard();
                fx.tls_started = true;
                return s.tls_started();
            }
            Step::Verify {
                username, password, ..
            } => {
                fx.verified.push((username.clone(), password.clone()));
                s.auth_result(if password == "pw" {
                    VerifyOutcome::Ok { user: username }
                } else {
                    VerifyOutcome::Fail { delay_ms: 0 }
                })
            }
            Step::Open { user } if user == "busy@example.test" => {
                s.opened(&user, Err(OpenError::InUse))
            }
            Step::Open { user } => s.opened(&user, Ok(())),
            Step::List => {
                fx.listings += 1;
                s.listed(Ok(infos()))
            }
            Step::Send { index, lines: n } => {
                s.send_header(index, n).write_to(out);
                return crate::reply::write_message(MESSAGES[index], n, out);
            }
            Step::Commit(update) => {
                fx.committed = Some(update);
                Step::Close(s.committed(Ok(())))
            }
        };
    }
}

/// Feeds `chunks` to a fresh session; returns what it wrote and did.
fn converse(chunks: &[&[u8]], tls: bool) -> (String, Effects) {
    let mut s = Session::new(cfg(), tls, true);
    let mut lines = Lines::new(255);
    let mut out = Vec::new();
    let mut fx = Effects::default();
    s.greeting().write_to(&mut out);
    for chunk in chunks {
        lines.push(chunk);
        while let Some(input) = lines.next_line() {
            if fx.closed {
                break;
            }
            let step = match input {
                Input::Complete(l) => s.command(&l),
                Input::TooLong => s.line_too_long(),
            };
            drive(&mut s, &mut lines, step, &mut out, &mut fx);
        }
    }
    (String::from_utf8(out).unwrap(), fx)
}

/// The same conversation whole, split at every position and byte by byte.
fn converse_every_way(input: &[u8], tls: bool) -> (String, Effects) {
    let whole = converse(&[input], tls);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(converse(&[a, b], tls), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(converse(&bytes, tls), whole, "byte by byte");
    whole
}

#[test]
fn a_whole_session_over_implicit_tls() {
    let input = b"CAPA\r\nUSER alice@example.test\r\nPASS pw\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 2\r\nTOP 1 0\r\nDELE 1\r\nLIST 1\r\nDELE 1\r\nSTAT\r\nQUIT\r\n";
    let (out, fx) = converse_every_way(input, true);
    let expected = "+OK mail.example.test POP3 Postern ready\r\n\
        +OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nUTF8 USER\r\nEXPIRE NEVER\r\nIMPLEMENTATION Postern\r\n.\r\n\
        +OK send PASS\r\n\
        +OK logged in\r\n\
        +OK 2 53\r\n\
        +OK scan listing follows\r\n1 23\r\n2 30\r\n.\r\n\
        +OK 2 uid1\r\n\
        +OK 30 octets\r\nSubject: two\r\n\r\n..dot\r\nsecond\r\n.\r\n\
        +OK\r\nSubject: one\r\n\r\n.\r\n\
        +OK message deleted\r\n\
        -ERR no such message\r\n\
        -ERR message already deleted\r\n\
        +OK 1 30\r\n\
        +OK Postern POP3 server signing off\r\n";
    assert_eq!(out, expected);
    assert_eq!(
        fx.committed,
        Some(Update {
            delete: vec![0],
            seen: vec![1]
        })
    );
    assert!(fx.closed);
}

#[test]
fn credentials_only_after_stls_and_pipelined_bytes_are_dropped() {
    // The USER/PASS pipelined behind STLS must be discarded, not run after the handshake.
    // Split anywhere before the end of the STLS line, the rest arrives with it: whatever
    // arrives later came after the handshake, inside TLS in real life.
    let input = b"CAPA\r\nUSER alice@example.test\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nSTLS\r\nUSER alice@example.test\r\nPASS pw\r\n";
    let stls_end = input.windows(6).position(|w| w == b"STLS\r\n").unwrap() + 6;
    let (out, fx) = converse(&[input], false);
    for at in 0..stls_end {
        let (a, b) = input.split_at(at);
        assert_eq!(
            converse(&[a, b], false),
            (out.clone(), fx.clone()),
            "split at {at}"
        );
    }
    let capa_before = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nUTF8 USER\r\nEXPIRE NEVER\r\nIMPLEMENTATION Postern\r\n.\r\n";
    let expected = format!(
        "+OK mail.example.test POP3 Postern ready\r\n{capa_before}\
         -ERR plaintext authentication disallowed: issue STLS first\r\n\
         -ERR plaintext authentication disallowed: issue STLS first\r\n\
         +OK begin TLS negotiation\r\n"
    );
    assert_eq!(out, expected);
    assert!(fx.tls_started);
    assert!(fx.verified.is_empty(), "{fx:?}");
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    let ok = b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nCAPA\r\nQUIT\r\n";
    let (out, fx) = converse_every_way(ok, true);
    assert!(out.contains("+OK logged in\r\n"), "{out}");
    assert!(
        !out.contains("USER\r\n") && !out.contains("SASL"),
        "CAPA in TRANSACTION lists no login commands: {out}"
    );
    assert_eq!(fx.committed, Some(Update::default()));
    let continued = b"AUTH PLAIN\r\n*\r\nAUTH PLAIN\r\nAGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\nAUTH PLAIN\r\n!!!\r\nAUTH CRAM-MD5\r\nAUTH\r\nNOPE\r\n";
    let (out, fx) = converse_every_way(continued, true);
    let expected = "+OK mail.example.test POP3 Postern ready\r\n\
        + \r\n-ERR authentication cancelled\r\n\
        + \r\n-ERR [AUTH] authentication failed\r\n\
        + \r\n-ERR cannot decode the base64 response\r\n\
        -ERR unsupported authentication mechanism\r\n\
        +OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n\
        -ERR too many bad commands; closing connection\r\n";
    assert_eq!(out, expected);
    assert_eq!(
        fx.verified,
        vec![("alice@example.test".to_string(), "wrong".to_string())]
    );
}

#[test]
fn states_are_enforced_and_in_use_is_reported() {
    let input = b"STAT\r\nPASS x\r\nUSER busy@example.test\r\nPASS pw\r\nUTF8\r\nUSER alice@example.test\r\nPASS pw\r\nUSER again\r\nNOOP\r\nRSET\r\nQUIT\r\n";
    let (out, _) = converse_every_way(input, true);
    let expected = "+OK mail.example.test POP3 Postern ready\r\n\
        -ERR command not valid in this state\r\n\
        -ERR send USER first\r\n\
        +OK send PASS\r\n\
        -ERR [IN-USE] maildrop already locked by another session\r\n\
        +OK UTF8 enabled\r\n\
        +OK send PASS\r\n\
        +OK logged in\r\n\
        -ERR command not valid in this state\r\n\
        +OK\r\n\
        +OK maildrop has 2 messages (53 octets)\r\n\
        +OK Postern POP3 server signing off\r\n";
    assert_eq!(out, expected);
}

#[test]
fn limits_close_the_session() {
    let mut input = Vec::new();
    for _ in 0..11 {
        input.extend_from_slice(b"CAPA\r\n");
    }
    let (out, fx) = converse(&[&input], false);
    assert!(
        out.ends_with("-ERR too many commands before login; closing connection\r\n"),
        "{out}"
    );
    assert_eq!(out.matches("Capability list").count(), 10);
    assert!(fx.closed);
    let long = format!("USER {}\r\nQUIT\r\n", "x".repeat(300));
    let (out, _) = converse_every_way(long.as_bytes(), true);
    assert!(
        out.ends_with("-ERR line too long\r\n+OK Postern POP3 server signing off\r\n"),
        "{out}"
    );
}

#[test]
fn a_read_failure_is_a_temporary_error_and_not_seen() {
    let mut s = Session::new(cfg(), true, true);
    s.command(b"USER a@example.test\r\n");
    let open = s.command(b"PASS pw\r\n");
    assert!(matches!(open, Step::Verify { .. }));
    assert!(matches!(
        s.auth_result(VerifyOutcome::Ok {
            user: "a@example.test".into()
        }),
        Step::Open { .. }
    ));
    s.opened("a@example.test", Ok(()));
    assert_eq!(s.command(b"RETR 1\r\n"), Step::List);
    assert_eq!(
        s.listed(Ok(infos())),
        Step::Send {
            index: 0,
            lines: None
        }
    );
    assert_eq!(s.read_failed(0), Step::Reply(crate::reply::READ_FAILED));
    assert_eq!(s.command(b"QUIT\r\n"), Step::Commit(Update::default()));
    assert_eq!(
        s.committed(Err(std::io::Error::other("disk"))),
        crate::reply::UPDATE_FAILED
    );
    let mut t = Session::new(cfg(), true, true);
    assert_eq!(
        t.auth_result(VerifyOutcome::TempFail {
            reason: shared::proto::auth::TempReason::Throttled
        }),
        Step::Reply(crate::reply::AUTH_TEMP)
    );
}

#[test]
fn login_only_locks_and_the_first_command_lists_once() {
    let (out, fx) = converse_every_way(b"USER a@example.test\r\nPASS pw\r\nNOOP\r\nQUIT\r\n", true);
    assert!(
        out.ends_with("+OK logged in\r\n+OK\r\n+OK Postern POP3 server signing off\r\n"),
        "{out}"
    );
    assert_eq!((fx.listings, fx.committed), (0, Some(Update::default())));
    let input = b"USER a@example.test\r\nPASS pw\r\nSTAT\r\nLIST\r\nRETR 1\r\nQUIT\r\n";
    let (out, fx) = converse(&[input], true);
    assert!(out.contains("+OK 2 53\r\n"), "{out}");
    assert_eq!(fx.listings, 1, "listed at STAT and kept");
}

#[test]
fn a_listing_failure_is_temporary_and_retried() {
    let mut s = Session::new(cfg(), true, true);
    s.command(b"USER a@example.test\r\n");
    s.command(b"PASS pw\r\n");
    s.auth_result(VerifyOutcome::Ok {
        user: "a@example.test".into(),
    });
    s.opened("a@example.test", Ok(()));
    assert_eq!(s.command(b"STAT\r\n"), Step::List);
    let failed = s.listed(Err(std::io::Error::other("disk")));
    assert!(matches!(failed, Step::Reply(r) if r == crate::reply::MAILDROP_TEMP));
    assert_eq!(s.command(b"STAT\r\n"), Step::List);
    assert_eq!(
        s.listed(Ok(infos())),
        Step::Reply(Reply::ok_text("2 53".to_string()))
    );
}

#[test]
fn a_listing_taken_at_login_serves_the_first_command() {
    let mut s = Session::new(cfg(), true, true);
    s.command(b"USER a@example.test\r\n");
    s.command(b"PASS pw\r\n");
    s.auth_result(VerifyOutcome::Ok {
        user: "a@example.test".into(),
    });
    s.opened("a@example.test", Ok(()));
    s.listed_at_login(infos());
    assert_eq!(
        s.command(b"STAT\r\n"),
        Step::Reply(Reply::ok_text("2 53".to_string()))
    );
    // Once listed, a later listing (a second call) changes nothing.
    s.listed_at_login(Vec::new());
    assert_eq!(
        s.command(b"STAT\r\n"),
        Step::Reply(Reply::ok_text("2 53".to_string()))
    );
}

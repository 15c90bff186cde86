//! Unit tests of `session`.

use super::*;

fn cfg() -> SessionConfig {
    SessionConfig {
        hostname: "mx.example.test".into(),
        domains: vec!["example.test".into()],
        max_size: 1000,
        max_recipients: 2,
        max_errors: 10,
        max_commands_before_mail: 50,
        restrict_sender: true,
        tls_available: true,
    }
}

fn session(listener: ListenerName, tls: bool) -> Session {
    let tls = tls.then(|| "TLSv1.3 with cipher X".to_string());
    Session::new(cfg(), listener, "192.0.2.9".parse().unwrap(), tls)
}

fn code(step: Step) -> u16 {
    match step {
        Step::Reply(r) | Step::Close(r) | Step::StartTls(r) | Step::ReceiveData(r) => r.code,
        other => panic!("unexpected {other:?}"),
    }
}

fn text(step: Step) -> String {
    match step {
        Step::Reply(r) => String::from_utf8(r.to_bytes()).unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

fn plain(user: &str, pw: &str) -> String {
    B64.encode(format!("\0{user}\0{pw}"))
}

#[test]
fn port_25_offers_starttls_never_auth_and_relays_nothing() {
    let mut s = session(ListenerName::Smtp, false);
    let ehlo = text(s.command(b"EHLO client\r\n"));
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH") && ehlo.contains("CHUNKING"),
        "{ehlo}"
    );
    assert_eq!(
        code(s.command(format!("AUTH PLAIN {}\r\n", plain("a@example.test", "x")).as_bytes())),
        503
    );
    assert_eq!(
        code(s.command(b"MAIL FROM:<anyone@elsewhere.net>\r\n")),
        250
    );
    assert_eq!(code(s.command(b"RCPT TO:<x@elsewhere.net>\r\n")), 550);
    for trick in [
        "a%b@example.test",
        "b!a@example.test",
        "\"a@elsewhere.net\"@example.test",
    ] {
        assert_eq!(
            code(s.command(format!("RCPT TO:<{trick}>\r\n").as_bytes())),
            550,
            "{trick}"
        );
    }
    assert_eq!(
        s.command(b"RCPT TO:<alice@example.test>\r\n"),
        Step::Lookup("alice@example.test".into())
    );
    assert_eq!(s.resolved(Recipient::Unknown).code, 550);
    assert_eq!(code(s.command(b"DATA\r\n")), 554, "no valid recipients");
    assert_eq!(
        s.command(b"RCPT TO:<Postmaster>\r\n"),
        Step::Lookup("postmaster@example.test".into())
    );
}

#[test]
fn submission_needs_tls_then_auth_and_restricts_the_sender() {
    let mut s = session(ListenerName::Submission, false);
    let ehlo = text(s.command(b"EHLO laptop\r\n"));
    assert!(!ehlo.contains("AUTH"), "no AUTH before TLS: {ehlo}");
    assert_eq!(code(s.command(b"MAIL FROM:<a@example.test>\r\n")), 530);
    assert_eq!(code(s.command(b"AUTH LOGIN\r\n")), 530);
    assert!(matches!(s.command(b"STARTTLS\r\n"), Step::StartTls(_)));
    s.tls_started("TLSv1.3".into());
    assert_eq!(
        code(s.command(b"MAIL FROM:<a@example.test>\r\n")),
        503,
        "EHLO again after TLS"
    );
    assert!(text(s.command(b"EHLO laptop\r\n")).contains("AUTH PLAIN LOGIN"));
    assert_eq!(
        code(s.command(b"MAIL FROM:<a@example.test>\r\n")),
        530,
        "auth required"
    );
    // AUTH LOGIN, step by step.
    assert_eq!(code(s.command(b"AUTH LOGIN\r\n")), 334);
    assert_eq!(
        code(s.command(format!("{}\r\n", B64.encode("a@example.test")).as_bytes())),
        334
    );
    let step = s.command(format!("{}\r\n", B64.encode("pw")).as_bytes());
    assert_eq!(
        step,
        Step::Verify {
            mechanism: Mechanism::Login,
            username: "a@example.test".into(),
            password: "pw".into()
        }
    );
    assert_eq!(
        s.auth_result(VerifyOutcome::Ok {
            user: "a@example.test".into()
        })
        .code,
        235
    );
    s.set_senders(vec!["a@example.test".into(), "sales@example.test".into()]);
    assert_eq!(code(s.command(b"MAIL FROM:<b@example.test>\r\n")), 553);
    assert_eq!(
        code(s.command(b"MAIL FROM:<Sales@Example.Test> RET=HDRS ENVID=abc\r\n")),
        250
    );
    assert_eq!(
        code(s.command(
            b"RCPT TO:<far@elsewhere.net> NOTIFY=FAILURE,DELAY ORCPT=rfc822;far@elsewhere.net\r\n"
        )),
        250
    );
    assert_eq!(code(s.command(b"DATA\r\n")), 354);
    match s.data_received(Ok(b"x\n".to_vec())) {
        Step::Queue(m) => {
            assert_eq!(m.envelope.ret.as_deref(), Some("HDRS"));
            assert_eq!(m.envelope.envid.as_deref(), Some("abc"));
            let r = &m.envelope.recipients[0];
            assert!(!r.local);
            assert_eq!(r.notify, vec!["FAILURE".to_string(), "DELAY".to_string()]);
            assert!(r.orcpt.is_some());
            assert_eq!(m.trace.protocol(), "ESMTPSA");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn auth_plain_variants_and_cancel() {
    let mut s = session(ListenerName::Submissions, true);
    s.command(b"EHLO x\r\n");
    assert_eq!(code(s.command(b"AUTH PLAIN\r\n")), 334);
    assert_eq!(code(s.command(b"*\r\n")), 501, "cancelled");
    assert_eq!(code(s.command(b"AUTH PLAIN !!notbase64\r\n")), 501);
    let other = B64.encode("admin@example.test\0a@example.test\0pw");
    assert_eq!(
        code(s.command(format!("AUTH PLAIN {other}\r\n").as_bytes())),
        535,
        "authzid of someone else"
    );
    let step = s.command(format!("AUTH PLAIN {}\r\n", plain("a@example.test", "pw")).as_bytes());
    assert!(matches!(
        step,
        Step::Verify {
            mechanism: Mechanism::Plain,
            ..
        }
    ));
    assert_eq!(
        s.auth_result(VerifyOutcome::Fail { delay_ms: 10 }).code,
        535
    );
    assert_eq!(
        s.auth_result(VerifyOutcome::TempFail {
            reason: shared::proto::auth::TempReason::Throttled
        })
        .code,
        454
    );
}

#[test]
fn limits_and_bdat() {
    let mut s = session(ListenerName::Smtp, false);
    s.command(b"EHLO x\r\n");
    s.command(b"MAIL FROM:<a@elsewhere.net>\r\n");
    for _ in 0..2 {
        s.command(b"RCPT TO:<u@example.test>\r\n");
        s.resolved(Recipient::Mailbox {
            address: "u@example.test".into(),
        });
    }
    assert_eq!(code(s.command(b"RCPT TO:<u@example.test>\r\n")), 452);
    assert_eq!(
        s.command(b"BDAT 5\r\n"),
        Step::ReceiveChunk {
            size: 5,
            last: false
        }
    );
    assert_eq!(code(s.chunk_received(b"ab\r\nc", false)), 250);
    assert_eq!(
        s.command(b"BDAT 2 LAST\r\n"),
        Step::ReceiveChunk {
            size: 2,
            last: true
        }
    );
    match s.chunk_received(b"\r\n", true) {
        Step::Queue(m) => assert_eq!(m.body, b"ab\nc\n"),
        other => panic!("{other:?}"),
    }
    // A BDAT outside a transaction: its octets are still read, then refused.
    assert_eq!(
        s.command(b"BDAT 3 LAST\r\n"),
        Step::ReceiveChunk {
            size: 3,
            last: false
        }
    );
    assert_eq!(code(s.chunk_received(b"xyz", false)), 503);
    for _ in 0..9 {
        assert_eq!(code(s.command(b"WHAT\r\n")), 500);
    }
    assert!(matches!(s.command(b"WHAT\r\n"), Step::Close(r) if r.code == 421));
}

#[test]
fn alias_targets_split_into_local_alias_and_remote_forwards() {
    let mut env = Envelope {
        sender: "a@elsewhere.net".into(),
        recipients: vec![],
        ret: None,
        envid: None,
        body_8bit: false,
        smtputf8: false,
    };
    let rcpt = |address: &str| Rcpt {
        address: address.into(),
        local: false,
        notify: vec!["FAILURE".into()],
        orcpt: None,
    };
    let domains = vec!["example.test".to_string()];
    let targets = |t: &[&str]| t.iter().map(|s| s.to_string()).collect();
    add_alias(
        &mut env,
        rcpt("team@example.test"),
        targets(&["u@example.test", "x@far.test"]),
        &domains,
    );
    add_alias(
        &mut env,
        rcpt("out@example.test"),
        targets(&["x@far.test", "y@far.test"]),
        &domains,
    );
    let got: Vec<(&str, bool, Option<&str>)> = env
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.local, r.orcpt.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("x@far.test", false, Some("team@example.test")),
            ("team@example.test", true, None),
            ("y@far.test", false, Some("out@example.test")),
        ],
        "a remote-only alias is no local recipient; a target is added once"
    );
    assert_eq!(env.recipients[0].notify, vec!["FAILURE".to_string()]);
}

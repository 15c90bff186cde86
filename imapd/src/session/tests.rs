//! Unit tests of the session: commands fed one by one (parsed from bytes) against a
//! temporary mailstore, authd's answers supplied by the test.

use std::sync::Arc;

use shared::proto::auth::{TempReason, VerifyOutcome};

use super::{Config, Credentials, Session, Step};
use crate::parser::{ParseLimits, parse_command};

const USER: &str = "alice@example.test";

fn config(dir: &tempfile::TempDir) -> Arc<Config> {
    Arc::new(Config {
        mail_root: dir.path().to_path_buf(),
        max_errors: 3,
        max_commands_before_auth: 10,
        append_limit: 2_000_000,
        max_depth: 32,
    })
}

/// Feeds one command line; returns the step and what the session wrote.
pub(super) fn run(s: &mut Session, line: &str) -> (Step, String) {
    let cmd = parse_command(format!("{line}\r\n").as_bytes(), &ParseLimits::default()).unwrap();
    let mut step = s.handle(cmd);
    while step == Step::Flush {
        step = s.resume();
    }
    (step, String::from_utf8(s.take_output()).unwrap())
}

pub(super) fn logged_in(dir: &tempfile::TempDir) -> Session {
    let mut s = Session::new(config(dir), true);
    let (step, _) = run(&mut s, "a LOGIN alice@example.test secret");
    assert!(matches!(step, Step::Verify(Credentials { ref user, .. }) if user == USER));
    s.auth_result(VerifyOutcome::Ok { user: USER.into() });
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(
        out.starts_with("a OK [CAPABILITY IMAP4rev1 IMAP4rev2 ID"),
        "{out}"
    );
    s
}

#[test]
fn before_tls_only_starttls_capability_noop_logout() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(config(&dir), false);
    s.greeting();
    let greeting = String::from_utf8(s.take_output()).unwrap();
    assert!(greeting.contains("STARTTLS LOGINDISABLED") && !greeting.contains("AUTH=PLAIN"));
    let (_, out) = run(&mut s, "a LOGIN u p");
    assert_eq!(
        out,
        "a NO [PRIVACYREQUIRED] TLS required first: use STARTTLS\r\n"
    );
    let (_, out) = run(&mut s, "b AUTHENTICATE PLAIN");
    assert_eq!(
        out,
        "b NO [PRIVACYREQUIRED] TLS required first: use STARTTLS\r\n"
    );
    let (step, out) = run(&mut s, "c STARTTLS");
    assert_eq!(
        (step, out.as_str()),
        (Step::StartTls, "c OK Begin TLS negotiation now\r\n")
    );
    s.tls_started();
    let (_, out) = run(&mut s, "d CAPABILITY");
    assert!(
        out.contains("AUTH=PLAIN SASL-IR") && !out.contains("STARTTLS"),
        "{out}"
    );
    let (_, out) = run(&mut s, "e STARTTLS");
    assert_eq!(out, "e BAD TLS already active\r\n");
}

#[test]
fn authenticate_plain_with_and_without_initial_response() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(config(&dir), true);
    // "\0alice@example.test\0pw"
    let (step, _) = run(
        &mut s,
        "a AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==",
    );
    assert_eq!(
        step,
        Step::Verify(Credentials {
            user: USER.into(),
            password: "pw".into()
        })
    );
    s.auth_result(VerifyOutcome::Fail { delay_ms: 0 });
    assert_eq!(
        s.take_output(),
        b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    let (step, _) = run(&mut s, "b AUTHENTICATE PLAIN");
    assert_eq!(step, Step::AuthContinue);
    s.auth_line(b"*");
    assert_eq!(s.take_output(), b"b BAD Authentication cancelled\r\n");
    let (step, _) = run(&mut s, "c AUTHENTICATE PLAIN");
    assert_eq!(step, Step::AuthContinue);
    assert!(matches!(
        s.auth_line(b"AGFsaWNlQGV4YW1wbGUudGVzdABwdw=="),
        Step::Verify(_)
    ));
    s.auth_result(VerifyOutcome::TempFail {
        reason: TempReason::Internal,
    });
    assert_eq!(
        s.take_output(),
        b"c NO [UNAVAILABLE] Authentication temporarily unavailable\r\n"
    );
    let (_, out) = run(&mut s, "d AUTHENTICATE CRAM-MD5");
    assert_eq!(out, "d NO [CANNOT] Unsupported mechanism\r\n");
}

#[test]
fn the_state_table_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(config(&dir), true);
    let (_, out) = run(&mut s, "a SELECT INBOX");
    assert_eq!(out, "a BAD Not allowed in this state\r\n");
    let mut s = logged_in(&dir);
    let (_, out) = run(&mut s, "b FETCH 1 FLAGS");
    assert_eq!(out, "b BAD No mailbox selected\r\n");
    let (_, out) = run(&mut s, "c LOGIN x y");
    assert_eq!(out, "c BAD Already authenticated\r\n");
    let (step, out) = run(&mut s, "d LOGOUT");
    assert_eq!(step, Step::Close);
    assert_eq!(out, "* BYE Logging out\r\nd OK LOGOUT completed\r\n");
}

#[test]
fn errors_and_commands_before_login_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(config(&dir), true);
    for _ in 0..2 {
        assert_eq!(run(&mut s, "a SORT (DATE) UTF-8 ALL").0, Step::Next);
    }
    let (step, out) = run(&mut s, "a SORT (DATE) UTF-8 ALL");
    assert_eq!(step, Step::Close);
    assert!(out.ends_with("* BYE Too many errors\r\n"), "{out}");
    let mut s = Session::new(config(&dir), true);
    for _ in 0..10 {
        assert_eq!(run(&mut s, "n NOOP").0, Step::Next);
    }
    assert_eq!(
        run(&mut s, "n NOOP"),
        (
            Step::Close,
            "* BYE Too many commands before login\r\n".into()
        )
    );
}

#[test]
fn select_append_fetch_store_expunge() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    let (_, out) = run(
        &mut s,
        "a APPEND INBOX (\\Seen $Label1) {12+}\r\nSubject: x\r\n",
    );
    assert!(out.starts_with("a OK [APPENDUID "), "{out}");
    let (_, out) = run(&mut s, "b SELECT INBOX (CONDSTORE)");
    assert!(
        out.contains("* 1 EXISTS\r\n") && out.contains("[HIGHESTMODSEQ "),
        "{out}"
    );
    assert!(out.ends_with("b OK [READ-WRITE] Selected\r\n"), "{out}");
    assert!(
        out.starts_with("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)\r\n"),
        "{out}"
    );
    let (_, out) = run(
        &mut s,
        "c FETCH 1 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])",
    );
    assert!(
        out.starts_with(
            "* 1 FETCH (UID 1 FLAGS (\\Seen $Label1) RFC822.SIZE 12 BODY[HEADER] {12}\r\nSubject: x\r\n)"
        ),
        "{out}"
    );
    let (_, out) = run(&mut s, "d FETCH 2 FLAGS");
    assert_eq!(out, "d BAD Invalid message sequence number\r\n");
    let (_, out) = run(&mut s, "e UID FETCH 5:7 FLAGS");
    assert_eq!(out, "e OK done\r\n");
    let (_, out) = run(&mut s, "f STORE 1 +FLAGS.SILENT (\\Deleted)");
    assert!(
        out.starts_with("* 1 FETCH (MODSEQ ("),
        "CONDSTORE reports the modseq: {out}"
    );
    let (_, out) = run(&mut s, "g EXPUNGE");
    assert_eq!(out, "* 1 EXPUNGE\r\ng OK done\r\n");
    let (_, out) = run(&mut s, "h EXAMINE INBOX");
    assert!(
        out.starts_with("* OK [CLOSED]") && out.contains("* 0 EXISTS"),
        "{out}"
    );
    let (_, out) = run(&mut s, "i STORE 1:* +FLAGS (\\Seen)");
    assert_eq!(out, "i NO [READ-ONLY] Mailbox is read-only\r\n");
    let (_, out) = run(&mut s, "j FETCH 1:* FLAGS");
    assert_eq!(out, "j BAD Invalid message sequence number\r\n");
}

#[test]
fn expunges_of_another_session_wait_for_an_allowed_moment() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = logged_in(&dir);
    let mut b = logged_in(&dir);
    for _ in 0..3 {
        run(&mut a, "x APPEND INBOX {12+}\r\nSubject: x\r\n");
    }
    run(&mut a, "s SELECT INBOX");
    run(&mut b, "s SELECT INBOX");
    let (_, out) = run(&mut b, "e UID EXPUNGE 2");
    assert_eq!(out, "e OK done\r\n", "nothing was \\Deleted");
    run(&mut b, "d STORE 2 +FLAGS (\\Deleted)");
    run(&mut b, "e EXPUNGE");
    // FETCH by sequence number must not announce the expunge (RFC 3501 §7.4.1)...
    let (_, out) = run(&mut a, "f FETCH 3 (UID)");
    assert_eq!(out, "* 3 FETCH (UID 3)\r\nf OK done\r\n");
    // ...NOOP does, and the numbers move down.
    let (_, out) = run(&mut a, "n NOOP");
    assert_eq!(out, "* 2 EXPUNGE\r\nn OK done\r\n");
    let (_, out) = run(&mut a, "f FETCH 2 (UID)");
    assert_eq!(out, "* 2 FETCH (UID 3)\r\nf OK done\r\n");
    // A delivery by another handle shows as EXISTS.
    run(&mut b, "x APPEND INBOX {12+}\r\nSubject: y\r\n");
    a.idle_poll();
    assert_eq!(a.take_output(), b"* 3 EXISTS\r\n");
}

#[test]
fn list_status_create_rename_delete() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    let (_, out) = run(&mut s, "a CREATE \"A/B\"");
    assert_eq!(out, "a OK done\r\n");
    let (_, out) = run(&mut s, "b LIST \"\" %");
    assert!(out.contains("* LIST (\\HasChildren) \"/\" A\r\n"), "{out}");
    assert!(
        out.contains("* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"),
        "{out}"
    );
    assert!(!out.contains("A/B"), "{out}");
    let (_, out) = run(
        &mut s,
        "c LIST (SPECIAL-USE) \"\" * RETURN (STATUS (MESSAGES))",
    );
    assert!(
        out.contains("\\Trash) \"/\" Trash\r\n* STATUS Trash (MESSAGES 0)\r\n"),
        "{out}"
    );
    assert!(!out.contains("INBOX"), "{out}");
    let (_, out) = run(&mut s, "d RENAME A Z");
    assert_eq!(out, "d OK done\r\n");
    let (_, out) = run(&mut s, "e STATUS Z/B (MESSAGES UIDNEXT SIZE)");
    assert_eq!(
        out,
        "* STATUS Z/B (MESSAGES 0 UIDNEXT 1 SIZE 0)\r\ne OK done\r\n"
    );
    let (_, out) = run(&mut s, "f DELETE nope");
    assert!(out.starts_with("f NO [NONEXISTENT]"), "{out}");
    let (_, out) = run(&mut s, "g CREATE Sent");
    assert!(out.starts_with("g NO [ALREADYEXISTS]"), "{out}");
    let (_, out) = run(&mut s, "h LIST \"\" \"\"");
    assert_eq!(out, "* LIST (\\Noselect) \"/\" \"\"\r\nh OK done\r\n");
    let (_, out) = run(&mut s, "i ENABLE CONDSTORE UTF8=ACCEPT X-UNKNOWN");
    assert_eq!(out, "* ENABLED CONDSTORE UTF8=ACCEPT\r\ni OK done\r\n");
}

#[test]
fn search_keys_and_esearch() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    let m1 = "From: Bob <bob@x.test>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\nthe ZEBRA\r\n";
    let m2 = "From: carol@y.test\r\nSubject: other\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naGlkZGVuIGxpb24=\r\n";
    for m in [m1, m2] {
        run(&mut s, &format!("x APPEND INBOX {{{}+}}\r\n{m}", m.len()));
    }
    run(&mut s, "s SELECT INBOX");
    let search = |s: &mut Session, q: &str| run(s, &format!("t {q}")).1;
    assert_eq!(
        search(&mut s, "SEARCH BODY zebra"),
        "* SEARCH 1\r\nt OK done\r\n"
    );
    assert_eq!(
        search(&mut s, "SEARCH BODY lion"),
        "* SEARCH 2\r\nt OK done\r\n",
    );
    assert_eq!(
        search(&mut s, "SEARCH CHARSET UTF-8 SUBJECT \"grüße\""),
        "* SEARCH 1\r\nt OK done\r\n"
    );
    assert_eq!(
        search(&mut s, "SEARCH NOT FROM bob"),
        "* SEARCH 2\r\nt OK done\r\n"
    );
    assert_eq!(
        search(&mut s, "SEARCH OR 1 LARGER 100"),
        "* SEARCH 1 2\r\nt OK done\r\n"
    );
    assert_eq!(
        search(&mut s, "SEARCH HEADER Content-Transfer-Encoding \"\""),
        "* SEARCH 2\r\nt OK done\r\n"
    );
    assert_eq!(
        search(&mut s, "UID SEARCH RETURN (MIN COUNT) ALL"),
        "* ESEARCH (TAG \"t\") UID MIN 1 COUNT 2\r\nt OK done\r\n"
    );
    assert!(search(&mut s, "SEARCH CHARSET KOI8-R ALL").starts_with("t NO [BADCHARSET"));
}

#[test]
fn wildcards() {
    use super::mailbox::matches;
    assert!(matches("*", "A/B/C"));
    assert!(matches("A/%", "A/B"));
    assert!(!matches("A/%", "A/B/C"));
    assert!(matches("inbox", "INBOX"));
    assert!(matches("%", "INBOX"));
    assert!(!matches("%", "A/B"));
    let hostile = "*a".repeat(200);
    assert!(!matches(&hostile, &"a".repeat(100)));
}

#[test]
fn structure_items_come_from_the_cache_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    run(
        &mut s,
        "x APPEND INBOX {23+}\r\nSubject: first\r\n\r\nhi\r\n",
    );
    run(&mut s, "s SELECT INBOX");
    let (_, first) = run(&mut s, "f FETCH 1 (ENVELOPE BODYSTRUCTURE)");
    assert!(
        first.contains("\"first\"") && first.contains("(\"text\" \"plain\""),
        "{first}"
    );
    // Change the file behind the cache's back: a second FETCH must not read it.
    let user_dir = dir.path().join("example.test/alice");
    assert!(user_dir.join("postern-cache").exists());
    for sub in ["cur", "new"] {
        for f in std::fs::read_dir(user_dir.join(sub)).unwrap().flatten() {
            std::fs::write(f.path(), "Subject: changed\r\n\r\nhi\r\n").unwrap();
        }
    }
    let (_, second) = run(&mut s, "g FETCH 1 (ENVELOPE BODYSTRUCTURE)");
    assert_eq!(first.replacen("f OK", "g OK", 1), second);
    // Another session reads the same file.
    let mut t = logged_in(&dir);
    run(&mut t, "s SELECT INBOX");
    let (_, third) = run(&mut t, "h FETCH 1 (ENVELOPE)");
    assert!(third.contains("\"first\""), "{third}");
}

#[test]
fn qresync_vanished_and_resync_on_select() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = logged_in(&dir);
    let mut b = logged_in(&dir);
    for _ in 0..3 {
        run(&mut a, "x APPEND INBOX {12+}\r\nSubject: x\r\n");
    }
    let (_, out) = run(&mut a, "s SELECT INBOX (QRESYNC (1 1))");
    assert_eq!(out, "s BAD QRESYNC is not enabled\r\n");
    let (_, out) = run(&mut a, "e ENABLE QRESYNC");
    assert_eq!(out, "* ENABLED QRESYNC\r\ne OK done\r\n");
    let (_, out) = run(&mut a, "s SELECT INBOX");
    let validity: u32 = out
        .split("[UIDVALIDITY ")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let modseq: u64 = out
        .split("[HIGHESTMODSEQ ")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    run(&mut b, "s SELECT INBOX");
    run(&mut b, "d STORE 2 +FLAGS (\\Deleted)");
    run(&mut b, "e EXPUNGE");
    run(&mut b, "f STORE 2 +FLAGS (\\Flagged)"); // UID 3
    let (_, out) = run(&mut a, "n NOOP");
    assert!(out.starts_with("* VANISHED 2\r\n"), "{out}");
    let (_, out) = run(
        &mut a,
        &format!("u UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"),
    );
    assert!(
        out.starts_with("* VANISHED (EARLIER) 2\r\n* 2 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ ("),
        "{out}"
    );
    let (_, out) = run(
        &mut a,
        &format!("r SELECT INBOX (QRESYNC ({validity} {modseq} 1:3))"),
    );
    assert!(
        out.contains("* VANISHED (EARLIER) 2\r\n* 2 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ ("),
        "{out}"
    );
    assert!(
        !out.contains("UID 1 "),
        "unchanged messages are not sent: {out}"
    );
}

#[test]
fn binary_decodes_and_refuses_unknown_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    let m1 = "Content-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n";
    let m2 = "Content-Transfer-Encoding: x-custom\r\n\r\nzzz\r\n";
    for m in [m1, m2] {
        run(&mut s, &format!("x APPEND INBOX {{{}+}}\r\n{m}", m.len()));
    }
    run(&mut s, "s SELECT INBOX");
    let (_, out) = run(&mut s, "b FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])");
    assert_eq!(
        out,
        "* 1 FETCH (BINARY[1] {5}\r\nhello BINARY.SIZE[1] 5)\r\nb OK done\r\n"
    );
    let (_, out) = run(&mut s, "c FETCH 2 (UID BINARY.PEEK[1])");
    assert_eq!(
        out,
        "* 2 FETCH (UID 2)\r\nc NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n"
    );
}

#[test]
fn searchres_saves_and_dollar_refers_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    for subject in ["a", "b", "a"] {
        run(
            &mut s,
            &format!("x APPEND INBOX {{12+}}\r\nSubject: {subject}\r\n"),
        );
    }
    run(&mut s, "s SELECT INBOX");
    let (_, out) = run(&mut s, "t SEARCH RETURN (SAVE) SUBJECT a");
    assert_eq!(out, "t OK done\r\n");
    let (_, out) = run(&mut s, "f FETCH $ (UID)");
    assert_eq!(
        out,
        "* 1 FETCH (UID 1)\r\n* 3 FETCH (UID 3)\r\nf OK done\r\n"
    );
    let (_, out) = run(&mut s, "g UID SEARCH UID $ NOT 1");
    assert_eq!(out, "* SEARCH 3\r\ng OK done\r\n");
}

/// A client's whole conversation framed from bytes (literals included) and run through a
/// session: the transcript, with the per-run UIDVALIDITY and modseqs taken out.
fn transcript(chunks: &[&[u8]]) -> String {
    use crate::testutil::{Event, drive};
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    let (events, left) = drive(chunks.iter().copied(), &crate::frame::Limits::default());
    assert_eq!(left, 0);
    let mut out = String::new();
    for e in events {
        match e {
            Event::Continue => out.push_str("+ OK\r\n"),
            Event::Command(Ok(cmd)) => {
                s.handle(cmd);
                out.push_str(&String::from_utf8(s.take_output()).unwrap());
            }
            other => panic!("{other:?}"),
        }
    }
    out.lines()
        .filter(|l| !l.contains("UIDVALIDITY") && !l.contains("HIGHESTMODSEQ"))
        .map(|l| l.split(" [APPENDUID").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_conversation_split_anywhere_gives_the_same_transcript() {
    let input: &[u8] = b"a APPEND INBOX (\\Flagged) {21}\r\nSubject: hi\r\n\r\nbody\r\n\r\n\
b SELECT INBOX\r\nc FETCH 1 (FLAGS BODY[HEADER.FIELDS (SUBJECT)])\r\n\
d APPEND INBOX {5+}\r\nhello\r\ne UID SEARCH NOT FLAGGED\r\nf STORE 1:2 +FLAGS (\\Seen)\r\n";
    let whole = transcript(&[input]);
    assert!(
        whole.contains("* 1 FETCH (FLAGS (\\Seen \\Flagged) BODY[HEADER.FIELDS (SUBJECT)] {15}"),
        "{whole}"
    );
    assert!(whole.contains("* SEARCH 2\ne OK done"), "{whole}");
    assert!(
        whole.ends_with(
            "* 1 FETCH (FLAGS (\\Seen \\Flagged))\n* 2 FETCH (FLAGS (\\Seen))\nf OK done"
        ),
        "{whole}"
    );
    for at in 1..input.len() {
        assert_eq!(
            transcript(&[&input[..at], &input[at..]]),
            whole,
            "split at {at}"
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(transcript(&bytes), whole, "byte by byte");
}

#[test]
fn a_long_fetch_is_sent_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    let body = "x".repeat(700_000);
    for _ in 0..3 {
        run(
            &mut s,
            &format!("a APPEND INBOX {{{}+}}\r\n{body}", body.len()),
        );
    }
    run(&mut s, "s SELECT INBOX");
    let cmd = parse_command(b"f FETCH 1:* BODY.PEEK[]\r\n", &ParseLimits::default()).unwrap();
    let mut step = s.handle(cmd);
    let mut batches = Vec::new();
    while step == Step::Flush {
        batches.push(s.take_output().len());
        step = s.resume();
    }
    batches.push(s.take_output().len());
    assert_eq!(step, Step::Next);
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert!(batches.iter().all(|&n| n < 1_500_000), "{batches:?}");
}

#[test]
fn status_of_the_selected_folder_does_not_swallow_updates() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = logged_in(&dir);
    let mut b = logged_in(&dir);
    run(&mut a, "x APPEND INBOX {12+}\r\nSubject: x\r\n");
    run(&mut a, "s SELECT INBOX");
    run(&mut b, "s SELECT INBOX");
    run(&mut b, "f STORE 1 +FLAGS (\\Flagged)");
    let (_, out) = run(&mut a, "t STATUS INBOX (MESSAGES)");
    assert!(out.contains("* STATUS INBOX (MESSAGES 1)"), "{out}");
    assert!(out.contains("* 1 FETCH (FLAGS (\\Flagged) UID 1)"), "{out}");
}

#[test]
fn sort_by_subject_date_size_and_from() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    let msgs = [
        "From: Zed <zed@x>\r\nSubject: Re: beta\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nshort\r\n",
        "From: adam@x\r\nSubject: alpha\r\nDate: Wed, 3 Jan 2024 10:00:00 +0000\r\n\r\na much longer body here, really longer\r\n",
        "From: Bob <bob@x>\r\nSubject: [list] Gamma\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nmid body\r\n",
    ];
    for m in msgs {
        run(&mut s, &format!("x APPEND INBOX {{{}+}}\r\n{m}", m.len()));
    }
    run(&mut s, "s SELECT INBOX");
    let sort = |s: &mut Session, q: &str| run(s, &format!("t {q}")).1;
    assert_eq!(
        sort(&mut s, "SORT (SUBJECT) UTF-8 ALL"),
        "* SORT 2 1 3\r\nt OK done\r\n"
    );
    assert_eq!(
        sort(&mut s, "SORT (DATE) UTF-8 ALL"),
        "* SORT 3 1 2\r\nt OK done\r\n"
    );
    assert_eq!(
        sort(&mut s, "SORT (REVERSE SIZE) UTF-8 ALL"),
        "* SORT 2 3 1\r\nt OK done\r\n"
    );
    assert_eq!(
        sort(&mut s, "UID SORT (FROM) UTF-8 NOT FROM adam"),
        "* SORT 3 1\r\nt OK done\r\n"
    );
    assert_eq!(
        sort(&mut s, "SORT (DISPLAYFROM) UTF-8 ALL"),
        "* SORT 2 3 1\r\nt OK done\r\n"
    );
}

#[test]
fn subscribed_names_without_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    run(&mut s, "a CREATE Gone");
    run(&mut s, "b SUBSCRIBE Gone");
    run(&mut s, "c DELETE Gone");
    let (_, out) = run(&mut s, "d LIST (SUBSCRIBED) \"\" G*");
    assert_eq!(
        out,
        "* LIST (\\NonExistent \\Subscribed) \"/\" Gone\r\nd OK done\r\n"
    );
    let (_, out) = run(&mut s, "e LSUB \"\" *");
    assert!(out.contains("* LSUB (\\Noselect) \"/\" Gone\r\n"), "{out}");
    assert!(
        out.contains("* LSUB (\\HasNoChildren \\Sent) \"/\" Sent\r\n"),
        "{out}"
    );
}

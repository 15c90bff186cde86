//! A large INBOX (20,000 messages of 4 KiB, written straight into the Maildir as an
//! outside program would) read through the real server with imaplib: SELECT, `UID FETCH 1:*
//! (UID FLAGS RFC822.SIZE ENVELOPE)` twice (the second from the structure cache), SEARCH and
//! STORE over everything. Prints the timings; asserts only correctness and that the warm
//! FETCH is not slower than the cold one. Ignored by default (minutes in a debug build):
//! `cargo test -p postern-tests --test imap_large -- --ignored --nocapture`.

use harness::{Setup, python};

const COUNT: usize = 20_000;

const SCRIPT: &str = r#"
import imaplib, ssl, sys, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def timed(what, f):
    t = time.time(); r = f(); print("%-45s %.2fs" % (what, time.time() - t)); return r
m = timed("connect+LOGIN", lambda: imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx))
m.login("alice@example.test", "alice-pw")
typ, data = timed("SELECT (first: index built)", lambda: m.select("INBOX"))
assert data == [sys.argv[2].encode()], data
typ, data = timed("SELECT again", lambda: m.select("INBOX"))
cold = time.time()
typ, data = timed("UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE) cold", lambda: m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE ENVELOPE)"))
cold = time.time() - cold
assert len(data) == int(sys.argv[2]), len(data)
warm = time.time()
typ, data = timed("UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE) warm", lambda: m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE ENVELOPE)"))
warm = time.time() - warm
typ, data = timed("UID SEARCH FROM sender7", lambda: m.uid("SEARCH", "FROM", "sender7"))
typ, data = timed("UID SEARCH SUBJECT number", lambda: m.uid("SEARCH", "SUBJECT", "number"))
typ, data = timed("UID SEARCH BODY needle", lambda: m.uid("SEARCH", "BODY", "needle"))
assert len(data[0].split()) == int(sys.argv[2]) // 100, data
typ, data = timed("UID STORE 1:* +FLAGS.SILENT (\\Flagged)", lambda: m.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Flagged)"))
assert typ == "OK"
m.logout()
assert warm <= cold * 1.2, (cold, warm)
print("done")
"#;

#[test]
#[ignore]
fn large_inbox_timings() {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "alice-pw");
    // Written before the server starts, then given to the mail user.
    let cur = setup.path("state/mail/example.test/alice/cur");
    std::fs::create_dir_all(&cur).unwrap();
    for d in ["new", "tmp"] {
        std::fs::create_dir_all(setup.path(&format!("state/mail/example.test/alice/{d}"))).unwrap();
    }
    let filler = "All work and no play makes a dull message. ".repeat(90);
    for i in 0..COUNT {
        let needle = if i % 100 == 0 { " needle" } else { "" };
        let msg = format!(
            "From: Sender {} <sender{}@example.net>\nTo: alice@example.test\nSubject: number {i}\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: <{i}@example.net>\n\n{filler}{needle}\n",
            i % 50,
            i % 50
        );
        std::fs::write(cur.join(format!("17000{i:05}.M{i}P1.host:2,")), msg).unwrap();
    }
    // The daemons run as postern-mail when the tests run as root (created at start).
    let server = setup.start();
    if harness::is_root() {
        let mail = server.setup().path("state/mail");
        let status = std::process::Command::new("chown")
            .args(["-R", "postern-mail:postern-mail"])
            .arg(&mail)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let port = server.setup().port("imaps").to_string();
    let (status, out, err) = python(SCRIPT, &[&port, &COUNT.to_string()]);
    println!("{out}{err}");
    assert!(status.success());
    server.assert_no_panic();
}

//! postern-mda through the real `lmtp.sock`, driven by Python's smtplib.LMTP (a client we did
//! not write) and by raw pipelined bytes: delivery into Maildirs with per-recipient replies,
//! alias fan-out de-duplicated, +tag, headers, and refusals that leave the connection usable.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use harness::*;

fn start() -> Server {
    let setup = Setup::new("[limits]\nmessage_size = 4096\n");
    setup.add_user("alice@example.test", "pw");
    setup.add_user("bob@example.test", "pw");
    write(
        &setup.path("etc/aliases"),
        "info@example.test: alice@example.test, bob@example.test, far@elsewhere.net\n",
    );
    setup.start()
}

const CLIENT: &str = r#"
import smtplib, sys
s = smtplib.LMTP(sys.argv[1])
print(s.ehlo("client.example")[0])  # LMTP.ehlo sends LHLO
print(s.mail("sender@elsewhere.net")[0])
rcpts = sys.argv[2].split(",")
accepted = 0
for r in rcpts:
    code, msg = s.rcpt(r)
    print(r, code, msg.decode())
    if code == 250:
        accepted += 1
body = open(sys.argv[3], "rb").read()
code, msg = s.data(body)
print("data", code, msg.decode())
for _ in range(accepted - 1):
    code, msg = s.getreply()
    print("data", code, msg.decode())
print("noop", s.noop()[0])
s.quit()
"#;

fn lmtp_client(server: &Server, rcpts: &[&str], body: &str) -> String {
    let body_file = server.setup().path("body.eml");
    std::fs::write(&body_file, body).unwrap();
    let socket = server.setup().path("run/lmtp.sock");
    let (status, out, err) = python(
        CLIENT,
        &[
            socket.to_str().unwrap(),
            &rcpts.join(","),
            body_file.to_str().unwrap(),
        ],
    );
    assert!(status.success(), "{out}\n{err}");
    out
}

#[test]
fn delivers_per_recipient_with_fan_out_tags_and_headers() {
    let server = start();
    let out = lmtp_client(
        &server,
        &[
            "alice@example.test",
            "info@example.test",
            "nobody@example.test",
            "bob+lists@example.test",
        ],
        "Subject: hello\r\nFrom: sender@elsewhere.net\r\n\r\nHi there.\r\n.leading dot\r\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "250");
    assert!(
        lines.contains(&"alice@example.test 250 2.1.5 recipient OK"),
        "{out}"
    );
    assert!(
        lines.contains(&"info@example.test 250 2.1.5 recipient OK"),
        "{out}"
    );
    assert!(
        lines.contains(&"nobody@example.test 550 5.1.1 mailbox unavailable"),
        "{out}"
    );
    assert!(
        lines.contains(&"bob+lists@example.test 250 2.1.5 recipient OK"),
        "{out}"
    );
    assert_eq!(
        out.matches("data 250 2.0.0 delivered").count(),
        3,
        "one reply per accepted recipient:\n{out}"
    );
    assert!(out.contains("noop 250"), "{out}");

    // alice: once (directly and through info, de-duplicated); bob: once (through info and
    // bob+lists, de-duplicated).
    let alice = server.maildir("alice@example.test");
    let bob = server.maildir("bob@example.test");
    assert_eq!((alice.len(), bob.len()), (1, 1), "{alice:?} {bob:?}");
    let text = std::fs::read_to_string(&alice[0]).unwrap();
    assert!(text.starts_with("Return-Path: <sender@elsewhere.net>\nDelivered-To: alice@example.test\nSubject: hello\n"), "{text}");
    assert!(
        text.ends_with("\nHi there.\n.leading dot\n"),
        "smtplib dot-stuffs, the MDA unstuffs; LF line ends: {text:?}"
    );
    let name = alice[0].file_name().unwrap().to_string_lossy().to_string();
    let size = std::fs::metadata(&alice[0]).unwrap().len();
    assert!(name.contains(&format!(",S={size},")), "{name}");
    let log = server.log_text();
    assert_eq!(log.matches("event=\"delivery.ok\"").count(), 2, "{log}");
}

/// Raw bytes: a whole transaction in one write (PIPELINING), then a message with a bare LF
/// (refused for each recipient, nothing delivered) and an oversized one; the connection
/// keeps working throughout.
#[test]
fn pipelined_transaction_and_refused_messages() {
    let server = start();
    let stream = UnixStream::connect(server.setup().path("run/lmtp.sock")).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut read_reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    };
    assert!(read_reply().starts_with("220 "));
    w.write_all(b"LHLO c\r\nMAIL FROM:<s@elsewhere.net>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: piped\r\n\r\nbody\r\n.\r\nNOOP\r\n").unwrap();
    let lhlo = read_reply();
    assert!(
        lhlo.contains("250-PIPELINING") && lhlo.contains("250 SIZE 4096"),
        "{lhlo}"
    );
    for expected in [
        "250 2.1.0",
        "250 2.1.5",
        "250 2.1.5",
        "354 ",
        "250 2.0.0 delivered",
        "250 2.0.0 delivered",
        "250 2.0.0 OK",
    ] {
        let got = read_reply();
        assert!(
            got.starts_with(expected),
            "expected {expected:?}, got {got:?}"
        );
    }
    // SMTP smuggling attempt: "\n.\r\n" must not end the message, and the message is refused.
    w.write_all(b"MAIL FROM:<s@elsewhere.net>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        .unwrap();
    for expected in ["250", "250", "354"] {
        assert!(read_reply().starts_with(expected));
    }
    w.write_all(b"Subject: evil\r\n\r\nx\n.\r\nMAIL FROM:<smuggled@evil>\r\n.\r\n")
        .unwrap();
    assert_eq!(
        read_reply(),
        "550 5.5.2 message contains a bare <LF> or <CR>: lines must end with <CR><LF>\r\n"
    );
    // Too big: read to its end, then refused.
    w.write_all(b"MAIL FROM:<s@elsewhere.net>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        .unwrap();
    for expected in ["250", "250", "354"] {
        assert!(read_reply().starts_with(expected));
    }
    let big = format!("Subject: big\r\n\r\n{}\r\n.\r\n", "x".repeat(5000));
    w.write_all(big.as_bytes()).unwrap();
    assert!(read_reply().starts_with("552 5.3.4"));
    w.write_all(b"NOOP\r\n").unwrap();
    assert!(read_reply().starts_with("250"));
    assert_eq!(
        server.maildir("alice@example.test").len(),
        1,
        "only the piped message"
    );
    assert_eq!(
        server.maildir("bob@example.test").len(),
        1,
        "only the piped message"
    );
    w.write_all(b"QUIT\r\n").unwrap();
    assert!(read_reply().starts_with("221"));
}

#[test]
fn maildirs_belong_to_the_mail_user() {
    if !is_root() {
        eprintln!("SKIPPED: ownership of Maildirs is only meaningful as root");
        return;
    }
    let server = start();
    lmtp_client(&server, &["alice@example.test"], "Subject: x\r\n\r\ny\r\n");
    use std::os::unix::fs::MetadataExt;
    let mail = nix::unistd::User::from_name("postern-mail")
        .unwrap()
        .unwrap();
    let dir = server.setup().path("state/mail/example.test/alice");
    for path in [
        dir.clone(),
        dir.join("new"),
        server.maildir("alice@example.test")[0].clone(),
    ] {
        let meta = std::fs::metadata(Path::new(&path)).unwrap();
        assert_eq!(meta.uid(), mail.uid.as_raw(), "{}", path.display());
    }
}

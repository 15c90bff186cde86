//! Hostile SMTP clients (STYLE §7): pipelining, bytes injected after STARTTLS, smuggling
//! sequences, over-long lines, oversized messages, too many recipients, errors, idle clients,
//! connection floods. Each asserts the exact reply and that the next connection is served.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::*;

const LIMITS: &str = "[limits]\nmessage_size = 2000\nrecipients = 3\nerrors = 4\ncommands_before_mail = 8\nidle_timeout = \"2s\"\nconnections_per_ip = 3\n";

fn start() -> Server {
    let setup = Setup::new(LIMITS);
    setup.add_user("alice@example.test", "alice-pw");
    setup.add_user("jörg@example.test", "jörg-pw");
    setup.start()
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(server: &Server) -> Client {
        let s = TcpStream::connect(server.setup().addr("smtp")).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        };
        let greeting = c.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// One whole reply (all lines of a multi-line one).
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    fn closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(self.r.read_line(&mut line), Ok(0) | Err(_))
    }
}

fn still_served(server: &Server) {
    let mut c = Client::connect(server);
    assert!(c.cmd("EHLO again").starts_with("250"));
    assert!(c.cmd("QUIT").starts_with("221"));
}

#[test]
fn a_whole_pipelined_transaction_in_one_write() {
    let server = start();
    let mut c = Client::connect(&server);
    c.send(b"EHLO piper\r\nMAIL FROM:<p@elsewhere.net>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: piped\r\n\r\nall at once\r\n.\r\nQUIT\r\n");
    let expected = [
        "250-",
        "250 2.1.0",
        "250 2.1.5",
        "354 ",
        "250 2.0.0 OK queued as ",
        "221 2.0.0",
    ];
    for e in expected {
        let got = c.reply();
        assert!(got.starts_with(e), "expected {e:?}, got {got:?}");
    }
    wait_until("delivery", || {
        server.maildir("alice@example.test").len() == 1
    });
}

#[test]
fn commands_injected_before_the_tls_handshake_are_discarded() {
    let server = start();
    // STARTTLS and a MAIL FROM in one packet: the MAIL must never be executed (CVE-2011-0411).
    let script = format!(
        r#"
import socket, ssl
s = socket.create_connection(("127.0.0.1", {port}), timeout=20)
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO x\r\n")
while True:
    l = f.readline()
    if l[3:4] == b" ": break
s.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
print("starttls", f.readline().decode().strip())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s)
tf = t.makefile("rb")
t.sendall(b"EHLO y\r\n")
print("first-after-tls", tf.readline().decode().strip())
"#,
        port = server.setup().port("smtp")
    );
    let (status, out, err) = python(&script, &[]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("starttls 220 2.0.0"), "{out}");
    assert!(
        out.contains("first-after-tls 250-mail.example.test"),
        "the injected MAIL was answered:\n{out}"
    );
    still_served(&server);
}

#[test]
fn smuggling_sequences_are_refused_and_nothing_is_delivered() {
    let server = start();
    for evil in [
        &b"Subject: a\r\n\r\nx\n.\r\nMAIL FROM:<smuggled@evil>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nsmuggled\r\n.\r\n"[..],
        &b"Subject: b\r\n\r\nx\r\n.\nMAIL FROM:<smuggled@evil>\r\n.\r\n"[..],
        &b"Subject: c\r\n\r\nx\r.\r\nMAIL FROM:<smuggled@evil>\r\n.\r\n"[..],
    ] {
        let mut c = Client::connect(&server);
        c.cmd("EHLO x");
        assert!(c.cmd("MAIL FROM:<s@elsewhere.net>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(evil);
        let got = c.reply();
        assert_eq!(got, "550 5.5.2 message contains a bare <LF> or <CR>: lines must end with <CR><LF>\r\n");
        assert!(c.cmd("NOOP").starts_with("250 2.0.0"), "connection stays in step");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.maildir("alice@example.test").is_empty(),
        "a smuggled message was delivered"
    );
    still_served(&server);
}

#[test]
fn limits_on_lines_sizes_and_recipients() {
    let server = start();
    let mut c = Client::connect(&server);
    c.cmd("EHLO x");
    let long = format!("NOOP {}", "x".repeat(5000));
    assert_eq!(c.cmd(&long), "500 5.5.2 line too long\r\n");
    assert!(
        c.cmd("MAIL FROM:<s@elsewhere.net> SIZE=999999")
            .starts_with("552 5.3.4")
    );
    assert!(c.cmd("MAIL FROM:<s@elsewhere.net>").starts_with("250"));
    for _ in 0..3 {
        assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250"));
    }
    assert_eq!(
        c.cmd("RCPT TO:<alice@example.test>"),
        "452 4.5.3 too many recipients\r\n"
    );
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Subject: big\r\n\r\n{}\r\n.\r\n", "y".repeat(3000)).as_bytes());
    assert_eq!(
        c.reply(),
        "552 5.3.4 message size exceeds fixed maximum\r\n"
    );
    assert!(c.cmd("RSET").starts_with("250"));
    still_served(&server);
}

#[test]
fn too_many_errors_or_idle_commands_close_the_session() {
    let server = start();
    let mut c = Client::connect(&server);
    for _ in 0..3 {
        assert!(c.cmd("BOGUS").starts_with("500 5.5.1"));
    }
    assert_eq!(
        c.cmd("BOGUS"),
        "421 4.7.0 too many errors: closing connection\r\n"
    );
    assert!(c.closed());
    let mut c = Client::connect(&server);
    for _ in 0..8 {
        assert!(c.cmd("NOOP").starts_with("250"));
    }
    assert!(c.cmd("NOOP").starts_with("421 4.7.0"));
    assert!(c.closed());
    still_served(&server);
}

#[test]
fn an_idle_client_is_disconnected_and_floods_are_limited() {
    let server = start();
    let mut idle = Client::connect(&server);
    let got = idle.reply();
    assert_eq!(got, "421 4.4.2 timeout: closing connection\r\n");
    // Three connections from one address are allowed, the fourth is refused.
    let held: Vec<Client> = (0..3).map(|_| Client::connect(&server)).collect();
    let s = TcpStream::connect(server.setup().addr("smtp")).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    assert_eq!(line, "421 4.7.0 too many connections; try again later\r\n");
    drop(held);
    wait_until("a slot to free up", || {
        let s = TcpStream::connect(server.setup().addr("smtp")).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap_or(0);
        line.starts_with("220")
    });
}

#[test]
fn bdat_chunks_and_utf8_addresses_are_delivered_intact() {
    let server = start();
    let mut c = Client::connect(&server);
    let ehlo = c.cmd("EHLO x");
    assert!(
        ehlo.contains("CHUNKING") && ehlo.contains("SMTPUTF8") && ehlo.contains("8BITMIME"),
        "{ehlo}"
    );
    assert!(
        c.cmd("MAIL FROM:<sénder@élsewhere.net> SMTPUTF8 BODY=8BITMIME")
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<jörg@example.test>").starts_with("250"),
        "UTF-8 local part"
    );
    let part1 = "Subject: Grüße\r\n\r\n";
    let part2 = "8-bit body: äöü\r\n";
    c.send(format!("BDAT {}\r\n{part1}", part1.len()).as_bytes());
    assert!(c.reply().starts_with("250 2.0.0"));
    c.send(format!("BDAT {} LAST\r\n{part2}", part2.len()).as_bytes());
    assert!(c.reply().starts_with("250 2.0.0 OK queued"));
    wait_until("delivery", || {
        server.maildir("jörg@example.test").len() == 1
    });
    let text = std::fs::read_to_string(&server.maildir("jörg@example.test")[0]).unwrap();
    assert!(
        text.contains("Return-Path: <sénder@élsewhere.net>"),
        "{text}"
    );
    assert!(text.contains("Delivered-To: jörg@example.test"), "{text}");
    assert!(text.contains("with UTF8SMTP id"), "{text}");
    assert!(
        text.ends_with("Subject: Grüße\n\n8-bit body: äöü\n"),
        "{text:?}"
    );
    still_served(&server);
}

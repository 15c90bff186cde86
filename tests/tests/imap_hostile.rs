//! Hostile IMAP clients against the real server (STYLE §7): a huge literal, a huge
//! non-synchronizing literal, an unterminated literal, deep parentheses, a command flood
//! before login, too many errors, an over-long line, a slow client, and plaintext pipelined
//! after STARTTLS. Each checks the exact reply and that the next connection is served.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::{Server, Setup, python};

const GREETING: &str = "* OK [CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS LOGINDISABLED ID LITERAL+ ENABLE] Postern ready\r\n";

fn server() -> Server {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "alice-pw");
    setup.start()
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(server: &Server) -> Client {
        let stream = TcpStream::connect(server.setup().addr("imap")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut c = Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert_eq!(c.line(), GREETING);
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// True when the server closed the connection (EOF or reset).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// A fresh connection still gets its greeting and an answer.
fn still_serving(server: &Server) {
    let mut c = Client::connect(server);
    c.send(b"z NOOP\r\n");
    assert_eq!(c.line(), "z OK done\r\n");
    server.assert_no_panic();
}

#[test]
fn huge_literal_is_refused_before_its_continuation() {
    let server = server();
    let mut c = Client::connect(&server);
    c.send(b"a1 APPEND INBOX {1000000000}\r\n");
    assert_eq!(c.line(), "a1 NO [TOOBIG] Literal too large\r\n");
    c.send(b"a2 NOOP\r\n");
    assert_eq!(c.line(), "a2 OK done\r\n");
    still_serving(&server);
}

#[test]
fn huge_non_synchronizing_literal_closes() {
    let server = server();
    let mut c = Client::connect(&server);
    c.send(b"a1 APPEND INBOX {1000000000+}\r\nxxxxxxxx");
    assert_eq!(c.line(), "a1 BAD [TOOBIG] Literal too large\r\n");
    assert_eq!(
        c.line(),
        "* BYE [TOOBIG] Closing: literal data cannot be skipped\r\n"
    );
    assert!(c.closed());
    still_serving(&server);
}

#[test]
fn unterminated_literal_and_eof() {
    let server = server();
    let mut c = Client::connect(&server);
    c.send(b"a1 LOGIN {5}\r\n");
    assert_eq!(c.line(), "+ OK\r\n");
    c.send(b"ab");
    c.writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.closed());
    still_serving(&server);
}

#[test]
fn deep_parentheses_are_bad() {
    let server = server();
    let mut c = Client::connect(&server);
    let mut cmd = b"a1 SEARCH ".to_vec();
    cmd.extend(std::iter::repeat_n(b'(', 10_000));
    cmd.extend_from_slice(b"\r\n");
    c.send(&cmd);
    assert_eq!(c.line(), "a1 BAD Too deeply nested\r\n");
    c.send(b"a2 NOOP\r\n");
    assert_eq!(c.line(), "a2 OK done\r\n");
    still_serving(&server);
}

#[test]
fn command_flood_before_login_is_cut_off() {
    let server = server();
    let mut c = Client::connect(&server);
    let flood: Vec<u8> = (0..100)
        .flat_map(|i| format!("f{i} NOOP\r\n").into_bytes())
        .collect();
    c.send(&flood);
    for i in 0..20 {
        assert_eq!(c.line(), format!("f{i} OK done\r\n"));
    }
    assert_eq!(c.line(), "* BYE Too many commands before login\r\n");
    assert!(c.closed());
    server.wait_log("imap.too_many_commands", 0);
    still_serving(&server);
}

#[test]
fn too_many_errors_close_with_bye() {
    let server = server();
    let mut c = Client::connect(&server);
    for i in 0..19 {
        c.send(format!("e{i} FROBNICATE\r\n").as_bytes());
        assert_eq!(c.line(), format!("e{i} BAD Unknown command\r\n"));
    }
    c.send(b"e19 FROBNICATE\r\n");
    assert_eq!(c.line(), "e19 BAD Unknown command\r\n");
    assert_eq!(c.line(), "* BYE Too many errors\r\n");
    assert!(c.closed());
    still_serving(&server);
}

#[test]
fn over_long_line_is_bad_and_the_session_goes_on() {
    let server = server();
    let mut c = Client::connect(&server);
    let mut cmd = b"a1 NOOP ".to_vec();
    cmd.extend(std::iter::repeat_n(b'x', 200_000));
    cmd.extend_from_slice(b"\r\na2 NOOP\r\n");
    c.send(&cmd);
    assert_eq!(c.line(), "a1 BAD Command line too long\r\n");
    assert_eq!(c.line(), "a2 OK done\r\n");
    still_serving(&server);
}

#[test]
fn slow_client_byte_by_byte() {
    let server = server();
    let mut c = Client::connect(&server);
    for b in b"s1 CAPABILITY\r\n" {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(
        c.line()
            .starts_with("* CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS LOGINDISABLED")
    );
    assert_eq!(c.line(), "s1 OK done\r\n");
    still_serving(&server);
}

/// Commands pipelined in clear after STARTTLS must not be run under TLS (RFC 9051 §6.2.1).
const PIPELINED_STARTTLS: &str = r#"
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
f = s.makefile("rb")
f.readline()
s.sendall(b"a1 STARTTLS\r\na2 LOGIN alice@example.test alice-pw\r\n")
assert f.readline() == b"a1 OK Begin TLS negotiation now\r\n"
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="mail.example.test")
t.sendall(b"a3 NOOP\r\n")
g = t.makefile("rb")
line = g.readline()
assert line == b"a3 OK done\r\n", line
t.sendall(b"a4 SELECT INBOX\r\n")
line = g.readline()
assert line == b"a4 BAD Not allowed in this state\r\n", line
print("pipelined LOGIN was dropped")
"#;

#[test]
fn plaintext_pipelined_after_starttls_is_dropped() {
    let server = server();
    let port = server.setup().port("imap").to_string();
    let (status, out, err) = python(PIPELINED_STARTTLS, &[&port]);
    println!("{out}{err}");
    assert!(status.success());
    server.wait_log("imap.starttls_dropped", 0);
    still_serving(&server);
}

#[test]
fn silent_client_is_logged_out_and_sessions_per_user_are_capped() {
    let setup = Setup::new("[limits]\nidle_timeout = \"1s\"\n\n[imap]\nsessions_per_user = 2\n");
    setup.add_user("alice@example.test", "alice-pw");
    let server = setup.start();
    let mut c = Client::connect(&server);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.line(), "* BYE Autologout: idle for too long\r\n");
    assert!(c.closed());
    let port = server.setup().port("imaps").to_string();
    let (status, out, err) = python(SESSIONS_PER_USER, &[&port]);
    println!("{out}{err}");
    assert!(status.success());
    server.wait_log("imap.too_many_user_sessions", 0);
    still_serving(&server);
}

/// Two sessions of one user are allowed, the third is refused until one ends.
const SESSIONS_PER_USER: &str = r#"
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def connect():
    return imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx)
a, b, c = connect(), connect(), connect()
a.login("alice@example.test", "alice-pw")
b.login("alice@example.test", "alice-pw")
try:
    c.login("alice@example.test", "alice-pw")
    raise SystemExit("third session accepted")
except imaplib.IMAP4.error as e:
    assert "[LIMIT]" in str(e), e
a.logout()
import time; time.sleep(0.2)
c.login("alice@example.test", "alice-pw")
print("third session after the first ended")
"#;

/// authd unreachable: `NO [UNAVAILABLE]` (RFC 5530), and logins work again once it is back.
#[test]
fn authd_unreachable_is_unavailable_not_a_wrong_password() {
    let server = server();
    let socket = server.setup().path("run/auth.sock");
    let moved = server.setup().path("run/auth.sock.away");
    std::fs::rename(&socket, &moved).unwrap();
    let port = server.setup().port("imaps").to_string();
    let (status, out, err) = python(LOGIN_EXPECT, &[&port, "UNAVAILABLE"]);
    println!("{out}{err}");
    std::fs::rename(&moved, &socket).unwrap();
    assert!(status.success());
    server.wait_log("imap.auth_unavailable", 0);
    let (status, out, err) = python(LOGIN_EXPECT, &[&port, "OK"]);
    println!("{out}{err}");
    assert!(status.success());
}

const LOGIN_EXPECT: &str = r#"
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx)
try:
    typ, data = m.login("alice@example.test", "alice-pw")
    got = typ
except imaplib.IMAP4.error as e:
    got = str(e)
print(got)
assert sys.argv[2] in got, got
"#;

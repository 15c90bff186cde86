//! Hostile POP3 clients (STYLE §7) against the real server: a slow client, the idle timeout,
//! an over-long line, bad commands before and after login, a command flood, bytes pipelined
//! past STLS, too many connections. Each asserts the exact reply and that the next connection
//! is still served.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use harness::*;

const GREETING: &str = "+OK mail.example.test POP3 Postern ready\r\n";

fn start() -> Server {
    let setup = Setup::new(
        "[pop3]\nidle_timeout = \"2s\"\nerrors = 5\ncommands_before_auth = 8\nconnections_per_ip = 4\n",
    );
    setup.add_user("alice@example.test", "alice-pw");
    write(&setup.path("etc/aliases"), "");
    setup.start()
}

struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut c = Client { stream, reader };
        assert_eq!(c.line(), GREETING);
        c
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// True when the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut rest = String::new();
        matches!(self.reader.read_line(&mut rest), Ok(0))
    }
}

/// The next connection gets a greeting and a working CAPA.
fn assert_served(server: &Server) {
    let mut c = Client::connect(server.setup().addr("pop3"));
    assert_eq!(c.command("CAPA"), "+OK Capability list follows\r\n");
    while c.line() != ".\r\n" {}
    assert_eq!(c.command("QUIT"), "+OK Postern POP3 server signing off\r\n");
}

#[test]
fn a_slow_client_is_served_byte_by_byte() {
    let server = start();
    let mut c = Client::connect(server.setup().addr("pop3"));
    for b in b"NOOP\r\n" {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.line(), "-ERR command not valid in this state\r\n");
    for b in b"QUIT\r\n" {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.line(), "+OK Postern POP3 server signing off\r\n");
    assert_served(&server);
}

#[test]
fn an_idle_client_is_logged_out() {
    let server = start();
    let mut c = Client::connect(server.setup().addr("pop3"));
    let started = std::time::Instant::now();
    assert_eq!(
        c.line(),
        "-ERR autologout: idle timeout; closing connection\r\n"
    );
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert!(c.closed());
    assert!(server.log_text().contains("pop3.timeout"));
    assert_served(&server);
}

#[test]
fn an_over_long_line_is_refused_and_the_session_goes_on() {
    let server = start();
    let mut c = Client::connect(server.setup().addr("pop3"));
    let long = format!("USER {}\r\n", "a".repeat(100_000));
    c.send(long.as_bytes());
    assert_eq!(c.line(), "-ERR line too long\r\n");
    assert_eq!(c.command("CAPA"), "+OK Capability list follows\r\n");
    while c.line() != ".\r\n" {}
    assert!(server.log_text().contains("pop3.line_too_long"));
    assert_served(&server);
}

#[test]
fn bad_commands_before_and_after_login_then_too_many_errors() {
    let server = start();
    let mut c = Client::connect(server.setup().addr("pop3"));
    assert_eq!(c.command("HELLO"), "-ERR unknown command\r\n");
    assert_eq!(c.command("RETR x"), "-ERR syntax error\r\n");
    assert_eq!(
        c.command("STAT"),
        "-ERR command not valid in this state\r\n"
    );
    assert_eq!(c.command(""), "-ERR unknown command\r\n");
    assert_eq!(
        c.command("PASS secret"),
        "-ERR too many bad commands; closing connection\r\n"
    );
    assert!(c.closed());
    assert!(server.log_text().contains("pop3.too_many_errors"));
    assert_served(&server);
    // After login (over TLS, with Python): errors get their exact replies too.
    let s = server.setup();
    let script = format!(
        "import poplib, ssl\nctx = ssl.create_default_context(cafile={:?})\nctx.check_hostname = False\n\
         p = poplib.POP3_SSL('127.0.0.1', {}, context=ctx)\np.user('alice@example.test'); p.pass_('alice-pw')\n\
         for cmd in ['RETR 1', 'TOP 1', 'USER x', 'DELE 99999999999']:\n    \
         try:\n        print(cmd, p._shortcmd(cmd))\n    except poplib.error_proto as e:\n        print(cmd, e)\n\
         print('stat', p.stat())\np.quit()\n",
        s.path("tls/cert.pem").display().to_string(),
        s.port("pop3s")
    );
    let (status, out, err) = python(&script, &[]);
    assert!(status.success(), "{out}{err}");
    for expected in [
        "RETR 1 b'-ERR no such message'",
        "TOP 1 b'-ERR syntax error'",
        "USER x b'-ERR command not valid in this state'",
        "DELE 99999999999 b'-ERR syntax error'",
        "stat (0, 0)",
    ] {
        assert!(out.contains(expected), "{expected}:\n{out}");
    }
}

#[test]
fn a_command_flood_before_login_is_cut_off() {
    let server = start();
    let mut c = Client::connect(server.setup().addr("pop3"));
    c.send("UTF8\r\n".repeat(50).as_bytes());
    for _ in 0..8 {
        assert_eq!(c.line(), "+OK UTF8 enabled\r\n");
    }
    assert_eq!(
        c.line(),
        "-ERR too many commands before login; closing connection\r\n"
    );
    assert!(c.closed());
    assert!(server.log_text().contains("pop3.too_many_commands"));
    assert_served(&server);
}

#[test]
fn bytes_pipelined_past_stls_are_discarded() {
    let server = start();
    let s = server.setup();
    // Python sends STLS with commands behind it in one packet, then does the handshake: the
    // commands must not run (CVE-2011-0411); the first reply over TLS answers QUIT.
    let script = format!(
        "import socket, ssl\nctx = ssl.create_default_context(cafile={:?})\nctx.check_hostname = False\n\
         s = socket.create_connection(('127.0.0.1', {}))\nf = s.makefile('rb')\nprint(f.readline())\n\
         s.sendall(b'STLS\\r\\nUSER alice@example.test\\r\\nPASS alice-pw\\r\\nSTAT\\r\\n')\nprint(f.readline())\n\
         t = ctx.wrap_socket(s, server_hostname='mail.example.test')\ng = t.makefile('rb')\n\
         t.sendall(b'QUIT\\r\\n')\nprint(g.readline())\n",
        s.path("tls/cert.pem").display().to_string(),
        s.port("pop3")
    );
    let (status, out, err) = python(&script, &[]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(
        out,
        "b'+OK mail.example.test POP3 Postern ready\\r\\n'\n\
         b'+OK begin TLS negotiation\\r\\n'\n\
         b'+OK Postern POP3 server signing off\\r\\n'\n"
    );
    assert!(!server.log_text().contains("pop3.login"));
    assert_served(&server);
}

#[test]
fn too_many_connections_from_one_address() {
    let server = start();
    let held: Vec<Client> = (0..4)
        .map(|_| Client::connect(server.setup().addr("pop3")))
        .collect();
    let stream = TcpStream::connect(server.setup().addr("pop3")).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    assert_eq!(
        line,
        "-ERR [SYS/TEMP] too many connections; try again later\r\n"
    );
    assert!(server.log_text().contains("pop3.too_many_connections"));
    drop(held);
    wait_until("a slot is free again", || {
        let s = TcpStream::connect(server.setup().addr("pop3")).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut l = String::new();
        let _ = BufReader::new(s).read_line(&mut l);
        l == GREETING
    });
    assert_served(&server);
}

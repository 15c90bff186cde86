//! postern-pop3d with real clients: Python's poplib over 110 with STLS and over 995, curl,
//! fetchmail (when installed). Login refused before STLS, one session per maildrop
//! (`[IN-USE]`), DELE applied only after QUIT and durably, a dropped or killed session deletes
//! nothing, UIDLs stable across restarts, \Seen set on retrieved messages. Mail arrives by SMTP
//! through the real server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;

use harness::*;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

fn start(extra: &str) -> Server {
    let setup = Setup::new(extra);
    setup.add_user(ALICE, "alice-pw");
    setup.add_user(BOB, "bob-pw");
    write(&setup.path("etc/aliases"), "");
    setup.start()
}

/// Runs Python with PORT110, PORT995, PORT25, CAFILE, `ctx` (trusting the test certificate)
/// and `import poplib, smtplib, ssl, sys` defined.
fn py(server: &Server, body: &str) -> String {
    let s = server.setup();
    let script = format!(
        "import poplib, smtplib, ssl, sys, socket, time\nPORT110={}\nPORT995={}\nPORT25={}\nCAFILE={:?}\n\
         ctx = ssl.create_default_context(cafile=CAFILE)\nctx.check_hostname = False\n{body}",
        s.port("pop3"),
        s.port("pop3s"),
        s.port("smtp"),
        s.path("tls/cert.pem").display().to_string()
    );
    let (status, out, err) = python(&script, &[]);
    assert!(status.success(), "python failed:\n{out}\n{err}");
    out
}

/// Sends `n` messages to `to` through the server's port 25 and waits until they are stored.
fn send_mail(server: &Server, to: &str, n: usize) {
    let before = server.mailbox_files(to).len();
    py(
        server,
        &format!(
            "s = smtplib.SMTP('127.0.0.1', PORT25)\n\
             for i in range({n}):\n    \
             s.sendmail('sender@elsewhere.net', [{to:?}], ('Subject: message %d\\r\\n\\r\\nBody of message %d.\\r\\n.leading dot\\r\\n' % (i, i)).encode())\n\
             s.quit()\n"
        ),
    );
    wait_until(&format!("{n} more message(s) for {to}"), || {
        server.mailbox_files(to).len() >= before + n
    });
}

#[test]
fn poplib_over_stls_and_pop3s_retrieves_deletes_and_marks_seen() {
    let server = start("");
    send_mail(&server, ALICE, 3);
    let out = py(
        &server,
        r#"
p = poplib.POP3("127.0.0.1", PORT110)
print("greeting", p.getwelcome())
caps = p.capa()
print("caps before", sorted(caps))
try:
    p.user("alice@example.test")
    print("user accepted before STLS")
except poplib.error_proto as e:
    print("user refused", e)
p.stls(context=ctx)
caps = p.capa()
print("caps after", sorted(caps))
p.user("alice@example.test")
print("pass", p.pass_("alice-pw"))
print("stat", p.stat())
resp, listing, _ = p.list()
print("list", [l.decode() for l in listing])
resp, uidls, _ = p.uidl()
print("uidl", [u.decode() for u in uidls])
resp, lines, octets = p.retr(2)
print("retr", resp, lines)
resp, lines, octets = p.top(3, 0)
print("top", lines)
print("dele", p.dele(1))
try:
    p.retr(1)
except poplib.error_proto as e:
    print("retr deleted", e)
print("stat after dele", p.stat())
print("quit", p.quit())
s = poplib.POP3_SSL("127.0.0.1", PORT995, context=ctx)
s.user("alice@example.test")
s.pass_("alice-pw")
print("995 stat", s.stat())
resp, uidls, _ = s.uidl()
print("995 uidl", [u.decode() for u in uidls])
s.quit()
"#,
    );
    assert!(
        out.contains("greeting b'+OK mail.example.test POP3 Postern ready'"),
        "{out}"
    );
    assert!(
        out.contains("caps before ['AUTH-RESP-CODE', 'EXPIRE', 'IMPLEMENTATION', 'PIPELINING', 'RESP-CODES', 'STLS', 'TOP', 'UIDL', 'UTF8']"),
        "no USER/SASL before STLS:\n{out}"
    );
    assert!(
        out.contains("user refused b'-ERR plaintext authentication disallowed: issue STLS first'"),
        "{out}"
    );
    assert!(
        out.contains("caps after ['AUTH-RESP-CODE', 'EXPIRE', 'IMPLEMENTATION', 'PIPELINING', 'RESP-CODES', 'SASL', 'TOP', 'UIDL', 'USER', 'UTF8']"),
        "{out}"
    );
    assert!(out.contains("pass b'+OK logged in'"), "{out}");
    assert!(out.contains("stat (3, "), "{out}");
    // Deliveries may be stored in any order: check the shape, not which message is where.
    let line = |label: &str| out.lines().find(|l| l.starts_with(label)).unwrap_or("");
    let retr = line("retr b'");
    assert!(
        retr.starts_with("retr b'+OK 298 octets'")
            && retr.contains("b'', b'Body of message ")
            && retr.ends_with(", b'.leading dot']"),
        "dot-unstuffed by poplib:\n{out}"
    );
    let top = line("top [");
    assert!(
        top.contains("b'Subject: message ") && top.ends_with("b'']") && !top.contains("Body"),
        "TOP 3 0 sends the header only:\n{out}"
    );
    assert!(
        out.contains("retr deleted b'-ERR no such message'"),
        "{out}"
    );
    assert!(out.contains("stat after dele (2, "), "{out}");
    assert!(
        out.contains("quit b'+OK Postern POP3 server signing off'"),
        "{out}"
    );
    assert!(out.contains("995 stat (2, "), "{out}");
    // UIDLs are stable: messages 2 and 3 keep theirs in the next session.
    let uidls = |label: &str| -> Vec<String> {
        let line = out.lines().find(|l| l.starts_with(label)).unwrap();
        line.split('\'')
            .skip(1)
            .filter(|part| part.starts_with(|c: char| c.is_ascii_digit()))
            .filter_map(|part| part.split_once(' ').map(|(_, u)| u.to_string()))
            .collect()
    };
    let first = uidls("uidl ");
    let second = uidls("995 uidl ");
    assert_eq!(first.len(), 3, "{out}");
    assert_eq!(second, first[1..].to_vec(), "{out}");
    // The deletion is durable; the retrieved message is \Seen, the one only TOPped is not.
    let files = server.mailbox_files(ALICE);
    assert_eq!(files.len(), 2, "{files:?}");
    let seen: Vec<bool> = files
        .iter()
        .map(|f| f.to_string_lossy().ends_with(":2,S"))
        .collect();
    assert_eq!(seen.iter().filter(|s| **s).count(), 1, "{files:?}");
    let log = server.log_text();
    assert!(
        log.contains("pop3.update") && log.contains("deleted=1"),
        "{log}"
    );
}

#[test]
fn auth_plain_and_wrong_passwords() {
    let server = start("");
    send_mail(&server, BOB, 1);
    let out = py(
        &server,
        r#"
import base64
s = poplib.POP3_SSL("127.0.0.1", PORT995, context=ctx)
try:
    s._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0bob@example.test\0wrong").decode())
except poplib.error_proto as e:
    print("wrong", e)
print("plain", s._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0bob@example.test\0bob-pw").decode()))
print("stat", s.stat())
s.quit()
"#,
    );
    assert!(
        out.contains("wrong b'-ERR [AUTH] authentication failed'"),
        "{out}"
    );
    assert!(out.contains("plain b'+OK logged in'"), "{out}");
    assert!(out.contains("stat (1, "), "{out}");
}

#[test]
fn curl_lists_and_retrieves_over_stls_and_pop3s() {
    let server = start("");
    send_mail(&server, ALICE, 2);
    let s = server.setup();
    let curl = |url: String| -> String {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-k",
                "--ssl-reqd",
                "--max-time",
                "20",
                "-u",
                "alice@example.test:alice-pw",
            ])
            .arg(&url)
            .output()
            .expect("curl (Debian package curl) is needed by this test");
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let list = curl(format!("pop3://127.0.0.1:{}/", s.port("pop3")));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].starts_with("1 ") && lines[1].starts_with("2 "),
        "{list}"
    );
    let message = curl(format!("pop3s://127.0.0.1:{}/2", s.port("pop3s")));
    assert!(
        message.contains("Subject: message ") && message.contains("Body of message "),
        "{message}"
    );
    assert!(
        message.contains("\r\n.leading dot\r\n"),
        "unstuffed by curl: {message:?}"
    );
    assert_eq!(server.mailbox_files(ALICE).len(), 2, "curl deletes nothing");
}

/// fetchmail with a private rcfile, id file and MDA writing to `out`; returns (exit code,
/// messages it delivered so far in `out`).
fn fetchmail(server: &Server, dir: &std::path::Path, keep: bool) -> (i32, usize) {
    let s = server.setup();
    let out = dir.join("delivered");
    let rc = dir.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 service {} protocol pop3 timeout 20\n  user \"alice@example.test\" password \"alice-pw\"\n  sslproto 'tls1.2+' sslcertck sslcertfile {:?} sslcommonname mail.example.test\n  mda \"sh -c 'cat >> {}; echo ==END== >> {}'\"\n",
            s.port("pop3"),
            s.path("tls/cert.pem").display().to_string(),
            out.display(),
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let child = Command::new("fetchmail")
        .arg("-f")
        .arg(&rc)
        .arg("--idfile")
        .arg(dir.join("fetchids"))
        .arg("--pidfile")
        .arg(dir.join("fetchmail.pid"))
        .arg(if keep { "--keep" } else { "--nokeep" })
        .args(["--nodetach", "--norewrite", "-v"])
        .env("HOME", dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("fetchmail");
    let (status, stdout, stderr) = wait_output(child, TIMEOUT);
    let code = status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "fetchmail failed ({code}):\n{stdout}\n{stderr}"
    );
    let delivered = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!("fetchmail keep={keep} exit {code}:\n{stderr}");
    (code, delivered.matches("==END==").count())
}

#[test]
fn fetchmail_with_and_without_keep_fetches_each_message_once() {
    if Command::new("fetchmail").arg("--version").output().is_err() {
        eprintln!("SKIPPED: fetchmail is not installed (Debian package fetchmail)");
        return;
    }
    let server = start("");
    send_mail(&server, ALICE, 2);
    let dir = tempfile::tempdir().unwrap();
    // keep: both fetched, both still there; the next run uses UIDL and fetches nothing.
    assert_eq!(fetchmail(&server, dir.path(), true), (0, 2));
    assert_eq!(server.mailbox_files(ALICE).len(), 2);
    assert_eq!(fetchmail(&server, dir.path(), true), (1, 2), "nothing new");
    // A new message, then without keep: only it is fetched, and deleted on the server.
    send_mail(&server, ALICE, 1);
    assert_eq!(fetchmail(&server, dir.path(), false), (0, 3));
    assert_eq!(fetchmail(&server, dir.path(), false), (1, 3), "nothing new");
    let delivered = std::fs::read_to_string(dir.path().join("delivered")).unwrap();
    for i in 0..2 {
        assert_eq!(
            delivered
                .matches(&format!("Subject: message {i}\n"))
                .count(),
            if i == 0 { 2 } else { 1 },
            "{delivered}"
        );
    }
}

/// A raw connection: sends `lines`, returns everything read until EOF or `until` appears.
fn raw(addr: std::net::SocketAddr, send: &str, until: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut got = String::new();
    reader.read_line(&mut got).unwrap();
    stream.write_all(send.as_bytes()).unwrap();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        got.push_str(&line);
        if got.contains(until) {
            break;
        }
    }
    got
}

#[test]
fn login_is_refused_before_stls_on_110() {
    let server = start("");
    let got = raw(
        server.setup().addr("pop3"),
        "USER alice@example.test\r\nPASS alice-pw\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==\r\nSTAT\r\nQUIT\r\n",
        "signing off",
    );
    assert_eq!(
        got,
        "+OK mail.example.test POP3 Postern ready\r\n\
         -ERR plaintext authentication disallowed: issue STLS first\r\n\
         -ERR plaintext authentication disallowed: issue STLS first\r\n\
         -ERR plaintext authentication disallowed: issue STLS first\r\n\
         -ERR command not valid in this state\r\n\
         +OK Postern POP3 server signing off\r\n"
    );
}

#[test]
fn a_second_session_gets_in_use_until_the_first_ends() {
    let server = start("");
    send_mail(&server, ALICE, 1);
    let out = py(
        &server,
        r#"
a = poplib.POP3_SSL("127.0.0.1", PORT995, context=ctx)
a.user("alice@example.test"); a.pass_("alice-pw")
b = poplib.POP3_SSL("127.0.0.1", PORT995, context=ctx)
b.user("alice@example.test")
try:
    b.pass_("alice-pw")
    print("second login accepted")
except poplib.error_proto as e:
    print("second", e)
a.quit()
b.user("alice@example.test")
print("after", b.pass_("alice-pw"))
print("after stat", b.stat())
b.quit()
"#,
    );
    assert!(
        out.contains("second b'-ERR [IN-USE] maildrop already locked by another session'"),
        "{out}"
    );
    assert!(out.contains("after b'+OK logged in'"), "{out}");
    assert!(out.contains("after stat (1, "), "{out}");
}

#[test]
fn a_dropped_or_killed_session_deletes_nothing_and_releases_the_lock() {
    let server = start("");
    send_mail(&server, ALICE, 2);
    // The client goes away after DELE without QUIT.
    py(
        &server,
        r#"
a = poplib.POP3_SSL("127.0.0.1", PORT995, context=ctx)
a.user("alice@example.test"); a.pass_("alice-pw")
a.dele(1); a.dele(2)
a.sock.close()
"#,
    );
    // The daemon itself is killed while a session holds the lock with deletions pending.
    let s = server.setup();
    let script = format!(
        "import poplib, ssl, sys, time\nctx = ssl.create_default_context(cafile={:?})\nctx.check_hostname = False\n\
         a = poplib.POP3_SSL('127.0.0.1', {}, context=ctx)\na.user('alice@example.test'); a.pass_('alice-pw')\n\
         a.dele(1)\nprint('ready', flush=True)\ntime.sleep(20)\n",
        s.path("tls/cert.pem").display().to_string(),
        s.port("pop3s")
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let pop3d = server
        .children()
        .into_iter()
        .find(|(_, n)| n.ends_with("postern-pop3d"))
        .expect("postern-pop3d runs")
        .0;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pop3d),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    wait_until("postern-pop3d restarted", || {
        server
            .children()
            .iter()
            .any(|(pid, n)| n.ends_with("postern-pop3d") && *pid != pop3d)
    });
    assert_eq!(server.mailbox_files(ALICE).len(), 2, "nothing deleted");
    let out = py(
        &server,
        r#"
for attempt in range(100):
    try:
        a = poplib.POP3_SSL("127.0.0.1", PORT995, context=ctx)
        break
    except OSError:
        time.sleep(0.1)
a.user("alice@example.test")
print("login", a.pass_("alice-pw"))
print("stat", a.stat())
a.quit()
"#,
    );
    assert!(out.contains("login b'+OK logged in'"), "{out}");
    assert!(out.contains("stat (2, "), "{out}");
}

#[test]
fn uidls_are_stable_across_a_restart() {
    let server = start("");
    send_mail(&server, ALICE, 3);
    let uidl = |server: &Server| {
        py(
            server,
            r#"
for attempt in range(100):
    try:
        a = poplib.POP3_SSL("127.0.0.1", PORT995, context=ctx)
        break
    except OSError:
        time.sleep(0.1)
a.user("alice@example.test"); a.pass_("alice-pw")
print(a.uidl()[1])
a.retr(1)
a.quit()
"#,
        )
    };
    let before = uidl(&server);
    let mut server = server;
    server.stop();
    let setup = std::mem::replace(server.setup_mut(), Setup::new(""));
    drop(server);
    let server = setup.start();
    let after = uidl(&server);
    assert_eq!(
        before, after,
        "same UIDLs after a restart and a \\Seen rename"
    );
}

/// The UIDL listing of `address` over 995 (after a login with `password`).
fn uidl_listing(server: &Server, address: &str, password: &str) -> String {
    py(
        server,
        &format!(
            "a = poplib.POP3_SSL('127.0.0.1', PORT995, context=ctx)\n\
             a.user({address:?}); a.pass_({password:?})\n\
             print(b' '.join(a.uidl()[1]).decode())\na.quit()\n"
        ),
    )
    .trim()
    .to_string()
}

/// Writes a Dovecot `dovecot-uidlist` (version 3) for `files` with `uids`, owned like the
/// Maildir, as a migration from Dovecot leaves it.
fn write_uidlist(server: &Server, address: &str, files: &[std::path::PathBuf], uids: &[u32]) {
    use std::os::unix::fs::MetadataExt;
    let root = server.mailbox(address);
    let mut text = format!("3 V1700000000 N{} Gabc\n", uids.iter().max().unwrap() + 1);
    for (f, uid) in files.iter().zip(uids) {
        text.push_str(&format!(
            "{uid} :{}\n",
            f.file_name().unwrap().to_string_lossy()
        ));
    }
    let path = root.join("dovecot-uidlist");
    std::fs::write(&path, text).unwrap();
    let owner = std::fs::metadata(&root).unwrap();
    std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
}

#[test]
fn uidls_follow_a_migrated_dovecot_uidlist_and_survive_an_index_rebuild() {
    let server = start("");
    let messages: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("Subject: migrated {i}\n\nbody {i}\n").into_bytes())
        .collect();
    let files = server.put_messages(BOB, &messages);
    write_uidlist(&server, BOB, &files, &[3, 5, 7]);
    // Dovecot's default pop3_uidl_format %08Xu%08Xv: what a migrated client already knows.
    let expected = "1 000000036553F100 2 000000056553F100 3 000000076553F100";
    assert_eq!(uidl_listing(&server, BOB, "bob-pw"), expected);
    std::fs::remove_file(server.mailbox(BOB).join("postern-index.log")).unwrap();
    assert_eq!(
        uidl_listing(&server, BOB, "bob-pw"),
        expected,
        "same UIDLs after the index is rebuilt"
    );
}

#[test]
fn uidls_survive_an_unseeded_index_rebuild() {
    let server = start("");
    send_mail(&server, ALICE, 2);
    let before = uidl_listing(&server, ALICE, "alice-pw");
    std::fs::remove_file(server.mailbox(ALICE).join("postern-index.log")).unwrap();
    assert_eq!(uidl_listing(&server, ALICE, "alice-pw"), before);
}

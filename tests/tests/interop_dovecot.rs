//! Interoperability (ARCHITECTURE §3: LMTP is standard on purpose, "Postern's MTA can deliver
//! to a real Dovecot LMTP"): Postern runs with `[queue] delivery = "unix:..."` pointing at a
//! private instance of Debian's Dovecot, set up under the test's temporary directory as
//! COMPARISON-STACK.md describes. Dovecot knows the same users as Postern (its passdb is a copy
//! of Postern's users file, which ARCHITECTURE §4 says is in Dovecot's passwd-file format). A
//! message sent with Python's smtplib to Postern's smtp port must land in Dovecot's Maildirs
//! with Postern's Received: and the body intact, and Postern's queue must empty.
//! Needs root and the packages `dovecot-core` and `dovecot-lmtpd`; otherwise it prints why it
//! skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;

/// A program looked up on PATH and where Debian puts it even when sbin is not on PATH.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Dovecot's LMTP service binary (package dovecot-lmtpd).
const LMTP_BINARY: &str = "/usr/lib/dovecot/lmtp";

/// What the test needs from the system, or why it skips.
struct Tools {
    dovecot: PathBuf,
    doveadm: PathBuf,
    mail_user: nix::unistd::User,
}

fn tools() -> Result<Tools, String> {
    if !is_root() {
        return Err("a private Dovecot instance needs root (it switches to the mail user)".into());
    }
    let (Some(dovecot), Some(doveadm)) = (find_program("dovecot"), find_program("doveadm")) else {
        return Err("dovecot is not installed (Debian packages dovecot-core dovecot-lmtpd)".into());
    };
    if !Path::new(LMTP_BINARY).is_file() {
        return Err(format!(
            "{LMTP_BINARY} is missing (Debian package dovecot-lmtpd)"
        ));
    }
    let Ok(Some(mail_user)) = nix::unistd::User::from_name("mail") else {
        return Err("the system user `mail` that owns Dovecot's Maildirs is missing".into());
    };
    Ok(Tools {
        dovecot,
        doveadm,
        mail_user,
    })
}

/// A private Dovecot instance (`dovecot -c FILE`, its own base_dir, state_dir and
/// instance_name, LMTP only); stopped when dropped, whatever the test's outcome, so no Dovecot
/// process outlives the test. It never reads or touches /etc/dovecot or a system instance.
struct Dovecot {
    doveadm: PathBuf,
    dovecot: PathBuf,
    dir: PathBuf,
    /// The master's pid, once started.
    master: Option<i32>,
    started: bool,
}

impl Dovecot {
    /// Writes `dir/dovecot.conf`: the LMTP listener `dir/lmtp` (mode 0600, owned by
    /// `lmtp_client`, the only user meant to connect, as Postfix is in COMPARISON-STACK.md),
    /// users from `users` (passwd-file lines), Maildirs in `dir/mail/DOMAIN/USER/Maildir`
    /// owned by the `mail` user, its log in `dir/dovecot.log`.
    fn configure(tools: &Tools, dir: PathBuf, users: &str, lmtp_client: &str) -> Dovecot {
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).expect("dovecot dirs");
        }
        let mail = &tools.mail_user;
        nix::unistd::chown(&dir.join("mail"), Some(mail.uid), Some(mail.gid))
            .expect("chown the mail directory");
        // Test passwords only; Dovecot's auth process must be able to read it.
        write(&dir.join("users"), users);
        let d = dir.display();
        let instance = format!(
            "postern-test-{}",
            dir.parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        );
        let config = format!(
            "instance_name = {instance}\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             protocols = lmtp\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             hostname = dovecot.example.test\n\
             log_path = {d}/dovecot.log\n\
             first_valid_uid = {uid}\n\
             first_valid_gid = {gid}\n\
             mail_location = maildir:~/Maildir\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={d}/mail/%d/%n\n}}\n\
             service lmtp {{\n  unix_listener {d}/lmtp {{\n    mode = 0600\n    user = {lmtp_client}\n  }}\n}}\n",
            uid = mail.uid,
            gid = mail.gid,
        );
        write(&dir.join("dovecot.conf"), &config);
        Dovecot {
            doveadm: tools.doveadm.clone(),
            dovecot: tools.dovecot.clone(),
            dir,
            master: None,
            started: false,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("dovecot.conf")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("lmtp")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }

    /// Runs `PROGRAM -c CONFIG ARGS`; returns (success, output).
    fn run(&self, program: &Path, args: &[&str]) -> (bool, String) {
        let child = Command::new(program)
            .arg("-c")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run a dovecot program");
        let (status, out, err) = wait_output(child, TIMEOUT);
        (status.success(), format!("{out}{err}"))
    }

    /// Starts the instance and waits until its LMTP socket is there.
    fn start(&mut self) {
        // `dovecot` forks its master, which keeps the launcher's stdout and stderr: a pipe
        // would never see EOF, so they go to a file.
        let out_path = self.dir.join("dovecot.start.out");
        let out = std::fs::File::create(&out_path).expect("dovecot.start.out");
        // From here on the guard owns whatever `dovecot` may have started.
        self.started = true;
        let mut launcher = Command::new(&self.dovecot)
            .arg("-c")
            .arg(self.config())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dovecot.start.out"))
            .stderr(out)
            .spawn()
            .expect("run dovecot");
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = launcher.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = launcher.kill();
                let _ = launcher.wait();
                panic!("dovecot did not return within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        assert!(
            status.success(),
            "dovecot did not start ({status}):\n{output}\n{}",
            self.log()
        );
        let pid_file = self.dir.join("run/master.pid");
        // The pid file may exist before Dovecot has written the pid into it.
        let read_pid = || {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
        };
        wait_until("Dovecot's master.pid and LMTP socket", || {
            read_pid().is_some() && self.socket().exists()
        });
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .expect("Dovecot's master.pid");
        self.master = Some(pid);
    }

    /// Runs doveadm against this instance.
    fn doveadm(&self, args: &[&str]) -> (bool, String) {
        self.run(&self.doveadm, args)
    }

    /// The files delivered to `address` (new/ and cur/ of its Maildir).
    fn delivered(&self, address: &str) -> Vec<PathBuf> {
        let (local, domain) = address.split_once('@').expect("address");
        let maildir = self.dir.join(format!("mail/{domain}/{local}/Maildir"));
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .flat_map(|sub| {
                std::fs::read_dir(maildir.join(sub))
                    .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect();
        files.sort();
        files
    }

    /// `doveadm -c FILE stop`, then makes sure this instance's master is gone (its children
    /// exit with it); killed by its pid if it is still there. Returns what went wrong, if
    /// anything.
    fn stop(&mut self) -> Result<(), String> {
        if !std::mem::take(&mut self.started) {
            return Ok(());
        }
        let (ok, out) = self.doveadm(&["stop"]);
        let Some(pid) = self.master.take() else {
            return if ok {
                Ok(())
            } else {
                Err(format!("doveadm stop: {out}"))
            };
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(format!(
                "dovecot master {pid} still ran after doveadm stop ({out}): killed"
            ));
        }
        if ok {
            Ok(())
        } else {
            Err(format!("doveadm stop: {out}"))
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("{e}");
        }
    }
}

/// Postern handing local mail to `dovecot/lmtp` below its own directory (a relative path is
/// taken relative to the configuration file), and a Dovecot instance serving it.
struct Stack {
    // Field order is drop order: Dovecot stops before the server's temporary directory goes.
    dovecot: Dovecot,
    server: Server,
    startup: Duration,
}

fn start_stack(tools: &Tools, users: &[(&str, &str)]) -> Stack {
    let started = Instant::now();
    let setup = Setup::new("[queue]\ndelivery = \"unix:dovecot/lmtp\"\n");
    for (address, password) in users {
        setup.add_user(address, password);
    }
    let server = setup.start();
    // The LMTP listener belongs to the user the MTA runs as, so only the MTA can connect.
    let mta = server
        .children()
        .into_iter()
        .find(|(_, name)| name.ends_with("postern-mta"))
        .map(|(pid, _)| pid)
        .unwrap_or_else(|| panic!("no postern-mta child: {:?}", server.children()));
    let (uid, _) = ids_of(mta);
    let mta_user = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .expect("the MTA's user")
        .name;
    assert_ne!(uid, 0, "as root the MTA runs as a service user");
    let users_file =
        std::fs::read_to_string(server.setup().path("etc/users")).expect("Postern's users file");
    let mut dovecot = Dovecot::configure(
        tools,
        server.setup().path("dovecot"),
        &users_file,
        &mta_user,
    );
    dovecot.start();
    Stack {
        dovecot,
        server,
        startup: started.elapsed(),
    }
}

impl Stack {
    /// Queue files (`*.msg`, `*.status`) still in Postern's queue.
    fn queued(&self) -> Vec<String> {
        std::fs::read_dir(self.server.setup().path("state/queue"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.ends_with(".msg") || n.ends_with(".status"))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "Postern log:\n{}\nDovecot log:\n{}",
            self.server.log_text(),
            self.dovecot.log()
        )
    }

    /// Waits until `address` has exactly one message and returns its text.
    fn wait_delivered(&self, address: &str, since: Instant) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let files = self.dovecot.delivered(address);
            if let [file] = files.as_slice() {
                return std::fs::read_to_string(file).expect("delivered file");
            }
            assert!(
                files.len() <= 1 && Instant::now() < deadline,
                "{} files for {address} after {:?}; queue: {:?}\n{}",
                files.len(),
                since.elapsed(),
                self.queued(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_queue_empty(&self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = self.queued();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Postern's queue still holds {left:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// smtplib to Postern's smtp port: one message for alice and bob, 8-bit body (BODY=8BITMIME),
/// lines that need dot-stuffing on the way.
const SEND: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.ehlo("client.example")
msg = (
    "From: sender@elsewhere.net\r\n"
    "To: alice@example.test, bob@example.test\r\n"
    "Subject: through postern into dovecot\r\n"
    "Message-ID: <interop-dovecot@client.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Gr\u00fc\u00dfe through Postern and Dovecot.\r\n"
    ".a line that starts with a dot\r\n"  # stuffed by smtplib, and again by Postern's LMTP
    "..\r\n"
    "last line\r\n"
).encode("utf-8")
print(s.sendmail("sender@elsewhere.net", ["alice@example.test", "bob@example.test"], msg,
                 mail_options=["BODY=8BITMIME"]))
s.quit()
"#;

#[test]
fn postern_delivers_into_dovecot_over_lmtp() {
    let tools = match tools() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
    let users = [
        ("alice@example.test", "alice-pw"),
        ("bob@example.test", "bob-pw"),
    ];
    let mut stack = start_stack(&tools, &users);

    // Postern's users file is Dovecot's passwd-file format: Dovecot verifies its hashes.
    let (ok, out) = stack
        .dovecot
        .doveadm(&["auth", "test", "alice@example.test", "alice-pw"]);
    assert!(
        ok && out.contains("auth succeeded"),
        "Dovecot does not take Postern's users file: {out}\n{}",
        stack.dovecot.log()
    );

    let sent_at = Instant::now();
    let port = stack.server.setup().port("smtp");
    let (status, out, err) = python(SEND, &[&port.to_string()]);
    assert!(
        status.success(),
        "smtplib to Postern failed: {out}{err}\n{}",
        stack.logs()
    );
    assert_eq!(out.trim(), "{}", "Postern refused a recipient: {out}");

    let body = "\n\nGr\u{fc}\u{df}e through Postern and Dovecot.\n\
                .a line that starts with a dot\n..\nlast line\n";
    let mut took = Duration::ZERO;
    for (address, _) in users {
        let text = stack.wait_delivered(address, sent_at);
        took = sent_at.elapsed();
        // Dovecot's trace headers first, its Received naming Postern's LHLO (one transaction
        // for both recipients: Dovecot then writes neither Delivered-To nor "for <...>")...
        assert!(
            text.starts_with(
                "Return-Path: <sender@elsewhere.net>\n\
                 Received: from mail.example.test\n\tby dovecot.example.test with LMTP\n"
            ),
            "{text}"
        );
        // ...then Postern's own Received: (from the smtplib session), then the message.
        let postern = text
            .find("\nReceived: from client.example ([127.0.0.1])\n\tby mail.example.test (Postern) with ESMTP id ")
            .unwrap_or_else(|| panic!("no Received: from Postern: {text}"));
        let from = text.find("\nFrom: sender@elsewhere.net\n").expect("From:");
        assert!(
            postern < from,
            "Postern's Received: is a trace header: {text}"
        );
        assert!(
            text.contains("\nSubject: through postern into dovecot\n"),
            "{text}"
        );
        assert!(
            text.ends_with(body),
            "8-bit body intact, dot-stuffing undone, LF line ends: {text:?}"
        );
    }
    stack.wait_queue_empty();
    let emptied = sent_at.elapsed();

    let log = stack.server.log_text();
    for (address, _) in users {
        assert!(
            log.lines().any(|l| l.contains("event=\"queue.delivered\"")
                && l.contains(&format!("rcpt={address}"))
                && l.contains("Saved")),
            "Postern did not log Dovecot's 250 for {address}:\n{log}"
        );
    }
    assert!(!log.contains("queue.deferred"), "{log}");
    let dovecot_log = stack.dovecot.log();
    let saved = dovecot_log
        .lines()
        .filter(|l| l.contains("msgid=<interop-dovecot@client.example>: saved mail to INBOX"))
        .count();
    assert_eq!(saved, 2, "{dovecot_log}");
    assert!(!dovecot_log.contains("Error:"), "{dovecot_log}");

    let stopping = Instant::now();
    stack.dovecot.stop().expect("dovecot stops");
    eprintln!(
        "interop_dovecot: Postern and Dovecot started in {:?}; both Maildirs filled {took:?} \
         and Postern's queue empty {emptied:?} after smtplib began; doveadm stop took {:?}",
        stack.startup,
        stopping.elapsed()
    );
}

/// RFC 6531, like every ESMTP extension, lets a client use SMTPUTF8 only with a server that
/// announced it; Dovecot 2.3's LHLO does not. A message whose envelope and headers are ASCII
/// needs no SMTPUTF8 and goes without the parameter (one that does need it fails permanently,
/// 5.6.7, as Postfix does).
#[test]
fn smtputf8_message_with_ascii_addresses_reaches_dovecot() {
    let tools = match tools() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
    let mut stack = start_stack(&tools, &[("alice@example.test", "alice-pw")]);
    let send = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.ehlo("client.example")
msg = b"From: sender@elsewhere.net\r\nSubject: ascii, but sent with SMTPUTF8\r\n\r\nbody\r\n"
print(s.sendmail("sender@elsewhere.net", ["alice@example.test"], msg, mail_options=["SMTPUTF8"]))
s.quit()
"#;
    let port = stack.server.setup().port("smtp");
    let sent_at = Instant::now();
    let (status, out, err) = python(send, &[&port.to_string()]);
    assert!(status.success() && out.trim() == "{}", "{out}{err}");
    let deadline = Instant::now() + TIMEOUT;
    while stack.dovecot.delivered("alice@example.test").is_empty() {
        let log = stack.server.log_text();
        assert!(
            !log.contains("queue.deferred") && Instant::now() < deadline,
            "not delivered {:?} after smtplib began; queue: {:?}\n{}",
            sent_at.elapsed(),
            stack.queued(),
            stack.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stack.wait_queue_empty();
    stack.dovecot.stop().expect("dovecot stops");
}

/// Dovecot knows nothing of Postern's aliases: the MTA resolves them through authd before
/// handing mail to an outside LMTP server. A recipient Dovecot refuses is settled (5xx kept in
/// the queue for the bounce work) and the connection is reset for the next message.
#[test]
fn aliases_are_resolved_for_dovecot_and_a_refused_recipient_leaves_the_connection_usable() {
    let tools = match tools() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
    let mut stack = start_stack(
        &tools,
        &[("alice@example.test", "a-pw"), ("bob@example.test", "b-pw")],
    );
    let mark = stack.server.log_len();
    write(
        &stack.server.setup().path("etc/aliases"),
        "info@example.test: alice@example.test, bob@example.test\n",
    );
    stack.server.wait_log("users and aliases reloaded", mark);
    // carol exists for Postern only (added after Dovecot copied the users file).
    let mark = stack.server.log_len();
    stack.server.setup().add_user("carol@example.test", "c-pw");
    stack.server.wait_log("users and aliases reloaded", mark);
    let send = r#"
import smtplib, sys
for rcpt in sys.argv[2:]:
    s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
    print(rcpt, s.sendmail("s@elsewhere.net", [rcpt], b"Subject: to " + rcpt.encode() + b"\r\n\r\nhi\r\n"))
    s.quit()
"#;
    let port = stack.server.setup().port("smtp").to_string();
    let (status, out, err) = python(send, &[&port, "info@example.test"]);
    assert!(status.success(), "{out}{err}");
    let since = Instant::now();
    let alice = stack.wait_delivered("alice@example.test", since);
    let bob = stack.wait_delivered("bob@example.test", since);
    assert!(
        alice.contains("Subject: to info@example.test")
            && bob.contains("Subject: to info@example.test")
    );
    let (status, out, err) = python(send, &[&port, "carol@example.test", "alice@example.test"]);
    assert!(status.success(), "{out}{err}");
    wait_until("alice's second message", || {
        stack.dovecot.delivered("alice@example.test").len() == 2
    });
    stack.server.wait_log("event=\"queue.failed\"", mark);
    let dovecot_log = stack.dovecot.log();
    assert!(!dovecot_log.contains("unfinished DATA"), "{dovecot_log}");
    assert!(
        !stack.server.log_text()[mark..].contains("queue.deferred"),
        "{}",
        stack.logs()
    );
    stack.dovecot.stop().expect("dovecot stops");
}

//! Interoperability (ARCHITECTURE §3: LMTP is standard on purpose, "a real Postfix can deliver
//! into Postern's MDA"): a private instance of Debian's Postfix, set up under the test's
//! temporary directory as COMPARISON-STACK.md describes, accepts a message from Python's
//! smtplib on a free loopback port and hands it over LMTP to postern-mda's `lmtp.sock`; the
//! message must land in the user's Maildir with Postern's Return-Path and Delivered-To.
//! Needs root and the `postfix` package; otherwise it prints why it skips.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;

/// The Postfix command, looked up where Debian puts it even when sbin is not on PATH.
fn find_postfix() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join("postfix"))
        .find(|p| p.is_file())
}

/// A private Postfix instance (`postfix -c DIR`); stopped when dropped, whatever the test's
/// outcome, so no Postfix process outlives the test.
struct Postfix {
    program: PathBuf,
    dir: PathBuf,
    started: bool,
}

impl Postfix {
    /// Writes `main.cf` and `master.cf` under `dir`: smtpd on 127.0.0.1:`port`, mail for
    /// example.test handed to `lmtp_socket`, no chroot, its log in `dir/postfix.log`.
    fn configure(program: PathBuf, dir: PathBuf, port: u16, lmtp_socket: &Path) -> Postfix {
        for sub in ["queue", "data"] {
            std::fs::create_dir_all(dir.join(sub)).expect("postfix dirs");
        }
        // data_directory belongs to mail_owner (postfix), queue_directory to root.
        let postfix = nix::unistd::User::from_name("postfix")
            .ok()
            .flatten()
            .expect("postfix user");
        nix::unistd::chown(&dir.join("data"), Some(postfix.uid), Some(postfix.gid))
            .expect("chown data_directory");
        let d = dir.display();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {d}/queue\n\
             data_directory = {d}/data\n\
             maillog_file = {d}/postfix.log\n\
             maillog_file_prefixes = {d}\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             myhostname = mx.postfix.example\n\
             mydomain = postfix.example\n\
             mydestination =\n\
             local_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             relay_domains =\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_peername_lookup = no\n\
             biff = no\n\
             virtual_mailbox_domains = example.test\n\
             virtual_transport = lmtp:unix:{}\n",
            lmtp_socket.display()
        );
        // Only the services this flow uses; `n` in the chroot column (a chroot would need
        // copies of the resolver and passwd files).
        let master_cf = format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n\
             cleanup   unix n - n - 0 cleanup\n\
             qmgr      unix n - n 300 1 qmgr\n\
             rewrite   unix - - n - - trivial-rewrite\n\
             bounce    unix - - n - 0 bounce\n\
             defer     unix - - n - 0 bounce\n\
             trace     unix - - n - 0 bounce\n\
             verify    unix - - n - 1 verify\n\
             flush     unix n - n 1000? 0 flush\n\
             proxymap  unix - - n - - proxymap\n\
             smtp      unix - - n - - smtp\n\
             lmtp      unix - - n - - lmtp\n\
             error     unix - - n - - error\n\
             retry     unix - - n - - error\n\
             discard   unix - - n - - discard\n\
             anvil     unix - - n - 1 anvil\n\
             scache    unix - - n - 1 scache\n\
             postlog   unix-dgram n - n - 1 postlogd\n"
        );
        write(&dir.join("main.cf"), &main_cf);
        write(&dir.join("master.cf"), &master_cf);
        Postfix {
            program,
            dir,
            started: false,
        }
    }

    /// Runs `postfix -c DIR VERB`; returns (success, output).
    fn run(&self, verb: &str) -> (bool, String) {
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(&self.dir)
            .arg(verb)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run postfix");
        let (status, out, err) = wait_output(child, TIMEOUT);
        (status.success(), format!("{out}{err}"))
    }

    fn start(&mut self) {
        let (ok, out) = self.run("check");
        assert!(ok, "postfix check failed:\n{out}\n{}", self.log());
        // From here on the guard owns whatever `start` may have started.
        self.started = true;
        let (ok, out) = self.run("start");
        assert!(ok, "postfix start failed:\n{out}\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postfix.log")).unwrap_or_default()
    }

    /// The pid of this instance's master, from its pid file.
    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Postfix {
    /// `postfix -c DIR stop`, then makes sure this instance's master is gone: `stop` waits for
    /// it, but if it is still there it is killed by its pid (its children exit when their
    /// master is gone). Returns what went wrong, if anything.
    fn stop(&mut self) -> Result<(), String> {
        if !std::mem::take(&mut self.started) {
            return Ok(());
        }
        let master = self.master_pid();
        let (ok, out) = self.run("stop");
        let Some(pid) = master else {
            return if ok {
                Ok(())
            } else {
                Err(format!("postfix stop: {out}"))
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
                "postfix master {pid} still ran after stop ({out}): killed"
            ));
        }
        if ok {
            Ok(())
        } else {
            Err(format!("postfix stop: {out}"))
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("{e}");
        }
    }
}

const SEND: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.ehlo("client.example")
msg = (
    "From: sender@elsewhere.net\r\n"
    "To: alice@example.test\r\n"
    "Subject: through postfix\r\n"
    "Message-ID: <interop-postfix@client.example>\r\n"
    "\r\n"
    "Hello through Postfix.\r\n"
    ".a line that starts with a dot\r\n"  # smtplib stuffs it, Postfix and LMTP too
    "last line\r\n"
)
print(s.sendmail("sender@elsewhere.net", ["alice@example.test"], msg))
s.quit()
"#;

#[test]
fn postfix_delivers_into_postern_over_lmtp() {
    if !is_root() {
        eprintln!("SKIPPED: a private Postfix instance needs root (its daemons switch users)");
        return;
    }
    let Some(program) = find_postfix() else {
        eprintln!("SKIPPED: postfix is not installed (Debian package postfix)");
        return;
    };
    let Ok(Some(postfix_user)) = nix::unistd::User::from_name("postfix") else {
        eprintln!("SKIPPED: the postfix package is installed but its user `postfix` is missing");
        return;
    };

    let setup = Setup::new("");
    setup.add_user("alice@example.test", "pw");
    // lmtp.sock is mode 0600 and owned by the MTA's service user (ARCHITECTURE §1: only the
    // MTA may hand mail to the MDA). Postfix's lmtp client runs as its mail_owner, `postfix`:
    // naming that user as Postern's MTA user makes Postfix the MTA the socket is meant for,
    // with no change of mode or owner behind the supervisor's back. The harness writes
    // [service_users] itself (a TOML table cannot be opened twice), so the key is added to
    // the written file.
    let text = setup.config_text();
    let users = "[service_users]\ncreate_missing = true\n";
    assert!(
        text.contains(users),
        "the harness's [service_users] changed:\n{text}"
    );
    let text = text.replace(users, &format!("{users}mta = \"postfix\"\n"));
    std::fs::write(&setup.config, text).expect("write config");
    let server = setup.start();
    let config = std::fs::read_to_string(&server.setup().config).unwrap();
    assert!(
        config.contains("mta = \"postfix\""),
        "the harness rewrote the config (port clash at start): mta user lost"
    );
    let socket = server.setup().path("run/lmtp.sock");
    let meta = std::fs::metadata(&socket).expect("lmtp.sock");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (postfix_user.uid.as_raw(), 0o600),
        "lmtp.sock belongs to the MTA user"
    );

    let started = Instant::now();
    let port = free_port();
    let mut postfix = Postfix::configure(program, server.setup().path("postfix"), port, &socket);
    postfix.start();
    let startup = started.elapsed();
    let sent_at = Instant::now();
    let (status, out, err) = python(SEND, &[&port.to_string()]);
    assert!(
        status.success(),
        "smtplib to Postfix failed: {out}{err}\n{}",
        postfix.log()
    );
    assert_eq!(out.trim(), "{}", "Postfix refused a recipient: {out}");

    let new = server.setup().path("state/mail/example.test/alice/new");
    let deadline = Instant::now() + TIMEOUT;
    let file = loop {
        let files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if let [file] = files.as_slice() {
            break file.clone();
        }
        assert!(
            files.len() <= 1 && Instant::now() < deadline,
            "{} files in {} after {:?}\nPostfix log:\n{}\nPostern log:\n{}",
            files.len(),
            new.display(),
            sent_at.elapsed(),
            postfix.log(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = sent_at.elapsed();
    let text = std::fs::read_to_string(&file).expect("delivered file");
    assert!(
        text.starts_with(
            "Return-Path: <sender@elsewhere.net>\nDelivered-To: alice@example.test\nReceived: "
        ),
        "Postern's headers first, then Postfix's Received: {text}"
    );
    assert!(text.contains("by mx.postfix.example (Postfix)"), "{text}");
    assert!(text.contains("\nSubject: through postfix\n"), "{text}");
    assert!(
        text.ends_with("\n\nHello through Postfix.\n.a line that starts with a dot\nlast line\n"),
        "dot-stuffing undone, LF line ends: {text:?}"
    );
    let log = postfix.log();
    let sent = log
        .lines()
        .find(|l| l.contains("status=sent"))
        .unwrap_or_else(|| panic!("no status=sent in the Postfix log:\n{log}"));
    assert!(
        sent.contains("relay=") && sent.contains("lmtp.sock"),
        "{sent}"
    );
    eprintln!(
        "interop_postfix: Postfix started in {startup:?}; message in the Maildir {took:?} after \
         smtplib began; Postfix says: {sent}"
    );
    postfix.stop().expect("postfix stops");
    assert!(
        server.log_text().contains("event=\"delivery.ok\""),
        "{}",
        server.log_text()
    );
}

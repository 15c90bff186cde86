//! The Debian package under a real systemd: a Debian 12 root made once by `debootstrap`
//! (cached under /var/tmp), booted with `systemd-nspawn --ephemeral -b` on its own network
//! namespace, the package installed there, `systemctl start postern` with the shipped unit and
//! its hardening, then: the service is active with its readiness status, a message sent on
//! port 25 is read back over IMAP on 143 after STARTTLS, nothing is restarted in a loop, and
//! `systemctl reload` (SIGHUP) keeps it active.
//!
//! Skips with a reason when not root or when debootstrap / systemd-nspawn / cargo-deb are
//! missing; under CI (`CI=true`, where `.ci/run` installs them) a missing tool is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::pkg::*;
use harness::*;

/// Named by its package list: a change makes a new root.
const ROOT: &str = "/var/tmp/postern-test-bookworm-1";

fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("not root (debootstrap and systemd-nspawn need it)".into());
    }
    for (tool, package) in [
        ("debootstrap", "debootstrap"),
        ("systemd-nspawn", "systemd-container"),
    ] {
        if !have("sh", &["-c", &format!("command -v {tool}")]) {
            return Some(format!(
                "{tool} is not installed (apt-get install {package})"
            ));
        }
    }
    if !have("cargo", &["deb", "--version"]) {
        return Some("cargo-deb is not installed (.ci/run installs it)".into());
    }
    None
}

/// A minimal Debian 12 with systemd, made once and reused (never modified: every boot is
/// `--ephemeral`).
fn debian_root() -> PathBuf {
    let root = PathBuf::from(ROOT);
    if root.join("usr/lib/systemd/systemd").exists() || root.join("lib/systemd/systemd").exists() {
        return root;
    }
    let partial = PathBuf::from(format!("{ROOT}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    let started = Instant::now();
    let (ok, out) = run(
        "debootstrap",
        &[
            "--variant=minbase",
            "--include=systemd,systemd-sysv,dbus,python3,openssl,passwd,adduser,procps",
            "bookworm",
            partial.to_str().unwrap(),
            "http://deb.debian.org/debian",
        ],
    );
    assert!(ok, "debootstrap failed:\n{out}");
    std::fs::rename(&partial, &root).unwrap();
    eprintln!("debootstrap took {:?}", started.elapsed());
    root
}

/// A booted container; powered off (and its copy removed by nspawn) when dropped.
struct Container {
    nspawn: Child,
}

impl Container {
    fn boot(root: &Path, deb: &Path) -> Container {
        let nspawn = Command::new("systemd-nspawn")
            .args([
                "--quiet",
                "--ephemeral",
                "--keep-unit",
                "--register=no",
                "--private-network",
                "-D",
                root.to_str().unwrap(),
                &format!("--bind-ro={}:/root/postern.deb", deb.display()),
                "-b",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-nspawn");
        let c = Container { nspawn };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(init) = c.init_pid()
                && let (_, state) = c.exec_as(init, &["systemctl", "is-system-running"])
                && (state.starts_with("running") || state.starts_with("degraded"))
            {
                return c;
            }
            assert!(Instant::now() < deadline, "the container did not boot");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The container's PID 1 (systemd), the child of systemd-nspawn.
    fn init_pid(&self) -> Option<u32> {
        let children = format!("/proc/{0}/task/{0}/children", self.nspawn.id());
        std::fs::read_to_string(children)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    fn exec_as(&self, init: u32, argv: &[&str]) -> (bool, String) {
        let pid = init.to_string();
        let mut args = vec!["-t", &pid, "-a"];
        args.extend_from_slice(argv);
        run("nsenter", &args)
    }

    /// Runs a command inside the container; (success, output).
    fn exec(&self, argv: &[&str]) -> (bool, String) {
        let init = self.init_pid().expect("container is running");
        self.exec_as(init, argv)
    }

    fn must(&self, argv: &[&str]) -> String {
        let (ok, out) = self.exec(argv);
        assert!(ok, "{argv:?} failed in the container:\n{out}");
        out
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.exec(&["systemctl", "poweroff"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.nspawn.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

const CLIENT: &str = r#"
import imaplib, smtplib, ssl, sys, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", 25, timeout=10)
s.starttls(context=ctx)
s.sendmail("someone@elsewhere.net", ["alice@example.org"], b"Subject: t\r\n\r\nunder systemd\r\n")
s.quit()
for _ in range(50):
    i = imaplib.IMAP4("127.0.0.1", 143, timeout=10)
    i.starttls(ssl_context=ctx)
    i.login("alice@example.org", "alice-pw")
    typ, data = i.select("INBOX")
    if data[0] != b"0":
        print(i.fetch("1", "(BODY[TEXT])")[1][0][1].decode())
        sys.exit(0)
    i.logout()
    time.sleep(0.2)
sys.exit("the message never arrived")
"#;

#[test]
fn the_package_runs_under_systemd_with_its_hardening() {
    if let Some(why) = missing_prerequisite() {
        assert!(!in_ci(), "package_systemd cannot run in CI: {why}");
        eprintln!("SKIPPED package_systemd: {why}");
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let deb = build_deb(out_dir.path(), "0.1.0-1");
    let root = debian_root();
    let c = Container::boot(&root, &deb);
    c.must(&["dpkg", "-i", "/root/postern.deb"]);
    c.must(&[
        "sh",
        "-c",
        "echo alice-pw | postern user add alice@example.org",
    ]);
    c.must(&["systemctl", "start", "postern"]);
    let status = c.must(&[
        "systemctl",
        "show",
        "-p",
        "ActiveState,StatusText",
        "postern",
    ]);
    assert!(
        status.contains("ActiveState=active") && status.contains("serving: 4 children ready"),
        "{status}"
    );
    let script = "/root/client.py";
    c.must(&[
        "sh",
        "-c",
        &format!("cat > {script} <<'EOF'\n{CLIENT}\nEOF"),
    ]);
    let mail = c.must(&["python3", script]);
    assert!(mail.contains("under systemd"), "{mail}");
    c.must(&["systemctl", "reload", "postern"]);
    std::thread::sleep(Duration::from_secs(2));
    let status = c.must(&[
        "systemctl",
        "show",
        "-p",
        "ActiveState,NRestarts",
        "postern",
    ]);
    assert!(
        status.contains("ActiveState=active") && status.contains("NRestarts=0"),
        "{status}"
    );
    let journal = c.must(&["journalctl", "-u", "postern", "--no-pager"]);
    assert!(
        !journal.contains("restarting in"),
        "a child was restarted:\n{journal}"
    );
    assert!(journal.contains("configuration reloaded"), "{journal}");
}

//! A private Dovecot for interop tests: `doveadm` with its own configuration, base_dir and
//! Maildir under a test's temporary directory (no service started, no port bound), used to
//! make Maildirs exactly as Dovecot leaves them (`dovecot-uidlist`, `dovecot-keywords`,
//! flags in names). Tests skip, saying why, when `doveadm` is not installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::is_root;

/// `doveadm` run as the invoking user's mail user on one Maildir.
pub struct Doveadm {
    bin: PathBuf,
    config: PathBuf,
    home: PathBuf,
}

/// The first `name` on `PATH` (or in `/usr/sbin`).
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .chain([Path::new("/usr/sbin").join(name)])
        .find(|p| p.is_file())
}

impl Doveadm {
    /// A Dovecot for the Maildir `maildir` (created with `tmp/ new/ cur/` if missing), its
    /// state under `dir`; `None` (with a SKIPPED line) when doveadm is not installed.
    pub fn new(dir: &Path, maildir: &Path) -> Option<Doveadm> {
        let Some(bin) = which("doveadm") else {
            eprintln!("SKIPPED: doveadm not installed (Debian package dovecot-core)");
            return None;
        };
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        Some(Doveadm {
            bin,
            config: config(dir, maildir),
            home: dir.to_path_buf(),
        })
    }

    /// Runs `doveadm ARGS` (feeding `stdin`); panics when it fails; returns its output.
    pub fn run_with(&self, args: &[&str], stdin: &str) -> String {
        // Without -u, doveadm serves the user of its environment (no auth service needed).
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("USER", "tester")
            .env("HOME", &self.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "doveadm {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn run(&self, args: &[&str]) -> String {
        self.run_with(args, "")
    }

    /// The UIDVALIDITY Dovecot gives `mailbox`.
    pub fn uidvalidity(&self, mailbox: &str) -> u32 {
        let status = self.run(&["-f", "flow", "mailbox", "status", "uidvalidity", mailbox]);
        status
            .trim()
            .rsplit("uidvalidity=")
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// `doveadm fetch` of `fields` (space-separated) for every message of `mailbox`: one
    /// row of tab-separated values per message, the header row dropped.
    pub fn fetch(&self, mailbox: &str, fields: &str) -> Vec<Vec<String>> {
        let out = self.run(&["-f", "tab", "fetch", fields, "mailbox", mailbox]);
        out.lines()
            .skip(1)
            .map(|l| l.split('\t').map(|f| f.trim().to_string()).collect())
            .collect()
    }
}

/// A minimal private Dovecot configuration for `doveadm` on the Maildir `maildir`. Dovecot
/// refuses mail access as root: as root the Maildir is given to the `mail` user (uid 8, as
/// Debian has it), otherwise the invoking user owns it.
fn config(dir: &Path, maildir: &Path) -> PathBuf {
    let (uid, gid) = if is_root() {
        let mail = nix::unistd::User::from_name("mail")
            .unwrap()
            .expect("user mail");
        let status = Command::new("chown")
            .args(["-R", "mail:mail"])
            .arg(maildir)
            .status()
            .unwrap();
        assert!(status.success());
        (mail.uid.as_raw(), mail.gid.as_raw())
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    };
    let base = dir.join("base");
    std::fs::create_dir_all(&base).unwrap();
    let config = dir.join("dovecot.conf");
    std::fs::write(
        &config,
        format!(
            "base_dir = {base}\nstate_dir = {base}\ninstance_name = postern-test\n\
             log_path = {log}\nssl = no\nprotocols =\n\
             mail_uid = {uid}\nmail_gid = {gid}\nfirst_valid_uid = {uid}\nfirst_valid_gid = {gid}\n\
             mail_location = maildir:{maildir}\n",
            base = base.display(),
            log = dir.join("dovecot.log").display(),
            maildir = maildir.display(),
        ),
    )
    .unwrap();
    config
}

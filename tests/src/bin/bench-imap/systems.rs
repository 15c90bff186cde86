//! The systems under test: Postern through the harness and a private Dovecot (IMAP only) on
//! copies of the same Maildir files, with the same users file and certificate; and the
//! generated mailboxes. Stops only what it started, by pid.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::bench::*;
use harness::{Server, Setup};

use crate::Options;

pub const DOMAIN: &str = "example.test";
/// Messages in each small mailbox (the users of the idle sessions).
const SMALL: usize = 10;

pub fn address(n: usize) -> String {
    format!("user{n}@{DOMAIN}")
}

pub fn password(n: usize) -> String {
    format!("password-{n}")
}

const NAMES: [&str; 12] = [
    "Alice Martin",
    "Bob Okafor",
    "Carol Nguyen",
    "Dmitri Volkov",
    "Eve Zebrowski",
    "Farah Haddad",
    "Gustavo Lima",
    "Hana Sato",
    "Ivan Petrov",
    "Julia Rossi",
    "Kwame Mensah",
    "Lena Fischer",
];
const TOPICS: [&str; 8] = [
    "Meeting notes",
    "Invoice",
    "Re: travel plans",
    "Build failed on main",
    "Lunch on Friday?",
    "Fwd: contract draft",
    "Weekly status",
    "Re: Re: the printer again",
];
const WORDS: [&str; 16] = [
    "project", "deadline", "budget", "review", "server", "customer", "release", "meeting",
    "invoice", "schedule", "network", "backup", "report", "contract", "printer", "travel",
];

/// Message `i` of mailbox `mailbox`, about `size` bytes. Search terms: FROM "zebrowski" (one
/// message in 12), SUBJECT "quarterly" (one in 40, some RFC 2047 encoded), BODY "xylophone"
/// (one in 100).
pub fn message(mailbox: usize, i: usize, size: usize) -> Vec<u8> {
    let name = NAMES[(i * 7 + mailbox) % NAMES.len()];
    let local = name.to_lowercase().replace(' ', ".");
    let subject = match i % 40 {
        3 => format!("Re: quarterly report {i}"),
        23 => format!("=?UTF-8?Q?Caf=C3=A9_Quarterly_review_{i}?="),
        _ => format!("{} {i}", TOPICS[i % TOPICS.len()]),
    };
    let mut m = format!(
        "Return-Path: <{local}@corp.example.net>\nReceived: from mx.example.net by mail.example.test; \
         Mon, 6 Nov 2023 10:{:02}:{:02} +0000\nFrom: {name} <{local}@corp.example.net>\n\
         To: {}\nSubject: {subject}\nDate: Mon, 6 Nov 2023 10:{:02}:{:02} +0000\n\
         Message-ID: <{mailbox}.{i}@bench.example.net>\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\nHello,\n\n",
        i / 60 % 60,
        i % 60,
        address(mailbox),
        i / 60 % 60,
        i % 60
    )
    .into_bytes();
    let mut w = i;
    while m.len() < size {
        let mut line = String::new();
        for _ in 0..10 {
            w = w
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            line.push_str(WORDS[(w >> 33) % WORDS.len()]);
            line.push(' ');
        }
        if i % 100 == 11 && m.len() > size / 2 && !m.ends_with(b"xylophone\n") {
            line.push_str("xylophone");
        }
        line.push('\n');
        m.extend_from_slice(line.as_bytes());
    }
    m.truncate(size.max(400));
    m.push(b'\n');
    m
}

fn fill_all(o: &Options, root_of: impl Fn(usize) -> PathBuf, owner: (u32, u32)) {
    fill_maildir(&root_of(0), 0, o.messages, |i| message(0, i, o.size), owner);
    for n in 1..=o.users {
        fill_maildir(&root_of(n), n, SMALL, |i| message(n, i, o.size), owner);
    }
}

pub struct Postern {
    pub server: Server,
}

impl Postern {
    pub fn start(o: &Options) -> anyhow::Result<Postern> {
        // Every limit a client controls is raised above the load: total and per-address
        // connections, sessions per user, and authd's per-address count (logins in progress
        // count against it).
        let n = o.idle.max(o.sessions) + 1000;
        let setup = Setup::new(&format!(
            "[log]\nlevel = \"warn\"\n\n[limits]\nconnections = {n}\nconnections_per_ip = {n}\n\
             recipients = {r}\n\n[imap]\nsessions_per_user = {n}\n\n\
             [auth]\nmax_failures_per_ip = {n}\nmax_failures_per_user = {n}\n",
            r = o.users + 10
        ));
        harness::write(&setup.path("etc/aliases"), "");
        for u in 0..=o.users {
            setup.add_user(&address(u), &password(u));
        }
        let server = setup.start();
        let mail = server.setup().path("state/mail");
        let owner = owner_of(&mail)?;
        fill_all(o, |u| server.mailbox(&address(u)), owner);
        chown_tree(&mail, owner);
        Ok(Postern { server })
    }

    pub fn imaps(&self) -> SocketAddr {
        self.server.setup().addr("imaps")
    }

    pub fn smtp(&self) -> SocketAddr {
        self.server.setup().addr("smtp")
    }

    pub fn imapd_pid(&self) -> Option<i32> {
        descendants(self.server.pid)
            .into_iter()
            .find(|&p| process_name(p).contains("imapd"))
    }
}

/// A private Dovecot (IMAP only, its defaults otherwise); stopped when dropped.
pub struct Dovecot {
    dir: tempfile::TempDir,
    port: u16,
    doveadm: PathBuf,
    pub pid: Option<i32>,
}

impl Dovecot {
    pub fn find() -> Result<String, String> {
        if !harness::is_root() {
            return Err("a private Dovecot instance needs root".into());
        }
        if !Path::new("/usr/lib/dovecot/imap").is_file() {
            return Err("Dovecot's IMAP not found (Debian package dovecot-imapd)".into());
        }
        Command::new("/usr/sbin/dovecot")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .map_err(|e| e.to_string())
    }

    pub fn start(o: &Options, postern: &Postern) -> anyhow::Result<Dovecot> {
        let dir = tempfile::Builder::new()
            .prefix("dcimap")
            .tempdir_in("/tmp")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let mut me = Dovecot {
            port: harness::free_port(),
            dir,
            doveadm: PathBuf::from("/usr/bin/doveadm"),
            pid: None,
        };
        let mail_user = user("mail")?;
        let owner = (mail_user.uid.as_raw(), mail_user.gid.as_raw());
        fill_all(o, |u| me.maildir(u), owner);
        chown_tree(&me.path("mail"), owner);
        std::fs::create_dir_all(me.path("dovecot/run"))?;
        std::fs::create_dir_all(me.path("dovecot/state"))?;
        let s = postern.server.setup();
        std::fs::copy(s.path("etc/users"), me.path("dovecot/users"))?;
        std::fs::set_permissions(
            me.path("dovecot/users"),
            std::fs::Permissions::from_mode(0o644),
        )?;
        std::fs::copy(s.path("tls/cert.pem"), me.path("dovecot/cert.pem"))?;
        std::fs::copy(s.path("tls/key.pem"), me.path("dovecot/key.pem"))?;
        me.write_conf(mail_user.uid.as_raw(), o)?;
        run(
            Command::new("/usr/sbin/dovecot")
                .arg("-c")
                .arg(me.path("dovecot/dovecot.conf")),
            &me.path("dovecot/start.log"),
        )?;
        me.pid = Some(read_pid(&me.path("dovecot/run/master.pid"))?);
        wait_listening(me.imaps())?;
        Ok(me)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn maildir(&self, u: usize) -> PathBuf {
        self.path(&format!("mail/{DOMAIN}/user{u}/Maildir"))
    }

    fn write_conf(&self, mail_uid: u32, o: &Options) -> anyhow::Result<()> {
        let d = self.dir.path().display();
        let dh = if Path::new("/usr/share/dovecot/dh.pem").is_file() {
            "ssl_dh = </usr/share/dovecot/dh.pem\n"
        } else {
            ""
        };
        let max = o.dovecot_idle.max(o.sessions) + 50;
        let conf = format!(
            "instance_name = postern-imap-bench-{port}\n\
             base_dir = {d}/dovecot/run\nstate_dir = {d}/dovecot/state\n\
             protocols = imap\nlisten = 127.0.0.1\n\
             ssl = required\nssl_cert = <{d}/dovecot/cert.pem\nssl_key = <{d}/dovecot/key.pem\n{dh}\
             log_path = {d}/dovecot/dovecot.log\nfirst_valid_uid = {mail_uid}\n\
             mail_max_userip_connections = {max}\n\
             default_process_limit = {max}\ndefault_client_limit = {clients}\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/dovecot/users\n}}\n\
             userdb {{\n  driver = static\n  \
             args = uid=mail gid=mail home={d}/mail/%d/%n mail=maildir:~/Maildir\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = 0\n  }}\n  \
             inet_listener imaps {{\n    port = {port}\n    ssl = yes\n  }}\n}}\n",
            port = self.port,
            clients = max * 2 + 100,
        );
        std::fs::write(self.path("dovecot/dovecot.conf"), conf)?;
        Ok(())
    }

    pub fn imaps(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        stop_dovecot(&self.doveadm, &self.path("dovecot/dovecot.conf"), self.pid);
    }
}

/// Sums Pss (smaps_rollup) and VmRSS (status) over the process tree under `root`, in KiB.
pub fn memory_kib(root: i32) -> (u64, u64) {
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    descendants(root)
        .into_iter()
        .fold((0, 0), |(pss, rss), pid| {
            let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"));
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
            (
                pss + field(&rollup.unwrap_or_default(), "Pss:"),
                rss + field(&status.unwrap_or_default(), "VmRSS:"),
            )
        })
}

/// Open descriptors over the process tree under `root`.
pub fn fd_count(root: i32) -> usize {
    descendants(root)
        .into_iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map(|d| d.count())
        .sum()
}

/// The "Max open files" line of a process.
pub fn fd_limit(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// One message to every user 1..=users over plain SMTP (Postern's port 25).
pub fn smtp_deliver(addr: SocketAddr, users: usize) -> anyhow::Result<()> {
    use std::io::{BufRead as _, BufReader, Write as _};
    let s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    let expect = |code: &str, r: &mut BufReader<std::net::TcpStream>| -> anyhow::Result<()> {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            anyhow::ensure!(line.starts_with(code), "SMTP: wanted {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    };
    expect("220", &mut r)?;
    w.write_all(b"EHLO bench.example.net\r\n")?;
    expect("250", &mut r)?;
    w.write_all(b"MAIL FROM:<news@bench.example.net>\r\n")?;
    expect("250", &mut r)?;
    for u in 1..=users {
        w.write_all(format!("RCPT TO:<{}>\r\n", address(u)).as_bytes())?;
        expect("250", &mut r)?;
    }
    w.write_all(b"DATA\r\n")?;
    expect("354", &mut r)?;
    w.write_all(b"From: news@bench.example.net\r\nSubject: new mail\r\n\r\nwake up\r\n.\r\n")?;
    expect("250", &mut r)?;
    w.write_all(b"QUIT\r\n")?;
    Ok(())
}

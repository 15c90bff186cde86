//! Benchmark: POP3 retrieval over implicit TLS (995). One mailbox of N messages of SIZE bytes:
//! connect (TLS), USER/PASS, STAT, LIST, RETR of every message one after the other, QUIT —
//! timed step by step, cold (first session after start: indexes built, messages marked \Seen
//! at QUIT) and warm (the same again). Then S concurrent sessions on S other mailboxes (M
//! messages each), cold and warm: wall time and messages/s. When Dovecot's POP3 is installed
//! (and we are root) a private Dovecot serves the same Maildir files with the same users file
//! in the same run, and the ratios are printed (Postern's speed / Dovecot's: > 1 is faster).
//! The target is at least Dovecot's speed on every step. Asserts nothing, installs nothing.
//! Build in release for meaningful numbers:
//!   CARGO_TARGET_DIR=/work/target-bench cargo build --release --workspace
//!   /work/target-bench/release/bench-pop3
//! Options: `--messages N` (1000), `--size BYTES` (4096), `--sessions N` (50),
//! `--session-messages N` (100), `--runs N` (1), `--only postern|dovecot`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use harness::bench::*;
use harness::{Server, Setup};

const DOMAIN: &str = "example.test";
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
const USAGE: &str = "usage: bench-pop3 [--messages N] [--size BYTES] [--sessions N] \
                     [--session-messages N] [--runs N] [--only postern|dovecot]";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Postern,
    Dovecot,
}

struct Options {
    messages: usize,
    size: usize,
    sessions: usize,
    session_messages: usize,
    runs: usize,
    only: Option<Kind>,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut o = Options {
        messages: 1000,
        size: 4096,
        sessions: 50,
        session_messages: 100,
        runs: 1,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || -> anyhow::Result<usize> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .with_context(|| format!("{arg} needs a positive number\n{USAGE}"))
        };
        match arg.as_str() {
            "--messages" => o.messages = number()?,
            "--size" => o.size = number()?,
            "--sessions" => o.sessions = number()?,
            "--session-messages" => o.session_messages = number()?,
            "--runs" => o.runs = number()?,
            "--only" => {
                o.only = match args.next().as_deref() {
                    Some("postern") => Some(Kind::Postern),
                    Some("dovecot") => Some(Kind::Dovecot),
                    _ => bail!("--only takes postern or dovecot\n{USAGE}"),
                }
            }
            _ => bail!("unknown argument {arg}\n{USAGE}"),
        }
    }
    Ok(o)
}

fn address(n: usize) -> String {
    format!("user{n}@{DOMAIN}")
}

fn password(n: usize) -> String {
    format!("password-{n}")
}

/// The same message bytes and file names for every system: mailbox 0 holds `messages`,
/// mailboxes 1..=sessions hold `session_messages` each.
fn message(mailbox: usize, i: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender@bench.example.net\nTo: {}\nSubject: message {i}\nMessage-ID: <{mailbox}.{i}@bench>\n\n",
        address(mailbox)
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\n";
    while m.len() < size {
        let take = line.len().min(size - m.len());
        m.extend_from_slice(&line[..take]);
    }
    if m.last() != Some(&b'\n') {
        m.push(b'\n');
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Systems under test

trait Instance {
    fn pop3s(&self) -> SocketAddr;
}

struct Postern {
    server: Server,
}

impl Postern {
    fn start(o: &Options) -> anyhow::Result<Postern> {
        // All sessions come from 127.0.0.1: authd counts logins in progress against
        // max_failures_per_ip (so that parallel guesses cannot overrun it), which S
        // simultaneous logins would exceed.
        let setup = Setup::new(&format!(
            "[log]\nlevel = \"warn\"\n\n[pop3]\nconnections_per_ip = {n}\n\n\
             [auth]\nmax_failures_per_ip = {n}\n",
            n = o.sessions * 2 + 10
        ));
        harness::write(&setup.path("etc/aliases"), "");
        for n in 0..=o.sessions {
            setup.add_user(&address(n), &password(n));
        }
        let server = setup.start();
        let mail = server.setup().path("state/mail");
        let owner = owner_of(&mail)?;
        for n in 0..=o.sessions {
            let count = if n == 0 {
                o.messages
            } else {
                o.session_messages
            };
            fill_maildir(
                &server.mailbox(&address(n)),
                n,
                count,
                |i| message(n, i, o.size),
                owner,
            );
        }
        chown_tree(&mail, owner);
        Ok(Postern { server })
    }
}

impl Instance for Postern {
    fn pop3s(&self) -> SocketAddr {
        self.server.setup().addr("pop3s")
    }
}

/// A private Dovecot (POP3 only, its defaults otherwise) under a temporary directory, with
/// Postern's users file and certificate; stopped when dropped.
struct Dovecot {
    dir: tempfile::TempDir,
    port: u16,
    doveadm: PathBuf,
    pid: Option<i32>,
}

impl Dovecot {
    /// The programs, or why the comparison cannot run.
    fn find() -> Result<(PathBuf, PathBuf, String), String> {
        if !harness::is_root() {
            return Err("a private Dovecot instance needs root".into());
        }
        let dovecot = PathBuf::from("/usr/sbin/dovecot");
        let doveadm = PathBuf::from("/usr/bin/doveadm");
        if !dovecot.is_file() || !doveadm.is_file() {
            return Err("dovecot not found (Debian package dovecot-core)".into());
        }
        if !Path::new("/usr/lib/dovecot/pop3").is_file() {
            return Err("Dovecot's POP3 not found (Debian package dovecot-pop3d)".into());
        }
        let version = Command::new(&dovecot)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .map_err(|e| e.to_string())?;
        Ok((dovecot, doveadm, version))
    }

    fn start(o: &Options, postern: &Postern) -> anyhow::Result<Dovecot> {
        let (dovecot, doveadm, _) = Dovecot::find().map_err(anyhow::Error::msg)?;
        let dir = tempfile::Builder::new()
            .prefix("dcbench")
            .tempdir_in("/tmp")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let mut me = Dovecot {
            port: harness::free_port(),
            dir,
            doveadm,
            pid: None,
        };
        let mail_user = user("mail")?;
        let owner = (mail_user.uid.as_raw(), mail_user.gid.as_raw());
        for n in 0..=o.sessions {
            let count = if n == 0 {
                o.messages
            } else {
                o.session_messages
            };
            let root = me.path(&format!("mail/{DOMAIN}/user{n}/Maildir"));
            fill_maildir(&root, n, count, |i| message(n, i, o.size), owner);
        }
        chown_tree(&me.path("mail"), owner);
        std::fs::create_dir_all(me.path("dovecot/run"))?;
        std::fs::create_dir_all(me.path("dovecot/state"))?;
        let s = postern.server.setup();
        std::fs::copy(s.path("etc/users"), me.path("dovecot/users"))?;
        // Dovecot's auth process runs as its internal user: it must be able to read them.
        std::fs::set_permissions(
            me.path("dovecot/users"),
            std::fs::Permissions::from_mode(0o644),
        )?;
        std::fs::copy(s.path("tls/cert.pem"), me.path("dovecot/cert.pem"))?;
        std::fs::copy(s.path("tls/key.pem"), me.path("dovecot/key.pem"))?;
        me.write_conf(mail_user.uid.as_raw(), o.sessions)?;
        run(
            Command::new(&dovecot)
                .arg("-c")
                .arg(me.path("dovecot/dovecot.conf")),
            &me.path("dovecot/start.log"),
        )?;
        me.pid = Some(read_pid(&me.path("dovecot/run/master.pid"))?);
        wait_listening(me.pop3s())?;
        Ok(me)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write_conf(&self, mail_uid: u32, sessions: usize) -> anyhow::Result<()> {
        let d = self.dir.path().display();
        let dh = if Path::new("/usr/share/dovecot/dh.pem").is_file() {
            "ssl_dh = </usr/share/dovecot/dh.pem\n"
        } else {
            ""
        };
        let conf = format!(
            "instance_name = postern-pop3-bench-{port}\n\
             base_dir = {d}/dovecot/run\nstate_dir = {d}/dovecot/state\n\
             protocols = pop3\nlisten = 127.0.0.1\n\
             ssl = required\nssl_cert = <{d}/dovecot/cert.pem\nssl_key = <{d}/dovecot/key.pem\n{dh}\
             log_path = {d}/dovecot/dovecot.log\nfirst_valid_uid = {mail_uid}\n\
             mail_max_userip_connections = {max}\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/dovecot/users\n}}\n\
             userdb {{\n  driver = static\n  \
             args = uid=mail gid=mail home={d}/mail/%d/%n mail=maildir:~/Maildir\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n  \
             inet_listener pop3s {{\n    port = {port}\n    ssl = yes\n  }}\n}}\n",
            port = self.port,
            max = sessions * 2 + 10,
        );
        std::fs::write(self.path("dovecot/dovecot.conf"), conf)?;
        Ok(())
    }
}

impl Instance for Dovecot {
    fn pop3s(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        stop_dovecot(&self.doveadm, &self.path("dovecot/dovecot.conf"), self.pid);
    }
}

/// A minimal POP3 client over TLS that times each step.
mod client {
    use std::fmt;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Instant;

    use anyhow::{Context as _, bail};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    use super::REPLY_TIMEOUT;

    /// Seconds per step of one session.
    #[derive(Debug, Default)]
    pub struct Timings {
        pub connect: f64,
        pub login: f64,
        pub stat: f64,
        pub list: f64,
        pub retr: f64,
        pub quit: f64,
        pub messages: usize,
        pub bytes: usize,
    }

    impl Timings {
        pub fn steps(&self) -> [(&'static str, f64); 7] {
            [
                ("connect+TLS", self.connect),
                ("USER/PASS", self.login),
                ("STAT", self.stat),
                ("LIST", self.list),
                ("RETR all", self.retr),
                ("QUIT", self.quit),
                (
                    "session",
                    self.connect + self.login + self.stat + self.list + self.retr + self.quit,
                ),
            ]
        }
    }

    impl fmt::Display for Timings {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for (name, secs) in self.steps() {
                write!(f, "{name} {:.1} ms  ", secs * 1000.0)?;
            }
            write!(f, "({} messages, {} KiB)", self.messages, self.bytes / 1024)
        }
    }

    pub use harness::bench::tls_client_config as config;
    use rustls_pki_types::ServerName;

    type Stream = BufReader<tokio_rustls::client::TlsStream<TcpStream>>;

    async fn line(s: &mut Stream) -> anyhow::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(REPLY_TIMEOUT, s.read_until(b'\n', &mut buf))
            .await
            .context("reply timeout")??;
        if n == 0 {
            bail!("connection closed");
        }
        Ok(buf)
    }

    /// Sends `command` and reads its status line (and its body when `multi`); returns
    /// (status line, body bytes).
    async fn command(
        s: &mut Stream,
        command: &str,
        multi: bool,
    ) -> anyhow::Result<(String, usize)> {
        s.get_mut().write_all(command.as_bytes()).await?;
        s.get_mut().write_all(b"\r\n").await?;
        s.get_mut().flush().await?;
        let status = String::from_utf8_lossy(&line(s).await?)
            .trim_end()
            .to_string();
        if !status.starts_with("+OK") {
            bail!("{command:?} answered {status:?}");
        }
        let mut body = 0;
        if multi {
            loop {
                let l = line(s).await?;
                if l == b".\r\n" {
                    break;
                }
                body += l.len();
            }
        }
        Ok((status, body))
    }

    fn lap(t: &mut Instant) -> f64 {
        let now = Instant::now();
        let secs = now.duration_since(*t).as_secs_f64();
        *t = now;
        secs
    }

    /// connect, USER/PASS, STAT, LIST, RETR 1..n, QUIT.
    pub async fn session(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Timings> {
        let mut t = Instant::now();
        let mut timings = Timings::default();
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("mail.example.test")?.to_owned();
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        let mut s = BufReader::new(stream);
        let greeting = line(&mut s).await?;
        anyhow::ensure!(greeting.starts_with(b"+OK"), "greeting {greeting:?}");
        timings.connect = lap(&mut t);
        command(&mut s, &format!("USER {user}"), false).await?;
        command(&mut s, &format!("PASS {password}"), false).await?;
        timings.login = lap(&mut t);
        let (stat, _) = command(&mut s, "STAT", false).await?;
        let count: usize = stat
            .split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .context("STAT count")?;
        timings.stat = lap(&mut t);
        command(&mut s, "LIST", true).await?;
        timings.list = lap(&mut t);
        for i in 1..=count {
            timings.bytes += command(&mut s, &format!("RETR {i}"), true).await?.1;
        }
        timings.retr = lap(&mut t);
        command(&mut s, "QUIT", false).await?;
        timings.quit = lap(&mut t);
        timings.messages = count;
        Ok(timings)
    }
}

use client::Timings;

// ---------------------------------------------------------------------------------------------
// Phases

/// One measured single-mailbox session.
async fn single(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Timings> {
    client::session(addr, tls, &address(0), &password(0)).await
}

/// S sessions at once, each on its own mailbox: (wall seconds, messages retrieved).
async fn concurrent(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    sessions: usize,
) -> anyhow::Result<(f64, usize)> {
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=sessions {
        let tls = tls.clone();
        tasks.spawn(async move { client::session(addr, tls, &address(n), &password(n)).await });
    }
    let mut messages = 0;
    while let Some(done) = tasks.join_next().await {
        messages += done??.messages;
    }
    Ok((t0.elapsed().as_secs_f64(), messages))
}

type Results = BTreeMap<(Kind, &'static str), Vec<f64>>;

fn measure(
    rt: &tokio::runtime::Runtime,
    kind: Kind,
    addr: SocketAddr,
    o: &Options,
    results: &mut Results,
) -> anyhow::Result<()> {
    let tls = client::config();
    for phase in ["cold", "warm"] {
        let t = rt.block_on(single(addr, tls.clone()))?;
        anyhow::ensure!(
            t.messages == o.messages,
            "{kind:?} listed {} messages",
            t.messages
        );
        println!("  {kind:?} single {phase}: {t}");
        for (step, secs) in t.steps() {
            let key: &'static str = Box::leak(format!("{phase} {step}").into_boxed_str());
            results.entry((kind, key)).or_default().push(secs);
        }
    }
    for phase in ["cold", "warm"] {
        let (secs, messages) = rt.block_on(concurrent(addr, tls.clone(), o.sessions))?;
        anyhow::ensure!(
            messages == o.sessions * o.session_messages,
            "{kind:?}: {messages} messages"
        );
        println!(
            "  {kind:?} {} sessions {phase}: {secs:.3} s, {:.0} msg/s",
            o.sessions,
            messages as f64 / secs
        );
        let key: &'static str =
            Box::leak(format!("{phase} {} sessions", o.sessions).into_boxed_str());
        results.entry((kind, key)).or_default().push(secs);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let o = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(2);
        }
    };
    println!(
        "POP3 benchmark over TLS (995): {} messages of {} B in one mailbox; {} concurrent sessions of {} messages; {} run(s)",
        o.messages, o.size, o.sessions, o.session_messages, o.runs
    );
    let dovecot = match (o.only, Dovecot::find()) {
        (Some(Kind::Postern), _) => None,
        (_, Ok((_, _, version))) => {
            println!("comparison: Dovecot {version}, private instance on 127.0.0.1");
            Some(())
        }
        (_, Err(why)) => {
            println!("comparison with Dovecot SKIPPED: {why}");
            None
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    let mut results = Results::new();
    for run in 0..o.runs {
        println!("\n[run {}/{}]", run + 1, o.runs);
        // Each run starts both afresh (cold = no index, nothing \Seen yet); the order
        // alternates.
        let postern = Postern::start(&o)?;
        let dc = match dovecot {
            Some(()) => Some(Dovecot::start(&o, &postern)?),
            None => None,
        };
        let mut order: Vec<(Kind, SocketAddr)> = Vec::new();
        if o.only != Some(Kind::Dovecot) {
            order.push((Kind::Postern, postern.pop3s()));
        }
        if let Some(d) = &dc {
            order.push((Kind::Dovecot, d.pop3s()));
        }
        if run % 2 == 1 {
            order.reverse();
        }
        for (kind, addr) in order {
            if let Err(e) = measure(&rt, kind, addr, &o, &mut results) {
                println!("  {kind:?} FAILED: {e:#}");
            }
        }
        let problems = grep_lines(
            &postern.server.log,
            &[" WARN ", " ERROR ", "panicked", "auth.fail"],
        );
        for p in problems.iter().take(5) {
            println!("  postern log: {p}");
        }
    }
    print_summary(&results);
    Ok(())
}

fn print_summary(results: &Results) {
    println!(
        "\n== Summary (seconds, median; ratio = Dovecot time / Postern time, >= 1 meets the target) =="
    );
    let steps: Vec<&'static str> = {
        let mut seen = Vec::new();
        for (_, step) in results.keys() {
            if !seen.contains(step) {
                seen.push(*step);
            }
        }
        seen
    };
    println!(
        "{:<24} {:>12} {:>12} {:>8}",
        "step", "Postern", "Dovecot", "ratio"
    );
    for step in steps {
        let get = |k: Kind| results.get(&(k, step)).and_then(|v| spread(v)).map(|s| s.0);
        let (p, d) = (get(Kind::Postern), get(Kind::Dovecot));
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        let ratio = match (p, d) {
            (Some(p), Some(d)) if p > 0.0 => format!("{:.2}", d / p),
            _ => "-".into(),
        };
        println!("{step:<24} {:>12} {:>12} {ratio:>8}", show(p), show(d));
    }
}

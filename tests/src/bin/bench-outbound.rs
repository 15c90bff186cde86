//! Benchmark: outbound throughput. N messages of SIZE bytes, each to one of R recipients at D
//! domains (`userN@dK.bench.test`), submitted over SMTP from S concurrent sessions, relayed to
//! a sink on loopback that accepts everything (this program's own tiny SMTP server, which
//! counts messages). Prints msg/s (from the first submission until the sink has received every
//! message) and the CPU time per message of the server's whole process tree.
//!
//! Postern submits on 587 (STARTTLS + AUTH: it relays only for authenticated users) and finds
//! the sink by MX records (the harness's DNS responder gives every domain an MX on loopback),
//! `[outbound] tls = "may"` (the sink offers no STARTTLS, so the relay is plain text).
//! When Postfix is installed (and we are root) a private instance gets the same load in the
//! same run: submission on port 25 in plain text from `mynetworks` (so Postfix does less work
//! on the way in), `relayhost = [127.0.0.1]:PORT` (no DNS lookups), `smtp_tls_security_level
//! = none`. The ratio of msg/s is printed against the target (3×).
//! Build in release: `cargo build --release -p postern-tests --bins` (and the workspace).
//! Options: `--messages N` (2000), `--size BYTES` (4096), `--recipients N` (50), `--domains N`
//! (5), `--sessions N` (10), `--only postern|postfix`.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use harness::bench::*;
use harness::dns::{DnsServer, Record};
use harness::{Server, Setup};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const SENDER: &str = "sender@bench.test";
const PASSWORD: &str = "bench-pw";
const LIMIT: Duration = Duration::from_secs(900);
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
const USAGE: &str = "usage: bench-outbound [--messages N] [--size BYTES] [--recipients N] \
                     [--domains N] [--sessions N] [--only postern|postfix]";

struct Options {
    messages: u64,
    size: usize,
    recipients: u64,
    domains: u64,
    sessions: u64,
    only: Option<String>,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut o = Options {
        messages: 2000,
        size: 4096,
        recipients: 50,
        domains: 5,
        sessions: 10,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || -> anyhow::Result<u64> {
            let v = args.next().context(USAGE)?;
            let n: u64 = v.parse().with_context(|| format!("{arg}: {v:?}"))?;
            if n == 0 {
                bail!("{arg} must be positive");
            }
            Ok(n)
        };
        match arg.as_str() {
            "--messages" => o.messages = number()?,
            "--size" => o.size = number()? as usize,
            "--recipients" => o.recipients = number()?,
            "--domains" => o.domains = number()?,
            "--sessions" => o.sessions = number()?,
            "--only" => o.only = Some(args.next().context(USAGE)?),
            _ => bail!("{USAGE}"),
        }
    }
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    let opts = parse_options()?;
    let rt = tokio::runtime::Runtime::new()?;
    let sink = rt.block_on(Sink::start())?;
    let table: Vec<(String, Record)> = (0..opts.domains)
        .map(|d| (domain(d), Record::Mx(10, "mx.sink.test".into())))
        .chain([(
            "mx.sink.test".to_string(),
            Record::Ip([127, 0, 0, 1].into()),
        )])
        .collect();
    let dns = DnsServer::start(table.iter().map(|(n, r)| (n.as_str(), r.clone())).collect());
    println!(
        "bench-outbound: {} messages x {} bytes to {} recipients at {} domains, {} sessions; \
         sink on {}",
        opts.messages, opts.size, opts.recipients, opts.domains, opts.sessions, sink.addr
    );
    let mut rates = Vec::new();
    if opts.only.as_deref() != Some("postfix") {
        let server = start_postern(&dns, sink.addr.port());
        let submit = Submit {
            addr: server.setup().addr("submission"),
            tls: true,
        };
        let r = measure(&rt, &opts, &sink, submit, &[server.pid], "postern")?;
        let problems = grep_lines(&server.log, &[" WARN ", " ERROR ", "panicked"]);
        for p in problems.iter().take(5) {
            println!("  postern log: {p}");
        }
        rates.push(("postern", r));
    }
    if opts.only.as_deref() != Some("postern") {
        match Postfix::start(sink.addr.port()) {
            Ok(pf) => {
                let submit = Submit {
                    addr: SocketAddr::from(([127, 0, 0, 1], pf.port)),
                    tls: false,
                };
                let roots: Vec<i32> = pf.pid.into_iter().collect();
                let r = measure(&rt, &opts, &sink, submit, &roots, "postfix")?;
                rates.push(("postfix", r));
            }
            Err(e) => println!("postfix: not compared: {e:#}"),
        }
    }
    if let [(_, p), (_, f)] = rates.as_slice() {
        println!(
            "ratio postern/postfix: {:.2}x msg/s (target 3x), CPU per message {:.2}x",
            p.0 / f.0,
            p.1 / f.1
        );
    }
    Ok(())
}

fn domain(d: u64) -> String {
    format!("d{d}.bench.test")
}

fn recipient(opts: &Options, i: u64) -> String {
    let r = i % opts.recipients;
    format!("user{}@{}", r / opts.domains, domain(r % opts.domains))
}

fn start_postern(dns: &DnsServer, sink_port: u16) -> Server {
    let extra = format!(
        "[log]\nlevel = \"warn\"\n\n[limits]\nconnections_per_ip = 1000\nconnections = 2000\n\
         commands_before_mail = 1000000\n\n[dns]\nnameservers = [\"{}\"]\n\n\
         [outbound]\nport = {sink_port}\ntls = \"may\"\n\n[submission]\nrestrict_sender = false\n",
        dns.addr
    );
    let setup = Setup::new(&extra).named("mx.bench.test", &["bench.test"]);
    setup.add_user(SENDER, PASSWORD);
    setup.start()
}

/// One phase: the load, then waiting for the sink; returns (msg/s, CPU ms per message).
fn measure(
    rt: &tokio::runtime::Runtime,
    opts: &Options,
    sink: &Sink,
    submit: Submit,
    roots: &[i32],
    label: &str,
) -> anyhow::Result<(f64, f64)> {
    let base = sink.count.load(Ordering::Relaxed);
    let before = cpu_snapshot(roots);
    let t0 = Instant::now();
    let accepted = rt.block_on(load(opts, submit))?;
    let loaded = t0.elapsed();
    let target = base + opts.messages;
    while sink.count.load(Ordering::Relaxed) < target {
        if t0.elapsed() > LIMIT {
            bail!(
                "{label}: the sink got {} of {} messages",
                sink.count.load(Ordering::Relaxed) - base,
                opts.messages
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let after = cpu_snapshot(roots);
    let cpu = cpu_total_ms(&before, &after) / opts.messages as f64;
    let rate = opts.messages as f64 / elapsed;
    println!(
        "{label}: {accepted} accepted in {:.2} s; all relayed to the sink in {elapsed:.2} s: \
         {rate:.0} msg/s, CPU {cpu:.3} ms/msg",
        loaded.as_secs_f64()
    );
    let by_name: Vec<String> = cpu_by_name(&before, &after)
        .iter()
        .take(8)
        .map(|(n, ms)| format!("{n} {:.0} ms", ms))
        .collect();
    println!("  CPU by process: {}", by_name.join(", "));
    Ok((rate, cpu))
}

// ---------------------------------------------------------------------------------------------
// The load

#[derive(Clone, Copy)]
struct Submit {
    addr: SocketAddr,
    /// STARTTLS and AUTH PLAIN before sending (Postern's submission).
    tls: bool,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn load(opts: &Options, submit: Submit) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let body = Arc::new(message(opts.size));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..opts.sessions {
        let (next, body) = (next.clone(), body.clone());
        let rcpts: Vec<String> = (0..opts.recipients).map(|i| recipient(opts, i)).collect();
        let messages = opts.messages;
        tasks.spawn(async move {
            let mut client = connect(submit).await?;
            let mut sent = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= messages {
                    break;
                }
                let rcpt = &rcpts[(i % rcpts.len() as u64) as usize];
                let cmds = format!("MAIL FROM:<{SENDER}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
                client.get_mut().write_all(cmds.as_bytes()).await?;
                for code in [250, 250, 354] {
                    expect(&mut client, code).await?;
                }
                client.get_mut().write_all(&body).await?;
                expect(&mut client, 250).await?;
                sent += 1;
            }
            client.get_mut().write_all(b"QUIT\r\n").await?;
            anyhow::Ok(sent)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total)
}

/// A message of about `size` bytes with CRLF line ends and the final dot.
fn message(size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{SENDER}>\r\nTo: <list@bench.test>\r\nSubject: outbound benchmark\r\n\
         Message-ID: <bench@bench.test>\r\n\r\n"
    )
    .into_bytes();
    while m.len() + 80 < size {
        m.extend_from_slice(&[b'x'; 76]);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b".\r\n");
    m
}

async fn connect(submit: Submit) -> anyhow::Result<BufReader<Box<dyn Io>>> {
    let tcp = TcpStream::connect(submit.addr).await?;
    tcp.set_nodelay(true)?;
    let mut c: BufReader<Box<dyn Io>> = BufReader::new(Box::new(tcp));
    expect(&mut c, 220).await?;
    c.get_mut().write_all(b"EHLO bench.test\r\n").await?;
    expect(&mut c, 250).await?;
    if !submit.tls {
        return Ok(c);
    }
    c.get_mut().write_all(b"STARTTLS\r\n").await?;
    expect(&mut c, 220).await?;
    let io = c.into_inner();
    let name = rustls_pki_types::ServerName::try_from("mx.bench.test")?.to_owned();
    let tls = tokio_rustls::TlsConnector::from(tls_client_config())
        .connect(name, io)
        .await?;
    let mut c: BufReader<Box<dyn Io>> = BufReader::new(Box::new(tls));
    c.get_mut().write_all(b"EHLO bench.test\r\n").await?;
    expect(&mut c, 250).await?;
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{SENDER}\0{PASSWORD}"));
    // A burst of logins may meet authd's start-up or its throttle (454): try again, as a
    // real client would.
    for attempt in 1.. {
        c.get_mut()
            .write_all(format!("AUTH PLAIN {plain}\r\n").as_bytes())
            .await?;
        match expect(&mut c, 235).await {
            Ok(()) => break,
            Err(e) if attempt < 20 && e.to_string().contains("454") => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(c)
}

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect(c: &mut BufReader<Box<dyn Io>>, code: u16) -> anyhow::Result<()> {
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(REPLY_TIMEOUT, c.read_line(&mut line)).await??;
        if n == 0 {
            bail!("connection closed waiting for {code}");
        }
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        if !line.starts_with(&code.to_string()) {
            bail!("expected {code}, got {:?}", line.trim_end());
        }
        return Ok(());
    }
}

// ---------------------------------------------------------------------------------------------
// The sink

/// An SMTP server that accepts every message and counts them (no STARTTLS, PIPELINING).
struct Sink {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
}

impl Sink {
    async fn start() -> anyhow::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let count = Arc::new(AtomicU64::new(0));
        let counter = count.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(sink_session(stream, counter.clone()));
            }
        });
        Ok(Sink { addr, count })
    }
}

async fn sink_session(stream: TcpStream, count: Arc<AtomicU64>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut out = b"220 sink ESMTP\r\n".to_vec();
    let mut line = Vec::new();
    let mut in_data = false;
    loop {
        if r.buffer().is_empty() && !out.is_empty() {
            w.write_all(&out).await?;
            out.clear();
        }
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if in_data {
            if line == b".\r\n" || line == b".\n" {
                in_data = false;
                count.fetch_add(1, Ordering::Relaxed);
                out.extend_from_slice(b"250 2.0.0 ok\r\n");
            }
            continue;
        }
        let verb = line.get(..4).map(|v| v.to_ascii_uppercase());
        match verb.as_deref() {
            Some(b"EHLO") => out.extend_from_slice(
                b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 100000000\r\n250 SMTPUTF8\r\n",
            ),
            Some(b"DATA") => {
                in_data = true;
                out.extend_from_slice(b"354 go\r\n");
            }
            Some(b"QUIT") => {
                out.extend_from_slice(b"221 bye\r\n");
                w.write_all(&out).await?;
                return Ok(());
            }
            _ => out.extend_from_slice(b"250 ok\r\n"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Postfix

/// A private Postfix relaying everything to the sink; stopped when dropped.
struct Postfix {
    dir: tempfile::TempDir,
    port: u16,
    pid: Option<i32>,
}

impl Postfix {
    fn start(sink_port: u16) -> anyhow::Result<Postfix> {
        if !harness::is_root() {
            bail!("a private Postfix needs root");
        }
        if !Path::new("/usr/sbin/postfix").is_file() {
            bail!("postfix is not installed (Debian package postfix)");
        }
        let dir = tempfile::Builder::new()
            .prefix("pfout")
            .tempdir_in("/tmp")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let mut me = Postfix {
            dir,
            port: harness::free_port(),
            pid: None,
        };
        me.write(sink_port)?;
        let mut start = Command::new("/usr/sbin/postfix");
        start.arg("-c").arg(me.path("postfix")).arg("start");
        run(&mut start, &me.path("start.log"))?;
        me.pid = Some(read_pid(&me.path("postfix-queue/pid/master.pid"))?);
        wait_for_banner(SocketAddr::from(([127, 0, 0, 1], me.port)))?;
        Ok(me)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, sink_port: u16) -> anyhow::Result<()> {
        let d = self.dir.path().display();
        for sub in ["postfix", "postfix-queue", "postfix-data"] {
            std::fs::create_dir_all(self.path(sub))?;
        }
        let postfix = user("postfix")?;
        nix::unistd::chown(&self.path("postfix-data"), Some(postfix.uid), None)?;
        let main_cf = format!(
            "compatibility_level = 3.6\nmyhostname = postfix.bench.test\nmydomain = bench.test\n\
             mydestination =\nlocal_recipient_maps =\nalias_maps =\nalias_database =\n\
             relay_domains =\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\nrelayhost = [127.0.0.1]:{sink_port}\n\
             queue_directory = {d}/postfix-queue\ndata_directory = {d}/postfix-data\n\
             maillog_file = {d}/postfix.log\nmaillog_file_prefixes = {d}\n\
             smtpd_tls_security_level = none\nsmtp_tls_security_level = none\n"
        );
        std::fs::write(self.path("postfix/main.cf"), main_cf)?;
        std::fs::write(self.path("postfix/master.cf"), postfix_master_cf(self.port))?;
        Ok(())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(self.path("postfix"))
            .arg("stop")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Some(pid) = self.pid {
            stop_tree(pid);
        }
    }
}

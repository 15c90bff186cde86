//! Benchmark: IMAP over implicit TLS (993), Postern's postern-imapd against a private Dovecot
//! on copies of the same Maildir files, in the same run (issue 5, "Benchmark"). Asserts
//! nothing, installs nothing; prints each system's figures and the ratios.
//! 1. A large INBOX (`--messages`, 20,000 of 4 KiB): connect+LOGIN+SELECT cold (first ever:
//!    the index is built) and warm; `UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)` cold and
//!    warm; `UID SEARCH FROM`, `SUBJECT`, `BODY`; `UID STORE 1:* +FLAGS.SILENT (\Flagged)`.
//!    Each run starts both systems afresh; medians with min/max over `--runs`.
//! 2. Memory: `--sessions` sessions logged in and idling in IDLE; the added PSS and RSS per
//!    session of the whole process tree.
//! 3. Concurrency: `--idle` (10,000) IDLE sessions on Postern from several 127.0.0.x source
//!    addresses, one SMTP delivery to every user, time until every session saw `* N EXISTS`.
//!    Dovecot gets `--dovecot-idle` sessions and a file dropped into each new/.
//!
//! Run as root with Debian's dovecot-core and dovecot-imapd for the comparison:
//!   CARGO_TARGET_DIR=/work/target-bench cargo build --release --workspace
//!   /work/target-bench/release/bench-imap
//!
//! Options: `--messages N` (20000), `--size BYTES` (4096), `--runs N` (3), `--sessions N`
//! (200), `--idle N` (10000), `--dovecot-idle N` (1000), `--users N` (100),
//! `--only postern|dovecot`, `--large-only` (skip the memory and IDLE parts 2 and 3).

mod client;
mod systems;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use client::Imap;
use systems::{Dovecot, Postern, address, password};

const USAGE: &str = "usage: bench-imap [--messages N] [--size BYTES] [--runs N] [--sessions N] \
                     [--idle N] [--dovecot-idle N] [--users N] [--only postern|dovecot] \
                     [--large-only]";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Postern,
    Dovecot,
}

pub struct Options {
    pub messages: usize,
    pub size: usize,
    pub runs: usize,
    pub sessions: usize,
    pub idle: usize,
    pub dovecot_idle: usize,
    pub users: usize,
    pub only: Option<Kind>,
    /// Only the large-mailbox steps: no memory and IDLE phase.
    pub large_only: bool,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut o = Options {
        messages: 20_000,
        size: 4096,
        runs: 3,
        sessions: 200,
        idle: 10_000,
        dovecot_idle: 1000,
        users: 100,
        only: None,
        large_only: false,
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
            "--runs" => o.runs = number()?,
            "--sessions" => o.sessions = number()?,
            "--idle" => o.idle = number()?,
            "--dovecot-idle" => o.dovecot_idle = number()?,
            "--users" => o.users = number()?,
            "--large-only" => o.large_only = true,
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

type Results = BTreeMap<(&'static str, Kind), Vec<f64>>;

const STEPS: [(&str, &str); 5] = [
    (
        "UID FETCH ENVELOPE",
        "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)",
    ),
    ("UID SEARCH FROM", "UID SEARCH FROM zebrowski"),
    ("UID SEARCH SUBJECT", "UID SEARCH SUBJECT quarterly"),
    ("UID SEARCH BODY", "UID SEARCH BODY xylophone"),
    (
        "UID STORE +FLAGS",
        "UID STORE 1:* +FLAGS.SILENT (\\Flagged)",
    ),
];

/// One session on the large mailbox: connect+LOGIN+SELECT, then the commands of `steps`.
async fn large(
    kind: Kind,
    addr: SocketAddr,
    phase: &str,
    steps: &[(&'static str, &str)],
    o: &Options,
    results: &mut Results,
) -> anyhow::Result<()> {
    let tls = client::config();
    let t = Instant::now();
    let mut imap = Imap::connect(addr, None, tls).await?;
    let count = imap.login_select(&address(0), &password(0)).await?;
    anyhow::ensure!(count == o.messages, "{kind:?}: SELECT saw {count} messages");
    let mut record = |step: &str, secs: f64, note: String| {
        println!("  {kind:?} {step:<28} {:>9.1} ms {note}", secs * 1000.0);
        let key: &'static str = Box::leak(step.to_string().into_boxed_str());
        results.entry((key, kind)).or_default().push(secs);
    };
    record(
        &format!("connect+LOGIN+SELECT {phase}"),
        t.elapsed().as_secs_f64(),
        String::new(),
    );
    for (name, command) in steps {
        let t = Instant::now();
        let r = imap.command(command).await?;
        let secs = t.elapsed().as_secs_f64();
        let note = if name.contains("SEARCH") {
            format!("({} hits)", client::search_count(&r))
        } else {
            format!("({} lines)", r.untagged.len())
        };
        let label = if name.contains("FETCH") {
            format!("{name} {phase}")
        } else {
            name.to_string()
        };
        record(&label, secs, note);
    }
    imap.command("LOGOUT").await?;
    Ok(())
}

async fn large_mailbox(
    kind: Kind,
    addr: SocketAddr,
    o: &Options,
    results: &mut Results,
) -> anyhow::Result<()> {
    large(kind, addr, "cold", &STEPS[..1], o, results).await?;
    large(kind, addr, "warm", &STEPS, o, results).await
}

/// Opens `n` sessions (user 1..=users in turn, source 127.0.0.2.. in turn, at most 200
/// handshakes at once) that each SELECT INBOX and enter IDLE.
async fn open_idle(addr: SocketAddr, n: usize, users: usize) -> anyhow::Result<Vec<Imap>> {
    let tls = client::config();
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (tls, gate) = (tls.clone(), gate.clone());
        let source = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            2 + (i / 20_000 % 200) as u8 + (i % 8) as u8,
        ));
        tasks.spawn(async move {
            let _permit = gate.acquire().await?;
            let u = 1 + i % users;
            let mut imap = Imap::connect(addr, Some(source), tls).await?;
            imap.login_select(&address(u), &password(u)).await?;
            imap.send("IDLE").await?;
            let cont = imap.line().await?;
            anyhow::ensure!(cont.starts_with(b"+"), "IDLE answered {cont:?}");
            anyhow::Ok(imap)
        });
    }
    let mut out = Vec::with_capacity(n);
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done? {
            Ok(imap) => out.push(imap),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        println!("  {} of {n} sessions failed; first: {e:#}", n - out.len());
    }
    Ok(out)
}

/// Waits until every session reads a `* N EXISTS`; returns the seconds from `t0` to the last.
async fn all_exists(sessions: Vec<Imap>, t0: Instant) -> (usize, f64) {
    let mut tasks = tokio::task::JoinSet::new();
    for mut imap in sessions {
        tasks.spawn(async move {
            loop {
                let l = imap.line().await.ok()?;
                if client::exists(&l).is_some() {
                    return Some(t0.elapsed().as_secs_f64());
                }
            }
        });
    }
    let (mut got, mut last) = (0, 0.0f64);
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(t)) = done {
            got += 1;
            last = last.max(t);
        }
    }
    (got, last)
}

fn record(results: &mut Results, step: &'static str, kind: Kind, v: f64) {
    results.entry((step, kind)).or_default().push(v);
}

/// One session per user, one after the other, before the concurrent phases: a user's first
/// logins at the same moment race while creating its mail store (reported, not measured here).
async fn prime(addr: SocketAddr, users: usize) -> anyhow::Result<()> {
    for u in 1..=users {
        let mut imap = Imap::connect(addr, None, client::config()).await?;
        imap.login_select(&address(u), &password(u)).await?;
        imap.command("LOGOUT").await?;
    }
    Ok(())
}

/// Memory per idle session: the process tree under `root` before and after `n` sessions.
async fn memory(
    kind: Kind,
    addr: SocketAddr,
    root: i32,
    o: &Options,
    results: &mut Results,
) -> anyhow::Result<()> {
    prime(addr, o.users).await?;
    let (pss0, rss0) = systems::memory_kib(root);
    let fds0 = systems::fd_count(root);
    let sessions = open_idle(addr, o.sessions, o.users).await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (pss1, rss1) = systems::memory_kib(root);
    let n = sessions.len().max(1) as f64;
    let fds = (systems::fd_count(root) as f64 - fds0 as f64) / n;
    println!("  {kind:?} open descriptors of the tree: {fds:.1} per IDLE session");
    record(results, "descriptors per IDLE session", kind, fds);
    let (pss, rss) = (
        (pss1 as f64 - pss0 as f64) / n,
        (rss1 as f64 - rss0 as f64) / n,
    );
    println!(
        "  {kind:?} {} IDLE sessions: tree PSS {pss0} -> {pss1} KiB ({pss:.1} KiB/session), \
         RSS {rss0} -> {rss1} KiB ({rss:.1} KiB/session)",
        sessions.len()
    );
    record(results, "PSS KiB per IDLE session", kind, pss);
    record(results, "RSS KiB per IDLE session", kind, rss);
    drop(sessions);
    Ok(())
}

/// `n` IDLE sessions, then one new message for every user: seconds until all saw EXISTS.
async fn concurrency(
    kind: Kind,
    addr: SocketAddr,
    n: usize,
    o: &Options,
    deliver: impl FnOnce() -> anyhow::Result<()>,
    results: &mut Results,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let sessions = open_idle(addr, n, o.users).await?;
    let held = sessions.len();
    println!(
        "  {kind:?} {held} of {n} IDLE sessions open in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let t0 = Instant::now();
    deliver()?;
    let (got, last) = all_exists(sessions, t0).await;
    println!(
        "  {kind:?} {got} of {held} sessions saw EXISTS; the last after {:.3} s",
        last
    );
    let step: &'static str =
        Box::leak(format!("IDLE sessions held ({kind:?} asked {n})").into_boxed_str());
    record(results, step, kind, held as f64);
    record(results, "new mail -> all EXISTS (s)", kind, last);
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
    raise_nofile();
    println!(
        "IMAP benchmark over TLS (993): {} messages of {} B; {} run(s); {} memory sessions; \
         {} IDLE sessions (Dovecot {})",
        o.messages, o.size, o.runs, o.sessions, o.idle, o.dovecot_idle
    );
    let with_dovecot = match (o.only, Dovecot::find()) {
        (Some(Kind::Postern), _) => false,
        (_, Ok(version)) => {
            println!("comparison: Dovecot {version}, private instance on 127.0.0.1");
            true
        }
        (_, Err(why)) => {
            println!("comparison with Dovecot SKIPPED: {why}");
            false
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    let mut results = Results::new();
    for run in 0..o.runs {
        println!("\n[run {}/{}]", run + 1, o.runs);
        let postern = Postern::start(&o)?;
        let dovecot = if with_dovecot {
            Some(Dovecot::start(&o, &postern)?)
        } else {
            None
        };
        if let Some(pid) = postern.imapd_pid() {
            println!(
                "  postern-imapd pid {pid}: max open files {}",
                systems::fd_limit(pid)
            );
        }
        let mut order = Vec::new();
        if o.only != Some(Kind::Dovecot) {
            order.push((Kind::Postern, postern.imaps()));
        }
        if let Some(d) = &dovecot {
            order.push((Kind::Dovecot, d.imaps()));
        }
        if run % 2 == 1 {
            order.reverse();
        }
        for &(kind, addr) in &order {
            if let Err(e) = rt.block_on(large_mailbox(kind, addr, &o, &mut results)) {
                println!("  {kind:?} FAILED: {e:#}");
            }
        }
        if run + 1 == o.runs && !o.large_only {
            sessions_phase(&rt, &o, &postern, dovecot.as_ref(), &mut results);
        }
        for p in harness::bench::grep_lines(&postern.server.log, &[" WARN ", " ERROR ", "panicked"])
            .iter()
            .take(5)
        {
            println!("  postern log: {p}");
        }
    }
    print_summary(&results);
    Ok(())
}

/// Memory and concurrency, once (in the last run).
fn sessions_phase(
    rt: &tokio::runtime::Runtime,
    o: &Options,
    postern: &Postern,
    dovecot: Option<&Dovecot>,
    results: &mut Results,
) {
    if o.only != Some(Kind::Dovecot) {
        let root = postern.server.pid;
        if let Err(e) = rt.block_on(memory(Kind::Postern, postern.imaps(), root, o, results)) {
            println!("  Postern memory FAILED: {e:#}");
        }
        let smtp = postern.smtp();
        let deliver = || systems::smtp_deliver(smtp, o.users);
        let r = rt.block_on(concurrency(
            Kind::Postern,
            postern.imaps(),
            o.idle,
            o,
            deliver,
            results,
        ));
        if let Err(e) = r {
            println!("  Postern concurrency FAILED: {e:#}");
        }
    }
    let Some(d) = dovecot else { return };
    let Some(root) = d.pid else { return };
    if let Err(e) = rt.block_on(memory(Kind::Dovecot, d.imaps(), root, o, results)) {
        println!("  Dovecot memory FAILED: {e:#}");
    }
    let deliver = || {
        for u in 1..=o.users {
            let m = systems::message(u, 999_999, 1000);
            let dir = d.maildir(u);
            let name = format!("1800000000.M{u}P1Q1.bench,S={}", m.len());
            std::fs::write(dir.join("tmp").join(&name), &m)?;
            std::fs::rename(dir.join("tmp").join(&name), dir.join("new").join(&name))?;
        }
        anyhow::Ok(())
    };
    let r = rt.block_on(concurrency(
        Kind::Dovecot,
        d.imaps(),
        o.dovecot_idle,
        o,
        deliver,
        results,
    ));
    if let Err(e) = r {
        println!("  Dovecot concurrency FAILED: {e:#}");
    }
}

/// The bench holds one descriptor per session: soft limit up to the hard limit.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    println!("bench process: open files limit {}", lim.rlim_cur);
}

fn print_summary(results: &Results) {
    println!(
        "\n== Summary (median [min-max]; time ratio = Postern / Dovecot, <= 1 meets the target) =="
    );
    println!(
        "{:<40} {:>26} {:>26} {:>8}  target",
        "step", "Postern", "Dovecot", "ratio"
    );
    let mut steps: Vec<&'static str> = Vec::new();
    for (step, _) in results.keys() {
        if !steps.contains(step) {
            steps.push(step);
        }
    }
    for step in steps {
        let get = |k: Kind| {
            results
                .get(&(step, k))
                .and_then(|v| harness::bench::spread(v))
        };
        let show = |s: Option<(f64, f64, f64)>| {
            s.map_or("-".into(), |(m, lo, hi)| {
                format!("{m:.4} [{lo:.4}-{hi:.4}]")
            })
        };
        let (p, d) = (get(Kind::Postern), get(Kind::Dovecot));
        let ratio = match (p, d) {
            (Some(p), Some(d)) if d.0 > 0.0 => Some(p.0 / d.0),
            _ => None,
        };
        let limit = if step.contains("BODY") {
            0.5
        } else if step.contains("per IDLE") {
            0.125
        } else {
            1.0
        };
        let verdict = match ratio {
            _ if step.contains("held") || step.contains("EXISTS") => "-",
            Some(r) if r <= limit => "met",
            Some(_) => "MISSED",
            None => "-",
        };
        let ratio = ratio.map_or("-".into(), |r| format!("{r:.2}"));
        println!(
            "{step:<40} {:>26} {:>26} {ratio:>8}  {verdict} (<= {limit})",
            show(p),
            show(d)
        );
    }
}

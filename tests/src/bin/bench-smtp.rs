//! Benchmark: SMTP transfer into Maildirs, port-25 semantics (local recipients, no AUTH, no
//! TLS). N messages of SIZE bytes to M local mailboxes from S concurrent sessions, once with one
//! message per connection and once with connections reused. Prints accepted msg/s (until the
//! last 250 after DATA), delivered msg/s (until every message is a file in its Maildir's `new/`
//! or `cur/`) and the CPU time per message of the server's whole process tree, reaped children
//! included. When Postfix and Dovecot are installed (and we are root) it sets up private
//! instances of them under a temporary directory (Postfix → Dovecot LMTP → Maildir, their
//! defaults otherwise), runs the same load in the same run, alternating the order, and prints
//! the ratios against the target (5× the delivered msg/s, 1/5 of the CPU per message).
//! Asserts nothing and installs nothing. Build in release for meaningful numbers:
//!   CARGO_TARGET_DIR=/work/target-bench cargo build --release --workspace
//!   /work/target-bench/release/bench-smtp
//! Delivered mail is set aside between phases and deleted at the end (see `set_aside`).
//! Options: `--messages N` (20000), `--sessions N` (20), `--mailboxes N` (50), `--size BYTES`
//! (4096), `--runs N` (1; medians with min and max when more), `--only postern|postfix`, and
//! for diagnosis `--no-pipelining` (MAIL, RCPT and DATA each wait for their reply) and
//! `--same-ground` (phases not spread over block groups: see `spread_phases`); `--dir DIR`
//! puts both systems' state on another file system (default /tmp).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use harness::bench::*;
use harness::{Server, Setup};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const DOMAIN: &str = "example.test";
const SENDER: &str = "sender@bench.example.net";
/// Longest time for sending the whole load, and then for delivering it.
const LOAD_LIMIT: Duration = Duration::from_secs(600);
const DELIVERY_LIMIT: Duration = Duration::from_secs(600);
/// Longest wait for the queue to empty after the last delivery (before CPU is sampled).
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait for one connection or one SMTP reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
const USAGE: &str = "usage: bench-smtp [--messages N] [--sessions N] [--mailboxes N] \
                     [--size BYTES] [--runs N] [--only postern|postfix] [--no-pipelining] \
                     [--same-ground] [--dir DIR]";
const INSTALL_HINT: &str = "echo 'postfix postfix/main_mailer_type select No configuration' \
     | debconf-set-selections && DEBIAN_FRONTEND=noninteractive \
     apt-get install -y postfix dovecot-core dovecot-lmtpd";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Postern,
    Postfix,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Postern => "postern",
            Kind::Postfix => "postfix+dovecot",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    PerConnection,
    Reused,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::PerConnection => "one message per connection",
            Mode::Reused => "connections reused",
        }
    }
}

/// Whether the client pipelines MAIL, RCPT and DATA (RFC 2920).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipelining {
    WhenOffered,
    Never,
}

struct Options {
    messages: u64,
    sessions: u64,
    mailboxes: u64,
    size: usize,
    runs: usize,
    only: Option<Kind>,
    pipelining: Pipelining,
    /// Give each phase fresh block groups (`spread_phases`); off with `--same-ground`.
    spread: bool,
    /// Where both systems keep their state (`--dir`, default /tmp).
    dir: PathBuf,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut o = Options {
        messages: 20_000,
        sessions: 20,
        mailboxes: 50,
        size: 4096,
        runs: 1,
        only: None,
        pipelining: Pipelining::WhenOffered,
        spread: true,
        dir: PathBuf::from("/tmp"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(name) = args.next() {
        let mut number = || positive(&name, args.next());
        match name.as_str() {
            "--messages" => o.messages = number()?,
            "--sessions" => o.sessions = number()?,
            "--mailboxes" => o.mailboxes = number()?,
            "--size" => o.size = number()? as usize,
            "--runs" => o.runs = number()? as usize,
            "--only" => {
                o.only = Some(match args.next().as_deref() {
                    Some("postern") => Kind::Postern,
                    Some("postfix") => Kind::Postfix,
                    other => bail!(
                        "--only takes postern or postfix, not {:?}",
                        other.unwrap_or_default()
                    ),
                })
            }
            "--no-pipelining" => o.pipelining = Pipelining::Never,
            "--same-ground" => o.spread = false,
            "--dir" => {
                o.dir = args
                    .next()
                    .map(PathBuf::from)
                    .with_context(|| format!("--dir needs a directory\n{USAGE}"))?
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown option {name}\n{USAGE}"),
        }
    }
    Ok(o)
}

fn positive(name: &str, value: Option<String>) -> anyhow::Result<u64> {
    match value.as_deref().map(str::parse::<u64>) {
        Some(Ok(n)) if n > 0 => Ok(n),
        _ => bail!(
            "{name} takes a positive number, not {:?}\n{USAGE}",
            value.unwrap_or_default()
        ),
    }
}

fn main() -> anyhow::Result<()> {
    let opts = match parse_options() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(2);
        }
    };
    println!(
        "SMTP transfer benchmark: {} messages of {} bytes to {} mailboxes, {} sessions, {} run(s)",
        opts.messages, opts.size, opts.mailboxes, opts.sessions, opts.runs
    );
    println!("binaries: {}", harness::bin_dir().display());
    if opts.pipelining == Pipelining::Never {
        println!("client pipelining OFF: MAIL, RCPT and DATA each wait for their reply");
    }
    if opts.spread {
        spread_phases(&opts.dir);
    } else {
        println!("phases share block groups (--same-ground)");
        harness::set_temp_base(opts.dir.clone());
    }
    GRAVEYARD_DIR.get_or_init(|| opts.dir.clone());
    let (kinds, tools) = systems(&opts);
    if kinds.is_empty() {
        eprintln!("nothing to benchmark");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let mut results: HashMap<(Kind, Mode), Vec<Outcome>> = HashMap::new();
    for run in 0..opts.runs {
        for (m, mode) in [Mode::PerConnection, Mode::Reused].into_iter().enumerate() {
            // Alternate which system goes first.
            let mut order = kinds.clone();
            if (run + m) % 2 == 1 {
                order.reverse();
            }
            for kind in order {
                println!(
                    "\n[run {}/{}] {}, {}",
                    run + 1,
                    opts.runs,
                    kind.label(),
                    mode.label()
                );
                let tag = format!("b{}r{run}m{m}{kind:?}", std::process::id());
                match run_phase(&runtime, kind, tools.as_ref(), mode, tag, &opts) {
                    Ok(outcome) => {
                        outcome.print();
                        results.entry((kind, mode)).or_default().push(outcome);
                    }
                    Err(e) => println!("  FAILED: {e:#}"),
                }
            }
        }
    }
    print_summary(&results, &kinds, &opts);
    let _ = std::fs::remove_dir_all(graveyard());
    if opts.spread {
        let _ = std::fs::remove_dir(harness::temp_base());
    }
    Ok(())
}

/// The systems to measure, and the Postfix and Dovecot programs when they are among them.
fn systems(opts: &Options) -> (Vec<Kind>, Option<Tools>) {
    let mut kinds = Vec::new();
    if opts.only != Some(Kind::Postfix) {
        kinds.push(Kind::Postern);
    }
    if opts.only == Some(Kind::Postern) {
        return (kinds, None);
    }
    match Tools::find() {
        Ok(tools) => {
            println!(
                "comparison: Postfix {} + Dovecot {}, private instances on 127.0.0.1",
                tools.postfix_version, tools.dovecot_version
            );
            kinds.push(Kind::Postfix);
            (kinds, Some(tools))
        }
        Err(why) => {
            println!("comparison with Postfix + Dovecot SKIPPED: {why}");
            (kinds, None)
        }
    }
}

/// Starts a fresh instance of `kind`, runs the load against it, stops it.
fn run_phase(
    runtime: &tokio::runtime::Runtime,
    kind: Kind,
    tools: Option<&Tools>,
    mode: Mode,
    tag: String,
    opts: &Options,
) -> anyhow::Result<Outcome> {
    let instance: Box<dyn Instance> = match kind {
        Kind::Postern => Box::new(Postern::start(opts.mailboxes)),
        Kind::Postfix => {
            let tools = tools.context("Postfix and Dovecot were not found")?;
            Box::new(PostfixDovecot::start(tools, opts.mailboxes).context("starting them")?)
        }
    };
    let load = Arc::new(Load::new(opts, instance.smtp(), mode, tag.clone()));
    let outcome = measure(runtime, instance.as_ref(), &load, opts);
    set_aside(&instance.mail_root(), &tag);
    Ok(outcome)
}

/// Makes every phase's directories (Postern's and Postfix's alike) land in block groups of
/// their own. On ext4 without a journal (this benchmark machine's root file system; Debian's
/// default ext4 has one) every file creation skips, one inode-table lookup each, the inodes
/// of its block group freed in the last 60 to 360 s: after Postfix's phase deletes its 20,000
/// queue files, a file created in the same group costs about 14 times the CPU (measured:
/// 0.26 ms instead of 0.02 ms), a tax on whichever system runs next. Directories made in a
/// directory flagged `chattr +T` (EXT4_TOPDIR_FL) are spread over the block groups by the
/// kernel, so each phase starts on ground nobody just cleared. `--same-ground` turns it off.
fn spread_phases(dir: &Path) {
    let base = dir.join(format!("bench-smtp-{}", std::process::id()));
    let made = std::fs::create_dir_all(&base)
        .and_then(|()| std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)));
    if let Err(e) = made {
        println!(
            "phases share block groups: cannot create {}: {e}",
            base.display()
        );
        return;
    }
    match Command::new("chattr").arg("+T").arg(&base).output() {
        Ok(out) if out.status.success() => {
            println!(
                "phases spread over block groups ({} is chattr +T)",
                base.display()
            );
        }
        Ok(out) => println!(
            "phases may share block groups: chattr +T failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => println!("phases may share block groups: chattr: {e}"),
    }
    harness::set_temp_base(base);
}

/// `--dir`: the graveyard must be on the file system of the mail it receives (rename).
static GRAVEYARD_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Where delivered mail waits until the end of the benchmark.
fn graveyard() -> PathBuf {
    let dir = GRAVEYARD_DIR.get_or_init(|| PathBuf::from("/tmp"));
    dir.join(format!("bench-smtp-spent-{}", std::process::id()))
}

/// Moves a phase's delivered mail aside instead of deleting it now: deleting thousands of
/// files marks their inodes as recently deleted, and ext4 without a journal (as on the
/// benchmark machine) then scans past them on every file creation for a minute or more,
/// taxing whichever system runs next. Everything is deleted at the end.
fn set_aside(mail_root: &Path, tag: &str) {
    let spent = graveyard();
    let moved =
        std::fs::create_dir_all(&spent).and_then(|()| std::fs::rename(mail_root, spent.join(tag)));
    if let Err(e) = moved {
        println!("  (could not set {} aside: {e})", mail_root.display());
    }
}

// ---------------------------------------------------------------------------------------------
// Systems under test

/// A running mail system under test.
trait Instance {
    fn smtp(&self) -> SocketAddr;
    /// The Maildir (holding `new/` and `cur/`) of mailbox `n`.
    fn maildir(&self, n: u64) -> PathBuf;
    /// Roots of the process trees whose CPU time is counted.
    fn cpu_roots(&self) -> Vec<i32>;
    /// Messages still in the queue.
    fn queued(&self) -> usize;
    /// The directory holding every delivered message (moved aside after the phase).
    fn mail_root(&self) -> PathBuf;
    /// Log lines worth showing after a phase (warnings, errors).
    fn problems(&self) -> Vec<String>;
}

fn mailbox_address(n: u64) -> String {
    format!("user{n}@{DOMAIN}")
}

struct Postern {
    server: Server,
}

impl Postern {
    fn start(mailboxes: u64) -> Postern {
        let setup = Setup::new(
            "[log]\nlevel = \"warn\"\n\n[limits]\nconnections_per_ip = 1000\n\
             connections = 2000\ncommands_before_mail = 1000000\n",
        );
        harness::write(&setup.path("etc/aliases"), "");
        for n in 0..mailboxes {
            setup.add_user(&mailbox_address(n), &format!("password-{n}"));
        }
        Postern {
            server: setup.start(),
        }
    }
}

impl Instance for Postern {
    fn smtp(&self) -> SocketAddr {
        self.server.setup().addr("smtp")
    }
    fn maildir(&self, n: u64) -> PathBuf {
        self.server
            .setup()
            .path(&format!("state/mail/{DOMAIN}/user{n}"))
    }
    fn mail_root(&self) -> PathBuf {
        self.server.setup().path("state/mail")
    }
    fn cpu_roots(&self) -> Vec<i32> {
        vec![self.server.pid]
    }
    fn queued(&self) -> usize {
        let queue = self.server.setup().path("state/queue");
        std::fs::read_dir(queue)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".msg"))
                    .count()
            })
            .unwrap_or(0)
    }
    fn problems(&self) -> Vec<String> {
        grep_lines(&self.server.log, &[" WARN ", " ERROR ", "panicked"])
    }
}

/// The installed Postfix and Dovecot programs.
struct Tools {
    postfix: PathBuf,
    dovecot: PathBuf,
    doveadm: PathBuf,
    postfix_version: String,
    dovecot_version: String,
}

impl Tools {
    /// The programs, or why the comparison cannot run.
    fn find() -> Result<Tools, String> {
        if !harness::is_root() {
            return Err("private Postfix and Dovecot instances need root".into());
        }
        let program = |name: &str, package: &str| {
            ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/lib/dovecot"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
                .ok_or(format!(
                    "{name} not found (package {package}); to install: {INSTALL_HINT}"
                ))
        };
        let postfix = program("postfix", "postfix")?;
        let postconf = program("postconf", "postfix")?;
        let dovecot = program("dovecot", "dovecot-core")?;
        let doveadm = program("doveadm", "dovecot-core")?;
        program("lmtp", "dovecot-lmtpd")?;
        for user in ["postfix", "mail"] {
            if !matches!(nix::unistd::User::from_name(user), Ok(Some(_))) {
                return Err(format!("system user {user} missing"));
            }
        }
        let output = |cmd: &Path, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .map_err(|e| format!("{}: {e}", cmd.display()))
        };
        let postfix_version = output(&postconf, &["-d", "-h", "mail_version"])?;
        let dovecot_version = output(&dovecot, &["--version"])?;
        Ok(Tools {
            postfix,
            dovecot,
            doveadm,
            postfix_version,
            dovecot_version,
        })
    }
}

/// Private Postfix and Dovecot instances under a temporary directory; stopped when dropped.
struct PostfixDovecot {
    dir: tempfile::TempDir,
    port: u16,
    postfix: PathBuf,
    doveadm: PathBuf,
    postfix_started: bool,
    dovecot_started: bool,
    postfix_pid: Option<i32>,
    dovecot_pid: Option<i32>,
}

impl PostfixDovecot {
    fn start(tools: &Tools, mailboxes: u64) -> anyhow::Result<PostfixDovecot> {
        let dir = tempfile::Builder::new()
            .prefix("pfbench")
            .tempdir_in(harness::temp_base())
            .context("tempdir")?;
        // The postfix and mail users must reach their directories below it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let mut me = PostfixDovecot {
            dir,
            port: harness::free_port(),
            postfix: tools.postfix.clone(),
            doveadm: tools.doveadm.clone(),
            postfix_started: false,
            dovecot_started: false,
            postfix_pid: None,
            dovecot_pid: None,
        };
        me.write_dovecot(mailboxes)?;
        me.write_postfix(mailboxes)?;
        me.dovecot_started = true;
        let mut dovecot = Command::new(&tools.dovecot);
        dovecot.arg("-c").arg(me.dovecot_conf());
        run(&mut dovecot, &me.path("dovecot/start.log")).with_context(|| me.logs())?;
        me.dovecot_pid =
            Some(read_pid(&me.path("dovecot/run/master.pid")).with_context(|| me.logs())?);
        wait_for(&me.path("dovecot/run/lmtp")).with_context(|| me.logs())?;
        me.postfix_started = true;
        let mut postfix = Command::new(&me.postfix);
        postfix.arg("-c").arg(me.path("postfix")).arg("start");
        run(&mut postfix, &me.path("postfix-start.log")).with_context(|| me.logs())?;
        me.postfix_pid =
            Some(read_pid(&me.path("postfix-queue/pid/master.pid")).with_context(|| me.logs())?);
        wait_for_banner(me.smtp()).with_context(|| me.logs())?;
        Ok(me)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn dovecot_conf(&self) -> PathBuf {
        self.path("dovecot/dovecot.conf")
    }

    fn logs(&self) -> String {
        let tail = |rel: &str| {
            let text = std::fs::read_to_string(self.path(rel)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        format!(
            "postfix.log:\n{}\ndovecot.log:\n{}",
            tail("postfix.log"),
            tail("dovecot/dovecot.log")
        )
    }

    fn write_dovecot(&self, mailboxes: u64) -> anyhow::Result<()> {
        let d = self.dir.path().display();
        for sub in ["dovecot/run", "dovecot/state", "mail"] {
            std::fs::create_dir_all(self.path(sub))?;
        }
        let mail = user("mail")?;
        nix::unistd::chown(&self.path("mail"), Some(mail.uid), Some(mail.gid))?;
        std::fs::set_permissions(self.path("mail"), std::fs::Permissions::from_mode(0o700))?;
        let users: String = (0..mailboxes)
            .map(|n| format!("{}:{{PLAIN}}password-{n}\n", mailbox_address(n)))
            .collect();
        std::fs::write(self.path("dovecot/users"), users)?;
        let conf = format!(
            "instance_name = postern-bench-{port}\n\
             base_dir = {d}/dovecot/run\nstate_dir = {d}/dovecot/state\n\
             protocols = lmtp\nlisten = 127.0.0.1\nssl = no\n\
             log_path = {d}/dovecot/dovecot.log\nfirst_valid_uid = {uid}\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=SHA512-CRYPT {d}/dovecot/users\n}}\n\
             userdb {{\n  driver = static\n  \
             args = uid=mail gid=mail home={d}/mail/%d/%n mail=maildir:~/Maildir\n}}\n\
             service lmtp {{\n  unix_listener lmtp {{\n    mode = 0600\n    user = postfix\n  }}\n}}\n",
            port = self.port,
            uid = mail.uid,
        );
        std::fs::write(self.dovecot_conf(), conf)?;
        Ok(())
    }

    fn write_postfix(&self, mailboxes: u64) -> anyhow::Result<()> {
        let d = self.dir.path().display();
        // The queue and data directories live outside the configuration directory: postfix
        // check wants everything under the latter owned by root.
        for sub in ["postfix", "postfix-queue", "postfix-data"] {
            std::fs::create_dir_all(self.path(sub))?;
        }
        let postfix = user("postfix")?;
        nix::unistd::chown(&self.path("postfix-data"), Some(postfix.uid), None)?;
        std::fs::set_permissions(
            self.path("postfix-data"),
            std::fs::Permissions::from_mode(0o700),
        )?;
        let vmailbox: String = (0..mailboxes)
            .map(|n| format!("{} ok\n", mailbox_address(n)))
            .collect();
        std::fs::write(self.path("postfix/vmailbox"), vmailbox)?;
        let main_cf = format!(
            "compatibility_level = 3.6\nmyhostname = postfix.bench.test\nmydomain = bench.test\n\
             mydestination =\nlocal_recipient_maps =\nalias_maps =\nalias_database =\n\
             relay_domains =\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             queue_directory = {d}/postfix-queue\ndata_directory = {d}/postfix-data\n\
             maillog_file = {d}/postfix.log\nmaillog_file_prefixes = {d}\n\
             smtpd_tls_security_level = none\nsmtp_tls_security_level = none\n\
             virtual_mailbox_domains = {DOMAIN}\n\
             virtual_mailbox_maps = texthash:{d}/postfix/vmailbox\n\
             virtual_transport = lmtp:unix:{d}/dovecot/run/lmtp\n"
        );
        std::fs::write(self.path("postfix/main.cf"), main_cf)?;
        let master_cf = postfix_master_cf(self.port);
        std::fs::write(self.path("postfix/master.cf"), master_cf)?;
        Ok(())
    }
}

impl Instance for PostfixDovecot {
    fn smtp(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    fn maildir(&self, n: u64) -> PathBuf {
        self.path(&format!("mail/{DOMAIN}/user{n}/Maildir"))
    }
    fn mail_root(&self) -> PathBuf {
        self.path("mail")
    }
    fn cpu_roots(&self) -> Vec<i32> {
        [self.postfix_pid, self.dovecot_pid]
            .into_iter()
            .flatten()
            .collect()
    }
    fn queued(&self) -> usize {
        ["incoming", "active", "deferred", "hold", "maildrop"]
            .iter()
            .map(|q| count_files_deep(&self.path(&format!("postfix-queue/{q}"))))
            .sum()
    }
    fn problems(&self) -> Vec<String> {
        let mut lines = grep_lines(
            &self.path("postfix.log"),
            &["warning:", "error:", "fatal:", "panic:"],
        );
        lines.extend(grep_lines(
            &self.path("dovecot/dovecot.log"),
            &["Warning:", "Error:", "Fatal:", "Panic:"],
        ));
        lines
    }
}

impl Drop for PostfixDovecot {
    fn drop(&mut self) {
        let quietly = |cmd: &mut Command| {
            let _ = cmd
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        if self.postfix_started {
            quietly(
                Command::new(&self.postfix)
                    .arg("-c")
                    .arg(self.path("postfix"))
                    .arg("stop"),
            );
            if let Some(pid) = self.postfix_pid {
                stop_tree(pid);
            }
        }
        if self.dovecot_started {
            quietly(
                Command::new(&self.doveadm)
                    .arg("-c")
                    .arg(self.dovecot_conf())
                    .arg("stop"),
            );
            if let Some(pid) = self.dovecot_pid {
                stop_tree(pid);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The load: an SMTP client

struct Load {
    addr: SocketAddr,
    mode: Mode,
    pipelining: Pipelining,
    messages: u64,
    mailboxes: u64,
    size: usize,
    /// Unique per phase: part of every Message-ID.
    tag: String,
}

impl Load {
    fn new(opts: &Options, addr: SocketAddr, mode: Mode, tag: String) -> Load {
        Load {
            addr,
            mode,
            pipelining: opts.pipelining,
            messages: opts.messages,
            mailboxes: opts.mailboxes,
            size: opts.size,
            tag,
        }
    }

    fn mailbox(&self, i: u64) -> u64 {
        i % self.mailboxes
    }

    /// Message `i` as sent (CRLF line ends, `size` bytes when the headers leave room), without
    /// the final dot. No line starts with a dot, so no stuffing is needed.
    fn message(&self, i: u64) -> Vec<u8> {
        const FILLER: &[u8] =
            b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789abcd";
        let mut m = format!(
            "From: Bench Sender <{SENDER}>\r\nTo: <{}>\r\nSubject: bench message {i}\r\n\
             Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{}.{i}@bench.example.net>\r\n\r\n",
            mailbox_address(self.mailbox(i)),
            self.tag
        )
        .into_bytes();
        while m.len() + 2 <= self.size {
            let room = self.size - m.len() - 2;
            m.extend_from_slice(&FILLER[..room.min(FILLER.len())]);
            m.extend_from_slice(b"\r\n");
        }
        m
    }
}

/// What the sessions count.
struct Tally {
    next: AtomicU64,
    accepted: AtomicU64,
    failed: AtomicU64,
    /// Microseconds from the start to the latest 250 after DATA.
    last_accept_us: AtomicU64,
    per_mailbox: Vec<AtomicU64>,
    accepted_msgs: Vec<AtomicBool>,
    errors: Mutex<HashMap<String, u64>>,
}

impl Tally {
    fn new(load: &Load) -> Tally {
        Tally {
            next: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_accept_us: AtomicU64::new(0),
            per_mailbox: (0..load.mailboxes).map(|_| AtomicU64::new(0)).collect(),
            accepted_msgs: (0..load.messages).map(|_| AtomicBool::new(false)).collect(),
            errors: Mutex::new(HashMap::new()),
        }
    }

    fn accept(&self, load: &Load, i: u64, t0: Instant) {
        self.per_mailbox[load.mailbox(i) as usize].fetch_add(1, Ordering::Relaxed);
        self.accepted_msgs[i as usize].store(true, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.last_accept_us
            .fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let key = if errors.len() < 20 || errors.contains_key(&why) {
            why
        } else {
            "(other errors)".into()
        };
        *errors.entry(key).or_default() += 1;
    }
}

/// One client session: takes message numbers until none are left.
async fn session(load: Arc<Load>, tally: Arc<Tally>, t0: Instant) {
    let mut conn: Option<Client> = None;
    loop {
        let i = tally.next.fetch_add(1, Ordering::Relaxed);
        if i >= load.messages {
            break;
        }
        if t0.elapsed() > LOAD_LIMIT {
            tally.fail(format!("not sent: load time limit {LOAD_LIMIT:?} reached"));
            continue;
        }
        match send_one(&load, &mut conn, i).await {
            Ok(None) => tally.accept(&load, i, t0),
            Ok(Some(refusal)) => tally.fail(refusal),
            Err(e) => {
                tally.fail(format!("connection: {e}"));
                conn = None;
            }
        }
        if load.mode == Mode::PerConnection
            && let Some(c) = conn.take()
        {
            c.quit().await;
        }
    }
    if let Some(c) = conn {
        c.quit().await;
    }
}

/// Sends message `i`, connecting first if needed; `Some(reply)` when the server refused it.
async fn send_one(
    load: &Load,
    conn: &mut Option<Client>,
    i: u64,
) -> std::io::Result<Option<String>> {
    let client = match conn {
        Some(c) => c,
        None => conn.insert(Client::connect(load.addr, load.pipelining).await?),
    };
    let mut message = load.message(i);
    message.extend_from_slice(b".\r\n");
    client
        .transaction(&mailbox_address(load.mailbox(i)), &message)
        .await
}

struct Reply {
    code: u16,
    text: String,
}

struct Client {
    conn: BufReader<TcpStream>,
    pipelining: bool,
}

fn timed_out<E>(_: E) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply in time")
}

impl Client {
    async fn connect(addr: SocketAddr, pipelining: Pipelining) -> std::io::Result<Client> {
        let stream = tokio::time::timeout(REPLY_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(timed_out)??;
        stream.set_nodelay(true)?;
        let mut client = Client {
            conn: BufReader::new(stream),
            pipelining: false,
        };
        client.expect(220).await?;
        client.send(b"EHLO bench.example.net\r\n").await?;
        let ehlo = client.expect(250).await?;
        client.pipelining = pipelining == Pipelining::WhenOffered
            && ehlo.text.lines().any(|l| l.contains("PIPELINING"));
        Ok(client)
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.conn.get_mut().write_all(bytes).await
    }

    /// A whole (possibly multi-line) reply: its code and every line's text.
    async fn reply(&mut self) -> std::io::Result<Reply> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.conn.read_line(&mut line))
                .await
                .map_err(timed_out)??;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("server closed the connection after {text:?}"),
                ));
            }
            text.push_str(line.trim_end());
            text.push('\n');
            let code = line.get(..3).and_then(|c| c.parse().ok());
            match (code, line.as_bytes().get(3)) {
                (Some(_), Some(b'-')) => continue,
                (Some(code), _) => return Ok(Reply { code, text }),
                (None, _) => return Err(std::io::Error::other(format!("bad reply {line:?}"))),
            }
        }
    }

    async fn expect(&mut self, code: u16) -> std::io::Result<Reply> {
        let reply = self.reply().await?;
        if reply.code != code {
            return Err(std::io::Error::other(format!(
                "expected {code}, got {:?}",
                reply.text.trim_end()
            )));
        }
        Ok(reply)
    }

    /// MAIL, RCPT, DATA (pipelined when offered), the message; `Some(text)` when refused.
    async fn transaction(&mut self, rcpt: &str, message: &[u8]) -> std::io::Result<Option<String>> {
        let commands = [
            format!("MAIL FROM:<{SENDER}>\r\n"),
            format!("RCPT TO:<{rcpt}>\r\n"),
            "DATA\r\n".to_string(),
        ];
        let mut replies = Vec::with_capacity(3);
        if self.pipelining {
            self.send(commands.concat().as_bytes()).await?;
            for _ in &commands {
                replies.push(self.reply().await?);
            }
        } else {
            for command in &commands {
                self.send(command.as_bytes()).await?;
                let reply = self.reply().await?;
                let refused = reply.code >= 400;
                replies.push(reply);
                if refused {
                    break;
                }
            }
        }
        if let Some(closing) = replies.iter().find(|r| r.code == 421) {
            return Err(std::io::Error::other(closing.text.trim_end().to_string()));
        }
        if replies.last().is_some_and(|r| r.code == 354) {
            self.send(message).await?;
            replies.push(self.reply().await?);
            return Ok(replies
                .iter()
                .find(|r| r.code >= 400)
                .map(|r| r.text.trim_end().to_string()));
        }
        self.send(b"RSET\r\n").await?;
        self.expect(250).await?;
        Ok(Some(replies.iter().find(|r| r.code >= 400).map_or_else(
            || "no 354 after DATA".to_string(),
            |r| r.text.trim_end().to_string(),
        )))
    }

    async fn quit(mut self) {
        if self.send(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring one phase

/// Counts the files in the Maildirs' new/ and cur/, re-reading only the mailboxes that have
/// fewer than the messages accepted for them.
struct Counter {
    dirs: Vec<PathBuf>,
    counts: Vec<u64>,
}

impl Counter {
    fn new(instance: &dyn Instance, mailboxes: u64) -> Counter {
        Counter {
            dirs: (0..mailboxes).map(|n| instance.maildir(n)).collect(),
            counts: vec![0; mailboxes as usize],
        }
    }

    fn files(dir: &Path) -> u64 {
        ["new", "cur"]
            .iter()
            .map(|sub| std::fs::read_dir(dir.join(sub)).map_or(0, |d| d.count() as u64))
            .sum()
    }

    /// Updates the counts; true when every mailbox has what was accepted for it.
    fn update(&mut self, expected: &[AtomicU64]) -> bool {
        let mut complete = true;
        for (n, want) in expected.iter().enumerate() {
            let want = want.load(Ordering::Relaxed);
            if self.counts[n] < want {
                self.counts[n] = Counter::files(&self.dirs[n]);
            }
            complete &= self.counts[n] >= want;
        }
        complete
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Every accepted message in its Maildir exactly once, with the bytes that were sent?
#[derive(Default)]
struct Check {
    missing: u64,
    duplicates: u64,
    corrupted: u64,
    /// Delivered although the client never saw its 250.
    unacknowledged: u64,
    foreign: u64,
}

fn verify(instance: &dyn Instance, load: &Load, tally: &Tally) -> Check {
    let mut seen = vec![0u32; load.messages as usize];
    let mut check = Check::default();
    let marker = format!("\nMessage-ID: <{}.", load.tag);
    for n in 0..load.mailboxes {
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(instance.maildir(n).join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes);
                let number = text.find(&marker).and_then(|at| {
                    let rest = &text[at + marker.len()..];
                    rest[..rest.find('@')?].parse::<u64>().ok()
                });
                let Some(i) = number.filter(|&i| i < load.messages) else {
                    check.foreign += 1;
                    continue;
                };
                seen[i as usize] += 1;
                // Stored with LF line ends after the headers the servers add.
                let sent = String::from_utf8_lossy(&load.message(i)).replace("\r\n", "\n");
                if !text.ends_with(&sent) || load.mailbox(i) != n {
                    check.corrupted += 1;
                }
            }
        }
    }
    for (i, &count) in seen.iter().enumerate() {
        let acked = tally.accepted_msgs[i].load(Ordering::Relaxed);
        match (acked, count) {
            (true, 0) => check.missing += 1,
            (false, c) if c > 0 => check.unacknowledged += 1,
            _ => {}
        }
        check.duplicates += u64::from(count.saturating_sub(1));
    }
    check
}

struct Outcome {
    messages: u64,
    accepted: u64,
    failures: Vec<(String, u64)>,
    accept_secs: f64,
    delivered: u64,
    /// None: not everything was delivered within the limit.
    deliver_secs: Option<f64>,
    drained: bool,
    cpu_ms: f64,
    cpu_by_process: Vec<(String, f64)>,
    client_cpu_ms: f64,
    check: Check,
    problems: Vec<String>,
}

impl Outcome {
    fn accepted_rate(&self) -> f64 {
        self.accepted as f64 / self.accept_secs.max(1e-9)
    }
    fn delivered_rate(&self) -> Option<f64> {
        self.deliver_secs
            .map(|s| self.accepted as f64 / s.max(1e-9))
    }
    fn cpu_per_msg(&self) -> f64 {
        self.cpu_ms / self.accepted.max(1) as f64
    }

    fn print(&self) {
        println!(
            "  accepted  {}/{} in {:.2} s: {:.0} msg/s",
            self.accepted,
            self.messages,
            self.accept_secs,
            self.accepted_rate()
        );
        match (self.deliver_secs, self.delivered_rate()) {
            (Some(s), Some(rate)) => println!(
                "  delivered {} in {s:.2} s: {rate:.0} msg/s",
                self.delivered
            ),
            _ => println!(
                "  delivered TIMEOUT: only {} of {} accepted messages in the Maildirs after \
                 waiting {DELIVERY_LIMIT:?}",
                self.delivered, self.accepted
            ),
        }
        println!(
            "  CPU       {:.3} ms/msg (server tree {:.0} ms; benchmark client {:.0} ms){}",
            self.cpu_per_msg(),
            self.cpu_ms,
            self.client_cpu_ms,
            if self.drained {
                ""
            } else {
                "; queue NOT empty when sampled"
            }
        );
        let parts: Vec<String> = self
            .cpu_by_process
            .iter()
            .take(8)
            .map(|(name, ms)| format!("{name} {ms:.0}"))
            .collect();
        println!("  CPU ms by process: {}", parts.join(", "));
        for (text, count) in &self.failures {
            println!("  FAILED    {count} message(s): {text}");
        }
        let c = &self.check;
        if c.missing + c.duplicates + c.corrupted + c.unacknowledged + c.foreign == 0 {
            println!("  check     every accepted message is in its Maildir once, intact");
        } else {
            println!(
                "  check     PROBLEMS: {} missing, {} duplicated, {} corrupted or misplaced, \
                 {} delivered without a 250, {} unknown files",
                c.missing, c.duplicates, c.corrupted, c.unacknowledged, c.foreign
            );
        }
        if !self.problems.is_empty() {
            println!(
                "  log       {} warning/error line(s), first ones:",
                self.problems.len()
            );
            for line in self.problems.iter().take(5) {
                println!("    {line}");
            }
        }
    }
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    instance: &dyn Instance,
    load: &Arc<Load>,
    opts: &Options,
) -> Outcome {
    let tally = Arc::new(Tally::new(load));
    let roots = instance.cpu_roots();
    let mut counter = Counter::new(instance, load.mailboxes);
    let (cpu0, client0) = (cpu_snapshot(&roots), self_cpu_ms());
    let t0 = Instant::now();
    let sessions: Vec<_> = (0..opts.sessions)
        .map(|_| runtime.spawn(session(load.clone(), tally.clone(), t0)))
        .collect();
    let mut load_done: Option<Instant> = None;
    let mut deliver_secs = None;
    let mut progress = t0;
    loop {
        let sent = sessions.iter().all(|s| s.is_finished());
        if sent && load_done.is_none() {
            load_done = Some(Instant::now());
        }
        let complete = counter.update(&tally.per_mailbox);
        if sent && complete {
            deliver_secs = Some(t0.elapsed().as_secs_f64());
            break;
        }
        if load_done.is_some_and(|d| d.elapsed() > DELIVERY_LIMIT) {
            break;
        }
        if progress.elapsed() >= PROGRESS_EVERY {
            progress = Instant::now();
            eprintln!(
                "  ... {:.0} s: accepted {}, failed {}, delivered {}, queued {}",
                t0.elapsed().as_secs_f64(),
                tally.accepted.load(Ordering::Relaxed),
                tally.failed.load(Ordering::Relaxed),
                counter.total(),
                instance.queued()
            );
        }
        std::thread::sleep(Duration::from_millis(if sent { 20 } else { 200 }));
    }
    for s in sessions {
        if let Err(e) = runtime.block_on(s) {
            tally.fail(format!("client session crashed: {e}"));
        }
    }
    // CPU is sampled once the queue has finished its bookkeeping too (Postern removes the
    // queue file after the LMTP 250, Postfix after the delivery).
    let drain_deadline = Instant::now() + DRAIN_LIMIT;
    while instance.queued() > 0 && Instant::now() < drain_deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained = instance.queued() == 0;
    let (cpu1, client1) = (cpu_snapshot(&roots), self_cpu_ms());
    let check = verify(instance, load, &tally);
    let mut failures: Vec<(String, u64)> = tally
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    failures.sort_by_key(|f| std::cmp::Reverse(f.1));
    Outcome {
        messages: load.messages,
        accepted: tally.accepted.load(Ordering::Relaxed),
        failures,
        accept_secs: tally.last_accept_us.load(Ordering::Relaxed) as f64 / 1e6,
        delivered: counter.total(),
        deliver_secs,
        drained,
        cpu_ms: cpu_total_ms(&cpu0, &cpu1),
        cpu_by_process: cpu_by_name(&cpu0, &cpu1),
        client_cpu_ms: client1 - client0,
        check,
        problems: instance.problems(),
    }
}

// ---------------------------------------------------------------------------------------------
// Summary

fn show(values: &[f64], decimals: usize, runs: usize) -> String {
    match spread(values) {
        None => "timeout".into(),
        Some((med, min, max)) if runs > 1 => {
            let mut s = format!("{med:.decimals$} [{min:.decimals$}-{max:.decimals$}]");
            if values.len() < runs {
                s.push_str(&format!(" ({} timeout)", runs - values.len()));
            }
            s
        }
        Some((med, _, _)) => format!("{med:.decimals$}"),
    }
}

fn print_summary(results: &HashMap<(Kind, Mode), Vec<Outcome>>, kinds: &[Kind], opts: &Options) {
    println!(
        "\n== Summary: {} msgs x {} B to {} mailboxes, {} sessions{} ==",
        opts.messages,
        opts.size,
        opts.mailboxes,
        opts.sessions,
        if opts.runs > 1 {
            format!("; median [min-max] of {} runs", opts.runs)
        } else {
            String::new()
        }
    );
    for mode in [Mode::PerConnection, Mode::Reused] {
        println!("{}", mode.label());
        println!(
            "  {:<16} {:>24} {:>24} {:>22}",
            "system", "accepted msg/s", "delivered msg/s", "CPU ms/msg"
        );
        let mut medians = HashMap::new();
        for &kind in kinds {
            let Some(outcomes) = results.get(&(kind, mode)) else {
                println!("  {:<16} (no result)", kind.label());
                continue;
            };
            let accepted: Vec<f64> = outcomes.iter().map(Outcome::accepted_rate).collect();
            let delivered: Vec<f64> = outcomes
                .iter()
                .filter_map(Outcome::delivered_rate)
                .collect();
            let cpu: Vec<f64> = outcomes.iter().map(Outcome::cpu_per_msg).collect();
            println!(
                "  {:<16} {:>24} {:>24} {:>22}",
                kind.label(),
                show(&accepted, 0, outcomes.len()),
                show(&delivered, 0, outcomes.len()),
                show(&cpu, 3, outcomes.len())
            );
            medians.insert(
                kind,
                (spread(&delivered).map(|s| s.0), spread(&cpu).map(|s| s.0)),
            );
        }
        if let (Some((Some(pd), Some(pc))), Some((Some(fd), Some(fc)))) =
            (medians.get(&Kind::Postern), medians.get(&Kind::Postfix))
        {
            let (speed, cpu) = (pd / fd, pc / fc);
            let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
            println!(
                "  postern / postfix+dovecot: delivered msg/s x{speed:.2} (target >= 5: {}), \
                 CPU ms/msg x{cpu:.3} (target <= 0.2: {})",
                verdict(speed >= 5.0),
                verdict(cpu <= 0.2)
            );
        }
    }
}

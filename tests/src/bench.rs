//! What the benchmarks under `src/bin/` share: running and stopping comparison daemons we
//! start ourselves (by pid, never by name), and measuring them (CPU time of a process tree
//! from `/proc`, medians). Not used by the tests.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub fn user(name: &str) -> anyhow::Result<nix::unistd::User> {
    nix::unistd::User::from_name(name)?.with_context(|| format!("no system user {name}"))
}

/// Runs a command that may leave a daemon behind: its output goes to `log`, not to pipes the
/// daemon would keep open.
pub fn run(cmd: &mut Command, log: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!(
            "{cmd:?} failed ({status}): {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    Ok(())
}

pub fn wait_for(path: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + crate::TIMEOUT;
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{} did not appear", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn read_pid(path: &Path) -> anyhow::Result<i32> {
    wait_for(path)?;
    let text = std::fs::read_to_string(path)?;
    text.trim()
        .parse()
        .with_context(|| format!("{} holds no pid: {text:?}", path.display()))
}

/// Waits until the server at `addr` greets with 220.
pub fn wait_for_banner(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + crate::TIMEOUT;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut line = String::new();
            let _ = std::io::BufReader::new(&s).read_line(&mut line);
            let _ = s.write_all(b"QUIT\r\n");
            if line.starts_with("220") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("no SMTP greeting on {addr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for a daemon we started (and its tree) to exit, then kills what is left, by pid.
pub fn stop_tree(root: i32) {
    let tree = descendants(root);
    let deadline = Instant::now() + Duration::from_secs(15);
    while crate::alive(root) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in tree {
        if crate::alive(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

pub fn grep_lines(path: &Path, needles: &[&str]) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

pub fn count_files_deep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files_deep(&e.path()),
            _ => 1,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// CPU time from /proc

/// (ppid, utime + stime + cutime + cstime in clock ticks) of a process.
pub fn proc_times(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's closing parenthesis: state ppid ... (stat field 3 onwards).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks = (11..=14)
        .map(|i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum::<Option<u64>>()?;
    Some((ppid, ticks))
}

/// Every process with its parent and its CPU ticks.
pub fn proc_table() -> Vec<(i32, i32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| proc_times(pid).map(|(ppid, ticks)| (pid, ppid, ticks)))
        .collect()
}

pub fn descendants(root: i32) -> Vec<i32> {
    tree(&proc_table(), &[root])
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// The processes of the trees under `roots` (roots included): (pid, ticks).
pub fn tree(table: &[(i32, i32, u64)], roots: &[i32]) -> Vec<(i32, u64)> {
    let mut children: HashMap<i32, Vec<(i32, u64)>> = HashMap::new();
    let mut ticks = HashMap::new();
    for &(pid, ppid, t) in table {
        children.entry(ppid).or_default().push((pid, t));
        ticks.insert(pid, t);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<i32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        if let Some(&t) = ticks.get(&pid) {
            out.push((pid, t));
        }
        stack.extend(children.get(&pid).into_iter().flatten().map(|(c, _)| *c));
    }
    out
}

pub fn ticks_to_ms(ticks: u64) -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 * 1000.0 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// CPU ticks (user + sys, reaped children included) of each process of the trees under
/// `roots`: pid -> (name, ticks).
pub fn cpu_snapshot(roots: &[i32]) -> HashMap<i32, (String, u64)> {
    tree(&proc_table(), roots)
        .into_iter()
        .map(|(pid, ticks)| (pid, (process_name(pid), ticks)))
        .collect()
}

/// The program name a process shows (Postfix and Dovecot set their titles): `smtpd`, `lmtp`,
/// `postern-mta`.
pub fn process_name(pid: i32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 =
        String::from_utf8_lossy(cmdline.split(|b| *b == 0).next().unwrap_or_default()).to_string();
    let first = argv0.split_whitespace().next().unwrap_or("?");
    first.rsplit('/').next().unwrap_or(first).to_string()
}

/// Total CPU ms between two snapshots.
pub fn cpu_total_ms(
    before: &HashMap<i32, (String, u64)>,
    after: &HashMap<i32, (String, u64)>,
) -> f64 {
    let sum = |m: &HashMap<i32, (String, u64)>| m.values().map(|(_, t)| t).sum::<u64>();
    ticks_to_ms(sum(after)) - ticks_to_ms(sum(before))
}

/// CPU ms per process name between two snapshots, largest first (a process that exited in
/// between is counted in its parent's reaped-children time).
pub fn cpu_by_name(
    before: &HashMap<i32, (String, u64)>,
    after: &HashMap<i32, (String, u64)>,
) -> Vec<(String, f64)> {
    let mut by_name: HashMap<String, u64> = HashMap::new();
    for (pid, (name, ticks)) in after {
        let earlier = before.get(pid).map_or(0, |(_, t)| *t);
        *by_name.entry(name.clone()).or_default() += ticks.saturating_sub(earlier);
    }
    let mut out: Vec<(String, f64)> = by_name
        .into_iter()
        .filter(|(_, t)| *t > 0)
        .map(|(n, t)| (n, ticks_to_ms(t)))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

pub fn self_cpu_ms() -> f64 {
    ticks_to_ms(proc_times(std::process::id() as i32).map_or(0, |(_, t)| t))
}

/// Median, min and max.
pub fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    Some((median, v[0], v[v.len() - 1]))
}

// ---------------------------------------------------------------------------------------------
// TLS clients and Postfix instances

/// The benchmarks talk to servers they started themselves on loopback with a throw-away
/// certificate: any certificate is accepted (signatures are still checked).
pub fn tls_client_config() -> std::sync::Arc<rustls::ClientConfig> {
    std::sync::Arc::new(shared::tls::accept_any_client_config().expect("TLS client configuration"))
}

/// A private Postfix's master.cf: Debian's without chroot (a chroot needs copies of system
/// files), an smtpd on 127.0.0.1:`port`, the services mail relayed or handed to LMTP needs,
/// and postlogd for `maillog_file`.
pub fn postfix_master_cf(port: u16) -> String {
    let services = [
        ("pickup", "unix", "n", "60", "1", "pickup"),
        ("cleanup", "unix", "n", "-", "0", "cleanup"),
        ("qmgr", "unix", "n", "300", "1", "qmgr"),
        ("rewrite", "unix", "-", "-", "-", "trivial-rewrite"),
        ("bounce", "unix", "-", "-", "0", "bounce"),
        ("defer", "unix", "-", "-", "0", "bounce"),
        ("trace", "unix", "-", "-", "0", "bounce"),
        ("verify", "unix", "-", "-", "1", "verify"),
        ("flush", "unix", "n", "1000?", "0", "flush"),
        ("proxymap", "unix", "-", "-", "-", "proxymap"),
        ("proxywrite", "unix", "-", "-", "1", "proxymap"),
        ("smtp", "unix", "-", "-", "-", "smtp"),
        ("relay", "unix", "-", "-", "-", "smtp"),
        ("showq", "unix", "n", "-", "-", "showq"),
        ("error", "unix", "-", "-", "-", "error"),
        ("retry", "unix", "-", "-", "-", "error"),
        ("discard", "unix", "-", "-", "-", "discard"),
        ("lmtp", "unix", "-", "-", "-", "lmtp"),
        ("anvil", "unix", "-", "-", "1", "anvil"),
        ("scache", "unix", "-", "-", "1", "scache"),
        ("postlog", "unix-dgram", "n", "-", "1", "postlogd"),
    ];
    let mut master_cf = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
    for (name, kind, private, wakeup, limit, command) in services {
        master_cf.push_str(&format!(
            "{name} {kind} {private} - n {wakeup} {limit} {command}\n"
        ));
    }
    master_cf
}

// ---------------------------------------------------------------------------------------------
// Mailboxes and private Dovecot instances of the retrieval benchmarks

/// Writes `count` messages (`message(i)`) into the Maildir `root` under Maildir names with
/// S= and W= sizes, and gives it all to `owner` (uid, gid).
pub fn fill_maildir(
    root: &Path,
    n: usize,
    count: usize,
    message: impl Fn(usize) -> Vec<u8>,
    owner: (u32, u32),
) {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(root.join(sub)).expect("maildir");
    }
    for i in 0..count {
        let m = message(i);
        let lf = m.iter().filter(|&&b| b == b'\n').count();
        let name = format!(
            "1700000000.M{i:06}P{n}Q0.bench,S={},W={}",
            m.len(),
            m.len() + lf
        );
        std::fs::write(root.join("new").join(name), &m).expect("write message");
    }
    chown_tree(root, owner);
}

/// `chown -R uid:gid dir`, errors ignored.
pub fn chown_tree(dir: &Path, (uid, gid): (u32, u32)) {
    let _ = std::os::unix::fs::chown(dir, Some(uid), Some(gid));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                chown_tree(&e.path(), (uid, gid));
            } else {
                let _ = std::os::unix::fs::chown(e.path(), Some(uid), Some(gid));
            }
        }
    }
}

/// The owner (uid, gid) of `path`.
pub fn owner_of(path: &Path) -> anyhow::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).with_context(|| path.display().to_string())?;
    Ok((m.uid(), m.gid()))
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + crate::TIMEOUT;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Stops a private Dovecot started with `config`: `doveadm stop`, then its process tree.
pub fn stop_dovecot(doveadm: &Path, config: &Path, pid: Option<i32>) {
    let _ = Command::new(doveadm)
        .arg("-c")
        .arg(config)
        .arg("stop")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if let Some(pid) = pid {
        stop_tree(pid);
    }
}

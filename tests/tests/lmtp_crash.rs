//! Durability of postern-mda under SIGKILL (ARCHITECTURE §3, §6: a 250 after LMTP DATA is a
//! promise that the message is fsynced in `new/`). Several LMTP clients deliver small unique
//! messages through the real `lmtp.sock` while the test SIGKILLs the MDA at random moments and
//! the supervisor restarts it. Every message whose 250 was read must then be in the right
//! Maildir's `new/`, whole and exactly as sent; a message delivered whose 250 was lost comes
//! back as a duplicate (counted, allowed). The test does not look at the MDA's code paths: it
//! only keeps the promise honest from the outside. Afterwards each INBOX index must be
//! consistent with its Maildir (UIDs unique and increasing, nothing indexed twice or missing).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::*;

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const CLIENTS: usize = 4;
/// SIGKILLs of postern-mda while the clients deliver.
const KILLS: usize = 25;
/// Bounds of the test: messages per client, and the whole run.
const MAX_PER_CLIENT: usize = 2500;
/// A client's pause between messages: keeps the count bounded (about 1,000 per client over
/// the kills) without letting the MDA idle for long.
const PACE: Duration = Duration::from_millis(5);
const DEADLINE: Duration = Duration::from_secs(45);
/// One LMTP reply; a connection to a dead MDA ends at once, so this only catches hangs.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// A kill comes this long after the MDA's restart, plus a random part: longer than
/// `restart_delay_max` (200ms), so the supervisor's crash counter resets and its back-off
/// stays at `restart_delay` (50ms).
const KILL_AFTER_MIN: Duration = Duration::from_millis(230);
const KILL_AFTER_RANDOM_MS: u64 = 300;
const SENDER: &str = "sender@elsewhere.net";

/// Message `n` of client `c`: (recipient, the message as the client sends it (CRLF), the file
/// the MDA must write for it (LF, with its Return-Path and Delivered-To)).
fn message(c: usize, n: usize) -> (String, String, String) {
    let rcpt = format!("{}@example.test", USERS[(c + n) % USERS.len()]);
    let lines = [
        format!("Message-ID: <c{c}.m{n}@crash.example>"),
        format!("Subject: crash c{c} m{n}"),
        format!("From: {SENDER}"),
        format!("To: {rcpt}"),
        String::new(),
        format!("first line of c{c} m{n}"),
        "x".repeat(60 + (c * 7 + n) % 200),
        format!("END c{c} m{n}"),
    ];
    let wire: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
    let file = format!(
        "Return-Path: <{SENDER}>\nDelivered-To: {rcpt}\n{}",
        lines.iter().map(|l| format!("{l}\n")).collect::<String>()
    );
    (rcpt, wire, file)
}

/// `Subject: crash cC mN` → (C, N).
fn parse_subject(text: &str) -> Option<(usize, usize)> {
    let subject = text
        .lines()
        .find_map(|l| l.strip_prefix("Subject: crash "))?;
    let (c, n) = subject.split_once(' ')?;
    Some((
        c.strip_prefix('c')?.parse().ok()?,
        n.strip_prefix('m')?.parse().ok()?,
    ))
}

/// A hand-written LMTP client (RFC 2033): one transaction at a time, no pipelining.
struct Lmtp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Lmtp {
    fn connect(socket: &Path) -> std::io::Result<Lmtp> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let mut lmtp = Lmtp {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        };
        lmtp.expect(220)?;
        lmtp.command("LHLO crash.example")?;
        lmtp.expect(250)?;
        Ok(lmtp)
    }

    /// The code of the next (possibly multi-line) reply; EOF is an error.
    fn reply(&mut self) -> std::io::Result<u16> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let code = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad reply {line:?}")))?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
    }

    fn expect(&mut self, code: u16) -> std::io::Result<()> {
        match self.reply()? {
            c if c == code => Ok(()),
            c => Err(std::io::Error::other(format!("got {c}, expected {code}"))),
        }
    }

    fn command(&mut self, line: &str) -> std::io::Result<()> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())
    }

    /// One transaction; returns the reply code after DATA, or the first refusal before it
    /// (the transaction is then reset).
    fn deliver(&mut self, rcpt: &str, wire: &str) -> std::io::Result<u16> {
        for (command, want) in [
            (format!("MAIL FROM:<{SENDER}>"), 250),
            (format!("RCPT TO:<{rcpt}>"), 250),
            ("DATA".to_string(), 354),
        ] {
            self.command(&command)?;
            let code = self.reply()?;
            if code != want {
                self.command("RSET")?;
                self.reply()?;
                return Ok(code);
            }
        }
        self.writer.write_all(wire.as_bytes())?;
        self.writer.write_all(b".\r\n")?;
        self.reply()
    }
}

/// What one client did.
#[derive(Default, Debug)]
struct ClientReport {
    /// Messages whose 250 after DATA was read.
    acked: HashSet<usize>,
    /// The message being attempted when the client stopped, if it had no 250 yet.
    unfinished: Option<usize>,
    io_errors: usize,
    connect_errors: usize,
    temp_failures: usize,
    /// Replies no retry can fix (5xx): each is a test failure.
    unexpected: Vec<String>,
}

/// What the clients and the killer share.
#[derive(Default)]
struct Progress {
    /// Set by the killer when it is done: the clients stop.
    stop: AtomicBool,
    /// 250s read after DATA, by all clients.
    acked: AtomicUsize,
    /// Clients that have stopped.
    finished: AtomicUsize,
}

fn run_client(c: usize, socket: PathBuf, progress: Arc<Progress>) -> ClientReport {
    let report = deliver_until_stopped(c, &socket, &progress);
    progress.finished.fetch_add(1, Ordering::SeqCst);
    report
}

fn deliver_until_stopped(c: usize, socket: &Path, progress: &Progress) -> ClientReport {
    let mut report = ClientReport::default();
    let deadline = Instant::now() + DEADLINE;
    let mut conn: Option<Lmtp> = None;
    let mut n = 0;
    let mut attempted = false;
    while n < MAX_PER_CLIENT && !progress.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let lmtp = match conn.as_mut() {
            Some(l) => l,
            None => match Lmtp::connect(socket) {
                Ok(l) => conn.insert(l),
                Err(_) => {
                    report.connect_errors += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let (rcpt, wire, _) = message(c, n);
        attempted = true;
        match lmtp.deliver(&rcpt, &wire) {
            Ok(250) => {
                report.acked.insert(n);
                progress.acked.fetch_add(1, Ordering::SeqCst);
                n += 1;
                attempted = false;
                std::thread::sleep(PACE);
            }
            // 4xx: a temporary failure (e.g. authd unreachable); the same message again.
            Ok(code) if (400..500).contains(&code) => {
                report.temp_failures += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(code) => {
                report
                    .unexpected
                    .push(format!("c{c} m{n} to {rcpt}: {code}"));
                n += 1;
                attempted = false;
            }
            // The MDA died under us: the 250 (if any was coming) is lost; retry the message.
            Err(_) => {
                report.io_errors += 1;
                conn = None;
            }
        }
    }
    report.unfinished = attempted.then_some(n);
    report
}

/// xorshift64*: enough randomness for kill timing without a dependency; the seed is printed
/// (and can be given as POSTERN_CRASH_SEED) so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("POSTERN_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("lmtp_crash: POSTERN_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn mda_pid(server: &Server) -> Option<i32> {
    server
        .children()
        .into_iter()
        .find(|(_, name)| name.ends_with("postern-mda"))
        .map(|(pid, _)| pid)
}

/// Waits for a postern-mda other than `old`.
fn wait_new_mda(server: &Server, old: Option<i32>, deadline: Instant) -> i32 {
    loop {
        if let Some(pid) = mda_pid(server).filter(|p| Some(*p) != old) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "postern-mda was not restarted:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the clients have had `count` messages acknowledged in all.
fn wait_acked(server: &Server, progress: &Progress, count: usize, deadline: Instant) {
    while progress.acked.load(Ordering::SeqCst) < count {
        assert!(
            progress.finished.load(Ordering::SeqCst) < CLIENTS,
            "the clients stopped (out of messages or time) before the kills ended"
        );
        assert!(
            Instant::now() < deadline,
            "deliveries stalled at {} acknowledged:\n{}",
            progress.acked.load(Ordering::SeqCst),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills the MDA `KILLS` times at random moments, each time after its restart has delivered
/// something; returns when deliveries flow again after the last kill.
fn kill_repeatedly(server: &Server, progress: &Progress, deadline: Instant) {
    let mut rng = Rng::new();
    let mut pid = wait_new_mda(server, None, deadline);
    for _ in 0..KILLS {
        let seen = Instant::now();
        let before = progress.acked.load(Ordering::SeqCst);
        std::thread::sleep(KILL_AFTER_MIN + Duration::from_millis(rng.below(KILL_AFTER_RANDOM_MS)));
        // Only a restarted MDA that works is worth killing again.
        wait_acked(server, progress, before + 1, deadline);
        assert!(seen.elapsed() >= KILL_AFTER_MIN);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill postern-mda");
        pid = wait_new_mda(server, Some(pid), deadline);
    }
    let after = progress.acked.load(Ordering::SeqCst);
    wait_acked(server, progress, after + 4 * CLIENTS, deadline);
}

/// Files in a Maildir subdirectory of `user`.
fn files(server: &Server, user: &str, sub: &str) -> Vec<PathBuf> {
    let dir = server
        .setup()
        .path(&format!("state/mail/example.test/{user}/{sub}"));
    std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Checks every file in the Maildirs against what the clients were told; returns the number
/// of duplicates. Panics on a loss, a stray or damaged file.
fn check_maildirs(server: &Server, reports: &[ClientReport]) -> usize {
    let mut found: BTreeMap<(usize, usize), Vec<PathBuf>> = BTreeMap::new();
    let mut problems = Vec::new();
    for user in USERS {
        for path in files(server, user, "new") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let Some((c, n)) = parse_subject(&text) else {
                problems.push(format!("unknown file {}: {text:?}", path.display()));
                continue;
            };
            let (rcpt, _, expected) = message(c, n);
            if !text.ends_with(&format!("\nEND c{c} m{n}\n")) {
                problems.push(format!("half-written {}: {text:?}", path.display()));
            } else if text != expected {
                problems.push(format!("altered {}: {text:?}", path.display()));
            } else if rcpt != format!("{user}@example.test") {
                problems.push(format!("{} is in the Maildir of {user}", path.display()));
            }
            found.entry((c, n)).or_default().push(path);
        }
        let cur = files(server, user, "cur");
        assert!(cur.is_empty(), "nobody read the mail, yet cur/ has {cur:?}");
    }
    let mut duplicates = 0;
    for (c, report) in reports.iter().enumerate() {
        for n in &report.acked {
            match found.get(&(c, *n)).map(Vec::len) {
                None => problems.push(format!("LOST: c{c} m{n} was acknowledged")),
                Some(1) => {}
                Some(k) => {
                    duplicates += k - 1;
                    eprintln!("lmtp_crash: duplicate c{c} m{n}: {:?}", found[&(c, *n)]);
                }
            }
        }
    }
    for ((c, n), paths) in &found {
        let known = reports.get(*c).is_some_and(|r| r.acked.contains(n));
        if !known && reports.get(*c).and_then(|r| r.unfinished) == Some(*n) {
            eprintln!("lmtp_crash: c{c} m{n} delivered, its 250 lost, not retried: {paths:?}");
        } else if !known {
            problems.push(format!(
                "c{c} m{n} delivered but never sent to completion: {paths:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    duplicates
}

/// Each INBOX index after the kills: readable, UIDs unique and increasing, every indexed
/// file present and indexed once; the few files whose MDA was killed between the link and
/// the index append are indexed by the first sync, after every UID already given, and every
/// file name carries its UID.
fn check_indexes(server: &Server) {
    let mut unindexed = 0;
    for user in USERS {
        let root = server
            .setup()
            .path(&format!("state/mail/example.test/{user}"));
        let mut inbox = shared::mailstore::Store::at(&root)
            .and_then(|s| s.open_folder("INBOX"))
            .unwrap_or_else(|e| panic!("{user}'s index: {e}"));
        let before: Vec<(u32, String)> = inbox
            .messages()
            .iter()
            .map(|m| (m.uid, m.base().to_string()))
            .collect();
        let bases: HashSet<&String> = before.iter().map(|(_, b)| b).collect();
        assert_eq!(bases.len(), before.len(), "{user}: a file indexed twice");
        assert!(before.windows(2).all(|w| w[0].0 < w[1].0));
        for m in inbox.messages() {
            assert!(
                root.join(&m.file).is_file(),
                "{user}: {} is indexed but missing",
                m.file
            );
        }
        let max = before.last().map_or(0, |b| b.0);
        let changes = inbox.sync().expect("sync");
        assert!(changes.expunged.is_empty(), "{user}: {changes:?}");
        assert!(
            changes.added.iter().all(|&u| u > max),
            "{user}: {changes:?}"
        );
        unindexed += changes.added.len();
        assert_eq!(inbox.messages().len(), files(server, user, "new").len());
        // Every name carries its UID (a file linked by a killed MDA whose UID was given
        // again was renamed by the sync), so a lost index would give the same UIDs back.
        for m in inbox.messages() {
            assert!(
                m.base().ends_with(&format!(",U={}", m.uid)),
                "{user}: {} has UID {}",
                m.file,
                m.uid
            );
        }
    }
    eprintln!("lmtp_crash: indexes consistent; {unindexed} files indexed by the first sync");
}

/// The harness writes `[supervisor]` and `[service_users]` itself and a TOML table cannot be
/// opened twice, so its values are replaced in the written file.
fn set_restart_delays(setup: &Setup) {
    let old = "[supervisor]\nrestart_delay = \"200ms\"\nrestart_delay_max = \"5s\"\n";
    let new = "[supervisor]\nrestart_delay = \"50ms\"\nrestart_delay_max = \"200ms\"\n";
    let text = setup.config_text();
    assert!(
        text.contains(old),
        "the harness's [supervisor] changed:\n{text}"
    );
    std::fs::write(&setup.config, text.replace(old, new)).expect("write config");
}

#[test]
fn acknowledged_messages_survive_sigkill_of_the_mda() {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let setup = Setup::new("");
    for user in USERS {
        setup.add_user(&format!("{user}@example.test"), "pw");
    }
    set_restart_delays(&setup);
    let server = setup.start();
    let config = std::fs::read_to_string(&server.setup().config).unwrap();
    assert!(
        config.contains("restart_delay_max = \"200ms\""),
        "the harness rewrote the config (port clash at start): restart delays lost"
    );
    let socket = server.setup().path("run/lmtp.sock");
    let progress = Arc::new(Progress::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (socket, progress) = (socket.clone(), progress.clone());
            std::thread::spawn(move || run_client(c, socket, progress))
        })
        .collect();
    let killing = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        kill_repeatedly(&server, &progress, deadline)
    }));
    progress.stop.store(true, Ordering::SeqCst);
    let reports: Vec<ClientReport> = clients
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    if let Err(panic) = killing {
        std::panic::resume_unwind(panic);
    }
    let elapsed = started.elapsed();

    let duplicates = check_maildirs(&server, &reports);
    check_indexes(&server);
    let total: usize = reports.iter().map(|r| r.acked.len()).sum();
    let sum = |f: fn(&ClientReport) -> usize| reports.iter().map(f).sum::<usize>();
    let tmp_left: usize = USERS.iter().map(|u| files(&server, u, "tmp").len()).sum();
    let log = server.log_text();
    // The supervisor's back-off for each kill: "restarting in 50ms" when its crash counter
    // was reset by a run longer than restart_delay_max.
    let mut restarts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in log.lines() {
        if let Some((_, rest)) = line.split_once("postern-mda killed by SIGKILL; restarting in ") {
            *restarts
                .entry(rest.split_whitespace().next().unwrap_or(""))
                .or_default() += 1;
        }
    }
    eprintln!(
        "lmtp_crash: {KILLS} kills in {elapsed:?}; {total} messages acknowledged, 0 lost, \
         {duplicates} duplicates; {} connection errors mid-transaction, {} failed connects, \
         {} temporary failures; {tmp_left} files left in tmp/ by killed writers; \
         supervisor back-offs {restarts:?}",
        sum(|r| r.io_errors),
        sum(|r| r.connect_errors),
        sum(|r| r.temp_failures),
    );
    let unexpected: Vec<&String> = reports.iter().flat_map(|r| &r.unexpected).collect();
    assert!(unexpected.is_empty(), "permanent refusals: {unexpected:?}");
    assert_eq!(
        restarts.values().sum::<usize>(),
        KILLS,
        "every kill restarted the MDA:\n{log}"
    );
    assert!(
        reports.iter().all(|r| r.acked.len() < MAX_PER_CLIENT),
        "a client ran out of messages before the kills ended: raise MAX_PER_CLIENT"
    );
    assert!(elapsed < DEADLINE, "took {elapsed:?}");
}

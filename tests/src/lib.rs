//! Test harness: starts the real `postern serve` with a temporary configuration on free
//! loopback ports and gives tests what they need to talk to it and look at it. Every wait has
//! a timeout; no fixed ports. As root the supervisor drops privileges for real (service users
//! are created on demand), so tests see the production process model.

pub mod dovecot;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod bench;
pub mod dns;
pub mod pkg;

/// How long any single wait in a test may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The directory holding the workspace's binaries (the test binary lives in its `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary; panics with the command to build it when missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A port free on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct ports free on 127.0.0.1 at the time of asking (all held open together while
/// choosing, so none is handed out twice).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// A UDP port of 127.0.0.1 nothing listens on (at the time of asking).
fn closed_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

fn listener_ports() -> Vec<(&'static str, u16)> {
    LISTENERS
        .iter()
        .copied()
        .zip(free_ports(LISTENERS.len()))
        .collect()
}

pub const LISTENERS: [&str; 7] = [
    "smtp",
    "submission",
    "submissions",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
];

/// A temporary installation: directory, configuration, users.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub ports: Vec<(&'static str, u16)>,
    extra: String,
    /// The `postern` binary to run; the workspace's own when `None`.
    program: Option<PathBuf>,
    /// `hostname` and `domains`, as set by [`Setup::named`].
    hostname: String,
    domains: Vec<String>,
    /// The loopback address every listener binds ([`Setup::listen_ip`]).
    ip: std::net::IpAddr,
    /// RLIMIT_NOFILE (soft and hard) for `postern serve` and so its daemons
    /// ([`Setup::open_files_limit`]).
    nofile: Option<u64>,
}

static TEMP_BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Where [`Setup`] makes its temporary directories: `/tmp`, unless a benchmark chose another
/// place with [`set_temp_base`].
pub fn temp_base() -> &'static Path {
    TEMP_BASE.get_or_init(|| PathBuf::from("/tmp"))
}

/// Makes [`Setup`] create its directories under `dir` from now on (once per process: the
/// first choice stays).
pub fn set_temp_base(dir: PathBuf) {
    let _ = TEMP_BASE.set(dir);
}

impl Setup {
    /// A configuration with every listener on a free port and `extra` appended (TOML tables).
    pub fn new(extra: &str) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("pt")
            .tempdir_in(temp_base())
            .expect("tempdir");
        // Service users must be able to reach runtime_dir and state_dir below it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let ports = listener_ports();
        let mut setup = Setup {
            config: dir.path().join("postern.toml"),
            dir,
            ports,
            extra: extra.to_string(),
            program: None,
            hostname: "mail.example.test".into(),
            domains: vec!["example.test".into(), "example.org".into()],
            ip: std::net::IpAddr::from([127, 0, 0, 1]),
            nofile: None,
        };
        setup.write_config();
        setup
    }

    /// Runs `program` (e.g. the installed `/usr/sbin/postern`) for `serve` and the admin
    /// verbs instead of the workspace's binary.
    pub fn with_program(mut self, program: &Path) -> Setup {
        self.program = Some(program.to_path_buf());
        self
    }

    /// The `postern` binary this setup runs.
    pub fn program(&self) -> PathBuf {
        self.program.clone().unwrap_or_else(|| bin("postern"))
    }

    /// Another `hostname` and other local `domains` (several instances side by side).
    pub fn named(mut self, hostname: &str, domains: &[&str]) -> Setup {
        self.hostname = hostname.to_string();
        self.domains = domains.iter().map(|d| d.to_string()).collect();
        self.write_config();
        self
    }

    /// Every listener on this loopback address (e.g. 127.0.0.2) instead of 127.0.0.1.
    pub fn listen_ip(mut self, ip: &str) -> Setup {
        self.ip = ip.parse().expect("an IP address");
        self.write_config();
        self
    }

    /// Starts `postern serve` with at most `n` open files (soft and hard limit), which its
    /// daemons inherit.
    pub fn open_files_limit(mut self, n: u64) -> Setup {
        self.nofile = Some(n);
        self
    }

    /// Replaces the text appended to the configuration.
    pub fn set_extra(&mut self, extra: &str) {
        self.extra = extra.to_string();
        self.write_config();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn port(&self, listener: &str) -> u16 {
        self.ports
            .iter()
            .find(|(l, _)| *l == listener)
            .map(|(_, p)| *p)
            .expect("listener")
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        SocketAddr::new(self.ip, self.port(listener))
    }

    /// The configuration text this setup writes. A `[supervisor]` or `[service_users]` table
    /// in `extra` replaces the harness's own (quick restarts and a short stop timeout;
    /// `create_missing = true`).
    pub fn config_text(&self) -> String {
        let mut listen = String::from("[listen]\n");
        for (l, p) in &self.ports {
            listen.push_str(&format!("{l} = [\"{}\"]\n", SocketAddr::new(self.ip, *p)));
        }
        let service_users = if self.extra.contains("[service_users]") {
            ""
        } else {
            "[service_users]\ncreate_missing = true\n\n"
        };
        // Tests never ask a DNS server outside loopback (issue 7): without a `[dns]` table of
        // their own, lookups go to a closed loopback port and fail at once (deferred).
        let dns = if self.extra.contains("[dns]") {
            String::new()
        } else {
            format!(
                "[dns]\nnameservers = [\"127.0.0.1:{}\"]\n\n",
                closed_udp_port()
            )
        };
        let supervisor = if self.extra.contains("[supervisor]") {
            ""
        } else {
            "[supervisor]\nrestart_delay = \"200ms\"\nrestart_delay_max = \"5s\"\nstop_timeout = \"5s\"\n\n"
        };
        let domains: Vec<String> = self.domains.iter().map(|d| format!("{d:?}")).collect();
        format!(
            "hostname = {:?}\n\
             domains = [{}]\n\
             state_dir = \"state\"\n\
             runtime_dir = \"run\"\n\
             users_file = \"etc/users\"\n\
             aliases_file = \"etc/aliases\"\n\
             \n[tls]\ncert = \"tls/cert.pem\"\nkey = \"tls/key.pem\"\nself_signed = true\n\n\
             {listen}\n\
             {service_users}\
             {supervisor}\
             {dns}\
             {}",
            self.hostname,
            domains.join(", "),
            self.extra
        )
    }

    pub fn write_config(&mut self) {
        std::fs::create_dir_all(self.path("etc")).expect("etc dir");
        std::fs::write(&self.config, self.config_text()).expect("write config");
    }

    /// Runs `postern ARGS --config CONFIG`, feeding `stdin`; returns (status, stdout, stderr).
    pub fn postern(&self, args: &[&str], stdin: &str) -> (ExitStatus, String, String) {
        let mut child = Command::new(self.program())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run postern");
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(stdin.as_bytes());
        }
        let out = wait_output(child, TIMEOUT);
        (out.0, out.1, out.2)
    }

    /// `postern user add ADDRESS` with the password on stdin; panics on failure.
    pub fn add_user(&self, address: &str, password: &str) {
        self.add_user_with(address, password, &[]);
    }

    pub fn add_user_with(&self, address: &str, password: &str, extra_args: &[&str]) {
        let mut args = vec!["user", "add", address];
        args.extend_from_slice(extra_args);
        let (status, out, err) = self.postern(&args, &format!("{password}\n"));
        assert!(status.success(), "user add {address} failed: {out}{err}");
    }

    /// Starts `postern serve` and waits for its READY=1.
    pub fn start(self) -> Server {
        Server::start(self)
    }
}

/// Waits for a child with a deadline, collecting its output; kills it if the deadline passes.
pub fn wait_output(mut child: Child, limit: Duration) -> (ExitStatus, String, String) {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default(),
    )
}

/// A running `postern serve`.
pub struct Server {
    setup: Option<Setup>,
    pub child: Option<Child>,
    pub pid: i32,
    pub log: PathBuf,
    notify: UnixDatagram,
    /// The READY=1 message (with STATUS=) the supervisor sent to "systemd".
    pub ready_message: String,
}

impl Server {
    fn start(mut setup: Setup) -> Server {
        // A port picked free can be taken by a parallel test before serve binds it: then
        // start again on other ports.
        for attempt in 1..=3 {
            let mut server = Server::spawn(setup);
            match server.try_wait_notify("READY=1") {
                Ok(message) => {
                    server.ready_message = message;
                    return server;
                }
                Err(e) if attempt < 3 && server.log_text().contains("cannot listen on") => {
                    eprintln!("port clash, starting again: {e}");
                    server.kill_tree();
                    setup = server.take_setup();
                    setup.ports = listener_ports();
                    setup.write_config();
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn spawn(setup: Setup) -> Server {
        let log = setup.path("postern.log");
        let notify_path = setup.path("systemd-notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(setup.program());
        if let Some(n) = setup.nofile {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe and only reads the struct, a copy.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    match libc::setrlimit(libc::RLIMIT_NOFILE, &lim) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
            }
        }
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&setup.config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("LISTEN_FDS")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn postern serve");
        let pid = child.id() as i32;
        Server {
            setup: Some(setup),
            child: Some(child),
            pid,
            log,
            notify,
            ready_message: String::new(),
        }
    }

    fn take_setup(mut self) -> Setup {
        self.setup.take().expect("setup")
    }

    /// The test setup of this server.
    pub fn setup(&self) -> &Setup {
        self.setup.as_ref().expect("setup")
    }

    pub fn setup_mut(&mut self) -> &mut Setup {
        self.setup.as_mut().expect("setup")
    }

    /// Forgets every message the supervisor sent to "systemd" so far.
    pub fn drain_notify(&mut self) {
        let _ = self.notify.set_nonblocking(true);
        let mut buf = [0u8; 4096];
        while self.notify.recv(&mut buf).is_ok() {}
        let _ = self.notify.set_nonblocking(false);
    }

    /// Waits for a message from the supervisor to "systemd" containing `what`.
    pub fn wait_notify(&mut self, what: &str) -> String {
        match self.try_wait_notify(what) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    fn try_wait_notify(&mut self, what: &str) -> Result<String, String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                if msg.lines().any(|l| l == what || l.starts_with(what)) {
                    return Ok(msg);
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "postern serve exited ({status}) before {what}:\n{}",
                    self.log_text()
                ));
            }
        }
        Err(format!(
            "no {what} from postern serve within {TIMEOUT:?}:\n{}",
            self.log_text()
        ))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (counting from `after` bytes into the log).
    pub fn wait_log(&self, needle: &str, after: usize) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = self.log_text();
            if text.get(after..).is_some_and(|t| t.contains(needle)) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "log never showed {needle:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_len(&self) -> usize {
        self.log_text().len()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig).expect("signal");
    }

    /// The supervisor's children: (pid, argv[0]).
    pub fn children(&self) -> Vec<(i32, String)> {
        children_of(self.pid)
    }

    /// Waits until the children are exactly `names` (sorted) and returns them.
    pub fn wait_children(&self, names: &[&str]) -> Vec<(i32, String)> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let kids = self.children();
            let mut have: Vec<&str> = kids.iter().map(|(_, n)| n.as_str()).collect();
            have.sort_unstable();
            let mut want = names.to_vec();
            want.sort_unstable();
            if have == want {
                return kids;
            }
            assert!(
                Instant::now() < deadline,
                "children {have:?}, expected {want:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Files in the queue directory other than the reusable `.pool.*` files: messages,
    /// status files and half-written temporaries.
    pub fn queued(&self) -> Vec<String> {
        std::fs::read_dir(self.setup().path("state/queue"))
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| !n.starts_with(".pool."))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The messages in `new/` of `address`'s Maildir under this server's state, sorted.
    pub fn maildir(&self, address: &str) -> Vec<PathBuf> {
        let (local, domain) = address.split_once('@').expect("user@domain");
        let new = self
            .setup()
            .path(&format!("state/mail/{domain}/{local}/new"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The Maildir root of `address` under this server's state (`state/mail/DOMAIN/LOCAL`).
    pub fn mailbox(&self, address: &str) -> PathBuf {
        let (local, domain) = address.split_once('@').expect("user@domain");
        self.setup().path(&format!("state/mail/{domain}/{local}"))
    }

    /// Every message file of `address` (`new/` and `cur/`), sorted by file name.
    pub fn mailbox_files(&self, address: &str) -> Vec<PathBuf> {
        let root = self.mailbox(address);
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .flat_map(|sub| {
                std::fs::read_dir(root.join(sub))
                    .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect();
        files.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
        files
    }

    /// Writes `messages` (LF line ends) straight into `address`'s `new/` (Maildir names with S= and
    /// W=), owned like the mail directory, for tests that need many messages without SMTP.
    pub fn put_messages(&self, address: &str, messages: &[Vec<u8>]) -> Vec<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let mail = self.setup().path("state/mail");
        let owner = std::fs::metadata(&mail).expect("state/mail exists once serve runs");
        let root = self.mailbox(address);
        let chown = |p: &Path| {
            std::os::unix::fs::chown(p, Some(owner.uid()), Some(owner.gid())).expect("chown")
        };
        let mut dir = root.clone();
        let mut created = Vec::new();
        while !dir.exists() && dir != mail {
            created.push(dir.clone());
            dir.pop();
        }
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(root.join(sub)).expect("maildir");
            created.push(root.join(sub));
        }
        for d in created {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            chown(&d);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let lf = m.iter().filter(|&&b| b == b'\n').count();
                let name = format!(
                    "{now}.M{i:06}P{}Q{i}.test,S={},W={}",
                    std::process::id(),
                    m.len(),
                    m.len() + lf
                );
                let path = root.join("new").join(name);
                std::fs::write(&path, m).expect("write message");
                chown(&path);
                path
            })
            .collect()
    }

    pub fn auth_socket(&self) -> PathBuf {
        self.setup().path("run/auth.sock")
    }

    /// Stops (SIGTERM) and starts again on the same configuration and state; the log so far
    /// is kept as `postern.log.1`.
    pub fn restart(mut self) -> Server {
        self.stop();
        let setup = self.setup.take().expect("setup");
        let _ = std::fs::rename(setup.path("postern.log"), setup.path("postern.log.1"));
        setup.start()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "postern serve did not exit:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails the test if any process of the tree panicked.
    pub fn assert_no_panic(&self) {
        let text = self.log_text();
        assert!(!text.contains("panicked"), "a process panicked:\n{text}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // STYLE §7: whatever the test checked, a panic anywhere in the tree fails it.
        if !std::thread::panicking() && self.log_text().contains("panicked") {
            self.kill_tree();
            panic!("a process panicked:\n{}", self.log_text());
        }
        self.kill_tree();
    }
}

impl Server {
    fn kill_tree(&mut self) {
        if let Some(mut child) = self.child.take() {
            let kids = children_of(self.pid);
            let _ = child.kill();
            let _ = child.wait();
            // The children exit on the death pipe; make sure of it.
            for (pid, _) in kids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Runs a Python 3 script (real clients: smtplib, imaplib, poplib) with `args`; returns
/// (status, stdout, stderr). Panics when it does not finish within [`TIMEOUT`].
pub fn python(script: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (Debian package python3) is needed by this test");
    wait_output(child, TIMEOUT)
}

/// Processes whose parent is `ppid`: (pid, argv[0]).
pub fn children_of(ppid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the last ')': state ppid ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let parent: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if parent != ppid || state == "Z" {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        out.push((pid, String::from_utf8_lossy(argv0).to_string()));
    }
    out
}

/// True while a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().next() != Some("Z"))
        })
        .unwrap_or(false)
}

/// (real uid, real gid) of a process.
pub fn ids_of(pid: i32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u32 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    (field("Uid:"), field("Gid:"))
}

/// Connects over TCP and reads the first line the server sends.
pub fn read_greeting(addr: SocketAddr) -> String {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut line = String::new();
    let _ = std::io::BufReader::new(stream).read_line(&mut line);
    line
}

/// Polls `cond` until it holds or the timeout passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a file (creating parents).
pub fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

//! `postern serve`: validate, set up, bind, spawn the five children, then supervise them in a
//! single-threaded poll loop: readiness (collected on `notify.sock`, forwarded to systemd),
//! restarts with exponential back-off, SIGHUP reload, SIGTERM graceful stop. Single-threaded on
//! purpose: fork is then always safe.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use sd_notify::NotifyState;
use shared::config::{self, Config, Role};
use shared::listen::Inherited;

use crate::listeners::{self, Sockets};
use crate::prepare::{self, ChildPlan, Inspection};
use crate::spawn::{self, SpawnSpec};

/// Children that crash this many times in a row are reported as a crash loop (and still
/// retried, at the longest delay).
const CRASH_LOOP: u32 = 5;

struct Child {
    role: Role,
    pid: Option<Pid>,
    started: Instant,
    ready: bool,
    /// Crashes in a row; reset when the child has run longer than the longest back-off.
    crashes: u32,
    restart_at: Option<Instant>,
    /// Refused to run (version mismatch, bad slice): not restarted until a reload.
    refused: bool,
}

impl Child {
    /// A child not yet started, due at once.
    fn new(role: Role) -> Child {
        Child {
            role,
            pid: None,
            started: Instant::now(),
            ready: false,
            crashes: 0,
            restart_at: Some(Instant::now()),
            refused: false,
        }
    }
}

struct Signals {
    pipe: UnixStream,
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

struct Supervisor {
    config_path: PathBuf,
    config: Config,
    found: Inspection,
    plans: Vec<ChildPlan>,
    sockets: Sockets,
    systemd: Vec<Inherited>,
    notify: UnixDatagram,
    death_read: OwnedFd,
    /// Never written: its closing (our death) is the message.
    _death_write: OwnedFd,
    children: Vec<Child>,
    /// Children of a previous generation, draining after a reload.
    retiring: Vec<(Pid, Role)>,
    ready_sent: bool,
    stop_deadline: Option<Instant>,
    killed: bool,
}

/// Prints configuration errors and returns the failure exit code.
fn fail(errors: &[String]) -> ExitCode {
    for e in errors {
        tracing::error!(event = "config.invalid", "{e}");
    }
    ExitCode::FAILURE
}

pub fn serve(config_path: &Path) -> ExitCode {
    // Sockets systemd handed to us (postern.socket), taken before anything else.
    let systemd = match shared::listen::take_inherited() {
        Ok(s) => s,
        Err(e) => {
            shared::logging::init("postern", "info");
            return fail(&[e.to_string()]);
        }
    };
    let config = match config::load(config_path) {
        Ok(c) => c,
        Err(errors) => {
            shared::logging::init("postern", "info");
            return fail(&errors.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
    };
    shared::logging::init("postern", &config.log_level);
    let as_root = prepare::running_as_root();
    if !as_root {
        tracing::warn!(
            event = "privileges.skipped",
            "not started as root: every daemon runs as the invoking user"
        );
    }
    let found = prepare::inspect(&config, as_root);
    for w in &found.warnings {
        tracing::warn!(event = "config.warning", "{w}");
    }
    if !found.errors.is_empty() {
        return fail(&found.errors);
    }
    match start(config_path, config, found, systemd) {
        Ok(mut sup) => sup.run(),
        Err(e) => fail(&[e]),
    }
}

fn start(
    config_path: &Path,
    config: Config,
    mut found: Inspection,
    mut systemd: Vec<Inherited>,
) -> Result<Supervisor, String> {
    let tls = prepare::set_up(&config, &mut found)?;
    let tcp =
        listeners::bind_all(&config, Vec::new(), &mut systemd).map_err(|(e, _)| e.join("; "))?;
    let sockets = unix_sockets(&config, &found, tcp)?;
    let notify_path = config.notify_socket();
    let _ = std::fs::remove_file(&notify_path);
    let notify =
        UnixDatagram::bind(&notify_path).map_err(|e| format!("{}: {e}", notify_path.display()))?;
    nix::sys::socket::setsockopt(&notify, nix::sys::socket::sockopt::PassCred, &true)
        .map_err(|e| format!("notify socket: {e}"))?;
    notify.set_nonblocking(true).map_err(|e| e.to_string())?;
    // Children of other users must be able to send; the credentials the kernel attaches
    // (SO_PASSCRED) tell who really sent a message.
    set_mode(&notify_path, 0o666)?;
    let (death_read, death_write) = spawn::death_pipe().map_err(|e| format!("death pipe: {e}"))?;
    let pid_file = config.runtime_dir.join("postern.pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .map_err(|e| format!("{}: {e}", pid_file.display()))?;
    let plans = with_listeners(
        prepare::plan_children(&config, &found, tls.as_ref()),
        &sockets,
    );
    Ok(Supervisor {
        config_path: config_path.to_path_buf(),
        config,
        found,
        plans,
        sockets,
        systemd,
        notify,
        death_read,
        _death_write: death_write,
        children: Vec::new(),
        retiring: Vec::new(),
        ready_sent: false,
        stop_deadline: None,
        killed: false,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// auth.sock: anyone may connect, authd checks the peer's uid (SO_PEERCRED). lmtp.sock: only
/// the MTA's user may connect. queue.sock: only root (the supervisor's user), and the MTA
/// checks the peer's uid again.
fn unix_sockets(
    config: &Config,
    found: &Inspection,
    tcp: Vec<listeners::Bound>,
) -> Result<Sockets, String> {
    let owner = |role| {
        found
            .ids
            .iter()
            .find(|(r, _, _)| *r == role)
            .map(|(_, u, g)| (*u, *g))
    };
    let auth = listeners::bind_unix(&config.auth_socket(), 0o666, None)
        .map_err(|e| format!("{}: {e}", config.auth_socket().display()))?;
    let lmtp = listeners::bind_unix(&config.lmtp_socket(), 0o600, owner(Role::Mta))
        .map_err(|e| format!("{}: {e}", config.lmtp_socket().display()))?;
    let queue = listeners::bind_unix(&config.queue_socket(), 0o600, None)
        .map_err(|e| format!("{}: {e}", config.queue_socket().display()))?;
    Ok(Sockets {
        tcp,
        auth,
        lmtp,
        queue,
    })
}

fn install_signals() -> std::io::Result<Signals> {
    use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
    let (pipe, write) = UnixStream::pair()?;
    pipe.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register(sig, term.clone())?;
    }
    signal_hook::flag::register(SIGHUP, hup.clone())?;
    for sig in [SIGTERM, SIGINT, SIGHUP, SIGCHLD] {
        signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
    }
    Ok(Signals { pipe, term, hup })
}

fn notify_systemd(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {e}");
    }
}

impl Supervisor {
    fn run(&mut self) -> ExitCode {
        let signals = match install_signals() {
            Ok(s) => s,
            Err(e) => return fail(&[format!("cannot install signal handlers: {e}")]),
        };
        tracing::info!(event = "supervisor.start", version = shared::VERSION, config = %self.config_path.display(), "starting {} children", self.plans.len());
        for i in 0..self.plans.len() {
            self.children.push(Child::new(self.plans[i].role));
        }
        let watchdog = sd_notify::watchdog_enabled();
        let mut last_watchdog = Instant::now();
        loop {
            self.start_due();
            self.wait_for_events(&signals);
            // WatchdogSec=: prove liveness at half the interval systemd gave us.
            if let Some(interval) = watchdog
                && last_watchdog.elapsed() >= interval / 2
            {
                notify_systemd(&[NotifyState::Watchdog]);
                last_watchdog = Instant::now();
            }
            if signals.term.swap(false, Ordering::SeqCst) && self.stop_deadline.is_none() {
                self.begin_stop();
            }
            if signals.hup.swap(false, Ordering::SeqCst) && self.stop_deadline.is_none() {
                self.reload();
            }
            self.reap();
            self.read_notifications();
            if let Some(deadline) = self.stop_deadline {
                if self.alive().is_empty() {
                    break;
                }
                if Instant::now() >= deadline && !self.killed {
                    for (pid, role) in self.alive() {
                        tracing::warn!(
                            event = "child.kill",
                            pid = pid.as_raw(),
                            "{} did not stop in time; killing it",
                            role.process_name()
                        );
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                    self.killed = true;
                }
            }
        }
        self.clean_up();
        tracing::info!(event = "supervisor.stop", "stopped");
        ExitCode::SUCCESS
    }

    fn alive(&self) -> Vec<(Pid, Role)> {
        self.children
            .iter()
            .filter_map(|c| c.pid.map(|p| (p, c.role)))
            .chain(self.retiring.iter().copied())
            .collect()
    }

    /// Sleeps until a signal, a notification, or the next timer (restart or stop deadline).
    fn wait_for_events(&self, signals: &Signals) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let now = Instant::now();
        let next = self
            .children
            .iter()
            .filter(|c| c.pid.is_none() && self.stop_deadline.is_none())
            .filter_map(|c| c.restart_at)
            .chain(self.stop_deadline.filter(|_| !self.killed))
            .min();
        let wait = next
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let ms = PollTimeout::try_from(wait.as_millis() as i32 + 1).unwrap_or(PollTimeout::MAX);
        let mut fds = [
            PollFd::new(signals.pipe.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.notify.as_fd(), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, ms);
        let mut buf = [0u8; 64];
        while std::io::Read::read(&mut &signals.pipe, &mut buf).is_ok_and(|n| n > 0) {}
    }

    /// Spawns every child whose (re)start time has come.
    fn start_due(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        let now = Instant::now();
        for i in 0..self.children.len() {
            let c = &self.children[i];
            if c.pid.is_some() || c.refused || c.restart_at.is_none_or(|t| t > now) {
                continue;
            }
            let Some(plan) = self.plans.iter().find(|p| p.role == c.role) else {
                continue;
            };
            let listeners = self.sockets.for_role(plan.role);
            let program = plan.program.clone();
            let spec = SpawnSpec {
                program: &program,
                args: &plan.args,
                process_name: plan.role.process_name(),
                listeners: &listeners,
                slice: &plan.slice,
                death_read: self.death_read.as_fd(),
                notify_socket: &self.config.notify_socket(),
                drop_to: plan.drop_to,
            };
            let result = spawn::spawn(&spec);
            let c = &mut self.children[i];
            match result {
                Ok(pid) => {
                    tracing::info!(
                        event = "child.start",
                        pid = pid.as_raw(),
                        "started {}",
                        c.role.process_name()
                    );
                    c.pid = Some(pid);
                    c.started = now;
                    c.ready = false;
                    c.restart_at = None;
                }
                Err(e) => {
                    tracing::error!(
                        event = "child.spawn_failed",
                        "cannot start {} ({}): {e}",
                        c.role.process_name(),
                        program.display()
                    );
                    let delay = self.config.supervisor.restart_delay;
                    let max = self.config.supervisor.restart_delay_max;
                    schedule_restart(c, delay, max);
                }
            }
        }
    }

    /// Collects exited children: retiring ones are forgotten, current ones restarted later.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let (pid, how, code) = match status {
                WaitStatus::Exited(pid, code) => {
                    (pid, format!("exited with status {code}"), Some(code))
                }
                WaitStatus::Signaled(pid, sig, _) => (pid, format!("killed by {sig}"), None),
                _ => continue,
            };
            if let Some(i) = self.retiring.iter().position(|(p, _)| *p == pid) {
                let (_, role) = self.retiring.remove(i);
                tracing::info!(
                    event = "child.retired",
                    pid = pid.as_raw(),
                    "{} of the previous configuration {how}",
                    role.process_name()
                );
                continue;
            }
            let stopping = self.stop_deadline.is_some();
            let (delay, max) = (
                self.config.supervisor.restart_delay,
                self.config.supervisor.restart_delay_max,
            );
            let Some(c) = self.children.iter_mut().find(|c| c.pid == Some(pid)) else {
                continue;
            };
            c.pid = None;
            c.ready = false;
            let name = c.role.process_name();
            if stopping {
                tracing::info!(event = "child.stopped", pid = pid.as_raw(), "{name} {how}");
            } else if code == Some(i32::from(shared::daemon::EXIT_CONFIG)) {
                c.refused = true;
                tracing::error!(
                    event = "child.refused",
                    pid = pid.as_raw(),
                    "{name} refused to run ({how}); not restarting it until a reload: see its message above"
                );
            } else {
                if c.started.elapsed() > max {
                    c.crashes = 0;
                }
                let wait = schedule_restart(c, delay, max);
                tracing::warn!(
                    event = "child.exit",
                    pid = pid.as_raw(),
                    "{name} {how}; restarting in {wait:?}"
                );
                if c.crashes >= CRASH_LOOP {
                    tracing::error!(
                        event = "child.crash_loop",
                        crashes = c.crashes,
                        "{name} keeps dying ({} times in a row); the other services keep running",
                        c.crashes
                    );
                }
            }
        }
    }

    /// Readiness messages from children (`READY=1`), identified by the sender's pid as the
    /// kernel reports it (SCM_CREDENTIALS), not by what the message claims.
    fn read_notifications(&mut self) {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg};
        use std::os::fd::AsRawFd;
        loop {
            let mut buf = [0u8; 1024];
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!(UnixCredentials);
            let Ok(msg) = recvmsg::<()>(
                self.notify.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT,
            ) else {
                break;
            };
            let pid = msg
                .cmsgs()
                .ok()
                .into_iter()
                .flatten()
                .find_map(|c| match c {
                    ControlMessageOwned::ScmCredentials(cred) => Some(Pid::from_raw(cred.pid())),
                    _ => None,
                });
            let len = msg.bytes;
            let text = String::from_utf8_lossy(&buf[..len]);
            if !text.lines().any(|l| l == "READY=1") {
                continue;
            }
            if let Some(c) = self
                .children
                .iter_mut()
                .find(|c| c.pid.is_some() && c.pid == pid)
                && !c.ready
            {
                c.ready = true;
                tracing::info!(
                    event = "child.ready",
                    pid = pid.map(|p| p.as_raw()),
                    "{} ready",
                    c.role.process_name()
                );
            }
        }
        if !self.ready_sent
            && self.stop_deadline.is_none()
            && self.children.iter().all(|c| c.ready || c.refused)
        {
            self.ready_sent = true;
            let status = format!(
                "serving: {} children ready",
                self.children.iter().filter(|c| c.ready).count()
            );
            tracing::info!(event = "supervisor.ready", "{status}");
            notify_systemd(&[NotifyState::Ready, NotifyState::Status(&status)]);
        }
    }

    fn begin_stop(&mut self) {
        tracing::info!(
            event = "supervisor.stopping",
            "stopping: waiting up to {:?} for sessions",
            self.config.supervisor.stop_timeout
        );
        notify_systemd(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        self.stop_deadline = Some(Instant::now() + self.config.supervisor.stop_timeout);
        for (pid, _) in self.alive() {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }

    /// SIGHUP: re-read and validate everything; on any error keep running as we are.
    fn reload(&mut self) {
        tracing::info!(event = "reload.start", config = %self.config_path.display(), "reloading");
        // Type=notify-reload wants the monotonic time with RELOADING=1 (sd_notify(3)).
        match NotifyState::monotonic_usec_now() {
            Ok(now) => notify_systemd(&[NotifyState::Reloading, now]),
            Err(_) => notify_systemd(&[NotifyState::Reloading]),
        }
        match self.prepare_reload() {
            Ok(()) => {
                tracing::info!(
                    event = "reload.ok",
                    "configuration reloaded; children restarting"
                );
                notify_systemd(&[NotifyState::Status("reloaded; children restarting")]);
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(event = "reload.failed", "{e}");
                }
                tracing::error!(
                    event = "reload.failed",
                    "reload refused: still running the previous configuration"
                );
                notify_systemd(&[
                    NotifyState::Ready,
                    NotifyState::Status("reload failed: running the previous configuration"),
                ]);
            }
        }
    }

    fn prepare_reload(&mut self) -> Result<(), Vec<String>> {
        let config = config::load(&self.config_path)
            .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        // The sockets in runtime_dir and their owners were made at start; moving them under
        // running daemons is not worth the risk: these two take a restart.
        let old = &self.config;
        let users_changed = (
            &config.service_users.auth,
            &config.service_users.mta,
            &config.service_users.mail,
        ) != (
            &old.service_users.auth,
            &old.service_users.mta,
            &old.service_users.mail,
        );
        if config.runtime_dir != old.runtime_dir || users_changed {
            return Err(vec![format!(
                "{}: runtime_dir and [service_users] cannot change on reload; restart postern \
                 (systemctl restart postern)",
                self.config_path.display()
            )]);
        }
        let mut found = prepare::inspect(&config, prepare::running_as_root());
        for w in &found.warnings {
            tracing::warn!(event = "config.warning", "{w}");
        }
        if !found.errors.is_empty() {
            return Err(found.errors);
        }
        let tls = prepare::set_up(&config, &mut found).map_err(|e| vec![e])?;
        let old_tcp = std::mem::take(&mut self.sockets.tcp);
        let tcp = match listeners::bind_all(&config, old_tcp, &mut self.systemd) {
            Ok(tcp) => tcp,
            Err((errors, kept)) => {
                self.sockets.tcp = kept;
                return Err(errors);
            }
        };
        self.sockets.tcp = tcp;
        self.plans = with_listeners(
            prepare::plan_children(&config, &found, tls.as_ref()),
            &self.sockets,
        );
        self.config = config;
        self.found = found;
        // A retrieval daemon whose listeners were all removed stops; one that got its first
        // listener starts.
        self.children.retain_mut(|c| {
            let planned = self.plans.iter().any(|p| p.role == c.role);
            if !planned && let Some(pid) = c.pid.take() {
                let _ = kill(pid, Signal::SIGTERM);
                self.retiring.push((pid, c.role));
            }
            planned
        });
        for plan in &self.plans {
            if !self.children.iter().any(|c| c.role == plan.role) {
                self.children.push(Child::new(plan.role));
            }
        }
        // The old generation drains; the new one starts at once on the same sockets.
        for c in &mut self.children {
            if let Some(pid) = c.pid.take() {
                let _ = kill(pid, Signal::SIGTERM);
                self.retiring.push((pid, c.role));
            }
            c.ready = false;
            c.refused = false;
            c.crashes = 0;
            c.restart_at = Some(Instant::now());
        }
        self.ready_sent = false;
        Ok(())
    }

    fn clean_up(&self) {
        for path in [
            self.config.auth_socket(),
            self.config.lmtp_socket(),
            self.config.queue_socket(),
            self.config.notify_socket(),
            self.config.runtime_dir.join("postern.pid"),
        ] {
            let _ = std::fs::remove_file(path);
        }
        let _ = &self.found;
    }
}

/// The plans without the retrieval daemons that have no listener (POP3 is off by default):
/// such a daemon would have nothing to serve, exit, and be restarted forever.
fn with_listeners(plans: Vec<ChildPlan>, sockets: &Sockets) -> Vec<ChildPlan> {
    plans
        .into_iter()
        .filter(|plan| {
            let idle = matches!(plan.role, Role::Imapd | Role::Pop3d)
                && sockets.for_role(plan.role).is_empty();
            if idle {
                tracing::info!(
                    event = "child.not_needed",
                    child = plan.role.process_name(),
                    "no listener configured: not started"
                );
            }
            !idle
        })
        .collect()
}

/// Sets the next start of a dead child: `delay * 2^crashes`, at most `max`. Returns the wait.
fn schedule_restart(c: &mut Child, delay: Duration, max: Duration) -> Duration {
    let wait = delay.saturating_mul(1u32 << c.crashes.min(16)).min(max);
    c.crashes += 1;
    c.restart_at = Some(Instant::now() + wait);
    wait
}

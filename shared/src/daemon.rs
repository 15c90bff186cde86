//! The one skeleton every child process runs in (STYLE §1; Postfix's `single_server_main`):
//! version check against the supervisor, the configuration slice from an inherited pipe,
//! inherited listeners, logging, readiness to the supervisor, the supervisor-death pipe,
//! signals, and graceful drain. A daemon is a [`DaemonSpec`] and a `serve` function.

use std::future::Future;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Role;
use crate::config::slice::DaemonSlice;
use crate::listen::{Inherited, Listener};

/// Environment variables the supervisor sets for its children.
pub const ENV_VERSION: &str = "POSTERN_VERSION";
pub const ENV_CONFIG_FD: &str = "POSTERN_CONFIG_FD";
pub const ENV_DEATH_FD: &str = "POSTERN_DEATH_FD";

/// Exit status of a child that must not be restarted as it is (sysexits.h EX_CONFIG): a version
/// mismatch or an unusable configuration slice. The supervisor does not restart it.
pub const EXIT_CONFIG: u8 = 78;

/// What a daemon is.
pub struct DaemonSpec {
    pub role: Role,
    /// Names of the listeners it accepts (`smtp`, `auth`, ...); any other is an error.
    pub listeners: &'static [&'static str],
}

/// Everything `serve` gets. It never reads the environment or binds.
pub struct Context {
    pub slice: DaemonSlice,
    pub listeners: Vec<Inherited>,
    pub shutdown: Shutdown,
    ready: Option<String>,
}

impl Context {
    /// Tells the supervisor this daemon is serving (sd_notify `READY=1`). Idempotent.
    pub fn ready(&mut self) {
        if let Some(socket) = self.ready.take()
            && let Err(e) = notify_ready(&socket)
        {
            tracing::warn!(event = "daemon.notify_failed", error = %e, "cannot report readiness");
        }
    }
}

fn notify_ready(socket: &str) -> std::io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let msg = format!("READY=1\nMAINPID={}\n", std::process::id());
    sock.send_to(msg.as_bytes(), socket)?;
    Ok(())
}

/// A clonable shutdown signal: triggered by SIGTERM/SIGINT or by the supervisor's death.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending side, for tests and for the skeleton.
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown { rx })
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes when shutdown has been requested.
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
}

/// Raises the soft limit on open files to the hard limit: every connection a daemon holds is
/// a descriptor (an IDLE session of postern-imapd lasts hours), and the soft limit a daemon
/// inherits (often 1024) is far below what the hard limit allows.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0
            && (lim.rlim_cur >= lim.rlim_max || {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
            })
    };
    if !raised {
        tracing::warn!(event = "daemon.nofile", error = %std::io::Error::last_os_error(),
            "cannot raise the open-files limit");
    }
}

/// Runs a daemon. Call it first thing in `main`, before any thread exists.
pub fn run<F, Fut>(spec: &DaemonSpec, serve: F) -> ExitCode
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let name = spec.role.process_name();
    let startup = match start_up(spec) {
        Ok(s) => s,
        Err((code, message)) => {
            crate::logging::init(name, "info");
            tracing::error!(event = "daemon.refused", "{message}");
            return ExitCode::from(code);
        }
    };
    crate::logging::init(name, &startup.slice.log_level);
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(event = "daemon.runtime", error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(watch_signals(trigger, startup.death));
        let ctx = Context {
            slice: startup.slice,
            listeners: startup.listeners,
            shutdown,
            ready: startup.notify_socket,
        };
        tracing::info!(event = "daemon.start", version = crate::VERSION, "starting");
        serve(ctx).await
    });
    // Sessions still running after `serve` returned were given their drain time already.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => {
            tracing::info!(event = "daemon.stop", "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(event = "daemon.fail", error = %format!("{e:#}"), "stopped on error");
            ExitCode::FAILURE
        }
    }
}

struct Startup {
    slice: DaemonSlice,
    listeners: Vec<Inherited>,
    death: Option<OwnedFd>,
    notify_socket: Option<String>,
}

/// Everything read from the environment, before any thread exists.
fn start_up(spec: &DaemonSpec) -> Result<Startup, (u8, String)> {
    let name = spec.role.process_name();
    let theirs = std::env::var(ENV_VERSION).map_err(|_| {
        (
            64,
            format!("{name} is started by `postern serve`, not on its own"),
        )
    })?;
    if theirs != crate::VERSION {
        return Err((
            EXIT_CONFIG,
            format!(
                "{name} {} refuses to run under supervisor {theirs}: mixed old and new \
                 binaries? reinstall and restart postern",
                crate::VERSION
            ),
        ));
    }
    let config_fd = fd_from_env(ENV_CONFIG_FD).ok_or((
        EXIT_CONFIG,
        format!("{ENV_CONFIG_FD} missing: no configuration slice"),
    ))?;
    let mut text = Vec::new();
    std::fs::File::from(config_fd)
        .read_to_end(&mut text)
        .map_err(|e| {
            (
                EXIT_CONFIG,
                format!("cannot read the configuration slice: {e}"),
            )
        })?;
    let slice: DaemonSlice = serde_json::from_slice(&text)
        .map_err(|e| (EXIT_CONFIG, format!("bad configuration slice: {e}")))?;
    if slice.role != spec.role {
        return Err((
            EXIT_CONFIG,
            format!("configuration slice is for {:?}, not {name}", slice.role),
        ));
    }
    let death = fd_from_env(ENV_DEATH_FD);
    let notify_socket = std::env::var("NOTIFY_SOCKET").ok();
    let listeners = crate::listen::take_inherited().map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    for l in &listeners {
        if !spec.listeners.contains(&l.name.as_str()) {
            return Err((
                EXIT_CONFIG,
                format!(
                    "{name} was handed a listener named {:?} it does not serve",
                    l.name
                ),
            ));
        }
    }
    // SAFETY: still single-threaded; grandchildren must not inherit these.
    unsafe {
        std::env::remove_var(ENV_CONFIG_FD);
        std::env::remove_var(ENV_DEATH_FD);
        std::env::remove_var("NOTIFY_SOCKET");
    }
    Ok(Startup {
        slice,
        listeners,
        death,
        notify_socket,
    })
}

fn fd_from_env(var: &str) -> Option<OwnedFd> {
    let fd: RawFd = std::env::var(var).ok()?.parse().ok()?;
    if fd < 3 {
        return None;
    }
    // SAFETY: the supervisor passed this fd for us to own; it is taken once, at start-up.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(owned)
}

/// SIGTERM/SIGINT and the supervisor's death (EOF on the death pipe) trigger shutdown; SIGHUP
/// is logged and ignored (the supervisor reloads by restarting its children).
async fn watch_signals(trigger: ShutdownTrigger, death: Option<OwnedFd>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!(event = "daemon.signals", "cannot install signal handlers");
        return;
    };
    let death = async move {
        match death.map(tokio::net::unix::pipe::Receiver::from_owned_fd) {
            Some(Ok(pipe)) => {
                let mut buf = [0u8; 16];
                loop {
                    let _ = pipe.readable().await;
                    match pipe.try_read(&mut buf) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(death);
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!(event = "daemon.sigterm", "stopping"); break; }
            _ = int.recv() => { tracing::info!(event = "daemon.sigint", "stopping"); break; }
            _ = hup.recv() => tracing::debug!("SIGHUP ignored: the supervisor reloads"),
            _ = &mut death => {
                tracing::warn!(event = "daemon.supervisor_gone", "supervisor is gone; stopping");
                break;
            }
        }
    }
    trigger.trigger();
}

/// Tracks the sessions of a daemon, so shutdown can wait for them (bounded).
#[derive(Default)]
pub struct Sessions {
    set: tokio::task::JoinSet<()>,
}

impl Sessions {
    pub fn spawn(&mut self, session: impl Future<Output = ()> + Send + 'static) {
        // Reap finished sessions as new ones start, so the set does not grow unbounded.
        while self.set.try_join_next().is_some() {}
        self.set.spawn(session);
    }

    /// Sessions still running (finished ones are reaped first).
    pub fn len(&mut self) -> usize {
        while self.set.try_join_next().is_some() {}
        self.set.len()
    }

    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Waits for running sessions up to `limit`, then aborts the rest.
    pub async fn drain(mut self, limit: Duration) {
        let n = self.set.len();
        if n > 0 {
            tracing::info!(
                event = "daemon.drain",
                sessions = n,
                "waiting for sessions to end"
            );
        }
        let all = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                event = "daemon.drain_timeout",
                sessions = self.set.len(),
                "aborting sessions still running"
            );
            self.set.abort_all();
        }
    }
}

/// Spawns an [`accept_loop`] on the inherited TCP listener `inherited` (the caller has read
/// its name), running `handle` for each connection. Returns the task to await at shutdown.
pub fn spawn_tcp_accept<F, Fut>(
    inherited: Inherited,
    shutdown: Shutdown,
    handle: F,
) -> anyhow::Result<tokio::task::JoinHandle<()>>
where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Listener::Tcp(std_listener) = inherited.listener else {
        anyhow::bail!("listener {} is not TCP", inherited.name);
    };
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    Ok(tokio::spawn(accept_loop(listener, shutdown, handle)))
}

/// Accepts connections on `listener` until shutdown, running `handle(stream, peer)` for
/// each as a session, then lets the sessions finish ([`DRAIN_LIMIT`] at most). A failed
/// `accept` (out of descriptors, say) is logged and tried again after 100 ms.
pub async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    mut shutdown: Shutdown,
    handle: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut sessions = Sessions::default();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => sessions.spawn(handle(stream, peer)),
                Err(e) => {
                    tracing::warn!(event = "accept.error", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    sessions.drain(DRAIN_LIMIT).await;
}

/// How long sessions may run after shutdown is requested; the supervisor's `stop_timeout`
/// kills whatever is left after that.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(25);

/// The accept loop of a protocol daemon whose protocol has not been written yet: every
/// connection on its listeners gets `reply(listener name)` and is closed, so a client gets a
/// clear temporary failure instead of silence.
pub async fn serve_placeholder(
    listeners: Vec<Inherited>,
    mut shutdown: Shutdown,
    reply: fn(&str) -> &'static [u8],
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for inherited in listeners {
        let name = inherited.name;
        let listener = AnyListener::from_std(inherited.listener)?;
        let mut stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((mut stream, peer)) => {
                            tracing::info!(event = "session.placeholder", listener = %name, remote = %peer, "protocol not implemented yet; closing");
                            let bytes = reply(&name);
                            tokio::spawn(async move {
                                use tokio::io::AsyncWriteExt;
                                let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(bytes)).await;
                                let _ = stream.shutdown().await;
                            });
                        }
                        Err(e) => {
                            tracing::warn!(event = "accept.error", error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        }));
    }
    shutdown.wait().await;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// A TCP or Unix listener, accepted the same way.
pub enum AnyListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// A connected stream from [`AnyListener`].
pub type AnyStream = Box<dyn AsyncStream>;

pub trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> AsyncStream for T {}

impl AnyListener {
    pub fn from_std(listener: Listener) -> std::io::Result<AnyListener> {
        Ok(match listener {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                AnyListener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            Listener::Unix(l) => {
                l.set_nonblocking(true)?;
                AnyListener::Unix(tokio::net::UnixListener::from_std(l)?)
            }
        })
    }

    /// Accepts one connection; the peer is described as `ip:port` or `unix`.
    pub async fn accept(&self) -> std::io::Result<(AnyStream, String)> {
        match self {
            AnyListener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                Ok((Box::new(s), peer.to_string()))
            }
            AnyListener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Box::new(s), "unix".to_string()))
            }
        }
    }
}

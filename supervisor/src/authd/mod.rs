//! authd (`postern authd`): the only process that reads the users file. Serves the auth
//! protocol of `shared::proto::auth` on `auth.sock`: verification with a positive cache and a
//! brute-force throttle, recipient lookups, user lists. Reloads users and aliases when the files
//! change. Peers are admitted by uid (SO_PEERCRED).

mod cache;
mod directory;
mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::config::slice::AuthSlice;
use shared::daemon::{Context, Sessions, Shutdown};
use shared::listen::Listener;
use shared::passwd::{Scheme, StoredPassword};
use shared::proto::auth::{
    Hello, Recipient, Request, Response, TempReason, VerifyOutcome, encode, read_frame,
};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use self::cache::Cache;
use self::directory::Watched;
use self::throttle::{Attempt, Throttle, Verdict};

/// How long a peer may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle connection is closed after this long (the daemons' pools reconnect on demand).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Most connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;
/// How long a login waits for the undecided attempts that hold its address or user at the
/// failure limit (`throttle::Verdict::Busy`), and how often it looks again.
const BUSY_WAIT: Duration = Duration::from_secs(5);
const BUSY_POLL: Duration = Duration::from_millis(10);

/// State shared by all connections.
pub struct Authd {
    slice: AuthSlice,
    directory: Watched,
    cache: Mutex<Cache>,
    throttle: Mutex<Throttle>,
    /// Per scheme, a hash verified against when the user does not exist, so that a wrong
    /// user name costs about the time of a wrong password (the users file's most common
    /// scheme is used).
    dummies: Mutex<HashMap<Scheme, StoredPassword>>,
}

/// The skeleton's entry point for the `authd` role.
pub async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    let slice = ctx
        .slice
        .auth
        .clone()
        .ok_or_else(|| anyhow::anyhow!("configuration slice has no [auth] part"))?;
    let Some(inherited) = ctx.listeners.pop() else {
        anyhow::bail!("authd was given no auth socket");
    };
    let Listener::Unix(std_listener) = inherited.listener else {
        anyhow::bail!("the auth listener is not a Unix socket");
    };
    std_listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(std_listener)?;
    let authd = Arc::new(Authd::new(slice, &ctx.slice.domains)?);
    ctx.ready();
    serve_listener(authd, listener, ctx.shutdown).await
}

impl Authd {
    pub fn new(slice: AuthSlice, domains: &[String]) -> anyhow::Result<Authd> {
        let directory = Watched::load(&slice, domains)?;
        Ok(Authd {
            cache: Mutex::new(Cache::new(slice.settings.cache_ttl)),
            throttle: Mutex::new(Throttle::new(slice.settings.clone())),
            directory,
            dummies: Mutex::new(HashMap::new()),
            slice,
        })
    }
}

pub async fn serve_listener(
    authd: Arc<Authd>,
    listener: UnixListener,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let watcher = tokio::spawn(watch_files(authd.clone(), shutdown.clone()));
    let mut sessions = Sessions::default();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if sessions.len() >= MAX_CONNECTIONS {
                        tracing::warn!(event = "auth.too_many_connections", "refusing a connection: {MAX_CONNECTIONS} open");
                        continue;
                    }
                    let authd = authd.clone();
                    sessions.spawn(async move { connection(authd, stream).await });
                }
                Err(e) => {
                    tracing::warn!(event = "accept.error", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    watcher.abort();
    // Pooled connections from the daemons stay open; a short drain is enough for replies.
    sessions.drain(Duration::from_secs(2)).await;
    Ok(())
}

/// Re-reads users and aliases when either file changes (checked every second).
async fn watch_files(authd: Arc<Authd>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => authd.directory.refresh(&authd.slice),
        }
    }
}

async fn connection(authd: Arc<Authd>, stream: UnixStream) {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            tracing::warn!(event = "auth.peer_unknown", error = %e, "cannot read peer credentials; closing");
            return;
        }
    };
    if !authd.slice.allowed_uids.contains(&uid) {
        tracing::warn!(
            event = "auth.peer_refused",
            uid,
            "peer uid not allowed on auth.sock; closing"
        );
        return;
    }
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    if w.write_all(&encode(&Hello::ours())).await.is_err() {
        return;
    }
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut reader)).await {
        Ok(Ok(Some(frame))) => {
            serde_json::from_slice::<Hello>(&frame).map_err(|e| format!("bad hello: {e}"))
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no hello in time".into()),
    };
    if let Err(e) = hello.and_then(|h| h.check()) {
        tracing::warn!(event = "auth.bad_hello", uid, "{e}; closing");
        return;
    }
    loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut reader)).await {
            Err(_) => {
                tracing::debug!(uid, "idle auth connection closed");
                return;
            }
            Ok(read) => read,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => return,
            // The peer died (a daemon killed mid-request): nothing wrong with what it sent.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                tracing::debug!(uid, "auth peer went away");
                return;
            }
            Err(e) => {
                tracing::warn!(event = "auth.bad_frame", uid, error = %e, "closing");
                return;
            }
        };
        let request: Request = match serde_json::from_slice(&frame) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(event = "auth.bad_frame", uid, error = %e, "malformed request; closing");
                return;
            }
        };
        let response = authd.handle(request).await;
        if w.write_all(&encode(&response)).await.is_err() {
            return;
        }
    }
}

impl Authd {
    pub async fn handle(self: &Arc<Self>, request: Request) -> Response {
        match request {
            Request::Verify {
                id,
                username,
                secret,
                remote_ip,
                service,
                mechanism,
            } => {
                let outcome = self.verify(&username, &secret, remote_ip, &service).await;
                let _ = mechanism;
                Response::Verify { id, outcome }
            }
            Request::Lookup { id, address } => {
                let recipient = match self.directory.current().resolve(&address) {
                    shared::users::Resolution::Mailbox(address) => Recipient::Mailbox { address },
                    shared::users::Resolution::Alias(targets) => Recipient::Alias { targets },
                    shared::users::Resolution::Unknown => Recipient::Unknown,
                };
                Response::Lookup { id, recipient }
            }
            Request::ListUsers { id, domain } => Response::ListUsers {
                id,
                users: self.directory.current().users_of(&domain),
            },
            Request::SenderAddresses { id, user } => Response::SenderAddresses {
                id,
                addresses: self.directory.current().sender_addresses(&user),
            },
        }
    }

    /// The dummy hash of `scheme`, made on first use (`None` only if the system's random
    /// source fails; the answer is a failure either way).
    fn dummy(&self, scheme: Scheme) -> Option<StoredPassword> {
        let mut dummies = lock(&self.dummies);
        if let Some(d) = dummies.get(&scheme) {
            return Some(d.clone());
        }
        let made = shared::passwd::hash_password(scheme, b"postern-dummy-password").ok()?;
        dummies.insert(scheme, made.clone());
        Some(made)
    }

    /// [`Throttle::begin`], waiting up to [`BUSY_WAIT`] while the limit is reached only by
    /// attempts still being checked (they may well succeed).
    async fn begin(
        &self,
        ip: Option<std::net::IpAddr>,
        username: &str,
    ) -> Result<Attempt, Verdict> {
        let start = Instant::now();
        loop {
            match lock(&self.throttle).begin(ip, username, Instant::now()) {
                Err(Verdict::Busy { .. }) if start.elapsed() < BUSY_WAIT => {}
                decided => return decided,
            }
            tokio::time::sleep(BUSY_POLL).await;
        }
    }

    async fn verify(
        self: &Arc<Self>,
        username: &str,
        secret: &str,
        ip: Option<std::net::IpAddr>,
        service: &str,
    ) -> VerifyOutcome {
        let now = Instant::now();
        let remote = ip.map(|i| i.to_string()).unwrap_or_default();
        let attempt = match self.begin(ip, username).await {
            Ok(a) => a,
            Err(Verdict::Busy { by }) => {
                tracing::warn!(event = "auth.throttled", user = ?username, remote, service, by, "too many logins still being checked; refusing for now");
                return VerifyOutcome::TempFail {
                    reason: TempReason::Throttled,
                };
            }
            Err(Verdict::Blocked { by }) => {
                tracing::warn!(event = "auth.throttled", user = ?username, remote, service, by, "too many failed logins; refusing for now");
                return VerifyOutcome::TempFail {
                    reason: TempReason::Throttled,
                };
            }
        };
        let directory = self.directory.current();
        let entry = directory
            .users
            .get(username)
            .map(|e| (e.address.clone(), e.password.clone()));
        if let Some((user, stored)) = &entry
            && lock(&self.cache).hit(&user.to_lowercase(), &stored.to_field(), secret, now)
        {
            lock(&self.throttle).succeed(attempt);
            tracing::info!(event = "auth.ok", user = %user, remote, service, cached = true, "login");
            return VerifyOutcome::Ok { user: user.clone() };
        }
        let stored = match &entry {
            Some((_, s)) => Some(s.clone()),
            None => self.dummy(self.directory.common_scheme()),
        };
        let secret_owned = secret.to_string();
        let matched = tokio::task::spawn_blocking(move || {
            stored.is_some_and(|s| s.verify(secret_owned.as_bytes()))
        })
        .await;
        let matched = match matched {
            Ok(m) => m && entry.is_some(),
            Err(e) => {
                lock(&self.throttle).cancel(attempt);
                tracing::error!(event = "auth.tempfail", error = %e, "verification task failed");
                return VerifyOutcome::TempFail {
                    reason: TempReason::Internal,
                };
            }
        };
        if let (true, Some((user, stored))) = (matched, &entry) {
            lock(&self.cache).insert(
                &user.to_lowercase(),
                &stored.to_field(),
                secret,
                Instant::now(),
            );
            lock(&self.throttle).succeed(attempt);
            tracing::info!(event = "auth.ok", user = %user, remote, service, cached = false, "login");
            return VerifyOutcome::Ok { user: user.clone() };
        }
        let (failures, delay) = lock(&self.throttle).fail(&attempt, Instant::now());
        tracing::warn!(
            event = "auth.fail",
            user = ?username,
            remote,
            service,
            failures,
            delay_ms = delay.as_millis() as u64,
            "wrong user name or password"
        );
        VerifyOutcome::Fail {
            delay_ms: delay.as_millis() as u64,
        }
    }
}

/// Locks a mutex, recovering from poisoning (the data are caches and counters: a panic in
/// another holder leaves them usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

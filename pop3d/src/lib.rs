//! postern-pop3d: POP3 retrieval (RFC 1939) on `pop3` (110, STLS required before credentials)
//! and `pop3s` (995, implicit TLS), both off by default (ARCHITECTURE §2). `serve` wires the
//! listeners, TLS, the connection limits and the maildrop store; the protocol is in
//! `session.rs`, the socket handling in `io.rs`, the mailstore behind the `maildrop` traits.

pub mod conn;
pub mod indexed;
pub mod io;
pub mod maildrop;
pub mod parser;
pub mod reply;
pub mod session;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::config::{ListenerName, Pop3Settings};
use shared::daemon::{Context, DRAIN_LIMIT, Sessions, Shutdown};
use shared::listen::Listener;
use shared::proto::auth::AuthClient;
use shared::stream::Stream;
use tokio_rustls::TlsAcceptor;

use crate::session::{Session, SessionConfig};

/// Open connections, per client address and in total.
#[derive(Default)]
struct Connections {
    per_ip: HashMap<IpAddr, u32>,
    total: u32,
}

/// Releases a connection slot when the session ends, however it ends.
struct Slot {
    table: Arc<Mutex<Connections>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.total = t.total.saturating_sub(1);
        if let Some(n) = t.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_ip.remove(&self.ip);
            }
        }
    }
}

struct Shared {
    io: Arc<io::Context>,
    session: SessionConfig,
    settings: Pop3Settings,
    connections: Arc<Mutex<Connections>>,
}

/// Serves the inherited POP3 listeners until shutdown, then lets sessions finish (bounded).
pub async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    let slice = ctx.slice.clone();
    let settings = slice
        .pop3
        .clone()
        .ok_or_else(|| anyhow::anyhow!("configuration slice has no POP3 settings"))?;
    let tls = match &slice.tls {
        Some(material) => Some(TlsAcceptor::from(shared::tls::server_config(material)?)),
        None => None,
    };
    let store = Arc::new(indexed::IndexedStore {
        mail_root: slice.state_dir.join("mail"),
    });
    let shared = Arc::new(Shared {
        io: Arc::new(io::Context {
            auth: Arc::new(AuthClient::new(slice.runtime_dir.join("auth.sock"))),
            store,
            tls: tls.clone(),
            idle_timeout: settings.idle_timeout,
            max_line: settings.line_length,
        }),
        session: SessionConfig {
            hostname: slice.hostname.clone(),
            max_commands_before_auth: settings.commands_before_auth,
            max_errors: settings.errors,
            tls_available: tls.is_some(),
        },
        settings,
        connections: Arc::new(Mutex::new(Connections::default())),
    });
    let mut loops = Vec::new();
    for inherited in std::mem::take(&mut ctx.listeners) {
        let Some(name) = ListenerName::from_name(&inherited.name) else {
            anyhow::bail!("unknown listener {}", inherited.name);
        };
        let Listener::Tcp(std_listener) = inherited.listener else {
            anyhow::bail!("listener {} is not TCP", inherited.name);
        };
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        loops.push(tokio::spawn(accept_loop(
            listener,
            name,
            shared.clone(),
            ctx.shutdown.clone(),
        )));
    }
    ctx.ready();
    for l in loops {
        let _ = l.await;
    }
    Ok(())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    name: ListenerName,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
) {
    let mut sessions = Sessions::default();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = shared.clone();
                    sessions.spawn(async move { connection(stream, peer, name, shared).await });
                }
                Err(e) => {
                    tracing::warn!(event = "accept.error", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    sessions.drain(DRAIN_LIMIT).await;
}

fn take_slot(shared: &Shared, ip: IpAddr) -> Option<Slot> {
    let mut t = shared.connections.lock().unwrap_or_else(|p| p.into_inner());
    let mine = t.per_ip.get(&ip).copied().unwrap_or(0);
    if t.total >= shared.settings.connections || mine >= shared.settings.connections_per_ip {
        return None;
    }
    t.total += 1;
    *t.per_ip.entry(ip).or_default() += 1;
    Some(Slot {
        table: shared.connections.clone(),
        ip,
    })
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    name: ListenerName,
    shared: Arc<Shared>,
) {
    let span = tracing::info_span!("pop3", listener = name.as_str(), remote = %peer);
    let Some(_slot) = take_slot(&shared, peer.ip()) else {
        tracing::warn!(parent: &span, event = "pop3.too_many_connections", "connection limit reached; refusing");
        io::refuse(stream, &reply::TOO_MANY_CONNECTIONS).await;
        return;
    };
    // Replies are batched per pipelined burst (conn.rs); Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let implicit_tls = name == ListenerName::Pop3s;
    let stream = if implicit_tls {
        let Some(acceptor) = shared.io.tls.as_ref() else {
            tracing::error!(parent: &span, event = "pop3.no_tls", "implicit TLS listener without a certificate");
            return;
        };
        match tokio::time::timeout(shared.io.idle_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
            _ => {
                tracing::info!(parent: &span, event = "pop3.tls_failed", "TLS handshake failed");
                return;
            }
        }
    } else {
        Stream::Plain(stream)
    };
    // ARCHITECTURE §2: on `pop3` credentials only after STLS; `pop3s` is TLS from the start.
    let session = Session::new(shared.session.clone(), implicit_tls, true);
    let run = io::run(stream, session, shared.io.clone(), peer.ip());
    if let Err(e) = tracing::Instrument::instrument(run, span.clone()).await {
        tracing::debug!(parent: &span, error = %e, "session ended");
    }
}

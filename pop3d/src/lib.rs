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

use std::sync::Arc;

use shared::config::ListenerName;
use shared::daemon::{Context, spawn_tcp_accept};
use shared::proto::auth::AuthClient;
use shared::slots::Connections;
use shared::stream::Stream;
use tokio_rustls::TlsAcceptor;

use crate::session::{Session, SessionConfig};

struct Shared {
    io: Arc<io::Context>,
    session: SessionConfig,
    connections: Arc<Connections>,
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
        connections: Connections::new(settings.connections_per_ip, settings.connections),
    });
    let mut loops = Vec::new();
    for inherited in std::mem::take(&mut ctx.listeners) {
        let Some(name) = ListenerName::from_name(&inherited.name) else {
            anyhow::bail!("unknown listener {}", inherited.name);
        };
        let shared = shared.clone();
        loops.push(spawn_tcp_accept(
            inherited,
            ctx.shutdown.clone(),
            move |stream, peer| connection(stream, peer, name, shared.clone()),
        )?);
    }
    ctx.ready();
    for l in loops {
        let _ = l.await;
    }
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    name: ListenerName,
    shared: Arc<Shared>,
) {
    let span = tracing::info_span!("pop3", listener = name.as_str(), remote = %peer);
    let Some(_slot) = shared.connections.take(&peer.ip()) else {
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

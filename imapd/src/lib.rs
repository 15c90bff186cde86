//! postern-imapd: IMAP4rev1/IMAP4rev2 access to the users' mailstores. `serve` wires the
//! listeners (`imap` on 143 with STARTTLS, `imaps` on 993 with implicit TLS, ARCHITECTURE
//! §2), TLS, authd and the connection limits; the wire layer is in `command`, `parser`,
//! `frame`, `response` and `conn`, the protocol in `session`, the socket handling in `io`.

pub mod command;
pub mod conn;
pub mod frame;
pub mod io;
pub mod parser;
pub mod response;
pub mod session;
#[cfg(test)]
mod testutil;
pub mod watch;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use shared::daemon::{Context, spawn_tcp_accept};
use shared::proto::auth::AuthClient;
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;

use shared::slots::Connections;

/// RFC 9051 §5.4: an authenticated client may stay idle at least 30 minutes.
const MIN_LOGGED_IN_IDLE: Duration = Duration::from_secs(30 * 60);

struct Shared {
    io: Arc<io::Context>,
    connections: Arc<Connections>,
}

/// Serves the inherited listeners until shutdown.
pub async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    let slice = ctx.slice.clone();
    let tls = match &slice.tls {
        Some(material) => Some(TlsAcceptor::from(shared::tls::server_config(material)?)),
        None => None,
    };
    let io_ctx = io_context(&slice, tls);
    let shared = Arc::new(Shared {
        io: Arc::new(io_ctx),
        connections: Connections::new(slice.limits.connections_per_ip, slice.limits.connections),
    });
    let mut loops = Vec::new();
    for inherited in std::mem::take(&mut ctx.listeners) {
        let implicit_tls = match inherited.name.as_str() {
            "imap" => false,
            "imaps" => true,
            other => anyhow::bail!("unknown listener {other}"),
        };
        let shared = shared.clone();
        loops.push(spawn_tcp_accept(
            inherited,
            ctx.shutdown.clone(),
            move |stream, peer| connection(stream, peer.ip(), implicit_tls, shared.clone()),
        )?);
    }
    ctx.ready();
    for l in loops {
        let _ = l.await;
    }
    Ok(())
}

/// What every connection shares, from the slice (`[limits]` and `[imap]`).
fn io_context(slice: &shared::config::slice::DaemonSlice, tls: Option<TlsAcceptor>) -> io::Context {
    let l = &slice.limits;
    let imap = slice.imap.clone().unwrap_or_default();
    let frame = frame::Limits {
        max_line: imap.max_line,
        max_literal: l.message_size,
        max_command: l.message_size + imap.max_line as u64,
        ..frame::Limits::default()
    };
    io::Context {
        auth: Arc::new(AuthClient::new(slice.runtime_dir.join("auth.sock"))),
        tls,
        session: Arc::new(session::Config {
            mail_root: slice.state_dir.join("mail"),
            max_errors: l.errors,
            max_commands_before_auth: imap.commands_before_auth,
            append_limit: l.message_size,
            max_depth: imap.max_depth,
        }),
        frame,
        idle_before_login: l.idle_timeout,
        idle_logged_in: imap.idle_timeout.max(MIN_LOGGED_IN_IDLE),
        users: shared::slots::Users::new(imap.sessions_per_user, u32::MAX),
        watches: match watch::Watches::start() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(event = "imap.inotify_failed", error = %e, "no inotify; IDLE polls");
                None
            }
        },
    }
}

async fn connection(
    mut stream: tokio::net::TcpStream,
    ip: IpAddr,
    implicit_tls: bool,
    shared: Arc<Shared>,
) {
    let span = tracing::info_span!("imap", tls = implicit_tls, remote = %ip);
    let Some(_slot) = shared.connections.take(&ip) else {
        tracing::warn!(parent: &span, event = "imap.too_many_connections", "connection limit reached; refusing");
        let _ = stream
            .write_all(&io::refuse("Too many connections; try again later"))
            .await;
        return;
    };
    let _ = stream.set_nodelay(true);
    let ctx = shared.io.clone();
    let stream = if implicit_tls {
        let Some(acceptor) = ctx.tls.as_ref() else {
            tracing::error!(parent: &span, event = "imap.no_tls", "implicit TLS listener without a certificate");
            return;
        };
        match tokio::time::timeout(ctx.idle_before_login, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => io::Stream::Tls(Box::new(tls)),
            _ => {
                tracing::info!(parent: &span, event = "imap.tls_failed", "TLS handshake failed");
                return;
            }
        }
    } else {
        io::Stream::Plain(stream)
    };
    let result =
        tracing::Instrument::instrument(io::run(stream, implicit_tls, ctx, ip), span.clone()).await;
    if let Err(e) = result {
        tracing::debug!(parent: &span, error = %e, "session ended");
    }
}

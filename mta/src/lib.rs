//! postern-mta: SMTP transfer (25) and submission (587, 465), the durable queue, delivery of
//! local mail over LMTP and of remote mail over SMTP (`outbound/`), and bounces (`bounce.rs`).
//! `serve` wires listeners, TLS, limits and the queue manager (`delivery.rs`); the protocol is
//! in `session.rs`, the socket handling in `io.rs`.

pub mod bounce;
pub mod control;
pub mod delivery;
pub mod dkim;
pub mod io;
pub mod outbound;
pub mod policy;
pub mod queue;
pub mod session;
pub mod wire;

use std::sync::Arc;

use shared::config::ListenerName;
use shared::daemon::{Context, spawn_tcp_accept};
use shared::listen::Listener;
use shared::proto::auth::AuthClient;
use shared::slots::Connections;
use shared::smtp::Reply;
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;

use crate::policy::Policy;
use crate::session::{Session, SessionConfig};

struct Shared {
    io: Arc<io::Context>,
    session: SessionConfig,
    connections: Arc<Connections>,
}

/// Serves the inherited SMTP listeners and runs the queue manager until shutdown.
pub async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    let slice = ctx.slice.clone();
    let settings = slice
        .mta
        .clone()
        .ok_or_else(|| anyhow::anyhow!("configuration slice has no MTA settings"))?;
    let tls = match &slice.tls {
        Some(material) => Some(TlsAcceptor::from(shared::tls::server_config(material)?)),
        None => None,
    };
    let queue_dir = slice.state_dir.join("queue");
    let queue = Arc::new(queue::Queue::open(&queue_dir, &slice.hostname)?);
    let (queued_tx, queued_rx) = tokio::sync::mpsc::unbounded_channel();
    let auth = Arc::new(AuthClient::new(slice.runtime_dir.join("auth.sock")));
    let own_mda = settings.delivery
        == shared::config::DeliveryTarget::Unix(slice.runtime_dir.join("lmtp.sock"));
    let manager = Arc::new(delivery::Manager {
        auth: (!own_mda).then(|| auth.clone()),
        domains: slice.domains.clone(),
        queue: queue.clone(),
        pool: tokio::sync::Mutex::new(Vec::new()),
        target: settings.delivery.clone(),
        hostname: slice.hostname.clone(),
        retry_min: settings.retry_min,
        retry_max: settings.retry_max,
        lifetime: settings.lifetime,
        delay_warning: settings.delay_warning,
        outbound: outbound::Outbound::new(
            Arc::new(outbound::route::HickoryDns::new(
                &settings.outbound.nameservers,
            )?),
            settings.outbound.clone(),
            slice.hostname.clone(),
            slice.relay.clone(),
        )?,
        queued: queued_tx.clone(),
        schedule: Default::default(),
    });
    let (commands_tx, commands_rx) = tokio::sync::mpsc::unbounded_channel();
    let manager_task = tokio::spawn(delivery::run(
        manager.clone(),
        queued_rx,
        commands_rx,
        ctx.shutdown.clone(),
    ));
    let shared = Arc::new(Shared {
        io: Arc::new(io::Context {
            auth,
            queue,
            tls: tls.clone(),
            idle_timeout: slice.limits.idle_timeout,
            queued: queued_tx,
            dkim: Arc::new(dkim::Signers::new(&slice.dkim)?),
        }),
        session: SessionConfig {
            hostname: slice.hostname.clone(),
            domains: slice.domains.clone(),
            max_size: slice.limits.message_size,
            max_recipients: slice.limits.recipients as usize,
            max_errors: slice.limits.errors,
            max_commands_before_mail: slice.limits.commands_before_mail,
            restrict_sender: settings.restrict_sender,
            tls_available: tls.is_some(),
        },
        connections: Connections::new(slice.limits.connections_per_ip, slice.limits.connections),
    });
    let mut loops = Vec::new();
    for inherited in std::mem::take(&mut ctx.listeners) {
        if inherited.name == "control" {
            let Listener::Unix(std_listener) = inherited.listener else {
                anyhow::bail!("listener control is not a Unix socket");
            };
            std_listener.set_nonblocking(true)?;
            let listener = tokio::net::UnixListener::from_std(std_listener)?;
            loops.push(tokio::spawn(control::serve(
                listener,
                manager.clone(),
                commands_tx.clone(),
                ctx.shutdown.clone(),
            )));
            continue;
        }
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
    let _ = manager_task.await;
    Ok(())
}

async fn connection(
    mut stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    name: ListenerName,
    shared: Arc<Shared>,
) {
    let span = tracing::info_span!("smtp", listener = name.as_str(), remote = %peer);
    let _enter = span.enter();
    let Some(_slot) = shared.connections.take(&peer.ip()) else {
        tracing::warn!(
            event = "smtp.too_many_connections",
            "connection limit reached; refusing"
        );
        let reply = Reply::new(421, "4.7.0", "too many connections; try again later");
        let _ = stream.write_all(&reply.to_bytes()).await;
        return;
    };
    drop(_enter);
    // Replies are already batched per pipelined burst (io.rs); Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let policy = Policy::for_listener(name);
    let (stream, tls) = if policy.implicit_tls {
        let Some(acceptor) = shared.io.tls.as_ref() else {
            tracing::error!(
                event = "smtp.no_tls",
                "implicit TLS listener without a certificate"
            );
            return;
        };
        match tokio::time::timeout(shared.io.idle_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let description = io::describe_tls(&tls);
                (io::Stream::Tls(Box::new(tls)), Some(description))
            }
            _ => {
                tracing::info!(parent: &span, event = "smtp.tls_failed", "TLS handshake failed");
                return;
            }
        }
    } else {
        (io::Stream::Plain(stream), None)
    };
    let session = Session::new(shared.session.clone(), name, peer.ip(), tls);
    if let Err(e) = io::run(stream, session, shared.io.clone()).await {
        tracing::debug!(parent: &span, error = %e, "session ended");
    }
}

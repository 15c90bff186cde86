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

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::config::ListenerName;
use shared::daemon::{Context, DRAIN_LIMIT, Sessions, Shutdown};
use shared::listen::Listener;
use shared::proto::auth::AuthClient;
use shared::smtp::Reply;
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;

use crate::policy::Policy;
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
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&self.ip);
            }
        }
    }
}

struct Shared {
    io: Arc<io::Context>,
    session: SessionConfig,
    connections: Arc<Mutex<Connections>>,
    per_ip: u32,
    total: u32,
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
        connections: Arc::new(Mutex::new(Connections::default())),
        per_ip: slice.limits.connections_per_ip,
        total: slice.limits.connections,
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
    let _ = manager_task.await;
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
    if t.total >= shared.total || mine >= shared.per_ip {
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
    mut stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    name: ListenerName,
    shared: Arc<Shared>,
) {
    let span = tracing::info_span!("smtp", listener = name.as_str(), remote = %peer);
    let _enter = span.enter();
    let Some(_slot) = take_slot(&shared, peer.ip()) else {
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

//! postern-mda: LMTP (RFC 2033) on `runtime_dir/lmtp.sock`, delivering into the Maildirs
//! under `state_dir/mail`. `serve` is the accept loop; the protocol is in `session.rs`, the
//! socket handling in `io.rs`, the writing in `deliver.rs`.

pub mod deliver;
pub mod io;
pub mod lookups;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use shared::daemon::{AnyListener, Context, DRAIN_LIMIT, Sessions};
use shared::proto::auth::AuthClient;

/// Serves the inherited `lmtp` listener until shutdown, then lets sessions finish.
pub async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    let Some(inherited) = ctx.listeners.pop() else {
        anyhow::bail!("postern-mda was given no lmtp socket");
    };
    let listener = AnyListener::from_std(inherited.listener)?;
    let slice = ctx.slice.clone();
    let shared_ctx = Arc::new(io::Context {
        auth: Arc::new(AuthClient::new(slice.runtime_dir.join("auth.sock"))),
        mail_root: slice.state_dir.join("mail"),
        hostname: slice.hostname.clone(),
        lookups: lookups::Lookups::default(),
    });
    ctx.ready();
    let mut sessions = Sessions::default();
    let mut shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let session = session::Session::new(&slice.hostname, &slice.domains, slice.limits.message_size);
                    let shared_ctx = shared_ctx.clone();
                    sessions.spawn(async move {
                        if let Err(e) = io::run(stream, session, shared_ctx).await {
                            tracing::debug!(error = %e, "lmtp connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(event = "accept.error", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    sessions.drain(DRAIN_LIMIT).await;
    Ok(())
}

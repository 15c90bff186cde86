//! postern-mta: SMTP transfer and submission, the queue, outbound delivery. Until its protocol lands, every connection gets a temporary
//! failure reply and is closed (`shared::daemon::serve_placeholder`); the process already runs
//! in the common skeleton (listeners, readiness, drain).

use shared::daemon::Context;

/// Serves the inherited listeners until shutdown.
pub async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    ctx.ready();
    shared::daemon::serve_placeholder(ctx.listeners, ctx.shutdown, |_| {
        b"421 4.3.2 Service not available (mail transfer not implemented yet)\r\n"
    })
    .await
}

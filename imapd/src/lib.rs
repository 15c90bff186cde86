//! postern-imapd: IMAP retrieval. Until its protocol lands, every connection gets a temporary
//! failure reply and is closed (`shared::daemon::serve_placeholder`); the process already runs
//! in the common skeleton (listeners, readiness, drain). The wire layer (commands, parser,
//! framing, responses, connection) is here already, not yet used by `serve`.

pub mod command;
pub mod conn;
pub mod frame;
pub mod parser;
pub mod response;
#[cfg(test)]
mod testutil;

use shared::daemon::Context;

/// Serves the inherited listeners until shutdown.
pub async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    ctx.ready();
    shared::daemon::serve_placeholder(ctx.listeners, ctx.shutdown, |_| {
        b"* BYE [UNAVAILABLE] IMAP not implemented yet\r\n"
    })
    .await
}

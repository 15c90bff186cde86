//! Drives an LMTP [`Session`] over a stream: line framing with limits, the idle timeout,
//! recipient lookups through authd, DATA through the shared receiver, delivery on a blocking
//! thread. All protocol decisions are the session's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::daemon::AnyStream;
use shared::proto::auth::{AuthClient, ClientError, Recipient};
use shared::smtp::conn::{Conn, Input};
use shared::smtp::{DataReceiver, Reply, replies};

use crate::deliver::deliver;
use crate::lookups::Lookups;
use crate::session::{DataOutcome, Session, Step};

/// Idle time allowed between commands and between data chunks (RFC 5321 §4.5.3.2 asks for
/// at least 5 minutes).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Bad commands in a row before the connection is closed.
const MAX_ERRORS: u32 = 20;

pub struct Context {
    pub auth: Arc<AuthClient>,
    pub mail_root: PathBuf,
    pub hostname: String,
    /// Recent positive lookups (`lookups.rs`).
    pub lookups: Lookups,
}

/// Serves one connection until QUIT, EOF, timeout or too many errors.
pub async fn run(
    stream: AnyStream,
    mut session: Session,
    ctx: Arc<Context>,
) -> std::io::Result<()> {
    let mut conn = Conn::new(stream, IDLE_TIMEOUT);
    conn.write(&session.greeting());
    let mut errors = 0;
    loop {
        let line = match conn.line().await {
            Ok(Input::Complete(l)) => l,
            Ok(Input::TooLong) => {
                conn.write(&replies::LINE_TOO_LONG);
                continue;
            }
            Ok(Input::Eof) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                conn.write(&replies::TIMEOUT);
                let _ = conn.flush().await;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let reply = match session.command(&line) {
            Step::Reply(r) => r,
            Step::Quit(r) => {
                conn.write(&r);
                conn.flush().await?;
                return Ok(());
            }
            Step::Lookup(address) => match lookup(&ctx, &address).await {
                Ok(found) => session.resolved(address, found),
                Err(e) => {
                    tracing::error!(event = "lmtp.lookup_failed", error = %e, "authd lookup failed");
                    replies::TEMP_LOCAL_ERROR
                }
            },
            Step::ReceiveData(r) => {
                conn.write(&r);
                let Some(receiver) = conn.receive_data(session.max_size()).await? else {
                    return Ok(());
                };
                for reply in finish_data(&mut session, receiver, &ctx).await {
                    conn.write(&reply);
                }
                continue;
            }
        };
        errors = if reply.code >= 500 { errors + 1 } else { 0 };
        conn.write(&reply);
        if errors >= MAX_ERRORS {
            conn.write(&replies::TOO_MANY_ERRORS);
            conn.flush().await?;
            return Ok(());
        }
    }
}

/// `address` resolved through authd, or from the memory of its recent answers.
async fn lookup(ctx: &Context, address: &str) -> Result<Recipient, ClientError> {
    let now = Instant::now();
    if let Some(found) = ctx.lookups.get(address, now) {
        return Ok(found);
    }
    let found = ctx.auth.lookup(address).await?;
    ctx.lookups.put(address, &found, now);
    Ok(found)
}

/// The replies after the message: one per accepted recipient.
async fn finish_data(
    session: &mut Session,
    receiver: DataReceiver,
    ctx: &Arc<Context>,
) -> Vec<Reply> {
    match session.data_received(receiver.finish()) {
        DataOutcome::Refuse { reply, count } => vec![reply; count],
        DataOutcome::Deliver(tx) => {
            let ctx = ctx.clone();
            let count = tx.recipients.len();
            let job =
                tokio::task::spawn_blocking(move || deliver(&ctx.mail_root, &ctx.hostname, &tx));
            job.await.unwrap_or_else(|e| {
                tracing::error!(event = "delivery.failed", error = %e, "delivery task failed");
                vec![replies::TEMP_LOCAL_ERROR; count]
            })
        }
    }
}

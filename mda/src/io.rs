//! Drives an LMTP [`Session`] over a stream: line framing with limits, the idle timeout,
//! recipient lookups through authd, DATA through the shared receiver, delivery on a blocking
//! thread. All protocol decisions are the session's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shared::daemon::AnyStream;
use shared::proto::auth::AuthClient;
use shared::smtp::{DataReceiver, MAX_COMMAND_LINE, Reply, replies};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::deliver::deliver;
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
}

/// A read line, or why there is none.
enum Input {
    Complete(Vec<u8>),
    TooLong,
    Eof,
}

struct Conn {
    stream: AnyStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(IDLE_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle timeout"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One line up to LF, at most [`MAX_COMMAND_LINE`] bytes; a longer one is read to its
    /// end and reported as too long.
    async fn line(&mut self) -> std::io::Result<Input> {
        let mut too_long = false;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(if too_long || line.len() > MAX_COMMAND_LINE {
                    Input::TooLong
                } else {
                    Input::Complete(line)
                });
            }
            if self.buf.len() > MAX_COMMAND_LINE {
                too_long = true;
                self.buf.clear();
            }
            if self.fill().await? == 0 {
                return Ok(Input::Eof);
            }
        }
    }

    async fn write(&mut self, reply: &Reply) -> std::io::Result<()> {
        self.stream.write_all(&reply.to_bytes()).await
    }

    async fn receive(&mut self, max_size: u64) -> std::io::Result<Option<DataReceiver>> {
        let mut receiver = DataReceiver::new(max_size);
        loop {
            let used = receiver.feed(&self.buf);
            self.buf.drain(..used);
            if receiver.is_done() {
                return Ok(Some(receiver));
            }
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }
}

/// Serves one connection until QUIT, EOF, timeout or too many errors.
pub async fn run(
    stream: AnyStream,
    mut session: Session,
    ctx: Arc<Context>,
) -> std::io::Result<()> {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    conn.write(&session.greeting()).await?;
    let mut errors = 0;
    loop {
        let line = match conn.line().await {
            Ok(Input::Complete(l)) => l,
            Ok(Input::TooLong) => {
                conn.write(&replies::LINE_TOO_LONG).await?;
                continue;
            }
            Ok(Input::Eof) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                let _ = conn.write(&replies::TIMEOUT).await;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let reply = match session.command(&line) {
            Step::Reply(r) => r,
            Step::Quit(r) => {
                conn.write(&r).await?;
                return Ok(());
            }
            Step::Lookup(address) => match ctx.auth.lookup(&address).await {
                Ok(found) => session.resolved(address, found),
                Err(e) => {
                    tracing::error!(event = "lmtp.lookup_failed", error = %e, "authd lookup failed");
                    replies::TEMP_LOCAL_ERROR
                }
            },
            Step::ReceiveData(r) => {
                conn.write(&r).await?;
                let Some(receiver) = conn.receive(session.max_size()).await? else {
                    return Ok(());
                };
                for reply in finish_data(&mut session, receiver, &ctx).await {
                    conn.write(&reply).await?;
                }
                continue;
            }
        };
        errors = if reply.code >= 500 { errors + 1 } else { 0 };
        conn.write(&reply).await?;
        if errors >= MAX_ERRORS {
            conn.write(&replies::TOO_MANY_ERRORS).await?;
            return Ok(());
        }
    }
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

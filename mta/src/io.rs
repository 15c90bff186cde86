//! Drives an SMTP [`Session`] over a TCP connection: line framing with limits, the idle
//! timeout, STARTTLS (bytes sent before the handshake are discarded, CVE-2011-0411), AUTH
//! through authd with its delay, lookups, DATA and BDAT, and queueing on a blocking thread.
//! All protocol decisions are the session's.

use std::sync::Arc;
use std::time::Duration;

use shared::proto::auth::{AuthClient, VerifyOutcome};
use shared::smtp::conn::{Input, timed_out};
use shared::smtp::{Reply, replies};
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;

use crate::queue::Queue;
use crate::session::{Message, Session, Step};

pub struct Context {
    pub auth: Arc<AuthClient>,
    pub queue: Arc<Queue>,
    pub tls: Option<TlsAcceptor>,
    pub idle_timeout: Duration,
    /// Hands a newly queued message to the queue manager.
    pub queued: tokio::sync::mpsc::UnboundedSender<crate::queue::Queued>,
    /// DKIM signers for submitted mail.
    pub dkim: Arc<crate::dkim::Signers>,
}

pub use shared::stream::{Stream, describe_tls};

type Conn = shared::smtp::conn::Conn<Stream>;

/// Serves one connection until QUIT, EOF, timeout or an error limit.
pub async fn run(stream: Stream, mut session: Session, ctx: Arc<Context>) -> std::io::Result<()> {
    let mut conn = Conn::new(stream, ctx.idle_timeout);
    conn.write(&session.greeting());
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
        let mut step = session.command(&line);
        // Some steps lead to further steps (a chunk refused, a message to queue).
        loop {
            step = match step {
                Step::Reply(r) => {
                    conn.write(&r);
                    break;
                }
                Step::Close(r) => {
                    conn.write(&r);
                    conn.flush().await?;
                    let _ = conn.stream.shutdown().await;
                    return Ok(());
                }
                Step::StartTls(r) => {
                    conn.write(&r);
                    conn.flush().await?;
                    conn = start_tls(conn, &ctx).await?;
                    let Stream::Tls(tls) = &conn.stream else {
                        return Ok(());
                    };
                    session.tls_started(describe_tls(tls));
                    break;
                }
                Step::Verify {
                    mechanism,
                    username,
                    password,
                } => {
                    let remote = session_remote(&session);
                    let outcome = match ctx
                        .auth
                        .verify(mechanism, &username, &password, remote, "smtp")
                        .await
                    {
                        Ok(o) => o,
                        Err(e) => {
                            tracing::error!(event = "smtp.auth_unavailable", error = %e, "authd did not answer");
                            VerifyOutcome::TempFail {
                                reason: shared::proto::auth::TempReason::Internal,
                            }
                        }
                    };
                    if let VerifyOutcome::Fail { delay_ms } = outcome {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    }
                    let reply = session.auth_result(outcome);
                    if let Some(user) = session.user().map(str::to_string) {
                        let senders = ctx.auth.sender_addresses(&user).await.unwrap_or_default();
                        session.set_senders(senders);
                    }
                    Step::Reply(reply)
                }
                Step::Lookup(address) => match ctx.auth.lookup(&address).await {
                    Ok(found) => Step::Reply(session.resolved(found)),
                    Err(e) => {
                        tracing::error!(event = "smtp.lookup_failed", error = %e, "authd lookup failed");
                        Step::Reply(session.lookup_failed())
                    }
                },
                Step::ReceiveData(r) => {
                    conn.write(&r);
                    let Some(receiver) = conn.receive_data(session.max_size()).await? else {
                        return Ok(());
                    };
                    session.data_received(receiver.finish())
                }
                Step::ReceiveChunk { size, last } => {
                    let Some(chunk) = conn.receive_chunk(size).await? else {
                        return Ok(());
                    };
                    session.chunk_received(&chunk, last)
                }
                Step::Queue(message) => Step::Reply(queue(&mut session, message, &ctx).await),
            };
        }
    }
}

fn session_remote(session: &Session) -> Option<std::net::IpAddr> {
    Some(session.remote())
}

/// A submitted message (its sender authenticated) gets a DKIM-Signature when its sender's
/// domain has a key; a signing failure is logged and the message goes unsigned.
fn sign(signers: &crate::dkim::Signers, mut message: Message) -> Message {
    if message.trace.user.is_none() || signers.is_empty() {
        return message;
    }
    match signers.sign(&message.envelope.sender, &message.body) {
        Some(Ok(header)) => {
            let mut body = header.into_bytes();
            body.extend_from_slice(&message.body);
            message.body = body;
        }
        Some(Err(e)) => {
            tracing::error!(event = "dkim.sign_failed", error = %e, "cannot sign; sent unsigned")
        }
        None => {}
    }
    message
}

/// RFC 3207 §5: whatever the client sent after STARTTLS and before the handshake is dropped.
async fn start_tls(mut conn: Conn, ctx: &Context) -> std::io::Result<Conn> {
    conn.discard_input();
    let (Stream::Plain(tcp), Some(acceptor)) = (conn.stream, ctx.tls.as_ref()) else {
        return Err(std::io::Error::other("STARTTLS without TLS material"));
    };
    let tls = tokio::time::timeout(conn.idle, acceptor.accept(tcp))
        .await
        .map_err(|_| timed_out())??;
    Ok(Conn::new(Stream::Tls(Box::new(tls)), conn.idle))
}

async fn queue(session: &mut Session, message: Message, ctx: &Arc<Context>) -> Reply {
    let queue = ctx.queue.clone();
    let date = shared::date::now();
    let sender = message.envelope.sender.clone();
    let count = message.envelope.recipients.len();
    let dkim = ctx.dkim.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let message = sign(&dkim, message);
        queue.store(&message, &date)
    })
    .await;
    let result = match stored.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
        Ok(queued) => {
            let id = queued.stored.id.clone();
            tracing::info!(event = "smtp.queued", id = %id, sender = ?sender, recipients = count, "message queued");
            let _ = ctx.queued.send(queued);
            Ok(id)
        }
        Err(e) => {
            tracing::error!(event = "smtp.queue_failed", error = %e, "cannot queue the message");
            Err(e)
        }
    };
    session.queued(result)
}

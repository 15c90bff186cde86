//! Drives a POP3 [`Session`] over a connection: line framing with the configured limit, the
//! idle timeout (RFC 1939 §3 autologout), STLS (every byte sent before the handshake is
//! discarded: RFC 2595 §4, CVE-2011-0411), verification through authd with the delay a failure
//! carries, and the maildrop's blocking file work on blocking threads. The maildrop lock lives
//! as long as this function's `Maildrop`: however the session ends, it is released. All
//! protocol decisions are the session's.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use shared::proto::auth::{AuthClient, TempReason, VerifyOutcome};
use shared::stream::Stream;
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;

use crate::conn::{Input, timed_out};
use crate::maildrop::{Maildrop, Store, Update};
use crate::reply::{self, Reply};
use crate::session::{Session, Step};

pub struct Context {
    pub auth: Arc<AuthClient>,
    pub store: Arc<dyn Store>,
    pub tls: Option<TlsAcceptor>,
    pub idle_timeout: Duration,
    pub max_line: usize,
}

type Conn = crate::conn::Conn<Stream>;

/// Per-connection state the driver keeps beside the session.
struct Driver {
    ctx: Arc<Context>,
    remote: IpAddr,
    maildrop: Option<Box<dyn Maildrop>>,
}

/// How a step ended for the loop.
enum Flow {
    Continue,
    Done,
}

/// Serves one connection until QUIT, EOF, the idle timeout or an error limit.
pub async fn run(
    stream: Stream,
    mut session: Session,
    ctx: Arc<Context>,
    remote: IpAddr,
) -> std::io::Result<()> {
    let mut conn = Conn::new(stream, ctx.idle_timeout, ctx.max_line);
    session.greeting().write_to(&mut conn.out);
    let mut driver = Driver {
        ctx,
        remote,
        maildrop: None,
    };
    loop {
        let step = match conn.line().await {
            Ok(Some(Input::Complete(line))) => session.command(&line),
            Ok(Some(Input::TooLong)) => session.line_too_long(),
            Ok(None) => return Ok(()), // Dropped: nothing is deleted (RFC 1939 §6).
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                tracing::info!(event = "pop3.timeout", "idle timeout; closing");
                reply::TIMEOUT.write_to(&mut conn.out);
                let _ = conn.flush().await;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if let Flow::Done = driver.step(&mut conn, &mut session, step).await? {
            return Ok(());
        }
    }
}

impl Driver {
    /// Carries out `step` and the steps it leads to.
    async fn step(
        &mut self,
        conn: &mut Conn,
        session: &mut Session,
        step: Step,
    ) -> std::io::Result<Flow> {
        let mut step = step;
        loop {
            step = match step {
                Step::Reply(r) => {
                    r.write_to(&mut conn.out);
                    return Ok(Flow::Continue);
                }
                Step::Close(r) => {
                    r.write_to(&mut conn.out);
                    conn.flush().await?;
                    let _ = conn.stream.shutdown().await;
                    return Ok(Flow::Done);
                }
                Step::StartTls(r) => {
                    r.write_to(&mut conn.out);
                    conn.flush().await?;
                    self.start_tls(conn).await?;
                    session.tls_started();
                    return Ok(Flow::Continue);
                }
                Step::Verify {
                    mechanism,
                    username,
                    password,
                } => {
                    let outcome = self.verify(mechanism, &username, &password).await;
                    session.auth_result(outcome)
                }
                Step::Open { user } => {
                    let store = self.ctx.store.clone();
                    let who = user.clone();
                    let opened = tokio::task::spawn_blocking(move || {
                        let mut maildrop = store.open(&who)?;
                        let listing = maildrop.lists_cheaply().then(|| maildrop.list());
                        Ok((maildrop, listing))
                    })
                    .await
                    .unwrap_or_else(|e| {
                        Err(crate::maildrop::OpenError::Io(std::io::Error::other(e)))
                    });
                    let (locked, listing) = match opened {
                        Ok((maildrop, listing)) => {
                            tracing::info!(event = "pop3.login", user = %user, "maildrop locked");
                            self.maildrop = Some(maildrop);
                            (Ok(()), listing)
                        }
                        Err(e) => {
                            log_open_error(&user, &e);
                            (Err(e), None)
                        }
                    };
                    let step = session.opened(&user, locked);
                    match listing {
                        Some(Ok(messages)) => {
                            tracing::info!(
                                event = "pop3.listed",
                                messages = messages.len(),
                                at_login = true,
                                "maildrop listed"
                            );
                            session.listed_at_login(messages)
                        }
                        // Not fatal: the first command that needs the listing tries again.
                        Some(Err(e)) => {
                            tracing::warn!(event = "pop3.list_failed", error = %e, "cannot list the maildrop at login")
                        }
                        None => {}
                    }
                    step
                }
                Step::List => {
                    let listing = self.blocking(|m| m.list()).await;
                    match &listing {
                        Ok(messages) => {
                            tracing::info!(
                                event = "pop3.listed",
                                messages = messages.len(),
                                "maildrop listed"
                            )
                        }
                        Err(e) => {
                            tracing::error!(event = "pop3.list_failed", error = %e, "cannot list the maildrop")
                        }
                    }
                    session.listed(listing)
                }
                Step::Send { index, lines } => match self.read(index).await {
                    Ok(message) => {
                        session.send_header(index, lines).write_to(&mut conn.out);
                        reply::write_message(&message, lines, &mut conn.out);
                        return Ok(Flow::Continue);
                    }
                    Err(e) => {
                        tracing::error!(event = "pop3.read_failed", error = %e, "cannot read a message");
                        session.read_failed(index)
                    }
                },
                Step::Commit(update) => {
                    let result = self.commit(update).await;
                    Step::Close(session.committed(result))
                }
            };
        }
    }

    async fn verify(
        &self,
        mechanism: shared::proto::auth::Mechanism,
        username: &str,
        password: &str,
    ) -> VerifyOutcome {
        let outcome = match self
            .ctx
            .auth
            .verify(mechanism, username, password, Some(self.remote), "pop3")
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(event = "pop3.auth_unavailable", error = %e, "authd did not answer");
                VerifyOutcome::TempFail {
                    reason: TempReason::Internal,
                }
            }
        };
        match &outcome {
            VerifyOutcome::Ok { .. } => {}
            VerifyOutcome::Fail { delay_ms } => {
                tracing::info!(event = "pop3.auth_fail", user = ?username, "authentication failed");
                tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
            }
            VerifyOutcome::TempFail { reason } => {
                tracing::warn!(event = "pop3.auth_tempfail", user = ?username, reason = ?reason, "authentication temporarily failed");
            }
        }
        outcome
    }

    /// RFC 2595 §4: whatever the client sent after STLS and before the handshake is dropped.
    async fn start_tls(&self, conn: &mut Conn) -> std::io::Result<()> {
        conn.lines.discard();
        let Some(acceptor) = self.ctx.tls.as_ref() else {
            return Err(std::io::Error::other("STLS without TLS material"));
        };
        let plain = std::mem::replace(&mut conn.stream, Stream::Closed);
        let Stream::Plain(tcp) = plain else {
            return Err(std::io::Error::other("STLS on a TLS connection"));
        };
        let tls = tokio::time::timeout(conn.idle, acceptor.accept(tcp))
            .await
            .map_err(|_| timed_out())??;
        conn.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Takes the maildrop to a blocking thread for `work` and back.
    async fn blocking<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut dyn Maildrop) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let Some(mut maildrop) = self.maildrop.take() else {
            return Err(std::io::Error::other("no maildrop open"));
        };
        let (maildrop, result) = tokio::task::spawn_blocking(move || {
            let result = work(maildrop.as_mut());
            (maildrop, result)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.maildrop = Some(maildrop);
        result
    }

    async fn read(&mut self, index: usize) -> std::io::Result<Vec<u8>> {
        self.blocking(move |m| m.read(index)).await
    }

    async fn commit(&mut self, update: Update) -> std::io::Result<()> {
        let (deleted, seen) = (update.delete.len(), update.seen.len());
        let result = self.blocking(move |m| m.commit(&update)).await;
        match &result {
            Ok(()) => tracing::info!(event = "pop3.update", deleted, seen, "maildrop updated"),
            Err(e) => {
                tracing::error!(event = "pop3.update_failed", error = %e, "update incomplete")
            }
        }
        // The lock goes with the maildrop, before the last reply is sent.
        self.maildrop = None;
        result
    }
}

fn log_open_error(user: &str, e: &crate::maildrop::OpenError) {
    match e {
        crate::maildrop::OpenError::InUse => {
            tracing::info!(event = "pop3.in_use", user = %user, "maildrop locked by another session")
        }
        crate::maildrop::OpenError::Io(e) => {
            tracing::error!(event = "pop3.open_failed", user = %user, error = %e, "cannot open the maildrop")
        }
    }
}

/// Writes `reply` and closes: for connections refused before a session starts.
pub async fn refuse(mut stream: tokio::net::TcpStream, reply: &Reply) {
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&reply.to_bytes())).await;
    let _ = stream.shutdown().await;
}

//! Drives an IMAP [`Session`] over a TCP or TLS connection: commands from [`Conn`], the
//! session run on a blocking thread (the mailstore is blocking file I/O), STARTTLS with the
//! pipelined plaintext dropped, verification through authd with its failure delay, the
//! AUTHENTICATE continuation, and IDLE woken by inotify on the folder's files. All protocol
//! decisions are the session's.

use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use shared::proto::auth::{AuthClient, Mechanism, TempReason, VerifyOutcome};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::conn::{Conn, Input, Line};
use crate::frame::Limits;
use crate::response::{Response, Untagged};
use crate::session::{Credentials, Session, Step};
use crate::watch::{Subscription, Watches};
use shared::slots::{UserSlot, Users};

/// What every connection shares.
pub struct Context {
    pub auth: Arc<AuthClient>,
    pub tls: Option<TlsAcceptor>,
    pub session: Arc<crate::session::Config>,
    pub frame: Limits,
    /// Read timeout before login (the `[limits]` idle timeout).
    pub idle_before_login: Duration,
    /// Read timeout once logged in and in IDLE (RFC 9051 §5.4: at least 30 minutes).
    pub idle_logged_in: Duration,
    pub users: Arc<Users>,
    /// The process's inotify watches for IDLE; `None` when inotify is unavailable (IDLE then
    /// polls every 30 seconds).
    pub watches: Option<Arc<Watches>>,
}

/// A plain or TLS connection.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Stands in while the TCP stream is in the TLS handshake: reads EOF, writes fail.
    Gone,
}

fn gone() -> std::io::Error {
    std::io::ErrorKind::NotConnected.into()
}

type Poll<T> = std::task::Poll<std::io::Result<T>>;
type Cx<'a, 'b> = &'a mut std::task::Context<'b>;

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: Cx, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<()> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => std::task::Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: Cx, buf: &[u8]) -> Poll<usize> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => std::task::Poll::Ready(Err(gone())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: Cx) -> Poll<()> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => std::task::Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: Cx) -> Poll<()> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => std::task::Poll::Ready(Ok(())),
        }
    }
}

/// One connection's moving parts.
struct Driver {
    conn: Conn<Stream>,
    /// `None` only while the session runs on a blocking thread.
    session: Option<Session>,
    ctx: Arc<Context>,
    remote: IpAddr,
    user_slot: Option<UserSlot>,
}

/// Serves one connection until LOGOUT, EOF, timeout or an error limit.
pub async fn run(
    stream: Stream,
    tls: bool,
    ctx: Arc<Context>,
    remote: IpAddr,
) -> std::io::Result<()> {
    let mut conn = Conn::new(stream, ctx.frame, ctx.idle_before_login);
    conn.parse_limits.max_depth = ctx.session.max_depth;
    let mut session = Session::new(ctx.session.clone(), tls);
    session.greeting();
    let mut d = Driver {
        conn,
        session: Some(session),
        ctx,
        remote,
        user_slot: None,
    };
    d.output();
    loop {
        let Some(step) = d.next_command().await? else {
            return Ok(());
        };
        if !d.follow(step).await? {
            return Ok(());
        }
    }
}

impl Driver {
    /// Reads and runs the next command; `None` when the connection is over (EOF, timeout).
    async fn next_command(&mut self) -> std::io::Result<Option<Step>> {
        Ok(Some(match self.conn.command().await {
            Ok(Input::Command(cmd)) => {
                tracing::debug!(command = cmd.body.name(), "command");
                self.blocking(move |s| s.handle(cmd)).await?
            }
            Ok(Input::Bad(e)) => {
                tracing::info!(
                    event = "imap.bad_syntax",
                    reason = e.reason(),
                    "bad command"
                );
                e.encode(self.conn.out());
                self.session().syntax_error()
            }
            Ok(Input::Refused(r)) => {
                tracing::info!(event = "imap.refused", reason = ?r.reason, "command refused by limits");
                r.encode(self.conn.out());
                if r.close {
                    Step::Close
                } else {
                    self.session().syntax_error()
                }
            }
            Ok(Input::Eof { .. }) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                // RFC 9051 §7.1.5: BYE before an autologout.
                self.session().bye("Autologout: idle for too long");
                self.output();
                let _ = self.conn.flush().await;
                return Ok(None);
            }
            Err(e) => return Err(e),
        }))
    }

    fn session(&mut self) -> &mut Session {
        self.session.get_or_insert_with(unreachable_session)
    }

    /// Moves the session's responses to the connection's output.
    fn output(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let out = s.take_output();
        self.conn.encoding = s.encoding();
        self.conn.out().extend_from_slice(&out);
    }

    /// Runs `f` on the session on a blocking thread (the mailstore blocks).
    async fn blocking<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Session) -> T + Send + 'static,
    ) -> std::io::Result<T> {
        let Some(mut s) = self.session.take() else {
            return Err(std::io::Error::other("session missing"));
        };
        let (s, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut s);
            (s, r)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.session = Some(s);
        self.output();
        Ok(r)
    }

    /// Carries out a step and those it leads to; false when the connection is to close.
    async fn follow(&mut self, mut step: Step) -> std::io::Result<bool> {
        loop {
            self.output();
            step = match step {
                Step::Next => return Ok(true),
                Step::Close => {
                    self.conn.flush().await?;
                    let _ = self.conn.stream_mut().shutdown().await;
                    return Ok(false);
                }
                Step::StartTls => {
                    self.start_tls().await?;
                    Step::Next
                }
                Step::Verify(creds) => self.verify(creds).await?,
                Step::AuthContinue => {
                    self.conn.send(&Response::Challenge(b""));
                    match self.conn.line(self.ctx.frame.max_line).await? {
                        Line::Complete(l) => self.session().auth_line(&l),
                        Line::TooLong => self.session().auth_line(b"*"),
                        Line::Eof => return Ok(false),
                    }
                }
                Step::Flush => {
                    self.conn.flush().await?;
                    self.blocking(|s| s.resume()).await?
                }
                Step::Idle => self.idle().await?,
            };
        }
    }

    /// RFC 9051 §6.2.1: the OK is sent, plaintext pipelined after it is dropped.
    async fn start_tls(&mut self) -> std::io::Result<()> {
        let placeholder = Conn::new(Stream::Gone, self.ctx.frame, Duration::ZERO);
        let conn = std::mem::replace(&mut self.conn, placeholder);
        let (stream, dropped) = conn.into_stream_for_tls().await?;
        if dropped > 0 {
            tracing::info!(
                event = "imap.starttls_dropped",
                octets = dropped,
                "dropped plaintext pipelined after STARTTLS"
            );
        }
        let (Stream::Plain(tcp), Some(acceptor)) = (stream, self.ctx.tls.as_ref()) else {
            return Err(std::io::Error::other("STARTTLS without TLS material"));
        };
        let tls = tokio::time::timeout(self.ctx.idle_before_login, acceptor.accept(tcp))
            .await
            .map_err(|_| crate::conn::timed_out())??;
        self.conn = Conn::new(
            Stream::Tls(Box::new(tls)),
            self.ctx.frame,
            self.ctx.idle_before_login,
        );
        self.conn.parse_limits.max_depth = self.ctx.session.max_depth;
        self.session().tls_started();
        Ok(())
    }

    /// authd's verdict, the failure delay, the per-user session limit.
    async fn verify(&mut self, creds: Credentials) -> std::io::Result<Step> {
        let outcome = match self
            .ctx
            .auth
            .verify(
                Mechanism::Plain,
                &creds.user,
                &creds.password,
                Some(self.remote),
                "imap",
            )
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(event = "imap.auth_unavailable", error = %e, "authd did not answer");
                VerifyOutcome::TempFail {
                    reason: TempReason::Internal,
                }
            }
        };
        if let VerifyOutcome::Fail { delay_ms } = outcome {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        if let VerifyOutcome::Ok { user } = &outcome {
            match self.ctx.users.take(user) {
                Some(slot) => self.user_slot = Some(slot),
                None => {
                    tracing::warn!(event = "imap.too_many_user_sessions", user = %user, "session limit per user reached");
                    return Ok(self.session().too_many_sessions());
                }
            }
        }
        let step = self.blocking(move |s| s.auth_result(outcome)).await?;
        if self.session().is_authenticated() {
            self.conn.idle = self.ctx.idle_logged_in;
        } else {
            self.user_slot = None;
        }
        Ok(step)
    }

    /// RFC 2177: `+ idling`, updates as the folder changes, until DONE.
    async fn idle(&mut self) -> std::io::Result<Step> {
        self.conn.send(&Response::Continue("idling"));
        let paths = self
            .session
            .as_ref()
            .and_then(Session::folder)
            .map(|f| f.watch_paths());
        let watches = self.ctx.watches.as_ref();
        let mut watcher = paths.zip(watches).and_then(|(p, w)| match w.subscribe(&p) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(event = "imap.inotify_failed", error = %e, "cannot watch the folder; polling");
                None
            }
        });
        self.blocking(|s| s.idle_poll()).await?;
        loop {
            self.conn.flush().await?;
            tokio::select! {
                line = self.conn.line(self.ctx.frame.max_line) => {
                    return match line? {
                        Line::Complete(l) => self.blocking(move |s| s.idle_done(&l)).await,
                        Line::TooLong => self.blocking(|s| s.idle_done(b"")).await,
                        Line::Eof => Ok(Step::Close),
                    };
                }
                _ = wait(&mut watcher) => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            self.blocking(|s| s.idle_poll()).await?;
        }
    }
}

/// How often IDLE looks at the folder without an inotify event (a missed event, an NFS
/// mount): a safety net, not the wake-up path.
const IDLE_POLL: Duration = Duration::from_secs(30);

fn unreachable_session() -> Session {
    // Only reached if a blocking task panicked; the connection is then closed by the error.
    Session::new(
        Arc::new(crate::session::Config {
            mail_root: PathBuf::new(),
            max_errors: 0,
            max_commands_before_auth: 0,
            append_limit: 0,
            max_depth: 0,
        }),
        false,
    )
}

/// Waits for a change of the watched folder (forever without a watch).
async fn wait(w: &mut Option<Subscription>) {
    match w {
        Some(s) => s.changed().await,
        None => std::future::pending().await,
    }
}

/// `* BYE` for a connection refused before its session starts.
pub fn refuse(text: &str) -> Vec<u8> {
    Response::Untagged {
        status: Untagged::Bye,
        code: None,
        text,
    }
    .to_bytes(Default::default())
}

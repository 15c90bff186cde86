//! The server side of an IMAP connection below the session: reads one complete command with
//! its literals through [`Framer`] (sending the `+` continuation when a synchronizing
//! literal is accepted, RFC 9051 §7.5), parses it, applies the idle timeout, batches
//! responses until the client's input is used up (pipelining, RFC 9051 §5.5), and gives the
//! stream back for STARTTLS with the pipelined plaintext dropped (RFC 9051 §6.2.1; the
//! CVE-2011-0411 class). What to answer a command is the session's business.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::command::Command;
use crate::frame::{Framer, Limits, Refusal, Step};
use crate::parser::{ParseError, ParseLimits, parse_command};
use crate::response::{Encoding, Response};

/// What reading a command gave.
#[derive(Debug)]
pub enum Input {
    Command(Command),
    /// A complete command that does not parse: answer with [`ParseError::encode`].
    Bad(ParseError),
    /// A command refused by the limits before it was read whole: answer with
    /// [`Refusal::encode`], and close the connection when `close` says so.
    Refused(Refusal),
    /// The client closed; `mid_command` when it left a command unfinished.
    Eof {
        mid_command: bool,
    },
}

/// What reading a raw line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The line without its CRLF or LF.
    Complete(Vec<u8>),
    /// Longer than the limit: read to its end and dropped.
    TooLong,
    Eof,
}

/// The continuation request sent before a synchronizing literal (RFC 9051 §7.5).
const CONTINUATION: &[u8] = b"+ OK\r\n";

/// Output is written out once this much is queued, even before the input is used up, so
/// that a large FETCH does not sit whole in memory.
const OUT_HIGH_WATER: usize = 256 * 1024;

/// Input buffer capacity kept between commands.
const BUF_KEEP: usize = 1024 * 1024;

pub fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "idle timeout")
}

pub struct Conn<S> {
    stream: S,
    /// Bytes read and not used yet: the command being framed, then pipelined ones.
    buf: Vec<u8>,
    /// Responses not sent yet; they go out together before the next read.
    out: Vec<u8>,
    framer: Framer,
    pub limits: Limits,
    pub parse_limits: ParseLimits,
    /// How long a read may wait (RFC 9051 §5.4: at least 30 minutes once authenticated).
    pub idle: Duration,
    /// How strings are written (UTF8=ACCEPT / IMAP4rev2 enabled or not).
    pub encoding: Encoding,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S, limits: Limits, idle: Duration) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::new(),
            out: Vec::new(),
            framer: Framer::new(),
            limits,
            parse_limits: ParseLimits::default(),
            idle,
            encoding: Encoding::default(),
        }
    }

    /// Reads the next complete command, literals included. Cancel-safe (for IDLE's
    /// `select!`): the framing state and the bytes read stay in `self`, and a continuation
    /// request whose write was cut short goes out with the next flush.
    pub async fn command(&mut self) -> std::io::Result<Input> {
        loop {
            match self.framer.advance(&self.buf, &self.limits) {
                Step::NeedMore => {
                    if self.fill().await? == 0 {
                        let mid_command = self.framer.in_command(&self.buf);
                        return Ok(Input::Eof { mid_command });
                    }
                }
                Step::SendContinuation => {
                    self.out.extend_from_slice(CONTINUATION);
                    self.flush().await?;
                }
                Step::Discard(n) => {
                    self.buf.drain(..n);
                }
                Step::Command(n) => {
                    let parsed = parse_command(&self.buf[..n], &self.parse_limits);
                    self.buf.drain(..n);
                    // A large APPEND leaves a large buffer behind: give it back.
                    if self.buf.is_empty() && self.buf.capacity() > BUF_KEEP {
                        self.buf = Vec::new();
                    }
                    return Ok(match parsed {
                        Ok(cmd) => Input::Command(cmd),
                        Err(e) => Input::Bad(e),
                    });
                }
                Step::Refuse(r) => {
                    self.buf.drain(..r.consumed);
                    return Ok(Input::Refused(r));
                }
            }
        }
    }

    /// One raw line up to LF, without its line end (an AUTHENTICATE response, RFC 9051
    /// §6.2.2, or IDLE's DONE, RFC 2177 §3), at most `max` octets. Cancel-safe except that
    /// an over-long line cut off by the cancellation is seen as a new line on the next call.
    pub async fn line(&mut self, max: usize) -> std::io::Result<Line> {
        let mut too_long = false;
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + pos;
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                if too_long || line.len() > max {
                    return Ok(Line::TooLong);
                }
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                return Ok(Line::Complete(line.to_vec()));
            }
            if self.buf.len() > max {
                too_long = true;
                self.buf.clear();
            }
            scanned = self.buf.len();
            if self.fill().await? == 0 {
                return Ok(Line::Eof);
            }
        }
    }

    /// Queues a response; it goes out at the next flush, at the latest before reading.
    pub fn send(&mut self, r: &Response) {
        r.encode(&mut self.out, self.encoding);
    }

    /// The output buffer, for encoders that write straight into it (a long FETCH); call
    /// [`Conn::flush_if_large`] between messages.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// True when the client has sent more than what was used: more pipelined commands.
    pub fn has_pending_input(&self) -> bool {
        !self.buf.is_empty()
    }

    pub async fn flush_if_large(&mut self) -> std::io::Result<()> {
        if self.out.len() >= OUT_HIGH_WATER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends everything queued. Cancel-safe: what was written is removed as it goes, so a
    /// cancelled flush never sends the same bytes twice.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        while !self.out.is_empty() {
            let n = self.stream.write(&self.out).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.out.drain(..n);
        }
        self.stream.flush().await
    }

    /// Reads more input after sending every response owed so far. 0 at EOF.
    async fn fill(&mut self) -> std::io::Result<usize> {
        self.flush().await?;
        self.buf.reserve(16 * 1024);
        tokio::time::timeout(self.idle, self.stream.read_buf(&mut self.buf))
            .await
            .map_err(|_| timed_out())?
    }

    /// After the tagged OK to STARTTLS: sends it, drops whatever the client pipelined after
    /// the command (it was sent in clear and must not be taken as sent under TLS,
    /// RFC 9051 §6.2.1, RFC 3207 §6's CVE-2011-0411 class), and gives back the stream for the
    /// handshake with the number of octets dropped, for the log.
    pub async fn into_stream_for_tls(mut self) -> std::io::Result<(S, usize)> {
        self.flush().await?;
        let dropped = self.buf.len();
        Ok((self.stream, dropped))
    }

    /// The stream, for shutdown.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use tokio::io::{AsyncReadExt, DuplexStream, ReadBuf};

    use super::*;
    use crate::command::CommandBody;
    use crate::frame::RefuseReason;
    use crate::response::Status;

    /// A stream that counts the writes that reach it.
    struct Counting {
        inner: DuplexStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    fn pair(limits: Limits) -> (DuplexStream, Conn<DuplexStream>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        (client, Conn::new(server, limits, Duration::from_secs(5)))
    }

    async fn read_exact(client: &mut DuplexStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf
    }

    fn ok(tag: &[u8]) -> Response<'_> {
        Response::Tagged {
            tag,
            status: Status::Ok,
            code: None,
            text: "done",
        }
    }

    #[tokio::test]
    async fn continuation_is_sent_before_the_literal_is_read() {
        let (mut client, mut conn) = pair(Limits::default());
        let server = tokio::spawn(async move { conn.command().await.unwrap() });
        client.write_all(b"a LOGIN {5}\r\n").await.unwrap();
        // The client sends nothing more until it has the continuation.
        assert_eq!(read_exact(&mut client, 6).await, b"+ OK\r\n");
        client.write_all(b"alice {6+}\r\nsecret\r\n").await.unwrap();
        let Input::Command(cmd) = server.await.unwrap() else {
            panic!()
        };
        assert_eq!(
            cmd.body,
            CommandBody::Login {
                user: b"alice".to_vec(),
                password: b"secret".to_vec()
            }
        );
    }

    #[tokio::test]
    async fn too_large_literal_is_refused_without_reading_it() {
        let limits = Limits {
            max_literal: 10,
            ..Limits::default()
        };
        let (mut client, mut conn) = pair(limits);
        client
            .write_all(b"a APPEND INBOX {1000}\r\n")
            .await
            .unwrap();
        let Input::Refused(r) = conn.command().await.unwrap() else {
            panic!()
        };
        assert_eq!((r.reason, r.close), (RefuseReason::LiteralTooBig, false));
        r.encode(conn.out());
        client.write_all(b"b NOOP\r\n").await.unwrap();
        let Input::Command(cmd) = conn.command().await.unwrap() else {
            panic!()
        };
        assert_eq!(cmd.tag, b"b");
        // No continuation went out: only the refusal.
        let expected = b"a NO [TOOBIG] Literal too large\r\n";
        assert_eq!(read_exact(&mut client, expected.len()).await, expected);
    }

    #[tokio::test]
    async fn too_large_non_synchronizing_literal_closes() {
        let limits = Limits {
            max_literal: 10,
            ..Limits::default()
        };
        let (mut client, mut conn) = pair(limits);
        client
            .write_all(b"a APPEND INBOX {1000+}\r\nxxxxxxxxxxxx")
            .await
            .unwrap();
        let Input::Refused(r) = conn.command().await.unwrap() else {
            panic!()
        };
        assert!(r.close);
    }

    #[tokio::test]
    async fn pipelined_responses_leave_in_one_write() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let writes = Arc::new(AtomicUsize::new(0));
        let stream = Counting {
            inner: server,
            writes: writes.clone(),
        };
        let mut conn = Conn::new(stream, Limits::default(), Duration::from_secs(5));
        let mut client = client;
        client
            .write_all(b"a NOOP\r\nb NOOP\r\nc NOOP\r\n")
            .await
            .unwrap();
        for tag in [&b"a"[..], b"b", b"c"] {
            let Input::Command(cmd) = conn.command().await.unwrap() else {
                panic!()
            };
            assert_eq!(cmd.tag, tag);
            conn.send(&ok(tag));
            assert_eq!(
                writes.load(Ordering::SeqCst),
                0,
                "nothing sent while input is pending"
            );
        }
        assert!(!conn.has_pending_input());
        let reader = tokio::spawn(async move { (read_exact(&mut client, 33).await, client) });
        // The next read finds the buffer empty: everything owed goes out first, at once.
        let next = tokio::time::timeout(Duration::from_millis(200), conn.command()).await;
        assert!(next.is_err(), "no more input");
        let (got, _client) = reader.await.unwrap();
        assert_eq!(got, b"a OK done\r\nb OK done\r\nc OK done\r\n");
        assert_eq!(writes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn starttls_drops_pipelined_plaintext() {
        let (mut client, mut conn) = pair(Limits::default());
        client
            .write_all(b"a STARTTLS\r\nb LOGIN evil injected\r\n")
            .await
            .unwrap();
        let Input::Command(cmd) = conn.command().await.unwrap() else {
            panic!()
        };
        assert_eq!(cmd.body, CommandBody::StartTls);
        conn.send(&ok(b"a"));
        let (stream, dropped) = conn.into_stream_for_tls().await.unwrap();
        assert_eq!(dropped, b"b LOGIN evil injected\r\n".len());
        assert_eq!(read_exact(&mut client, 11).await, b"a OK done\r\n");
        // The handshake would run on `stream` here; the new connection starts empty.
        let mut conn = Conn::new(stream, Limits::default(), Duration::from_secs(5));
        client.write_all(b"c NOOP\r\n").await.unwrap();
        let Input::Command(cmd) = conn.command().await.unwrap() else {
            panic!()
        };
        assert_eq!(cmd.tag, b"c");
    }

    #[tokio::test]
    async fn idle_timeout_eof_and_raw_lines() {
        let (client, mut conn) = pair(Limits::default());
        conn.idle = Duration::from_millis(50);
        let err = conn.command().await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        conn.idle = Duration::from_secs(5);
        let mut client = client;
        client.write_all(b"DONE\r\nAGpvZQ==\n").await.unwrap();
        assert_eq!(
            conn.line(100).await.unwrap(),
            Line::Complete(b"DONE".to_vec())
        );
        assert_eq!(
            conn.line(100).await.unwrap(),
            Line::Complete(b"AGpvZQ==".to_vec())
        );
        client.write_all(&[b'x'; 300]).await.unwrap();
        client.write_all(b"\r\na LOGIN {5}\r\nab").await.unwrap();
        assert_eq!(conn.line(100).await.unwrap(), Line::TooLong);
        let reader = tokio::spawn(async move {
            let got = read_exact(&mut client, 6).await;
            drop(client);
            got
        });
        let input = conn.command().await.unwrap();
        assert!(
            matches!(input, Input::Eof { mid_command: true }),
            "{input:?}"
        );
        assert_eq!(reader.await.unwrap(), b"+ OK\r\n");
    }
}

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
    Eof { mid_command: bool },
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

    /// Reads the next complete command, literals included.
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
    /// §6.2.2, or IDLE's DONE, RFC 2177 §3), at most `max` octets.
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

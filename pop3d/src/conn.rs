//! The connection below the POP3 protocol: command lines cut from the byte stream with a
//! length limit ([`Lines`], no I/O, tested byte by byte), the idle timeout, and replies batched
//! until the client's pipelined input is used up (RFC 2449 §6.6 PIPELINING) before they are
//! written ([`Conn`]). Protocol decisions stay in the session.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What the next line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A line, with its LF.
    Complete(Vec<u8>),
    /// Longer than the limit: read to its end and dropped.
    TooLong,
}

/// Lines out of a byte stream, each at most `max` octets (CRLF included).
#[derive(Debug)]
pub struct Lines {
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    start: usize,
    max: usize,
    /// The current line passed the limit: skip to its LF.
    skipping: bool,
}

impl Lines {
    pub fn new(max: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            start: 0,
            max,
            skipping: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// True when unread bytes remain (more pipelined input).
    pub fn has_pending(&self) -> bool {
        self.start < self.buf.len()
    }

    /// Drops everything not yet read (after STLS: RFC 2595 §4, CVE-2011-0411).
    pub fn discard(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.skipping = false;
    }

    /// The next complete line, or `None` when more bytes are needed.
    pub fn next_line(&mut self) -> Option<Input> {
        let unread = &self.buf[self.start..];
        match unread.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                let line = unread[..=pos].to_vec();
                self.start += pos + 1;
                if std::mem::take(&mut self.skipping) || line.len() > self.max {
                    Some(Input::TooLong)
                } else {
                    Some(Input::Complete(line))
                }
            }
            None => {
                if unread.len() > self.max {
                    // Keep memory bounded: the line is refused anyway.
                    self.skipping = true;
                    self.buf.clear();
                    self.start = 0;
                }
                None
            }
        }
    }
}

pub fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "idle timeout")
}

/// Replies are written once this much is pending even if more input is waiting, so a client
/// pipelining many RETRs does not make the server hold them all in memory.
const OUT_HIGH_WATER: usize = 256 * 1024;

pub struct Conn<S> {
    pub stream: S,
    pub lines: Lines,
    /// Bytes owed to the client, sent before the next wait for input.
    pub out: Vec<u8>,
    pub idle: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S, idle: Duration, max_line: usize) -> Conn<S> {
        Conn {
            stream,
            lines: Lines::new(max_line),
            out: Vec::with_capacity(8 * 1024),
            idle,
        }
    }

    /// The next line; `None` at EOF. Pending replies are sent before waiting for the client.
    pub async fn line(&mut self) -> std::io::Result<Option<Input>> {
        loop {
            if let Some(input) = self.lines.next_line() {
                if self.out.len() >= OUT_HIGH_WATER {
                    self.flush().await?;
                }
                return Ok(Some(input));
            }
            self.flush().await?;
            let mut chunk = [0u8; 8 * 1024];
            let n = tokio::time::timeout(self.idle, self.stream.read(&mut chunk))
                .await
                .map_err(|_| timed_out())??;
            if n == 0 {
                return Ok(None);
            }
            self.lines.push(&chunk[..n]);
        }
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            tokio::time::timeout(self.idle, self.stream.write_all(&self.out))
                .await
                .map_err(|_| timed_out())??;
            self.out.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines(chunks: &[&[u8]], max: usize) -> Vec<Input> {
        let mut lines = Lines::new(max);
        let mut out = Vec::new();
        for c in chunks {
            lines.push(c);
            while let Some(l) = lines.next_line() {
                out.push(l);
            }
        }
        out
    }

    #[test]
    fn lines_are_the_same_whole_split_and_byte_by_byte() {
        let long = format!("USER {}\r\n", "x".repeat(40));
        let input = format!("CAPA\r\n{long}NOOP\nQUIT\r\n");
        let input = input.as_bytes();
        let whole = all_lines(&[input], 20);
        assert_eq!(
            whole,
            vec![
                Input::Complete(b"CAPA\r\n".to_vec()),
                Input::TooLong,
                Input::Complete(b"NOOP\n".to_vec()),
                Input::Complete(b"QUIT\r\n".to_vec()),
            ]
        );
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(all_lines(&[a, b], 20), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(all_lines(&bytes, 20), whole);
    }

    #[tokio::test]
    async fn replies_wait_for_pipelined_input_to_be_used_up() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = Conn::new(server, Duration::from_secs(5), 100);
        client.write_all(b"A\r\nB\r\n").await.unwrap();
        assert_eq!(
            conn.line().await.unwrap(),
            Some(Input::Complete(b"A\r\n".to_vec()))
        );
        conn.out.extend_from_slice(b"+OK a\r\n");
        assert_eq!(
            conn.line().await.unwrap(),
            Some(Input::Complete(b"B\r\n".to_vec()))
        );
        conn.out.extend_from_slice(b"+OK b\r\n");
        client.shutdown().await.unwrap();
        assert_eq!(conn.line().await.unwrap(), None);
        drop(conn);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got, b"+OK a\r\n+OK b\r\n",
            "one write, after the input was used up"
        );
    }
}

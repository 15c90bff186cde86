//! The server side of an SMTP or LMTP connection below the protocol: command lines with a
//! length limit, the idle timeout, replies batched until the client's input is used up
//! (PIPELINING, RFC 2920 §3.2), DATA through [`DataReceiver`], and BDAT chunks. The protocol
//! decisions stay in each daemon's session.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{DataReceiver, MAX_COMMAND_LINE, Reply};

/// What reading a command line gave.
pub enum Input {
    Complete(Vec<u8>),
    /// Longer than [`MAX_COMMAND_LINE`]: read to its end and dropped.
    TooLong,
    Eof,
}

pub fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "idle timeout")
}

pub struct Conn<S> {
    pub stream: S,
    /// Bytes read and not yet used (pipelined commands).
    buf: Vec<u8>,
    /// Replies not yet sent: they go out together before the next read, instead of one
    /// small packet per reply.
    out: Vec<u8>,
    pub idle: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S, idle: Duration) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::new(),
            out: Vec::new(),
            idle,
        }
    }

    /// Drops what the client sent but was not read yet (after STARTTLS: RFC 3207 §5).
    pub fn discard_input(&mut self) {
        self.buf.clear();
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        // Before waiting for the client, it must have every reply owed so far.
        self.flush().await?;
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(self.idle, self.stream.read(&mut chunk))
            .await
            .map_err(|_| timed_out())??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One line up to LF, at most [`MAX_COMMAND_LINE`] bytes.
    pub async fn line(&mut self) -> std::io::Result<Input> {
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

    /// Queues a reply; it is sent at the next [`Conn::flush`] (at the latest before reading).
    pub fn write(&mut self, reply: &Reply) {
        self.out.extend_from_slice(&reply.to_bytes());
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// The message after 354, up to `<CRLF>.<CRLF>`; `None` at EOF.
    pub async fn receive_data(&mut self, max_size: u64) -> std::io::Result<Option<DataReceiver>> {
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

    /// Exactly `size` octets (a BDAT chunk); `None` at EOF.
    pub async fn receive_chunk(&mut self, size: usize) -> std::io::Result<Option<Vec<u8>>> {
        while self.buf.len() < size {
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
        Ok(Some(self.buf.drain(..size).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pipelined_lines_long_lines_and_data() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut conn = Conn::new(server, Duration::from_secs(5));
        let mut client = client;
        let long = "x".repeat(MAX_COMMAND_LINE + 10);
        let input = format!("NOOP\r\n{long}\r\nDATA\r\nhi\r\n.\r\nBDAT\r\nabc");
        client.write_all(input.as_bytes()).await.unwrap();
        drop(client);
        assert!(matches!(conn.line().await.unwrap(), Input::Complete(l) if l == b"NOOP\r\n"));
        assert!(matches!(conn.line().await.unwrap(), Input::TooLong));
        assert!(matches!(conn.line().await.unwrap(), Input::Complete(l) if l == b"DATA\r\n"));
        let data = conn.receive_data(100).await.unwrap().unwrap();
        assert_eq!(data.finish().unwrap(), b"hi\n");
        assert!(matches!(conn.line().await.unwrap(), Input::Complete(l) if l == b"BDAT\r\n"));
        assert_eq!(conn.receive_chunk(3).await.unwrap().unwrap(), b"abc");
        assert!(matches!(conn.line().await.unwrap(), Input::Eof));
    }
}

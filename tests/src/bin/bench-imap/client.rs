//! The benchmark's own IMAP client over TLS (tokio + rustls): connect, send a tagged command,
//! read its responses (literals included) up to the tagged status. Accepts any server
//! certificate: it only talks to servers the benchmark started on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

pub const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// The benchmark's TLS client (accepts the servers' self-signed certificates).
pub fn config() -> Arc<rustls::ClientConfig> {
    harness::bench::tls_client_config()
}

/// The untagged responses of one command (literals inlined).
pub struct Reply {
    pub untagged: Vec<Vec<u8>>,
}

pub struct Imap {
    s: BufReader<tokio_rustls::client::TlsStream<TcpStream>>,
    tag: u32,
}

impl Imap {
    /// Connects from `source` (a loopback address, port chosen by the kernel) when given,
    /// does the TLS handshake and reads the greeting.
    pub async fn connect(
        addr: SocketAddr,
        source: Option<std::net::IpAddr>,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Imap> {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("mail.example.test")?.to_owned();
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        let mut me = Imap {
            s: BufReader::with_capacity(4096, stream),
            tag: 0,
        };
        let greeting = me.line().await?;
        anyhow::ensure!(greeting.starts_with(b"* OK"), "greeting {greeting:?}");
        Ok(me)
    }

    async fn raw_line(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(REPLY_TIMEOUT, self.s.read_until(b'\n', &mut buf))
            .await
            .context("reply timeout")??;
        if n == 0 {
            bail!("connection closed");
        }
        Ok(buf)
    }

    /// One response line with its literals ({n}\r\n + n octets) inlined.
    pub async fn line(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut out = self.raw_line().await?;
        while let Some(n) = literal_len(&out) {
            let mut lit = vec![0; n];
            tokio::time::timeout(REPLY_TIMEOUT, self.s.read_exact(&mut lit))
                .await
                .context("literal timeout")??;
            out.extend_from_slice(&lit);
            out.extend_from_slice(&self.raw_line().await?);
        }
        Ok(out)
    }

    pub async fn send(&mut self, text: &str) -> anyhow::Result<String> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        let w = self.s.get_mut();
        w.write_all(format!("{tag} {text}\r\n").as_bytes()).await?;
        w.flush().await?;
        Ok(tag)
    }

    /// Sends `text` and reads up to its tagged OK (anything else is an error).
    pub async fn command(&mut self, text: &str) -> anyhow::Result<Reply> {
        let tag = self.send(text).await?;
        self.until_tagged(&tag, text).await
    }

    pub async fn until_tagged(&mut self, tag: &str, text: &str) -> anyhow::Result<Reply> {
        let mut untagged = Vec::new();
        loop {
            let l = self.line().await?;
            if l.starts_with(tag.as_bytes()) && l.get(tag.len()) == Some(&b' ') {
                if !l[tag.len() + 1..].starts_with(b"OK") {
                    bail!("{text:?} answered {:?}", String::from_utf8_lossy(&l));
                }
                return Ok(Reply { untagged });
            }
            untagged.push(l);
        }
    }

    /// LOGIN then SELECT INBOX; returns the EXISTS count.
    pub async fn login_select(&mut self, user: &str, password: &str) -> anyhow::Result<usize> {
        self.command(&format!("LOGIN \"{user}\" \"{password}\""))
            .await?;
        let r = self.command("SELECT INBOX").await?;
        r.untagged
            .iter()
            .find_map(|l| exists(l))
            .context("SELECT gave no EXISTS")
    }
}

fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = std::str::from_utf8(&body[open + 1..]).ok()?;
    digits.trim_end_matches('+').parse().ok()
}

/// N of a `* N EXISTS` line.
pub fn exists(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("* ")?;
    let (n, word) = rest.trim_end().split_once(' ')?;
    (word == "EXISTS").then(|| n.parse().ok()).flatten()
}

/// The UIDs of a `* SEARCH` response.
pub fn search_count(r: &Reply) -> usize {
    r.untagged
        .iter()
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter_map(|l| l.strip_prefix("* SEARCH"))
        .map(|rest| rest.split_whitespace().count())
        .sum()
}

//! One outbound SMTP connection over TCP and TLS: greeting, EHLO (HELO fallback), STARTTLS
//! or implicit TLS, AUTH PLAIN/LOGIN at a relay (RFC 4954), then transactions driven through
//! the sans-IO core of `client.rs`, each wait bounded by the RFC 5321 §4.5.3.2 timeouts.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::ServerName;
use shared::daemon::AnyStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::client::{Capabilities, Reply, ReplyParser, Step, Transaction};
use super::route::Hop;

/// Chunk of the message written under one `data_timeout` (RFC 5321 §4.5.3.2.5: the timeout
/// is per TCP SEND).
const DATA_CHUNK: usize = 64 * 1024;

/// The timeouts of RFC 5321 §4.5.3.2, from `[outbound]`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
    pub data: Duration,
    pub final_reply: Duration,
}

/// What TLS a connection must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS when offered (any certificate), plain text otherwise (RFC 7435).
    Opportunistic,
    /// No STARTTLS: the second try after an opportunistic handshake failed.
    Plain,
    /// STARTTLS required; `verify`: the certificate must be valid for the host name.
    Required { verify: bool },
    /// TLS from the first byte (port 465, RFC 8314 §3.3).
    Implicit { verify: bool },
}

/// Credentials for AUTH at a relay.
#[derive(Clone)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// How to open a connection.
pub struct Dial<'a> {
    pub hostname: &'a str,
    pub timeouts: Timeouts,
    pub tls: TlsMode,
    pub login: Option<&'a Login>,
    pub verify_config: Arc<rustls::ClientConfig>,
    pub any_config: Arc<rustls::ClientConfig>,
}

/// An open connection, greeted and ready for a transaction.
pub struct Peer {
    stream: AnyStream,
    parser: ReplyParser,
    pub caps: Capabilities,
    pub hop: Hop,
    pub tls: bool,
    timeouts: Timeouts,
}

/// A connection-level failure: always temporary (try another host, or later).
#[derive(Debug)]
pub struct PeerError {
    pub text: String,
    /// The TLS handshake failed (under `Opportunistic`, worth a retry in plain text).
    pub tls_failed: bool,
}

fn temporary(text: impl Into<String>) -> PeerError {
    PeerError {
        text: text.into(),
        tls_failed: false,
    }
}

impl Peer {
    async fn read_reply(&mut self, wait: Duration) -> Result<Reply, PeerError> {
        let mut buf = [0u8; 8192];
        loop {
            match self.parser.next_reply() {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => {
                    return Err(temporary(format!(
                        "bad reply from {}: {e:?}",
                        self.hop.name
                    )));
                }
            }
            let n = tokio::time::timeout(wait, self.stream.read(&mut buf))
                .await
                .map_err(|_| {
                    temporary(format!("{} did not answer within {wait:?}", self.hop.name))
                })?
                .map_err(|e| temporary(format!("reading from {}: {e}", self.hop.name)))?;
            if n == 0 {
                return Err(temporary(format!(
                    "{} closed the connection",
                    self.hop.name
                )));
            }
            self.parser.feed(&buf[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8], wait: Duration) -> Result<(), PeerError> {
        for chunk in bytes.chunks(DATA_CHUNK) {
            tokio::time::timeout(wait, self.stream.write_all(chunk))
                .await
                .map_err(|_| temporary(format!("sending to {} timed out", self.hop.name)))?
                .map_err(|e| temporary(format!("sending to {}: {e}", self.hop.name)))?;
        }
        tokio::time::timeout(wait, self.stream.flush())
            .await
            .map_err(|_| temporary(format!("sending to {} timed out", self.hop.name)))?
            .map_err(|e| temporary(format!("sending to {}: {e}", self.hop.name)))
    }

    /// Sends a command and reads its reply.
    async fn command(&mut self, line: &str) -> Result<Reply, PeerError> {
        self.write(line.as_bytes(), self.timeouts.command).await?;
        self.read_reply(self.timeouts.command).await
    }

    /// One transaction; the (code, text) per recipient, in the order of `rcpts`. `wire` is
    /// the message, CRLF and dot-stuffed, with its end marker.
    pub async fn send_mail(
        &mut self,
        mail: String,
        rcpts: Vec<String>,
        wire: &[u8],
    ) -> Result<Vec<Reply>, PeerError> {
        let mut tx = Transaction::new(mail, rcpts, self.caps.pipelining);
        let mut step = tx.start();
        loop {
            let wait = match step {
                Step::Send(bytes) => {
                    self.write(&bytes, self.timeouts.command).await?;
                    self.timeouts.command
                }
                Step::SendBody => {
                    self.write(wire, self.timeouts.data).await?;
                    self.timeouts.final_reply
                }
                Step::Wait => self.timeouts.command,
                Step::Done { results, reset } => {
                    if reset {
                        self.command("RSET\r\n").await?;
                    }
                    return Ok(results);
                }
            };
            let reply = self.read_reply(wait).await?;
            step = tx.on_reply(reply);
        }
    }

    /// Whether an idle connection still answers (before reusing it).
    pub async fn alive(&mut self) -> bool {
        matches!(self.command("RSET\r\n").await, Ok(r) if r.code == 250)
    }

    pub async fn quit(mut self) {
        let _ = self.write(b"QUIT\r\n", Duration::from_secs(5)).await;
        let _ = self.read_reply(Duration::from_secs(5)).await;
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, PeerError> {
    ServerName::try_from(host.to_string())
        .map_err(|_| temporary(format!("{host:?} is not a TLS server name")))
}

async fn handshake(
    stream: AnyStream,
    dial: &Dial<'_>,
    hop: &Hop,
    verify: bool,
) -> Result<AnyStream, PeerError> {
    let config = if verify {
        dial.verify_config.clone()
    } else {
        dial.any_config.clone()
    };
    let connector = TlsConnector::from(config);
    let name = server_name(&hop.name)?;
    let tls = tokio::time::timeout(dial.timeouts.command, connector.connect(name, stream))
        .await
        .map_err(|_| temporary(format!("TLS handshake with {} timed out", hop.name)))?
        .map_err(|e| PeerError {
            text: format!("TLS handshake with {} failed: {e}", hop.name),
            tls_failed: true,
        })?;
    Ok(Box::new(tls))
}

/// Connects, reads the greeting, says EHLO, sets up TLS and authenticates as `dial` says.
pub async fn connect(dial: &Dial<'_>, hop: &Hop) -> Result<Peer, PeerError> {
    let mut stream = open_tcp(dial, hop).await?;
    let mut implicit = false;
    if let TlsMode::Implicit { verify } = dial.tls {
        stream = handshake(stream, dial, hop, verify).await?;
        implicit = true;
    }
    let mut peer = Peer {
        stream,
        parser: ReplyParser::default(),
        caps: Capabilities::default(),
        hop: hop.clone(),
        tls: implicit,
        timeouts: dial.timeouts,
    };
    let greeting = peer.read_reply(dial.timeouts.command).await?;
    if greeting.code != 220 {
        return Err(temporary(format!(
            "{} greeted with {}",
            hop.name,
            greeting.summary()
        )));
    }
    hello(&mut peer, dial.hostname).await?;
    if !peer.tls {
        start_tls(&mut peer, dial).await?;
    }
    if let Some(login) = dial.login {
        authenticate(&mut peer, login).await?;
    }
    Ok(peer)
}

async fn open_tcp(dial: &Dial<'_>, hop: &Hop) -> Result<AnyStream, PeerError> {
    let tcp = tokio::time::timeout(
        dial.timeouts.connect,
        tokio::net::TcpStream::connect(hop.addr),
    )
    .await
    .map_err(|_| {
        temporary(format!(
            "connecting to {} ({}) timed out",
            hop.name, hop.addr
        ))
    })?
    .map_err(|e| temporary(format!("connecting to {} ({}): {e}", hop.name, hop.addr)))?;
    let _ = tcp.set_nodelay(true);
    Ok(Box::new(tcp))
}

/// EHLO, or HELO when EHLO is refused (RFC 5321 §3.2).
async fn hello(peer: &mut Peer, hostname: &str) -> Result<(), PeerError> {
    let ehlo = peer.command(&format!("EHLO {hostname}\r\n")).await?;
    if ehlo.code == 250 {
        peer.caps = Capabilities::parse(&ehlo);
        return Ok(());
    }
    let helo = peer.command(&format!("HELO {hostname}\r\n")).await?;
    if helo.code != 250 {
        return Err(temporary(format!(
            "{} refused HELO: {}",
            peer.hop.name,
            helo.summary()
        )));
    }
    peer.caps = Capabilities::default();
    Ok(())
}

/// STARTTLS (RFC 3207) as the mode requires; after it, EHLO again (§4.2).
async fn start_tls(peer: &mut Peer, dial: &Dial<'_>) -> Result<(), PeerError> {
    let opportunistic = dial.tls == TlsMode::Opportunistic;
    let verify = match dial.tls {
        TlsMode::Plain => return Ok(()),
        TlsMode::Opportunistic if !peer.caps.starttls => return Ok(()),
        TlsMode::Opportunistic => false,
        TlsMode::Required { verify } | TlsMode::Implicit { verify } => verify,
    };
    if !peer.caps.starttls {
        return Err(temporary(format!(
            "{} does not offer STARTTLS, which is required",
            peer.hop.name
        )));
    }
    let reply = peer.command("STARTTLS\r\n").await?;
    if reply.code != 220 && opportunistic {
        // RFC 3207 §4: the session goes on; opportunistic TLS accepts plain text.
        return Ok(());
    }
    if reply.code != 220 {
        return Err(temporary(format!(
            "{} refused STARTTLS: {}",
            peer.hop.name,
            reply.summary()
        )));
    }
    // Nothing the server sent before the handshake may be taken as a reply after it.
    peer.parser = ReplyParser::default();
    let plain = std::mem::replace(&mut peer.stream, Box::new(tokio::io::empty()) as AnyStream);
    peer.stream = handshake(plain, dial, &peer.hop, verify).await?;
    peer.tls = true;
    hello(peer, dial.hostname).await
}

/// AUTH PLAIN, else LOGIN (RFC 4954, RFC 4616); never over plain text.
async fn authenticate(peer: &mut Peer, login: &Login) -> Result<(), PeerError> {
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    if !peer.tls {
        return Err(temporary(format!(
            "not sending credentials to {} without TLS",
            peer.hop.name
        )));
    }
    let reply = if peer.caps.auth_plain {
        let token = b64(format!("\0{}\0{}", login.username, login.password).as_bytes());
        peer.command(&format!("AUTH PLAIN {token}\r\n")).await?
    } else if peer.caps.auth_login {
        let first = peer.command("AUTH LOGIN\r\n").await?;
        let user = if first.code == 334 {
            peer.command(&format!("{}\r\n", b64(login.username.as_bytes())))
                .await?
        } else {
            first
        };
        if user.code == 334 {
            peer.command(&format!("{}\r\n", b64(login.password.as_bytes())))
                .await?
        } else {
            user
        }
    } else {
        return Err(temporary(format!(
            "{} offers neither AUTH PLAIN nor LOGIN",
            peer.hop.name
        )));
    };
    if reply.code != 235 {
        // A refused password defers (the administrator can fix it) rather than bounce.
        return Err(temporary(format!(
            "authentication as {:?} at {} failed: {}",
            login.username,
            peer.hop.name,
            reply.summary()
        )));
    }
    Ok(())
}

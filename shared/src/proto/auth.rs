//! The auth protocol (ARCHITECTURE §3) on `runtime_dir/auth.sock`, served by authd: everything
//! both ends need, and the client the daemons call. Newline-delimited JSON frames; each side's
//! first frame is a [`Hello`]; each reply echoes its request's `id`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

pub const SERVICE: &str = "postern-auth";
/// A different major version cannot talk to us at all.
pub const VERSION_MAJOR: u32 = 1;
/// Informational (logged on a mismatch). Frames are strict on both sides
/// (`deny_unknown_fields`), so any change to a frame's fields bumps [`VERSION_MAJOR`]; the
/// supervisor refuses to start children of another version anyway.
pub const VERSION_MINOR: u32 = 0;
/// Longest frame either side accepts, newline included. A larger one closes the connection.
pub const MAX_FRAME: usize = 16 * 1024;
/// How long a client waits for any reply; a verification may include a throttle delay.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// This protocol, for its [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthProtocol;

impl super::Protocol for AuthProtocol {
    const SERVICE: &'static str = SERVICE;
    const NAME: &'static str = "auth";
    const MAJOR: u32 = VERSION_MAJOR;
    const MINOR: u32 = VERSION_MINOR;
}

/// The first frame of each side ([`super::Hello`]).
pub type Hello = super::Hello<AuthProtocol>;

/// The SASL mechanism the client used; informational (logs), the secret is already decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    Plain,
    Login,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Verify a user name and password for a service ("smtp", "imap", "pop3") and remote IP.
    Verify {
        id: u64,
        mechanism: Mechanism,
        username: String,
        secret: String,
        remote_ip: Option<IpAddr>,
        service: String,
    },
    /// What a recipient address is.
    Lookup { id: u64, address: String },
    /// The users of a local domain.
    ListUsers { id: u64, domain: String },
    /// The addresses a user may send as (its own and its aliases).
    SenderAddresses { id: u64, user: String },
}

impl Request {
    pub fn id(&self) -> u64 {
        match self {
            Request::Verify { id, .. }
            | Request::Lookup { id, .. }
            | Request::ListUsers { id, .. }
            | Request::SenderAddresses { id, .. } => *id,
        }
    }
}

/// The outcome of a verification: not a yes/no (STYLE §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerifyOutcome {
    /// The canonical user address (as in the users file).
    Ok { user: String },
    /// Wrong user or password (never says which). The caller waits `delay_ms` before replying.
    Fail { delay_ms: u64 },
    /// Throttled or internal trouble: the client should try again later.
    TempFail { reason: TempReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TempReason {
    Throttled,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Recipient {
    Mailbox { address: String },
    Alias { targets: Vec<String> },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Verify {
        id: u64,
        outcome: VerifyOutcome,
    },
    Lookup {
        id: u64,
        recipient: Recipient,
    },
    ListUsers {
        id: u64,
        users: Vec<String>,
    },
    SenderAddresses {
        id: u64,
        addresses: Vec<String>,
    },
    /// The request was understood but could not be answered.
    Error {
        id: u64,
        message: String,
    },
}

impl Response {
    pub fn id(&self) -> u64 {
        match self {
            Response::Verify { id, .. }
            | Response::Lookup { id, .. }
            | Response::ListUsers { id, .. }
            | Response::SenderAddresses { id, .. }
            | Response::Error { id, .. } => *id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("auth socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("auth connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("auth protocol: {0}")]
    Protocol(String),
    #[error("authd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("authd: {0}")]
    Server(String),
}

/// Serializes one frame, newline-terminated.
pub fn encode<T: Serialize>(frame: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail; an empty object keeps the peer's parser
    // on a clear error path if it ever did.
    let mut bytes = serde_json::to_vec(frame).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    bytes
}

/// Reads one newline-terminated frame of at most [`MAX_FRAME`] bytes. `Ok(None)` at clean EOF.
pub async fn read_frame<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut limited = tokio::io::AsyncReadExt::take(reader, MAX_FRAME as u64);
    let n = limited.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        let what = if n >= MAX_FRAME {
            format!("frame longer than {MAX_FRAME} bytes")
        } else {
            "connection closed inside a frame".into()
        };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
    }
    line.pop();
    Ok(Some(line))
}

struct Connection {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Connection {
    async fn open(path: &Path) -> Result<Connection, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let (r, writer) = stream.into_split();
        let mut conn = Connection {
            reader: BufReader::new(r),
            writer,
        };
        conn.writer.write_all(&encode(&Hello::ours())).await?;
        let frame = conn.read().await?;
        let hello: Hello = serde_json::from_slice(&frame)
            .map_err(|e| ClientError::Protocol(format!("bad hello from authd: {e}")))?;
        hello.check().map_err(ClientError::Protocol)?;
        Ok(conn)
    }

    async fn read(&mut self) -> Result<Vec<u8>, ClientError> {
        match read_frame(&mut self.reader).await? {
            Some(frame) => Ok(frame),
            None => Err(ClientError::Protocol("authd closed the connection".into())),
        }
    }

    async fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.writer.write_all(&encode(request)).await?;
        let frame = self.read().await?;
        let response: Response = serde_json::from_slice(&frame)
            .map_err(|e| ClientError::Protocol(format!("bad reply from authd: {e}")))?;
        if response.id() != request.id() {
            return Err(ClientError::Protocol(format!(
                "reply for request {} while waiting for {}",
                response.id(),
                request.id()
            )));
        }
        if let Response::Error { message, .. } = response {
            return Err(ClientError::Server(message));
        }
        Ok(response)
    }
}

/// The client the daemons use: a small pool of connections, so slow verifications of one
/// session do not hold up the lookups of others. Cheap to share behind an `Arc`.
pub struct AuthClient {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Idle connections kept open for reuse.
const POOL_IDLE_MAX: usize = 8;

impl AuthClient {
    pub fn new(path: impl Into<PathBuf>) -> AuthClient {
        AuthClient {
            path: path.into(),
            idle: Mutex::new(Vec::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends `make(id)` and returns the reply. A pooled connection that turns out dead is
    /// replaced once by a fresh one.
    async fn call(&self, make: impl Fn(u64) -> Request) -> Result<Response, ClientError> {
        let request = make(self.id());
        let pooled = self.idle.lock().await.pop();
        let attempt = async {
            if let Some(mut conn) = pooled
                && let Ok(r) = conn.call(&request).await
            {
                return Ok((conn, r));
            }
            let mut conn = Connection::open(&self.path).await?;
            let r = conn.call(&request).await?;
            Ok::<_, ClientError>((conn, r))
        };
        let (conn, response) = tokio::time::timeout(CLIENT_TIMEOUT, attempt)
            .await
            .map_err(|_| ClientError::Timeout(CLIENT_TIMEOUT))??;
        let mut idle = self.idle.lock().await;
        if idle.len() < POOL_IDLE_MAX {
            idle.push(conn);
        }
        Ok(response)
    }

    pub async fn verify(
        &self,
        mechanism: Mechanism,
        username: &str,
        secret: &str,
        remote_ip: Option<IpAddr>,
        service: &str,
    ) -> Result<VerifyOutcome, ClientError> {
        let response = self
            .call(|id| Request::Verify {
                id,
                mechanism,
                username: username.into(),
                secret: secret.into(),
                remote_ip,
                service: service.into(),
            })
            .await?;
        match response {
            Response::Verify { outcome, .. } => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn lookup(&self, address: &str) -> Result<Recipient, ClientError> {
        match self
            .call(|id| Request::Lookup {
                id,
                address: address.into(),
            })
            .await?
        {
            Response::Lookup { recipient, .. } => Ok(recipient),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn list_users(&self, domain: &str) -> Result<Vec<String>, ClientError> {
        match self
            .call(|id| Request::ListUsers {
                id,
                domain: domain.into(),
            })
            .await?
        {
            Response::ListUsers { users, .. } => Ok(users),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn sender_addresses(&self, user: &str) -> Result<Vec<String>, ClientError> {
        match self
            .call(|id| Request::SenderAddresses {
                id,
                user: user.into(),
            })
            .await?
        {
            Response::SenderAddresses { addresses, .. } => Ok(addresses),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(response: &Response) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {response:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_unknown_fields() {
        let r = Request::Lookup {
            id: 7,
            address: "a@b".into(),
        };
        let bytes = encode(&r);
        assert_eq!(bytes.last(), Some(&b'\n'));
        let back: Request = serde_json::from_slice(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(back, r);
        let extra = br#"{"op":"lookup","id":1,"address":"a@b","evil":1}"#;
        assert!(serde_json::from_slice::<Request>(extra).is_err());
        let v = Response::Verify {
            id: 1,
            outcome: VerifyOutcome::Fail { delay_ms: 10 },
        };
        let text = String::from_utf8(encode(&v)).unwrap();
        assert_eq!(
            text,
            "{\"op\":\"verify\",\"id\":1,\"outcome\":{\"result\":\"fail\",\"delay_ms\":10}}\n"
        );
    }

    #[test]
    fn hello_mismatch_names_both_versions() {
        let mut h = Hello::ours();
        assert!(h.check().is_ok());
        h.version = 2;
        let e = h.check().unwrap_err();
        assert!(
            e.contains("2.0") && e.contains("1.0") && e.contains("mixed"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn read_frame_limits_size() {
        let big = vec![b'x'; MAX_FRAME + 10];
        let mut r = tokio::io::BufReader::new(&big[..]);
        assert!(read_frame(&mut r).await.is_err());
        let mut r = tokio::io::BufReader::new(&b"{}\n{}"[..]);
        assert_eq!(read_frame(&mut r).await.unwrap(), Some(b"{}".to_vec()));
        assert!(read_frame(&mut r).await.is_err());
        let mut r = tokio::io::BufReader::new(&b""[..]);
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
    }
}

//! The queue-control protocol on `runtime_dir/queue.sock` (created by the supervisor, served by
//! postern-mta, used by `postern queue`): newline-delimited JSON frames, each side's first
//! frame a [`Hello`], each reply echoing its request's `id`. Frames only; no I/O here beyond
//! the framing helpers shared with the auth protocol.

use serde::{Deserialize, Serialize};

pub use super::auth::{encode, read_frame};

pub const SERVICE: &str = "postern-queue";
/// Any change to a frame's fields bumps this (frames are `deny_unknown_fields`).
pub const VERSION_MAJOR: u32 = 1;
pub const VERSION_MINOR: u32 = 0;
/// Longest reply frame the client accepts (a `list` of a large queue is one frame).
pub const MAX_REPLY: usize = 64 * 1024 * 1024;

/// This protocol, for its [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueProtocol;

impl super::Protocol for QueueProtocol {
    const SERVICE: &'static str = SERVICE;
    const NAME: &'static str = "queue";
    const MAJOR: u32 = VERSION_MAJOR;
    const MINOR: u32 = VERSION_MINOR;
}

/// The first frame of each side ([`super::Hello`]).
pub type Hello = super::Hello<QueueProtocol>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Every queued message.
    List { id: u64 },
    /// One message's envelope and header section.
    Show { id: u64, queue_id: String },
    /// Every waiting message is due now.
    Flush { id: u64 },
    /// One waiting message is due now.
    Retry { id: u64, queue_id: String },
    /// Remove a message; it is never delivered.
    Delete { id: u64, queue_id: String },
}

impl Request {
    pub fn id(&self) -> u64 {
        match self {
            Request::List { id }
            | Request::Flush { id }
            | Request::Show { id, .. }
            | Request::Retry { id, .. }
            | Request::Delete { id, .. } => *id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    List {
        id: u64,
        messages: Vec<Entry>,
    },
    Show {
        id: u64,
        message: Entry,
        headers: String,
    },
    /// `count` messages made due (flush: all waiting ones; retry: 1).
    Scheduled {
        id: u64,
        count: u32,
    },
    Deleted {
        id: u64,
    },
    /// No such message, a malformed request, or a failure; `message` says which.
    Error {
        id: u64,
        message: String,
    },
}

/// One queued message as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub queue_id: String,
    /// Bytes of the queue file.
    pub size: u64,
    /// Seconds since the epoch.
    pub arrived: u64,
    pub sender: String,
    pub attempts: u32,
    /// Why the last attempt left recipients waiting.
    pub last_error: Option<String>,
    /// Seconds since the epoch of the next attempt when one is scheduled; `None` while an
    /// attempt runs or when the MTA is not running.
    pub next_attempt: Option<u64>,
    /// The envelope's recipients, in order.
    pub recipients: Vec<RcptEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RcptEntry {
    pub address: String,
    /// "pending", "delivered" or "failed".
    pub state: String,
    /// The reply of a failed recipient.
    pub reply: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_unknown_fields() {
        let r = Request::Retry {
            id: 7,
            queue_id: "ABC".into(),
        };
        let bytes = encode(&r);
        assert_eq!(bytes.last(), Some(&b'\n'));
        let back: Request = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.id(), 7);
        let extra = br#"{"op":"list","id":1,"all":true}"#;
        assert!(serde_json::from_slice::<Request>(extra).is_err());
        let unknown = br#"{"op":"purge","id":1}"#;
        assert!(serde_json::from_slice::<Request>(unknown).is_err());
    }

    #[test]
    fn hello_checks_service_and_major_version() {
        assert!(Hello::ours().check().is_ok());
        let mut other = Hello::ours();
        other.version += 1;
        assert!(other.check().unwrap_err().contains("queue protocol"));
        other = Hello::ours();
        other.service = "postern-auth".into();
        assert!(other.check().is_err());
    }
}

//! The durable queue in `state_dir/queue` (ARCHITECTURE §6, durability rule). A message is one
//! file `<id>.msg`: a JSON line with the envelope, then the message with its Received: header
//! (LF line ends). It is written to `.<id>.msg.tmp`, fsynced, renamed into place, and the directory is
//! fsynced: only then may the 250 be sent. Delivery progress lives in `<id>.status`, replaced
//! atomically the same way. Blocking file I/O: called on blocking threads.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use shared::groupsync::DirSync;

use crate::session::{Envelope, Message};

/// The first line of a queue file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub id: String,
    pub envelope: Envelope,
    pub received: String,
    pub auth_user: Option<String>,
}

/// Where each recipient stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RcptState {
    Pending,
    Delivered,
    /// A permanent failure (kept for the bounce work of the outbound issue).
    Failed {
        reply: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Same order as the envelope's recipients.
    pub recipients: Vec<RcptState>,
    pub attempts: u32,
}

pub struct Queue {
    dir: PathBuf,
    hostname: String,
    counter: AtomicU64,
    /// Concurrent sessions share the directory fsync (group commit); each still waits for a
    /// sync that started after its own rename.
    dir_sync: DirSync,
}

impl Queue {
    /// Opens the queue directory (made by the supervisor) and removes the `.tmp` files a crash
    /// left half-written: nothing in there was ever acknowledged.
    pub fn open(dir: &Path, hostname: &str) -> std::io::Result<Queue> {
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Queue {
            dir: dir.to_path_buf(),
            hostname: hostname.to_string(),
            counter: AtomicU64::new(rand::random::<u32>() as u64),
            dir_sync: DirSync::new(dir),
        })
    }

    fn new_id(&self) -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let n = self.counter.fetch_add(1, Ordering::Relaxed) & 0xFFFFFF;
        format!("{secs:X}{:05X}{n:06X}", std::process::id() & 0xFFFFF)
    }

    fn msg_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    fn status_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.status"))
    }

    /// Stores a message durably and returns its queue id. When this returns Ok the message
    /// survives a crash (file and directory fsynced).
    pub fn store(&self, message: &Message, date: &str) -> std::io::Result<String> {
        let id = self.new_id();
        let stored = Stored {
            id: id.clone(),
            envelope: message.envelope.clone(),
            received: date.to_string(),
            auth_user: message.trace.user.clone(),
        };
        let mut header = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        header.push(b'\n');
        let received = received_header(message, &self.hostname, &id, date);
        write_atomic(
            &self.dir,
            &self.dir_sync,
            &self.msg_path(&id),
            &[&header, received.as_bytes(), &message.body],
        )?;
        Ok(id)
    }

    /// Ids of every queued message.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".msg")
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The envelope, the message, and the delivery status of a queued message.
    pub fn load(&self, id: &str) -> std::io::Result<(Stored, Vec<u8>, Status)> {
        let mut reader = BufReader::new(File::open(self.msg_path(id))?);
        let mut first = String::new();
        reader.read_line(&mut first)?;
        let stored: Stored = serde_json::from_str(&first).map_err(std::io::Error::other)?;
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        let status = match std::fs::read(self.status_path(id)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Status {
                recipients: vec![RcptState::Pending; stored.envelope.recipients.len()],
                attempts: 0,
            },
            Err(e) => return Err(e),
        };
        Ok((stored, body, status))
    }

    pub fn save_status(&self, id: &str, status: &Status) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(status).map_err(std::io::Error::other)?;
        write_atomic(&self.dir, &self.dir_sync, &self.status_path(id), &[&bytes])
    }

    /// Forgets a message whose every recipient is done.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        let _ = std::fs::remove_file(self.status_path(id));
        std::fs::remove_file(self.msg_path(id))?;
        // Not needed for the promise (a resurrected file means one duplicate delivery), but
        // it keeps a crash from delivering twice.
        self.dir_sync.sync()
    }
}

/// RFC 5321 §4.4, with the TLS details in a comment as Postfix writes them.
fn received_header(message: &Message, hostname: &str, id: &str, date: &str) -> String {
    let t = &message.trace;
    let mut h = format!(
        "Received: from {} ([{}])\n\tby {hostname} (Postern)",
        sanitize(&t.helo),
        t.remote
    );
    if let Some(tls) = &t.tls {
        h.push_str(&format!("\n\t(using {tls})"));
    }
    h.push_str(&format!(" with {} id {id}", t.protocol()));
    if let [only] = message.envelope.recipients.as_slice() {
        h.push_str(&format!("\n\tfor <{}>", sanitize(&only.address)));
    }
    h.push_str(&format!(";\n\t{date}\n"));
    h
}

/// Client-supplied text in a header: no line breaks, no parentheses that would end a comment.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c == '(' || c == ')' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// tmp file, fsync, rename over `path`, fsync of `dir` (shared with concurrent writers).
fn write_atomic(
    dir: &Path,
    dir_sync: &DirSync,
    path: &Path,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    // The temporary file sits in the queue directory itself: the rename then stays within one
    // directory (no cross-directory rename lock), and `list` never sees it (no `.msg` end).
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        // The message must be on disk before its name promises it...
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // ...and the name must be on disk before the client hears 250.
        dir_sync.sync()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Rcpt, Trace};

    fn message() -> Message {
        Message {
            envelope: Envelope {
                sender: "a@elsewhere.net".into(),
                recipients: vec![Rcpt {
                    address: "b@example.test".into(),
                    local: true,
                    notify: vec![],
                    orcpt: None,
                }],
                ret: None,
                envid: Some("E1".into()),
                body_8bit: false,
                smtputf8: false,
            },
            trace: Trace {
                helo: "client (evil)\r\nX: y".into(),
                remote: "192.0.2.1".parse().unwrap(),
                tls: Some("TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256".into()),
                user: None,
                esmtp: true,
                smtputf8: false,
            },
            body: b"Subject: hi\n\nbody\n".to_vec(),
        }
    }

    #[test]
    fn store_load_status_remove() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), "mx.example.test").unwrap();
        let id = q
            .store(&message(), "Tue, 24 Nov 2026 09:30:00 +0000")
            .unwrap();
        assert_eq!(q.list().unwrap(), vec![id.clone()]);
        let (stored, body, status) = q.load(&id).unwrap();
        assert_eq!(stored.envelope.envid.as_deref(), Some("E1"));
        assert_eq!(status.recipients, vec![RcptState::Pending]);
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with("Received: from client ?evil???X: y ([192.0.2.1])\n\tby mx.example.test (Postern)\n\t(using TLSv1.3"), "{text}");
        assert!(
            text.contains(&format!(
                "with ESMTPS id {id}\n\tfor <b@example.test>;\n\tTue, 24 Nov 2026"
            )),
            "{text}"
        );
        assert!(text.ends_with("\nSubject: hi\n\nbody\n"));
        let done = Status {
            recipients: vec![RcptState::Delivered],
            attempts: 1,
        };
        q.save_status(&id, &done).unwrap();
        assert_eq!(
            q.load(&id).unwrap().2.recipients,
            vec![RcptState::Delivered]
        );
        q.remove(&id).unwrap();
        assert!(q.list().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left behind"
        );
    }

    #[test]
    fn half_written_files_are_cleared_at_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".ABC.msg.tmp"), "half").unwrap();
        let q = Queue::open(dir.path(), "h").unwrap();
        assert!(q.list().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

//! The durable queue in `state_dir/queue` (ARCHITECTURE §6, durability rule). A message is one
//! file `<id>.msg`: a JSON line with the envelope, then the message with its Received: header
//! (LF line ends). It is written to `.<id>.msg.tmp`, fsynced, renamed into place, and the directory is
//! fsynced: only then may the 250 be sent. Delivery progress lives in `<id>.status`, replaced
//! atomically the same way. Blocking file I/O: called on blocking threads.
//!
//! A delivered message's file is not unlinked but renamed to `.pool.<n>` and its inode reused
//! for a later message: creating and deleting an inode per message was the largest single
//! cost of the queue (inode allocation scans past recently deleted inodes). A pool file is
//! reused only once its rename into the pool is durable, so a crash can never bring back an
//! old queue name pointing at a half-overwritten file.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
    /// When it was queued (seconds since the epoch), for the queue lifetime; 0 in files
    /// written before the field existed.
    #[serde(default)]
    pub arrived: u64,
}

/// Where each recipient stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RcptState {
    Pending,
    Delivered,
    /// A permanent failure, reported to the sender by a DSN once `reported` (bounce.rs).
    Failed {
        reply: String,
        /// The server that gave the reply, if one did (the DSN's Remote-MTA).
        #[serde(default)]
        remote: Option<String>,
        #[serde(default)]
        reported: bool,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Same order as the envelope's recipients.
    pub recipients: Vec<RcptState>,
    pub attempts: u32,
    /// Why the last attempt left recipients pending (for the "expired" bounce).
    #[serde(default)]
    pub last_error: Option<String>,
    /// A delay warning (RFC 3461 NOTIFY=DELAY) was queued for this message.
    #[serde(default)]
    pub warned: bool,
    /// Whether a `.status` file exists (most messages are delivered at the first attempt and
    /// never write one).
    #[serde(skip)]
    pub on_disk: bool,
}

/// A message just stored, kept in memory so the first delivery attempt need not read it back.
pub struct Queued {
    pub stored: Stored,
    /// The Received: header and the message, as in the file after the envelope line.
    pub body: Vec<u8>,
}

impl Queued {
    /// Nothing delivered yet, no status file.
    pub fn fresh_status(&self) -> Status {
        Status {
            recipients: vec![RcptState::Pending; self.stored.envelope.recipients.len()],
            ..Status::default()
        }
    }
}

/// Files kept for reuse at most (beyond that, delivered files are unlinked).
const POOL_MAX: usize = 512;

/// Queue files waiting for reuse, each with the directory-sync ticket of its rename.
#[derive(Default)]
struct Pool {
    free: Mutex<Vec<(PathBuf, u64)>>,
    names: AtomicU64,
}

pub struct Queue {
    dir: PathBuf,
    hostname: String,
    counter: AtomicU64,
    /// Concurrent sessions share the directory fsync (group commit); each still waits for a
    /// sync that started after its own rename.
    dir_sync: DirSync,
    pool: Pool,
}

impl Queue {
    /// Opens the queue directory (made by the supervisor) and removes the `.tmp` files a crash
    /// left half-written: nothing in there was ever acknowledged.
    /// Pool files left by the previous run are adopted once the directory is synced (their
    /// renames may not have been durable yet).
    pub fn open(dir: &Path, hostname: &str) -> std::io::Result<Queue> {
        let mut pooled = Vec::new();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            } else if name.starts_with(".pool.") {
                pooled.push(entry.path());
            }
        }
        let dir_sync = DirSync::new(dir);
        let adopted = dir_sync.note_change();
        dir_sync.sync()?;
        let mut pooled: Vec<(PathBuf, u64)> = pooled.into_iter().map(|p| (p, adopted)).collect();
        pooled.truncate(POOL_MAX);
        Ok(Queue {
            dir: dir.to_path_buf(),
            hostname: hostname.to_string(),
            counter: AtomicU64::new(rand::random::<u32>() as u64),
            dir_sync,
            pool: Pool {
                free: Mutex::new(pooled),
                names: AtomicU64::new(rand::random::<u32>() as u64),
            },
        })
    }

    fn new_id(&self) -> String {
        let secs = now_secs();
        let n = self.counter.fetch_add(1, Ordering::Relaxed) & 0xFFFFFF;
        format!("{secs:X}{:05X}{n:06X}", std::process::id() & 0xFFFFF)
    }

    fn msg_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    fn status_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.status"))
    }

    /// Stores a message durably. When this returns Ok the message survives a crash (file and
    /// directory fsynced).
    pub fn store(&self, message: &Message, date: &str) -> std::io::Result<Queued> {
        let id = self.new_id();
        let stored = Stored {
            id: id.clone(),
            envelope: message.envelope.clone(),
            received: date.to_string(),
            auth_user: message.trace.user.clone(),
            arrived: now_secs(),
        };
        let mut header = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        header.push(b'\n');
        let received = received_header(message, &self.hostname, &id, date);
        let parts: [&[u8]; 3] = [&header, received.as_bytes(), &message.body];
        let path = self.msg_path(&id);
        match self.take_pooled() {
            Some(pooled) => write_reused(&pooled, &self.dir_sync, &path, &parts)?,
            None => write_atomic(&self.dir, &self.dir_sync, &path, &parts)?,
        }
        Ok(Queued {
            stored,
            body: [received.as_bytes(), &message.body].concat(),
        })
    }

    /// A pool file whose rename into the pool is durable.
    fn take_pooled(&self) -> Option<PathBuf> {
        let mut free = self.pool.free.lock().unwrap_or_else(|p| p.into_inner());
        let at = free
            .iter()
            .position(|(_, ticket)| self.dir_sync.is_durable(*ticket))?;
        Some(free.swap_remove(at).0)
    }

    /// Ids of every queued message.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        list_dir(&self.dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The envelope, the message, and the delivery status of a queued message.
    pub fn load(&self, id: &str) -> std::io::Result<(Stored, Vec<u8>, Status)> {
        read(&self.dir, id)
    }

    /// Removes a message and its status for good (`postern queue delete`), synced: a deleted
    /// message must not come back after a crash. `NotFound` when there is no such message.
    pub fn delete(&self, id: &str) -> std::io::Result<()> {
        if !valid_id(id) {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        match std::fs::remove_file(self.status_path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::remove_file(self.msg_path(id))?;
        self.dir_sync.note_change();
        self.dir_sync.sync()
    }

    pub fn save_status(&self, id: &str, status: &mut Status) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&*status).map_err(std::io::Error::other)?;
        write_atomic(&self.dir, &self.dir_sync, &self.status_path(id), &[&bytes])?;
        status.on_disk = true;
        Ok(())
    }

    /// Forgets a message whose every recipient is done. The removal is not synced: it
    /// becomes durable with the next message stored (same directory), or when the kernel
    /// writes the directory back. A crash before that delivers the message a second time
    /// (at least once, never lost).
    pub fn remove(&self, id: &str, status: &Status) -> std::io::Result<()> {
        if status.on_disk {
            std::fs::remove_file(self.status_path(id))?;
        }
        let path = self.msg_path(id);
        let full = self
            .pool
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
            >= POOL_MAX;
        if full {
            return std::fs::remove_file(path);
        }
        let n = self.pool.names.fetch_add(1, Ordering::Relaxed);
        let pooled = self.dir.join(format!(".pool.{n:x}"));
        std::fs::rename(&path, &pooled)?;
        let ticket = self.dir_sync.note_change();
        let mut free = self.pool.free.lock().unwrap_or_else(|p| p.into_inner());
        free.push((pooled, ticket));
        Ok(())
    }
}

/// Whether `id` can name a queue file (what `new_id` makes: hex digits), so an id from the
/// control socket never reaches outside the queue directory.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Reads one queued message from `dir` (also used read-only by `postern queue list` when the
/// MTA is not running).
pub fn read(dir: &Path, id: &str) -> std::io::Result<(Stored, Vec<u8>, Status)> {
    if !valid_id(id) {
        return Err(std::io::ErrorKind::NotFound.into());
    }
    let mut reader = BufReader::new(File::open(dir.join(format!("{id}.msg")))?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let stored: Stored = serde_json::from_str(&first).map_err(std::io::Error::other)?;
    let mut body = Vec::new();
    reader.read_to_end(&mut body)?;
    let status = match std::fs::read(dir.join(format!("{id}.status"))) {
        Ok(bytes) => Status {
            // Read from its file: removing the message must remove that file too.
            on_disk: true,
            ..serde_json::from_slice(&bytes).map_err(std::io::Error::other)?
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Status {
            recipients: vec![RcptState::Pending; stored.envelope.recipients.len()],
            attempts: 0,
            ..Status::default()
        },
        Err(e) => return Err(e),
    };
    Ok((stored, body, status))
}

/// Ids of every message queued in `dir`.
pub fn list_dir(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)?
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

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

/// Overwrites a pool file (its blocks stay allocated), fsync, rename to `path`, fsync of the
/// directory. On error the pool file is removed: it may hold a part of this message.
fn write_reused(
    pooled: &Path,
    dir_sync: &DirSync,
    path: &Path,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let mut renamed = false;
    let mut attempt = || {
        let mut file = OpenOptions::new().write(true).open(pooled)?;
        let len = shared::fsio::write_parts(&mut file, parts)?;
        file.set_len(len)?;
        // As in write_atomic: data first, then the name, then the directory.
        file.sync_all()?;
        std::fs::rename(pooled, path)?;
        renamed = true;
        dir_sync.sync()
    };
    let result = attempt();
    if result.is_err() {
        // The client hears a 4xx and sends again: no copy may stay queued.
        let _ = std::fs::remove_file(if renamed { path } else { pooled });
    }
    result
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
        shared::fsio::write_parts(&mut file, parts)?;
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
        let queued = q
            .store(&message(), "Tue, 24 Nov 2026 09:30:00 +0000")
            .unwrap();
        let id = queued.stored.id.clone();
        assert_eq!(q.list().unwrap(), vec![id.clone()]);
        let (stored, body, status) = q.load(&id).unwrap();
        assert_eq!(
            body, queued.body,
            "what the first attempt delivers is what was stored"
        );
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
        let mut done = Status {
            recipients: vec![RcptState::Delivered],
            attempts: 1,
            ..Status::default()
        };
        q.save_status(&id, &mut done).unwrap();
        let loaded = q.load(&id).unwrap().2;
        assert_eq!(loaded.recipients, vec![RcptState::Delivered]);
        assert!(
            loaded.on_disk,
            "a status read from its file is removed with the message"
        );
        q.remove(&id, &loaded).unwrap();
        assert!(q.list().unwrap().is_empty());
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            matches!(left.as_slice(), [one] if one.starts_with(".pool.")),
            "only the pooled file is left: {left:?}"
        );
    }

    #[test]
    fn delivered_files_are_reused_only_after_their_rename_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), "mx.example.test").unwrap();
        let mut big = message();
        big.body = vec![b'x'; 10_000];
        let first = q.store(&big, "date").unwrap().stored.id;
        let (_, _, status) = q.load(&first).unwrap();
        q.remove(&first, &status).unwrap();
        let pooled = q.pool.free.lock().unwrap()[0].0.clone();
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let pooled_inode = inode(&pooled);
        // The pool rename is not yet synced: a new message gets a new file...
        let second = q.store(&message(), "date").unwrap().stored.id;
        assert_ne!(inode(&q.msg_path(&second)), pooled_inode);
        // ...whose directory sync made the pooled file reusable.
        let third = q.store(&message(), "date").unwrap().stored.id;
        assert_eq!(inode(&q.msg_path(&third)), pooled_inode);
        let (stored, body, _) = q.load(&third).unwrap();
        assert_eq!(stored.id, third);
        assert!(
            body.ends_with(b"\nSubject: hi\n\nbody\n"),
            "shorter content, old tail cut"
        );
        assert_eq!(q.list().unwrap().len(), 2);
        // A restart adopts pool files and never lists them.
        q.remove(&third, &Status::default()).unwrap();
        drop(q);
        let q = Queue::open(dir.path(), "mx.example.test").unwrap();
        assert_eq!(q.list().unwrap(), vec![second.clone()]);
        let fourth = q.store(&message(), "date").unwrap().stored.id;
        assert_eq!(inode(&q.msg_path(&fourth)), pooled_inode);
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

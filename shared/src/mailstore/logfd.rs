//! The open index logs of this process, shared: every [`super::Folder`] and delivery handle
//! on the same log file holds the same descriptor ([`SharedLog`]), so that thousands of IMAP
//! sessions selected on a few folders cost a few descriptors, not thousands. Sharing is safe
//! because nothing uses the file offset: reads are positional (`pread`), writes go through
//! `O_APPEND`, and the lock (`lock.rs`) is not on this file. A log replaced by a compaction or
//! rebuild is another inode and gets its own entry. The handles also share how far the file
//! is known durable ([`SharedLog::sync_to`]): after a delivery, the first of the thousands of
//! IDLE sessions on a folder pays for the `fdatasync`, not each of them. No reading or
//! parsing here.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// (device, inode) of a log file.
type Key = (u64, u64);

#[derive(Default)]
struct Table {
    open: HashMap<Key, Weak<Inner>>,
    /// Entries after the last sweep of closed ones: the next is due at twice as many.
    swept: usize,
}

fn table() -> std::sync::MutexGuard<'static, Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// An index log opened for reading and appending, shared by the handles of this process.
#[derive(Debug, Clone)]
pub(crate) struct SharedLog(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    file: File,
    /// How far the file is durable, as far as this process knows.
    synced: Mutex<Synced>,
}

#[derive(Debug, Default)]
struct Synced {
    /// The first this many bytes are durable: an `fdatasync` by some handle covered them.
    len: u64,
    /// An `fdatasync` failed. Linux reports a write-back error once per open file, and the
    /// handles share one: every later sync must fail too, or a handle could take the next
    /// (successful, but empty) `fdatasync` for proof that the lost data is on disk. Only a new
    /// log file (compaction, rebuild) starts clean.
    failed: Option<std::io::ErrorKind>,
}

impl std::ops::Deref for SharedLog {
    type Target = File;

    fn deref(&self) -> &File {
        &self.0.file
    }
}

impl Write for SharedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&self.0.file).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        (&self.0.file).flush()
    }
}

impl SharedLog {
    /// Opens the log at `path` (read, `O_APPEND`), or joins the handles that already have
    /// that file open. Returns it with its inode number.
    pub fn open(path: &Path) -> std::io::Result<(SharedLog, u64)> {
        let meta = std::fs::metadata(path)?;
        let mut t = table();
        if let Some(file) = t
            .open
            .get(&(meta.dev(), meta.ino()))
            .and_then(Weak::upgrade)
        {
            return Ok((SharedLog(file), meta.ino()));
        }
        let file = OpenOptions::new().read(true).append(true).open(path)?;
        // The path may name another file by now (replaced meanwhile): key by what was opened.
        let meta = file.metadata()?;
        let key = (meta.dev(), meta.ino());
        if let Some(file) = t.open.get(&key).and_then(Weak::upgrade) {
            return Ok((SharedLog(file), key.1));
        }
        let file = Arc::new(Inner {
            file,
            synced: Mutex::default(),
        });
        t.open.insert(key, Arc::downgrade(&file));
        if t.open.len() > 2 * t.swept + 16 {
            t.open.retain(|_, w| w.strong_count() > 0);
            t.swept = t.open.len();
        }
        Ok((SharedLog(file), key.1))
    }

    /// Makes the first `len` bytes durable: `fdatasync`, unless one (by any handle, this
    /// one included) already covered them. `len` must be bytes that were in the file before
    /// this call (a handle's read or written offset). Handles wait for each other here, so
    /// that those woken together by one change sync once.
    pub fn sync_to(&self, len: u64) -> std::io::Result<()> {
        let mut synced = self.0.synced.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kind) = synced.failed {
            return Err(std::io::Error::new(
                kind,
                "an earlier fdatasync of this index log failed",
            ));
        }
        if synced.len < len {
            if let Err(e) = self.0.file.sync_data() {
                synced.failed = Some(e.kind());
                return Err(e);
            }
            synced.len = len;
        }
        Ok(())
    }

    /// Whether `self` and `other` are one open file.
    #[cfg(test)]
    pub fn same_as(&self, other: &SharedLog) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn handles_share_one_file_until_it_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "one\n").unwrap();
        let (mut a, ino) = SharedLog::open(&path).unwrap();
        let (b, ino_b) = SharedLog::open(&path).unwrap();
        assert!(a.same_as(&b) && ino == ino_b);
        a.write_all(b"two\n").unwrap();
        let mut buf = [0; 8];
        b.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"one\ntwo\n", "appended through the shared file");
        std::fs::write(dir.path().join("tmp"), "new\n").unwrap();
        std::fs::rename(dir.path().join("tmp"), &path).unwrap();
        let (c, ino_c) = SharedLog::open(&path).unwrap();
        assert!(!c.same_as(&a) && ino_c != ino);
        drop((a, b));
        let (d, _) = SharedLog::open(&path).unwrap();
        assert!(d.same_as(&c));
    }

    #[test]
    fn a_closed_file_is_opened_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "x\n").unwrap();
        let (a, _) = SharedLog::open(&path).unwrap();
        let weak = Arc::downgrade(&a.0);
        drop(a);
        assert!(weak.upgrade().is_none(), "closed with its last handle");
        let (b, _) = SharedLog::open(&path).unwrap();
        assert_eq!(b.metadata().unwrap().len(), 2);
        assert!(SharedLog::open(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_sync_covers_what_was_in_the_file_for_every_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "one\n").unwrap();
        let (mut a, _) = SharedLog::open(&path).unwrap();
        let (b, _) = SharedLog::open(&path).unwrap();
        let synced = |l: &SharedLog| l.0.synced.lock().unwrap().len;
        a.sync_to(4).unwrap();
        b.sync_to(4).unwrap();
        assert_eq!(synced(&b), 4, "b's sync_to(4) had nothing left to do");
        a.write_all(b"two\n").unwrap();
        b.sync_to(8).unwrap();
        assert_eq!(synced(&a), 8, "bytes appended since must be synced again");
        a.sync_to(6).unwrap();
        assert_eq!(synced(&a), 8, "never lowered");
    }

    #[test]
    fn a_failed_sync_fails_every_later_sync_of_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "one\n").unwrap();
        let (a, _) = SharedLog::open(&path).unwrap();
        let (b, _) = SharedLog::open(&path).unwrap();
        // As if the kernel had reported a write-back error to a's fdatasync.
        a.0.synced.lock().unwrap().failed = Some(std::io::ErrorKind::Other);
        assert!(
            b.sync_to(4).is_err(),
            "b must not take a clean fdatasync for proof"
        );
        assert!(a.sync_to(0).is_err());
        std::fs::write(dir.path().join("tmp"), "new\n").unwrap();
        std::fs::rename(dir.path().join("tmp"), &path).unwrap();
        let (c, _) = SharedLog::open(&path).unwrap();
        c.sync_to(4).unwrap();
    }
}

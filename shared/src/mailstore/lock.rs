//! The per-folder index lock: `postern-index.lock`, held exclusively (`flock(2)` through
//! `File::lock`) by every writer of the log (MDA deliveries, flag changes, expunges, scans,
//! compaction) in any process. Readers do not take it. Holders keep it for file-system
//! operations only, never across network I/O. The file is open only while the lock is held:
//! an idle folder handle costs no descriptor (thousands of IMAP sessions stay selected), and
//! each hold opens its own file description, so handles of one process exclude each other
//! as handles of different processes do.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{IoContext, LOCK_FILE, Result};

/// The lock file of one folder.
#[derive(Debug)]
pub struct IndexLock {
    path: PathBuf,
}

/// Held while alive; owns the open lock file.
#[derive(Debug)]
pub struct Guard {
    file: File,
}

impl IndexLock {
    /// The lock of the folder in `dir`; nothing is opened until [`IndexLock::lock`].
    pub fn open(dir: &Path) -> Result<IndexLock> {
        Ok(IndexLock {
            path: dir.join(LOCK_FILE),
        })
    }

    /// Opens (creating) the lock file and blocks until the lock is held.
    pub fn lock(&self) -> Result<Guard> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.path)
            .at(&self.path)?;
        file.lock().at(&self.path)?;
        Ok(Guard { file })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Closing releases it too; unlocking first says so explicitly.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_handles_of_one_process_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            IndexLock::open(dir.path()).unwrap(),
            IndexLock::open(dir.path()).unwrap(),
        );
        let held = a.lock().unwrap();
        let probe = File::open(dir.path().join(LOCK_FILE)).unwrap();
        assert!(probe.try_lock().is_err(), "held by a");
        let waiter = std::thread::spawn(move || drop(b.lock().unwrap()));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "b waits while a holds it");
        drop(held);
        waiter.join().unwrap();
        assert!(probe.try_lock().is_ok(), "released");
    }
}

//! The per-folder index lock: `postern-index.lock`, held exclusively (`flock(2)` through
//! `File::lock`) by every writer of the log (MDA deliveries, flag changes, expunges, scans,
//! compaction) in any process. Readers do not take it. Holders keep it for file-system
//! operations only, never across network I/O.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use super::{IoContext, LOCK_FILE, Result};

/// The open lock file of one folder.
#[derive(Debug)]
pub struct IndexLock {
    file: Arc<File>,
}

/// Held while alive. Owns a reference to the file so that the folder holding the lock can
/// still be changed while it is held.
#[derive(Debug)]
pub struct Guard {
    file: Arc<File>,
}

impl IndexLock {
    /// Opens (creating) the lock file in `dir`.
    pub fn open(dir: &Path) -> Result<IndexLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .at(&path)?;
        Ok(IndexLock {
            file: Arc::new(file),
        })
    }

    /// Blocks until the lock is held.
    pub fn lock(&self) -> Result<Guard> {
        self.file.lock().at(Path::new(LOCK_FILE))?;
        Ok(Guard {
            file: self.file.clone(),
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Closing would release it too; unlocking early keeps the hold short.
        let _ = self.file.unlock();
    }
}

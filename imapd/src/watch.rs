//! Folder change notification for IDLE (RFC 2177): one inotify instance for the whole
//! process (the kernel allows only 128 per user by default, far fewer than idle sessions),
//! one set of watches per folder shared by every session idling on it, and a
//! `tokio::sync::watch` counter per folder that a wake-up bumps. Watched: the index log (every
//! writer, the MDA included, appends to it), `new/` (outside deliverers) and the folder
//! directory, where a compaction renames a new log in — then the log's watch is added
//! again, since the old one follows the old file. Knows nothing of IMAP.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

struct RawInotify(Inotify);

impl AsRawFd for RawInotify {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The watches of one folder.
struct FolderWatch {
    /// The files and directories watched; the first is the folder directory.
    paths: Vec<PathBuf>,
    wds: Vec<WatchDescriptor>,
    tx: watch::Sender<u64>,
    users: usize,
}

#[derive(Default)]
struct Table {
    folders: HashMap<PathBuf, FolderWatch>,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
}

/// The process's inotify instance and what it watches.
pub struct Watches {
    fd: AsyncFd<RawInotify>,
    table: Mutex<Table>,
}

/// A session's interest in one folder; the watches go when the last one is dropped.
pub struct Subscription {
    watches: Arc<Watches>,
    key: PathBuf,
    rx: watch::Receiver<u64>,
}

const FLAGS: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_MOVED_TO);

impl Watches {
    /// The instance and its reader task (on the current runtime).
    pub fn start() -> std::io::Result<Arc<Watches>> {
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: the descriptor belongs to the `Inotify` moved into the `AsyncFd`: it stays
        // open and the same for the `AsyncFd`'s whole life, as `register` requires.
        let fd = unsafe { AsyncFd::register(RawInotify(ino)) }.map_err(|e| e.into_parts().1)?;
        let watches = Arc::new(Watches {
            fd,
            table: Mutex::new(Table::default()),
        });
        tokio::spawn(read_events(Arc::downgrade(&watches)));
        Ok(watches)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches a folder's `paths` (its log and `new/`; the directory is added).
    pub fn subscribe(self: &Arc<Self>, paths: &[PathBuf]) -> std::io::Result<Subscription> {
        let dir = paths
            .first()
            .and_then(|p| p.parent())
            .ok_or_else(|| std::io::Error::other("no folder path to watch"))?
            .to_path_buf();
        let mut t = self.table();
        if let Some(f) = t.folders.get_mut(&dir) {
            f.users += 1;
            let rx = f.tx.subscribe();
            return Ok(self.subscription(dir, rx));
        }
        let mut all = vec![dir.clone()];
        all.extend(paths.iter().cloned());
        let mut wds = Vec::new();
        for p in &all {
            let wd = self.fd.get_ref().0.add_watch(p.as_path(), FLAGS)?;
            t.by_wd.insert(wd, dir.clone());
            wds.push(wd);
        }
        let (tx, rx) = watch::channel(0);
        t.folders.insert(
            dir.clone(),
            FolderWatch {
                paths: all,
                wds,
                tx,
                users: 1,
            },
        );
        Ok(self.subscription(dir, rx))
    }

    fn subscription(self: &Arc<Self>, key: PathBuf, rx: watch::Receiver<u64>) -> Subscription {
        Subscription {
            watches: self.clone(),
            key,
            rx,
        }
    }

    /// One event: wake the folder's sessions; a new log renamed into a watched directory is
    /// watched again.
    fn event(&self, wd: WatchDescriptor, name: Option<OsString>) {
        let mut t = self.table();
        let Some(key) = t.by_wd.get(&wd).cloned() else {
            return;
        };
        let renamed = name.and_then(|n| {
            let f = t.folders.get(&key)?;
            f.paths
                .iter()
                .skip(1)
                .find(|p| p.parent() == Some(key.as_path()) && p.file_name() == Some(n.as_os_str()))
                .cloned()
        });
        if let Some(path) = renamed
            && let Ok(new_wd) = self.fd.get_ref().0.add_watch(path.as_path(), FLAGS)
        {
            t.by_wd.insert(new_wd, key.clone());
            if let Some(f) = t.folders.get_mut(&key)
                && !f.wds.contains(&new_wd)
            {
                f.wds.push(new_wd);
            }
        }
        if let Some(f) = t.folders.get(&key) {
            f.tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Reads events until the [`Watches`] is dropped.
async fn read_events(w: std::sync::Weak<Watches>) {
    loop {
        let Some(watches) = w.upgrade() else { return };
        let Ok(mut guard) = watches.fd.readable().await else {
            return;
        };
        match guard.get_inner().0.read_events() {
            Ok(events) => {
                drop(guard);
                for e in events {
                    watches.event(e.wd, e.name);
                }
            }
            Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
            Err(e) => {
                tracing::error!(event = "imap.inotify_failed", error = %e, "cannot read inotify events");
                return;
            }
        }
    }
}

impl Subscription {
    /// Waits for the next change of the folder, then lets a burst of writes settle.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.rx.mark_unchanged();
    }

    pub fn folder(&self) -> &Path {
        &self.key
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut t = self.watches.table();
        let Some(f) = t.folders.get_mut(&self.key) else {
            return;
        };
        f.users -= 1;
        if f.users > 0 {
            return;
        }
        if let Some(f) = t.folders.remove(&self.key) {
            for wd in f.wds {
                t.by_wd.remove(&wd);
                let _ = self.watches.fd.get_ref().0.rm_watch(wd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_subscribers_share_one_set_of_watches() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "").unwrap();
        std::fs::create_dir(dir.path().join("new")).unwrap();
        let paths = vec![log.clone(), dir.path().join("new")];
        let w = Watches::start().unwrap();
        let mut a = w.subscribe(&paths).unwrap();
        let mut b = w.subscribe(&paths).unwrap();
        assert_eq!(w.table().by_wd.len(), 3);
        std::fs::write(dir.path().join("new/msg"), "x").unwrap();
        let wait = Duration::from_secs(5);
        tokio::time::timeout(wait, a.changed()).await.unwrap();
        tokio::time::timeout(wait, b.changed()).await.unwrap();
        // A compaction renames a new log in: appends to it still wake.
        std::fs::write(dir.path().join("log.tmp"), "").unwrap();
        std::fs::rename(dir.path().join("log.tmp"), &log).unwrap();
        tokio::time::timeout(wait, a.changed()).await.unwrap();
        std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"rec\n")
            .unwrap();
        tokio::time::timeout(wait, a.changed()).await.unwrap();
        drop(a);
        drop(b);
        assert!(w.table().folders.is_empty() && w.table().by_wd.is_empty());
    }
}

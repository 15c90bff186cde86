//! Group commit for directory fsyncs: concurrent writers that each need "my rename in this
//! directory is durable" share one fsync. A caller's fsync covers every rename made before it
//! started, so a writer waits for a sync that started after its own rename — never less.
//! Blocking: called on blocking threads.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

#[derive(Default)]
struct State {
    /// Tickets handed out (each is a rename waiting to be made durable).
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A sync is running.
    syncing: bool,
    /// The last sync failed for tickets up to this one.
    failed_up_to: u64,
}

pub struct DirSync {
    dir: PathBuf,
    state: Mutex<State>,
    done: Condvar,
}

impl DirSync {
    pub fn new(dir: &Path) -> DirSync {
        DirSync {
            dir: dir.to_path_buf(),
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        }
    }

    /// Records a change to the directory without waiting for it to be durable; the returned
    /// ticket is durable once [`DirSync::is_durable`] says so (after any later sync).
    pub fn note_change(&self) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.issued += 1;
        st.issued
    }

    /// Whether a sync that covered `ticket` has completed (successfully or not: a failed
    /// sync leaves the change in the page cache, where the next sync will catch it).
    pub fn is_durable(&self, ticket: u64) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.durable >= ticket && st.failed_up_to < ticket
    }

    /// Returns once the directory entries changed before this call are on disk.
    pub fn sync(&self) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.issued += 1;
        let ticket = st.issued;
        loop {
            if st.durable >= ticket {
                return if st.failed_up_to >= ticket {
                    Err(std::io::Error::other("directory fsync failed"))
                } else {
                    Ok(())
                };
            }
            if !st.syncing {
                // Lead: this fsync covers every ticket issued so far.
                st.syncing = true;
                let covers = st.issued;
                drop(st);
                let result = File::open(&self.dir).and_then(|d| d.sync_all());
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.syncing = false;
                st.durable = st.durable.max(covers);
                if result.is_err() {
                    st.failed_up_to = covers;
                }
                self.done.notify_all();
                if ticket <= covers {
                    return result;
                }
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_callers_all_return_after_a_sync_that_started_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(DirSync::new(dir.path()));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let sync = sync.clone();
                let path = dir.path().join(format!("f{i}"));
                std::thread::spawn(move || {
                    std::fs::write(&path, b"x").unwrap();
                    sync.sync().unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let st = sync.state.lock().unwrap();
        assert_eq!(st.issued, 16);
        assert_eq!(st.durable, 16);
    }

    #[test]
    fn a_noted_change_is_durable_only_after_a_later_sync() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DirSync::new(dir.path());
        let ticket = sync.note_change();
        assert!(!sync.is_durable(ticket));
        sync.sync().unwrap();
        assert!(sync.is_durable(ticket));
        assert!(!sync.is_durable(sync.note_change()));
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let sync = DirSync::new(Path::new("/nonexistent/postern"));
        assert!(sync.sync().is_err());
    }
}

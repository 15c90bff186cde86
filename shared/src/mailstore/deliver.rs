//! The UID step of a delivery (ARCHITECTURE §6 step 4): after the MDA has made a message
//! durable in `new/`, [`index_delivery`] appends its add record under the index lock. Kept
//! cheap for the MDA: each process remembers, per folder, only where it stopped reading the
//! log and the next UID and modseq (not the messages), so a delivery costs a lock, two
//! `stat`s, a read of what others appended, one `write` and an unlock. The log is not
//! fsynced here: the message itself is durable, and whoever shows the UID to a client syncs
//! the log first (`Folder::refresh`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::folder::{LogFile, Opened};
use super::index::{self, Added, Record};
use super::lock::IndexLock;
use super::{Flags, Folder, IoContext, Result, base_of};

/// Folders whose read position this process keeps; beyond that it forgets them all (a
/// forgotten folder costs one full read of its log at its next delivery).
const MAX_CACHED: usize = 512;

/// Where this process stopped reading one folder's log.
struct Tail {
    lock: IndexLock,
    log: LogFile,
    uidnext: u32,
    modseq: u64,
}

static TAILS: Mutex<Option<HashMap<PathBuf, Tail>>> = Mutex::new(None);

/// Gives the message just linked as `new/<name>` in the Maildir `dir` its UID; returns it.
/// When the folder has no readable index yet, builds it (which indexes this file too).
pub fn index_delivery(dir: &Path, name: &str, size: u64, vsize: u64) -> Result<u32> {
    let cached = TAILS
        .lock()
        .ok()
        .and_then(|mut t| t.as_mut().and_then(|m| m.remove(dir)));
    let mut tail = match cached {
        Some(t) => t,
        None => match Tail::open(dir)? {
            Some(t) => t,
            None => return index_by_rebuild(dir, name),
        },
    };
    let uid = tail.add(dir, name, size, vsize)?;
    if let Ok(mut tails) = TAILS.lock() {
        let map = tails.get_or_insert_with(HashMap::new);
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert(dir.to_path_buf(), tail);
    }
    Ok(uid)
}

/// The folder had no index: opening it builds one from the Maildir, this message included.
fn index_by_rebuild(dir: &Path, name: &str) -> Result<u32> {
    let folder = Folder::open("", dir)?;
    folder
        .messages()
        .iter()
        .rev()
        .find(|m| m.base() == base_of(name))
        .map(|m| m.uid)
        .ok_or_else(|| super::Error::Io {
            path: dir.join("new").join(name),
            source: std::io::Error::other("delivered file missing from the rebuilt index"),
        })
}

impl Tail {
    /// Reads the whole log; `None` when it must be rebuilt.
    fn open(dir: &Path) -> Result<Option<Tail>> {
        let lock = IndexLock::open(dir)?;
        Ok(match LogFile::open(dir)? {
            Opened::Ready(log, state) => Some(Tail {
                lock,
                log,
                uidnext: state.uidnext,
                modseq: state.highest_modseq,
            }),
            Opened::NeedsRebuild => None,
        })
    }

    /// Under the lock: catches up with the log, and appends the add record unless a scan by
    /// someone else already indexed the file.
    fn add(&mut self, dir: &Path, name: &str, size: u64, vsize: u64) -> Result<u32> {
        let guard = self.lock.lock()?;
        if self.log.replaced()? {
            drop(guard);
            *self = match Tail::open(dir)? {
                Some(t) => t,
                None => return index_by_rebuild(dir, name),
            };
            return self.add_after_reload(dir, name, size, vsize);
        }
        if let Some(uid) = self.catch_up(name)? {
            return Ok(uid);
        }
        self.append(name, size, vsize)
    }

    /// After a compaction or rebuild the whole log was just read: look for the file in it.
    fn add_after_reload(&mut self, dir: &Path, name: &str, size: u64, vsize: u64) -> Result<u32> {
        let _guard = self.lock.lock()?;
        if let Opened::Ready(_, state) = LogFile::open(dir)?
            && let Some(m) = state.messages.iter().rev().find(|m| m.base() == name)
        {
            return Ok(m.uid);
        }
        if let Some(uid) = self.catch_up(name)? {
            return Ok(uid);
        }
        self.append(name, size, vsize)
    }

    /// Applies what others appended; the UID of `name` if one of them indexed it. Cuts a
    /// torn tail (no writer is active under the lock).
    fn catch_up(&mut self, name: &str) -> Result<Option<u32>> {
        let mut found = None;
        for record in self.log.read_new()? {
            match record {
                Record::Add(a) if a.uid >= self.uidnext => {
                    self.uidnext = a.uid.saturating_add(1);
                    self.modseq = self.modseq.max(a.ms);
                    if base_of(&a.f) == name {
                        found = Some(a.uid);
                    }
                }
                Record::Flags { ms, .. } | Record::Expunge { ms, .. } => {
                    self.modseq = self.modseq.max(ms);
                }
                _ => {}
            }
        }
        let len = self.log.file.metadata().at(&self.log.path)?.len();
        if len > self.log.offset {
            tracing::warn!(event = "mailstore.torn_tail", log = %self.log.path.display(), bytes = len - self.log.offset, "cutting a torn record off the index log");
            self.log.file.set_len(self.log.offset).at(&self.log.path)?;
        }
        Ok(found)
    }

    fn append(&mut self, name: &str, size: u64, vsize: u64) -> Result<u32> {
        let uid = self.uidnext;
        let record = Record::Add(Added {
            uid,
            ms: self.modseq + 1,
            f: format!("new/{name}"),
            fl: Flags::EMPTY,
            kw: Vec::new(),
            size,
            vsize,
            date: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        });
        let mut buf = Vec::new();
        index::encode(&record, &mut buf);
        std::io::Write::write_all(&mut self.log.file, &buf).at(&self.log.path)?;
        self.log.offset += buf.len() as u64;
        self.uidnext += 1;
        self.modseq += 1;
        Ok(uid)
    }
}

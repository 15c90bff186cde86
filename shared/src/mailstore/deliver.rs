//! The UID step of a delivery (ARCHITECTURE §6 step 4): after the MDA has made a message
//! durable in `new/`, [`index_delivery`] appends its add record under the index lock. Kept
//! cheap for the MDA: each process remembers, per folder, only where it stopped reading the
//! log and the next UID and modseq (not the messages), so a delivery costs a lock, two
//! `stat`s, a read of what others appended, one `write` and an unlock. The log is not
//! fsynced here: the message itself is durable, and whoever shows the UID to a client syncs
//! the log first (`Folder::refresh`).

use std::collections::{HashMap, VecDeque};
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
/// Files indexed by others that a tail remembers.
const MAX_FOREIGN: usize = 256;

/// Where this process stopped reading one folder's log.
struct Tail {
    lock: IndexLock,
    log: LogFile,
    uidnext: u32,
    last_uid: u32,
    modseq: u64,
    /// Files others indexed lately (base, UID). A cached tail may have read the record of a
    /// file that another delivery of this process linked and is about to index: that
    /// delivery finds it here. Bounded: should an entry be gone before its delivery looks,
    /// the file gets a second UID, and the next sync expunges the duplicate.
    foreign: VecDeque<(String, u32)>,
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
        // Read after the link: a scan may already have indexed the file.
        None => match Tail::open(dir, name)? {
            (Some(t), None) => t,
            (_, Some(uid)) => return Ok(uid),
            (None, None) => return index_by_rebuild(dir, name),
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
    /// Reads the whole log (`None` when it must be rebuilt), and the UID of `name` if it is
    /// in it already.
    fn open(dir: &Path, name: &str) -> Result<(Option<Tail>, Option<u32>)> {
        let lock = IndexLock::open(dir)?;
        Ok(match LogFile::open(dir)? {
            Opened::Ready(log, state) => {
                let found = state.messages.iter().rev().find(|m| m.base() == name);
                let uid = found.map(|m| m.uid);
                let tail = Tail {
                    lock,
                    log,
                    uidnext: state.uidnext,
                    last_uid: state.last_uid,
                    modseq: state.highest_modseq,
                    foreign: VecDeque::new(),
                };
                (Some(tail), uid)
            }
            Opened::NeedsRebuild => (None, None),
        })
    }

    /// Under the lock: catches up with the log, and appends the add record unless a scan by
    /// someone else already indexed the file.
    fn add(&mut self, dir: &Path, name: &str, size: u64, vsize: u64) -> Result<u32> {
        let guard = self.lock.lock()?;
        if self.log.replaced()? {
            // Replaced (compacted or rebuilt) while held: read the new log whole, under the
            // same lock (the same open file description, so this does not deadlock).
            let (tail, found) = Tail::open(dir, name)?;
            match (tail, found) {
                (_, Some(uid)) => return Ok(uid),
                (Some(t), None) => {
                    let old = std::mem::replace(self, t);
                    drop(guard);
                    let _guard = self.lock.lock()?;
                    drop(old);
                    if let Some(uid) = self.catch_up(name)? {
                        return Ok(uid);
                    }
                    return self.append(name, size, vsize);
                }
                (None, None) => {
                    drop(guard);
                    return index_by_rebuild(dir, name);
                }
            }
        }
        if let Some(uid) = self.catch_up(name)? {
            return Ok(uid);
        }
        self.append(name, size, vsize)
    }

    /// Applies what others appended; the UID of `name` if one of them indexed it. Cuts a
    /// torn tail (no writer is active under the lock).
    fn catch_up(&mut self, name: &str) -> Result<Option<u32>> {
        for record in self.log.read_new()? {
            match record {
                Record::Add(a) if a.uid > self.last_uid => {
                    self.last_uid = a.uid;
                    self.uidnext = self.uidnext.max(a.uid.saturating_add(1));
                    self.modseq = self.modseq.max(a.ms);
                    if self.foreign.len() >= MAX_FOREIGN {
                        self.foreign.pop_front();
                    }
                    self.foreign.push_back((base_of(&a.f).to_string(), a.uid));
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
        Ok(self
            .foreign
            .iter()
            .rev()
            .find(|(base, _)| base == name)
            .map(|&(_, uid)| uid))
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
        self.last_uid = uid;
        self.uidnext += 1;
        self.modseq += 1;
        Ok(uid)
    }
}

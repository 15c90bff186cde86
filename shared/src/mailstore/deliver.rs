//! The UID step of a delivery (ARCHITECTURE §6 step 4): [`link_delivery`] takes the message
//! the MDA wrote and fsynced in `tmp/`, and under the index lock gives it the next UID, links
//! it into `new/` under a name carrying that UID (`uids.rs`) and appends its add record.
//! ([`index_delivery`] indexes a file already linked without one.) Kept cheap for the MDA:
//! each process remembers, per folder, only where it stopped reading the log, the next UID
//! and modseq and the UIDNEXT floor last seen recorded (not the messages), so a delivery
//! costs a lock, two `stat`s, a read of what others appended, a link, one `write` and an
//! unlock (plus a durable record of a higher floor once per `uids::HEADROOM` deliveries).
//! The log is not fsynced here: whoever shows the UID to a client syncs the log first
//! (`Folder::refresh`).
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::folder::{LogFile, Opened};
use super::index::{self, Added, Record};
use super::lock::IndexLock;
use super::uids::{self, FloorCache};
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
    uidvalidity: u32,
    /// The UIDNEXT floor last seen recorded (`uids.rs`).
    floor: FloorCache,
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

/// Delivers the message written and fsynced at `tmp` (base name `base`) into `new/` of the
/// Maildir `dir`: under the index lock, gives it the next UID, links it as
/// `new/<base>,U=<uid>` (`uids.rs`: the name keeps the UID should the index be lost) and
/// appends its add record. Returns the name in `new/` and the UID. The caller fsyncs `new/`
/// afterwards, outside the lock; a crash before that may leave an add record whose file is
/// gone, which the next sync expunges (the message was never acknowledged).
///
/// When the index cannot be used, the file is linked as `new/<base>` without a UID (the next
/// sync indexes it; logged); `Err` only when the link itself fails.
pub fn link_delivery(
    dir: &Path,
    tmp: &Path,
    base: &str,
    size: u64,
    vsize: u64,
) -> std::io::Result<(String, Option<u32>)> {
    let cached = TAILS
        .lock()
        .ok()
        .and_then(|mut t| t.as_mut().and_then(|m| m.remove(dir)));
    let tail = match cached {
        Some(t) => Ok(t),
        None => fresh_tail(dir, "").and_then(|f| match f {
            Fresh::Tail(t) => Ok(t),
            Fresh::Indexed(_) => Err(super::Error::NoSuchMessage(0)),
        }),
    };
    let mut tail = match tail {
        Ok(t) => t,
        Err(e) => return unindexed(dir, tmp, base, &e),
    };
    match tail.link_add(dir, tmp, base, size, vsize) {
        Ok(Linked::Indexed(name, uid)) => {
            keep_tail(dir, tail);
            Ok((name, Some(uid)))
        }
        Ok(Linked::Unrecorded(name, e)) => {
            tracing::warn!(event = "delivery.index_failed", maildir = %dir.display(), error = %e, "message linked with its UID, but not recorded; the next folder sync will index it");
            Ok((name, None))
        }
        Ok(Linked::LinkFailed(e)) => Err(e),
        Err(e) => unindexed(dir, tmp, base, &e),
    }
}

/// The fallback of [`link_delivery`] when the index is unusable: a plain link.
fn unindexed(
    dir: &Path,
    tmp: &Path,
    base: &str,
    error: &super::Error,
) -> std::io::Result<(String, Option<u32>)> {
    tracing::warn!(event = "delivery.index_failed", maildir = %dir.display(), error = %error, "index unusable; message delivered without a UID, the next folder sync will index it");
    std::fs::hard_link(tmp, dir.join("new").join(base))?;
    Ok((base.to_string(), None))
}

fn keep_tail(dir: &Path, tail: Tail) {
    if let Ok(mut tails) = TAILS.lock() {
        let map = tails.get_or_insert_with(HashMap::new);
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert(dir.to_path_buf(), tail);
    }
}

/// What [`Tail::link_add`] did.
enum Linked {
    Indexed(String, u32),
    /// Linked, but the add record could not be written (the tail is dropped).
    Unrecorded(String, super::Error),
    LinkFailed(std::io::Error),
}

/// Gives the message just linked as `new/<name>` in the Maildir `dir` its UID; returns it.
/// When the folder has no readable index yet, builds it (which indexes this file too).
pub fn index_delivery(dir: &Path, name: &str, size: u64, vsize: u64) -> Result<u32> {
    let cached = TAILS
        .lock()
        .ok()
        .and_then(|mut t| t.as_mut().and_then(|m| m.remove(dir)));
    let mut tail = match cached {
        Some(t) => t,
        None => match fresh_tail(dir, name)? {
            Fresh::Tail(t) => t,
            Fresh::Indexed(uid) => return Ok(uid),
        },
    };
    let uid = tail.add(dir, name, size, vsize)?;
    keep_tail(dir, tail);
    Ok(uid)
}

/// A tail read from the whole log, or the UID of the file if the log has it already.
enum Fresh {
    Tail(Tail),
    Indexed(u32),
}

/// Reads the whole log (after the link: a scan may have indexed the file already). A folder
/// without a readable index is opened, which builds one, possibly with this very file; a
/// concurrent first delivery may have built it without, hence the second look.
fn fresh_tail(dir: &Path, name: &str) -> Result<Fresh> {
    for _ in 0..2 {
        match Tail::open(dir, name)? {
            (_, Some(uid)) => return Ok(Fresh::Indexed(uid)),
            (Some(t), None) => return Ok(Fresh::Tail(t)),
            (None, None) => drop(Folder::open("", dir)?),
        }
    }
    Err(super::Error::Io {
        path: dir.join(super::LOG_FILE),
        source: std::io::Error::other("the index stays unreadable after a rebuild"),
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
                    uidvalidity: state.uidvalidity,
                    floor: (0, 0),
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
            // Replaced (compacted or rebuilt): start again from the new log.
            drop(guard);
            *self = match fresh_tail(dir, name)? {
                Fresh::Tail(t) => t,
                Fresh::Indexed(uid) => return Ok(uid),
            };
            let _guard = self.lock.lock()?;
            if let Some(uid) = self.catch_up(name)? {
                return Ok(uid);
            }
            return self.append(name, size, vsize);
        }
        if let Some(uid) = self.catch_up(name)? {
            return Ok(uid);
        }
        self.append(name, size, vsize)
    }

    /// Under the lock: catches up with the log, reserves the next UID, links `tmp` into
    /// `new/` under a name carrying it, and appends the add record.
    fn link_add(
        &mut self,
        dir: &Path,
        tmp: &Path,
        base: &str,
        size: u64,
        vsize: u64,
    ) -> Result<Linked> {
        let mut guard = self.lock.lock()?;
        if self.log.replaced()? {
            // Replaced (compacted or rebuilt): start again from the new log.
            drop(guard);
            *self = match fresh_tail(dir, "")? {
                Fresh::Tail(t) => t,
                Fresh::Indexed(_) => return Err(super::Error::NoSuchMessage(0)),
            };
            guard = self.lock.lock()?;
        }
        self.catch_up("")?;
        let uid = self.uidnext;
        uids::reserve(
            dir,
            self.uidvalidity,
            &mut self.floor,
            uid.saturating_add(1),
        )?;
        let name = uids::with_uid(base, uid);
        if let Err(e) = std::fs::hard_link(tmp, dir.join("new").join(&name)) {
            return Ok(Linked::LinkFailed(e));
        }
        let appended = self.append(&name, size, vsize);
        drop(guard);
        Ok(match appended {
            Ok(uid) => Linked::Indexed(name, uid),
            Err(e) => Linked::Unrecorded(name, e),
        })
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

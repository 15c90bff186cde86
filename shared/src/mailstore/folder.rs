//! [`Folder`]: one open folder and its in-memory copy of the index, kept current by reading
//! only what other writers appended since the last read. Owns the reading side (open, reload
//! after compaction, refresh) and the rule that nothing read is exposed before it is durable.
//! Writing is in `write.rs`, the Maildir scan in `scan.rs`. No lock is taken for reading.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::index::{self, Record, VERSION};
use super::lock::IndexLock;
use super::logfd::SharedLog;
use super::{Error, Flags, IoContext, LOG_FILE, MessageInfo, Result, scan, uids};

/// What changed in a folder since the previous [`Folder::refresh`] (or since it was opened),
/// by other handles: other sessions, other processes, the MDA. The handle's own writes are
/// reported by the calls that made them, not here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// New messages, ascending UIDs (IMAP `EXISTS`).
    pub added: Vec<u32>,
    /// Expunged messages (IMAP `EXPUNGE` / `VANISHED`); never ones also in `added`.
    pub expunged: Vec<u32>,
    /// Messages whose flags or keywords changed (IMAP `FETCH (FLAGS MODSEQ)`).
    pub flags: Vec<u32>,
    /// The index was rebuilt with a new UIDVALIDITY: every UID the client knows is void
    /// (RFC 3501 §2.3.1.1); an IMAP session must end, a POP3 session must not delete by UID.
    pub uidvalidity_changed: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// Adds `later` (changes that happened after these) to these.
    pub(crate) fn merge(&mut self, later: Changes) {
        self.added.extend(later.added);
        self.expunged.extend(later.expunged);
        self.flags.extend(later.flags);
        self.uidvalidity_changed |= later.uidvalidity_changed;
        self.settle();
    }

    /// Brings the lists noted (in any order) to their reported form, in time linear in their
    /// length (a bulk change of 20,000 messages must not cost 20,000² comparisons): a message
    /// both added and expunged is in neither, a flag change of an added or expunged message
    /// is not reported, each UID appears once per list. UIDs are never given twice, so the
    /// order in which the changes happened does not matter.
    fn settle(&mut self) {
        if self.expunged.is_empty() && self.flags.is_empty() {
            return;
        }
        let added: HashSet<u32> = self.added.iter().copied().collect();
        let gone: HashSet<u32> = self.expunged.iter().copied().collect();
        self.added.retain(|u| !gone.contains(u));
        let mut once = HashSet::new();
        self.expunged
            .retain(|u| !added.contains(u) && once.insert(*u));
        once.clear();
        self.flags
            .retain(|u| !added.contains(u) && !gone.contains(u) && once.insert(*u));
    }
}

/// The index as read so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// The UID of the last add record applied.
    pub last_uid: u32,
    pub highest_modseq: u64,
    pub messages: Vec<MessageInfo>,
    /// mtimes of `new/` and `cur/` that the last scan covered.
    pub scanned: Option<(i64, i64)>,
    /// Records in the log: compaction is due when far more than the messages.
    pub records: usize,
}

impl State {
    /// Applies a batch of records; expunges are applied at the end in one pass. The changes
    /// are noted in `changes` when given (not when a log is read from its start).
    pub fn apply(&mut self, records: Vec<Record>, changes: Option<&mut Changes>) {
        let mut noted = Changes::default();
        let mut gone = HashSet::new();
        for record in records {
            self.records += 1;
            self.apply_one(record, &mut gone, &mut noted);
        }
        if !gone.is_empty() {
            self.messages.retain(|m| !gone.contains(&m.uid));
        }
        if let Some(changes) = changes {
            changes.merge(noted);
        }
    }

    /// Applies one record, noting its change in `noted` (unsettled: see [`Changes::settle`]).
    fn apply_one(&mut self, record: Record, gone: &mut HashSet<u32>, noted: &mut Changes) {
        match record {
            Record::Header { .. } => {}
            Record::Add(a) => {
                // UIDs only grow (RFC 3501 §2.3.1.1); a smaller one is a duplicate, skipped.
                // (Compared with the last add, not UIDNEXT: a seeded header's UIDNEXT is
                // above the seeded UIDs that follow it.)
                if a.uid <= self.last_uid {
                    return;
                }
                self.last_uid = a.uid;
                self.uidnext = self.uidnext.max(a.uid.saturating_add(1));
                self.highest_modseq = self.highest_modseq.max(a.ms);
                noted.added.push(a.uid);
                self.messages.push(MessageInfo {
                    uid: a.uid,
                    modseq: a.ms,
                    flags: a.fl,
                    keywords: a.kw,
                    size: a.size,
                    vsize: a.vsize,
                    internal_date: a.date,
                    file: a.f,
                });
            }
            Record::Flags { uid, ms, fl, kw, f } => {
                self.highest_modseq = self.highest_modseq.max(ms);
                if let Some(m) = self.find_mut(uid).filter(|_| !gone.contains(&uid)) {
                    (m.modseq, m.flags, m.keywords, m.file) = (ms, fl, kw, f);
                    noted.flags.push(uid);
                }
            }
            Record::Moved { uid, f } => {
                if let Some(m) = self.find_mut(uid) {
                    m.file = f;
                }
            }
            Record::Expunge { uid, ms } => {
                self.highest_modseq = self.highest_modseq.max(ms);
                if self.find_mut(uid).is_some() && gone.insert(uid) {
                    noted.expunged.push(uid);
                }
            }
            Record::Scanned { new, cur } => self.scanned = Some((new, cur)),
        }
    }

    pub fn find_mut(&mut self, uid: u32) -> Option<&mut MessageInfo> {
        let i = self.messages.binary_search_by_key(&uid, |m| m.uid).ok()?;
        self.messages.get_mut(i)
    }

    pub fn find(&self, uid: u32) -> Option<&MessageInfo> {
        let i = self.messages.binary_search_by_key(&uid, |m| m.uid).ok()?;
        self.messages.get(i)
    }
}

/// The open log file (shared with the other handles of this process on it, `logfd.rs`)
/// and how far this handle has read it.
#[derive(Debug)]
pub(crate) struct LogFile {
    pub file: SharedLog,
    pub ino: u64,
    /// End of the last complete valid record read.
    pub offset: u64,
    pub path: PathBuf,
}

/// What opening a log found.
pub(crate) enum Opened {
    Ready(LogFile, State),
    /// Missing, or its header unreadable: the folder must be rebuilt from the Maildir.
    NeedsRebuild,
}

impl LogFile {
    /// Opens and reads the whole log of `dir`.
    pub fn open(dir: &Path) -> Result<Opened> {
        let path = dir.join(LOG_FILE);
        let (file, ino) = match SharedLog::open(&path) {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Opened::NeedsRebuild),
            Err(e) => return Err(e).at(&path),
        };
        let mut log = LogFile {
            file,
            ino,
            offset: 0,
            path,
        };
        let mut records = log.read_new()?;
        let Some(Record::Header {
            v,
            uidvalidity,
            uidnext,
            modseq,
        }) = records.first().cloned()
        else {
            return Ok(Opened::NeedsRebuild);
        };
        if v != VERSION {
            return Err(Error::IndexVersion {
                path: log.path,
                version: v,
            });
        }
        let mut state = State {
            uidvalidity,
            uidnext: uidnext.max(1),
            highest_modseq: modseq,
            ..State::default()
        };
        records.remove(0);
        state.records = 1;
        state.apply(records, None);
        Ok(Opened::Ready(log, state))
    }

    /// The complete valid records appended since the last read.
    pub fn read_new(&mut self) -> Result<Vec<Record>> {
        let len = self.file.metadata().at(&self.path)?.len();
        if len <= self.offset {
            return Ok(Vec::new());
        }
        let mut data = vec![0; (len - self.offset) as usize];
        let mut filled = 0;
        while filled < data.len() {
            match self
                .file
                .read_at(&mut data[filled..], self.offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).at(&self.path),
            }
        }
        let decoded = index::decode(&data[..filled]);
        self.offset += decoded.consumed as u64;
        Ok(decoded.records)
    }

    /// Whether the log at the path is still this file (compaction and rebuild replace it).
    pub fn replaced(&self) -> Result<bool> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(m.ino() != self.ino),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e).at(&self.path),
        }
    }
}

/// One open folder. Not shared between threads; open one per session (the handles of a
/// process share the log's descriptor, and hold the lock file open only while writing).
#[derive(Debug)]
pub struct Folder {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) lock: IndexLock,
    pub(crate) log: LogFile,
    pub(crate) state: State,
    /// Changes by others read (possibly under the lock by a write) but not yet returned.
    pub(crate) pending: Changes,
    /// Records read or written since the last `fdatasync` of the log.
    pub(crate) dirty: bool,
    /// The UIDNEXT floor last seen recorded (`uids.rs`).
    pub(crate) floor: uids::FloorCache,
}

impl Folder {
    /// Opens the folder in `dir` (named `name` for the caller's logs), rebuilding its index
    /// from the Maildir when it is missing or unreadable.
    pub fn open(name: &str, dir: &Path) -> Result<Folder> {
        if !dir.join("cur").is_dir() || !dir.join("new").is_dir() {
            return Err(Error::NoSuchFolder);
        }
        let lock = IndexLock::open(dir)?;
        let (log, state) = open_or_rebuild(dir, &lock)?;
        let mut folder = Folder {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            lock,
            log,
            state,
            pending: Changes::default(),
            dirty: true,
            floor: (0, 0),
        };
        folder.make_durable()?;
        Ok(folder)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn uidvalidity(&self) -> u32 {
        self.state.uidvalidity
    }

    pub fn uidnext(&self) -> u32 {
        self.state.uidnext
    }

    /// RFC 7162 §3.1.1 HIGHESTMODSEQ.
    pub fn highest_modseq(&self) -> u64 {
        self.state.highest_modseq
    }

    /// The messages in UID order; message sequence number = position + 1 as far as the
    /// index goes (an IMAP session keeps its own view until it has announced changes).
    pub fn messages(&self) -> &[MessageInfo] {
        &self.state.messages
    }

    pub fn message(&self, uid: u32) -> Option<&MessageInfo> {
        self.state.find(uid)
    }

    /// The files an IDLE session watches (inotify): the log, which every writer appends to
    /// (the MDA included), and `new/`, where outside deliverers put mail.
    pub fn watch_paths(&self) -> Vec<PathBuf> {
        vec![self.log.path.clone(), self.dir.join("new")]
    }

    /// Reads what other writers appended and returns what changed since the previous call.
    /// Cheap when nothing changed (two `stat`s). What it returns is durable first: a UID or
    /// modseq shown to a client is never reassigned after a crash.
    pub fn refresh(&mut self) -> Result<Changes> {
        self.read_others()?;
        self.make_durable()?;
        Ok(std::mem::take(&mut self.pending))
    }

    /// Reads new records into the state, noting the changes in `pending`; reloads the whole
    /// log when it was replaced.
    pub(crate) fn read_others(&mut self) -> Result<()> {
        if self.log.replaced()? {
            return self.reload();
        }
        let records = self.log.read_new()?;
        if !records.is_empty() {
            self.dirty = true;
            self.state.apply(records, Some(&mut self.pending));
        }
        Ok(())
    }

    /// Reads a replaced log from the start and diffs it against the state it replaces.
    fn reload(&mut self) -> Result<()> {
        let (log, state) = open_or_rebuild(&self.dir, &self.lock)?;
        let old = std::mem::replace(&mut self.state, state);
        self.log = log;
        self.dirty = true;
        diff(&old, &self.state, &mut self.pending);
        Ok(())
    }

    /// `fdatasync` of the log if records were read or written since the last one (unless
    /// another handle of this process synced past them already).
    pub(crate) fn make_durable(&mut self) -> Result<()> {
        if self.dirty {
            let offset = self.log.offset;
            self.log.file.sync_to(offset).at(&self.log.path)?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Opens the file of message `uid` for reading. When another session renamed it (flags
    /// changed) since this handle last looked, the Maildir is scanned and the open retried.
    pub fn open_message(&mut self, uid: u32) -> Result<File> {
        for attempt in 0..2 {
            let m = self.state.find(uid).ok_or(Error::NoSuchMessage(uid))?;
            let path = self.dir.join(&m.file);
            match File::open(&path) {
                Ok(f) => return Ok(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt == 0 => {
                    // What is read here is shown (the message's new flags, its modseq):
                    // durable first, as in `refresh`.
                    self.read_others()?;
                    self.make_durable()?;
                    if self
                        .state
                        .find(uid)
                        .is_some_and(|m| self.dir.join(&m.file) == path)
                    {
                        self.sync_listing(true)?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e).at(&path),
            }
        }
        Err(Error::NoSuchMessage(uid))
    }
}

/// Opens the log of `dir`, rebuilding it (under the lock) when missing or unreadable.
fn open_or_rebuild(dir: &Path, lock: &IndexLock) -> Result<(LogFile, State)> {
    if let Opened::Ready(log, state) = LogFile::open(dir)? {
        return Ok((log, state));
    }
    let _guard = lock.lock()?;
    // Another process may have rebuilt it while this one waited for the lock.
    if let Opened::Ready(log, state) = LogFile::open(dir)? {
        return Ok((log, state));
    }
    scan::rebuild(dir)?;
    match LogFile::open(dir)? {
        Opened::Ready(log, state) => Ok((log, state)),
        Opened::NeedsRebuild => Err(Error::Io {
            path: dir.join(LOG_FILE),
            source: std::io::Error::other("the rebuilt index is unreadable"),
        }),
    }
}

/// The changes from `old` to `new` (after a reload).
fn diff(old: &State, new: &State, changes: &mut Changes) {
    let mut found = Changes {
        uidvalidity_changed: old.uidvalidity != new.uidvalidity,
        ..Changes::default()
    };
    let before: HashMap<u32, u64> = old.messages.iter().map(|m| (m.uid, m.modseq)).collect();
    let after: HashSet<u32> = new.messages.iter().map(|m| m.uid).collect();
    for m in &old.messages {
        if !after.contains(&m.uid) {
            found.expunged.push(m.uid);
        }
    }
    for m in &new.messages {
        match before.get(&m.uid) {
            None => found.added.push(m.uid),
            Some(&ms) if ms != m.modseq => found.flags.push(m.uid),
            Some(_) => {}
        }
    }
    changes.merge(found);
}

/// Flags of a file name's info (`cur/x:2,FS` → flagged, seen); none for `new/` files.
pub(crate) fn flags_of(file: &str) -> (Flags, &str) {
    match file.rsplit_once(":2,") {
        Some((_, info)) => (Flags::from_maildir(info), info),
        None => (Flags::EMPTY, ""),
    }
}

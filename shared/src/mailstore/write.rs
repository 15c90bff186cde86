//! The writing side of a [`Folder`]: every change goes through [`Folder::with_lock`] (lock,
//! catch up with other writers, cut a torn tail, append, apply, compact when due, unlock,
//! `fdatasync`). Flag changes, expunges, appends and copies live here. Expunges, appends and
//! copies make the Maildir change durable before the index records that promise it; flag
//! renames are not synced (a crash may lose a flag, not a message: `docs/mailstore.md`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::folder::{Changes, Folder, LogFile, Opened};
use super::index::{self, Added, Record, VERSION};
use super::scan::{self, Counters};
use super::{Error, Flags, IoContext, LOG_FILE, Result, base_of, dovecot, uids};
use crate::maildir::{sync_dir, unique_name};

/// Compaction is due when the log holds this many records and more than twice as many as
/// there are messages.
const COMPACT_MIN_RECORDS: usize = 1000;

/// How STORE combines the given flags with a message's (RFC 3501 §6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Add,
    Remove,
    Replace,
}

/// What [`Folder::store_flags`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoreOutcome {
    /// Messages whose flags changed, with their new modseq.
    pub modified: Vec<(u32, u64)>,
    /// Messages left alone because their modseq exceeded UNCHANGEDSINCE (RFC 7162 §3.1.3:
    /// the `[MODIFIED ...]` set).
    pub conflicts: Vec<u32>,
}

impl Folder {
    /// Runs `build` under the lock, after catching up with other writers (their changes go
    /// to the next `refresh`); appends the records it returns, applies them, compacts when
    /// due, unlocks, and makes the log durable. Returns `build`'s value and the changes its
    /// records made.
    pub(crate) fn with_lock<T>(
        &mut self,
        build: impl FnOnce(&mut Folder) -> Result<(Vec<Record>, T)>,
    ) -> Result<(T, Changes)> {
        self.with_lock_then(Durable::Yes, build)
    }

    /// [`Folder::with_lock`]; with [`Durable::Later`] the log is not `fdatasync`ed here (the
    /// next handle that reads the records does it before showing them).
    fn with_lock_then<T>(
        &mut self,
        durable: Durable,
        build: impl FnOnce(&mut Folder) -> Result<(Vec<Record>, T)>,
    ) -> Result<(T, Changes)> {
        let guard = self.lock.lock()?;
        self.read_others()?;
        self.truncate_torn()?;
        let (records, value) = build(self)?;
        let mut own = Changes::default();
        if !records.is_empty() {
            self.append_records(&records)?;
            self.state.apply(records, Some(&mut own));
            if self.state.records >= COMPACT_MIN_RECORDS
                && self.state.records > 2 * (self.state.messages.len() + 1)
            {
                self.compact()?;
            }
        }
        drop(guard);
        if durable == Durable::Yes {
            self.make_durable()?;
        }
        Ok((value, own))
    }

    /// Under the lock nobody is writing: bytes past the last valid record are a tail torn by
    /// a crash. Cut them so that the next record starts on a line of its own.
    fn truncate_torn(&mut self) -> Result<()> {
        let len = self.log.file.metadata().at(&self.log.path)?.len();
        if len > self.log.offset {
            tracing::warn!(event = "mailstore.torn_tail", log = %self.log.path.display(), bytes = len - self.log.offset, "cutting a torn record off the index log");
            self.log.file.set_len(self.log.offset).at(&self.log.path)?;
        }
        Ok(())
    }

    fn append_records(&mut self, records: &[Record]) -> Result<()> {
        let mut buf = Vec::new();
        for r in records {
            index::encode(r, &mut buf);
        }
        self.log.file.write_all(&buf).at(&self.log.path)?;
        self.log.offset += buf.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Writes a fresh log holding only the current state and puts it in place (readers see
    /// the new inode and reload).
    fn compact(&mut self) -> Result<()> {
        let s = &self.state;
        let mut records = vec![Record::Header {
            v: VERSION,
            uidvalidity: s.uidvalidity,
            uidnext: s.uidnext,
            modseq: s.highest_modseq,
        }];
        records.extend(s.messages.iter().map(|m| {
            Record::Add(Added {
                uid: m.uid,
                ms: m.modseq,
                f: m.file.clone(),
                fl: m.flags,
                kw: m.keywords.clone(),
                size: m.size,
                vsize: m.vsize,
                date: m.internal_date,
            })
        }));
        if let Some((new, cur)) = s.scanned {
            records.push(Record::Scanned { new, cur });
        }
        replace_log(&self.dir, &records)?;
        let Opened::Ready(log, state) = LogFile::open(&self.dir)? else {
            return Err(Error::Io {
                path: self.log.path.clone(),
                source: std::io::Error::other("the compacted index is unreadable"),
            });
        };
        (self.log, self.state, self.dirty) = (log, state, false);
        Ok(())
    }

    /// STORE (RFC 3501 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3). System flags, and the
    /// keywords `dovecot-keywords` has letters for, are also written into the file names
    /// (renamed into `cur/`). The records are durable on return (a client may see their
    /// modseqs); the renames are not made durable by themselves (the "Flag changes" rule of
    /// `docs/mailstore.md`: a crash can lose a flag, never a message or its UID). Messages
    /// whose flags would not change get no new modseq.
    pub fn store_flags(
        &mut self,
        uids: &[u32],
        op: StoreOp,
        flags: Flags,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome> {
        let change = FlagChange {
            op,
            flags,
            keywords,
            unchanged_since,
        };
        let (outcome, _) = self.with_lock_then(Durable::Yes, |f| f.flag_records(uids, &change))?;
        Ok(outcome)
    }

    /// Marks messages \Seen (POP3 at QUIT; RFC 1939 has no flags, this is IMAP's view of what
    /// POP3 read). Nothing is synced: POP3 shows no modseq, and a \Seen lost in a crash
    /// loses no mail (`docs/mailstore.md`, "Flag changes").
    pub fn mark_seen(&mut self, uids: &[u32]) -> Result<()> {
        let change = FlagChange {
            op: StoreOp::Add,
            flags: Flags::SEEN,
            keywords: &[],
            unchanged_since: None,
        };
        self.with_lock_then(Durable::Later, |f| f.flag_records(uids, &change))
            .map(drop)
    }

    /// Under the lock: renames the files of `uids` for `change` and returns the records.
    fn flag_records(
        &mut self,
        uids: &[u32],
        change: &FlagChange,
    ) -> Result<(Vec<Record>, StoreOutcome)> {
        let mut ids = Counters::of(&self.state);
        let (mut records, mut out) = (Vec::with_capacity(uids.len()), StoreOutcome::default());
        let letters = dovecot::read_keywords(&self.dir);
        // Renamed relative to the folder: the kernel walks two path components, not the
        // whole path, per rename.
        let dir = File::open(&self.dir).at(&self.dir)?;
        for &uid in uids {
            let Some(m) = self.state.find(uid) else {
                continue;
            };
            if change.unchanged_since.is_some_and(|since| m.modseq > since) {
                out.conflicts.push(uid);
                continue;
            }
            let (fl, kw) = combine(m.flags, &m.keywords, change);
            if fl == m.flags && kw == m.keywords {
                continue;
            }
            let file = match renamed_for(&dir, &self.dir, &m.file, uid, fl, &kw, &letters)? {
                Renamed::Same => m.file.clone(),
                Renamed::To(target) => target,
                // Removed by another program: the next sync expunges it.
                Renamed::Gone => continue,
            };
            let ms = ids.next_ms();
            out.modified.push((uid, ms));
            records.push(Record::Flags {
                uid,
                ms,
                fl,
                kw,
                f: file,
            });
        }
        Ok((records, out))
    }

    /// Removes messages (IMAP EXPUNGE, POP3 UPDATE state): the files are unlinked and their
    /// directories fsynced, then the expunge records are appended and fdatasynced, all before
    /// this returns (RFC 1939 §6 / RFC 3501 §6.4.3 acknowledge only after that). Returns the
    /// UIDs expunged (those of `uids` still present).
    pub fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>> {
        let (gone, _) = self.with_lock(|f| {
            let mut ids = Counters::of(&f.state);
            let (mut records, mut gone, mut dirs) = (Vec::new(), Vec::new(), [false; 2]);
            let mut missing = Vec::new();
            for &uid in uids {
                let Some(m) = f.state.find(uid) else { continue };
                match unlink(&f.dir, &m.file, &mut dirs)? {
                    true => {}
                    false => missing.push((m.base().to_string(), uid)),
                }
                records.push(Record::Expunge {
                    uid,
                    ms: ids.next_ms(),
                });
                gone.push(uid);
            }
            // Files not where the index says (renamed by another program, or a flag
            // change's rename lost in a crash): found by a listing, so that they do not
            // come back at the next sync.
            for file in scan::locate(&f.dir, &missing)? {
                unlink(&f.dir, &file, &mut dirs)?;
            }
            // A file unlinked from cur/ may have come there by a flag rename out of new/
            // that was never synced (flag renames are not): new/ is synced too, so that the
            // old name cannot come back after a crash.
            let dirs = [dirs[0] || dirs[1], dirs[1]];
            for (touched, sub) in dirs.iter().zip(["new", "cur"]) {
                if *touched {
                    sync_dir(&f.dir.join(sub)).at(&f.dir.join(sub))?;
                }
            }
            Ok((records, gone))
        })?;
        Ok(gone)
    }

    /// APPEND (RFC 3501 §6.3.11): writes `message` into `tmp/` (fsynced, mtime = internal
    /// date, default now), then under the lock gives it the next UID, links it into `cur/`
    /// with `flags` under a name carrying the UID (`uids.rs`), fsyncs `cur/` and records it.
    /// Returns the UID (RFC 4315 APPENDUID, with [`Folder::uidvalidity`]).
    pub fn append(
        &mut self,
        message: &[u8],
        flags: Flags,
        keywords: &[String],
        internal_date: Option<i64>,
    ) -> Result<u32> {
        let size = message.len() as u64;
        let vsize = size + bare_lfs(message);
        let base = unique_name(host(), size as usize, vsize as usize);
        let date = internal_date.unwrap_or_else(now_secs);
        let tmp = self.dir.join("tmp").join(&base);
        let mut kw = keywords.to_vec();
        kw.sort();
        kw.dedup();
        let item = NewFile {
            tmp: tmp.clone(),
            base,
            flags,
            keywords: kw,
            size,
            vsize,
            date,
        };
        let uids = write_file(&tmp, message, date).and_then(|()| self.index_new_files(vec![item]));
        let _ = std::fs::remove_file(&tmp);
        uids?.first().copied().ok_or_else(|| Error::Io {
            path: tmp,
            source: std::io::Error::other("the appended file vanished before indexing"),
        })
    }

    /// COPY (RFC 3501 §6.4.7, RFC 4315 COPYUID): each message is hard-linked (copied where
    /// links fail) into `dest`'s `tmp/`, then under `dest`'s lock given a UID and linked into
    /// its `cur/` with its flags, keywords and internal date, in the order of `uids`
    /// (`cur/` fsynced before the records). Returns (source UID, destination UID) pairs;
    /// messages expunged meanwhile are skipped. MOVE is this plus [`Folder::expunge`]
    /// (RFC 6851 §3.3).
    pub fn copy_to(&mut self, uids: &[u32], dest: &mut Folder) -> Result<Vec<(u32, u32)>> {
        let mut items = Vec::new();
        let mut sources = Vec::new();
        let staged = self.stage_copies(uids, dest, &mut items, &mut sources);
        let tmps: Vec<_> = items.iter().map(|i| i.tmp.clone()).collect();
        let new_uids = staged.and_then(|()| match items.is_empty() {
            true => Ok(Vec::new()),
            false => dest.index_new_files(items),
        });
        for tmp in tmps {
            let _ = std::fs::remove_file(tmp);
        }
        Ok(sources.into_iter().zip(new_uids?).collect())
    }

    /// Puts a copy of each message of `uids` into `dest`'s `tmp/`.
    fn stage_copies(
        &mut self,
        uids: &[u32],
        dest: &Folder,
        items: &mut Vec<NewFile>,
        sources: &mut Vec<u32>,
    ) -> Result<()> {
        for &uid in uids {
            // Opening first follows a rename by another session (and proves it exists).
            let Ok(source) = self.open_message(uid) else {
                continue;
            };
            let Some(m) = self.state.find(uid).cloned() else {
                continue;
            };
            let base = unique_name(host(), m.size as usize, m.vsize as usize);
            let tmp = dest.dir.join("tmp").join(&base);
            if std::fs::hard_link(self.dir.join(&m.file), &tmp).is_err() {
                copy_file(source, &tmp, m.internal_date)?;
            }
            sources.push(uid);
            items.push(NewFile {
                tmp,
                base,
                flags: m.flags,
                keywords: m.keywords,
                size: m.size,
                vsize: m.vsize,
                date: m.internal_date,
            });
        }
        Ok(())
    }

    /// Under the lock: gives each file staged in `tmp/` the next UID, links it into `cur/`
    /// under a name carrying it, fsyncs `cur/`, and records the adds. A file gone from `tmp/`
    /// is skipped.
    fn index_new_files(&mut self, items: Vec<NewFile>) -> Result<Vec<u32>> {
        let (uids, _) = self.with_lock(|f| {
            let mut ids = Counters::of(&f.state);
            let needed = ids.uid.saturating_add(items.len() as u32);
            uids::reserve(&f.dir, f.state.uidvalidity, &mut f.floor, needed)?;
            let (mut records, mut uids) = (Vec::new(), Vec::new());
            for item in items {
                let base = uids::with_uid(&item.base, ids.uid);
                let file = format!("cur/{base}:2,{}", item.flags.to_maildir());
                match std::fs::hard_link(&item.tmp, f.dir.join(&file)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e).at(&item.tmp),
                }
                uids.push(ids.uid);
                records.push(Record::Add(Added {
                    uid: ids.uid,
                    ms: ids.next_ms(),
                    f: file,
                    fl: item.flags,
                    kw: item.keywords,
                    size: item.size,
                    vsize: item.vsize,
                    date: item.date,
                }));
                ids.uid += 1;
            }
            if !records.is_empty() {
                sync_dir(&f.dir.join("cur")).at(&f.dir.join("cur"))?;
            }
            Ok((records, uids))
        })?;
        Ok(uids)
    }
}

/// Unlinks `file` of the folder `dir`, noting which of `new/` and `cur/` changed; false when
/// it was not there.
fn unlink(dir: &Path, file: &str, dirs: &mut [bool; 2]) -> Result<bool> {
    let path = dir.join(file);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            dirs[usize::from(file.starts_with("cur/"))] = true;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).at(&path),
    }
}

/// Whether a write `fdatasync`s the log before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durable {
    Yes,
    /// Left to the next handle that reads the records (`folder.rs`): for records whose
    /// modseqs nobody is shown now.
    Later,
}

/// A STORE's arguments.
struct FlagChange<'a> {
    op: StoreOp,
    flags: Flags,
    keywords: &'a [String],
    unchanged_since: Option<u64>,
}

/// A file staged in `tmp/`, waiting for its UID and its place in `cur/`.
struct NewFile {
    tmp: std::path::PathBuf,
    base: String,
    flags: Flags,
    keywords: Vec<String>,
    size: u64,
    vsize: u64,
    date: i64,
}

/// What a flag change did to a message's file.
enum Renamed {
    Same,
    To(String),
    Gone,
}

/// Renames `file` (of message `uid`) into `cur/` with the info its flags `fl` and keywords
/// `kw` call for: the system flag letters, then the letters `dovecot-keywords` gives its
/// keywords (so a Maildir reader that knows that file still sees them). The new name also
/// carries the UID (`uids.rs`). No rename when the info is already right. `dir` is the
/// folder directory `path`, open.
fn renamed_for(
    dir: &File,
    path: &Path,
    file: &str,
    uid: u32,
    fl: Flags,
    kw: &[String],
    letters: &[String],
) -> Result<Renamed> {
    let mut kw_letters: Vec<char> = kw
        .iter()
        .filter_map(|k| letters.iter().position(|l| l == k))
        .filter_map(|i| char::from_u32(u32::from(b'a') + i as u32))
        .collect();
    kw_letters.sort_unstable();
    let info = format!("{}{}", fl.to_maildir(), String::from_iter(kw_letters));
    if file.starts_with("cur/") && file.split_once(":2,").map(|(_, i)| i) == Some(info.as_str()) {
        return Ok(Renamed::Same);
    }
    let target = format!("cur/{}:2,{info}", uids::with_uid(base_of(file), uid));
    match nix::fcntl::renameat(dir, file, dir, target.as_str()) {
        Ok(()) => Ok(Renamed::To(target)),
        Err(nix::errno::Errno::ENOENT) => Ok(Renamed::Gone),
        Err(e) => Err(std::io::Error::from(e)).at(&path.join(file)),
    }
}

/// The flags and keywords STORE leaves on a message.
fn combine(old: Flags, old_kw: &[String], change: &FlagChange) -> (Flags, Vec<String>) {
    let (flags, keywords) = (change.flags, change.keywords);
    if keywords.is_empty() && change.op != StoreOp::Replace {
        // System flags only (the common case): the keywords stay as they are, sorted.
        let fl = match change.op {
            StoreOp::Remove => old.difference(flags),
            _ => old.union(flags),
        };
        return (fl, old_kw.to_vec());
    }
    let (fl, mut kw) = match change.op {
        StoreOp::Add => (old.union(flags), [old_kw, keywords].concat()),
        StoreOp::Remove => (
            old.difference(flags),
            old_kw
                .iter()
                .filter(|k| !keywords.contains(k))
                .cloned()
                .collect(),
        ),
        StoreOp::Replace => (flags, keywords.to_vec()),
    };
    kw.sort();
    kw.dedup();
    (fl, kw)
}

/// Writes a whole log to a temporary name, fsyncs it, renames it over `postern-index.log` and
/// fsyncs the directory: readers see either the old log or the complete new one.
pub(crate) fn replace_log(dir: &Path, records: &[Record]) -> Result<()> {
    let mut buf = Vec::new();
    for r in records {
        index::encode(r, &mut buf);
    }
    let tmp = dir.join(format!("{LOG_FILE}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .at(&tmp)?;
    file.write_all(&buf).at(&tmp)?;
    file.sync_data().at(&tmp)?;
    std::fs::rename(&tmp, dir.join(LOG_FILE)).at(&tmp)?;
    sync_dir(dir).at(dir)
}

/// Writes a new message file with its internal date as mtime, fsynced.
fn write_file(path: &Path, data: &[u8], date: i64) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .at(path)?;
    file.write_all(data).at(path)?;
    file.set_modified(time_of(date)).at(path)?;
    file.sync_all().at(path)
}

fn copy_file(mut source: File, target: &Path, date: i64) -> Result<()> {
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut source, &mut data).at(target)?;
    write_file(target, &data, date)
}

/// Line ends that are a bare LF: what CRLF conversion adds to the size.
pub(crate) fn bare_lfs(data: &[u8]) -> u64 {
    let mut prev = 0u8;
    let mut n = 0;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            n += 1;
        }
        prev = b;
    }
    n
}

fn time_of(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// This machine's name for Maildir file names.
fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".to_string())
    })
}

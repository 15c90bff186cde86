//! Keeping the index in line with the Maildir: [`Folder::sync`] (files added, moved, renamed
//! or removed by anyone, Postern or not), the rebuild of a missing index (seeded from
//! `dovecot-uidlist` when there is one), and the removal of stale files in `tmp/`. Runs under
//! the index lock; the only place that lists `new/` and `cur/`.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::folder::{Changes, Folder, State, flags_of};
use super::index::{Added, Record, VERSION};
use super::write::replace_log;
use super::{IoContext, Result, base_of, dovecot, uids};
use crate::maildir::sync_dir;

/// Maildir convention: a file in `tmp/` this old was left by a writer that died.
const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);
/// A directory mtime this close to the time of a scan may still change within the same
/// timestamp tick: such a scan is not recorded as complete, so the next sync lists again.
const MTIME_SETTLE_NS: i64 = 2_000_000_000;
/// Listings redone when the directories changed while being listed.
const LIST_ATTEMPTS: usize = 3;

/// The next UID and modseq while records are built.
pub(crate) struct Counters {
    pub uid: u32,
    pub ms: u64,
}

impl Counters {
    pub fn of(state: &State) -> Counters {
        Counters {
            uid: state.uidnext,
            ms: state.highest_modseq + 1,
        }
    }

    pub fn next_ms(&mut self) -> u64 {
        self.ms += 1;
        self.ms - 1
    }
}

impl Folder {
    /// Brings the index in line with the Maildir under the lock: files not indexed get UIDs
    /// (in delivery order), files renamed by other programs (flags, `new/`→`cur/`) are
    /// followed, files gone are expunged; stale `tmp/` files are removed. Skips the listing
    /// when neither `new/` nor `cur/` changed since the last complete scan. Returns every
    /// change since the previous [`Folder::refresh`], including the ones this scan found.
    pub fn sync(&mut self) -> Result<Changes> {
        self.sync_listing(false)
    }

    /// [`Folder::sync`]; with `force`, the directories are listed even when their mtimes are
    /// the ones the last scan covered (a file the index names is missing: after a crash, a
    /// rename the index recorded may not have reached the disk, and the directories' mtimes
    /// went back with it).
    pub(crate) fn sync_listing(&mut self, force: bool) -> Result<Changes> {
        let ((), found) = self.with_lock(|folder| Ok((folder.scan_records(force)?, ())))?;
        self.pending.merge(found);
        self.refresh()
    }

    fn scan_records(&mut self, force: bool) -> Result<Vec<Record>> {
        let mtimes = (
            mtime_ns(&self.dir.join("new"))?,
            mtime_ns(&self.dir.join("cur"))?,
        );
        if self.state.scanned == Some(mtimes) && !force {
            return Ok(Vec::new());
        }
        let (mut files, mtimes) = list(&self.dir)?;
        let mut ids = Counters::of(&self.state);
        let mut records = Vec::new();
        let mut by_stem = None;
        for m in &self.state.messages {
            let Some(file) = take_file(&mut files, &mut by_stem, m.base(), m.uid) else {
                records.push(Record::Expunge {
                    uid: m.uid,
                    ms: ids.next_ms(),
                });
                continue;
            };
            if file == m.file {
                continue;
            }
            let (flags, _) = flags_of(&file);
            records.push(if flags == m.flags {
                Record::Moved {
                    uid: m.uid,
                    f: file,
                }
            } else {
                Record::Flags {
                    uid: m.uid,
                    ms: ids.next_ms(),
                    fl: flags,
                    kw: m.keywords.clone(),
                    f: file,
                }
            });
        }
        if !files.is_empty() {
            let keywords = dovecot::read_keywords(&self.dir);
            let adopt = self.adoptable(&files);
            let adds = add_records(&self.dir, files, &mut ids, Some((&adopt, 0)), &keywords)?;
            uids::reserve(&self.dir, self.state.uidvalidity, &mut self.floor, ids.uid)?;
            records.extend(rename_to_uids(&self.dir, adds)?);
        }
        clean_tmp(&self.dir);
        if settled(mtimes) {
            records.push(Record::Scanned {
                new: mtimes.0,
                cur: mtimes.1,
            });
        }
        Ok(records)
    }
}

impl Folder {
    /// Files not in the index whose names carry a UID that may be theirs: at or above UIDNEXT
    /// (never shown to anyone) and below the recorded floor (given by Postern, whose record of
    /// the file was lost in a crash or never written). Others get a new UID and are renamed.
    fn adoptable(&self, files: &HashMap<String, String>) -> HashMap<String, u32> {
        let floor = match uids::read_record(&self.dir) {
            Some(r) if r.uidvalidity == self.state.uidvalidity => r.floor.unwrap_or(0),
            _ => 0,
        };
        let mut taken = HashSet::new();
        let mut named: Vec<(u32, &String)> = files
            .keys()
            .filter_map(|b| uids::uid_in_name(b).map(|u| (u, b)))
            .filter(|&(u, _)| u >= self.state.uidnext && u < floor)
            .collect();
        named.sort();
        named
            .into_iter()
            .filter(|&(u, _)| taken.insert(u))
            .map(|(u, b)| (b.clone(), u))
            .collect()
    }
}

/// Writes a fresh index for the Maildir in `dir` (called under the lock when the log is
/// missing or unreadable), following [`uids::plan`]: the recorded UIDVALIDITY and the UIDs in
/// the file names when they are consistent, `dovecot-uidlist` for a folder Postern never
/// indexed, else a new UIDVALIDITY (and the files whose names carry an old UID renamed to
/// carry their new one). The record's floor is made durable before the log.
pub(crate) fn rebuild(dir: &Path) -> Result<()> {
    let record = uids::read_record(dir);
    let (files, mtimes) = list(dir)?;
    let names: HashMap<String, u32> = files
        .keys()
        .filter_map(|b| uids::uid_in_name(b).map(|u| (b.clone(), u)))
        .collect();
    let seed = dovecot::read_uidlist(dir);
    let plan = uids::plan(record, &names, seed.as_ref());
    let uidvalidity = plan
        .uidvalidity
        .unwrap_or_else(|| uids::new_uidvalidity(record.map(|r| r.uidvalidity)));
    let mut ids = Counters { uid: 1, ms: 1 };
    let keywords = dovecot::read_keywords(dir);
    let mut records = vec![Record::Header {
        v: VERSION,
        uidvalidity,
        uidnext: plan.next,
        modseq: 1,
    }];
    let adds = add_records(
        dir,
        files,
        &mut ids,
        Some((&plan.uids, plan.next)),
        &keywords,
    )?;
    let uidnext = ids.uid.max(plan.next);
    uids::write_record(dir, uidvalidity, uidnext.saturating_add(uids::HEADROOM))?;
    records.extend(rename_to_uids(dir, adds)?);
    if settled(mtimes) {
        records.push(Record::Scanned {
            new: mtimes.0,
            cur: mtimes.1,
        });
    }
    tracing::info!(
        event = "mailstore.rebuild",
        dir = %dir.display(),
        uidvalidity,
        kept = plan.uidvalidity.is_some() && !plan.seeded,
        seeded = plan.seeded,
        previous = record.map(|r| r.uidvalidity),
        messages = records.len().saturating_sub(1),
        "index rebuilt from the Maildir"
    );
    replace_log(dir, &records)
}

/// Renames the files of add records whose names carry a UID other than the one given (an
/// old one after a new UIDVALIDITY, a duplicate) to carry theirs, and makes the renames
/// durable; files without `U=` keep their names.
fn rename_to_uids(dir: &Path, mut adds: Vec<Record>) -> Result<Vec<Record>> {
    let mut touched = [false; 2];
    for record in &mut adds {
        let Record::Add(a) = record else { continue };
        let base = base_of(&a.f);
        if uids::uid_in_name(base).is_none_or(|u| u == a.uid) {
            continue;
        }
        let (sub, info) = a.f.split_once('/').map_or(("new", ""), |(s, rest)| {
            (s, rest.split_once(':').map_or("", |(_, i)| i))
        });
        let sep = if info.is_empty() { "" } else { ":" };
        let target = format!("{sub}/{}{sep}{info}", uids::with_uid(base, a.uid));
        match std::fs::rename(dir.join(&a.f), dir.join(&target)) {
            Ok(()) => {
                touched[usize::from(sub == "cur")] = true;
                a.f = target;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&dir.join(&a.f)),
        }
    }
    for (done, sub) in touched.iter().zip(["new", "cur"]) {
        if *done {
            sync_dir(&dir.join(sub)).at(&dir.join(sub))?;
        }
    }
    Ok(adds)
}

/// Add records for `files` (base → file): first those with a seeded UID, in UID order, then
/// the rest in delivery order (mtime, then name) from `max(ids.uid, seed's uidnext)`.
fn add_records(
    dir: &Path,
    files: HashMap<String, String>,
    ids: &mut Counters,
    seed: Option<(&HashMap<String, u32>, u32)>,
    keywords: &[String],
) -> Result<Vec<Record>> {
    let mut seeded = Vec::new();
    let mut fresh = Vec::new();
    for (base, file) in files {
        match seed.and_then(|(uids, _)| uids.get(&base)) {
            Some(&uid) => seeded.push((uid, file)),
            None => fresh.push(file),
        }
    }
    seeded.sort();
    let mut records = Vec::new();
    for (uid, file) in seeded {
        // A seeded UID below one already given (a damaged uidlist) is given anew below.
        if uid < ids.uid {
            fresh.push(file);
            continue;
        }
        ids.uid = uid;
        if let Some(r) = add_record(dir, file, ids, keywords)? {
            records.push(r);
        }
    }
    ids.uid = ids.uid.max(seed.map_or(0, |(_, next)| next));
    let mut dated = Vec::new();
    for file in fresh {
        if let Ok(meta) = std::fs::metadata(dir.join(&file)) {
            dated.push((meta.mtime(), file));
        }
    }
    dated.sort();
    for (_, file) in dated {
        if let Some(r) = add_record(dir, file, ids, keywords)? {
            records.push(r);
        }
    }
    Ok(records)
}

/// The add record of `file` with the next UID; `None` when the file vanished meanwhile.
fn add_record(
    dir: &Path,
    file: String,
    ids: &mut Counters,
    keywords: &[String],
) -> Result<Option<Record>> {
    let path = dir.join(&file);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(&path),
    };
    let (flags, info) = flags_of(&file);
    let mut kw: Vec<String> = info
        .bytes()
        .filter(u8::is_ascii_lowercase)
        .filter_map(|b| keywords.get(usize::from(b - b'a')))
        .filter(|k| !k.is_empty())
        .cloned()
        .collect();
    kw.sort();
    kw.dedup();
    let base = base_of(&file);
    let size = field(base, ",S=").unwrap_or(meta.len());
    let vsize = match field(base, ",W=") {
        Some(v) => v,
        None => crlf_size(&path, &meta)?,
    };
    let record = Record::Add(Added {
        uid: ids.uid,
        ms: ids.next_ms(),
        f: file,
        fl: flags,
        kw,
        size,
        vsize,
        date: meta.mtime(),
    });
    ids.uid = ids.uid.saturating_add(1);
    Ok(Some(record))
}

/// `,S=123` / `,W=130` in a Maildir base name.
fn field(base: &str, key: &str) -> Option<u64> {
    let (_, rest) = base.split_once(key)?;
    let digits = rest.split(',').next()?;
    digits.parse().ok()
}

/// The size of a file with its bare LF line ends counted as CRLF (RFC 3501 §6.4.5
/// RFC822.SIZE): read once for files whose name does not carry `,W=`.
fn crlf_size(path: &Path, meta: &Metadata) -> Result<u64> {
    let data = std::fs::read(path).at(path)?;
    Ok(meta.len() + super::write::bare_lfs(&data))
}

/// Takes the file of the message with base name `base` and UID `uid` out of a listing: the
/// file of that base, or else one whose base differs only by its `,U=` field, when that field
/// is absent or `uid`. The second case is a flag change whose rename (which adds `U=` to the
/// names of files indexed by a scan) and index record did not both reach the disk before a
/// crash; the message keeps its UID. `by_stem` (base without `U=` → base) is built on first
/// need.
fn take_file(
    files: &mut HashMap<String, String>,
    by_stem: &mut Option<HashMap<String, String>>,
    base: &str,
    uid: u32,
) -> Option<String> {
    if let Some(file) = files.remove(base) {
        return Some(file);
    }
    let stems = by_stem.get_or_insert_with(|| {
        files
            .keys()
            .map(|b| (uids::without_uid(b), b.clone()))
            .collect()
    });
    let key = stems.remove(&uids::without_uid(base))?;
    match uids::uid_in_name(&key) {
        Some(u) if u != uid => None,
        _ => files.remove(&key),
    }
}

/// The files now holding the messages `missing` ((base name, UID) pairs whose files are not
/// where the index says), found by one listing as the scan would find them.
pub(crate) fn locate(dir: &Path, missing: &[(String, u32)]) -> Result<Vec<String>> {
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let (mut files, _) = list(dir)?;
    let mut by_stem = None;
    Ok(missing
        .iter()
        .filter_map(|(base, uid)| take_file(&mut files, &mut by_stem, base, *uid))
        .collect())
}

/// Lists `new/` and `cur/`: base name → file (`new/x` or `cur/x:2,...`), with the mtimes of
/// the two directories the listing is known to cover (listed again when they changed while
/// being listed, since a file renamed meanwhile may be missed under both names).
fn list(dir: &Path) -> Result<(HashMap<String, String>, (i64, i64))> {
    let (new, cur) = (dir.join("new"), dir.join("cur"));
    let mut files = HashMap::new();
    let mut before = (mtime_ns(&new)?, mtime_ns(&cur)?);
    for _ in 0..LIST_ATTEMPTS {
        files.clear();
        for (sub, path) in [("new", &new), ("cur", &cur)] {
            list_into(&mut files, sub, path)?;
        }
        let after = (mtime_ns(&new)?, mtime_ns(&cur)?);
        if after == before {
            break;
        }
        before = after;
    }
    Ok((files, before))
}

/// Adds the files of `path` (`new/` or `cur/`, named `sub`) to a listing; names that are
/// not UTF-8 or start with `.` are skipped. (Read with `getdents` directly: two allocations
/// per file, not five.)
fn list_into(files: &mut HashMap<String, String>, sub: &str, path: &Path) -> Result<()> {
    use nix::{dir::Dir, fcntl::OFlag, sys::stat::Mode};
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut dir = Dir::open(path, flags, Mode::empty())
        .map_err(std::io::Error::from)
        .at(path)?;
    for entry in dir.iter() {
        let entry = entry.map_err(std::io::Error::from).at(path)?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let mut file = String::with_capacity(sub.len() + 1 + name.len());
        file.push_str(sub);
        file.push('/');
        file.push_str(name);
        // The same base in both (another program moving it): the cur/ one wins.
        files.insert(base_of(name).to_string(), file);
    }
    Ok(())
}

pub(crate) fn mtime_ns(path: &Path) -> Result<i64> {
    let meta = std::fs::metadata(path).at(path)?;
    Ok(meta.mtime() * 1_000_000_000 + meta.mtime_nsec())
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Whether both mtimes are old enough that a later change must show as a different mtime.
fn settled((new, cur): (i64, i64)) -> bool {
    let now = now_ns();
    now - new > MTIME_SETTLE_NS && now - cur > MTIME_SETTLE_NS
}

/// Removes files in `tmp/` older than 36 hours (Maildir convention); errors only logged.
pub(crate) fn clean_tmp(dir: &Path) {
    let tmp = dir.join("tmp");
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    let limit = SystemTime::now() - TMP_MAX_AGE;
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < limit);
        if old && let Err(e) = std::fs::remove_file(entry.path()) {
            tracing::warn!(event = "mailstore.tmp_cleanup", file = %entry.path().display(), error = %e, "cannot remove a stale tmp/ file");
        }
    }
}

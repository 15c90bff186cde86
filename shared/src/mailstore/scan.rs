//! Keeping the index in line with the Maildir: [`Folder::sync`] (files added, moved, renamed
//! or removed by anyone, Postern or not), the rebuild of a missing index (seeded from
//! `dovecot-uidlist` when there is one), and the removal of stale files in `tmp/`. Runs under
//! the index lock; the only place that lists `new/` and `cur/`.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::folder::{Changes, Folder, State, flags_of};
use super::index::{Added, Record, VERSION};
use super::write::replace_log;
use super::{IoContext, Result, base_of, dovecot};

/// Maildir convention: a file in `tmp/` this old was left by a writer that died.
const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);
/// A directory mtime this close to the time of a scan may still change within the same
/// timestamp tick: such a scan is not recorded as complete, so the next sync lists again.
const MTIME_SETTLE_NS: i64 = 2_000_000_000;
/// Listings redone when the directories changed while being listed.
const LIST_ATTEMPTS: usize = 3;
/// Remembers the last UIDVALIDITY given to the folder, so a rebuild never reuses it.
const UIDVALIDITY_FILE: &str = "postern-uidvalidity";

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
        let ((), found) = self.with_lock(|folder| Ok((folder.scan_records()?, ())))?;
        self.pending.merge(found);
        self.refresh()
    }

    fn scan_records(&mut self) -> Result<Vec<Record>> {
        let mtimes = (
            mtime_ns(&self.dir.join("new"))?,
            mtime_ns(&self.dir.join("cur"))?,
        );
        if self.state.scanned == Some(mtimes) {
            return Ok(Vec::new());
        }
        let (mut files, mtimes) = list(&self.dir)?;
        let mut ids = Counters::of(&self.state);
        let mut records = Vec::new();
        for m in &self.state.messages {
            let Some(file) = files.remove(m.base()) else {
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
        let keywords = dovecot::read_keywords(&self.dir);
        records.extend(add_records(&self.dir, files, &mut ids, None, &keywords)?);
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

/// Writes a fresh index for the Maildir in `dir` (called under the lock when the log is
/// missing or unreadable): UIDVALIDITY, UIDNEXT and UIDs from `dovecot-uidlist` when it
/// exists, else a new UIDVALIDITY and UIDs in delivery order.
pub(crate) fn rebuild(dir: &Path) -> Result<()> {
    let seed = dovecot::read_uidlist(dir);
    let uidvalidity = match &seed {
        Some(s) => s.uidvalidity,
        None => new_uidvalidity(dir)?,
    };
    let uidnext = seed.as_ref().map_or(1, |s| s.uidnext.max(1));
    let mut ids = Counters { uid: 1, ms: 1 };
    let (files, mtimes) = list(dir)?;
    let keywords = dovecot::read_keywords(dir);
    let mut records = vec![Record::Header {
        v: VERSION,
        uidvalidity,
        uidnext,
        modseq: 1,
    }];
    records.extend(add_records(
        dir,
        files,
        &mut ids,
        seed.as_ref().map(|s| (&s.uids, uidnext)),
        &keywords,
    )?);
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
        seeded = seed.is_some(),
        messages = records.len().saturating_sub(1),
        "index rebuilt from the Maildir"
    );
    replace_log(dir, &records)
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
            for entry in std::fs::read_dir(path).at(path)? {
                let entry = entry.at(path)?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                // The same base in both (another program moving it): the cur/ one wins.
                files.insert(base_of(&name).to_string(), format!("{sub}/{name}"));
            }
        }
        let after = (mtime_ns(&new)?, mtime_ns(&cur)?);
        if after == before {
            break;
        }
        before = after;
    }
    Ok((files, before))
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

/// A UIDVALIDITY never given to this folder before: the current time, or one more than the
/// last given if the clock is behind (RFC 3501 §2.3.1.1). Remembered in a file beside the
/// index, fsynced before the index that uses it.
fn new_uidvalidity(dir: &Path) -> Result<u32> {
    let path = dir.join(UIDVALIDITY_FILE);
    let last = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 16).ok())
        .unwrap_or(0);
    let now = (now_ns() / 1_000_000_000) as u32;
    let value = now.max(last.wrapping_add(1)).max(1);
    let tmp = dir.join(format!("{UIDVALIDITY_FILE}.tmp"));
    std::fs::write(&tmp, format!("{value:08x}\n")).at(&tmp)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .at(&tmp)?;
    std::fs::rename(&tmp, &path).at(&path)?;
    Ok(value)
}

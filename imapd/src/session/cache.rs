//! The per-folder cache of encoded ENVELOPE, BODY and BODYSTRUCTURE items and of the texts
//! SEARCH matches header keys against (`postern-cache` beside the folder's index,
//! docs/mailstore.md), so that a FETCH of those items or a SEARCH FROM/TO/CC/BCC/SUBJECT
//! over a large folder reads no message twice. Derived data: a missing, torn or stale file
//! only costs re-reading messages. Records are appended in one `write` per batch
//! (`O_APPEND`) by any session; each carries a checksum, and reading stops at the first bad
//! one. The file starts with the folder's UIDVALIDITY and is replaced when that changes.
//! Reads the file only when first used and, at [`Cache::refresh`], what others appended.
//!
//! Format: `postern-cache 2 <uidvalidity>\n`, then per message
//! `<uid> <hash hex> <len envelope> <len search> <len body> <len bodystructure>\n<the
//! four>\n`: the items encoded as in a FETCH response with the default (non-UTF-8)
//! encoding, which every client accepts, and the search texts in `headertext.rs`'s stored
//! form. An entry made from the header alone has empty BODY and BODYSTRUCTURE; a later
//! record of the same UID replaces an earlier one, except that a header-only record does
//! not replace a whole one.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::headertext;

pub const FILE: &str = "postern-cache";
const VERSION: u32 = 2;

/// The cached items of a message, encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry<'a> {
    pub envelope: &'a [u8],
    /// The header texts for SEARCH (`headertext.rs` stored form).
    pub search: &'a [u8],
    /// BODY and BODYSTRUCTURE: empty when the entry was made from the header alone.
    pub body: &'a [u8],
    pub bodystructure: &'a [u8],
}

impl Entry<'_> {
    /// Whether BODY and BODYSTRUCTURE are there.
    pub fn has_structure(&self) -> bool {
        !self.body.is_empty()
    }

    fn parts(&self) -> [&[u8]; 4] {
        [self.envelope, self.search, self.body, self.bodystructure]
    }
}

/// An entry being made, before it goes to the cache.
#[derive(Debug, Default)]
pub(super) struct Made {
    pub envelope: Vec<u8>,
    pub search: Vec<u8>,
    pub body: Vec<u8>,
    pub bodystructure: Vec<u8>,
}

impl Made {
    pub fn entry(&self) -> Entry<'_> {
        Entry {
            envelope: &self.envelope,
            search: &self.search,
            body: &self.body,
            bodystructure: &self.bodystructure,
        }
    }
}

/// Where an entry's four items lie in [`Cache::data`], back to back.
#[derive(Debug, Clone, Copy)]
struct Loc {
    start: usize,
    lens: [usize; 4],
}

pub(super) struct Cache {
    path: PathBuf,
    uidvalidity: u32,
    /// The file as read, then the records this session added: entries point into it.
    data: Vec<u8>,
    entries: HashMap<u32, Loc>,
    /// Device and inode of the file as read, and how much of it was read: when it grew,
    /// others appended; when it is another file, it was rewritten.
    file: Option<(u64, u64)>,
    read_len: u64,
    loaded: bool,
    /// The file had a bad record or another UIDVALIDITY: rewrite it at the next save.
    rewrite: bool,
    /// Records added and not written yet.
    pending: Vec<u8>,
}

impl Cache {
    pub fn new(folder_dir: &Path, uidvalidity: u32) -> Cache {
        Cache {
            path: folder_dir.join(FILE),
            uidvalidity,
            data: Vec::new(),
            entries: HashMap::new(),
            file: None,
            read_len: 0,
            loaded: false,
            rewrite: false,
            pending: Vec::new(),
        }
    }

    /// The entry of `uid`, reading the file on first use.
    pub fn get(&mut self, uid: u32) -> Option<Entry<'_>> {
        if !self.loaded {
            self.load();
        }
        let loc = *self.entries.get(&uid)?;
        Some(self.entry(loc))
    }

    fn entry(&self, loc: Loc) -> Entry<'_> {
        let mut at = loc.start;
        let mut part = |n: usize| {
            let s = &self.data[at..at + n];
            at += n;
            s
        };
        Entry {
            envelope: part(loc.lens[0]),
            search: part(loc.lens[1]),
            body: part(loc.lens[2]),
            bodystructure: part(loc.lens[3]),
        }
    }

    /// Reads what other sessions appended since (once per command: a `stat`, and the new
    /// records when the file grew; the whole file when it was replaced).
    pub fn refresh(&mut self) {
        if !self.loaded {
            return;
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if Some((m.dev(), m.ino())) == self.file && m.len() == self.read_len => {}
            Ok(m) if Some((m.dev(), m.ino())) == self.file && m.len() > self.read_len => {
                self.read_tail()
            }
            Ok(_) => self.load(),
            // Gone: the next save writes it anew.
            Err(_) => self.file = None,
        }
    }

    /// Adds an entry; written out by [`Cache::save`]. A header-only entry does not replace
    /// a whole one.
    pub fn put(&mut self, uid: u32, e: Entry<'_>) {
        if !e.has_structure() && self.get(uid).is_some_and(|old| old.has_structure()) {
            return;
        }
        let start = self.data.len();
        let loc = record(&mut self.data, uid, &e);
        self.pending.extend_from_slice(&self.data[start..]);
        self.entries.insert(uid, loc);
    }

    /// Appends the new entries (or writes the file whole when it was bad or missing). Errors
    /// are logged and otherwise ignored: the cache is an optimization.
    pub fn save(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let result = if self.rewrite {
            self.rewrite_file()
        } else {
            match self.append() {
                // None yet: made whole (another session's appearing meanwhile is replaced).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.rewrite_file(),
                r => r,
            }
        };
        self.pending.clear();
        if let Err(e) = result {
            tracing::debug!(event = "imap.cache_write_failed", path = %self.path.display(), error = %e, "cannot write the cache");
        }
    }

    /// One `write` at the end of the file; the records count as read when it is the file
    /// as read and nobody else appended meanwhile (otherwise the next refresh reads the
    /// file again, harmlessly).
    fn append(&mut self) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        let before = f.metadata()?;
        f.write_all(&self.pending)?;
        let after = f.metadata()?;
        let id = Some((before.dev(), before.ino()));
        let alone = after.len() == before.len() + self.pending.len() as u64;
        if id == self.file && before.len() == self.read_len && alone {
            self.read_len = after.len();
        }
        Ok(())
    }

    /// The whole file anew from the entries: temp file and rename (no fsync: derived data).
    fn rewrite_file(&mut self) -> std::io::Result<()> {
        let mut out = header(self.uidvalidity);
        let mut uids: Vec<u32> = self.entries.keys().copied().collect();
        uids.sort_unstable();
        let mut entries = HashMap::with_capacity(uids.len());
        for uid in uids {
            let e = self.entry(self.entries[&uid]);
            entries.insert(uid, record(&mut out, uid, &e));
        }
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, &out)?;
        let m = std::fs::metadata(&tmp)?;
        std::fs::rename(&tmp, &self.path)?;
        self.read_len = out.len() as u64;
        self.file = Some((m.dev(), m.ino()));
        self.data = out;
        self.entries = entries;
        self.rewrite = false;
        Ok(())
    }

    /// Takes `data` (a whole file image) as what was read.
    fn replace_data(&mut self, data: Vec<u8>, id: (u64, u64)) {
        self.read_len = data.len() as u64;
        self.file = Some(id);
        self.data = data;
        self.entries.clear();
        let start = header(self.uidvalidity).len().min(self.data.len());
        // A bad record: the next save writes the file anew.
        if start + self.absorb(start) < self.data.len() {
            self.rewrite = true;
        }
    }

    /// The whole file (keeping the entries this session has, which are as good).
    fn load(&mut self) {
        self.loaded = true;
        let Ok(mut f) = File::open(&self.path) else {
            return;
        };
        let mut data = Vec::new();
        let Ok(m) = f.metadata() else { return };
        if f.read_to_end(&mut data).is_err() {
            return;
        }
        if !data.starts_with(&header(self.uidvalidity)) {
            self.rewrite = true;
            return;
        }
        let old = std::mem::take(&mut self.data);
        let old_entries = std::mem::take(&mut self.entries);
        self.replace_data(data, (m.dev(), m.ino()));
        for (uid, loc) in old_entries {
            if !self.entries.contains_key(&uid) {
                let start = self.data.len();
                self.data
                    .extend_from_slice(&old[loc.start..loc.start + loc.lens.iter().sum::<usize>()]);
                self.entries.insert(uid, Loc { start, ..loc });
            }
        }
    }

    /// What was appended to the same file since it was read.
    fn read_tail(&mut self) {
        let Ok(mut f) = File::open(&self.path) else {
            return;
        };
        let same = f
            .metadata()
            .is_ok_and(|m| Some((m.dev(), m.ino())) == self.file);
        if !same || f.seek(SeekFrom::Start(self.read_len)).is_err() {
            return self.load();
        }
        // A record that does not parse may be another session's write under way: the
        // next refresh reads again from the last good one (a load sees it for good).
        let start = self.data.len();
        if f.read_to_end(&mut self.data).is_err() {
            return self.data.truncate(start);
        }
        let good = self.absorb(start);
        self.read_len += good as u64;
        self.data.truncate(start + good);
    }

    /// Indexes the records in `data[from..]` up to the first bad one; returns the octets
    /// of the good ones.
    fn absorb(&mut self, from: usize) -> usize {
        let mut start = from;
        while start < self.data.len() {
            let Some((uid, loc, used)) = parse(&self.data[start..]) else {
                break;
            };
            let loc = Loc {
                start: start + loc.start,
                ..loc
            };
            let keep_old =
                loc.lens[2] == 0 && self.entries.get(&uid).is_some_and(|old| old.lens[2] != 0);
            if !keep_old {
                self.entries.insert(uid, loc);
            }
            start += used;
        }
        start - from
    }
}

fn header(uidvalidity: u32) -> Vec<u8> {
    format!("postern-cache {VERSION} {uidvalidity}\n").into_bytes()
}

/// Appends the record of `e` to `out`; returns where its items lie there.
fn record(out: &mut Vec<u8>, uid: u32, e: &Entry) -> Loc {
    let parts = e.parts();
    let hash = checksum(&parts);
    let lens = parts.map(<[u8]>::len);
    let [a, b, c, d] = lens;
    out.extend_from_slice(format!("{uid} {hash:016x} {a} {b} {c} {d}\n").as_bytes());
    let start = out.len();
    for part in parts {
        out.extend_from_slice(part);
    }
    out.push(b'\n');
    Loc { start, lens }
}

/// One record: (uid, where its items lie relative to `data`, octets used); `None` when
/// torn or corrupt.
fn parse(data: &[u8]) -> Option<(u32, Loc, usize)> {
    let nl = memchr::memchr(b'\n', data)?;
    let head = std::str::from_utf8(&data[..nl]).ok()?;
    let mut words = head.split(' ');
    let uid: u32 = words.next()?.parse().ok()?;
    let hash = u64::from_str_radix(words.next()?, 16).ok()?;
    let mut lens = [0usize; 4];
    for l in &mut lens {
        *l = words.next()?.parse().ok()?;
    }
    if words.next().is_some() {
        return None;
    }
    let start = nl + 1;
    let end = start.checked_add(lens.iter().try_fold(0usize, |a, &b| a.checked_add(b))?)?;
    if data.get(end) != Some(&b'\n') {
        return None;
    }
    let mut at = start;
    let parts = lens.map(|n| {
        let s = &data[at..at + n];
        at += n;
        s
    });
    if checksum(&parts) != hash || !headertext::valid(parts[1]) {
        return None;
    }
    // A BODY without a BODYSTRUCTURE (or the reverse) is no entry this module writes.
    if (lens[2] == 0) != (lens[3] == 0) {
        return None;
    }
    Some((uid, Loc { start, lens }, end + 1))
}

/// A 64-bit checksum, eight octets at a time: catches torn and interleaved writes (not an
/// adversary; the folder is the user's own).
fn checksum(parts: &[&[u8]]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |w: u64| {
        h = (h ^ w).wrapping_mul(K);
        h ^= h >> 29;
    };
    for part in parts {
        let mut chunks = part.chunks_exact(8);
        for c in &mut chunks {
            mix(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        mix(u64::from_le_bytes(tail));
        mix(part.len() as u64);
    }
    h
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;

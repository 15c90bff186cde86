//! The per-folder cache of encoded ENVELOPE, BODY and BODYSTRUCTURE items
//! (`postern-cache` beside the folder's index, docs/mailstore.md), so that a FETCH of those
//! items over a large folder reads no message twice. Derived data: a missing, torn or stale
//! file only costs re-reading messages. Records are appended in one `write` each
//! (`O_APPEND`) by any session; each carries a checksum, and reading stops at the first bad
//! one. The file starts with the folder's UIDVALIDITY and is replaced when that changes.
//!
//! Format: `postern-cache 1 <uidvalidity>\n`, then per message
//! `<uid> <hash hex> <len envelope> <len body> <len bodystructure>\n<the three>\n`, the
//! items encoded as in a FETCH response with the default (non-UTF-8) encoding, which every
//! client accepts.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE: &str = "postern-cache";

/// The three structure items of a message, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub envelope: Vec<u8>,
    pub body: Vec<u8>,
    pub bodystructure: Vec<u8>,
}

pub(super) struct Cache {
    path: PathBuf,
    uidvalidity: u32,
    entries: HashMap<u32, Entry>,
    /// Length of the file as read; when it grew, others appended.
    read_len: u64,
    loaded: bool,
    /// The file had a bad record or another UIDVALIDITY: rewrite it at the next save.
    rewrite: bool,
    new: Vec<u8>,
}

impl Cache {
    pub fn new(folder_dir: &Path, uidvalidity: u32) -> Cache {
        Cache {
            path: folder_dir.join(FILE),
            uidvalidity,
            entries: HashMap::new(),
            read_len: 0,
            loaded: false,
            rewrite: false,
            new: Vec::new(),
        }
    }

    /// The entry of `uid`, reading the file on first use (and again when it grew).
    pub fn get(&mut self, uid: u32) -> Option<&Entry> {
        if !self.entries.contains_key(&uid) {
            self.load();
        }
        self.entries.get(&uid)
    }

    /// Adds an entry; written out by [`Cache::save`].
    pub fn put(&mut self, uid: u32, e: Entry) {
        record(&mut self.new, uid, &e);
        self.entries.insert(uid, e);
    }

    /// Appends the new entries (or rewrites the file when it was bad). Errors are logged and
    /// otherwise ignored: the cache is an optimization.
    pub fn save(&mut self) {
        if self.new.is_empty() {
            return;
        }
        let new = std::mem::take(&mut self.new);
        let result = if self.rewrite || self.read_len == 0 {
            self.rewrite_file()
        } else {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&self.path)
                .and_then(|mut f| f.write_all(&new))
        };
        if let Err(e) = result {
            tracing::debug!(event = "imap.cache_write_failed", path = %self.path.display(), error = %e, "cannot write the cache");
        }
    }

    /// The whole file anew: temp file and rename (no fsync: derived data).
    fn rewrite_file(&mut self) -> std::io::Result<()> {
        let mut out = format!("postern-cache 1 {}\n", self.uidvalidity).into_bytes();
        let mut uids: Vec<&u32> = self.entries.keys().collect();
        uids.sort_unstable();
        for uid in uids {
            record(&mut out, *uid, &self.entries[uid]);
        }
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, &out)?;
        std::fs::rename(&tmp, &self.path)?;
        self.read_len = out.len() as u64;
        self.rewrite = false;
        Ok(())
    }

    fn load(&mut self) {
        let len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if self.loaded && len == self.read_len {
            return;
        }
        self.loaded = true;
        let Ok(data) = std::fs::read(&self.path) else {
            return;
        };
        self.read_len = data.len() as u64;
        let header = format!("postern-cache 1 {}\n", self.uidvalidity);
        let Some(mut rest) = data.strip_prefix(header.as_bytes()) else {
            self.rewrite = true;
            return;
        };
        while !rest.is_empty() {
            match parse(rest) {
                Some((uid, entry, used)) => {
                    self.entries.insert(uid, entry);
                    rest = &rest[used..];
                }
                None => {
                    self.rewrite = true;
                    return;
                }
            }
        }
    }
}

fn record(out: &mut Vec<u8>, uid: u32, e: &Entry) {
    let hash = fnv(&[&e.envelope, &e.body, &e.bodystructure]);
    let (a, b, c) = (e.envelope.len(), e.body.len(), e.bodystructure.len());
    out.extend_from_slice(format!("{uid} {hash:016x} {a} {b} {c}\n").as_bytes());
    for part in [&e.envelope, &e.body, &e.bodystructure] {
        out.extend_from_slice(part);
    }
    out.push(b'\n');
}

/// One record: (uid, entry, octets used); `None` when torn or corrupt.
fn parse(data: &[u8]) -> Option<(u32, Entry, usize)> {
    let nl = data.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&data[..nl]).ok()?;
    let mut words = head.split(' ');
    let uid: u32 = words.next()?.parse().ok()?;
    let hash = u64::from_str_radix(words.next()?, 16).ok()?;
    let mut lens = [0usize; 3];
    for l in &mut lens {
        *l = words.next()?.parse().ok()?;
    }
    let start = nl + 1;
    let end = start.checked_add(lens.iter().try_fold(0usize, |a, &b| a.checked_add(b))?)?;
    if data.get(end) != Some(&b'\n') {
        return None;
    }
    let (e, rest) = data[start..end].split_at(lens[0]);
    let (b, s) = rest.split_at(lens[1]);
    if fnv(&[e, b, s]) != hash {
        return None;
    }
    let entry = Entry {
        envelope: e.to_vec(),
        body: b.to_vec(),
        bodystructure: s.to_vec(),
    };
    Some((uid, entry, end + 1))
}

/// FNV-1a, 64 bits: catches torn and interleaved writes (not an adversary; the folder is
/// the user's own).
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Entry {
        Entry {
            envelope: vec![b'e', n],
            body: b"BODY (\"x\")\r\n".to_vec(),
            bodystructure: vec![n; 3],
        }
    }

    #[test]
    fn entries_survive_reopen_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::new(dir.path(), 7);
        assert!(c.get(1).is_none());
        c.put(1, entry(1));
        c.put(2, entry(2));
        c.save();
        let mut other = Cache::new(dir.path(), 7);
        assert_eq!(other.get(2), Some(&entry(2)));
        other.put(3, entry(3));
        other.save();
        assert_eq!(c.get(3), Some(&entry(3)), "a grown file is read again");
        // A torn record at the end: the good ones stay.
        let path = dir.path().join(FILE);
        let mut data = std::fs::read(&path).unwrap();
        data.truncate(data.len() - 4);
        std::fs::write(&path, &data).unwrap();
        let mut torn = Cache::new(dir.path(), 7);
        assert_eq!(torn.get(2), Some(&entry(2)));
        assert!(torn.get(3).is_none());
        torn.put(4, entry(4));
        torn.save();
        let mut again = Cache::new(dir.path(), 7);
        assert_eq!(again.get(4), Some(&entry(4)), "rewritten whole");
        // Another UIDVALIDITY: nothing is reused.
        let mut stale = Cache::new(dir.path(), 8);
        assert!(stale.get(1).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse(&data);
        }
    }
}

//! The selected mailbox of a session: the open folder, whether it is read-only, and the
//! sequence map — the UIDs in sequence order as this client knows them (RFC 9051 §2.3.1.2),
//! which changes only when the session announces EXISTS or EXPUNGE (RFC 9051 §7.5.1). Also
//! the resolution of sequence sets against it. No responses are written here.

use std::collections::BTreeSet;

use shared::mailstore::Folder;

use super::cache::Cache;
use crate::command::{SeqNumber, SequenceSet};

pub(super) struct Mailbox {
    pub folder: Folder,
    pub read_only: bool,
    /// UIDs by sequence number − 1, ascending.
    pub uids: Vec<u32>,
    /// UIDs whose flags other sessions changed, not announced yet.
    pub changed: BTreeSet<u32>,
    /// Messages may have left the folder (an own or another's expunge) since the last
    /// announcement: the next one compares the map with the folder.
    pub maybe_expunged: bool,
    /// Encoded ENVELOPE/BODYSTRUCTURE by UID, shared through a file with other sessions.
    pub cache: Cache,
    /// The UIDs saved by SEARCH RETURN (SAVE), `$` (RFC 5182 §2.1).
    pub saved: Vec<u32>,
}

/// A set that names messages that do not exist (RFC 9051 §9 seq-number: BAD).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadSet;

impl Mailbox {
    pub fn new(folder: Folder, read_only: bool) -> Mailbox {
        let uids = folder.messages().iter().map(|m| m.uid).collect();
        let cache = Cache::new(folder.dir(), folder.uidvalidity());
        Mailbox {
            cache,
            saved: Vec::new(),
            folder,
            read_only,
            uids,
            changed: BTreeSet::new(),
            maybe_expunged: false,
        }
    }

    /// The sequence number of `uid` in this client's view.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// The (sequence number, UID) pairs a set names, ascending, without repeats. A sequence
    /// number beyond the mailbox is an error; UIDs that do not exist are skipped (RFC 9051
    /// §6.4.9), and `n:*` always includes the largest UID (RFC 9051 §9 seq-range).
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<(u32, u32)>, BadSet> {
        let SequenceSet::Ranges(ranges) = set else {
            // `$`: the saved messages still in this client's view (RFC 5182 §2.1).
            let found = self
                .saved
                .iter()
                .filter_map(|&u| Some((self.seq_of(u)?, u)));
            return Ok(found.collect());
        };
        let mut out = Vec::new();
        for &(a, b) in ranges {
            if uid {
                let (lo, hi) = order(self.uid_value(a), self.uid_value(b));
                let start = self.uids.partition_point(|&u| u < lo);
                let end = self.uids.partition_point(|&u| u <= hi);
                out.extend((start..end).map(|i| (i as u32 + 1, self.uids[i])));
            } else {
                let n = self.uids.len() as u32;
                let (lo, hi) = order(seq_value(a, n), seq_value(b, n));
                if lo == 0 || hi > n {
                    return Err(BadSet);
                }
                out.extend((lo..=hi).map(|s| (s, self.uids[s as usize - 1])));
            }
        }
        if ranges.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        Ok(out)
    }

    fn uid_value(&self, n: SeqNumber) -> u32 {
        match n {
            SeqNumber::Value(v) => v,
            SeqNumber::Largest => self.uids.last().copied().unwrap_or(0),
        }
    }
}

fn seq_value(n: SeqNumber, count: u32) -> u32 {
    match n {
        SeqNumber::Value(v) => v,
        SeqNumber::Largest => count,
    }
}

fn order(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

/// Sorted numbers as ranges (`1:3,7`), for UIDPLUS and MODIFIED codes.
pub(super) fn ranges(nums: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &n in nums {
        match out.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(n) => *hi = n,
            _ => out.push((n, n)),
        }
    }
    out
}

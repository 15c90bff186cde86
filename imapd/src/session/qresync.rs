//! QRESYNC (RFC 7162 §3.2): SELECT with the client's UIDVALIDITY and modseq answered by
//! `* VANISHED (EARLIER)` and the FETCHes of what changed since, and UID FETCH's VANISHED
//! modifier. The mailstore keeps no expunge history per modseq, so VANISHED (EARLIER)
//! names every UID of the client's set that no longer exists, which RFC 7162 §3.2.5.2
//! allows ("MAY send ... UIDs that were expunged before the mod-sequence").

use super::selected::{Mailbox, ranges};
use crate::command::{QResync, SeqNumber, SequenceSet};
use crate::response::{Data, Encoding, FetchAttr, Response, SystemFlags};

/// The UIDs in `set` (ranges; `*` = the highest UID given so far) that are not in
/// `existing` (ascending), as ranges. Linear in `existing` and the ranges, whatever their
/// width.
pub(super) fn missing(set: &SequenceSet, existing: &[u32], last_uid: u32) -> Vec<(u32, u32)> {
    let SequenceSet::Ranges(rs) = set else {
        return Vec::new();
    };
    let value = |n: SeqNumber| match n {
        SeqNumber::Value(v) => v,
        SeqNumber::Largest => last_uid,
    };
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &(a, b) in rs {
        let (lo, hi) = (
            value(a).min(value(b)).max(1),
            value(a).max(value(b)).min(last_uid),
        );
        if lo > hi {
            continue;
        }
        let mut next = lo;
        let start = existing.partition_point(|&u| u < lo);
        for &u in existing[start..].iter().take_while(|&&u| u <= hi) {
            if u > next {
                out.push((next, u - 1));
            }
            next = u.saturating_add(1);
        }
        if next <= hi {
            out.push((next, hi));
        }
    }
    out.sort_unstable();
    merge(out)
}

fn merge(sorted: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (lo, hi) in sorted {
        match out.last_mut() {
            Some((_, h)) if lo <= h.saturating_add(1) => *h = (*h).max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// After SELECT (QRESYNC ...): VANISHED (EARLIER) and the FETCHes of messages changed since
/// the client's modseq, when its UIDVALIDITY is still ours (RFC 7162 §3.2.5.2).
pub(super) fn select_resync(mb: &Mailbox, q: &QResync, out: &mut Vec<u8>, enc: Encoding) {
    if q.uid_validity != mb.folder.uidvalidity() {
        return;
    }
    let last = mb.folder.uidnext().saturating_sub(1);
    let known = q.known_uids.clone().unwrap_or(SequenceSet::Ranges(vec![(
        SeqNumber::Value(1),
        SeqNumber::Largest,
    )]));
    let gone = missing(&known, &mb.uids, last);
    if !gone.is_empty() {
        Response::Data(Data::Vanished {
            earlier: true,
            uids: &gone,
        })
        .encode(out, enc);
    }
    changed_since(mb, q.modseq, out, enc);
}

/// `* n FETCH (UID FLAGS MODSEQ)` of every message whose modseq exceeds `since`.
pub(super) fn changed_since(mb: &Mailbox, since: u64, out: &mut Vec<u8>, enc: Encoding) {
    for (i, &uid) in mb.uids.iter().enumerate() {
        let Some(m) = mb.folder.message(uid).filter(|m| m.modseq > since) else {
            continue;
        };
        let kw: Vec<&[u8]> = m.keywords.iter().map(|k| k.as_bytes()).collect();
        let attrs = [
            FetchAttr::Uid(uid),
            FetchAttr::Flags {
                system: SystemFlags(m.flags.bits()),
                keywords: &kw,
            },
            FetchAttr::ModSeq(m.modseq),
        ];
        Response::Data(Data::Fetch {
            seq: i as u32 + 1,
            attrs: &attrs,
        })
        .encode(out, enc);
    }
}

/// UID FETCH ... (CHANGEDSINCE m VANISHED): the UIDs of the set that are gone
/// (RFC 7162 §3.2.6).
pub(super) fn fetch_vanished(mb: &Mailbox, set: &SequenceSet, out: &mut Vec<u8>, enc: Encoding) {
    let last = mb.folder.uidnext().saturating_sub(1);
    let gone = missing(set, &mb.uids, last);
    if !gone.is_empty() {
        Response::Data(Data::Vanished {
            earlier: true,
            uids: &gone,
        })
        .encode(out, enc);
    }
}

/// VANISHED for expunges announced to a QRESYNC client (RFC 7162 §3.2.10).
pub(super) fn vanished_now(uids: &mut [u32], out: &mut Vec<u8>, enc: Encoding) {
    uids.sort_unstable();
    let r = ranges(uids);
    Response::Data(Data::Vanished {
        earlier: false,
        uids: &r,
    })
    .encode(out, enc);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(r: &[(u32, u32)]) -> SequenceSet {
        SequenceSet::Ranges(
            r.iter()
                .map(|&(a, b)| (SeqNumber::Value(a), SeqNumber::Value(b)))
                .collect(),
        )
    }

    #[test]
    fn missing_uids_as_ranges() {
        assert_eq!(
            missing(&set(&[(1, 10)]), &[2, 3, 7], 10),
            vec![(1, 1), (4, 6), (8, 10)]
        );
        assert_eq!(
            missing(&set(&[(1, 4_000_000_000)]), &[5], 9),
            vec![(1, 4), (6, 9)]
        );
        assert_eq!(missing(&set(&[(3, 3), (1, 2)]), &[], 5), vec![(1, 3)]);
        assert!(missing(&set(&[(20, 30)]), &[1], 10).is_empty());
    }
}

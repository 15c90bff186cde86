//! UIDs that survive the loss of the index (RFC 9051 §2.3.1.1): the `,U=<uid>` field Postern
//! puts in the base name of every file it gives a UID to, the per-folder record
//! `postern-uidvalidity` (the folder's UIDVALIDITY and a UIDNEXT floor: every UID ever given
//! under that UIDVALIDITY is below it), and the rule a rebuild follows to decide whether it may
//! keep the UIDVALIDITY and the UIDs in the names ([`plan`]). Called under the index lock; no
//! log records are written here.
//!
//! # The record
//!
//! ```text
//! 5f001234            UIDVALIDITY, 8 lowercase hex digits (the only line before floors existed)
//! floor 2049          decimal: no UID at or above it was ever given under that UIDVALIDITY
//! ```
//!
//! A writer about to give UIDs up to `n - 1` makes sure the recorded floor is at least `n`
//! ([`reserve`]); when it is not, it records `n + HEADROOM` (temp file, fsync, rename, fsync of
//! the directory) before the UIDs appear anywhere, so one such write covers `HEADROOM` UIDs.
//! The record also marks the folder as Postern's: a later rebuild takes UIDs from
//! `dovecot-uidlist` only for files without `U=` and only under the recorded UIDVALIDITY.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::dovecot::Uidlist;
use super::{IoContext, Result};
use crate::maildir::sync_dir;

/// The record of a folder, beside its index.
pub const RECORD_FILE: &str = "postern-uidvalidity";
/// UIDs a floor write reserves beyond the ones about to be given: one durable write per this
/// many new messages; a rebuild's first new UID may be up to this far above the last one.
pub const HEADROOM: u32 = 1024;
/// The name field carrying the UID (Maildir readers ignore `,X=` fields they do not know).
const FIELD: &str = ",U=";

/// What `postern-uidvalidity` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub uidvalidity: u32,
    /// Absent in records written before floors existed: then nothing is known of the UIDs.
    pub floor: Option<u32>,
}

/// Reads the record of `dir`; `None` when absent or unreadable.
pub fn read_record(dir: &Path) -> Option<Recorded> {
    let text = std::fs::read_to_string(dir.join(RECORD_FILE)).ok()?;
    parse_record(&text)
}

pub fn parse_record(text: &str) -> Option<Recorded> {
    let mut lines = text.lines();
    let uidvalidity = u32::from_str_radix(lines.next()?.trim(), 16)
        .ok()
        .filter(|&v| v > 0)?;
    let floor = lines
        .filter_map(|l| l.strip_prefix("floor "))
        .find_map(|f| f.trim().parse::<u32>().ok());
    Some(Recorded { uidvalidity, floor })
}

/// Writes the record durably: temp file, fsync, rename, fsync of `dir`.
pub fn write_record(dir: &Path, uidvalidity: u32, floor: u32) -> Result<()> {
    let path = dir.join(RECORD_FILE);
    let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
    std::fs::write(&tmp, format!("{uidvalidity:08x}\nfloor {floor}\n")).at(&tmp)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .at(&tmp)?;
    std::fs::rename(&tmp, &path).at(&path)?;
    sync_dir(dir).at(dir)
}

/// A UIDVALIDITY never given to the folder before: the current time, or one more than the
/// last given if the clock is behind (RFC 9051 §2.3.1.1).
pub fn new_uidvalidity(last: Option<u32>) -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as u32;
    now.max(last.map_or(0, |l| l.wrapping_add(1))).max(1)
}

/// A writer's memory of the floor it last saw recorded: (UIDVALIDITY, floor).
pub type FloorCache = (u32, u32);

/// Makes sure every UID below `needed` is below the recorded floor of `dir` for
/// `uidvalidity`, recording a higher floor when it is not. Costs nothing while `needed` is
/// within what `cache` saw recorded. Call under the index lock, before the UIDs are written
/// anywhere (a file name, the log).
pub fn reserve(dir: &Path, uidvalidity: u32, cache: &mut FloorCache, needed: u32) -> Result<()> {
    if cache.0 == uidvalidity && needed <= cache.1 {
        return Ok(());
    }
    if let Some(Recorded {
        uidvalidity: v,
        floor: Some(floor),
    }) = read_record(dir)
        && v == uidvalidity
        && needed <= floor
    {
        *cache = (v, floor);
        return Ok(());
    }
    let floor = needed.saturating_add(HEADROOM);
    write_record(dir, uidvalidity, floor)?;
    *cache = (uidvalidity, floor);
    Ok(())
}

/// The UID a base name carries (`…,S=5,W=6,U=42` → 42).
pub fn uid_in_name(base: &str) -> Option<u32> {
    base.split(',')
        .skip(1)
        .find_map(|f| f.strip_prefix("U="))
        .and_then(|u| u.parse::<u32>().ok())
        .filter(|&u| u > 0)
}

/// `base` carrying `uid`: its `,U=` field replaced, or appended when it has none.
pub fn with_uid(base: &str, uid: u32) -> String {
    format!("{}{FIELD}{uid}", without_uid(base))
}

/// `base` without its `,U=` field.
pub fn without_uid(base: &str) -> String {
    let mut parts = base.split(',');
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts.filter(|p| !p.starts_with("U=")) {
        out.push(',');
        out.push_str(part);
    }
    out
}

/// How a rebuild gives UIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The UIDVALIDITY kept, or `None`: a new one (every UID starts afresh).
    pub uidvalidity: Option<u32>,
    /// Base name → UID for the files whose UID is kept.
    pub uids: HashMap<String, u32>,
    /// The first UID for the other files (and the UIDNEXT floor of the header).
    pub next: u32,
    /// Whether the UIDs come from `dovecot-uidlist` alone (the first index of a migrated
    /// folder).
    pub seeded: bool,
}

impl Plan {
    fn fresh() -> Plan {
        Plan {
            uidvalidity: None,
            uids: HashMap::new(),
            next: 1,
            seeded: false,
        }
    }
}

/// Decides a rebuild from the record, the `U=` of the files present (base → UID) and the
/// folder's `dovecot-uidlist`:
/// - a record with a floor, `U=` values unique and all below it: keep the UIDVALIDITY and the
///   `U=` UIDs; files without `U=` take their `dovecot-uidlist` UID when the list's
///   UIDVALIDITY is the recorded one (and the UID is free and below the floor); the rest
///   are numbered from the floor, which no UID given before reached;
/// - no record and no `U=` anywhere (never indexed by Postern): seeded from `dovecot-uidlist`
///   when there is one;
/// - anything else (names inconsistent, a record without floor, `U=` without a record): a new
///   UIDVALIDITY.
pub fn plan(
    record: Option<Recorded>,
    names: &HashMap<String, u32>,
    uidlist: Option<&Uidlist>,
) -> Plan {
    match record {
        Some(Recorded {
            uidvalidity,
            floor: Some(floor),
        }) => keep(uidvalidity, floor, names, uidlist).unwrap_or_else(Plan::fresh),
        Some(_) => Plan::fresh(),
        None if !names.is_empty() => Plan::fresh(),
        None => match uidlist {
            Some(list) => Plan {
                uidvalidity: Some(list.uidvalidity),
                uids: list.uids.clone(),
                next: list.uidnext.max(1),
                seeded: true,
            },
            None => Plan::fresh(),
        },
    }
}

fn keep(
    uidvalidity: u32,
    floor: u32,
    names: &HashMap<String, u32>,
    uidlist: Option<&Uidlist>,
) -> Option<Plan> {
    let mut used = HashSet::new();
    if !names.values().all(|&u| u < floor && used.insert(u)) {
        return None;
    }
    let mut uids = names.clone();
    if let Some(list) = uidlist.filter(|l| l.uidvalidity == uidvalidity) {
        let mut seeded: Vec<(&String, u32)> = list
            .uids
            .iter()
            .filter(|(base, _)| !names.contains_key(*base))
            .map(|(b, &u)| (b, u))
            .collect();
        seeded.sort_by_key(|&(_, u)| u);
        for (base, uid) in seeded {
            if uid < floor && used.insert(uid) {
                uids.insert(base.clone(), uid);
            }
        }
    }
    Some(Plan {
        uidvalidity: Some(uidvalidity),
        uids,
        next: floor,
        seeded: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_uid_field_is_read_replaced_and_appended() {
        assert_eq!(uid_in_name("1.M2P3.h,S=5,W=6,U=42"), Some(42));
        assert_eq!(uid_in_name("1.M2P3.h,S=5,W=6"), None);
        assert_eq!(uid_in_name("1.M2P3.U=4,S=5"), None, "only a ,U= field");
        assert_eq!(uid_in_name("1.h,U=0"), None);
        assert_eq!(with_uid("1.M2P3.h,S=5,W=6", 7), "1.M2P3.h,S=5,W=6,U=7");
        assert_eq!(with_uid("1.h,U=3,S=5", 9), "1.h,S=5,U=9");
        assert_eq!(with_uid("1.M2P3.h", 1), "1.M2P3.h,U=1");
    }

    #[test]
    fn records_old_and_new() {
        let old = parse_record("5f001234\n").unwrap();
        assert_eq!((old.uidvalidity, old.floor), (0x5f00_1234, None));
        let new = parse_record("5f001234\nfloor 2049\n").unwrap();
        assert_eq!(new.floor, Some(2049));
        assert_eq!(parse_record("zz\n"), None);
        assert_eq!(parse_record(""), None);
    }

    #[test]
    fn reserve_writes_only_when_the_floor_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = (0, 0);
        reserve(dir.path(), 7, &mut cache, 2).unwrap();
        assert_eq!(cache, (7, 2 + HEADROOM));
        std::fs::remove_file(dir.path().join(RECORD_FILE)).unwrap();
        reserve(dir.path(), 7, &mut cache, 2 + HEADROOM).unwrap();
        assert!(!dir.path().join(RECORD_FILE).exists(), "within the cache");
        reserve(dir.path(), 7, &mut cache, 3 + HEADROOM).unwrap();
        let r = read_record(dir.path()).unwrap();
        assert_eq!(r.floor, Some(3 + 2 * HEADROOM));
        reserve(dir.path(), 8, &mut cache, 1).unwrap();
        assert_eq!(read_record(dir.path()).unwrap().uidvalidity, 8);
    }

    fn names(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|&(b, u)| (b.to_string(), u)).collect()
    }

    fn list(v: u32, pairs: &[(&str, u32)]) -> Uidlist {
        Uidlist {
            uidvalidity: v,
            uidnext: pairs.iter().map(|p| p.1 + 1).max().unwrap_or(1),
            uids: names(pairs),
        }
    }

    #[test]
    fn a_consistent_folder_keeps_its_uids() {
        let rec = Some(Recorded {
            uidvalidity: 5,
            floor: Some(100),
        });
        let p = plan(rec, &names(&[("a", 3), ("b", 9)]), None);
        assert_eq!(p.uidvalidity, Some(5));
        assert_eq!((p.uids["a"], p.uids["b"], p.next), (3, 9, 100));
    }

    #[test]
    fn inconsistent_names_or_records_give_a_new_uidvalidity() {
        let rec = |floor| {
            Some(Recorded {
                uidvalidity: 5,
                floor,
            })
        };
        let dup = plan(rec(Some(100)), &names(&[("a", 3), ("b", 3)]), None);
        assert_eq!(dup.uidvalidity, None);
        let above = plan(rec(Some(100)), &names(&[("a", 100)]), None);
        assert_eq!(above.uidvalidity, None);
        let no_floor = plan(rec(None), &names(&[("a", 3)]), None);
        assert_eq!(no_floor.uidvalidity, None);
        let unrecorded = plan(None, &names(&[("a", 3)]), Some(&list(5, &[("a", 3)])));
        assert_eq!(unrecorded.uidvalidity, None);
    }

    #[test]
    fn the_uidlist_seeds_a_new_folder_and_only_unnamed_files_of_an_owned_one() {
        let seed = list(77, &[("a", 1), ("b", 2), ("c", 3)]);
        let first = plan(None, &HashMap::new(), Some(&seed));
        assert_eq!(
            (first.uidvalidity, first.seeded, first.next),
            (Some(77), true, 4)
        );
        let rec = Some(Recorded {
            uidvalidity: 77,
            floor: Some(50),
        });
        // "c" was renamed by Postern (U=40); "b"'s listed UID 2 is taken by "d".
        let p = plan(rec, &names(&[("c", 40), ("d", 2)]), Some(&seed));
        assert_eq!(p.uids, names(&[("a", 1), ("c", 40), ("d", 2)]));
        let other = Some(Recorded {
            uidvalidity: 78,
            floor: Some(50),
        });
        let stale = plan(other, &names(&[("d", 4)]), Some(&seed));
        assert_eq!(
            stale.uids,
            names(&[("d", 4)]),
            "a stale uidlist is not used"
        );
    }

    proptest! {
        /// Whatever the names, a kept UIDVALIDITY comes with unique UIDs below the floor and
        /// fresh UIDs from the floor: no UID given before can be given again.
        #[test]
        fn a_kept_uidvalidity_never_reuses_a_uid(
            named in proptest::collection::hash_map("[a-e]{1,2}", 1u32..200, 0..8),
            listed in proptest::collection::hash_map("[a-e]{1,2}", 1u32..200, 0..8),
            floor in 1u32..220,
            same in any::<bool>(),
        ) {
            let seed = Uidlist { uidvalidity: if same { 5 } else { 6 }, uidnext: 1, uids: listed };
            let rec = Some(Recorded { uidvalidity: 5, floor: Some(floor) });
            let p = plan(rec, &named, Some(&seed));
            if p.uidvalidity.is_some() {
                let mut seen = HashSet::new();
                prop_assert!(p.uids.values().all(|&u| u < floor && seen.insert(u)));
                prop_assert_eq!(p.next, floor);
                for (b, u) in &named {
                    prop_assert_eq!(p.uids.get(b), Some(u));
                }
            }
        }
    }
}

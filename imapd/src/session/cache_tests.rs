//! Tests of the folder cache file: entries across sessions, torn and stale files, what a
//! header-only entry may replace.

use super::*;

fn whole(n: u8) -> Made {
    Made {
        envelope: vec![b'e', n],
        search: headertext::encode(format!("Subject: s{n}\r\n\r\n").as_bytes()),
        body: b"BODY (\"x\")\r\n".to_vec(),
        bodystructure: vec![n; 3],
    }
}

fn header_only(n: u8) -> Made {
    Made {
        body: Vec::new(),
        bodystructure: Vec::new(),
        ..whole(n)
    }
}

#[test]
fn entries_survive_reopen_and_a_torn_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cache::new(dir.path(), 7);
    assert!(c.get(1).is_none());
    c.put(1, whole(1).entry());
    c.put(2, whole(2).entry());
    c.save();
    let mut other = Cache::new(dir.path(), 7);
    assert_eq!(other.get(2), Some(whole(2).entry()));
    other.put(3, whole(3).entry());
    other.save();
    assert!(c.get(3).is_none(), "no stat without a refresh");
    c.refresh();
    assert_eq!(
        c.get(3),
        Some(whole(3).entry()),
        "a grown file is read again"
    );
    // A torn record at the end: the good ones stay.
    let path = dir.path().join(FILE);
    let mut data = std::fs::read(&path).unwrap();
    data.truncate(data.len() - 4);
    std::fs::write(&path, &data).unwrap();
    let mut torn = Cache::new(dir.path(), 7);
    assert_eq!(torn.get(2), Some(whole(2).entry()));
    assert!(torn.get(3).is_none());
    torn.put(4, whole(4).entry());
    torn.save();
    let mut again = Cache::new(dir.path(), 7);
    assert_eq!(again.get(4), Some(whole(4).entry()), "rewritten whole");
    assert_eq!(again.get(1), Some(whole(1).entry()));
    // Another UIDVALIDITY: nothing is reused.
    let mut stale = Cache::new(dir.path(), 8);
    assert!(stale.get(1).is_none());
}

#[test]
fn a_header_only_entry_never_replaces_a_whole_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Cache::new(dir.path(), 1);
    let mut b = Cache::new(dir.path(), 1);
    assert!(a.get(1).is_none() && b.get(1).is_none());
    a.put(1, header_only(1).entry());
    assert!(!a.get(1).unwrap().has_structure());
    a.put(1, whole(1).entry());
    a.put(1, header_only(1).entry());
    assert_eq!(a.get(1), Some(whole(1).entry()));
    a.save();
    // Another session, with an older view, appends a header-only record of the same UID.
    b.put(1, header_only(1).entry());
    b.save();
    b.refresh();
    assert_eq!(b.get(1), Some(whole(1).entry()));
    let mut fresh = Cache::new(dir.path(), 1);
    assert_eq!(fresh.get(1), Some(whole(1).entry()));
}

#[test]
fn a_replaced_or_removed_file_is_read_or_written_anew() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Cache::new(dir.path(), 1);
    assert!(a.get(1).is_none());
    a.put(1, whole(1).entry());
    a.save();
    let mut b = Cache::new(dir.path(), 1);
    assert!(b.get(1).is_some());
    std::fs::remove_file(dir.path().join(FILE)).unwrap();
    b.refresh();
    b.put(2, whole(2).entry());
    b.save();
    // b wrote a new file with both: a sees another inode and reads it whole.
    a.refresh();
    assert_eq!(a.get(2), Some(whole(2).entry()));
    assert_eq!(a.get(1), Some(whole(1).entry()));
    a.put(3, whole(3).entry());
    a.save();
    let mut c = Cache::new(dir.path(), 1);
    for n in 1..=3 {
        assert_eq!(c.get(u32::from(n)), Some(whole(n).entry()), "{n}");
    }
}

#[test]
fn a_version_1_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(FILE),
        "postern-cache 1 5\n1 00 1 1 1\nabc\n",
    )
    .unwrap();
    let mut c = Cache::new(dir.path(), 5);
    assert!(c.get(1).is_none());
    c.put(1, whole(1).entry());
    c.save();
    let data = std::fs::read(dir.path().join(FILE)).unwrap();
    assert!(data.starts_with(b"postern-cache 2 5\n"));
}

#[test]
fn a_record_being_written_is_read_once_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Cache::new(dir.path(), 1);
    assert!(a.get(1).is_none());
    a.put(1, whole(1).entry());
    a.save();
    let mut b = Cache::new(dir.path(), 1);
    assert!(b.get(1).is_some());
    // Another writer's record, seen half written, then whole.
    let mut rec = Vec::new();
    record(&mut rec, 2, &whole(2).entry());
    let (first, second) = rec.split_at(rec.len() / 2);
    let path = dir.path().join(FILE);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(first).unwrap();
    b.refresh();
    assert!(b.get(2).is_none());
    f.write_all(second).unwrap();
    b.refresh();
    assert_eq!(b.get(2), Some(whole(2).entry()));
    assert!(!b.rewrite, "nothing was wrong with the file");
}

proptest::proptest! {
    #[test]
    fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let _ = parse(&data);
        let _ = headertext::valid(&data);
    }

    #[test]
    fn records_round_trip(
        uid in 1u32..,
        parts in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..50), 3),
        whole in proptest::bool::ANY,
    ) {
        let search = headertext::encode(&parts[0]);
        let e = Entry {
            envelope: &parts[0],
            search: &search,
            body: if whole { &parts[1] } else { b"" },
            bodystructure: if whole { &parts[2] } else { b"" },
        };
        let mut out = Vec::new();
        record(&mut out, uid, &e);
        let (got, loc, used) = parse(&out).unwrap();
        proptest::prop_assert_eq!((got, used), (uid, out.len()));
        let mut c = Cache::new(std::path::Path::new("/nonexistent"), 1);
        c.loaded = true;
        c.data = out.clone();
        c.entries.insert(uid, loc);
        proptest::prop_assert_eq!(c.get(uid), Some(e));
        // Any one octet changed: the record is refused, or the change was harmless (the
        // case of a hex digit) and the items are the same.
        let items: Vec<u8> = e.parts().concat();
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x20;
            if let Some((u, l, _)) = parse(&bad) {
                let len: usize = l.lens.iter().sum();
                proptest::prop_assert_eq!(u, uid);
                proptest::prop_assert_eq!(&bad[l.start..l.start + len], &items[..]);
            }
        }
    }
}

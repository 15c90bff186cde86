//! Tests of bulk flag changes (POP3 QUIT marking a whole maildrop \Seen, IMAP `STORE 1:*`)
//! and of the crash-shaped states a flag change can leave: a rename the index records but
//! the disk lost, a rename the disk kept but whose record was lost. The scan must find every
//! message under its UID.

use std::path::Path;

use super::*;

/// A folder of `n` files put in `new/` by another program (names without `U=`).
fn folder_of(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("u");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for i in 0..n {
        let name = format!("1700000000.M{i:06}P1Q0.bench,S=6,W=7");
        std::fs::write(root.join("new").join(name), format!("m{i:04}\n")).unwrap();
    }
    (dir, root)
}

fn uids(f: &Folder) -> Vec<u32> {
    f.messages().iter().map(|m| m.uid).collect()
}

fn read(f: &mut Folder, uid: u32) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut f.open_message(uid).unwrap(), &mut text).unwrap();
    text
}

#[test]
fn a_bulk_flag_change_is_seen_once_per_message_by_a_second_reader() {
    let (_d, root) = folder_of(2000);
    let mut a = Folder::open("INBOX", &root).unwrap();
    let mut b = Folder::open("INBOX", &root).unwrap();
    let all = uids(&a);
    assert_eq!(all.len(), 2000);
    let out = a
        .store_flags(&all, StoreOp::Add, Flags::FLAGGED, &[], None)
        .unwrap();
    assert_eq!(out.modified.len(), 2000);
    a.mark_seen(&all).unwrap();
    // Both changes, each message reported once, in UID order.
    let changes = b.refresh().unwrap();
    assert_eq!(changes.flags, all);
    assert!(changes.added.is_empty() && changes.expunged.is_empty());
    assert_eq!(b.messages(), a.messages());
    let both = Flags::SEEN.union(Flags::FLAGGED);
    assert!(b.messages().iter().all(|m| m.flags == both));
    assert!(b.messages().iter().all(|m| m.file.ends_with(":2,FS")));
    assert_eq!(read(&mut b, 1999), "m1998\n");
    // A fresh handle reads the same from the log.
    let c = Folder::open("INBOX", &root).unwrap();
    assert_eq!(c.messages(), a.messages());
}

#[test]
fn changes_of_added_or_expunged_messages_are_not_reported_as_flag_changes() {
    let (_d, root) = folder_of(3);
    let mut a = Folder::open("INBOX", &root).unwrap();
    let mut b = Folder::open("INBOX", &root).unwrap();
    let uid = a.append(b"new\n", Flags::EMPTY, &[], None).unwrap();
    a.store_flags(&[1, 2, uid], StoreOp::Add, Flags::FLAGGED, &[], None)
        .unwrap();
    a.expunge(&[2]).unwrap();
    a.store_flags(&[1], StoreOp::Add, Flags::SEEN, &[], None)
        .unwrap();
    let changes = b.refresh().unwrap();
    assert_eq!(changes.added, [uid]);
    assert_eq!(changes.expunged, [2]);
    assert_eq!(changes.flags, [1]);
}

/// The index says `cur/<base>,U=<uid>:2,S`, the disk still has `new/<base>`: the rename was
/// lost in a crash, with the directories' mtimes (so the scan cannot tell from them).
#[test]
fn a_recorded_rename_lost_in_a_crash_is_found_by_the_scan() {
    let (_d, root) = folder_of(3);
    let mut f = Folder::open("INBOX", &root).unwrap();
    f.sync().unwrap();
    let before: Vec<String> = f.messages().iter().map(|m| m.file.clone()).collect();
    let mtimes = (
        scan::mtime_ns(&root.join("new")).unwrap(),
        scan::mtime_ns(&root.join("cur")).unwrap(),
    );
    f.mark_seen(&[2]).unwrap();
    let renamed = f.message(2).unwrap().file.clone();
    assert!(renamed.starts_with("cur/") && renamed.contains(",U=2:2,S"));
    // Undo the rename and the directories' mtimes; record them as scanned.
    std::fs::rename(root.join(&renamed), root.join(&before[1])).unwrap();
    set_mtime(&root.join("new"), mtimes.0);
    set_mtime(&root.join("cur"), mtimes.1);
    append_scanned(&root, mtimes);
    let mut g = Folder::open("INBOX", &root).unwrap();
    assert_eq!(read(&mut g, 2), "m0001\n");
    assert_eq!(uids(&g), [1, 2, 3], "no UID changed");
    assert_eq!(g.message(2).unwrap().file, before[1]);
    assert_eq!(g.message(2).unwrap().flags, Flags::EMPTY);
}

/// The disk has `cur/<base>,U=<uid>:2,S`, the index still `new/<base>`: the flag change's
/// record was lost (not yet durable) in a crash. The message keeps its UID.
#[test]
fn a_rename_whose_record_was_lost_keeps_its_uid() {
    let (_d, root) = folder_of(3);
    let mut f = Folder::open("INBOX", &root).unwrap();
    let base = f.message(3).unwrap().base().to_string();
    let file = f.message(3).unwrap().file.clone();
    std::fs::rename(root.join(&file), root.join(format!("cur/{base},U=3:2,S"))).unwrap();
    let changes = f.sync().unwrap();
    assert_eq!(changes.flags, [3]);
    assert!(changes.expunged.is_empty() && changes.added.is_empty());
    assert_eq!(uids(&f), [1, 2, 3]);
    assert_eq!(f.message(3).unwrap().flags, Flags::SEEN);
    assert_eq!(read(&mut f, 3), "m0002\n");
    // A file whose name carries another UID is not taken for it.
    let base = f.message(1).unwrap().base().to_string();
    let file = f.message(1).unwrap().file.clone();
    std::fs::rename(root.join(&file), root.join(format!("cur/{base},U=9:2,"))).unwrap();
    let changes = f.sync().unwrap();
    assert_eq!(changes.expunged, [1]);
    assert_eq!(changes.added.len(), 1);
}

fn set_mtime(dir: &Path, ns: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64);
    std::fs::File::open(dir).unwrap().set_modified(t).unwrap();
}

fn append_scanned(root: &Path, (new, cur): (i64, i64)) {
    let mut out = Vec::new();
    index::encode(&index::Record::Scanned { new, cur }, &mut out);
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join(LOG_FILE))
        .unwrap();
    std::io::Write::write_all(&mut log, &out).unwrap();
}

/// POP3 DELE of a message whose recorded rename was lost: the file under its old name is
/// unlinked too, so the message does not come back at the next sync.
#[test]
fn an_expunge_finds_a_file_whose_recorded_rename_was_lost() {
    let (_d, root) = folder_of(2);
    let mut f = Folder::open("INBOX", &root).unwrap();
    let before = f.message(1).unwrap().file.clone();
    f.mark_seen(&[1]).unwrap();
    let renamed = f.message(1).unwrap().file.clone();
    std::fs::rename(root.join(&renamed), root.join(&before)).unwrap();
    assert_eq!(f.expunge(&[1]).unwrap(), [1]);
    assert!(!root.join(&before).exists());
    let changes = f.sync().unwrap();
    assert!(changes.added.is_empty(), "{changes:?}");
    assert_eq!(uids(&f), [2]);
}

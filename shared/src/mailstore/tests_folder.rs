//! Tests of one folder's index against its Maildir: delivery UIDs, scans of changes made by
//! other programs, refresh between handles, rebuild, Dovecot seeding, tmp/ cleanup, torn
//! tails, compaction, flags, expunge, append, copy, and the folder tree of a `Store`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;
use crate::maildir::Maildir;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(&dir.path().join("example.org/alice")).unwrap();
    (dir, store)
}

fn deliver(root: &Path, text: &str) -> PathBuf {
    let d = Maildir::create(root)
        .unwrap()
        .deliver(&[text.as_bytes()], "mx.test")
        .unwrap();
    d.path
}

fn uids(f: &Folder) -> Vec<u32> {
    f.messages().iter().map(|m| m.uid).collect()
}

fn log_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(LOG_FILE)).unwrap()
}

/// Writes a file as another program would, with an mtime `age` in the past.
fn put(dir: &Path, file: &str, text: &str, age: u64) {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(age))
        .unwrap();
}

#[test]
fn deliveries_get_uids_one_to_n_and_the_folder_reads_them() {
    let (_d, store) = store();
    for i in 0..5 {
        deliver(store.root(), &format!("Subject: {i}\n\nbody\n"));
    }
    let mut f = store.open_folder("INBOX").unwrap();
    assert_eq!(uids(&f), [1, 2, 3, 4, 5]);
    assert_eq!(f.uidnext(), 6);
    assert!(f.uidvalidity() > 0);
    let m = &f.messages()[0];
    assert_eq!((m.size, m.vsize), (17, 20));
    assert!(m.file.starts_with("new/"), "{}", m.file);
    assert!(f.highest_modseq() >= 5);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut f.open_message(1).unwrap(), &mut text).unwrap();
    assert_eq!(text, "Subject: 0\n\nbody\n");
    assert!(f.sync().unwrap().is_empty());
}

#[test]
fn refresh_reports_what_other_handles_and_the_mda_did() {
    let (_d, store) = store();
    deliver(store.root(), "a\n");
    deliver(store.root(), "b\n");
    let mut a = store.open_folder("INBOX").unwrap();
    let mut b = store.open_folder("inbox").unwrap();
    assert!(a.refresh().unwrap().is_empty());
    deliver(store.root(), "c\n");
    let out = b
        .store_flags(&[1], StoreOp::Add, Flags::SEEN, &["$Work".into()], None)
        .unwrap();
    assert_eq!(out.modified.len(), 1);
    assert_eq!(b.expunge(&[2]).unwrap(), [2]);
    let changes = a.refresh().unwrap();
    assert_eq!(changes.added, [3]);
    assert_eq!(changes.expunged, [2]);
    assert_eq!(changes.flags, [1]);
    assert_eq!(uids(&a), [1, 3]);
    let m = a.message(1).unwrap();
    assert_eq!(
        (m.flags, m.keywords.clone()),
        (Flags::SEEN, vec!["$Work".into()])
    );
    assert!(
        m.file.starts_with("cur/") && m.file.ends_with(":2,S"),
        "{}",
        m.file
    );
    assert_eq!(a.highest_modseq(), b.highest_modseq());
    // b's own changes are not reported back to it.
    assert_eq!(b.refresh().unwrap().added, [3]);
}

#[test]
fn sync_follows_files_added_moved_renamed_and_removed_by_other_programs() {
    let (_d, store) = store();
    let root = store.root().to_path_buf();
    let first = deliver(&root, "one\n");
    deliver(&root, "two\n");
    let mut f = store.open_folder("INBOX").unwrap();
    // A mail reader moves message 1 to cur/ as seen, deletes message 2, and another
    // deliverer drops two files into new/ and cur/.
    let base = first.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::rename(&first, root.join(format!("cur/{base}:2,FS"))).unwrap();
    std::fs::remove_file(root.join(&f.messages()[1].file)).unwrap();
    put(&root, "new/200.M1P1.other,S=6", "three\n", 20);
    put(&root, "cur/100.M1P1.other:2,R", "four\n", 30);
    let changes = f.sync().unwrap();
    assert_eq!(changes.expunged, [2]);
    assert_eq!(changes.flags, [1]);
    // New files in delivery (mtime) order.
    assert_eq!(changes.added, [3, 4]);
    assert_eq!(f.message(3).unwrap().base(), "100.M1P1.other");
    assert_eq!(f.message(3).unwrap().flags, Flags::ANSWERED);
    assert_eq!(f.message(3).unwrap().vsize, 6);
    assert_eq!(f.message(4).unwrap().size, 6);
    assert_eq!(
        f.message(1).unwrap().flags,
        Flags::FLAGGED.union(Flags::SEEN)
    );
    // A move without a flag change keeps the modseq.
    let ms = f.message(4).unwrap().modseq;
    std::fs::rename(
        root.join("new/200.M1P1.other,S=6"),
        root.join("cur/200.M1P1.other,S=6:2,"),
    )
    .unwrap();
    assert!(f.sync().unwrap().is_empty());
    assert_eq!(f.message(4).unwrap().modseq, ms);
    assert_eq!(f.message(4).unwrap().file, "cur/200.M1P1.other,S=6:2,");
}

#[test]
fn open_message_follows_a_rename_by_another_session() {
    let (_d, store) = store();
    deliver(store.root(), "x\n");
    let mut a = store.open_folder("INBOX").unwrap();
    let mut b = store.open_folder("INBOX").unwrap();
    b.mark_seen(&[1]).unwrap();
    assert!(a.message(1).unwrap().file.starts_with("new/"));
    a.open_message(1).unwrap();
    // And one by a program outside Postern.
    let base = a.message(1).unwrap().base().to_string();
    let file = root_file(&store, &b, 1);
    std::fs::rename(&file, store.root().join(format!("cur/{base}:2,ST"))).unwrap();
    a.open_message(1).unwrap();
    assert_eq!(
        a.message(1).unwrap().flags,
        Flags::SEEN.union(Flags::DELETED)
    );
    assert!(matches!(a.open_message(9), Err(Error::NoSuchMessage(9))));
}

fn root_file(store: &Store, f: &Folder, uid: u32) -> PathBuf {
    store.root().join(&f.message(uid).unwrap().file)
}

#[test]
fn a_rebuild_after_losing_the_index_keeps_uidvalidity_and_uids() {
    let (_d, store) = store();
    for i in 0..3 {
        deliver(store.root(), &format!("{i}\n"));
    }
    let mut f = store.open_folder("INBOX").unwrap();
    f.expunge(&[2]).unwrap();
    let old = (f.uidvalidity(), f.uidnext());
    let uidls: Vec<String> = f.messages().iter().map(|m| uidl(m.uid, old.0)).collect();
    drop(f);
    std::fs::remove_file(store.root().join(LOG_FILE)).unwrap();
    let mut f = store.open_folder("INBOX").unwrap();
    assert_eq!(f.uidvalidity(), old.0);
    assert_eq!(uids(&f), [1, 3]);
    let again: Vec<String> = f.messages().iter().map(|m| uidl(m.uid, old.0)).collect();
    assert_eq!(again, uidls, "POP3 UIDLs survive the rebuild");
    // UIDNEXT never goes back: the next UID is at least the recorded floor.
    assert!(f.uidnext() > old.1);
    let next = f.append(b"x\n", Flags::EMPTY, &[], None).unwrap();
    assert!(next >= old.1 && next > 3);
    assert!(
        f.message(next)
            .unwrap()
            .base()
            .ends_with(&format!(",U={next}"))
    );
}

#[test]
fn a_rebuild_without_a_trustworthy_record_gives_a_new_uidvalidity() {
    let (_d, store) = store();
    for i in 0..3 {
        deliver(store.root(), &format!("{i}\n"));
    }
    let f = store.open_folder("INBOX").unwrap();
    let old = f.uidvalidity();
    drop(f);
    // A record without a floor (as written before floors existed): the names alone are
    // not trusted. (A lost record is the same case: `uids::plan`'s tests.)
    std::fs::remove_file(store.root().join(LOG_FILE)).unwrap();
    let record = store.root().join(super::uids::RECORD_FILE);
    std::fs::write(&record, format!("{old:08x}\n")).unwrap();
    let f = store.open_folder("INBOX").unwrap();
    assert!(f.uidvalidity() > old);
    assert_eq!(uids(&f), [1, 2, 3]);
    // A corrupt header is a lost index too; with the record back, the UIDs are kept.
    let v = f.uidvalidity();
    drop(f);
    std::fs::write(store.root().join(LOG_FILE), "garbage\n").unwrap();
    let mut f = store.open_folder("INBOX").unwrap();
    assert_eq!(f.uidvalidity(), v);
    // Duplicate U= values (a file copied by hand): a new UIDVALIDITY, names made unique.
    let m = f.messages()[0].clone();
    let copy = m.file.replace(",U=1", ",U=1,X=copy").replace(":2,", "");
    std::fs::copy(store.root().join(&m.file), store.root().join(&copy)).unwrap();
    std::fs::remove_file(store.root().join(LOG_FILE)).unwrap();
    let mut other = store.open_folder("INBOX").unwrap();
    assert!(other.uidvalidity() > v);
    assert_eq!(uids(&other), [1, 2, 3, 4]);
    // An open handle whose index is rebuilt learns that every UID is void.
    assert!(f.refresh().unwrap().uidvalidity_changed);
    assert_eq!(f.uidvalidity(), other.uidvalidity());
    assert!(other.refresh().unwrap().is_empty());
    // The names now match the new UIDs: the next rebuild keeps them.
    let v = other.uidvalidity();
    for m in other.messages() {
        assert_eq!(
            super::uids::uid_in_name(m.base()),
            Some(m.uid),
            "{}",
            m.file
        );
    }
    drop((f, other));
    std::fs::remove_file(store.root().join(LOG_FILE)).unwrap();
    let f = store.open_folder("INBOX").unwrap();
    assert_eq!((f.uidvalidity(), uids(&f)), (v, vec![1, 2, 3, 4]));
}

#[test]
fn a_stale_dovecot_uidlist_does_not_reseed_an_owned_folder() {
    let (_d, store) = store();
    let root = store.root().to_path_buf();
    std::fs::write(
        root.join("dovecot-uidlist"),
        "3 V1234567 N3 G0011\n1 :1000.M1P1.old,S=2\n2 :1001.M1P1.old,S=2\n",
    )
    .unwrap();
    put(&root, "cur/1000.M1P1.old,S=2:2,S", "a\n", 300);
    put(&root, "cur/1001.M1P1.old,S=2:2,", "b\n", 200);
    let mut f = store.open_folder("INBOX").unwrap();
    assert_eq!((f.uidvalidity(), uids(&f)), (1_234_567, vec![1, 2]));
    // After the migration: Postern's deliveries take 3 and 4, 3 is expunged, and the
    // second seeded message is flagged (its rename puts U=2 in the name).
    deliver(&root, "c\n");
    deliver(&root, "d\n");
    f.refresh().unwrap();
    f.expunge(&[3]).unwrap();
    f.store_flags(&[2], StoreOp::Add, Flags::FLAGGED, &[], None)
        .unwrap();
    assert!(f.message(2).unwrap().base().ends_with(",U=2"));
    drop(f);
    // Index lost: the uidlist (same UIDVALIDITY) still names message 1; UID 3 is not reused.
    std::fs::remove_file(root.join(LOG_FILE)).unwrap();
    let f = store.open_folder("INBOX").unwrap();
    assert_eq!((f.uidvalidity(), uids(&f)), (1_234_567, vec![1, 2, 4]));
    drop(f);
    // A uidlist of another UIDVALIDITY (written by Dovecot before an older migration) is
    // ignored: the unnamed message 1 gets a new UID from the floor, the others keep theirs.
    std::fs::write(
        root.join("dovecot-uidlist"),
        "3 V999 N3\n1 :1000.M1P1.old,S=2\n2 :1001.M1P1.old,S=2\n",
    )
    .unwrap();
    std::fs::remove_file(root.join(LOG_FILE)).unwrap();
    let f = store.open_folder("INBOX").unwrap();
    assert_eq!(f.uidvalidity(), 1_234_567);
    assert_eq!(uids(&f)[..2], [2, 4]);
    assert!(uids(&f)[2] > 4 + super::uids::HEADROOM);
}

#[test]
fn a_dovecot_uidlist_seeds_uidvalidity_uids_and_keywords() {
    let (_d, store) = store();
    let root = store.root().to_path_buf();
    std::fs::write(
        root.join("dovecot-uidlist"),
        "3 V1234567 N12 G0011\n5 :1000.M1P1.old,S=4,W=5\n7 W9 :1001.M1P1.old,S=8,W=9:2,S\n",
    )
    .unwrap();
    std::fs::write(root.join("dovecot-keywords"), "0 $Forwarded\n1 Work\n").unwrap();
    put(&root, "cur/1000.M1P1.old,S=4,W=5:2,Sb", "abc\n", 300);
    put(&root, "cur/1001.M1P1.old,S=8,W=9:2,RSa", "1234567\n", 200);
    // Delivered after Dovecot's last uidlist update, and one delivered by Postern.
    put(&root, "new/1002.M1P1.old,S=2,W=3", "x\n", 100);
    deliver(&root, "new\n");
    let f = store.open_folder("INBOX").unwrap();
    assert_eq!(f.uidvalidity(), 1_234_567);
    assert_eq!(uids(&f), [5, 7, 12, 13]);
    assert_eq!(f.uidnext(), 14);
    assert_eq!(f.message(5).unwrap().keywords, ["Work"]);
    assert_eq!(f.message(7).unwrap().keywords, ["$Forwarded"]);
    assert_eq!(
        f.message(7).unwrap().flags,
        Flags::SEEN.union(Flags::ANSWERED)
    );
    assert_eq!(f.message(7).unwrap().vsize, 9);
    assert_eq!(uidl(5, f.uidvalidity()), "000000050012D687");
    // Flag changes keep the keyword letters dovecot-keywords knows (in ASCII order after the
    // system flags), and a keyword it does not know gets none.
    let mut f = f;
    let kw = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    f.store_flags(
        &[7],
        StoreOp::Add,
        Flags::FLAGGED,
        &kw(&["Work", "New"]),
        None,
    )
    .unwrap();
    let file = f.message(7).unwrap().file.clone();
    assert!(file.ends_with(",U=7:2,FRSab"), "{file}");
    f.store_flags(
        &[7],
        StoreOp::Remove,
        Flags::EMPTY,
        &kw(&["$Forwarded"]),
        None,
    )
    .unwrap();
    assert!(f.message(7).unwrap().file.ends_with(":2,FRSb"));
    assert!(root.join(&f.message(7).unwrap().file).is_file());
    // Losing Postern's index keeps the UIDVALIDITY, the seeded UIDs and the one in the name
    // of Postern's delivery; the file another program put there without one is numbered
    // from the recorded floor (UID 12 may have been seen: it is not given again).
    drop(f);
    std::fs::remove_file(root.join(LOG_FILE)).unwrap();
    let f = store.open_folder("INBOX").unwrap();
    assert_eq!(f.uidvalidity(), 1_234_567);
    assert_eq!(uids(&f)[..3], [5, 7, 13]);
    assert_eq!(uids(&f)[3], 13 + super::uids::HEADROOM);
}

#[test]
fn sync_removes_stale_tmp_files_only() {
    let (_d, store) = store();
    let root = store.root().to_path_buf();
    put(&root, "tmp/old", "x", 37 * 3600);
    put(&root, "tmp/young", "x", 3600);
    let mut f = store.open_folder("INBOX").unwrap();
    put(&root, "new/1.M1P1.h", "x\n", 0);
    f.sync().unwrap();
    assert!(!root.join("tmp/old").exists());
    assert!(root.join("tmp/young").exists());
}

#[test]
fn a_torn_tail_is_ignored_then_cut_by_the_next_writer() {
    let (_d, store) = store();
    deliver(store.root(), "a\n");
    let log = store.root().join(LOG_FILE);
    let mut data = std::fs::read(&log).unwrap();
    let intact = data.len();
    data.extend_from_slice(b"0badc0de {\"t\":\"a\",\"uid\":2");
    std::fs::write(&log, &data).unwrap();
    let mut f = store.open_folder("INBOX").unwrap();
    assert_eq!(uids(&f), [1]);
    deliver(store.root(), "b\n");
    f.store_flags(&[1], StoreOp::Add, Flags::FLAGGED, &[], None)
        .unwrap();
    let text = log_text(store.root());
    assert!(!text.contains("0badc0de"), "{text}");
    assert!(text.len() > intact);
    let f = store.open_folder("INBOX").unwrap();
    assert_eq!(uids(&f), [1, 2]);
    assert_eq!(f.message(1).unwrap().flags, Flags::FLAGGED);
}

#[test]
fn flags_follow_store_semantics_and_unchangedsince() {
    let (_d, store) = store();
    deliver(store.root(), "a\n");
    deliver(store.root(), "b\n");
    let mut f = store.open_folder("INBOX").unwrap();
    let kw = |s: &[&str]| s.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    f.store_flags(
        &[1, 2],
        StoreOp::Add,
        Flags::SEEN.union(Flags::DELETED),
        &kw(&["b", "a"]),
        None,
    )
    .unwrap();
    let m = f.message(1).unwrap().clone();
    assert_eq!(m.keywords, ["a", "b"]);
    assert!(m.file.ends_with(":2,ST"), "{}", m.file);
    let out = f
        .store_flags(&[1], StoreOp::Remove, Flags::DELETED, &kw(&["a"]), None)
        .unwrap();
    assert_eq!(out.modified.len(), 1);
    assert_eq!(f.message(1).unwrap().keywords, ["b"]);
    // No change, no new modseq (RFC 7162 §3.1.1).
    let before = f.highest_modseq();
    let out = f
        .store_flags(&[1], StoreOp::Add, Flags::SEEN, &[], None)
        .unwrap();
    assert!(out.modified.is_empty());
    assert_eq!(f.highest_modseq(), before);
    // UNCHANGEDSINCE below a message's modseq leaves it alone.
    let ms2 = f.message(2).unwrap().modseq;
    let out = f
        .store_flags(&[1, 2], StoreOp::Replace, Flags::DRAFT, &[], Some(ms2 - 1))
        .unwrap();
    assert_eq!(out.conflicts, [1, 2]);
    let out = f
        .store_flags(&[2], StoreOp::Replace, Flags::DRAFT, &[], Some(ms2))
        .unwrap();
    assert_eq!(out.modified, [(2, f.highest_modseq())]);
    assert!(f.message(2).unwrap().file.ends_with(":2,D"));
}

#[test]
fn expunge_removes_the_file_before_the_record_is_durable() {
    let (_d, store) = store();
    deliver(store.root(), "a\n");
    deliver(store.root(), "b\n");
    let mut f = store.open_folder("INBOX").unwrap();
    f.mark_seen(&[2]).unwrap();
    let files: Vec<PathBuf> = f
        .messages()
        .iter()
        .map(|m| store.root().join(&m.file))
        .collect();
    assert_eq!(f.expunge(&[1, 2, 9]).unwrap(), [1, 2]);
    assert!(files.iter().all(|p| !p.exists()));
    assert!(log_text(store.root()).contains("\"t\":\"x\",\"uid\":2"));
    // A fresh reader (another process after a crash) sees them gone.
    let g = store.open_folder("INBOX").unwrap();
    assert!(g.messages().is_empty());
    assert_eq!(g.uidnext(), 3);
}

#[test]
fn append_and_copy_give_uids_and_keep_flags_keywords_and_dates() {
    let (_d, store) = store();
    store.ensure_default_folders().unwrap();
    let mut inbox = store.open_folder("INBOX").unwrap();
    let date = 1_600_000_000;
    let uid = inbox
        .append(
            b"Subject: x\r\n\r\nhi\n",
            Flags::SEEN,
            &["k".into()],
            Some(date),
        )
        .unwrap();
    assert_eq!(uid, 1);
    let m = inbox.message(1).unwrap().clone();
    assert_eq!((m.size, m.vsize, m.internal_date), (17, 18, date));
    assert!(m.file.starts_with("cur/") && m.file.ends_with(":2,S"));
    let mut sent = store.open_folder("Sent").unwrap();
    sent.append(b"first\n", Flags::EMPTY, &[], None).unwrap();
    let pairs = inbox.copy_to(&[1, 5], &mut sent).unwrap();
    assert_eq!(pairs, [(1, 2)]);
    let copy = sent.message(2).unwrap();
    assert_eq!(
        (copy.flags, copy.keywords.clone()),
        (Flags::SEEN, vec!["k".into()])
    );
    let mtime = std::fs::metadata(store.folder_dir("Sent").unwrap().join(&copy.file))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime,
        SystemTime::UNIX_EPOCH + Duration::from_secs(date as u64)
    );
    // MOVE = copy + expunge; the copy survives.
    inbox.expunge(&[1]).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut sent.open_message(2).unwrap(), &mut text).unwrap();
    assert_eq!(text, "Subject: x\r\n\r\nhi\n");
}

#[test]
fn compaction_keeps_the_state_and_readers_follow_it() {
    let (_d, store) = store();
    for i in 0..3 {
        deliver(store.root(), &format!("{i}\n"));
    }
    let mut a = store.open_folder("INBOX").unwrap();
    let mut b = store.open_folder("INBOX").unwrap();
    for i in 0..600 {
        let op = if i % 2 == 0 {
            StoreOp::Add
        } else {
            StoreOp::Remove
        };
        a.store_flags(&[1, 2], op, Flags::FLAGGED, &[], None)
            .unwrap();
    }
    a.expunge(&[3]).unwrap();
    let lines = log_text(store.root()).lines().count();
    assert!(lines < 300, "{lines} lines: not compacted");
    let changes = b.refresh().unwrap();
    assert_eq!(changes.expunged, [3]);
    assert_eq!(b.highest_modseq(), a.highest_modseq());
    assert_eq!(b.messages(), a.messages());
    assert_eq!(b.uidnext(), 4);
    deliver(store.root(), "after\n");
    assert_eq!(b.refresh().unwrap().added, [4]);
}

#[test]
fn the_folder_tree() {
    let (_d, store) = store();
    store.ensure_default_folders().unwrap();
    store.ensure_default_folders().unwrap();
    let list = store.list_folders().unwrap();
    let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    );
    assert!(
        list[1..]
            .iter()
            .all(|e| e.subscribed && e.special_use.is_some())
    );
    assert_eq!(list[4].special_use, Some(SpecialUse::Sent));
    assert!(store.root().join(".Sent/maildirfolder").is_file());

    store.create_folder("Projekte/Entwürfe", None).unwrap();
    assert!(store.root().join(".Projekte.Entw&APw-rfe/cur").is_dir());
    assert!(matches!(
        store.create_folder("Sent", None),
        Err(Error::FolderExists)
    ));
    assert!(matches!(
        store.create_folder("INBOX", None),
        Err(Error::FolderExists)
    ));
    store.create_folder("Projekte", None).unwrap();
    store.subscribe("Projekte", true).unwrap();
    let mut f = store.open_folder("Projekte/Entwürfe").unwrap();
    f.append(b"x\n", Flags::EMPTY, &[], None).unwrap();
    drop(f);
    store.rename_folder("Projekte", "Alt/P").unwrap();
    let names: Vec<String> = store
        .list_folders()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&"Alt/P/Entwürfe".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("Projekte")));
    assert!(
        store
            .subscriptions()
            .unwrap()
            .contains(&"Alt/P".to_string())
    );
    assert_eq!(
        store
            .open_folder("Alt/P/Entwürfe")
            .unwrap()
            .messages()
            .len(),
        1
    );
    store.delete_folder("Alt/P").unwrap();
    assert!(matches!(
        store.open_folder("Alt/P"),
        Err(Error::NoSuchFolder)
    ));
    assert!(store.open_folder("Alt/P/Entwürfe").is_ok());
    assert!(matches!(store.delete_folder("inbox"), Err(Error::Inbox(_))));
    assert!(matches!(
        store.rename_folder("INBOX", "x"),
        Err(Error::Inbox(_))
    ));
    assert!(matches!(
        store.delete_folder("nope"),
        Err(Error::NoSuchFolder)
    ));
    let leftovers: Vec<_> = std::fs::read_dir(store.root())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("postern-deleting")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn watch_paths_are_the_log_and_new() {
    let (_d, store) = store();
    let f = store.open_folder("INBOX").unwrap();
    assert_eq!(
        f.watch_paths(),
        [store.root().join(LOG_FILE), store.root().join("new")]
    );
}

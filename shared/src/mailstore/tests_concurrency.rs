//! Tests of concurrent writers of one folder's index: threads of one process (each with its
//! own lock file description) and separate processes (this test binary run again as a
//! child), delivering, appending and changing flags at once. UIDs must come out unique and
//! strictly increasing in the log, with every message indexed exactly once.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use super::index::{self, Record};
use super::*;
use crate::maildir::Maildir;

const CHILD_ENV: &str = "POSTERN_MAILSTORE_TEST_CHILD";

/// The add records of the folder's log, in log order; asserts UIDs strictly increase.
fn logged_uids(dir: &Path) -> Vec<u32> {
    let data = std::fs::read(dir.join(LOG_FILE)).unwrap();
    let decoded = index::decode(&data);
    assert_eq!(
        decoded.consumed,
        data.len(),
        "the log ends with a bad record"
    );
    let uids: Vec<u32> = decoded
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Add(a) => Some(a.uid),
            _ => None,
        })
        .collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
    uids
}

/// One writer's work: deliveries as the MDA makes them, appends and flag changes as IMAP
/// sessions make them, and a sync now and then.
fn write_some(root: &Path, n: usize, tag: &str) {
    let maildir = Maildir::create(root).unwrap();
    let mut folder = Store::at(root).unwrap().open_folder("INBOX").unwrap();
    for i in 0..n {
        let text = format!("Subject: {tag} {i}\n\nx\n");
        match i % 4 {
            0 | 1 => {
                maildir.deliver(&[text.as_bytes()], "mx.test").unwrap();
            }
            2 => {
                folder
                    .append(text.as_bytes(), Flags::SEEN, &[], None)
                    .unwrap();
            }
            _ => {
                folder.sync().unwrap();
                let uids: Vec<u32> = folder.messages().iter().map(|m| m.uid).take(3).collect();
                folder
                    .store_flags(&uids, StoreOp::Add, Flags::FLAGGED, &[], None)
                    .unwrap();
                maildir.deliver(&[text.as_bytes()], "mx.test").unwrap();
            }
        }
    }
}

fn check(root: &Path, total: usize) {
    let data = std::fs::read_to_string(root.join(LOG_FILE)).unwrap();
    let mut seen = std::collections::HashMap::new();
    for line in data.lines().filter(|l| l.contains("\"t\":\"a\"")) {
        let f = line
            .split("\"f\":\"")
            .nth(1)
            .unwrap()
            .split(['"', ':'])
            .next()
            .unwrap();
        let base = f.rsplit('/').next().unwrap().to_string();
        if let Some(prev) = seen.insert(base.clone(), line.to_string()) {
            eprintln!("DUP {base}:\n  {prev}\n  {line}");
        }
    }
    let logged = logged_uids(root);
    assert_eq!(
        logged.len(),
        total,
        "every message indexed once: {logged:?}"
    );
    let mut folder = Store::at(root).unwrap().open_folder("INBOX").unwrap();
    assert!(folder.sync().unwrap().is_empty(), "the index missed files");
    let uids: HashSet<u32> = folder.messages().iter().map(|m| m.uid).collect();
    assert_eq!(uids.len(), total);
    assert_eq!(folder.uidnext() as usize, total + 1);
}

#[test]
fn threads_writing_at_once_get_unique_increasing_uids() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("example.org/bob");
    Maildir::create(&root).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || write_some(&root, 40, &format!("t{t}")))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    check(&root, 240);
}

/// The child side of the next test: runs only when the parent names a Maildir.
#[test]
fn child_writer() {
    if let Ok(root) = std::env::var(CHILD_ENV) {
        write_some(Path::new(&root), 60, &format!("p{}", std::process::id()));
    }
}

#[test]
fn processes_writing_at_once_get_unique_increasing_uids() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("example.org/carol");
    Maildir::create(&root).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "mailstore::tests_concurrency::child_writer",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &root)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    check(&root, 240);
}

#[test]
fn first_deliveries_racing_to_a_new_mailbox_are_all_indexed_at_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("example.org/dave");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (root, barrier) = (root.clone(), barrier.clone());
            std::thread::spawn(move || {
                let maildir = Maildir::create(&root).unwrap();
                barrier.wait();
                (0..5)
                    .map(|i| {
                        let text = format!("t{t} m{i}\n");
                        maildir.deliver(&[text.as_bytes()], "mx.test").unwrap().uid
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut given: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .map(|uid| uid.expect("indexed at delivery"))
        .collect();
    given.sort();
    assert_eq!(given, (1..=40).collect::<Vec<u32>>());
    check(&root, 40);
}

#[test]
fn sessions_subscribing_at_once_all_succeed_and_none_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(&dir.path().join("Maildir")).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    store.subscribe(&format!("f{t}-{i}"), true).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let subs: HashSet<String> = store.subscriptions().unwrap().into_iter().collect();
    assert_eq!(subs.len(), 160, "{subs:?}");
}

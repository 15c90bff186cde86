//! Randomized sequences of deliveries, appends, copies, flag changes, expunges, files put
//! by other programs, deliveries cut short by a crash (file linked with its `U=`, record
//! never written) and index losses: a (UIDVALIDITY, UID) pair, once seen, never names
//! another message (RFC 9051 §2.3.1.1), and losing only the log keeps the UIDVALIDITY and
//! the UID of every message whose name carries one.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::maildir::Maildir;

#[derive(Debug, Clone)]
enum Op {
    Deliver,
    Append,
    /// Copy from the second folder into INBOX.
    Copy,
    Foreign,
    CrashedDelivery,
    Flag(usize),
    Expunge(usize),
    Sync,
    LoseLog,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Deliver),
        2 => Just(Op::Append),
        1 => Just(Op::Copy),
        1 => Just(Op::Foreign),
        1 => Just(Op::CrashedDelivery),
        2 => any::<usize>().prop_map(Op::Flag),
        3 => any::<usize>().prop_map(Op::Expunge),
        1 => Just(Op::Sync),
        2 => Just(Op::LoseLog),
    ]
}

/// What every (UIDVALIDITY, UID) ever seen named: the message's body.
struct Model {
    seen: HashMap<(u32, u32), String>,
    counter: usize,
}

impl Model {
    fn next_body(&mut self) -> String {
        self.counter += 1;
        format!("message {}\n", self.counter)
    }

    /// Reads every message of `f`; fails on a pair that named another message before.
    fn check(&mut self, f: &mut Folder) -> std::result::Result<(), TestCaseError> {
        let v = f.uidvalidity();
        for m in f.messages().to_vec() {
            let mut body = String::new();
            f.open_message(m.uid)
                .unwrap()
                .read_to_string(&mut body)
                .unwrap();
            if let Some(before) = self.seen.insert((v, m.uid), body.clone()) {
                prop_assert_eq!(&before, &body, "UID {} of {} reused", m.uid, v);
            }
        }
        Ok(())
    }
}

/// The UIDs of the messages whose names carry one, by body.
fn named(f: &mut Folder) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for m in f.messages().to_vec() {
        if uids::uid_in_name(m.base()) == Some(m.uid) {
            let mut body = String::new();
            f.open_message(m.uid)
                .unwrap()
                .read_to_string(&mut body)
                .unwrap();
            out.insert(body, m.uid);
        }
    }
    out
}

fn run(ops: Vec<Op>) -> std::result::Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(&dir.path().join("example.org/u")).unwrap();
    store.create_folder("Other", None).unwrap();
    let root = store.root().to_path_buf();
    let mut inbox = store.open_folder("INBOX").unwrap();
    let mut other = store.open_folder("Other").unwrap();
    let mut model = Model {
        seen: HashMap::new(),
        counter: 0,
    };
    for (i, op) in ops.into_iter().enumerate() {
        apply(&op, i, &root, &mut inbox, &mut other, &mut model)?;
        inbox.sync().unwrap();
        model.check(&mut inbox)?;
    }
    Ok(())
}

fn apply(
    op: &Op,
    i: usize,
    root: &Path,
    inbox: &mut Folder,
    other: &mut Folder,
    model: &mut Model,
) -> std::result::Result<(), TestCaseError> {
    let pick = |f: &Folder, n: usize| {
        f.messages()
            .get(n % f.messages().len().max(1))
            .map(|m| m.uid)
    };
    match op {
        Op::Deliver => {
            let body = model.next_body();
            Maildir::create(root)
                .unwrap()
                .deliver(&[body.as_bytes()], "h")
                .unwrap();
        }
        Op::Append => {
            let body = model.next_body();
            inbox
                .append(body.as_bytes(), Flags::SEEN, &[], None)
                .unwrap();
        }
        Op::Copy => {
            let body = model.next_body();
            let uid = other
                .append(body.as_bytes(), Flags::EMPTY, &[], None)
                .unwrap();
            other.copy_to(&[uid], inbox).unwrap();
        }
        Op::Foreign => {
            let body = model.next_body();
            std::fs::write(root.join(format!("new/{i}.M0P0.other")), body).unwrap();
        }
        Op::CrashedDelivery => {
            // Linked with the UID it was to get; the add record never written.
            let body = model.next_body();
            let uid = Folder::open("", root).unwrap().uidnext();
            let name = uids::with_uid(&format!("{i}.M1P1.crashed"), uid);
            std::fs::write(root.join("new").join(name), body).unwrap();
        }
        Op::Flag(n) => {
            inbox.refresh().unwrap();
            if let Some(uid) = pick(inbox, *n) {
                inbox
                    .store_flags(&[uid], StoreOp::Add, Flags::FLAGGED, &[], None)
                    .unwrap();
            }
        }
        Op::Expunge(n) => {
            inbox.refresh().unwrap();
            if let Some(uid) = pick(inbox, *n) {
                inbox.expunge(&[uid]).unwrap();
            }
        }
        Op::Sync => drop(inbox.sync().unwrap()),
        Op::LoseLog => {
            inbox.sync().unwrap();
            let (v, before) = (inbox.uidvalidity(), named(inbox));
            std::fs::remove_file(root.join(LOG_FILE)).unwrap();
            *inbox = Folder::open("INBOX", root).unwrap();
            prop_assert_eq!(inbox.uidvalidity(), v, "the UIDVALIDITY was kept");
            let after = named(inbox);
            for (body, uid) in before {
                prop_assert_eq!(after.get(&body), Some(&uid), "UID of {:?} kept", body);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn no_uid_is_ever_reused_and_a_lost_log_keeps_them(
        ops in proptest::collection::vec(op(), 1..30)
    ) {
        run(ops)?;
    }
}

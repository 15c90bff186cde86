//! The mailstore as the real server fills it: messages delivered through postern-mda's
//! `lmtp.sock` by Python's smtplib.LMTP get UIDs 1..n in the INBOX index at delivery time
//! (the log exists and holds them before anything else opens the folder) and keep them when
//! the index is lost; and a real Dovecot's `dovecot-uidlist` for the same Maildir seeds the
//! same UIDs in Postern.

use std::path::Path;

use harness::*;
use shared::mailstore::{LOG_FILE, Store, uidl};

const CLIENT: &str = r#"
import smtplib, sys
s = smtplib.LMTP(sys.argv[1])
s.ehlo("client.example")
for i in range(int(sys.argv[3])):
    body = "Subject: m%d\r\nFrom: sender@elsewhere.net\r\n\r\nbody %d\r\n" % (i, i)
    s.sendmail("sender@elsewhere.net", [sys.argv[2]], body)
s.quit()
"#;

fn deliver(server: &Server, rcpt: &str, count: usize) {
    let socket = server.setup().path("run/lmtp.sock");
    let (status, out, err) = python(
        CLIENT,
        &[socket.to_str().unwrap(), rcpt, &count.to_string()],
    );
    assert!(status.success(), "{out}\n{err}");
}

/// The add records of a log, read as text (not through the code under test): their UIDs.
fn logged_uids(dir: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(dir.join(LOG_FILE)).expect("the MDA wrote the index");
    text.lines()
        .filter_map(|l| {
            let json: serde_json::Value = serde_json::from_str(l.get(9..)?).ok()?;
            (json["t"] == "a").then(|| json["uid"].as_u64().unwrap() as u32)
        })
        .collect()
}

#[test]
fn deliveries_through_the_server_get_uids_one_to_n() {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "pw");
    let server = setup.start();
    deliver(&server, "alice@example.test", 7);
    let root = server.setup().path("state/mail/example.test/alice");
    assert_eq!(logged_uids(&root), (1..=7).collect::<Vec<u32>>());
    let log = server.log_text();
    assert!(log.contains("uid=Some(7)"), "{log}");
    let store = Store::at(&root).unwrap();
    let mut inbox = store.open_folder("INBOX").unwrap();
    assert!(inbox.sync().unwrap().is_empty(), "every file was indexed");
    for m in inbox.messages().to_vec() {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut inbox.open_message(m.uid).unwrap(), &mut text).unwrap();
        assert!(
            text.contains(&format!("Subject: m{}\n", m.uid - 1)),
            "UID {} is {text:?}",
            m.uid
        );
        assert_eq!(m.vsize, m.size + text.matches('\n').count() as u64);
    }
    // The index lost (issue 6): the same UIDVALIDITY and UIDs, hence the same POP3 UIDLs,
    // from the U= in the names and the recorded floor.
    let uidls = |f: &shared::mailstore::Folder| -> Vec<String> {
        f.messages()
            .iter()
            .map(|m| uidl(m.uid, f.uidvalidity()))
            .collect()
    };
    let before = uidls(&inbox);
    inbox.expunge(&[7]).unwrap();
    drop(inbox);
    std::fs::remove_file(root.join(LOG_FILE)).unwrap();
    let inbox = store.open_folder("INBOX").unwrap();
    assert_eq!(uidls(&inbox), before[..6], "UIDLs after the rebuild");
    assert!(inbox.uidnext() > 7, "UID 7 is not given again");
    server.assert_no_panic();
}

/// A private Dovecot (its own config, base_dir and Maildir under a temporary directory)
/// indexes a Maildir with `doveadm`; Postern, opening the same Maildir without an index of
/// its own, must show the same UIDVALIDITY and the same UID for every message.
#[test]
fn a_real_dovecot_uidlist_gives_postern_the_same_uids() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for i in 0..5 {
        let text = format!("Subject: {i}\n\nx\n");
        let name = format!("new/{}.M{i}P1.host,S={}", 1_700_000_000 + i, text.len());
        std::fs::write(maildir.join(name), text).unwrap();
    }
    let Some(dovecot) = dovecot::Doveadm::new(dir.path(), &maildir) else {
        return;
    };
    let run = |args: &[&str]| dovecot.run(args);
    // Dovecot assigns UIDs, then expunges one and flags another, as a user would.
    run(&["mailbox", "status", "all", "INBOX"]);
    run(&["expunge", "mailbox", "INBOX", "uid", "2"]);
    run(&["flags", "add", "\\Seen", "mailbox", "INBOX", "uid", "4"]);
    let status = run(&["-f", "flow", "mailbox", "status", "uidvalidity", "INBOX"]);
    let uidvalidity: u32 = status
        .trim()
        .rsplit("uidvalidity=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let listing = run(&["-f", "tab", "fetch", "uid hdr.subject", "mailbox", "INBOX"]);
    assert!(maildir.join("dovecot-uidlist").is_file());

    let mut folder = Store::at(&maildir).unwrap().open_folder("INBOX").unwrap();
    assert_eq!(folder.uidvalidity(), uidvalidity);
    let mut dovecot: Vec<(u32, String)> = listing
        .lines()
        .skip(1)
        .map(|l| {
            let (uid, subject) = l.split_once('\t').unwrap();
            (uid.parse().unwrap(), subject.trim().to_string())
        })
        .collect();
    dovecot.sort();
    let mut postern = Vec::new();
    for m in folder.messages().to_vec() {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut folder.open_message(m.uid).unwrap(), &mut text).unwrap();
        let subject = text.lines().next().unwrap().trim_start_matches("Subject: ");
        postern.push((m.uid, subject.to_string()));
    }
    assert_eq!(postern, dovecot, "Dovecot's UIDs: {listing}");
    assert_eq!(
        postern.iter().map(|p| p.0).collect::<Vec<_>>(),
        [1, 3, 4, 5]
    );
    let seen = folder.message(4).unwrap().flags;
    assert!(seen.contains(shared::mailstore::Flags::SEEN));
    assert_eq!(uidl(4, uidvalidity), format!("00000004{uidvalidity:08X}"));
}

/// Postern's names (`,S=..,W=..,U=<uid>` and `:2,` flags, Dovecot keyword letters kept) read
/// by a real Dovecot: every message seen, with Postern's CRLF size as its virtual size, its
/// flags, and the keyword whose letter Dovecot's own `dovecot-keywords` gives.
#[test]
fn dovecot_reads_the_names_postern_writes() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let store = Store::at(&maildir).unwrap();
    let md = shared::maildir::Maildir::create(&maildir).unwrap();
    for i in 0..3 {
        md.deliver(&[format!("Subject: p{i}\n\nline\nline\n").as_bytes()], "mx")
            .unwrap();
    }
    std::fs::write(maildir.join("dovecot-keywords"), "0 Work\n").unwrap();
    let mut inbox = store.open_folder("INBOX").unwrap();
    let (seen, work) = (shared::mailstore::Flags::SEEN, vec!["Work".to_string()]);
    let op = shared::mailstore::StoreOp::Add;
    inbox.store_flags(&[2], op, seen, &work, None).unwrap();
    assert!(inbox.message(2).unwrap().file.ends_with(",U=2:2,Sa"));
    let postern: Vec<(String, u64)> = inbox
        .messages()
        .iter()
        .map(|m| (m.base().to_string(), m.vsize))
        .collect();
    drop(inbox);
    let Some(dovecot) = dovecot::Doveadm::new(dir.path(), &maildir) else {
        return;
    };
    let rows = dovecot.fetch("INBOX", "hdr.subject size.virtual flags");
    let mut got: Vec<(String, u64, String)> = rows
        .into_iter()
        .map(|r| {
            (
                r[0].clone(),
                r[1].parse().unwrap(),
                r[2].split_whitespace()
                    .filter(|f| *f != "\\Recent")
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, u64, String)> = (0..3)
        .map(|i| {
            let flags = if i == 1 { "\\Seen Work" } else { "" };
            (format!("p{i}"), postern[i].1, flags.to_string())
        })
        .collect();
    assert_eq!(got, want, "Postern's names: {postern:?}");
}

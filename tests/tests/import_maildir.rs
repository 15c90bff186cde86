//! `postern import maildir` on a Maildir++ made by a real Dovecot (`doveadm` with a private
//! configuration): INBOX filled by a deliverer, subfolders (one nested, Sent), messages saved
//! by Dovecot, flags and keywords set, one message expunged, folders subscribed. The dry run
//! writes nothing; the import copies it into the user's mailstore, where Postern's mailstore
//! shows Dovecot's UIDVALIDITY, UIDs, flags and keywords in every folder (postern-imapd and
//! postern-pop3d do not serve the mailstore yet, so the API is the client here); a second
//! import is refused; then the real server delivers into the imported INBOX with the UID
//! Dovecot would have given next.

use std::collections::BTreeSet;
use std::path::Path;

use harness::dovecot::Doveadm;
use harness::*;
use shared::mailstore::{Store, uidl};

/// (Dovecot's mailbox name, Postern's folder name).
const FOLDERS: [(&str, &str); 4] = [
    ("INBOX", "INBOX"),
    ("Work", "Work"),
    ("Work.Projects", "Work/Projects"),
    ("Sent", "Sent"),
];

fn make_dovecot_maildir(dir: &Path, maildir: &Path) -> Option<Doveadm> {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for i in 0..4 {
        let text = format!("Subject: inbox {i}\nFrom: a@example.net\n\nbody {i}\n");
        let name = format!("new/{}.M{i}P7.mx,S={}", 1_700_000_000 + i, text.len());
        std::fs::write(maildir.join(name), text).unwrap();
    }
    let dovecot = Doveadm::new(dir, maildir)?;
    dovecot.run(&["mailbox", "status", "all", "INBOX"]);
    dovecot.run(&["mailbox", "create", "Work", "Work.Projects", "Sent"]);
    for (mailbox, _) in &FOLDERS[1..] {
        for i in 0..3 {
            let text = format!("Subject: {mailbox} {i}\nFrom: b@example.net\n\nx\n");
            dovecot.run_with(&["save", "-m", mailbox], &text);
        }
    }
    let flags = |what: &str, mailbox: &str, uid: &str| {
        dovecot.run(&["flags", "add", what, "mailbox", mailbox, "uid", uid]);
    };
    flags("\\Seen $Forwarded Project-X", "INBOX", "1");
    flags("\\Seen \\Answered", "INBOX", "3");
    flags("\\Flagged Project-X", "Work", "2");
    flags("\\Answered Important", "Work.Projects", "1");
    flags("\\Seen", "Sent", "1,2,3");
    dovecot.run(&["expunge", "mailbox", "INBOX", "uid", "2"]);
    dovecot.run(&["expunge", "mailbox", "Work", "uid", "3"]);
    dovecot.run(&["mailbox", "subscribe", "Work", "Work.Projects"]);
    Some(dovecot)
}

/// (UID, subject, flags and keywords) of every message, as Dovecot shows them.
fn dovecot_view(dovecot: &Doveadm, mailbox: &str) -> Vec<(u32, String, BTreeSet<String>)> {
    let mut rows: Vec<_> = dovecot
        .fetch(mailbox, "uid hdr.subject flags")
        .into_iter()
        .map(|r| {
            let flags = r[2]
                .split(' ')
                .filter(|f| !f.is_empty() && *f != "\\Recent")
                .map(String::from)
                .collect();
            (r[0].parse().unwrap(), r[1].clone(), flags)
        })
        .collect();
    rows.sort();
    rows
}

fn postern_view(store: &Store, folder: &str) -> (u32, Vec<(u32, String, BTreeSet<String>)>) {
    let mut f = store.open_folder(folder).unwrap();
    let mut rows = Vec::new();
    for m in f.messages().to_vec() {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f.open_message(m.uid).unwrap(), &mut text).unwrap();
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap();
        let flags = m
            .flags
            .imap_names()
            .map(String::from)
            .chain(m.keywords.iter().cloned())
            .collect();
        rows.push((m.uid, subject.to_string(), flags));
    }
    (f.uidvalidity(), rows)
}

const LMTP: &str = r#"
import smtplib, sys
s = smtplib.LMTP(sys.argv[1])
s.sendmail("sender@elsewhere.net", [sys.argv[2]], "Subject: after\r\n\r\nnew\r\n")
s.quit()
"#;

#[test]
fn a_dovecot_maildir_keeps_uids_flags_and_keywords() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("Maildir");
    let Some(dovecot) = make_dovecot_maildir(dir.path(), &src) else {
        return;
    };
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "pw");
    let dest = setup.path("state/mail/example.test/alice");
    let import = |extra: &[&str]| {
        let mut args = vec!["import", "maildir", src.to_str().unwrap()];
        args.extend_from_slice(&["--user", "Alice@example.test"]);
        args.extend_from_slice(extra);
        let (status, out, err) = setup.postern(&args, "");
        (status.code(), format!("{out}{err}"))
    };
    let (code, out) = import(&["--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would copy 11 messages in 4 folders"), "{out}");
    assert!(!dest.exists(), "a dry run writes nothing");

    let (code, out) = import(&[]);
    assert_eq!(code, Some(0), "{out}");
    let store = Store::at(&dest).unwrap();
    for (mailbox, folder) in FOLDERS {
        let want = dovecot_view(&dovecot, mailbox);
        let (uidvalidity, got) = postern_view(&store, folder);
        assert_eq!(uidvalidity, dovecot.uidvalidity(mailbox), "{folder}");
        assert_eq!(got, want, "{folder}: Postern's view differs from Dovecot's");
    }
    let inbox = dovecot_view(&dovecot, "INBOX");
    assert_eq!(inbox.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 3, 4]);
    assert!(inbox[0].2.contains("Project-X") && inbox[0].2.contains("$Forwarded"));
    let folders = store.list_folders().unwrap();
    let work = folders.iter().find(|f| f.name == "Work/Projects").unwrap();
    assert!(work.subscribed, "{folders:?}");
    let sent = folders.iter().find(|f| f.name == "Sent").unwrap();
    assert_eq!(sent.special_use, Some(shared::mailstore::SpecialUse::Sent));
    if is_root() {
        let mail = nix::unistd::User::from_name("postern-mail")
            .unwrap()
            .unwrap();
        for path in [
            dest.clone(),
            dest.join(".Work.Projects/cur"),
            dest.join("postern-index.log"),
        ] {
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(
                std::os::unix::fs::MetadataExt::uid(&meta),
                mail.uid.as_raw(),
                "{path:?}"
            );
        }
    }

    let (code, out) = import(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("already holds"), "{out}");

    // The server delivers into the imported INBOX after Dovecot's last UID.
    let uidnext: u32 = dovecot
        .run(&["-f", "flow", "mailbox", "status", "uidnext", "INBOX"])
        .trim()
        .rsplit("uidnext=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let server = setup.start();
    let socket = server.setup().path("run/lmtp.sock");
    let (status, out, err) = python(LMTP, &[socket.to_str().unwrap(), "alice@example.test"]);
    assert!(status.success(), "{out}\n{err}");
    let (uidvalidity, rows) = postern_view(&store, "INBOX");
    assert_eq!(rows.last().unwrap().0, uidnext, "{rows:?}");
    assert_eq!(rows.last().unwrap().1, "after");
    assert_eq!(uidl(1, uidvalidity), format!("00000001{uidvalidity:08X}"));
    server.assert_no_panic();
}

/// Without Dovecot: a Maildir++ written by hand in Dovecot's formats (uidlist, keywords,
/// a subfolder with a '.' in its name as `&AC4-`, files that are not messages) is imported
/// with its UIDs, flags and keywords; a source that is not a Maildir and a mailbox that
/// already holds mail are refused, each with a message saying why.
#[test]
fn a_hand_made_maildir_is_imported_and_bad_sources_are_refused() {
    let setup = Setup::new("");
    let src = setup.path("src");
    for sub in [
        "cur",
        "new",
        "tmp",
        ".Lists.a&AC4-b/cur",
        ".Lists.a&AC4-b/new",
        ".junkdir",
    ] {
        std::fs::create_dir_all(src.join(sub)).unwrap();
    }
    write(
        &src.join("dovecot-uidlist"),
        "3 V4242 N30\n7 :100.M1P1.h,S=2\n20 :101.M1P1.h,S=2\n",
    );
    write(&src.join("dovecot-keywords"), "0 $Label1\n1 Urgent\n");
    write(&src.join("cur/100.M1P1.h,S=2:2,RSb"), "a\n");
    write(&src.join("cur/101.M1P1.h,S=2:2,Fa"), "b\n");
    write(&src.join("new/102.M1P1.h"), "c\n");
    write(&src.join("tmp/99.M1P1.h"), "partial");
    write(&src.join("cur/.hidden"), "x");
    write(&src.join("dovecot.index.log"), "binary");
    write(&src.join(".Lists.a&AC4-b/cur/200.M1P1.h:2,S"), "d\n");
    let import = |src: &Path, user: &str| {
        let args = ["import", "maildir", src.to_str().unwrap(), "--user", user];
        let (status, out, err) = setup.postern(&args, "");
        (status.code(), format!("{out}{err}"))
    };
    let (code, out) = import(&setup.path("etc"), "bob@example.test");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not a Maildir"), "{out}");

    let (code, out) = import(&src, "bob@example.test");
    assert_eq!(code, Some(0), "{out}");
    let dest = setup.path("state/mail/example.test/bob");
    assert!(!dest.join("tmp/99.M1P1.h").exists() && !dest.join("dovecot.index.log").exists());
    let store = Store::at(&dest).unwrap();
    let inbox = store.open_folder("INBOX").unwrap();
    assert_eq!(inbox.uidvalidity(), 4242);
    let got: Vec<_> = inbox
        .messages()
        .iter()
        .map(|m| {
            (
                m.uid,
                m.flags.imap_names().collect::<Vec<_>>(),
                m.keywords.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (7, vec!["\\Answered", "\\Seen"], vec!["Urgent".to_string()]),
            (20, vec!["\\Flagged"], vec!["$Label1".to_string()]),
            (30, vec![], vec![]),
        ]
    );
    let lists = store.open_folder("Lists/a.b").unwrap();
    assert_eq!(lists.messages().len(), 1);

    let (code, out) = import(&src, "bob@example.test");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("INBOX already holds 3 messages"), "{out}");
}

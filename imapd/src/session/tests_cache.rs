//! Session tests of the folder cache: SEARCH header keys answered from it and from the
//! files alike, messages other sessions append and expunge, and entries made from the
//! header alone completed when BODYSTRUCTURE is asked for.

use super::tests::{logged_in, run};
use super::{Session, cache};

const MESSAGES: &[&str] = &[
    "From: =?ISO-8859-1?Q?Andr=E9?= Pirard <pirard@vm1.example>\r\nTo: Alice <a@x.test>, \"Bob, Jr.\" <bob@y.test>\r\nSubject: =?UTF-8?Q?Caf=C3=A9_Quarterly?=\r\n\r\nbody one\r\n",
    "From: zebrowski@corp.test\r\nCc: Team: c@d.test, e@f.test;\r\nSubject: plain\r\n folded\r\n\r\nbody two\r\n",
    "To: undisclosed-recipients:;\r\nSubject: no from\r\n\r\nbody three\r\n",
    "From: J\u{f6}rg <j@x.test>\nSubject: LF only\n\nFrom: body@x.test\n",
];

const QUERIES: &[&str] = &[
    "UID SEARCH FROM \"andré\"",
    "UID SEARCH FROM PIRARD@VM1",
    "UID SEARCH FROM \"\"",
    "UID SEARCH TO \"bob, jr.\"",
    "UID SEARCH TO bob@y",
    "UID SEARCH CC team",
    "UID SEARCH CC \"\"",
    "UID SEARCH BCC x",
    "UID SEARCH CHARSET UTF-8 SUBJECT \"café\"",
    "UID SEARCH SUBJECT \"=?utf-8?q\"",
    "UID SEARCH SUBJECT \"plain folded\"",
    "UID SEARCH HEADER SUBJECT quarterly",
    "UID SEARCH HEADER to undisclosed",
    "UID SEARCH FROM \"jörg\"",
    "UID SEARCH FROM body@x",
    "UID SEARCH OR FROM zebrowski SUBJECT lf NOT TO alice",
];

fn append_all(s: &mut Session) {
    for m in MESSAGES {
        run(s, &format!("x APPEND INBOX {{{}+}}\r\n{m}", m.len()));
    }
}

fn answers(s: &mut Session) -> Vec<String> {
    QUERIES
        .iter()
        .map(|q| run(s, &format!("t {q}")).1)
        .collect()
}

#[test]
fn search_answers_from_the_cache_as_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    append_all(&mut s);
    run(&mut s, "s SELECT INBOX");
    // Nothing cached yet: answered from the files, and the headers cached.
    let first = answers(&mut s);
    let expected = [
        "1", "1", "1 2 4", "1", "1", "2", "2", "", "1", "1", "2", "1", "3", "4", "", "2 4",
    ];
    for (got, want) in first.iter().zip(expected) {
        let want = format!(
            "* SEARCH{}{want}\r\nt OK done\r\n",
            if want.is_empty() { "" } else { " " }
        );
        assert_eq!(got, &want);
    }
    let user_dir = dir.path().join("example.test/alice");
    assert!(user_dir.join(cache::FILE).exists());
    // Change the files behind the cache's back: the same answers come from the cache, in
    // this session and in another one that reads the cache file.
    for sub in ["cur", "new"] {
        for f in std::fs::read_dir(user_dir.join(sub)).unwrap().flatten() {
            std::fs::write(f.path(), "From: nobody\r\nSubject: changed\r\n\r\nx\r\n").unwrap();
        }
    }
    assert_eq!(answers(&mut s), first);
    let mut t = logged_in(&dir);
    run(&mut t, "s SELECT INBOX");
    assert_eq!(answers(&mut t), first);
    // SEARCH cached the header alone: BODYSTRUCTURE reads the (changed) file.
    let (_, out) = run(&mut t, "f FETCH 1 (BODYSTRUCTURE)");
    assert!(out.contains("\"7BIT\" 3 1 NIL"), "{out}");
}

#[test]
fn search_follows_appends_and_expunges_of_another_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = logged_in(&dir);
    let mut b = logged_in(&dir);
    append_all(&mut a);
    run(&mut a, "s SELECT INBOX");
    run(&mut b, "s SELECT INBOX");
    let (_, out) = run(&mut a, "t UID SEARCH FROM zebrowski");
    assert_eq!(out, "* SEARCH 2\r\nt OK done\r\n");
    let m = "From: Zebrowski <z@other.test>\r\nSubject: new\r\n\r\nx\r\n";
    run(&mut b, &format!("x APPEND INBOX {{{}+}}\r\n{m}", m.len()));
    run(&mut b, "d UID STORE 2 +FLAGS (\\Deleted)");
    run(&mut b, "e EXPUNGE");
    // b's SEARCH caches the new message; a sees it after the updates.
    let (_, out) = run(&mut b, "t UID SEARCH FROM zebrowski");
    assert_eq!(out, "* SEARCH 5\r\nt OK done\r\n");
    let (_, out) = run(&mut a, "n NOOP");
    assert!(
        out.contains("* 2 EXPUNGE\r\n") && out.contains("* 4 EXISTS\r\n"),
        "{out}"
    );
    let (_, out) = run(&mut a, "t UID SEARCH FROM zebrowski");
    assert_eq!(out, "* SEARCH 5\r\nt OK done\r\n");
    let (_, out) = run(&mut a, "t SEARCH FROM \"\"");
    assert_eq!(out, "* SEARCH 1 3 4\r\nt OK done\r\n");
}

#[test]
fn an_envelope_only_entry_is_completed_by_bodystructure() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = logged_in(&dir);
    append_all(&mut s);
    run(&mut s, "s SELECT INBOX");
    let (_, both) = run(&mut s, "f FETCH 1:* (ENVELOPE BODYSTRUCTURE)");
    std::fs::remove_file(dir.path().join("example.test/alice").join(cache::FILE)).unwrap();
    let mut t = logged_in(&dir);
    run(&mut t, "s SELECT INBOX");
    let (_, env) = run(&mut t, "f FETCH 1:* (ENVELOPE)");
    let (_, again) = run(&mut t, "f FETCH 1:* (ENVELOPE BODYSTRUCTURE)");
    assert_eq!(again, both);
    for (line, full) in env.lines().zip(both.lines()) {
        let envelope = line.trim_end_matches(')');
        assert!(full.starts_with(envelope), "{line} / {full}");
    }
}

/// Enough messages for the cache to be filled on threads (`prefill.rs`).
fn many(s: &mut Session) {
    for i in 0..150 {
        let m = match i % 3 {
            0 => format!(
                "From: Zed {i} <z{i}@x.test>\r\nSubject: =?UTF-8?Q?n=C2=B0{i}?=\r\n\r\nbody\r\n"
            ),
            1 => format!("From: other@x.test\nTo: a{i}@y.test\nSubject: plain {i}\n\nline\nline\n"),
            _ => format!(
                "Subject: multi {i}\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"
            ),
        };
        run(s, &format!("x APPEND INBOX {{{}+}}\r\n{m}", m.len()));
    }
    run(s, "s SELECT INBOX");
}

#[test]
fn entries_made_ahead_on_threads_equal_those_made_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache_file = dir.path().join("example.test/alice").join(cache::FILE);
    let mut a = logged_in(&dir);
    many(&mut a);
    let ahead = |s: &mut Session, q: &str| run(s, &format!("t {q}")).1;
    let searched = ahead(&mut a, "SEARCH FROM zed");
    let envelopes = ahead(&mut a, "FETCH 1:* (ENVELOPE)");
    std::fs::remove_file(&cache_file).unwrap();
    let whole = ahead(&mut a, "FETCH 1:* (BODYSTRUCTURE ENVELOPE)");
    // One by one, in a session without the cache file: the same.
    std::fs::remove_file(&cache_file).unwrap();
    let mut b = logged_in(&dir);
    run(&mut b, "s SELECT INBOX");
    assert_eq!(ahead(&mut b, "SEARCH UID 1:* FROM zed"), searched);
    let hits = searched.lines().next().unwrap().split(' ').count() - 2;
    assert_eq!(hits, 50, "{searched}");
    let one_by_one = |s: &mut Session, items: &str| -> String {
        let mut out = String::new();
        for n in 1..=150 {
            out.push_str(&ahead(s, &format!("FETCH {n} {items}")).replace("t OK done\r\n", ""));
        }
        out + "t OK done\r\n"
    };
    assert_eq!(one_by_one(&mut b, "(ENVELOPE)"), envelopes);
    std::fs::remove_file(&cache_file).unwrap();
    let mut c = logged_in(&dir);
    run(&mut c, "s SELECT INBOX");
    assert_eq!(one_by_one(&mut c, "(BODYSTRUCTURE ENVELOPE)"), whole);
}

//! mbsync (isync) against postern-imapd over 993: a two-way sync of several folders, run
//! twice, with no duplicates on either side; a server-side flag change and a local deletion
//! then travel. Skips with a reason when mbsync (Debian package isync) is missing.

use std::path::Path;
use std::process::Command;

use harness::{Setup, python};

const SEED: &str = r#"
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx)
m.login("alice@example.test", "alice-pw")
m.create("Projects")
def msg(i): return ("From: x@example.net\r\nSubject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\nbody %d\r\n" % (i, i, i)).encode()
for i in range(3): m.append("INBOX", None, None, msg(i))
for i in range(3, 5): m.append("Projects", None, None, msg(i))
m.logout()
"#;

const CHECK: &str = r#"
import imaplib, ssl, sys, re
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx)
m.login("alice@example.test", "alice-pw")
for folder, want in [("INBOX", int(sys.argv[2])), ("Projects", 2), ("Local", 1)]:
    typ, data = m.select(folder)
    assert typ == "OK", (folder, data)
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    ids = [d[1].strip() for d in data if isinstance(d, tuple)]
    print(folder, ids)
    assert len(ids) == want and len(set(ids)) == want, (folder, ids)
if sys.argv[3] == "flag":
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Flagged)")
m.logout()
"#;

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(d) = std::fs::read_dir(dir.join(sub)) {
            out.extend(
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
    }
    out
}

fn mbsync(rc: &Path) {
    let out = Command::new("mbsync")
        .arg("-c")
        .arg(rc)
        .arg("-a")
        .output()
        .unwrap();
    println!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mbsync failed");
}

#[test]
fn mbsync_two_way_sync_twice_without_duplicates() {
    if Command::new("mbsync").arg("--version").output().is_err() {
        println!("SKIPPED: mbsync not installed (Debian package isync)");
        return;
    }
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "alice-pw");
    let server = setup.start();
    let port = server.setup().port("imaps").to_string();
    let (status, _, err) = python(SEED, &[&port]);
    assert!(status.success(), "{err}");
    let local = server.setup().path("local");
    for (folder, n) in [("INBOX", 1), ("Local", 1)] {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(local.join(folder).join(sub)).unwrap();
        }
        for i in 0..n {
            let text = format!(
                "From: me@example.test\nSubject: {folder}{i}\nMessage-ID: <{folder}{i}@local>\n\nlocal\n"
            );
            std::fs::write(
                local.join(folder).join(format!("cur/100{i}.local:2,S")),
                text,
            )
            .unwrap();
        }
    }
    let rc = server.setup().path("mbsyncrc");
    let cert = server.setup().path("tls/cert.pem");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount postern\nHost 127.0.0.1\nPort {port}\nUser alice@example.test\nPass alice-pw\nSSLType IMAPS\nCertificateFile {}\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount postern\n\n\
             MaildirStore local\nPath {}/\nInbox {}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n",
            cert.display(),
            local.display(),
            local.display()
        ),
    )
    .unwrap();
    mbsync(&rc);
    mbsync(&rc);
    let (status, out, err) = python(CHECK, &[&port, "4", "flag"]);
    println!("{out}");
    assert!(status.success(), "{out}{err}");
    assert_eq!(files(&local.join("INBOX")).len(), 4);
    assert_eq!(files(&local.join("Projects")).len(), 2);
    // The flag set on the server reaches the local copy.
    mbsync(&rc);
    let flagged = files(&local.join("INBOX"))
        .into_iter()
        .filter(|f| f.rsplit(":2,").next().is_some_and(|fl| fl.contains('F')))
        .count();
    assert_eq!(flagged, 1);
    // A local deletion (trashed, then expunged) reaches the server.
    let victim = files(&local.join("Projects")).into_iter().next().unwrap();
    let from = ["cur", "new"]
        .iter()
        .map(|s| local.join("Projects").join(s).join(&victim))
        .find(|p| p.exists())
        .unwrap();
    std::fs::remove_file(from).unwrap();
    mbsync(&rc);
    mbsync(&rc);
    let (status, out, err) = python(
        &CHECK.replace("(\"Projects\", 2)", "(\"Projects\", 1)"),
        &[&port, "4", "none"],
    );
    println!("{out}");
    assert!(status.success(), "{out}{err}");
    server.assert_no_panic();
}

//! Disk full (ARCHITECTURE §6: any write error answers a 4xx): with `state_dir` on a small
//! tmpfs that is then filled, a client gets `452 4.3.1` and nothing is acknowledged; once space
//! returns, mail flows again. Needs root (mount).

use std::io::Write;
use std::process::Command;

use harness::*;

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const CLIENT: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("filler")
s.mail("s@elsewhere.net")
s.rcpt("alice@example.test")
code, msg = s.data(b"Subject: " + sys.argv[2].encode() + b"\r\n\r\n" + b"x" * 2000 + b"\r\n")
print(code, msg.decode())
s.quit()
"#;

#[test]
fn a_full_disk_answers_4xx_and_mail_flows_again_when_space_returns() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a small tmpfs for state_dir needs root");
        return;
    }
    let setup = Setup::new("[log]\nlevel = \"info\"\n");
    setup.add_user("alice@example.test", "pw");
    let state = setup.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs"])
        .arg(&state)
        .status();
    if !matches!(mounted, Ok(s) if s.success()) {
        eprintln!("SKIPPED: cannot mount a tmpfs here ({mounted:?})");
        return;
    }
    let _mount = Mount(state.clone());
    let server = setup.start();
    let port = server.setup().port("smtp").to_string();

    // Fill the file system to the last byte.
    let filler = state.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.write_all(&[0u8; 1024]);
    let _ = f.sync_all();
    drop(f);

    let (status, out, err) = python(CLIENT, &[&port, "while-full"]);
    assert!(status.success(), "{out}{err}");
    assert!(
        out.starts_with("452 4.3.1"),
        "a full disk must answer 452 4.3.1, got {out}"
    );
    server.wait_log("cannot queue the message", 0);
    assert_eq!(
        server.queued(),
        Vec::<String>::new(),
        "a refused message was left in the queue"
    );

    std::fs::remove_file(&filler).unwrap();
    let (status, out, err) = python(CLIENT, &[&port, "after-space-returned"]);
    assert!(status.success(), "{out}{err}");
    assert!(out.starts_with("250 2.0.0"), "{out}");
    let new = server.setup().path("state/mail/example.test/alice/new");
    wait_until("delivery after space returned", || {
        std::fs::read_dir(&new)
            .map(|d| d.count() == 1)
            .unwrap_or(false)
    });
}

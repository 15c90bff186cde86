//! Socket activation as the packaged socket units do it: `systemd-socket-activate` (package
//! systemd) binds two ports and starts `postern serve` with them named `smtp` and
//! `submission` (`FileDescriptorName=`), Postern serves on them instead of its configured
//! addresses, and mail sent through the handed-over smtp socket is delivered.

use std::process::{Command, Stdio};

use harness::*;

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Stops the activated server whatever the test does.
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = wait_output_of(&mut self.0);
        }
    }
}

fn wait_output_of(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

#[test]
fn named_sockets_from_systemd_carry_mail() {
    let Some(activate) = which("systemd-socket-activate") else {
        eprintln!("SKIPPED: systemd-socket-activate not installed (package systemd)");
        return;
    };
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "alice-pw");
    let ports = free_ports(2);
    let (smtp, submission) = (ports[0], ports[1]);
    let log = std::fs::File::create(setup.path("activate.log")).unwrap();
    let child = Command::new(activate)
        .arg("-l")
        .arg(format!("127.0.0.1:{smtp}"))
        .arg("-l")
        .arg(format!("127.0.0.1:{submission}"))
        .arg("--fdname=smtp:submission")
        .arg(bin("postern"))
        .args(["serve", "--config"])
        .arg(&setup.config)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut server = Stop(child);
    let log_text = || std::fs::read_to_string(setup.path("activate.log")).unwrap_or_default();
    for port in [smtp, submission] {
        wait_until("a greeting on the systemd socket", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && read_greeting(([127, 0, 0, 1], port).into()).starts_with("220 ")
        });
    }
    // systemd's sockets took the place of the configured addresses of those names.
    assert!(std::net::TcpStream::connect(setup.addr("smtp")).is_err());
    assert!(std::net::TcpStream::connect(setup.addr("submission")).is_err());
    assert!(
        log_text().contains("using sockets from systemd"),
        "{}",
        log_text()
    );

    let script = format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {smtp})\n\
         s.sendmail('x@elsewhere.net', ['alice@example.test'], b'Subject: activated\\r\\n\\r\\nhi\\r\\n')\n\
         s.quit()\nprint('sent')\n"
    );
    let (status, out, err) = python(&script, &[]);
    assert!(status.success() && out.contains("sent"), "{out}{err}");
    let new = setup.path("state/mail/example.test/alice/new");
    wait_until("delivery through the systemd socket", || {
        std::fs::read_dir(&new).is_ok_and(|d| d.count() == 1)
    });

    let pid = nix::unistd::Pid::from_raw(server.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = wait_output_of(&mut server.0).expect("exit status");
    assert!(status.success(), "{status}:\n{}", log_text());
    assert!(!log_text().contains("panicked"), "{}", log_text());
}

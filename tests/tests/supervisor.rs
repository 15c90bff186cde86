//! The real `postern serve`: five children, privilege separation as root, readiness to
//! systemd, restart of a dead child, SIGHUP reload (good and broken), SIGTERM, and children
//! exiting when the supervisor is SIGKILLed.

use std::os::unix::process::CommandExt;
use std::process::Command;

use harness::*;
use nix::sys::signal::Signal;

const FIVE: [&str; 5] = [
    "postern-authd",
    "postern-imapd",
    "postern-mda",
    "postern-mta",
    "postern-pop3d",
];

#[test]
fn serve_runs_five_children_that_answer_on_their_ports() {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "secret-1");
    let mut server = setup.start();
    let kids = server.wait_children(&FIVE);
    assert_eq!(kids.len(), 5);
    // Each daemon greets in its own protocol.
    assert!(
        server
            .ready_message
            .contains("STATUS=serving: 5 children ready"),
        "{}",
        server.ready_message
    );
    let smtp = read_greeting(server.setup().addr("smtp"));
    assert!(smtp.starts_with("220 mail.example.test ESMTP"), "{smtp:?}");
    let imap = read_greeting(server.setup().addr("imap"));
    assert!(imap.starts_with("* OK [CAPABILITY IMAP4rev1"), "{imap:?}");
    let pop = read_greeting(server.setup().addr("pop3"));
    assert!(pop.starts_with("+OK mail.example.test POP3"), "{pop:?}");
    assert!(server.auth_socket().exists());
    assert!(server.setup().path("run/lmtp.sock").exists());
    assert!(
        server.setup().path("tls/cert.pem").exists(),
        "self-signed certificate generated"
    );
    assert!(server.stop().success());
    server.assert_no_panic();
}

#[test]
fn children_start_under_a_small_open_files_limit() {
    // An administrator's LimitNOFILE=128: every daemon still starts and serves.
    let setup = Setup::new("").open_files_limit(128);
    let mut server = setup.start();
    assert_eq!(server.wait_children(&FIVE).len(), 5);
    let smtp = read_greeting(server.setup().addr("smtp"));
    assert!(smtp.starts_with("220 mail.example.test ESMTP"), "{smtp:?}");
    let imap = read_greeting(server.setup().addr("imap"));
    assert!(imap.starts_with("* OK [CAPABILITY IMAP4rev1"), "{imap:?}");
    let log = server.log_text();
    assert!(!log.contains("exited with status"), "{log}");
    assert!(server.stop().success());
    server.assert_no_panic();
}

#[test]
fn as_root_no_child_is_root_and_only_authd_reads_the_users_file() {
    if !is_root() {
        eprintln!("SKIPPED: privilege separation needs root (run the suite as root, as CI does)");
        return;
    }
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "secret-1");
    let users = setup.path("etc/users");
    let server = setup.start();
    let kids = server.wait_children(&FIVE);
    let mut reader_ok = Vec::new();
    for (pid, name) in &kids {
        let (uid, gid) = ids_of(*pid);
        assert_ne!(uid, 0, "{name} runs as root");
        assert_ne!(gid, 0, "{name} runs with group root");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        assert_eq!(groups.trim(), "Groups:", "{name} kept supplementary groups");
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
            "{name} lacks no_new_privs"
        );
        // Try to read the users file with exactly this child's identity.
        let can_read = Command::new("cat")
            .arg(&users)
            .uid(uid)
            .gid(gid)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        if can_read {
            reader_ok.push(name.clone());
        }
    }
    assert_eq!(
        reader_ok,
        vec!["postern-authd".to_string()],
        "who can read the users file"
    );
    let names: Vec<String> = kids.iter().map(|(p, _)| user_name(ids_of(*p).0)).collect();
    assert!(
        names.contains(&"postern-auth".to_string())
            && names.contains(&"postern-mta".to_string())
            && names.contains(&"postern-mail".to_string()),
        "{names:?}"
    );
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default()
}

#[test]
fn a_killed_child_comes_back_while_the_others_keep_their_pids() {
    let server = Setup::new("").start();
    let before = server.wait_children(&FIVE);
    let (victim, _) = before
        .iter()
        .find(|(_, n)| n == "postern-mta")
        .cloned()
        .unwrap();
    let mark = server.log_len();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    server.wait_log("postern-mta killed by SIGKILL; restarting", mark);
    server.wait_log("started postern-mta", mark);
    let after = server.wait_children(&FIVE);
    for (pid, name) in &before {
        let now = after.iter().find(|(_, n)| n == name).unwrap().0;
        if name == "postern-mta" {
            assert_ne!(now, *pid, "mta was not restarted");
        } else {
            assert_eq!(now, *pid, "{name} was restarted too");
        }
    }
    wait_until("smtp answers again", || {
        read_greeting(server.setup().addr("smtp")).starts_with("220 ")
    });
}

#[test]
fn a_crashing_child_is_restarted_with_growing_delays() {
    let server = Setup::new("").start();
    let mark = server.log_len();
    let mut delays = Vec::new();
    for _ in 0..3 {
        let kids = server.wait_children(&FIVE);
        let pid = kids.iter().find(|(_, n)| n == "postern-pop3d").unwrap().0;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        wait_until("pop3d back", || {
            server
                .children()
                .iter()
                .any(|(p, n)| n == "postern-pop3d" && *p != pid)
        });
    }
    for line in server.log_text()[mark..]
        .lines()
        .filter(|l| l.contains("postern-pop3d killed by SIGKILL"))
    {
        delays.push(
            line.split("restarting in ")
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string(),
        );
    }
    assert_eq!(delays, vec!["200ms", "400ms", "800ms"]);
}

fn pids(kids: &[(i32, String)]) -> Vec<i32> {
    let mut p: Vec<i32> = kids.iter().map(|k| k.0).collect();
    p.sort_unstable();
    p
}

/// Waits until the supervisor has exactly five children, none of them in `old`.
fn wait_new_generation(server: &Server, old: &[i32]) -> Vec<(i32, String)> {
    let mut kids = Vec::new();
    wait_until(
        "a new generation of five children, the old one gone",
        || {
            kids = server.children();
            kids.len() == 5 && kids.iter().all(|(p, _)| !old.contains(p))
        },
    );
    kids
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_running() {
    let mut server = Setup::new("").start();
    let before = pids(&server.wait_children(&FIVE));
    let config = server.setup().config.clone();
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{good}\n[limits]\nmessage_sise = 10\n")).unwrap();
    let bad_line = good.lines().count() + 3;
    let mark = server.log_len();
    server.signal(Signal::SIGHUP);
    let log = server.wait_log("reload refused", mark);
    let expected = format!(
        "{}:{bad_line}: limits.message_sise: unknown key",
        config.display()
    );
    assert!(
        log[mark..].contains(&expected),
        "no {expected:?} in:\n{}",
        &log[mark..]
    );
    // The refusal is final once logged: the same children keep serving.
    assert_eq!(
        pids(&server.wait_children(&FIVE)),
        before,
        "children changed after a refused reload"
    );
    assert!(read_greeting(server.setup().addr("smtp")).starts_with("220 "));

    // Fixed: a reload replaces every child and systemd hears READY=1 again.
    std::fs::write(&config, &good).unwrap();
    server.drain_notify();
    let mark = server.log_len();
    server.signal(Signal::SIGHUP);
    server.wait_log("configuration reloaded", mark);
    let ready = server.wait_notify("READY=1");
    assert!(ready.contains("STATUS=serving"), "{ready}");
    wait_new_generation(&server, &before);
    assert!(read_greeting(server.setup().addr("smtp")).starts_with("220 "));
    assert!(server.stop().success());
}

#[test]
fn sighup_applies_a_new_listener() {
    let mut server = Setup::new("").start();
    let old_port = server.setup().port("imap");
    let before = pids(&server.wait_children(&FIVE));
    let new_port = free_port();
    server
        .setup_mut()
        .ports
        .iter_mut()
        .find(|(l, _)| *l == "imap")
        .unwrap()
        .1 = new_port;
    server.setup_mut().write_config();
    let mark = server.log_len();
    server.signal(Signal::SIGHUP);
    server.wait_log("configuration reloaded", mark);
    wait_new_generation(&server, &before);
    assert!(read_greeting(server.setup().addr("imap")).starts_with("* OK"));
    // Once the old imapd has drained, nothing listens on the old port any more.
    wait_until("the old port to close", || {
        std::net::TcpStream::connect(("127.0.0.1", old_port)).is_err()
    });
}

#[test]
fn sigterm_stops_everything_and_exits_0() {
    let mut server = Setup::new("").start();
    let kids = server.wait_children(&FIVE);
    let status = server.stop();
    assert!(status.success(), "exit status {status}");
    for (pid, name) in kids {
        assert!(!alive(pid), "{name} ({pid}) outlived the supervisor");
    }
    assert!(!server.auth_socket().exists(), "auth.sock left behind");
    server.assert_no_panic();
}

#[test]
fn children_exit_when_the_supervisor_is_killed() {
    let mut server = Setup::new("").start();
    let kids = server.wait_children(&FIVE);
    server.signal(Signal::SIGKILL);
    server.wait_exit();
    wait_until("children to notice the death pipe", || {
        kids.iter().all(|(pid, _)| !alive(*pid))
    });
    let log = server.log_text();
    assert!(log.contains("supervisor is gone"), "{log}");
}

#[test]
fn a_child_refuses_a_supervisor_of_another_version() {
    let out = Command::new(bin("postern-mta"))
        .env("POSTERN_VERSION", "0.0.1-other")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refuses to run under supervisor 0.0.1-other")
            && err.contains("mixed old and new binaries"),
        "{err}"
    );
    let out = Command::new(bin("postern-imapd"))
        .env_remove("POSTERN_VERSION")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is started by `postern serve`"));
}

#[test]
fn listeners_handed_over_by_systemd_are_used() {
    let Ok(activate) = which("systemd-socket-activate") else {
        eprintln!("SKIPPED: systemd-socket-activate not installed (package systemd)");
        return;
    };
    let setup = Setup::new("");
    let port = free_port();
    // systemd-socket-activate binds the port and execs postern with LISTEN_FDS for "smtp".
    let child = Command::new(activate)
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=smtp"])
        .arg(bin("postern"))
        .args(["serve", "--config"])
        .arg(&setup.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(setup.path("activate.log")).unwrap())
        .spawn()
        .unwrap();
    // Killed if the test fails half-way (its children then exit on the death pipe).
    let mut child = KillOnDrop(child);
    wait_until("smtp answers on the systemd socket", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && read_greeting(([127, 0, 0, 1], port).into()).starts_with("220 ")
    });
    // The configured smtp address is not bound: systemd's socket took its place.
    assert!(std::net::TcpStream::connect(setup.addr("smtp")).is_err());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

#[test]
fn children_inherit_no_stray_fd_of_the_supervisor() {
    use std::os::fd::AsRawFd;
    let setup = Setup::new("");
    // An fd without O_CLOEXEC, as a careless parent might hand postern serve.
    let marker = setup.path("stray-marker");
    std::fs::write(&marker, "secret").unwrap();
    let file = std::fs::File::open(&marker).unwrap();
    // A high number, where no handed-over fd of a child will land on it by chance; dup2
    // leaves it without O_CLOEXEC.
    let stray_fd = 200 + (std::process::id() % 100) as i32;
    assert_eq!(unsafe { libc::dup2(file.as_raw_fd(), stray_fd) }, stray_fd);
    let server = setup.start();
    unsafe { libc::close(stray_fd) };
    let kids = server.wait_children(&FIVE);
    let supervisor_has_it = std::fs::read_link(format!("/proc/{}/fd/{stray_fd}", server.pid))
        .is_ok_and(|p| p == marker);
    assert!(supervisor_has_it, "the test did not hand the fd over");
    for (pid, name) in kids {
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            assert_ne!(
                target,
                marker,
                "{name} inherited the stray fd {:?}",
                entry.file_name()
            );
        }
    }
}

/// A fresh machine as root: no service users yet; `postern user add` then `postern serve`
/// (with `create_missing`, as in the dev config) must come up and verify the user. Uses
/// service user names of its own so that it really starts from nothing, and removes them.
#[test]
fn fresh_install_as_root_creates_service_users_and_serves() {
    if !is_root() {
        eprintln!("SKIPPED: creating service users needs root");
        return;
    }
    let tag = std::process::id() % 100_000;
    let names = [
        format!("pta{tag}"),
        format!("ptm{tag}"),
        format!("ptl{tag}"),
    ];
    let setup = Setup::new("");
    let text = setup.config_text().replace(
        "create_missing = true",
        &format!(
            "create_missing = true\nauth = \"{}\"\nmta = \"{}\"\nmail = \"{}\"",
            names[0], names[1], names[2]
        ),
    );
    std::fs::write(&setup.config, text).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        setup.add_user("alice@example.test", "pw");
        let server = setup.start();
        let client = shared::proto::auth::AuthClient::new(server.auth_socket());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = rt
            .block_on(client.verify(
                shared::proto::auth::Mechanism::Plain,
                "alice@example.test",
                "pw",
                None,
                "imap",
            ))
            .unwrap();
        assert_eq!(
            outcome,
            shared::proto::auth::VerifyOutcome::Ok {
                user: "alice@example.test".into()
            }
        );
    }));
    for name in &names {
        let _ = Command::new("userdel").arg(name).status();
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// systemd hears READY=1 only once every child serves: with postern-pop3d made to start two
/// seconds late (a wrapper script in its place), readiness waits for it, and at that moment
/// every listener greets at once.
#[test]
fn ready_is_sent_only_when_every_child_serves() {
    let dir = tempfile::tempdir().unwrap();
    // The service users must reach the wrapper when the test runs as root.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // Copies, not symlinks: the supervisor finds the daemons beside its resolved executable.
    for name in ["postern", "postern-mta", "postern-mda", "postern-imapd"] {
        let to = dir.path().join(name);
        if std::fs::hard_link(bin(name), &to).is_err() {
            std::fs::copy(bin(name), &to).unwrap();
        }
    }
    let wrapper = dir.path().join("postern-pop3d");
    write(
        &wrapper,
        &format!(
            "#!/bin/sh\nsleep 2\nexec {} \"$@\"\n",
            bin("postern-pop3d").display()
        ),
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let server = Setup::new("")
        .with_program(&dir.path().join("postern"))
        .start();
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(2),
        "READY=1 came {waited:?} after start, before the late child could serve"
    );
    assert!(
        server
            .ready_message
            .contains("STATUS=serving: 5 children ready"),
        "{}",
        server.ready_message
    );
    for (listener, greeting) in [
        ("smtp", "220 "),
        ("submission", "220 "),
        ("imap", "* OK"),
        ("pop3", "+OK"),
    ] {
        let at = std::time::Instant::now();
        let line = read_greeting(server.setup().addr(listener));
        assert!(line.starts_with(greeting), "{listener}: {line:?}");
        assert!(
            at.elapsed() < std::time::Duration::from_millis(500),
            "{listener} took {:?} to greet after READY=1",
            at.elapsed()
        );
    }
}

/// POP3 is off by default: with no pop3/pop3s listener postern-pop3d is not started (it would
/// have nothing to serve and be restarted forever), readiness counts four children, and a
/// reload that adds a POP3 listener starts it.
#[test]
fn a_retrieval_daemon_without_listeners_is_not_started_until_one_is_added() {
    let mut setup = Setup::new("");
    let pop3 = setup.port("pop3");
    setup.ports.retain(|(l, _)| !l.starts_with("pop3"));
    setup.write_config();
    let mut server = setup.start();
    assert!(
        server
            .ready_message
            .contains("STATUS=serving: 4 children ready"),
        "{}",
        server.ready_message
    );
    server.wait_log("no listener configured: not started", 0);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let names: Vec<String> = server.children().into_iter().map(|(_, n)| n).collect();
    assert!(
        !names.iter().any(|n| n == "postern-pop3d"),
        "pop3d runs without a listener: {names:?}"
    );
    assert!(
        !server.log_text().contains("postern-pop3d exited"),
        "pop3d was started and exited:\n{}",
        server.log_text()
    );
    server.setup_mut().ports.push(("pop3", pop3));
    server.setup_mut().write_config();
    let mark = server.log_len();
    server.signal(Signal::SIGHUP);
    server.wait_log("configuration reloaded", mark);
    server.wait_children(&FIVE);
    wait_until("pop3d to greet", || {
        read_greeting(server.setup().addr("pop3")).starts_with("+OK")
    });
}

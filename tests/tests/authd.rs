//! authd through the real `auth.sock` of a running `postern serve`: every password scheme,
//! right and wrong passwords, unknown users, recipient lookups, garbage and wrong-version
//! frames, wrong-uid peers, the throttle's delays, the cache, and reload of edited files.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use harness::*;
use shared::proto::auth::{AuthClient, Mechanism, Recipient, TempReason, VerifyOutcome};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn verify(client: &AuthClient, user: &str, pw: &str) -> VerifyOutcome {
    verify_from(client, user, pw, "192.0.2.7")
}

fn verify_from(client: &AuthClient, user: &str, pw: &str, ip: &str) -> VerifyOutcome {
    let ip = Some(ip.parse().unwrap());
    runtime()
        .block_on(client.verify(Mechanism::Plain, user, pw, ip, "imap"))
        .expect("authd answers")
}

/// Quick throttle so the tests see its delays without waiting seconds.
const FAST_THROTTLE: &str = "[auth]\nfail_delay = \"10ms\"\nfail_delay_max = \"80ms\"\nmax_failures_per_user = 6\nmax_failures_per_ip = 50\n";

#[test]
fn user_added_with_the_cli_verifies_through_authd_for_every_scheme() {
    let setup = Setup::new(FAST_THROTTLE);
    let schemes = [
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "BLF-CRYPT",
        "ARGON2ID",
        "ARGON2I",
    ];
    for (i, scheme) in schemes.iter().enumerate() {
        setup.add_user_with(
            &format!("u{i}@example.test"),
            &format!("pw-{scheme}"),
            &["--scheme", scheme],
        );
    }
    let users = setup.path("etc/users");
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str("plain@example.test:{PLAIN}cleartext\n");
    // Hashes made by other tools, where installed.
    let mut external = Vec::new();
    for (flag, name) in [("-6", "openssl6"), ("-5", "openssl5")] {
        if let Ok(out) = Command::new("openssl")
            .args(["passwd", flag, "pw-openssl"])
            .output()
        {
            if out.status.success() {
                let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let scheme = if flag == "-6" {
                    "SHA512-CRYPT"
                } else {
                    "SHA256-CRYPT"
                };
                text.push_str(&format!("{name}@example.test:{{{scheme}}}{hash}\n"));
                external.push(name);
            }
        } else {
            eprintln!("openssl not installed: no openssl-made vectors in this run");
        }
    }
    for (method, name) in [
        ("sha-512", "mkpasswd512"),
        ("sha-256", "mkpasswd256"),
        ("bcrypt", "mkpasswdbf"),
    ] {
        let Ok(out) = Command::new("mkpasswd")
            .args(["-m", method, "pw-mkpasswd"])
            .output()
        else {
            eprintln!("mkpasswd not installed (package whois): no mkpasswd vectors in this run");
            break;
        };
        if out.status.success() {
            let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let scheme = match method {
                "sha-512" => "SHA512-CRYPT",
                "sha-256" => "SHA256-CRYPT",
                _ => "BLF-CRYPT",
            };
            text.push_str(&format!("{name}@example.test:{{{scheme}}}{hash}\n"));
            external.push(name);
        }
    }
    if let Ok(out) = Command::new("htpasswd")
        .args(["-bnBC", "5", "x", "pw-htpasswd"])
        .output()
    {
        if out.status.success() {
            let line = String::from_utf8_lossy(&out.stdout);
            let hash = line.trim().trim_start_matches("x:");
            text.push_str(&format!("htpasswd@example.test:{{BLF-CRYPT}}{hash}\n"));
            external.push("htpasswd");
        }
    } else {
        eprintln!("htpasswd not installed (apache2-utils): no htpasswd vector in this run");
    }
    std::fs::write(&users, text).unwrap();

    let server = setup.start();
    let client = AuthClient::new(server.auth_socket());
    for (i, scheme) in schemes.iter().enumerate() {
        let user = format!("u{i}@example.test");
        assert_eq!(
            verify(&client, &user, &format!("pw-{scheme}")),
            VerifyOutcome::Ok { user: user.clone() },
            "{scheme}"
        );
        assert!(
            matches!(verify(&client, &user, "wrong"), VerifyOutcome::Fail { .. }),
            "{scheme} accepted a wrong password"
        );
    }
    assert_eq!(
        verify(&client, "plain@example.test", "cleartext"),
        VerifyOutcome::Ok {
            user: "plain@example.test".into()
        }
    );
    assert!(matches!(
        verify(&client, "plain@example.test", "cleartex"),
        VerifyOutcome::Fail { .. }
    ));
    for name in external {
        let user = format!("{name}@example.test");
        let pw = if name.starts_with("openssl") {
            "pw-openssl"
        } else if name.starts_with("mkpasswd") {
            "pw-mkpasswd"
        } else {
            "pw-htpasswd"
        };
        assert_eq!(
            verify(&client, &user, pw),
            VerifyOutcome::Ok { user: user.clone() },
            "{name}"
        );
        assert!(
            matches!(verify(&client, &user, "nope"), VerifyOutcome::Fail { .. }),
            "{name}"
        );
    }
    // User names are case-insensitive; the canonical address comes back.
    assert_eq!(
        verify(&client, "U0@EXAMPLE.TEST", "pw-SHA512-CRYPT"),
        VerifyOutcome::Ok {
            user: "u0@example.test".into()
        }
    );
    let log = server.log_text();
    assert!(
        log.contains("cleartext password"),
        "a {{PLAIN}} entry is warned about:\n{log}"
    );
    assert!(
        !log.contains("pw-SHA512") && !log.contains("cleartext\""),
        "a password reached the log"
    );
    server.assert_no_panic();
}

#[test]
fn a_wrong_password_never_says_whether_the_user_exists() {
    let setup = Setup::new(FAST_THROTTLE);
    setup.add_user("alice@example.test", "right");
    let server = setup.start();
    let client = AuthClient::new(server.auth_socket());
    // From two addresses, so that each answer is a first failure of its own.
    let a = verify_from(&client, "alice@example.test", "wrong", "192.0.2.1");
    let b = verify_from(&client, "nobody@example.test", "wrong", "192.0.2.2");
    assert!(
        matches!(a, VerifyOutcome::Fail { delay_ms } if delay_ms == 10),
        "{a:?}"
    );
    assert!(
        matches!(b, VerifyOutcome::Fail { delay_ms } if delay_ms == 10),
        "{b:?}"
    );
}

#[test]
fn lookups_resolve_mailboxes_aliases_catch_all_and_tags() {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "pw");
    setup.add_user("bob@example.test", "pw");
    write(
        &setup.path("etc/aliases"),
        "info@example.test: alice@example.test, bob@example.test, ext@elsewhere.net\n@example.org: bob@example.test\n",
    );
    let server = setup.start();
    let client = AuthClient::new(server.auth_socket());
    let rt = runtime();
    let lookup = |a: &str| rt.block_on(client.lookup(a)).unwrap();
    assert_eq!(
        lookup("alice@example.test"),
        Recipient::Mailbox {
            address: "alice@example.test".into()
        }
    );
    assert_eq!(
        lookup("Alice+lists@Example.Test"),
        Recipient::Mailbox {
            address: "alice@example.test".into()
        }
    );
    assert_eq!(
        lookup("info@example.test"),
        Recipient::Alias {
            targets: vec![
                "alice@example.test".into(),
                "bob@example.test".into(),
                "ext@elsewhere.net".into()
            ]
        }
    );
    assert_eq!(
        lookup("anything@example.org"),
        Recipient::Alias {
            targets: vec!["bob@example.test".into()]
        }
    );
    assert_eq!(lookup("carol@example.test"), Recipient::Unknown);
    assert_eq!(lookup("alice@elsewhere.net"), Recipient::Unknown);
    assert_eq!(
        rt.block_on(client.list_users("example.test")).unwrap(),
        vec!["alice@example.test", "bob@example.test"]
    );
    let senders = rt
        .block_on(client.sender_addresses("alice@example.test"))
        .unwrap();
    assert!(
        senders.contains(&"alice@example.test".to_string())
            && senders.contains(&"info@example.test".to_string()),
        "{senders:?}"
    );
}

/// Raw connection to auth.sock: reads authd's hello first.
fn raw(server: &Server) -> (BufReader<UnixStream>, UnixStream) {
    let s = UnixStream::connect(server.auth_socket()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut hello = String::new();
    r.read_line(&mut hello).unwrap();
    assert!(hello.contains("\"service\":\"postern-auth\""), "{hello}");
    (r, w)
}

/// True when authd closed the connection (EOF) instead of answering.
fn closed(r: &mut BufReader<UnixStream>) -> bool {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => true,
        // Closing with our bytes unread resets the connection.
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn garbage_oversized_and_wrong_version_frames_close_only_that_connection() {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "pw");
    let server = setup.start();
    let hello = "{\"service\":\"postern-auth\",\"version\":1,\"minor\":0}\n";

    let (mut r, mut w) = raw(&server);
    w.write_all(b"\x00\xffnot json at all\n").unwrap();
    assert!(closed(&mut r), "garbage hello");

    let (mut r, mut w) = raw(&server);
    w.write_all(b"{\"service\":\"postern-auth\",\"version\":9,\"minor\":3}\n")
        .unwrap();
    assert!(closed(&mut r), "wrong version");

    let (mut r, mut w) = raw(&server);
    w.write_all(hello.as_bytes()).unwrap();
    w.write_all(b"{\"op\":\"lookup\",\"id\":1,\"address\":\"alice@example.test\"}\n")
        .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("\"kind\":\"mailbox\""), "{line}");
    w.write_all(b"{\"op\":\"format_disk\",\"id\":2}\n").unwrap();
    assert!(closed(&mut r), "unknown op");

    let (mut r, mut w) = raw(&server);
    w.write_all(hello.as_bytes()).unwrap();
    let big = vec![b'a'; 64 * 1024];
    let _ = w.write_all(&big);
    assert!(closed(&mut r), "oversized frame");

    let log = server.wait_log("frame longer than", 0);
    let uid = nix::unistd::Uid::current().as_raw();
    assert!(
        log.contains("auth.bad_frame") && log.contains(&format!("uid={uid}")),
        "{log}"
    );
    assert!(log.contains("mixed old and new binaries"), "{log}");
    // authd still serves everyone else.
    let client = AuthClient::new(server.auth_socket());
    assert_eq!(
        verify(&client, "alice@example.test", "pw"),
        VerifyOutcome::Ok {
            user: "alice@example.test".into()
        }
    );
    server.assert_no_panic();
}

#[test]
fn a_peer_of_the_wrong_uid_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to connect as another uid");
        return;
    }
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed (Debian package python3)");
        return;
    }
    let server = Setup::new("").start();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    // A client running as `nobody` connects and reads: authd closes without a hello.
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(20)\ns.connect({:?})\nprint(repr(s.recv(100)))",
        server.auth_socket().display().to_string()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "b''");
    let log = server.wait_log("auth.peer_refused", 0);
    assert!(
        log.contains(&format!("uid={}", nobody.uid.as_raw())),
        "{log}"
    );
}

#[test]
fn the_throttle_delays_grow_then_refuse_and_success_is_cached() {
    let setup = Setup::new(FAST_THROTTLE);
    setup.add_user("alice@example.test", "right");
    let server = setup.start();
    let client = AuthClient::new(server.auth_socket());
    let mut delays = Vec::new();
    for _ in 0..6 {
        match verify(&client, "alice@example.test", "wrong") {
            VerifyOutcome::Fail { delay_ms } => delays.push(delay_ms),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delays, vec![10, 20, 40, 80, 80, 80]);
    // Past max_failures_per_user even the right password is refused for now.
    assert_eq!(
        verify(&client, "alice@example.test", "right"),
        VerifyOutcome::TempFail {
            reason: TempReason::Throttled
        }
    );
    let log = server.wait_log("auth.throttled", 0);
    assert_eq!(log.matches("event=\"auth.fail\"").count(), 6, "{log}");
    // Other users are not affected; their second login comes from the cache.
    setup_user_and_check_cache(&server, &client);
}

fn setup_user_and_check_cache(server: &Server, client: &AuthClient) {
    let mark = server.log_len();
    server.setup().add_user("bob@example.test", "bobpw");
    server.wait_log("users and aliases reloaded", mark);
    let bob = VerifyOutcome::Ok {
        user: "bob@example.test".into(),
    };
    assert_eq!(verify(client, "bob@example.test", "bobpw"), bob);
    let mark = server.log_len();
    assert_eq!(
        verify(client, "bob@example.test", "bobpw"),
        VerifyOutcome::Ok {
            user: "bob@example.test".into()
        }
    );
    let log = server.wait_log("cached=true", mark);
    assert!(
        log[mark..].contains("user=bob@example.test"),
        "{}",
        &log[mark..]
    );
    // A changed password voids the cached entry at once.
    let mark = server.log_len();
    let (status, _, err) = server
        .setup()
        .postern(&["user", "passwd", "bob@example.test"], "newpw\n");
    assert!(status.success(), "{err}");
    server.wait_log("users and aliases reloaded", mark);
    assert_eq!(verify(client, "bob@example.test", "newpw"), bob);
    assert!(matches!(
        verify(client, "bob@example.test", "bobpw"),
        VerifyOutcome::Fail { .. }
    ));
}

#[test]
fn a_broken_edit_of_the_users_file_keeps_the_previous_users() {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "pw");
    let server = setup.start();
    let client = AuthClient::new(server.auth_socket());
    let users = server.setup().path("etc/users");
    let good = std::fs::read_to_string(&users).unwrap();
    // Replaced in one step, as an editor or `postern user` does (no half-written file).
    let tmp = users.with_extension("edit");
    std::fs::write(&tmp, format!("{good}this line is broken\n")).unwrap();
    std::fs::rename(&tmp, &users).unwrap();
    let log = server.wait_log("auth.reload_failed", 0);
    assert!(log.contains(&format!("{}:2", users.display())), "{log}");
    assert_eq!(
        verify(&client, "alice@example.test", "pw"),
        VerifyOutcome::Ok {
            user: "alice@example.test".into()
        }
    );
}

#[test]
fn a_burst_of_good_logins_from_one_address_waits_instead_of_being_refused() {
    // Five failures per address; thirty users log in at the same instant from one address
    // (an office behind NAT after a restart: nothing cached).
    let setup = Setup::new("[auth]\nfail_delay = \"10ms\"\nmax_failures_per_ip = 5\n");
    let users: Vec<String> = (0..30).map(|i| format!("u{i}@example.test")).collect();
    for u in &users {
        setup.add_user(u, "pw");
    }
    let server = setup.start();
    let client = std::sync::Arc::new(AuthClient::new(server.auth_socket()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcomes = rt.block_on(async {
        let tasks: Vec<_> = users
            .iter()
            .map(|u| {
                let (client, u) = (client.clone(), u.clone());
                let ip = Some("192.0.2.9".parse().unwrap());
                tokio::spawn(async move {
                    client
                        .verify(Mechanism::Plain, &u, "pw", ip, "imap")
                        .await
                        .expect("authd answers")
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let ok = outcomes
        .iter()
        .filter(|o| matches!(o, VerifyOutcome::Ok { .. }))
        .count();
    assert_eq!(ok, users.len(), "{outcomes:?}");
    // Guesses from that address still stop at the limit.
    for i in 0..5 {
        let o = verify_from(&client, &format!("u{i}@example.test"), "bad", "192.0.2.9");
        assert!(matches!(o, VerifyOutcome::Fail { .. }), "{o:?}");
    }
    assert_eq!(
        verify_from(&client, "u9@example.test", "pw", "192.0.2.9"),
        VerifyOutcome::TempFail {
            reason: TempReason::Throttled
        }
    );
}

//! postern-mta driven by swaks, the SMTP test tool administrators use: transfer on 25,
//! submission with STARTTLS + AUTH on 587 (PLAIN and LOGIN), implicit TLS on 465, a wrong
//! password, and a pipelined transaction.

use std::process::Command;

use harness::*;

fn swaks_installed() -> bool {
    Command::new("swaks")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn swaks(args: &[&str]) -> (bool, String) {
    let child = Command::new("swaks")
        .args(args)
        .args(["--timeout", "20", "--hide-informational"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("swaks");
    let (status, out, err) = wait_output(child, TIMEOUT);
    (status.success(), format!("{out}{err}"))
}

#[test]
fn swaks_sends_over_25_587_and_465() {
    if !swaks_installed() {
        eprintln!("SKIPPED: swaks is not installed (apt-get install swaks; .ci/run does)");
        return;
    }
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "alice-pw");
    setup.add_user("bob@example.test", "bob-pw");
    let server = setup.start();
    let s = server.setup();
    let at = |listener: &str| format!("127.0.0.1:{}", s.port(listener));

    let (ok, out) = swaks(&[
        "--server",
        &at("smtp"),
        "--from",
        "x@elsewhere.net",
        "--to",
        "alice@example.test",
        "--pipeline",
    ]);
    assert!(ok, "transfer on 25:\n{out}");
    let (ok, out) = swaks(&[
        "--server",
        &at("smtp"),
        "--from",
        "x@elsewhere.net",
        "--to",
        "victim@elsewhere.net",
    ]);
    assert!(
        !ok && out.contains("550 5.7.1"),
        "relay must be refused:\n{out}"
    );

    let (ok, out) = swaks(&[
        "--server",
        &at("submission"),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "bob@example.test",
        "--auth-password",
        "bob-pw",
        "--from",
        "bob@example.test",
        "--to",
        "alice@example.test",
    ]);
    assert!(ok, "submission with STARTTLS and AUTH PLAIN:\n{out}");
    let (ok, out) = swaks(&[
        "--server",
        &at("submission"),
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        "bob@example.test",
        "--auth-password",
        "bob-pw",
        "--from",
        "bob@example.test",
        "--to",
        "friend@elsewhere.net",
    ]);
    assert!(ok, "submission with AUTH LOGIN relays for the user:\n{out}");
    let (ok, out) = swaks(&[
        "--server",
        &at("submission"),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "bob@example.test",
        "--auth-password",
        "wrong",
        "--from",
        "bob@example.test",
        "--to",
        "alice@example.test",
    ]);
    assert!(!ok && out.contains("535 5.7.8"), "wrong password:\n{out}");
    let (ok, out) = swaks(&[
        "--server",
        &at("submission"),
        "--auth",
        "PLAIN",
        "--auth-user",
        "bob@example.test",
        "--auth-password",
        "bob-pw",
        "--from",
        "bob@example.test",
        "--to",
        "alice@example.test",
    ]);
    assert!(!ok, "AUTH without TLS on 587 must fail:\n{out}");
    let (ok, out) = swaks(&[
        "--server",
        &at("submissions"),
        "--tlsc",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "alice-pw",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
    ]);
    assert!(ok, "implicit TLS on 465:\n{out}");

    let count = |user: &str| {
        std::fs::read_dir(
            server
                .setup()
                .path(&format!("state/mail/example.test/{user}/new")),
        )
        .map(|d| d.count())
        .unwrap_or(0)
    };
    wait_until("three messages delivered", || {
        count("alice") == 2 && count("bob") == 1
    });
}

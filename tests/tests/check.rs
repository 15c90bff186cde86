//! `postern check`: every error with file, line and key, exit 1 and nothing started; the
//! effective configuration and exit 0 when all is well; warnings for readable secrets.

use std::os::unix::fs::PermissionsExt;

use harness::*;

#[test]
fn a_typo_is_reported_with_file_line_and_key() {
    let setup = Setup::new("[limits]\nmesage_size = 1000\n");
    let line = setup
        .config_text()
        .lines()
        .position(|l| l.starts_with("mesage_size"))
        .unwrap()
        + 1;
    let (status, out, err) = setup.postern(&["check"], "");
    assert_eq!(status.code(), Some(1), "{out}{err}");
    let expected = format!(
        "{}:{line}: limits.mesage_size: unknown key (hint: did you mean `limits.message_size`?)",
        setup.config.display()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(
        out.is_empty(),
        "nothing printed on stdout for a broken config: {out}"
    );
    // serve refuses the same file the same way and starts nothing.
    let (status, _, err) = setup.postern(&["serve"], "");
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains(&format!("{line}: limits.mesage_size: unknown key")),
        "{err}"
    );
    assert!(
        !setup.path("run").exists(),
        "serve touched the disk before validating"
    );
}

#[test]
fn several_errors_are_all_reported() {
    let setup = Setup::new(
        "[auth]\ncache_ttl = \"soon\"\nmax_failures_per_ip = 0\n\n[log]\nlevel = \"chatty\"\n",
    );
    let (status, _, err) = setup.postern(&["check"], "");
    assert_eq!(status.code(), Some(1));
    for key in ["auth.cache_ttl", "auth.max_failures_per_ip", "log.level"] {
        assert!(
            err.contains(&format!(": {key}: ")),
            "{key} missing in {err}"
        );
    }
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn a_valid_config_prints_the_effective_configuration() {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "pw-alice");
    let (status, out, err) = setup.postern(&["check"], "");
    assert!(status.success(), "{err}");
    assert!(out.contains("hostname = \"mail.example.test\""), "{out}");
    assert!(
        out.contains("message_size = 26214400"),
        "defaults are shown: {out}"
    );
    assert!(
        out.contains("[auth]") && out.contains("cache_ttl = \"1h\""),
        "{out}"
    );
    // The service's ExecStartPre: silent when all is well.
    let (status, out, err) = setup.postern(&["check", "--quiet"], "");
    assert!(status.success() && out.is_empty(), "{out}{err}");
}

#[test]
fn users_file_errors_name_file_and_line_and_readable_users_file_warns() {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "pw-alice");
    let users = setup.path("etc/users");
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str("# comment\nbob@example.test{SHA512-CRYPT}nocolon\n");
    std::fs::write(&users, &text).unwrap();
    let (status, _, err) = setup.postern(&["check"], "");
    assert_eq!(status.code(), Some(1));
    assert!(err.contains(&format!("{}:3:", users.display())), "{err}");
    // A valid but world-readable users file is a warning, not an error.
    std::fs::write(&users, text.lines().next().unwrap().to_string() + "\n").unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, _, err) = setup.postern(&["check"], "");
    assert!(status.success(), "{err}");
    assert!(
        err.contains("warning:") && err.contains("readable by every user"),
        "{err}"
    );
}

#[test]
fn missing_certificate_without_self_signed_is_an_error_with_a_hint() {
    let mut setup = Setup::new("");
    let text = setup
        .config_text()
        .replace("self_signed = true", "self_signed = false");
    std::fs::write(&setup.config, text).unwrap();
    let (status, _, err) = setup.postern(&["check"], "");
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("cert.pem") && err.contains("self_signed = true"),
        "{err}"
    );
    setup.write_config();
}

#[test]
fn a_missing_service_user_is_an_error_naming_useradd() {
    if !is_root() {
        eprintln!("SKIPPED: service users are only looked up when running as root");
        return;
    }
    let setup = Setup::new("");
    let text = setup.config_text().replace(
        "create_missing = true",
        "create_missing = false\nmta = \"postern-no-such-user\"",
    );
    std::fs::write(&setup.config, text).unwrap();
    for verb in ["check", "serve"] {
        let (status, _, err) = setup.postern(&[verb], "");
        assert_eq!(status.code(), Some(1), "{verb}: {err}");
        assert!(
            err.contains("service user postern-no-such-user (postern-mta) does not exist")
                && err.contains("useradd --system")
                && err.contains("postern-no-such-user"),
            "{verb}: {err}"
        );
    }
}

#[test]
fn serve_refuses_a_broken_aliases_file_naming_file_and_line() {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "pw");
    let aliases = setup.path("etc/aliases");
    write(
        &aliases,
        "# aliases\ninfo@example.test: alice@example.test\nbroken line without colon\n",
    );
    let (status, _, err) = setup.postern(&["serve"], "");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{}:3:", aliases.display())), "{err}");
    assert!(
        !setup.path("run").exists(),
        "serve touched the disk before validating"
    );
}

//! The Debian package, end to end, as root: build it (`etc/debian/build-deb` from the dev
//! binaries already built), lintian, `dpkg -i`, what it installed (files, owners, modes,
//! service users, directories), `postern check` on the installed configuration, the
//! installed `ExecStart` serving on loopback ports from a test configuration with five
//! unprivileged children, `systemd-analyze verify` of the units, an upgrade to a rebuilt
//! package that keeps an edited configuration and the users, `dpkg -r` keeping state and
//! mail, and `dpkg --purge` removing only what the package made.
//!
//! Skips with a reason when not root or when dpkg or cargo-deb is missing; under CI
//! (`CI=true`) a missing tool is a failure. It installs and purges the package `postern`, so
//! it refuses to run where one is already installed (outside CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness::pkg::*;
use harness::*;

const PACKAGE: &str = "postern";

/// `Some(reason)` when the test cannot run here.
fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("not root (dpkg -i needs it)".into());
    }
    if !have("dpkg", &["--version"]) {
        return Some("dpkg is not installed".into());
    }
    if !have("cargo", &["deb", "--version"]) {
        return Some("cargo-deb is not installed (cargo install cargo-deb --version 3.8.0 --locked; .ci/run does)".into());
    }
    if !in_ci() && installed_version().is_some() {
        return Some(
            "a postern package is installed here; this test would replace and purge it".into(),
        );
    }
    None
}

fn installed_version() -> Option<String> {
    let (ok, out) = run("dpkg-query", &["-W", "-f=${Status} ${Version}", PACKAGE]);
    (ok && out.starts_with("install ok installed")).then(|| {
        out.rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

/// Purges the package whatever happens to the test.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", PACKAGE]);
    }
}

fn mode_owner(path: &str) -> (u32, String, String) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map_or(meta.uid().to_string(), |u| u.name);
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid()))
        .ok()
        .flatten()
        .map_or(meta.gid().to_string(), |g| g.name);
    (meta.mode() & 0o7777, user, group)
}

fn uid_of(name: &str) -> u32 {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("service user {name} missing"))
        .uid
        .as_raw()
}

#[test]
fn the_package_installs_serves_upgrades_and_removes_cleanly() {
    if let Some(reason) = missing_prerequisite() {
        assert!(!in_ci(), "the package test must run in CI: {reason}");
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let deb = build_deb(out_dir.path(), "0.1.0-1");
    run_lintian(&deb);

    let _purge = Purge;
    if installed_version().is_some() {
        let (ok, out) = run("dpkg", &["--purge", PACKAGE]);
        assert!(ok, "purging an old install: {out}");
    }
    let (ok, out) = run("dpkg", &["-i", deb.to_str().unwrap()]);
    assert!(ok, "dpkg -i:\n{out}");
    assert_installed_layout();
    let (ok, out) = run("/usr/sbin/postern", &["check"]);
    assert!(ok, "postern check on the installed configuration:\n{out}");
    verify_units();
    serve_with_the_installed_exec_start();
    upgrade_keeps_the_edited_configuration(out_dir.path());
    remove_keeps_state_and_purge_keeps_mail();
}

fn run_lintian(deb: &Path) {
    if !have("lintian", &["--version"]) {
        assert!(!in_ci(), "lintian is missing in CI (.ci/run installs it)");
        eprintln!("lintian not installed (apt-get install lintian): not run");
        return;
    }
    let (_, out) = run("lintian", &["--allow-root", deb.to_str().unwrap()]);
    eprintln!("lintian:\n{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{out}");
}

fn assert_installed_layout() {
    for bin in [
        "/usr/sbin/postern",
        "/usr/lib/postern/postern-mta",
        "/usr/lib/postern/postern-mda",
        "/usr/lib/postern/postern-imapd",
        "/usr/lib/postern/postern-pop3d",
    ] {
        assert_eq!(mode_owner(bin).0, 0o755, "{bin}");
    }
    let (_, conffiles) = run("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]);
    assert!(
        conffiles.contains("/etc/postern/postern.toml"),
        "postern.toml must be a conffile: {conffiles}"
    );
    let expect = [
        ("/etc/postern/users", 0o640, "root", "postern-auth"),
        ("/etc/postern/aliases", 0o644, "root", "root"),
        ("/etc/postern/tls", 0o755, "root", "root"),
        ("/var/lib/postern", 0o755, "root", "root"),
        (
            "/var/lib/postern/queue",
            0o700,
            "postern-mta",
            "postern-mta",
        ),
        (
            "/var/lib/postern/mail",
            0o700,
            "postern-mail",
            "postern-mail",
        ),
        ("/run/postern", 0o755, "root", "root"),
    ];
    for (path, mode, user, group) in expect {
        assert_eq!(
            mode_owner(path),
            (mode, user.to_string(), group.to_string()),
            "{path}"
        );
    }
    for file in [
        "/usr/share/man/man8/postern.8.gz",
        "/usr/share/man/man8/postern-import-dms.8.gz",
        "/usr/share/man/man5/postern.toml.5.gz",
        "/usr/share/bash-completion/completions/postern",
        "/usr/share/zsh/vendor-completions/_postern",
        "/usr/share/fish/vendor_completions.d/postern.fish",
        "/usr/lib/sysusers.d/postern.conf",
        "/usr/lib/tmpfiles.d/postern.conf",
        "/usr/share/doc/postern/README.md",
        "/usr/share/doc/postern/copyright",
    ] {
        assert!(Path::new(file).is_file(), "{file} not installed");
    }
}

fn verify_units() {
    if !have("systemd-analyze", &["--version"]) {
        assert!(!in_ci(), "systemd-analyze missing in CI");
        eprintln!("systemd-analyze not installed: units not verified");
        return;
    }
    let mut units = vec!["/usr/lib/systemd/system/postern.service".to_string()];
    for name in LISTENERS {
        units.push(format!("/usr/lib/systemd/system/postern-{name}.socket"));
    }
    let mut args = vec!["verify", "--man=no"];
    args.extend(units.iter().map(String::as_str));
    let (ok, out) = run("systemd-analyze", &args);
    assert!(
        ok && out.trim().is_empty(),
        "systemd-analyze verify:\n{out}"
    );
    assert_unit_essentials();
    for name in LISTENERS {
        let unit =
            std::fs::read_to_string(format!("/usr/lib/systemd/system/postern-{name}.socket"))
                .unwrap();
        assert!(
            unit.contains(&format!("\nFileDescriptorName={name}\n")),
            "{unit}"
        );
        assert!(unit.contains("\nService=postern.service\n"), "{unit}");
    }
}

/// The command line of `ExecStart=` in the installed unit.
fn installed_exec_start() -> Vec<String> {
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/postern.service").unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart= in postern.service");
    line.split_whitespace().map(String::from).collect()
}

/// A setting of the installed `postern.service`.
fn unit_setting(key: &str) -> String {
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/postern.service").unwrap();
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(String::from))
        .unwrap_or_else(|| panic!("{key}= missing from postern.service"))
}

/// A wrapper that runs `program` the way the unit confines it: no_new_privs and only the
/// capabilities of `CapabilityBoundingSet=` (setpriv, util-linux). `None` without setpriv.
fn confined(dir: &Path, program: &str) -> Option<PathBuf> {
    if !have("setpriv", &["--version"]) {
        eprintln!("setpriv not installed: the service's capability set is not exercised");
        return None;
    }
    assert_eq!(unit_setting("NoNewPrivileges"), "yes");
    let caps: Vec<String> = unit_setting("CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let wrapper = dir.join("confined-postern");
    write(
        &wrapper,
        &format!(
            "#!/bin/sh\nexec setpriv --no-new-privs --bounding-set -all,{} {program} \"$@\"\n",
            caps.join(",")
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(wrapper)
}

/// The settings the issue asks of the unit, and its `systemd-analyze security` exposure.
fn assert_unit_essentials() {
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStartPre", "/usr/sbin/postern check --quiet"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("ProtectSystem", "strict"),
        ("SystemCallFilter", "@system-service"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        // 10,000 IDLE sessions of postern-imapd: one descriptor each.
        ("LimitNOFILE", "1024:524288"),
    ] {
        assert_eq!(unit_setting(key), value, "postern.service {key}=");
    }
    let unit = "/usr/lib/systemd/system/postern.service";
    let (_, out) = run("systemd-analyze", &["security", "--offline=true", unit]);
    let exposure: f64 = out
        .lines()
        .find_map(|l| l.split("postern.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(
        exposure <= 3.0,
        "postern.service exposure {exposure}:\n{out}"
    );
}

fn serve_with_the_installed_exec_start() {
    let argv = installed_exec_start();
    assert_eq!(argv[1..], ["serve"], "ExecStart={argv:?}");
    let setup = Setup::new("[service_users]\ncreate_missing = false\n");
    // Started as the unit starts it: confined to its capabilities, with no_new_privs.
    let program = confined(setup.dir.path(), &argv[0]).unwrap_or_else(|| PathBuf::from(&argv[0]));
    let setup = setup.with_program(&program);
    let (status, out, err) = setup.postern(&["check", "--quiet"], "");
    assert!(status.success(), "ExecStartPre check:\n{out}{err}");
    assert!(out.is_empty(), "check --quiet printed:\n{out}");
    setup.add_user("alice@example.test", "alice-pw");
    let server = setup.start();
    let kids = server.wait_children(&[
        "postern-authd",
        "postern-imapd",
        "postern-mda",
        "postern-mta",
        "postern-pop3d",
    ]);
    for (pid, name) in &kids {
        let user = match name.as_str() {
            "postern-authd" => "postern-auth",
            "postern-mta" => "postern-mta",
            _ => "postern-mail",
        };
        assert_eq!(ids_of(*pid).0, uid_of(user), "{name} runs as {user}");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(
            exe.starts_with("/usr/sbin") || exe.starts_with("/usr/lib/postern"),
            "{name} runs {}",
            exe.display()
        );
    }
    send_and_wait(&server);
    // IMAP answers.
    let greeting = read_greeting(server.setup().addr("imap"));
    assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting:?}");
    let mut server = server;
    assert!(server.stop().success());
}

fn send_and_wait(server: &Server) {
    let script = format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {})\n\
         s.sendmail('someone@elsewhere.net', ['alice@example.test'], b'Subject: packaged\\r\\n\\r\\nhello\\r\\n')\n\
         s.quit()\nprint('sent')\n",
        server.setup().port("smtp")
    );
    let (status, out, err) = python(&script, &[]);
    assert!(status.success() && out.contains("sent"), "{out}{err}");
    wait_until("delivery by the installed daemons", || {
        !server.maildir("alice@example.test").is_empty()
    });
}

const EDIT_MARK: &str = "# edited by the package test\n";

fn upgrade_keeps_the_edited_configuration(out_dir: &Path) {
    let config = "/etc/postern/postern.toml";
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(EDIT_MARK);
    std::fs::write(config, &text).unwrap();
    let (ok, out) = run_stdin(
        "/usr/sbin/postern",
        &["user", "add", "kept@example.org"],
        "kept-pw\n",
    );
    assert!(ok, "user add: {out}");
    let deb = build_deb(out_dir, "0.1.0-2");
    let (ok, out) = run("dpkg", &["-i", "--force-confnew", deb.to_str().unwrap()]);
    assert!(ok, "upgrade:\n{out}");
    assert_eq!(installed_version().as_deref(), Some("0.1.0-2"));
    // Even --force-confnew keeps an edited conffile the new package did not change.
    assert!(
        std::fs::read_to_string(config)
            .unwrap()
            .ends_with(EDIT_MARK)
    );
    let users = std::fs::read_to_string("/etc/postern/users").unwrap();
    assert!(users.contains("kept@example.org:{SHA512-CRYPT}"), "{users}");
    assert_eq!(mode_owner("/etc/postern/users").2, "postern-auth");
}

fn run_stdin(program: &str, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let (status, out, err) = wait_output(child, TIMEOUT);
    (status.success(), format!("{out}{err}"))
}

fn remove_keeps_state_and_purge_keeps_mail() {
    let mailbox = "/var/lib/postern/mail/example.org/kept";
    std::fs::create_dir_all(format!("{mailbox}/new")).unwrap();
    std::fs::write(format!("{mailbox}/new/1.test"), "Subject: kept\n\nkept\n").unwrap();
    let (ok, out) = run("dpkg", &["-r", PACKAGE]);
    assert!(ok, "dpkg -r:\n{out}");
    assert!(!Path::new("/usr/sbin/postern").exists());
    assert!(Path::new("/var/lib/postern/queue").is_dir(), "queue kept");
    assert!(Path::new(&format!("{mailbox}/new/1.test")).is_file());
    assert!(
        std::fs::read_to_string("/etc/postern/postern.toml")
            .unwrap()
            .ends_with(EDIT_MARK)
    );
    assert!(
        Path::new("/etc/postern/users").is_file(),
        "users kept on remove"
    );

    let (ok, out) = run("dpkg", &["--purge", PACKAGE]);
    assert!(ok, "dpkg --purge:\n{out}");
    assert!(!Path::new("/etc/postern/postern.toml").exists());
    assert!(!Path::new("/etc/postern/users").exists());
    assert!(!Path::new("/etc/postern/aliases").exists());
    assert!(!Path::new("/run/postern").exists());
    assert!(
        !Path::new("/var/lib/postern/queue").exists(),
        "an empty queue goes"
    );
    assert!(
        Path::new(&format!("{mailbox}/new/1.test")).is_file(),
        "purge never deletes mail"
    );
    for name in ["postern-auth", "postern-mta", "postern-mail"] {
        uid_of(name); // the service users stay: files may still belong to them
    }
    // Tidy up what the test itself put there.
    std::fs::remove_dir_all("/var/lib/postern").unwrap();
}

//! `postern import dms` on a docker-mailserver config/ directory made by the test in its
//! formats (hashes made with `openssl passwd`, `htpasswd -B` where installed; comments, CRLF
//! line ends, bad lines): the dry run writes nothing, the import writes the users and aliases
//! files and reports each refused line by number, a second run changes nothing, and then the
//! real server lets each imported user log in with the old password (SMTP AUTH on 587 after
//! STARTTLS, IMAP LOGIN on 993) and delivers to the imported aliases.

use std::process::{Command, Stdio};

use harness::*;

fn openssl_hash(flag: &str, password: &str) -> String {
    let out = Command::new("openssl")
        .args(["passwd", flag, password])
        .stderr(Stdio::inherit())
        .output()
        .expect("openssl (Debian package openssl) is needed");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `{BLF-CRYPT}` made by htpasswd, or `None` when it is not installed.
fn bcrypt_hash(password: &str) -> Option<String> {
    let out = Command::new("htpasswd")
        .args(["-nbB", "-C", "5", "x", password])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().strip_prefix("x:")?.to_string())
}

/// The accounts file: line numbers matter to the assertions below.
fn accounts(carol: Option<&str>) -> String {
    let alice = openssl_hash("-6", "alice-old-pw");
    let bob = openssl_hash("-5", "bob-old-pw");
    let carol = carol.map_or_else(
        || format!("{{SHA512-CRYPT}}{}", openssl_hash("-6", "carol-old-pw")),
        |h| format!("{{BLF-CRYPT}}{h}"),
    );
    [
        "# docker-mailserver accounts".to_string(),
        format!("alice@example.test|{{SHA512-CRYPT}}{alice}\r"),
        format!("Bob@Example.test|{{SHA256-CRYPT}}{bob}|userdb_quota_rule=*:bytes=1G"),
        String::new(),
        format!("carol@example.test|{carol}"),
        "dave@example.test|{CRAM-MD5}e02d374fde0dc75a17a557039a3a5338c7743304777dccd376f332bee68d2cf6"
            .to_string(),
        "no pipe at all".to_string(),
        format!("ALICE@example.test|{{SHA512-CRYPT}}{alice}"),
    ]
    .join("\n")
        + "\n"
}

const VIRTUAL: &str = "# aliases\n\
    info@example.test alice@example.test,Bob@Example.test\n\
    old@example.test carol@example.test, far@elsewhere.example,\n\
    @example.org alice@example.test\n\
    root alice@example.test\n\
    team@example.test localonly,carol@example.test\n";

const RELAYMAP: &str = "@example.test [smtp.relay.example]:587\n";
const SASL: &str = "[smtp.relay.example]:587 relay-user:relay-secret-pw\n";

fn import(setup: &Setup, dir: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["import", "dms", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (status, out, err) = setup.postern(&args, "");
    (status.code().unwrap_or(-1), format!("{out}{err}"))
}

#[test]
fn docker_mailserver_users_keep_their_passwords_and_aliases_deliver() {
    // Short failure delays: the test makes four failed logins on purpose.
    let setup = Setup::new("[auth]\nfail_delay = \"50ms\"\n");
    let dms = setup.path("dms-config");
    let bcrypt = bcrypt_hash("carol-old-pw");
    if bcrypt.is_none() {
        eprintln!("htpasswd not installed (apache2-utils): carol gets a SHA512-CRYPT hash instead");
    }
    write(
        &dms.join("postfix-accounts.cf"),
        &accounts(bcrypt.as_deref()),
    );
    write(&dms.join("postfix-virtual.cf"), VIRTUAL);
    write(&dms.join("postfix-relaymap.cf"), RELAYMAP);
    write(&dms.join("postfix-sasl-password.cf"), SASL);
    write(&dms.join("dovecot-quotas.cf"), "alice@example.test:1G\n");

    let (code, out) = import(&setup, &dms, &["--dry-run"]);
    assert_eq!(code, 2, "some lines are refused:\n{out}");
    assert!(out.contains("dry run: nothing is written"), "{out}");
    assert!(out.contains("would add 3"), "{out}");
    assert!(
        !setup.path("etc/users").exists(),
        "a dry run writes nothing"
    );
    assert!(!setup.path("etc/aliases").exists());

    let (code, out) = import(&setup, &dms, &[]);
    eprintln!("{out}");
    assert_eq!(code, 2, "{out}");
    assert_report(&out, &dms);
    assert_files(&setup);

    // A second run finds everything in place.
    let (_, again) = import(&setup, &dms, &[]);
    assert!(again.contains("added 0, 3 already there"), "{again}");
    assert!(again.contains("added 0, extended 0"), "{again}");

    let server = setup.start();
    assert_logins(&server);
    assert_aliases_deliver(&server);
}

fn assert_report(out: &str, dms: &std::path::Path) {
    let at = |line: usize| format!("{}:{line}:", dms.join("postfix-accounts.cf").display());
    let virt = |line: usize| format!("{}:{line}:", dms.join("postfix-virtual.cf").display());
    for (needle, why) in [
        (at(6), "{CRAM-MD5}"),
        (at(7), "no '|'"),
        (at(8), "repeats line 2"),
        (at(3), "userdb_quota_rule"),
        (virt(5), "own hostname"),
        (virt(6), "localonly"),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no report for {needle}:\n{out}"));
        assert!(line.contains(why), "{needle} should say {why}: {line}");
    }
    assert!(out.contains("not imported (4 lines)"), "{out}");
    assert!(out.contains("host = \"smtp.relay.example:587\""), "{out}");
    assert!(out.contains("username = \"relay-user\""), "{out}");
    assert!(
        !out.contains("relay-secret-pw"),
        "the relay password is never printed"
    );
    assert!(out.contains("dovecot-quotas.cf not read"), "{out}");
    assert!(
        out.contains("`postern import maildir MAILDIR --user USER@DOMAIN`"),
        "{out}"
    );
}

fn assert_files(setup: &Setup) {
    let users = std::fs::read_to_string(setup.path("etc/users")).unwrap();
    let lines: Vec<&str> = users.lines().collect();
    assert_eq!(lines.len(), 3, "{users}");
    assert!(lines[0].starts_with("alice@example.test:{SHA512-CRYPT}$6$"));
    assert!(lines[1].starts_with("Bob@Example.test:{SHA256-CRYPT}$5$"));
    assert!(lines[2].starts_with("carol@example.test:{"));
    let aliases = std::fs::read_to_string(setup.path("etc/aliases")).unwrap();
    assert_eq!(
        aliases,
        "info@example.test: alice@example.test, Bob@Example.test\n\
         old@example.test: carol@example.test, far@elsewhere.example\n\
         @example.org: alice@example.test\n\
         team@example.test: carol@example.test\n"
    );
    let (status, out, err) = setup.postern(&["check"], "");
    assert!(status.success(), "the imported files check:\n{out}{err}");
}

fn assert_logins(server: &Server) {
    let script = format!(
        r#"
import imaplib, smtplib, ssl
ctx = ssl.create_default_context(cafile={cafile:?})
ctx.check_hostname = False
for user, pw in [("alice@example.test", "alice-old-pw"), ("bob@example.test", "bob-old-pw"),
                 ("carol@example.test", "carol-old-pw"), ("alice@example.test", "wrong"),
                 ("dave@example.test", "anything")]:
    s = smtplib.SMTP("127.0.0.1", {port})
    s.starttls(context=ctx)
    try:
        s.login(user, pw)
        print("login", user, pw, "ok")
    except smtplib.SMTPAuthenticationError as e:
        print("login", user, pw, e.smtp_code)
    s.quit()
    i = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
    try:
        i.login(user, pw)
        print("imap", user, pw, "ok")
        i.logout()
    except imaplib.IMAP4.error as e:
        print("imap", user, pw, "refused")
"#,
        cafile = server.setup().path("tls/cert.pem").display().to_string(),
        port = server.setup().port("submission"),
        imaps = server.setup().port("imaps"),
    );
    let (status, out, err) = python(&script, &[]);
    assert!(status.success(), "{out}{err}");
    for line in [
        "login alice@example.test alice-old-pw ok",
        "login bob@example.test bob-old-pw ok",
        "login carol@example.test carol-old-pw ok",
        "login alice@example.test wrong 535",
        "login dave@example.test anything 535",
        "imap alice@example.test alice-old-pw ok",
        "imap bob@example.test bob-old-pw ok",
        "imap carol@example.test carol-old-pw ok",
        "imap alice@example.test wrong refused",
        "imap dave@example.test anything refused",
    ] {
        assert!(out.contains(line), "{line} missing:\n{out}");
    }
}

fn assert_aliases_deliver(server: &Server) {
    let script = format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {})\n\
         for rcpt in ['info@example.test', 'anyone@example.org', 'team@example.test']:\n\
         \x20   s.sendmail('x@elsewhere.net', [rcpt], ('Subject: to ' + rcpt + '\\r\\n\\r\\nhi\\r\\n').encode())\n\
         s.quit()\nprint('sent')\n",
        server.setup().port("smtp")
    );
    let (status, out, err) = python(&script, &[]);
    assert!(status.success() && out.contains("sent"), "{out}{err}");
    wait_until("info@ and the catch-all to reach alice", || {
        server.maildir("alice@example.test").len() >= 2
    });
    wait_until("info@ to reach bob", || {
        !server.maildir("bob@example.test").is_empty()
    });
    wait_until("team@ to reach carol", || {
        !server.maildir("carol@example.test").is_empty()
    });
}

//! `postern user ...` and `postern alias ...` on the files, as an administrator runs them.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use harness::*;

#[test]
fn user_add_passwd_list_del() {
    let setup = Setup::new("");
    setup.add_user("alice@example.test", "first");
    setup.add_user_with("bob@example.org", "second", &["--scheme", "BLF-CRYPT"]);
    let users = setup.path("etc/users");
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(
        text.contains("alice@example.test:{SHA512-CRYPT}$6$"),
        "{text}"
    );
    assert!(text.contains("bob@example.org:{BLF-CRYPT}$2"), "{text}");
    assert!(
        !text.contains("first") && !text.contains("second"),
        "cleartext in the file"
    );
    let mode = std::fs::metadata(&users).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    if is_root() {
        let gid = std::fs::metadata(&users).unwrap().gid();
        let auth = nix::unistd::User::from_name("postern-auth")
            .unwrap()
            .expect("user add creates the service users first (create_missing)");
        assert_eq!(gid, auth.gid.as_raw(), "users file group should be authd's");
    }

    let (status, _, err) = setup.postern(&["user", "add", "alice@example.test"], "again\n");
    assert!(!status.success() && err.contains("already exists"), "{err}");
    let (status, _, err) = setup.postern(&["user", "add", "carol@elsewhere.net"], "pw\n");
    assert!(
        !status.success() && err.contains("not a local domain"),
        "{err}"
    );
    let (status, _, err) = setup.postern(&["user", "add", "dave@example.test"], "\n");
    assert!(!status.success() && err.contains("empty password"), "{err}");
    // No way to put a password on the command line.
    let (status, _, _) = setup.postern(&["user", "add", "eve@example.test", "--password", "x"], "");
    assert!(!status.success());

    let before = std::fs::read_to_string(&users).unwrap();
    let (status, _, err) = setup.postern(&["user", "passwd", "alice@example.test"], "changed\n");
    assert!(status.success(), "{err}");
    let after = std::fs::read_to_string(&users).unwrap();
    assert_ne!(before, after);
    assert_eq!(after.lines().count(), 2);

    let (status, out, _) = setup.postern(&["user", "list"], "");
    assert!(status.success());
    assert!(
        out.contains("alice@example.test\tSHA512-CRYPT")
            && out.contains("bob@example.org\tBLF-CRYPT"),
        "{out}"
    );
    let (_, out, _) = setup.postern(&["user", "list", "example.org"], "");
    assert!(!out.contains("alice") && out.contains("bob"), "{out}");

    let (status, out, err) = setup.postern(&["user", "del", "bob@example.org"], "");
    assert!(status.success(), "{err}");
    assert!(out.contains("mailbox") && out.contains("kept"), "{out}");
    let (status, _, err) = setup.postern(&["user", "del", "bob@example.org"], "");
    assert!(!status.success() && err.contains("no such user"), "{err}");
}

#[test]
fn alias_add_del_list() {
    let setup = Setup::new("");
    for args in [
        vec![
            "alias",
            "add",
            "info@example.test",
            "alice@example.test",
            "bob@example.test",
        ],
        vec![
            "alias",
            "add",
            "info@example.test",
            "carol@elsewhere.net",
            "alice@example.test",
        ],
        vec!["alias", "add", "@example.org", "alice@example.test"],
    ] {
        let (status, _, err) = setup.postern(&args, "");
        assert!(status.success(), "{args:?}: {err}");
    }
    let (_, out, _) = setup.postern(&["alias", "list"], "");
    assert!(
        out.contains(
            "info@example.test: alice@example.test, bob@example.test, carol@elsewhere.net"
        ),
        "{out}"
    );
    assert!(out.contains("@example.org: alice@example.test"), "{out}");
    let (status, _, err) =
        setup.postern(&["alias", "add", "x@nowhere.net", "alice@example.test"], "");
    assert!(
        !status.success() && err.contains("not a local domain"),
        "{err}"
    );
    let (status, _, _) = setup.postern(
        &["alias", "del", "info@example.test", "bob@example.test"],
        "",
    );
    assert!(status.success());
    let (_, out, _) = setup.postern(&["alias", "list"], "");
    assert!(
        out.contains("info@example.test: alice@example.test, carol@elsewhere.net"),
        "{out}"
    );
    let (status, _, _) = setup.postern(&["alias", "del", "@example.org"], "");
    assert!(status.success());
    let (_, out, _) = setup.postern(&["alias", "list"], "");
    assert!(!out.contains("@example.org"), "{out}");
}

/// Two administrators adding users at the same moment lose nothing (file lock + rename).
#[test]
fn concurrent_user_adds_lose_nothing() {
    let setup = Setup::new("");
    let n = 16;
    std::thread::scope(|s| {
        for i in 0..n {
            let setup = &setup;
            s.spawn(move || setup.add_user(&format!("user{i}@example.test"), "pw"));
        }
    });
    let text = std::fs::read_to_string(setup.path("etc/users")).unwrap();
    for i in 0..n {
        assert!(
            text.contains(&format!("user{i}@example.test:")),
            "user{i} lost:\n{text}"
        );
    }
    assert_eq!(text.lines().count(), n);
}

//! Unit tests of `users`.

use super::*;

const H1: &str = "{SHA512-CRYPT}$6$Zq3vLx9PqWm2Rt8K$h9i7vpvvNSxgPcZ.aw3rrcAWC5LXgCl18iTvW2s.7Jz4TdOVdwI9cCfqlnsRyhl7y0XYagj2Fyd/TqoNCU9aZ/";
const H2: &str = "{BLF-CRYPT}$2y$04$MSxbO.rAnbN5UFq4MdtsW.Zv7BqjtGK0dvTXXXTlLaSfKoccg/Sue";

fn users(text: &str) -> Parsed<Users> {
    parse_users(Path::new("/etc/postern/users"), text)
}

fn aliases(text: &str) -> Parsed<Aliases> {
    parse_aliases(Path::new("/etc/postern/aliases"), text)
}

/// `(line, message)` of each problem.
fn lines(problems: &[FileProblem]) -> Vec<(usize, String)> {
    problems
        .iter()
        .map(|p| (p.line, p.message.clone()))
        .collect()
}

fn only_error(problems: &[FileProblem]) -> (usize, String) {
    assert_eq!(problems.len(), 1, "{problems:?}");
    (problems[0].line, problems[0].message.clone())
}

// ---- users file ----------------------------------------------------------------------

#[test]
fn users_parse_with_comments_blank_lines_and_extra_fields() {
    let text = format!(
        "# Postern users\n\n  alice@Example.ORG:{H1}  \n\t# indented comment\nBob@example.org:{H2}:1000:1000::/home/bob::userdb_quota_rule=*:storage=1G\r\n"
    );
    let p = users(&text);
    assert!(p.errors.is_empty() && p.warnings.is_empty(), "{p:?}");
    assert_eq!(p.value.len(), 2);
    let alice = p.value.get("ALICE@example.org").unwrap();
    assert_eq!(alice.address, "alice@example.org");
    assert_eq!(alice.line, 3);
    assert!(alice.extra.is_empty());
    assert!(alice.password.verify(b"correct horse battery staple"));
    let bob = p.value.get("bob@EXAMPLE.org").unwrap();
    assert_eq!(bob.address, "Bob@example.org", "local part as written");
    assert_eq!(bob.line, 5);
    assert_eq!(
        bob.extra,
        [
            "1000",
            "1000",
            "",
            "/home/bob",
            "",
            "userdb_quota_rule=*",
            "storage=1G"
        ]
    );
    assert!(bob.password.verify(b"hunter2"));
    assert!(p.value.get("carol@example.org").is_none());
    let all: Vec<&str> = p.value.iter().map(|u| u.address.as_str()).collect();
    assert_eq!(all, ["alice@example.org", "Bob@example.org"]);
}

#[test]
fn empty_users_file_is_empty() {
    let p = users("");
    assert!(p.value.is_empty() && p.errors.is_empty() && p.warnings.is_empty());
    assert!(users("\n# nothing\n   \n").value.is_empty());
}

#[test]
fn users_errors_name_line_and_problem() {
    let cases: &[(&str, &[&str])] = &[
        ("alice@example.org", &["missing ':'"]),
        (":{PLAIN}x", &["empty address"]),
        (
            "alice:{PLAIN}x",
            &["\"alice\" has no '@'", "user@example.org"],
        ),
        ("@example.org:{PLAIN}x", &["empty local part"]),
        ("alice@:{PLAIN}x", &["empty domain"]),
        ("a@b@example.org:{PLAIN}x", &["more than one '@'"]),
        ("alice @example.org:{PLAIN}x", &["contains whitespace"]),
        ("alice@example.org :{PLAIN}x", &["contains whitespace"]),
        (
            "alice@example.org:",
            &[
                "bad password field",
                "must start with {SCHEME}",
                "postern user passwd",
            ],
        ),
        ("alice@example.org:hunter2", &["must start with {SCHEME}"]),
        (
            "alice@example.org:{MD5}x",
            &["unknown password scheme \"MD5\"", "postern user passwd"],
        ),
        (
            "alice@example.org:{SHA512-CRYPT}$6$x",
            &["malformed SHA512-CRYPT hash"],
        ),
        (
            "alice@example.org:{BLF-CRYPT}$6$x:1000",
            &["malformed BLF-CRYPT hash"],
        ),
    ];
    for (line, wanted) in cases {
        let text = format!("# header\n{line}\n");
        let p = users(&text);
        let (n, message) = only_error(&p.errors);
        assert_eq!(n, 2, "{line}");
        for w in *wanted {
            assert!(message.contains(w), "{line:?}: {message:?} lacks {w:?}");
        }
        assert!(p.value.is_empty(), "{line}");
        assert_eq!(
            p.errors[0].to_string(),
            format!("/etc/postern/users:2: {message}")
        );
    }
}

#[test]
fn duplicate_users_compare_case_insensitively_and_name_the_first_line() {
    let text = format!("alice@example.org:{H1}\nbob@example.org:{H2}\n\nALICE@Example.org:{H2}\n");
    let p = users(&text);
    let (line, message) = only_error(&p.errors);
    assert_eq!(line, 4);
    assert!(
        message.contains("duplicate address \"ALICE@example.org\""),
        "{message}"
    );
    assert!(message.contains("first on line 1"), "{message}");
    // The first entry wins.
    assert!(
        p.value
            .get("alice@example.org")
            .unwrap()
            .password
            .verify(b"correct horse battery staple")
    );
    assert_eq!(p.value.len(), 2);
}

#[test]
fn plain_passwords_are_a_warning() {
    let p = users(&format!(
        "alice@example.org:{H1}\ncarol@example.org:{{PLAIN}}hunter2\n"
    ));
    assert!(p.errors.is_empty());
    assert_eq!(
        lines(&p.warnings),
        [(
            2,
            "\"carol@example.org\" stores a cleartext password; hash it with `postern user passwd`"
                .to_string()
        )]
    );
    assert!(
        p.value
            .get("carol@example.org")
            .unwrap()
            .password
            .verify(b"hunter2")
    );
}

#[test]
fn every_bad_line_is_reported_and_good_lines_kept() {
    let text = format!("bad\nalice@example.org:{H1}\nx@y:{{NOPE}}z\nbob@example.org:{H2}\n");
    let p = users(&text);
    assert_eq!(p.errors.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(p.value.len(), 2);
}

// ---- aliases file --------------------------------------------------------------------

#[test]
fn aliases_parse_targets_separated_by_commas_and_whitespace() {
    let text = "# aliases\n\nPostmaster@Example.org: alice@example.org, Bob@Example.org\nteam@example.org:alice@example.org,bob@example.org  carol@elsewhere.net\n@example.net : alice@example.org\n";
    let p = aliases(text);
    assert!(p.errors.is_empty() && p.warnings.is_empty(), "{p:?}");
    assert_eq!(
        p.value.entries(),
        [
            (
                "@example.net".to_string(),
                vec!["alice@example.org".to_string()]
            ),
            (
                "postmaster@example.org".to_string(),
                vec![
                    "alice@example.org".to_string(),
                    "Bob@Example.org".to_string()
                ]
            ),
            (
                "team@example.org".to_string(),
                vec![
                    "alice@example.org".to_string(),
                    "bob@example.org".to_string(),
                    "carol@elsewhere.net".to_string()
                ]
            ),
        ]
    );
}

#[test]
fn catch_all_sorts_first_in_its_domain() {
    let p = aliases("z@b.org: x@y\n@b.org: x@y\na@b.org: x@y\n@a.org: x@y\n");
    let names: Vec<String> = p.value.entries().into_iter().map(|(a, _)| a).collect();
    assert_eq!(names, ["@a.org", "@b.org", "a@b.org", "z@b.org"]);
}

#[test]
fn aliases_errors_name_line_and_problem() {
    let cases: &[(&str, &[&str])] = &[
        ("team@example.org alice@example.org", &["missing ':'"]),
        (
            "team@example.org:",
            &["\"team@example.org\" has no targets"],
        ),
        ("team@example.org: , ,", &["has no targets"]),
        ("team@example.org: alice", &["target \"alice\" has no '@'"]),
        (
            "team@example.org: alice@example.org, @example.org",
            &["target \"@example.org\" has an empty local part"],
        ),
        (
            "team@example.org: alice@",
            &["target \"alice@\" has an empty domain"],
        ),
        ("team: alice@example.org", &["alias \"team\" has no '@'"]),
        (
            "te am@example.org: alice@example.org",
            &["alias \"te am@example.org\" contains whitespace"],
        ),
        (": alice@example.org", &["empty alias"]),
        (
            "@: alice@example.org",
            &["catch-all \"@\" has an empty domain"],
        ),
        (
            "@a@b: alice@example.org",
            &["catch-all \"@a@b\" has more than one '@'"],
        ),
    ];
    for (line, wanted) in cases {
        let p = aliases(&format!("\n{line}\n"));
        let (n, message) = only_error(&p.errors);
        assert_eq!(n, 2, "{line}");
        for w in *wanted {
            assert!(message.contains(w), "{line:?}: {message:?} lacks {w:?}");
        }
        assert!(p.value.entries().is_empty(), "{line}");
    }
}

#[test]
fn duplicate_aliases_and_catch_alls_name_the_first_line() {
    let p = aliases(
        "team@example.org: a@x\n@example.org: b@x\nTEAM@example.org: c@x\n@EXAMPLE.org: d@x\n",
    );
    let found = lines(&p.errors);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, 3);
    assert!(
        found[0].1.contains("duplicate alias \"team@example.org\"")
            && found[0].1.contains("first on line 1"),
        "{found:?}"
    );
    assert_eq!(found[1].0, 4);
    assert!(
        found[1].1.contains("duplicate alias \"@example.org\"")
            && found[1].1.contains("first on line 2"),
        "{found:?}"
    );
    assert_eq!(p.value.entries()[1].1, ["a@x"], "the first line wins");
}

// ---- resolution ----------------------------------------------------------------------

fn directory(users_text: &str, aliases_text: &str) -> Directory {
    let u = users(users_text);
    let a = aliases(aliases_text);
    assert!(u.errors.is_empty(), "{:?}", u.errors);
    assert!(a.errors.is_empty(), "{:?}", a.errors);
    Directory {
        users: u.value,
        aliases: a.value,
        domains: vec!["example.org".into(), "example.net".into()],
    }
}

fn standard() -> Directory {
    directory(
        &format!(
            "alice@example.org:{H1}\nBob@example.org:{H2}\ncarol@example.net:{H1}\nfoo+bar@example.org:{H1}\n"
        ),
        "postmaster@example.org: alice@example.org\n\
         team@example.org: alice@example.org, bob@example.org, friend@elsewhere.net\n\
         everyone@example.org: team@example.org, carol@example.net, ALICE@example.org, friend@ELSEWHERE.net\n\
         tagged@example.org: bob+lists@example.org\n\
         ghost@example.org: nobody@example.org\n\
         mixed@example.org: nobody@example.org, carol@example.net\n\
         @example.net: alice@example.org\n\
         remote@example.org: Someone@Far.Away\n\
         alice@elsewhere.net: bob@example.org\n",
    )
}

fn mailbox(a: &str) -> Resolution {
    Resolution::Mailbox(a.to_string())
}

fn alias(targets: &[&str]) -> Resolution {
    Resolution::Alias(targets.iter().map(|t| t.to_string()).collect())
}

#[test]
fn mailboxes_resolve_case_insensitively_to_the_canonical_address() {
    let d = standard();
    assert_eq!(d.resolve("alice@example.org"), mailbox("alice@example.org"));
    assert_eq!(d.resolve("ALICE@Example.ORG"), mailbox("alice@example.org"));
    assert_eq!(d.resolve("bob@example.org"), mailbox("Bob@example.org"));
    assert_eq!(d.resolve("carol@EXAMPLE.NET"), mailbox("carol@example.net"));
}

#[test]
fn unknown_and_malformed_addresses() {
    let d = standard();
    assert_eq!(d.resolve("nobody@example.org"), Resolution::Unknown);
    assert_eq!(d.resolve("alice"), Resolution::Unknown);
    assert_eq!(d.resolve(""), Resolution::Unknown);
    assert_eq!(d.resolve("@example.org"), Resolution::Unknown);
    assert_eq!(d.resolve("alice@"), Resolution::Unknown);
    assert_eq!(d.resolve("al ice@example.org"), Resolution::Unknown);
}

#[test]
fn non_local_domains_are_unknown_even_when_listed_in_the_files() {
    let mut d = standard();
    assert_eq!(d.resolve("alice@elsewhere.net"), Resolution::Unknown);
    assert_eq!(d.resolve("friend@elsewhere.net"), Resolution::Unknown);
    d.domains.retain(|x| x != "example.net");
    assert_eq!(
        d.resolve("carol@example.net"),
        Resolution::Unknown,
        "user in a domain no longer local"
    );
    assert_eq!(
        d.resolve("anyone@example.net"),
        Resolution::Unknown,
        "catch-all of a domain no longer local"
    );
    // Targets in a domain that is not local are kept as written.
    assert_eq!(
        d.resolve("mixed@example.org"),
        alias(&["carol@example.net"])
    );
}

#[test]
fn aliases_expand_with_canonical_local_targets_and_remote_ones_as_written() {
    let d = standard();
    assert_eq!(
        d.resolve("Postmaster@example.org"),
        alias(&["alice@example.org"])
    );
    assert_eq!(
        d.resolve("team@example.org"),
        alias(&[
            "alice@example.org",
            "Bob@example.org",
            "friend@elsewhere.net"
        ])
    );
    assert_eq!(
        d.resolve("remote@example.org"),
        alias(&["Someone@Far.Away"])
    );
}

#[test]
fn alias_expansion_is_recursive_and_deduplicated_in_first_seen_order() {
    let d = standard();
    assert_eq!(
        d.resolve("everyone@example.org"),
        alias(&[
            "alice@example.org",
            "Bob@example.org",
            "friend@elsewhere.net",
            "carol@example.net"
        ])
    );
}

#[test]
fn remote_targets_differing_in_local_part_case_are_kept_apart() {
    let d = directory(
        "",
        "x@example.org: Friend@far.org, friend@FAR.org, friend@far.org\n",
    );
    assert_eq!(
        d.resolve("x@example.org"),
        alias(&["Friend@far.org", "friend@FAR.org"])
    );
}

#[test]
fn plus_tags_resolve_to_the_base_address() {
    let d = standard();
    assert_eq!(
        d.resolve("alice+news@example.org"),
        mailbox("alice@example.org")
    );
    assert_eq!(
        d.resolve("ALICE+News@example.org"),
        mailbox("alice@example.org")
    );
    assert_eq!(
        d.resolve("alice+a+b@example.org"),
        mailbox("alice@example.org")
    );
    assert_eq!(
        d.resolve("team+x@example.org"),
        d.resolve("team@example.org")
    );
    // The exact address wins over the tag rule.
    assert_eq!(
        d.resolve("foo+bar@example.org"),
        mailbox("foo+bar@example.org")
    );
    assert_eq!(d.resolve("foo+baz@example.org"), Resolution::Unknown);
    assert_eq!(d.resolve("+tag@example.org"), Resolution::Unknown);
    assert_eq!(d.resolve("nobody+x@example.org"), Resolution::Unknown);
    // ...and tagged targets resolve like recipients.
    assert_eq!(d.resolve("tagged@example.org"), alias(&["Bob@example.org"]));
}

#[test]
fn catch_all_comes_after_exact_alias_mailbox_and_tag() {
    let d = standard();
    assert_eq!(
        d.resolve("anything@example.net"),
        alias(&["alice@example.org"])
    );
    assert_eq!(d.resolve("carol@example.net"), mailbox("carol@example.net"));
    assert_eq!(
        d.resolve("carol+x@example.net"),
        mailbox("carol@example.net")
    );
    let d = directory(
        &format!("alice@example.org:{H1}\n"),
        "@example.org: alice@example.org\nsales@example.org: remote@far.org\n",
    );
    assert_eq!(d.resolve("sales@example.org"), alias(&["remote@far.org"]));
    assert_eq!(d.resolve("alice@example.org"), mailbox("alice@example.org"));
    assert_eq!(
        d.resolve("random@example.org"),
        alias(&["alice@example.org"])
    );
    assert_eq!(
        d.resolve("random@EXAMPLE.org"),
        alias(&["alice@example.org"])
    );
}

#[test]
fn unknown_local_targets_go_to_the_catch_all_or_drop_out() {
    let d = standard();
    // ghost's only target is unknown in example.org, which has no catch-all.
    assert_eq!(d.resolve("ghost@example.org"), Resolution::Unknown);
    assert_eq!(
        d.resolve("mixed@example.org"),
        alias(&["carol@example.net"])
    );
    let d = directory(
        &format!("alice@example.org:{H1}\n"),
        "ghost@example.org: nobody@example.org\n@example.org: alice@example.org\n",
    );
    assert_eq!(
        d.resolve("ghost@example.org"),
        alias(&["alice@example.org"])
    );
}

#[test]
fn a_catch_all_naming_an_unknown_address_of_its_domain_stops() {
    let d = directory("", "@example.org: nobody@example.org\n");
    assert_eq!(d.resolve("x@example.org"), Resolution::Unknown);
}

#[test]
fn self_target_is_kept_as_the_mailbox() {
    let d = directory(
        &format!("a@example.org:{H1}\nb@example.org:{H2}\n"),
        "a@example.org: a@example.org, b@example.org\n",
    );
    assert_eq!(
        d.resolve("A@example.org"),
        alias(&["a@example.org", "b@example.org"])
    );
    assert_eq!(d.resolve("b@example.org"), mailbox("b@example.org"));
}

#[test]
fn cycles_stop() {
    let d = directory(
        &format!("user@example.org:{H1}\n"),
        "a@example.org: b@example.org\nb@example.org: a@example.org, user@example.org\nc@example.org: c@example.org\nx@example.org: y@example.org\ny@example.org: x@example.org\n",
    );
    assert_eq!(d.resolve("a@example.org"), alias(&["user@example.org"]));
    assert_eq!(d.resolve("b@example.org"), alias(&["user@example.org"]));
    assert_eq!(d.resolve("c@example.org"), Resolution::Unknown);
    assert_eq!(d.resolve("x@example.org"), Resolution::Unknown);
}

#[test]
fn a_cycle_through_mailboxes_ends_at_the_mailbox() {
    let d = directory(
        &format!("a@example.org:{H1}\nb@example.org:{H2}\n"),
        "a@example.org: b@example.org\nb@example.org: a@example.org\n",
    );
    assert_eq!(d.resolve("a@example.org"), alias(&["a@example.org"]));
    assert_eq!(d.resolve("b@example.org"), alias(&["b@example.org"]));
}

/// `l0 -> l1 -> ... -> l{n-1} -> user`
fn chain(n: usize) -> Directory {
    let mut text = String::new();
    for i in 0..n {
        let next = if i + 1 == n {
            "user@example.org".to_string()
        } else {
            format!("l{}@example.org", i + 1)
        };
        text.push_str(&format!("l{i}@example.org: {next}\n"));
    }
    directory(&format!("user@example.org:{H1}\n"), &text)
}

#[test]
fn alias_depth_is_limited_to_ten() {
    assert_eq!(
        chain(MAX_ALIAS_DEPTH).resolve("l0@example.org"),
        alias(&["user@example.org"])
    );
    assert_eq!(
        chain(MAX_ALIAS_DEPTH + 1).resolve("l0@example.org"),
        Resolution::Unknown
    );
    assert_eq!(
        chain(MAX_ALIAS_DEPTH + 1).resolve("l1@example.org"),
        alias(&["user@example.org"])
    );
}

#[test]
fn fan_out_work_is_bounded() {
    // Ten levels of ten aliases, each naming all ten of the next level: 10^10 paths.
    let mut text = String::new();
    for level in 0..10 {
        for i in 0..10 {
            let next: Vec<String> = (0..10)
                .map(|j| {
                    if level == 9 {
                        format!("r{j}@far.org")
                    } else {
                        format!("a{}x{j}@example.org", level + 1)
                    }
                })
                .collect();
            text.push_str(&format!("a{level}x{i}@example.org: {}\n", next.join(", ")));
        }
    }
    let d = directory("", &text);
    let start = std::time::Instant::now();
    let found = d.resolve("a0x0@example.org");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    let Resolution::Alias(targets) = found else {
        panic!("{found:?}")
    };
    assert!(targets.len() <= 10);
}

#[test]
fn users_of_lists_a_domain_sorted() {
    let d = standard();
    assert_eq!(
        d.users_of("EXAMPLE.org"),
        [
            "Bob@example.org",
            "alice@example.org",
            "foo+bar@example.org"
        ]
    );
    assert_eq!(d.users_of("example.net"), ["carol@example.net"]);
    assert!(d.users_of("elsewhere.net").is_empty());
}

#[test]
fn sender_addresses_are_the_user_and_aliases_reaching_it() {
    let d = standard();
    assert_eq!(
        d.sender_addresses("ALICE@example.org"),
        [
            "alice@example.org",
            "everyone@example.org",
            "postmaster@example.org",
            "team@example.org"
        ]
    );
    // tagged@ reaches Bob through bob+lists@; alice@elsewhere.net is not a local domain.
    assert_eq!(
        d.sender_addresses("bob@example.org"),
        [
            "Bob@example.org",
            "everyone@example.org",
            "tagged@example.org",
            "team@example.org"
        ]
    );
    // carol gets mixed@ and everyone@ but not the example.net catch-all.
    assert_eq!(
        d.sender_addresses("carol@example.net"),
        [
            "carol@example.net",
            "everyone@example.org",
            "mixed@example.org"
        ]
    );
    assert!(d.sender_addresses("nobody@example.org").is_empty());
    let d = directory(
        &format!("a@example.org:{H1}\n"),
        "a@example.org: a@example.org, x@far.org\n",
    );
    assert_eq!(d.sender_addresses("a@example.org"), ["a@example.org"]);
}

proptest::proptest! {
    #[test]
    fn parsers_and_resolution_never_panic(
        text in "([a-zA-Z@:+#, .{}$\\-]{0,30}\r?\n){0,8}",
        probe in "[a-zA-Z@+.]{0,20}",
    ) {
        let u = users(&text);
        let a = aliases(&text);
        for problem in u.errors.iter().chain(&a.errors) {
            let line_ok = problem.line >= 1 && problem.line <= text.lines().count();
            proptest::prop_assert!(line_ok, "{problem}");
        }
        let d = Directory {
            users: u.value,
            aliases: a.value,
            domains: vec!["b".into(), "c.d".into()],
        };
        let _ = d.resolve(&probe);
        for (alias, _) in d.aliases.entries() {
            let _ = d.resolve(&alias);
            let _ = d.sender_addresses(&alias);
        }
        let _ = d.users_of("b");
    }
}

// ---- edit_file -----------------------------------------------------------------------

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn edit_creates_a_missing_file_with_the_new_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    edit_file(&path, 0o640, None, |lines| {
        assert!(lines.is_empty());
        Ok(vec![
            "a@example.org:{PLAIN}x".into(),
            String::new(),
            "# c".into(),
        ])
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "a@example.org:{PLAIN}x\n\n# c\n"
    );
    assert_eq!(mode_of(&path), 0o640);
    assert_eq!(dir_names(dir.path()), ["users"]);
}

#[test]
fn edit_sees_current_lines_and_preserves_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aliases");
    std::fs::write(&path, "one\r\ntwo\nthree").unwrap();
    std::fs::set_permissions(&path, Permissions::from_mode(0o604)).unwrap();
    edit_file(&path, 0o600, None, |mut lines| {
        assert_eq!(lines, ["one", "two", "three"]);
        lines.push("four".into());
        Ok(lines)
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "one\ntwo\nthree\nfour\n"
    );
    assert_eq!(mode_of(&path), 0o604, "the old mode, not new_mode");
}

#[test]
fn edit_preserves_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    std::fs::write(&path, "x\n").unwrap();
    let me = nix::unistd::geteuid().as_raw();
    let my_group = nix::unistd::getegid().as_raw();
    let (uid, gid) = if me == 0 {
        std::os::unix::fs::chown(&path, Some(4242), Some(4343)).unwrap();
        (4242, 4343)
    } else {
        (me, my_group)
    };
    edit_file(&path, 0o600, Some((0, 0)), Ok).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    if me == 0 {
        let fresh = dir.path().join("fresh");
        edit_file(&fresh, 0o640, Some((4242, 4343)), |_| Ok(vec!["y".into()])).unwrap();
        let meta = std::fs::metadata(&fresh).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (4242, 4343, 0o640)
        );
    }
}

#[test]
fn a_failing_edit_leaves_the_file_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    let original = b"alice@example.org:{PLAIN}x\r\n# no final newline";
    std::fs::write(&path, original).unwrap();
    std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
    let err = edit_file(&path, 0o600, None, |_| {
        Err(EditError::Invalid("no such user".into()))
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "no such user");
    let err = edit_file(&path, 0o600, None, |_| Ok(vec!["a\nb".into()])).unwrap_err();
    assert!(matches!(err, EditError::Invalid(_)), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), original);
    assert_eq!(mode_of(&path), 0o640);
    assert_eq!(dir_names(dir.path()), ["users"], "no temp file left behind");
    // A failing edit of a missing file creates nothing.
    let missing = dir.path().join("aliases");
    assert!(
        edit_file(&missing, 0o600, None, |_| Err(EditError::Invalid(
            "x".into()
        )))
        .is_err()
    );
    assert!(!missing.exists());
}

#[test]
fn concurrent_edits_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    std::thread::scope(|scope| {
        for t in 0..2 {
            let path = &path;
            scope.spawn(move || {
                for i in 0..50 {
                    edit_file(path, 0o600, None, |mut lines| {
                        lines.push(format!("t{t}-{i}"));
                        Ok(lines)
                    })
                    .unwrap();
                }
            });
        }
    });
    let text = std::fs::read_to_string(&path).unwrap();
    let mut got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), 100);
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 100);
    for t in 0..2 {
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("t{t}-")))
            .collect();
        let expected: Vec<String> = (0..50).map(|i| format!("t{t}-{i}")).collect();
        assert_eq!(mine, expected, "each thread's lines in its order");
    }
    assert_eq!(dir_names(dir.path()), ["users"]);
}

#[test]
fn edit_reports_the_path_on_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("users");
    let err = edit_file(&path, 0o600, None, Ok).unwrap_err();
    assert!(matches!(err, EditError::Io(_)));
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

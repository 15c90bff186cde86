//! Unit tests of the docker-mailserver parsers, on lines as docker-mailserver writes them.

use super::*;
use proptest::prelude::*;

/// `openssl passwd -6 -salt saltsalt secret`
const SHA512: &str = "{SHA512-CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

#[test]
fn accounts_as_setup_writes_them() {
    let text = format!(
        "# comment\n\nalice@example.org|{SHA512}\r\nBob@Example.org|{SHA512}|userdb_quota_rule=*:bytes=1G\n"
    );
    let parsed = parse_accounts(&text);
    assert_eq!(parsed.skipped, vec![]);
    let got: Vec<(usize, &str)> = parsed
        .items
        .iter()
        .map(|a| (a.line, a.address.as_str()))
        .collect();
    assert_eq!(got, vec![(3, "alice@example.org"), (4, "Bob@Example.org")]);
    assert!(parsed.items[0].password.verify(b"secret"));
    assert_eq!(parsed.notes.len(), 1);
    assert_eq!(parsed.notes[0].line, 4);
    assert!(parsed.notes[0].message.contains("userdb_quota_rule"));
}

#[test]
fn bad_account_lines_are_reported_by_number() {
    let text = format!(
        "no-pipe-here\n\
         nodomain|{SHA512}\n\
         carol@example.org|{{CRAM-MD5}}abcdef\n\
         dave@example.org|$6$bare$hash\n\
         erin@example.org|{{SHA512-CRYPT}}$6$short\n\
         ALICE@example.org|{SHA512}\n\
         alice@example.org|{SHA512}\n\
         fred:x@example.org|{SHA512}\n"
    );
    let parsed = parse_accounts(&text);
    let lines: Vec<usize> = parsed.skipped.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![1, 2, 3, 4, 5, 7, 8]);
    let why = |line: usize| {
        parsed
            .skipped
            .iter()
            .find(|p| p.line == line)
            .unwrap()
            .message
            .clone()
    };
    assert!(why(1).contains("no '|'"), "{}", why(1));
    assert!(why(2).contains("no domain"), "{}", why(2));
    assert!(why(3).contains("{CRAM-MD5}"), "{}", why(3));
    assert!(why(4).contains("{SCHEME}"), "{}", why(4));
    assert!(why(5).contains("malformed"), "{}", why(5));
    assert!(why(7).contains("repeats line 6"), "{}", why(7));
    assert!(why(8).contains("':'"), "{}", why(8));
    assert_eq!(parsed.items.len(), 1);
}

#[test]
fn virtual_aliases_in_every_spelling() {
    let text = "# aliases\n\
                info@example.org alice@example.org\n\
                team@example.org alice@example.org,bob@example.org\n\
                old@example.org alice@example.org, bob@example.org,\n\
                @example.net catchall@example.org\n\
                tabbed@example.org\t\tfar@elsewhere.example\n";
    let parsed = parse_virtual(text);
    assert_eq!(parsed.skipped, vec![]);
    assert_eq!(parsed.notes, vec![]);
    let got: Vec<(&str, Vec<&str>)> = parsed
        .items
        .iter()
        .map(|a| {
            (
                a.alias.as_str(),
                a.targets.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("info@example.org", vec!["alice@example.org"]),
            (
                "team@example.org",
                vec!["alice@example.org", "bob@example.org"]
            ),
            (
                "old@example.org",
                vec!["alice@example.org", "bob@example.org"]
            ),
            ("@example.net", vec!["catchall@example.org"]),
            ("tabbed@example.org", vec!["far@elsewhere.example"]),
        ]
    );
}

#[test]
fn bad_virtual_lines_are_reported_by_number() {
    let text = "root admin@example.org\n\
                lonely@example.org\n\
                mixed@example.org localname,ok@example.org\n\
                @ x@example.org\n\
                info@example.org a@example.org\n\
                INFO@example.org b@example.org\n";
    let parsed = parse_virtual(text);
    let lines: Vec<usize> = parsed.skipped.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![1, 2, 4, 6]);
    assert!(parsed.skipped[0].message.contains("own hostname"));
    assert!(parsed.skipped[1].message.contains("no target"));
    assert!(parsed.skipped[3].message.contains("repeats line 5"));
    // A target without a domain is left out; the line keeps its other targets.
    assert_eq!(parsed.notes.len(), 1);
    assert_eq!(parsed.notes[0].line, 3);
    let mixed = parsed
        .items
        .iter()
        .find(|a| a.alias == "mixed@example.org")
        .unwrap();
    assert_eq!(mixed.targets, vec!["ok@example.org"]);
}

#[test]
fn relay_routes_and_credentials() {
    let map = "@example.org [smtp.relay.example]:587\n@example.net\n";
    let routes = parse_relaymap(map);
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[1].relay, None);
    assert_eq!(
        relay_host_port("[smtp.relay.example]:587"),
        "smtp.relay.example:587"
    );
    assert_eq!(
        relay_host_port("[smtp.relay.example]"),
        "smtp.relay.example:25"
    );
    assert_eq!(relay_host_port("relay.example"), "relay.example:25");
    let sasl =
        "# creds\n@example.net other:pw\n[smtp.relay.example]:587 apikey:s3cret:with:colons\n";
    assert_eq!(
        relay_username(sasl, "[smtp.relay.example]:587"),
        Some(("apikey".to_string(), 3))
    );
    assert_eq!(
        relay_username("@example.org user:pw\n", "[x]:25"),
        Some(("user".to_string(), 1))
    );
    assert_eq!(relay_username("", "[x]:25"), None);
}

proptest! {
    /// Any text: no panic, every data line is either taken or reported, and what is taken
    /// can be written back as a users/aliases line Postern reads.
    #[test]
    fn every_line_is_taken_or_reported(lines in proptest::collection::vec("[ -~|@,:#{}$\t]{0,40}", 0..12)) {
        let text = lines.join("\n");
        let data = text.lines().filter(|l| { let t = l.trim(); !t.is_empty() && !t.starts_with('#') }).count();
        let accounts = parse_accounts(&text);
        prop_assert_eq!(accounts.items.len() + accounts.skipped.len(), data);
        let virt = parse_virtual(&text);
        prop_assert_eq!(virt.items.len() + virt.skipped.len(), data);
        let users: String = accounts.items.iter().map(|a| format!("{}:{}\n", a.address, a.password.to_field())).collect();
        let parsed = shared::users::parse_users(std::path::Path::new("u"), &users);
        prop_assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let aliases: String = virt.items.iter().map(|a| format!("{}: {}\n", a.alias, a.targets.join(", "))).collect();
        let parsed = shared::users::parse_aliases(std::path::Path::new("a"), &aliases);
        prop_assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    }
}

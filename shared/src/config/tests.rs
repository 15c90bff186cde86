//! Configuration tests: every error with its line, the shipped configs valid and documented.

use std::path::{Path, PathBuf};

use super::*;

fn etc(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../etc")
        .join(name)
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    parse(Path::new("/etc/postern/postern.toml"), text).expect_err("should be invalid")
}

const MINIMAL: &str = "hostname = \"mail.example.org\"\ndomains = [\"example.org\"]\n";

#[test]
fn minimal_file_is_complete() {
    let c = parse(Path::new("/etc/postern/postern.toml"), MINIMAL).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/postern"));
    assert_eq!(c.listen_addrs(ListenerName::Smtp).len(), 2);
    assert!(c.listen_addrs(ListenerName::Pop3).is_empty());
    assert_eq!(c.limits.message_size, 26_214_400);
    assert_eq!(c.auth.cache_ttl, std::time::Duration::from_secs(3600));
}

#[test]
fn typo_is_reported_with_its_line_and_a_suggestion() {
    let text = format!("{MINIMAL}\n[listen]\nsmtp = []\nimapp = [\"127.0.0.1:143\"]\n");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.key, "listen.imapp");
    assert_eq!(e.line, Some(6));
    let shown = e.to_string();
    assert!(
        shown.starts_with("/etc/postern/postern.toml:6: listen.imapp: unknown key"),
        "{shown}"
    );
    assert!(shown.contains("did you mean `listen.imap`"), "{shown}");
}

#[test]
fn every_error_is_collected_at_once() {
    let text = "hostname = \"bad host\"\ndomains = []\nbogus = 1\n\n[listen]\nsmtp = [\"nonsense\"]\nimap = [\"127.0.0.1:143\", \"127.0.0.1:143\"]\n\n[auth]\ncache_ttl = \"forever\"\n\n[log]\nlevel = \"loud\"\n";
    let errors = errors_of(text);
    let keys: Vec<(&str, Option<usize>)> =
        errors.iter().map(|e| (e.key.as_str(), e.line)).collect();
    for expected in [
        ("bogus", Some(3)),
        ("hostname", Some(1)),
        ("domains", Some(2)),
        ("listen.smtp.0", Some(6)),
        ("listen.imap.1", Some(7)),
        ("auth.cache_ttl", Some(10)),
        ("log.level", Some(13)),
    ] {
        assert!(keys.contains(&expected), "missing {expected:?} in {keys:?}");
    }
}

#[test]
fn syntax_and_type_errors_name_the_line() {
    let e = errors_of("hostname = \"a.b\"\ndomains = [\"a.b\"\n");
    assert_eq!(e[0].line, Some(2), "{e:?}");
    assert!(e[0].message.contains("not valid TOML"));
    let e = errors_of(&format!(
        "{MINIMAL}[limits]\nmessage_size = \"big\"\n[auth]\nmax_failures_per_ip = \"x\"\ncache_ttl = \"soon\"\n[listen]\nsmtp = [25]\n"
    ));
    let found: Vec<(&str, Option<usize>)> = e.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert_eq!(
        found,
        vec![
            ("limits.message_size", Some(4)),
            ("auth.max_failures_per_ip", Some(6)),
            ("auth.cache_ttl", Some(7)),
            ("listen.smtp.0", Some(9)),
        ],
        "{e:?}"
    );
    assert!(e[0].message.contains("invalid type"), "{e:?}");
}

#[test]
fn relative_paths_follow_the_config_file() {
    let text = format!("{MINIMAL}state_dir = \"../var/lib\"\n");
    let c = parse(Path::new("/srv/postern/etc/postern.toml"), &text).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/srv/postern/etc/../var/lib"));
}

#[test]
fn relay_needs_host_port_and_username_with_password_file() {
    let e = errors_of(&format!(
        "{MINIMAL}[relay]\nhost = \"smtp.example.net\"\nusername = \"u\"\n"
    ));
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert!(
        keys.contains(&"relay.host") && keys.contains(&"relay.username"),
        "{keys:?}"
    );
    let ok = parse(
        Path::new("/etc/postern/postern.toml"),
        &format!("{MINIMAL}[relay]\nhost = \"smtp.example.net:465\"\n"),
    )
    .unwrap();
    assert_eq!(ok.relay.unwrap().port, 465);
}

#[test]
fn shipped_configs_are_valid() {
    for name in ["postern.toml", "postern-dev.toml"] {
        if let Err(errors) = load(&etc(name)) {
            panic!("etc/{name} is invalid: {errors:?}");
        }
    }
    let dev = load(&etc("postern-dev.toml")).unwrap();
    assert!(dev.tls.self_signed);
    let ports: Vec<u16> = ListenerName::ALL
        .iter()
        .flat_map(|n| dev.listen_addrs(*n).iter().map(|a| a.port()))
        .collect();
    assert_eq!(ports, vec![1025, 1587, 1465, 1143, 1993, 1110, 1995]);
    for (_, addrs) in &dev.listen {
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }
}

/// Every key of the typed definition is documented in the annotated production config, as a
/// setting or as a commented default, under its own table.
#[test]
fn every_key_is_documented_in_etc_postern_toml() {
    let text = std::fs::read_to_string(etc("postern.toml")).unwrap();
    let mut table = String::new();
    let mut documented = std::collections::HashSet::new();
    for line in text.lines() {
        let l = line.trim_start_matches('#').trim();
        if l.starts_with('[') && l.ends_with(']') && !l.contains(' ') {
            table = l.trim_matches(['[', ']']).to_string();
            documented.insert(table.clone());
            continue;
        }
        if let Some((key, _)) = l.split_once(" = ")
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        {
            let path = if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
            documented.insert(path);
        }
    }
    let missing: Vec<String> = known_keys()
        .into_iter()
        .filter(|k| !documented.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from etc/postern.toml: {missing:?}"
    );
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|k| !known_keys().contains(k))
        .collect();
    assert!(
        unknown.is_empty(),
        "etc/postern.toml documents keys that do not exist: {unknown:?}"
    );
}

#[test]
fn outbound_dns_queue_and_dkim_keys() {
    let c = parse(Path::new("/etc/postern/postern.toml"), MINIMAL).unwrap();
    assert_eq!(c.mta.outbound.tls, OutboundTls::May);
    assert_eq!(c.mta.outbound.port, 25);
    assert!(c.mta.outbound.nameservers.is_empty());
    assert_eq!(c.mta.lifetime, std::time::Duration::from_secs(5 * 86_400));
    assert!(c.dkim.is_empty());
    let text = format!(
        "{MINIMAL}\n[outbound]\ntls = \"verify\"\nport = 2525\n\n[dns]\nnameservers = [\"127.0.0.1:5353\"]\n\n[dkim]\nkeys = [{{ domain = \"Example.org\", selector = \"s1\", key = \"dkim/s1.pem\" }}]\n"
    );
    let c = parse(Path::new("/etc/postern/postern.toml"), &text).unwrap();
    assert_eq!(c.mta.outbound.tls, OutboundTls::Verify);
    assert_eq!(
        c.mta.outbound.nameservers,
        vec!["127.0.0.1:5353".parse().unwrap()]
    );
    assert_eq!(c.dkim[0].domain, "example.org");
    assert_eq!(c.dkim[0].key, PathBuf::from("/etc/postern/dkim/s1.pem"));
    let bad = format!(
        "{MINIMAL}\n[outbound]\ntls = \"always\"\n\n[dns]\nnameservers = [\"localhost\"]\n\n[queue]\nlifetime = \"0s\"\n\n[dkim]\nkeys = [{{ domain = \"bad domain\", selector = \"s 1\", key = \"\" }}]\n"
    );
    let keys: Vec<String> = errors_of(&bad).into_iter().map(|e| e.key).collect();
    for key in [
        "outbound.tls",
        "dns.nameservers.0",
        "queue.lifetime",
        "dkim.keys.0.domain",
        "dkim.keys.0.selector",
        "dkim.keys.0.key",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing in {keys:?}");
    }
}

#[test]
fn imap_limits_are_checked() {
    let c = parse(Path::new("/etc/postern/postern.toml"), MINIMAL).unwrap();
    assert_eq!(c.imap.idle_timeout, std::time::Duration::from_secs(1800));
    assert_eq!(c.imap.commands_before_auth, 20);
    let text = format!(
        "{MINIMAL}\n[imap]\nidle_timeout = \"5m\"\nmax_line = 100\nsessions_per_user = 0\n"
    );
    let keys: Vec<String> = errors_of(&text).into_iter().map(|e| e.key).collect();
    for key in [
        "imap.idle_timeout",
        "imap.max_line",
        "imap.sessions_per_user",
    ] {
        assert!(keys.iter().any(|k| k == key), "missing {key} in {keys:?}");
    }
}

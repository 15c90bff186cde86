//! One pass over a [`RawConfig`] that turns it into a [`Config`] or collects every error, each
//! with the line of its key and a hint. Looks at the text only, never at the file system.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawConfig;
use super::{
    AuthSettings, Config, ConfigError, DeliveryTarget, DkimKeyConfig, Limits, ListenerName,
    Locator, MtaSettings, OutboundSettings, OutboundTls, Pop3Settings, RelayConfig, ServiceUsers,
    SupervisorSettings, TlsConfig, parse_duration,
};

/// The longest `sun_path` of a Unix socket, less room for `/notify.sock` (unix(7)).
const MAX_RUNTIME_DIR_LEN: usize = 107 - "/notify.sock".len();

struct Checker<'a> {
    file: &'a Path,
    base: PathBuf,
    locator: &'a Locator<'a>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>, hint: impl Into<Option<String>>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: self.locator.line_of_path(key),
            key: key.to_string(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    fn path(&mut self, key: &str, value: &str) -> PathBuf {
        if value.is_empty() {
            self.error(
                key,
                "must not be empty",
                Some("give a file or directory path".into()),
            );
            return PathBuf::new();
        }
        let p = Path::new(value);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&mut self, key: &str, value: &str) -> Duration {
        parse_duration(value).unwrap_or_else(|| {
            self.error(
                key,
                format!("{value:?} is not a duration"),
                Some(
                    "write a number and a unit: \"500ms\", \"30s\", \"15m\", \"1h\", \"5d\"".into(),
                ),
            );
            Duration::ZERO
        })
    }

    fn domain(&mut self, key: &str, value: &str) -> Option<String> {
        if is_domain(value) {
            Some(value.to_ascii_lowercase())
        } else {
            self.error(
                key,
                format!("{value:?} is not a domain name"),
                Some("letters, digits, '-' and '.', like \"example.org\"".into()),
            );
            None
        }
    }
}

/// Letters, digits and hyphens in dot-separated labels of at most 63 octets (RFC 1035 §2.3.1).
pub fn is_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub fn validate(
    file: &Path,
    locator: &Locator<'_>,
    raw: RawConfig,
) -> Result<Config, Vec<ConfigError>> {
    let file_abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let base = file_abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut c = Checker {
        file,
        base,
        locator,
        errors: Vec::new(),
    };

    let domains = validate_identity(&mut c, &raw);

    let state_dir = c.path("state_dir", &raw.state_dir);
    let runtime_dir = c.path("runtime_dir", &raw.runtime_dir);
    if runtime_dir.as_os_str().len() > MAX_RUNTIME_DIR_LEN {
        c.error(
            "runtime_dir",
            format!("is longer than {MAX_RUNTIME_DIR_LEN} bytes"),
            Some(
                "Unix socket paths are limited to 108 bytes (unix(7)); choose a shorter directory"
                    .into(),
            ),
        );
    }
    let users_file = c.path("users_file", &raw.users_file);
    let aliases_file = c.path("aliases_file", &raw.aliases_file);
    let tls = TlsConfig {
        cert: c.path("tls.cert", &raw.tls.cert),
        key: c.path("tls.key", &raw.tls.key),
        self_signed: raw.tls.self_signed,
    };

    let listen = validate_listen(&mut c, &raw);
    let relay = raw.relay.as_ref().map(|r| validate_relay(&mut c, r));
    let dkim = validate_dkim(&mut c, &raw);

    let limits = validate_limits(&mut c, &raw.limits);
    let mta = validate_mta(&mut c, &raw, &runtime_dir);
    let pop3 = validate_pop3(&mut c, &raw.pop3);
    let imap = validate_imap(&mut c, &raw.imap);
    let service_users = validate_service_users(&mut c, &raw.service_users);
    let auth = validate_auth(&mut c, &raw.auth);
    let supervisor = validate_supervisor(&mut c, &raw.supervisor);
    let log_level = validate_log_level(&mut c, &raw.log.level);

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    Ok(Config {
        file: file_abs,
        hostname: raw.hostname.to_ascii_lowercase(),
        domains,
        state_dir,
        runtime_dir,
        users_file,
        aliases_file,
        tls,
        listen,
        relay,
        dkim,
        limits,
        mta,
        pop3,
        imap,
        service_users,
        auth,
        supervisor,
        log_level,
        raw,
    })
}

/// `hostname` and `domains` (lower-cased, each once).
fn validate_identity(c: &mut Checker<'_>, raw: &RawConfig) -> Vec<String> {
    if raw.hostname.is_empty() {
        c.error(
            "hostname",
            "must be set",
            Some("the server's fully qualified name, e.g. \"mail.example.org\"".into()),
        );
    } else {
        c.domain("hostname", &raw.hostname);
    }
    if raw.domains.is_empty() {
        c.error(
            "domains",
            "lists no local domain",
            Some("domains = [\"example.org\"]".into()),
        );
    }
    let mut domains = Vec::new();
    for (i, d) in raw.domains.iter().enumerate() {
        if let Some(d) = c.domain(&format!("domains.{i}"), d) {
            if domains.contains(&d) {
                c.error(
                    &format!("domains.{i}"),
                    format!("{d:?} is listed twice"),
                    None,
                );
            }
            domains.push(d);
        }
    }
    domains
}

fn validate_limits(c: &mut Checker<'_>, raw: &super::raw::RawLimits) -> Limits {
    if raw.message_size == 0 {
        c.error(
            "limits.message_size",
            "must be greater than 0",
            Some("the default is 26214400 (25 MiB)".into()),
        );
    }
    let limits = Limits {
        message_size: raw.message_size,
        recipients: raw.recipients,
        errors: raw.errors,
        commands_before_mail: raw.commands_before_mail,
        idle_timeout: c.duration("limits.idle_timeout", &raw.idle_timeout),
        connections_per_ip: raw.connections_per_ip,
        connections: raw.connections,
    };
    for (key, n) in [
        ("limits.recipients", limits.recipients),
        ("limits.errors", limits.errors),
        ("limits.commands_before_mail", limits.commands_before_mail),
        ("limits.connections_per_ip", limits.connections_per_ip),
        ("limits.connections", limits.connections),
    ] {
        if n == 0 {
            c.error(key, "must be at least 1", None);
        }
    }
    if limits.idle_timeout < Duration::from_secs(1) {
        c.error(
            "limits.idle_timeout",
            "must be at least 1s",
            Some("RFC 5321 §4.5.3.2 asks for 5 minutes: \"5m\"".into()),
        );
    }
    limits
}

/// `[queue]` and `[submission]`: what the MTA needs beyond the listeners.
fn validate_mta(c: &mut Checker<'_>, raw: &RawConfig, runtime_dir: &Path) -> MtaSettings {
    let delivery = match raw.queue.delivery.as_str() {
        "" => DeliveryTarget::Unix(runtime_dir.join("lmtp.sock")),
        other => match other.strip_prefix("unix:") {
            Some(path) => DeliveryTarget::Unix(c.path("queue.delivery", path)),
            None if other
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
            {
                DeliveryTarget::Tcp(other.to_string())
            }
            None => {
                c.error(
                    "queue.delivery",
                    format!("{other:?} is neither unix:/path nor host:port"),
                    Some("leave it empty for Postern's own MDA".into()),
                );
                DeliveryTarget::Tcp(String::new())
            }
        },
    };
    let mta = MtaSettings {
        restrict_sender: raw.submission.restrict_sender,
        delivery,
        retry_min: c.duration("queue.retry_min", &raw.queue.retry_min),
        retry_max: c.duration("queue.retry_max", &raw.queue.retry_max),
        lifetime: c.duration("queue.lifetime", &raw.queue.lifetime),
        delay_warning: c.duration("queue.delay_warning", &raw.queue.delay_warning),
        outbound: validate_outbound(c, raw),
    };
    if mta.lifetime.is_zero() {
        c.error(
            "queue.lifetime",
            "must be greater than 0",
            Some("RFC 5321 §4.5.4.1 suggests \"5d\"".into()),
        );
    }
    mta
}

fn validate_service_users(c: &mut Checker<'_>, raw: &super::raw::RawServiceUsers) -> ServiceUsers {
    for (key, name) in [
        ("service_users.auth", &raw.auth),
        ("service_users.mta", &raw.mta),
        ("service_users.mail", &raw.mail),
    ] {
        if !is_user_name(name) {
            c.error(key, format!("{name:?} is not a valid user name"), None);
        }
    }
    if raw.auth == raw.mta || raw.auth == raw.mail {
        c.error(
            "service_users.auth",
            "must differ from the mta and mail users",
            Some("only authd may read the users file, so it needs a user of its own".into()),
        );
    }
    ServiceUsers {
        auth: raw.auth.clone(),
        mta: raw.mta.clone(),
        mail: raw.mail.clone(),
        create_missing: raw.create_missing,
    }
}

fn validate_auth(c: &mut Checker<'_>, raw: &super::raw::RawAuth) -> AuthSettings {
    let auth = AuthSettings {
        cache_ttl: c.duration("auth.cache_ttl", &raw.cache_ttl),
        fail_delay: c.duration("auth.fail_delay", &raw.fail_delay),
        fail_delay_max: c.duration("auth.fail_delay_max", &raw.fail_delay_max),
        fail_window: c.duration("auth.fail_window", &raw.fail_window),
        max_failures_per_ip: raw.max_failures_per_ip,
        max_failures_per_user: raw.max_failures_per_user,
    };
    if auth.fail_delay > auth.fail_delay_max {
        c.error(
            "auth.fail_delay",
            "is larger than auth.fail_delay_max",
            None,
        );
    }
    for (key, n) in [
        ("auth.max_failures_per_ip", auth.max_failures_per_ip),
        ("auth.max_failures_per_user", auth.max_failures_per_user),
    ] {
        if n == 0 {
            c.error(key, "must be at least 1", None);
        }
    }
    auth
}

fn validate_supervisor(c: &mut Checker<'_>, raw: &super::raw::RawSupervisor) -> SupervisorSettings {
    let supervisor = SupervisorSettings {
        restart_delay: c.duration("supervisor.restart_delay", &raw.restart_delay),
        restart_delay_max: c.duration("supervisor.restart_delay_max", &raw.restart_delay_max),
        stop_timeout: c.duration("supervisor.stop_timeout", &raw.stop_timeout),
    };
    if supervisor.restart_delay.is_zero() {
        c.error("supervisor.restart_delay", "must be greater than 0", None);
    }
    supervisor
}

fn validate_log_level(c: &mut Checker<'_>, level: &str) -> String {
    let log_level = level.to_ascii_lowercase();
    if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
        c.error(
            "log.level",
            format!("{:?} is not a log level", level),
            Some("one of error, warn, info, debug, trace".into()),
        );
    }
    log_level
}

fn validate_listen(c: &mut Checker<'_>, raw: &RawConfig) -> Vec<(ListenerName, Vec<SocketAddr>)> {
    let l = &raw.listen;
    let lists = [
        (ListenerName::Smtp, &l.smtp),
        (ListenerName::Submission, &l.submission),
        (ListenerName::Submissions, &l.submissions),
        (ListenerName::Imap, &l.imap),
        (ListenerName::Imaps, &l.imaps),
        (ListenerName::Pop3, &l.pop3),
        (ListenerName::Pop3s, &l.pop3s),
    ];
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    let mut out = Vec::new();
    for (name, list) in lists {
        let mut addrs = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let key = format!("listen.{}.{i}", name.as_str());
            match text.parse::<SocketAddr>() {
                Ok(addr) => {
                    if let Some(other) = seen.insert(addr, key.clone()) {
                        c.error(
                            &key,
                            format!("{addr} is also given as {other}"),
                            Some("each address:port can serve one listener".into()),
                        );
                    }
                    addrs.push(addr);
                }
                Err(_) => c.error(
                    &key,
                    format!("{text:?} is not an address:port"),
                    Some("write \"0.0.0.0:25\", \"127.0.0.1:1025\" or \"[::]:25\"".into()),
                ),
            }
        }
        out.push((name, addrs));
    }
    out
}

fn validate_pop3(c: &mut Checker<'_>, raw: &super::raw::RawPop3) -> Pop3Settings {
    let settings = Pop3Settings {
        line_length: raw.line_length as usize,
        commands_before_auth: raw.commands_before_auth,
        errors: raw.errors,
        idle_timeout: c.duration("pop3.idle_timeout", &raw.idle_timeout),
        connections_per_ip: raw.connections_per_ip,
        connections: raw.connections,
        mark_seen: raw.mark_seen,
    };
    // RFC 2449 §4: a server accepts command lines of 255 octets at least.
    if settings.line_length < 255 {
        c.error(
            "pop3.line_length",
            "must be at least 255",
            Some("RFC 2449 §4 lets clients send 255-octet command lines".into()),
        );
    }
    for (key, n) in [
        ("pop3.commands_before_auth", settings.commands_before_auth),
        ("pop3.errors", settings.errors),
        ("pop3.connections_per_ip", settings.connections_per_ip),
        ("pop3.connections", settings.connections),
    ] {
        if n == 0 {
            c.error(key, "must be at least 1", None);
        }
    }
    if settings.idle_timeout < Duration::from_secs(1) {
        c.error(
            "pop3.idle_timeout",
            "must be at least 1s",
            Some("RFC 1939 §3 asks for at least 10 minutes: \"10m\"".into()),
        );
    }
    settings
}

fn validate_outbound(c: &mut Checker<'_>, raw: &RawConfig) -> OutboundSettings {
    let o = &raw.outbound;
    let tls = match o.tls.as_str() {
        "may" => OutboundTls::May,
        "encrypt" => OutboundTls::Encrypt,
        "verify" => OutboundTls::Verify,
        other => {
            c.error(
                "outbound.tls",
                format!("{other:?} is not a TLS policy"),
                Some("one of \"may\", \"encrypt\", \"verify\"".into()),
            );
            OutboundTls::May
        }
    };
    for (key, n) in [
        ("outbound.port", u32::from(o.port)),
        ("outbound.concurrency", o.concurrency),
        ("outbound.per_destination", o.per_destination),
    ] {
        if n == 0 {
            c.error(key, "must be at least 1", None);
        }
    }
    let mut nameservers = Vec::new();
    for (i, text) in raw.dns.nameservers.iter().enumerate() {
        match text.parse::<SocketAddr>() {
            Ok(addr) => nameservers.push(addr),
            Err(_) => c.error(
                &format!("dns.nameservers.{i}"),
                format!("{text:?} is not an address:port"),
                Some("write \"127.0.0.1:53\" or \"[::1]:53\"".into()),
            ),
        }
    }
    OutboundSettings {
        tls,
        port: o.port,
        connect_timeout: c.duration("outbound.connect_timeout", &o.connect_timeout),
        command_timeout: c.duration("outbound.command_timeout", &o.command_timeout),
        data_timeout: c.duration("outbound.data_timeout", &o.data_timeout),
        final_timeout: c.duration("outbound.final_timeout", &o.final_timeout),
        concurrency: o.concurrency,
        per_destination: o.per_destination,
        nameservers,
    }
}

fn validate_dkim(c: &mut Checker<'_>, raw: &RawConfig) -> Vec<DkimKeyConfig> {
    let mut keys = Vec::new();
    for (i, k) in raw.dkim.keys.iter().enumerate() {
        let at = |field: &str| format!("dkim.keys.{i}.{field}");
        let domain = c.domain(&at("domain"), &k.domain);
        // A selector is a sequence of sub-domain labels (RFC 6376 §3.1).
        if !is_domain(&k.selector) {
            c.error(
                &at("selector"),
                format!("{:?} is not a DKIM selector", k.selector),
                Some("letters, digits and '-', like \"s2026\"".into()),
            );
        }
        let key = c.path(&at("key"), &k.key);
        if let Some(domain) = domain {
            keys.push(DkimKeyConfig {
                domain,
                selector: k.selector.to_ascii_lowercase(),
                key,
            });
        }
    }
    keys
}

fn validate_relay(c: &mut Checker<'_>, r: &super::raw::RawRelay) -> RelayConfig {
    let (host, port) = match r.host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => match p.parse::<u16>() {
            Ok(port) if port != 0 => (h.trim_matches(['[', ']']).to_string(), port),
            _ => {
                c.error(
                    "relay.host",
                    format!("{:?} has no valid port", r.host),
                    Some("write \"smtp.relay.example:587\"".into()),
                );
                (String::new(), 0)
            }
        },
        _ => {
            c.error(
                "relay.host",
                format!("{:?} is not host:port", r.host),
                Some("write \"smtp.relay.example:587\" (465 for implicit TLS)".into()),
            );
            (String::new(), 0)
        }
    };
    let password_file = if r.password_file.is_empty() {
        None
    } else {
        Some(c.path("relay.password_file", &r.password_file))
    };
    let username = (!r.username.is_empty()).then(|| r.username.clone());
    if username.is_some() != password_file.is_some() {
        c.error(
            "relay.username",
            "username and password_file go together",
            Some("set both for AUTH at the relay, or neither".into()),
        );
    }
    let implicit_tls = match r.tls.as_str() {
        "auto" => port == 465,
        "implicit" => true,
        "starttls" => false,
        other => {
            c.error(
                "relay.tls",
                format!("{other:?} is not a relay TLS mode"),
                Some("one of \"auto\", \"implicit\", \"starttls\"".into()),
            );
            false
        }
    };
    RelayConfig {
        host,
        port,
        username,
        password_file,
        tls_verify: r.tls_verify,
        implicit_tls,
    }
}

/// Names `useradd` accepts by default: lower-case letters, digits, '-', '_', not starting with
/// a digit or '-', at most 32 characters.
fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `[imap]`: every count at least 1, lines of at least 8000 octets (RFC 2683 §3.2.1.5), an
/// idle timeout of at least 30 minutes (RFC 9051 §5.4).
fn validate_imap(c: &mut Checker<'_>, raw: &super::raw::RawImap) -> super::ImapSettings {
    let imap = super::ImapSettings {
        max_line: raw.max_line as usize,
        max_depth: raw.max_depth as usize,
        commands_before_auth: raw.commands_before_auth,
        sessions_per_user: raw.sessions_per_user,
        idle_timeout: c.duration("imap.idle_timeout", &raw.idle_timeout),
    };
    if raw.max_line < 8000 {
        c.error(
            "imap.max_line",
            "must be at least 8000",
            Some("RFC 2683 §3.2.1.5".into()),
        );
    }
    for (key, n) in [
        ("imap.max_depth", raw.max_depth),
        ("imap.commands_before_auth", raw.commands_before_auth),
        ("imap.sessions_per_user", raw.sessions_per_user),
    ] {
        if n == 0 {
            c.error(key, "must be at least 1", None);
        }
    }
    if imap.idle_timeout < Duration::from_secs(30 * 60) {
        c.error(
            "imap.idle_timeout",
            "must be at least 30m",
            Some("RFC 9051 §5.4 asks for 30 minutes".into()),
        );
    }
    imap
}

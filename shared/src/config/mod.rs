//! Configuration: `postern.toml` parsed into typed structs, validated in one pass that collects
//! every error with file, line, key and hint. `postern check`, `postern serve` and SIGHUP reload
//! all go through [`load`]. Reading files other than the config itself (certificates, users) is
//! not done here: see the supervisor's preparation step.

mod duration;
mod locate;
pub mod raw;
pub mod slice;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::{format_duration, parse_duration};
pub use locate::Locator;
pub use raw::RawConfig;
pub use validate::{is_domain, validate};

/// The default configuration path (ARCHITECTURE §1).
pub const DEFAULT_PATH: &str = "/etc/postern/postern.toml";

/// One problem in the configuration, as shown to the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// The listener names of ARCHITECTURE §2, in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenerName {
    Smtp,
    Submission,
    Submissions,
    Imap,
    Imaps,
    Pop3,
    Pop3s,
}

impl ListenerName {
    pub const ALL: [ListenerName; 7] = [
        ListenerName::Smtp,
        ListenerName::Submission,
        ListenerName::Submissions,
        ListenerName::Imap,
        ListenerName::Imaps,
        ListenerName::Pop3,
        ListenerName::Pop3s,
    ];

    /// The name used in `[listen]` and in `LISTEN_FDNAMES`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerName::Smtp => "smtp",
            ListenerName::Submission => "submission",
            ListenerName::Submissions => "submissions",
            ListenerName::Imap => "imap",
            ListenerName::Imaps => "imaps",
            ListenerName::Pop3 => "pop3",
            ListenerName::Pop3s => "pop3s",
        }
    }

    pub fn from_name(name: &str) -> Option<ListenerName> {
        ListenerName::ALL.into_iter().find(|l| l.as_str() == name)
    }

    /// The daemon that serves this listener.
    pub fn role(self) -> Role {
        match self {
            ListenerName::Smtp | ListenerName::Submission | ListenerName::Submissions => Role::Mta,
            ListenerName::Imap | ListenerName::Imaps => Role::Imapd,
            ListenerName::Pop3 | ListenerName::Pop3s => Role::Pop3d,
        }
    }
}

/// The five children of the supervisor.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Authd,
    Mta,
    Mda,
    Imapd,
    Pop3d,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Authd, Role::Mta, Role::Mda, Role::Imapd, Role::Pop3d];

    /// The process name, as in logs and `ps`.
    pub fn process_name(self) -> &'static str {
        match self {
            Role::Authd => "postern-authd",
            Role::Mta => "postern-mta",
            Role::Mda => "postern-mda",
            Role::Imapd => "postern-imapd",
            Role::Pop3d => "postern-pop3d",
        }
    }
}

/// A validated configuration. Paths are absolute (relative ones in the file are taken relative
/// to the directory of the configuration file).
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub hostname: String,
    pub domains: Vec<String>,
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub users_file: PathBuf,
    pub aliases_file: PathBuf,
    pub tls: TlsConfig,
    pub listen: Vec<(ListenerName, Vec<SocketAddr>)>,
    pub relay: Option<RelayConfig>,
    /// `[dkim] keys`.
    pub dkim: Vec<DkimKeyConfig>,
    pub limits: Limits,
    pub mta: MtaSettings,
    pub pop3: Pop3Settings,
    pub imap: ImapSettings,
    pub service_users: ServiceUsers,
    pub auth: AuthSettings,
    pub supervisor: SupervisorSettings,
    pub log_level: String,
    /// What was parsed, for printing the effective configuration.
    pub raw: RawConfig,
}

impl Config {
    pub fn listen_addrs(&self, name: ListenerName) -> &[SocketAddr] {
        self.listen
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| a.as_slice())
            .unwrap_or(&[])
    }

    /// True when some listener needs a certificate (all of them offer or require TLS).
    pub fn needs_tls(&self) -> bool {
        self.listen.iter().any(|(_, addrs)| !addrs.is_empty())
    }

    /// The effective configuration as TOML, as `postern check` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.raw).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.state_dir.join("queue")
    }
    pub fn mail_dir(&self) -> PathBuf {
        self.state_dir.join("mail")
    }
    pub fn auth_socket(&self) -> PathBuf {
        self.runtime_dir.join("auth.sock")
    }
    pub fn lmtp_socket(&self) -> PathBuf {
        self.runtime_dir.join("lmtp.sock")
    }
    /// `postern queue` talks to postern-mta here (shared::proto::queue).
    pub fn queue_socket(&self) -> PathBuf {
        self.runtime_dir.join("queue.sock")
    }
    pub fn notify_socket(&self) -> PathBuf {
        self.runtime_dir.join("notify.sock")
    }
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub self_signed: bool,
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls_verify: bool,
    /// TLS from the first byte (RFC 8314 §3.3), else STARTTLS, required.
    pub implicit_tls: bool,
}

/// One DKIM signing key (its file is read by the supervisor).
#[derive(Debug, Clone)]
pub struct DkimKeyConfig {
    pub domain: String,
    pub selector: String,
    pub key: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub message_size: u64,
    pub recipients: u32,
    pub errors: u32,
    pub commands_before_mail: u32,
    pub idle_timeout: Duration,
    pub connections_per_ip: u32,
    pub connections: u32,
}

/// How postern-mta behaves (its slice carries it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MtaSettings {
    pub restrict_sender: bool,
    pub delivery: DeliveryTarget,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// `[queue] lifetime`: past it, pending recipients fail as expired.
    pub lifetime: Duration,
    /// `[queue] delay_warning`; zero never warns.
    pub delay_warning: Duration,
    pub outbound: OutboundSettings,
}

/// `[outbound]` and `[dns]`: delivery to other domains.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OutboundSettings {
    pub tls: OutboundTls,
    pub port: u16,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub final_timeout: Duration,
    pub concurrency: u32,
    pub per_destination: u32,
    /// Empty: the system resolver.
    pub nameservers: Vec<SocketAddr>,
}

/// The TLS policy towards MX hosts (`[outbound] tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundTls {
    /// STARTTLS when offered, any certificate; plain text otherwise.
    May,
    /// TLS required, certificate not verified.
    Encrypt,
    /// TLS required and the certificate verified.
    Verify,
}

/// How postern-pop3d behaves (its slice carries it). See `raw::RawPop3` for each key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pop3Settings {
    pub line_length: usize,
    pub commands_before_auth: u32,
    pub errors: u32,
    pub idle_timeout: Duration,
    pub connections_per_ip: u32,
    pub connections: u32,
    pub mark_seen: bool,
}

/// How postern-imapd limits its clients (its slice carries it; `[imap]` in the file).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ImapSettings {
    pub max_line: usize,
    pub max_depth: usize,
    pub commands_before_auth: u32,
    pub sessions_per_user: u32,
    pub idle_timeout: Duration,
}

impl Default for ImapSettings {
    fn default() -> ImapSettings {
        ImapSettings {
            max_line: 65536,
            max_depth: 32,
            commands_before_auth: 20,
            sessions_per_user: 20,
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// Where local mail goes by LMTP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeliveryTarget {
    Unix(PathBuf),
    Tcp(String),
}

#[derive(Debug, Clone)]
pub struct ServiceUsers {
    pub auth: String,
    pub mta: String,
    pub mail: String,
    pub create_missing: bool,
}

impl ServiceUsers {
    pub fn for_role(&self, role: Role) -> &str {
        match role {
            Role::Authd => &self.auth,
            Role::Mta => &self.mta,
            Role::Mda | Role::Imapd | Role::Pop3d => &self.mail,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuthSettings {
    pub cache_ttl: Duration,
    pub fail_delay: Duration,
    pub fail_delay_max: Duration,
    pub fail_window: Duration,
    pub max_failures_per_ip: u32,
    pub max_failures_per_user: u32,
}

#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    pub stop_timeout: Duration,
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
            hint: Some("pass another file with --config PATH".into()),
        }]
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text; `path` names the file in errors and anchors
/// relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Config, Vec<ConfigError>> {
    let locator = Locator::new(text);
    let error_at =
        |key: String, line: Option<usize>, message: String, hint: Option<String>| ConfigError {
            file: path.to_path_buf(),
            line,
            key,
            message,
            hint,
        };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| locator.line_of(s.start));
        vec![error_at(
            String::new(),
            line,
            format!("not valid TOML: {}", e.message().trim()),
            None,
        )]
    })?;
    // Unknown keys and type errors are all collected: a key of the wrong type is reported and
    // removed, and the rest deserialized again (bounded by the number of keys).
    let mut unknown = std::collections::BTreeSet::new();
    let mut errors: Vec<ConfigError> = Vec::new();
    let raw = loop {
        let mut track = serde_path_to_error::Track::new();
        let value = toml::Value::Table(table.clone());
        let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
        let result: Result<RawConfig, _> = serde_ignored::deserialize(tracked, |p| {
            unknown.insert(p.to_string());
        });
        match result {
            Ok(raw) => break Some(raw),
            Err(e) => {
                let key = track.path().to_string().replace('[', ".").replace(']', "");
                errors.push(error_at(
                    key.clone(),
                    locator.line_of_path(&key),
                    e.to_string(),
                    None,
                ));
                if !remove_path(&mut table, &key) || errors.len() > 100 {
                    break None;
                }
            }
        }
    };
    errors.extend(unknown.iter().map(|key| {
        error_at(
            key.clone(),
            locator.line_of_path(key),
            "unknown key".into(),
            Some(suggest_key(key)),
        )
    }));
    let Some(raw) = raw else {
        errors.sort_by_key(|e| e.line.unwrap_or(0));
        return Err(errors);
    };
    match validate(path, &locator, raw) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => {
            errors.sort_by_key(|e| e.line.unwrap_or(0));
            Err(errors)
        }
        Err(more) => {
            errors.extend(more);
            errors.sort_by_key(|e| e.line.unwrap_or(0));
            Err(errors)
        }
    }
}

/// Removes the value at a dotted path (stopping at the first array: the whole array goes).
/// False when nothing could be removed.
fn remove_path(table: &mut toml::Table, path: &str) -> bool {
    let mut segments = path.split('.').peekable();
    let mut current = table;
    while let Some(segment) = segments.next() {
        let descend = segments.peek().is_some()
            && matches!(current.get(segment), Some(toml::Value::Table(_)));
        if !descend {
            return current.remove(segment).is_some();
        }
        match current.get_mut(segment) {
            Some(toml::Value::Table(t)) => current = t,
            _ => return false,
        }
    }
    false
}

/// A hint for an unknown key: the closest known key of the same table, if any is close.
fn suggest_key(path: &str) -> String {
    let known = known_keys();
    let (parent, leaf) = path.rsplit_once('.').unwrap_or(("", path));
    let best = known
        .iter()
        .filter(|k| k.rsplit_once('.').map(|(p, _)| p).unwrap_or("") == parent)
        .map(|k| (edit_distance(leaf, k.rsplit('.').next().unwrap_or(k)), k))
        .min();
    match best {
        Some((d, k)) if d <= 3 => format!("did you mean `{k}`?"),
        _ => "see the annotated etc/postern.toml for the known keys".into(),
    }
}

/// Every key path the configuration knows, from the typed definition itself.
pub fn known_keys() -> Vec<String> {
    let full = RawConfig {
        relay: Some(raw::RawRelay::default()),
        ..RawConfig::default()
    };
    let value = toml::Value::try_from(&full).unwrap_or(toml::Value::Table(Default::default()));
    let mut keys = Vec::new();
    collect_keys("", &value, &mut keys);
    keys
}

fn collect_keys(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
    if let toml::Value::Table(table) = value {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_table() {
                out.push(path.clone());
                collect_keys(&path, v, out);
            } else {
                out.push(path);
            }
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;

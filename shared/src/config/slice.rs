//! The part of the configuration each child receives from the supervisor (ARCHITECTURE §1):
//! serialized as JSON on an inherited pipe, never the path of the whole file. Secrets (TLS key,
//! relay password) travel here so their files can stay `0600 root`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{AuthSettings, Config, Limits, Role};

/// What every child gets.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSlice {
    /// Version of the supervisor that wrote this slice.
    pub version: String,
    pub role: Role,
    pub hostname: String,
    pub domains: Vec<String>,
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub log_level: String,
    pub limits: Limits,
    /// Certificate chain and key, PEM; absent for daemons that serve no TLS.
    pub tls: Option<TlsMaterial>,
    /// authd only.
    pub auth: Option<AuthSlice>,
    /// postern-mta only, when a relay host is configured.
    pub relay: Option<RelaySlice>,
    /// postern-mta only.
    pub mta: Option<super::MtaSettings>,
    /// postern-pop3d only.
    pub pop3: Option<super::Pop3Settings>,
    /// postern-imapd only.
    #[serde(default)]
    pub imap: Option<super::ImapSettings>,
    /// postern-mta only: the DKIM signing keys.
    #[serde(default)]
    pub dkim: Vec<DkimKey>,
}

/// A DKIM signing key with its PEM text (read by the supervisor as root).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    pub key_pem: String,
}

impl std::fmt::Debug for DaemonSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonSlice")
            .field("role", &self.role)
            .field("hostname", &self.hostname)
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSlice {
    pub users_file: PathBuf,
    pub aliases_file: PathBuf,
    pub settings: AuthSettings,
    /// Peers (by uid, SO_PEERCRED) allowed on auth.sock.
    pub allowed_uids: Vec<u32>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySlice {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_verify: bool,
    /// TLS from the first byte (port 465 or `[relay] tls = "implicit"`), else STARTTLS.
    pub implicit_tls: bool,
}

impl DaemonSlice {
    /// The common part for `role`; the supervisor adds TLS, auth and relay pieces.
    pub fn common(config: &Config, role: Role) -> DaemonSlice {
        DaemonSlice {
            version: crate::VERSION.to_string(),
            role,
            hostname: config.hostname.clone(),
            domains: config.domains.clone(),
            state_dir: config.state_dir.clone(),
            runtime_dir: config.runtime_dir.clone(),
            log_level: config.log_level.clone(),
            limits: config.limits.clone(),
            tls: None,
            auth: None,
            relay: None,
            mta: None,
            pop3: None,
            dkim: Vec::new(),
            imap: None,
        }
    }
}

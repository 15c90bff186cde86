//! The configuration file as written: serde structs mirroring `postern.toml` key by key.
//! The doc comment of each field is the documentation of that key (kept in step with the
//! annotated `etc/postern.toml` by a test). No validation here: see `validate.rs`. Unknown keys
//! are not refused by serde (which would stop at the first): `config::parse` collects every one
//! of them with `serde_ignored`.

use serde::{Deserialize, Serialize};

/// The whole `postern.toml`. Defaults make a file with only `hostname` and `domains` complete.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawConfig {
    /// Name used in greetings, EHLO and `Received:` headers (a fully qualified domain name).
    pub hostname: String,
    /// The local domains: mail for them is delivered here, everything else is relayed only
    /// for authenticated submitters.
    pub domains: Vec<String>,
    /// Queue and mailboxes live below this directory (`queue/`, `mail/DOMAIN/USER/`).
    pub state_dir: String,
    /// Sockets (`auth.sock`, `lmtp.sock`, `notify.sock`) and the pid file.
    pub runtime_dir: String,
    /// Users and password hashes, Dovecot passwd-file format. Read only by authd.
    pub users_file: String,
    /// Aliases: `alias@domain: target, target`; `@domain:` is the catch-all.
    pub aliases_file: String,
    pub tls: RawTls,
    pub listen: RawListen,
    /// Optional smarthost; absent means direct MX delivery.
    pub relay: Option<RawRelay>,
    pub limits: RawLimits,
    pub submission: RawSubmission,
    pub pop3: RawPop3,
    pub imap: RawImap,
    pub queue: RawQueue,
    pub outbound: RawOutbound,
    pub dns: RawDns,
    pub dkim: RawDkim,
    pub service_users: RawServiceUsers,
    pub auth: RawAuth,
    pub supervisor: RawSupervisor,
    pub log: RawLog,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            hostname: String::new(),
            domains: Vec::new(),
            state_dir: "/var/lib/postern".into(),
            runtime_dir: "/run/postern".into(),
            users_file: "/etc/postern/users".into(),
            aliases_file: "/etc/postern/aliases".into(),
            tls: RawTls::default(),
            listen: RawListen::default(),
            relay: None,
            limits: RawLimits::default(),
            submission: RawSubmission::default(),
            pop3: RawPop3::default(),
            imap: RawImap::default(),
            queue: RawQueue::default(),
            outbound: RawOutbound::default(),
            dns: RawDns::default(),
            dkim: RawDkim::default(),
            service_users: RawServiceUsers::default(),
            auth: RawAuth::default(),
            supervisor: RawSupervisor::default(),
            log: RawLog::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawTls {
    /// Certificate chain, PEM. Read by the supervisor as root and handed to the daemons.
    pub cert: String,
    /// Private key, PEM. May stay `0600 root`.
    pub key: String,
    /// Generate a self-signed certificate for `hostname` at start when `cert`/`key` are missing.
    pub self_signed: bool,
}

impl Default for RawTls {
    fn default() -> Self {
        RawTls {
            cert: "/etc/postern/tls/cert.pem".into(),
            key: "/etc/postern/tls/key.pem".into(),
            self_signed: false,
        }
    }
}

/// Listening addresses per service, each a list of `"addr:port"`; `[]` disables the service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawListen {
    /// Transfer from other MTAs (25): STARTTLS offered, no AUTH, local domains only.
    pub smtp: Vec<String>,
    /// Submission (587): STARTTLS required before AUTH and MAIL.
    pub submission: Vec<String>,
    /// Submission over implicit TLS (465).
    pub submissions: Vec<String>,
    /// IMAP (143): STARTTLS required before LOGIN/AUTHENTICATE.
    pub imap: Vec<String>,
    /// IMAP over implicit TLS (993).
    pub imaps: Vec<String>,
    /// POP3 (110): STLS required before USER/PASS/AUTH. Off by default.
    pub pop3: Vec<String>,
    /// POP3 over implicit TLS (995). Off by default.
    pub pop3s: Vec<String>,
}

fn both(port: u16) -> Vec<String> {
    vec![format!("0.0.0.0:{port}"), format!("[::]:{port}")]
}

impl Default for RawListen {
    fn default() -> Self {
        RawListen {
            smtp: both(25),
            submission: both(587),
            submissions: both(465),
            imap: both(143),
            imaps: both(993),
            pop3: Vec::new(),
            pop3s: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawRelay {
    /// `host:port`; port 465 means implicit TLS, any other port STARTTLS (required).
    pub host: String,
    /// User name for AUTH at the relay; empty means no AUTH.
    pub username: String,
    /// File holding the relay password (first line). Read by the supervisor as root.
    pub password_file: String,
    /// Verify the relay's certificate.
    pub tls_verify: bool,
    /// "auto" (implicit TLS on port 465, STARTTLS on any other), "implicit" or "starttls":
    /// for relays that serve implicit TLS on another port (and for tests).
    pub tls: String,
}

impl Default for RawRelay {
    fn default() -> Self {
        RawRelay {
            host: String::new(),
            username: String::new(),
            password_file: String::new(),
            tls_verify: true,
            tls: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawLimits {
    /// Largest message accepted, in bytes (announced with SIZE, RFC 1870).
    pub message_size: u64,
    /// Recipients per message; more get `452 4.5.3` (RFC 5321 §4.5.3.1.10).
    pub recipients: u32,
    /// Bad commands in one session before it is closed with `421`.
    pub errors: u32,
    /// Commands before MAIL FROM (or between transactions) before the session is closed.
    pub commands_before_mail: u32,
    /// How long a client may stay silent (RFC 5321 §4.5.3.2 asks for at least 5 minutes).
    pub idle_timeout: String,
    /// Simultaneous SMTP connections from one IP address.
    pub connections_per_ip: u32,
    /// Simultaneous SMTP connections in total.
    pub connections: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            message_size: 25 * 1024 * 1024,
            recipients: 1000,
            errors: 20,
            commands_before_mail: 100,
            idle_timeout: "5m".into(),
            connections_per_ip: 20,
            connections: 500,
        }
    }
}

/// Submission (587, 465).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawSubmission {
    /// A submitter may use as MAIL FROM only its own address or one of its aliases
    /// (`553 5.7.1` otherwise), like Postfix's reject_sender_login_mismatch.
    pub restrict_sender: bool,
}

impl Default for RawSubmission {
    fn default() -> Self {
        RawSubmission {
            restrict_sender: true,
        }
    }
}

/// postern-pop3d (110 with STLS, 995): its own limits, since a POP3 client behaves nothing like
/// an SMTP peer (RFC 1939 asks for a 10-minute idle timer, SMTP for 5).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawPop3 {
    /// Longest command line, CRLF included; longer lines get `-ERR` and are dropped.
    /// RFC 2449 §4 makes 255 octets the least a server accepts.
    pub line_length: u32,
    /// Commands before a successful login (CAPA, STLS, USER ...) before the session is closed.
    pub commands_before_auth: u32,
    /// Failed commands (`-ERR` replies) in one session before it is closed.
    pub errors: u32,
    /// How long a client may stay silent; RFC 1939 §3 asks for at least 10 minutes.
    pub idle_timeout: String,
    /// Simultaneous POP3 connections from one IP address.
    pub connections_per_ip: u32,
    /// Simultaneous POP3 connections in total.
    pub connections: u32,
    /// Retrieved messages (RETR, not TOP) are marked \Seen for IMAP when the session ends
    /// with QUIT.
    pub mark_seen: bool,
}

impl Default for RawPop3 {
    fn default() -> Self {
        RawPop3 {
            line_length: 1024,
            commands_before_auth: 30,
            errors: 20,
            idle_timeout: "10m".into(),
            connections_per_ip: 20,
            connections: 500,
            mark_seen: true,
        }
    }
}

/// postern-imapd (143, 993). The literal limit and APPENDLIMIT are `limits.message_size`;
/// bad commands before `* BYE` are `limits.errors`; connections per address
/// `limits.connections_per_ip`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawImap {
    /// Longest command line, literals not counted (RFC 2683 §3.2.1.5: at least 8000).
    pub max_line: u32,
    /// Nested parentheses and NOT/OR in one command.
    pub max_depth: u32,
    /// Commands a client may send before logging in; more get `* BYE`.
    pub commands_before_auth: u32,
    /// Simultaneous sessions of one user.
    pub sessions_per_user: u32,
    /// How long a logged-in client (or one in IDLE) may stay silent; at least 30 minutes
    /// (RFC 9051 §5.4, RFC 2177 §3).
    pub idle_timeout: String,
}

impl Default for RawImap {
    fn default() -> Self {
        RawImap {
            max_line: 65536,
            max_depth: 32,
            commands_before_auth: 20,
            sessions_per_user: 20,
            idle_timeout: "30m".into(),
        }
    }
}

/// The queue of postern-mta.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawQueue {
    /// Where local mail is handed over by LMTP: empty for Postern's own MDA, else
    /// "unix:/path/to/socket" or "host:port" (e.g. a Dovecot LMTP).
    pub delivery: String,
    /// First delay before retrying a delivery that failed temporarily; doubles up to
    /// `retry_max`.
    pub retry_min: String,
    pub retry_max: String,
    /// How long a message may stay queued; past it, its pending recipients fail with an
    /// "expired" bounce (RFC 5321 §4.5.4.1 suggests 4-5 days).
    pub lifetime: String,
    /// A sender who asked for it (NOTIFY=DELAY, RFC 3461 §4.1) is told after this long that
    /// the message is still waiting; "0s" never warns.
    pub delay_warning: String,
}

impl Default for RawQueue {
    fn default() -> Self {
        RawQueue {
            delivery: String::new(),
            retry_min: "1m".into(),
            retry_max: "1h".into(),
            lifetime: "5d".into(),
            delay_warning: "4h".into(),
        }
    }
}

/// Delivery to other domains over SMTP (direct MX delivery, or the `[relay]` host).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawOutbound {
    /// STARTTLS towards MX hosts: "may" (opportunistic, any certificate; plain text when not
    /// offered), "encrypt" (TLS required, certificate not checked), "verify" (TLS required,
    /// certificate verified against the system's CA store).
    pub tls: String,
    /// Port of MX hosts. 25 everywhere on the Internet; another value is a test hook.
    pub port: u16,
    /// Longest wait for a TCP connection to a mail server.
    pub connect_timeout: String,
    /// Longest wait for the greeting and for the reply to EHLO, MAIL, RCPT, DATA (RFC 5321
    /// §4.5.3.2 asks for at least 5 minutes, 2 for DATA).
    pub command_timeout: String,
    /// Longest wait to send the message itself (RFC 5321 §4.5.3.2: 3 minutes per block).
    pub data_timeout: String,
    /// Longest wait for the reply after the final dot (RFC 5321 §4.5.3.2: 10 minutes).
    pub final_timeout: String,
    /// Outbound SMTP connections at once, in total.
    pub concurrency: u32,
    /// Outbound SMTP connections at once to one destination (domain, or the relay).
    pub per_destination: u32,
}

impl Default for RawOutbound {
    fn default() -> Self {
        RawOutbound {
            tls: "may".into(),
            port: 25,
            connect_timeout: "30s".into(),
            command_timeout: "5m".into(),
            data_timeout: "3m".into(),
            final_timeout: "10m".into(),
            concurrency: 50,
            per_destination: 5,
        }
    }
}

/// Name resolution for outbound delivery.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawDns {
    /// Name servers to ask ("ip:port", UDP and TCP); empty uses the system's
    /// (/etc/resolv.conf). A test hook, or for a local validating resolver.
    pub nameservers: Vec<String>,
}

/// DKIM signing (RFC 6376) of mail submitted by authenticated users.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawDkim {
    /// Signing keys: `{ domain = "example.org", selector = "s1", key = "/etc/postern/dkim/
    /// example.org.s1.pem" }`. Mail submitted with a sender in `domain` is signed (relaxed/
    /// relaxed) with that key: RSA (PKCS#1 or PKCS#8 PEM, RSA-SHA256) or Ed25519 (PKCS#8 PEM).
    /// Key files are read by the supervisor as root and may stay `0600 root`.
    pub keys: Vec<RawDkimKey>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawDkimKey {
    pub domain: String,
    pub selector: String,
    pub key: String,
}

/// System users the daemons run as when `postern serve` starts as root.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawServiceUsers {
    /// authd: the only user that can read the users file.
    pub auth: String,
    /// postern-mta: SMTP and the queue.
    pub mta: String,
    /// postern-mda, postern-imapd, postern-pop3d: the mailboxes.
    pub mail: String,
    /// Create missing service users with `useradd --system` at start (development and tests;
    /// packages create them at install).
    pub create_missing: bool,
}

impl Default for RawServiceUsers {
    fn default() -> Self {
        RawServiceUsers {
            auth: "postern-auth".into(),
            mta: "postern-mta".into(),
            mail: "postern-mail".into(),
            create_missing: false,
        }
    }
}

/// authd: cache and brute-force throttle. Durations are written like "500ms", "30s", "15m", "1h".
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawAuth {
    /// How long a successful verification is remembered (like Dovecot's auth_cache_ttl);
    /// "0s" disables the cache. A changed password invalidates its entry at once.
    pub cache_ttl: String,
    /// Delay after the first failed login from an address or for a user; doubles with each
    /// further failure in `fail_window`.
    pub fail_delay: String,
    /// Upper bound of that delay.
    pub fail_delay_max: String,
    /// Window over which failures are counted.
    pub fail_window: String,
    /// Failures from one remote IP within the window after which logins from it are refused
    /// with a temporary failure until the window passes.
    pub max_failures_per_ip: u32,
    /// Failures for one user name within the window after which its logins are refused with a
    /// temporary failure until the window passes.
    pub max_failures_per_user: u32,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            cache_ttl: "1h".into(),
            fail_delay: "1s".into(),
            fail_delay_max: "15s".into(),
            fail_window: "15m".into(),
            max_failures_per_ip: 20,
            max_failures_per_user: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawSupervisor {
    /// First delay before restarting a child that died; doubles on each crash in a row.
    pub restart_delay: String,
    /// Upper bound of the restart delay.
    pub restart_delay_max: String,
    /// How long sessions may take to finish after SIGTERM before children are killed.
    pub stop_timeout: String,
}

impl Default for RawSupervisor {
    fn default() -> Self {
        RawSupervisor {
            restart_delay: "1s".into(),
            restart_delay_max: "60s".into(),
            stop_timeout: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawLog {
    /// "error", "warn", "info", "debug" or "trace"; the environment variable POSTERN_LOG
    /// (tracing filter syntax) overrides it.
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
        }
    }
}

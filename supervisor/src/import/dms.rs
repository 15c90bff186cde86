//! docker-mailserver's configuration files, parsed into what Postern can take: accounts
//! (`postfix-accounts.cf`), aliases (`postfix-virtual.cf`) and relay settings
//! (`postfix-relaymap.cf`, `postfix-sasl-password.cf`). Every line that cannot be taken comes
//! back with its number and the reason. Pure text in, values out: no file I/O here.
//!
//! The formats, as docker-mailserver's `setup` writes and its start scripts read them:
//! - accounts: `user@domain|{SCHEME}hash[|dovecot user attributes]`; `#` comments and blank
//!   lines are skipped, CR line ends tolerated.
//! - virtual: `alias target[,target...]`, alias and targets separated by white space, targets
//!   by commas (older files also have `, ` and a trailing comma). The alias is `user@domain`,
//!   `@domain` (catch-all) or a bare `user` (Postfix: the server's own hostname only).
//! - relaymap: `@domain [host]:port` (sender domain to relay host), `@domain` alone (that
//!   domain does not use the relay); sasl-password: `[host]:port user:password` or
//!   `@domain user:password`.

use shared::passwd::{PasswdError, Scheme, StoredPassword};

/// One line that was not taken (or taken with a loss), with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: &'static str,
    /// 1-based; 0 for the file as a whole.
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub line: usize,
    /// As written in the file.
    pub address: String,
    pub password: StoredPassword,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub line: usize,
    /// `user@domain` or `@domain`, as written.
    pub alias: String,
    pub targets: Vec<String>,
}

/// What parsing a file gives: values, lines not taken, lines taken with a loss.
#[derive(Debug)]
pub struct Parsed<T> {
    pub items: Vec<T>,
    pub skipped: Vec<Problem>,
    pub notes: Vec<Problem>,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            items: Vec::new(),
            skipped: Vec::new(),
            notes: Vec::new(),
        }
    }
}

pub const ACCOUNTS: &str = "postfix-accounts.cf";
pub const VIRTUAL: &str = "postfix-virtual.cf";
pub const RELAYMAP: &str = "postfix-relaymap.cf";
pub const SASL_PASSWORD: &str = "postfix-sasl-password.cf";

/// Data lines: (1-based number, trimmed text), without comments, blank lines and CRs.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r').trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn problem(file: &'static str, line: usize, message: String) -> Problem {
    Problem {
        file,
        line,
        message,
    }
}

/// Why `address` cannot be a Postern address (`user@domain`; the users and aliases files
/// separate fields with `:`, `,` and white space), or `None`.
pub fn address_problem(address: &str) -> Option<String> {
    let Some((local, domain)) = address.split_once('@') else {
        return Some(format!("{address:?} has no domain (not user@domain)"));
    };
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Some(format!("{address:?} is not user@domain"));
    }
    if address.contains([':', ',']) || address.chars().any(|c| c.is_whitespace()) {
        return Some(format!("{address:?} contains ':', ',' or white space"));
    }
    None
}

/// The lower-cased address: the key under which duplicates are found.
fn fold(address: &str) -> String {
    address.to_lowercase()
}

/// Parses `postfix-accounts.cf`.
pub fn parse_accounts(text: &str) -> Parsed<Account> {
    let mut out = Parsed::<Account>::default();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (line, content) in data_lines(text) {
        let mut fields = content.splitn(3, '|');
        let address = fields.next().unwrap_or("").trim();
        let Some(password) = fields.next().map(str::trim) else {
            let message = "no '|' between address and password hash".to_string();
            out.skipped.push(problem(ACCOUNTS, line, message));
            continue;
        };
        if let Some(why) = address_problem(address) {
            out.skipped.push(problem(ACCOUNTS, line, why));
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(a, _)| *a == fold(address)) {
            let message = format!("{address} repeats line {first}; the first is kept");
            out.skipped.push(problem(ACCOUNTS, line, message));
            continue;
        }
        let password = match StoredPassword::parse(password) {
            Ok(p) => p,
            Err(e) => {
                out.skipped
                    .push(problem(ACCOUNTS, line, password_problem(address, &e)));
                continue;
            }
        };
        if password.scheme() == Scheme::Plain {
            let message = format!(
                "{address} has a cleartext {{PLAIN}} password; hash it with `postern user passwd {address}`"
            );
            out.notes.push(problem(ACCOUNTS, line, message));
        }
        if let Some(extra) = fields.next().map(str::trim).filter(|e| !e.is_empty()) {
            let message = format!(
                "{address}: Dovecot user attributes {extra:?} are not imported (Postern has \
                 no per-user overrides)"
            );
            out.notes.push(problem(ACCOUNTS, line, message));
        }
        seen.push((fold(address), line));
        out.items.push(Account {
            line,
            address: address.to_string(),
            password,
        });
    }
    out
}

fn password_problem(address: &str, e: &PasswdError) -> String {
    let fix = format!("give the user a new password with `postern user add {address}`");
    match e {
        PasswdError::UnknownScheme(scheme) => format!(
            "{address}: password scheme {{{scheme}}} is not one Postern verifies \
             (SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ARGON2ID, ARGON2I, PLAIN); {fix}"
        ),
        PasswdError::MissingScheme => {
            format!("{address}: the password hash does not start with {{SCHEME}}; {fix}")
        }
        other => format!("{address}: {other}; {fix}"),
    }
}

/// Parses `postfix-virtual.cf`.
pub fn parse_virtual(text: &str) -> Parsed<Alias> {
    let mut out = Parsed::<Alias>::default();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (line, content) in data_lines(text) {
        let (alias, rest) = content
            .split_once(char::is_whitespace)
            .unwrap_or((content, ""));
        if let Some(why) = alias_problem(alias) {
            out.skipped.push(problem(VIRTUAL, line, why));
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(a, _)| *a == fold(alias)) {
            let message =
                format!("{alias} repeats line {first}; Postfix uses the first, so does the import");
            out.skipped.push(problem(VIRTUAL, line, message));
            continue;
        }
        let mut targets = Vec::new();
        for target in rest.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
            match address_problem(target) {
                None => targets.push(target.to_string()),
                Some(why) => out.notes.push(problem(
                    VIRTUAL,
                    line,
                    format!("{alias}: target left out: {why}"),
                )),
            }
        }
        if targets.is_empty() {
            let message = format!("{alias} has no target Postern can deliver to");
            out.skipped.push(problem(VIRTUAL, line, message));
            continue;
        }
        seen.push((fold(alias), line));
        out.items.push(Alias {
            line,
            alias: alias.to_string(),
            targets,
        });
    }
    out
}

/// Why the left side of a virtual line cannot be a Postern alias, or `None`.
fn alias_problem(alias: &str) -> Option<String> {
    if let Some(domain) = alias.strip_prefix('@') {
        return address_problem(&format!("x@{domain}"))
            .map(|_| format!("catch-all {alias:?} is not @domain"));
    }
    if !alias.contains('@') {
        return Some(format!(
            "{alias:?} has no domain: Postfix applies a bare name to the server's own \
             hostname only; write it as {alias}@DOMAIN for each domain it should cover"
        ));
    }
    address_problem(alias)
}

/// One relay destination from `postfix-relaymap.cf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRoute {
    pub line: usize,
    /// `@domain` or `user@domain`.
    pub sender: String,
    /// `None`: this sender does not use a relay.
    pub relay: Option<String>,
}

/// Parses `postfix-relaymap.cf` (routes by sender).
pub fn parse_relaymap(text: &str) -> Vec<RelayRoute> {
    data_lines(text)
        .map(|(line, content)| {
            let mut words = content.split_whitespace();
            RelayRoute {
                line,
                sender: words.next().unwrap_or("").to_string(),
                relay: words.next().map(str::to_string),
            }
        })
        .collect()
}

/// Postfix's `[host]:port` (brackets: no MX lookup) as Postern's `host:port`; a missing port is
/// Postfix's default, 25.
pub fn relay_host_port(postfix: &str) -> String {
    let (host, port) = match postfix.rsplit_once(':') {
        Some((h, p)) if h.ends_with(']') || !h.contains(':') => (h, p),
        _ => (postfix, "25"),
    };
    format!(
        "{}:{port}",
        host.trim_start_matches('[').trim_end_matches(']')
    )
}

/// The user name (never the password) and line of the `postfix-sasl-password.cf` entry for
/// `relay` (`[host]:port` as in the relaymap), or for the first sender entry.
pub fn relay_username(text: &str, relay: &str) -> Option<(String, usize)> {
    let entries: Vec<(usize, &str, &str)> = data_lines(text)
        .filter_map(|(line, content)| {
            let (key, value) = content.split_once(char::is_whitespace)?;
            let user = value
                .trim()
                .split_once(':')
                .map_or(value.trim(), |(u, _)| u);
            Some((line, key, user))
        })
        .collect();
    let wanted = relay_host_port(relay);
    entries
        .iter()
        .find(|(_, key, _)| !key.contains('@') && relay_host_port(key) == wanted)
        .or_else(|| entries.iter().find(|(_, key, _)| key.starts_with('@')))
        .map(|(line, _, user)| (user.to_string(), *line))
}

#[cfg(test)]
#[path = "dms_tests.rs"]
mod tests;

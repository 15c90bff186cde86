//! Admin verbs on the users and aliases files: `postern user add|passwd|del|list` and
//! `postern alias add|del|list`. Files are rewritten atomically under a lock
//! (`shared::users::edit_file`); the result is parsed before it replaces the old file, so an
//! edit can never leave a file authd would refuse. Passwords come from a prompt or stdin,
//! never from argv.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context as _, bail};
use nix::unistd::Uid;
use shared::config::Config;
use shared::passwd::{Scheme, hash_password};
use shared::users::{EditError, edit_file, parse_aliases, parse_users};

/// Mode of a users file we create: authd's group may read it, nobody else (ARCHITECTURE §4).
pub(crate) const USERS_MODE: u32 = 0o640;
pub(crate) const ALIASES_MODE: u32 = 0o644;

/// The address part of a users or aliases line, lower-cased; `None` for comments and blanks.
pub(crate) fn line_key(line: &str) -> Option<String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    t.split(':').next().map(|k| k.trim().to_lowercase())
}

/// `user@domain` with a local domain, lower-cased domain.
fn check_address(config: &Config, address: &str) -> anyhow::Result<String> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        bail!("{address:?} is not user@domain");
    };
    if local.is_empty() || local.contains([':', ' ', '\t', ',']) || local.contains('@') {
        bail!("{address:?}: the user part must be non-empty, without ':', ',', '@' or spaces");
    }
    let domain = domain.to_ascii_lowercase();
    if !config.domains.contains(&domain) {
        bail!(
            "{domain:?} is not a local domain of {} (domains = {:?})",
            config.file.display(),
            config.domains
        );
    }
    Ok(format!("{local}@{domain}"))
}

/// Owner for a users file created as root: root and authd's group (the service users are
/// created first when `create_missing` is set).
pub(crate) fn users_owner(config: &Config) -> Option<(u32, u32)> {
    if !Uid::effective().is_root() {
        return None;
    }
    if let Err(e) = crate::prepare::ensure_service_users(config) {
        eprintln!("warning: {e}");
    }
    let user = nix::unistd::User::from_name(&config.service_users.auth)
        .ok()
        .flatten()?;
    Some((0, user.gid.as_raw()))
}

/// Checks the new users text parses cleanly before it replaces the file.
pub(crate) fn validated_users(path: &Path, lines: Vec<String>) -> Result<Vec<String>, EditError> {
    let parsed = parse_users(path, &(lines.join("\n") + "\n"));
    if let Some(e) = parsed.errors.first() {
        return Err(EditError::Invalid(format!(
            "the edit would leave an invalid file: {e}"
        )));
    }
    Ok(lines)
}

pub(crate) fn validated_aliases(path: &Path, lines: Vec<String>) -> Result<Vec<String>, EditError> {
    let parsed = parse_aliases(path, &(lines.join("\n") + "\n"));
    if let Some(e) = parsed.errors.first() {
        return Err(EditError::Invalid(format!(
            "the edit would leave an invalid file: {e}"
        )));
    }
    Ok(lines)
}

/// I/O errors name the path already; refusals get it in front.
fn edit_error(path: &Path, e: EditError) -> anyhow::Error {
    match e {
        EditError::Io(io) => anyhow::anyhow!("{io}"),
        EditError::Invalid(message) => anyhow::anyhow!("{}: {message}", path.display()),
    }
}

/// Reads a new password: twice from the terminal without echo, or one line from stdin.
pub fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = prompt_hidden("New password: ")?;
        let second = prompt_hidden("Retype new password: ")?;
        if first != second {
            bail!("the passwords do not match");
        }
        check_password(first)
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        check_password(line.trim_end_matches(['\n', '\r']).to_string())
    }
}

fn check_password(pw: String) -> anyhow::Result<String> {
    if pw.is_empty() {
        bail!("empty password");
    }
    if pw.contains(['\0', '\n', '\r']) {
        bail!("the password contains a NUL or line break");
    }
    Ok(pw)
}

fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let saved = tcgetattr(&stdin).context("terminal")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("terminal")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    writeln!(stderr)?;
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn user_add(config: &Config, address: &str, scheme: Scheme) -> anyhow::Result<()> {
    let address = check_address(config, address)?;
    let password = read_password()?;
    let stored = hash_password(scheme, password.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = address.to_lowercase();
    let path = &config.users_file;
    edit_file(path, USERS_MODE, users_owner(config), |mut lines| {
        if lines
            .iter()
            .any(|l| line_key(l).as_deref() == Some(key.as_str()))
        {
            return Err(EditError::Invalid(format!(
                "{address} already exists; change its password with `postern user passwd {address}`"
            )));
        }
        lines.push(format!("{address}:{}", stored.to_field()));
        validated_users(path, lines)
    })
    .map_err(|e| edit_error(path, e))?;
    println!(
        "added {address} ({}); authd picks it up within a second",
        scheme.name()
    );
    Ok(())
}

pub fn user_passwd(config: &Config, address: &str, scheme: Scheme) -> anyhow::Result<()> {
    let key = address.to_lowercase();
    let path = &config.users_file;
    let exists = std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .any(|l| line_key(l).as_deref() == Some(key.as_str()))
        })
        .unwrap_or(false);
    if !exists {
        bail!("{address}: no such user in {}", path.display());
    }
    let password = read_password()?;
    let stored = hash_password(scheme, password.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    edit_file(path, USERS_MODE, users_owner(config), |lines| {
        let mut found = false;
        let lines = lines
            .into_iter()
            .map(|l| {
                if line_key(&l).as_deref() != Some(key.as_str()) {
                    return l;
                }
                found = true;
                // Keep the address as written and Dovecot's extra fields after the password.
                let mut fields: Vec<&str> = l.trim().splitn(3, ':').collect();
                let field = stored.to_field();
                if fields.len() >= 2 {
                    fields[1] = &field;
                }
                fields.join(":")
            })
            .collect();
        if !found {
            return Err(EditError::Invalid(format!("{address}: no such user")));
        }
        validated_users(path, lines)
    })
    .map_err(|e| edit_error(path, e))?;
    println!("password of {address} changed");
    Ok(())
}

pub fn user_del(config: &Config, address: &str) -> anyhow::Result<()> {
    let key = address.to_lowercase();
    let path = &config.users_file;
    edit_file(path, USERS_MODE, users_owner(config), |lines| {
        let before = lines.len();
        let lines: Vec<String> = lines
            .into_iter()
            .filter(|l| line_key(l).as_deref() != Some(key.as_str()))
            .collect();
        if lines.len() == before {
            return Err(EditError::Invalid(format!("{address}: no such user")));
        }
        validated_users(path, lines)
    })
    .map_err(|e| edit_error(path, e))?;
    println!(
        "deleted {address}; its mailbox under {} is kept (remove it by hand if wanted)",
        config.mail_dir().display()
    );
    Ok(())
}

pub fn user_list(config: &Config, domain: Option<&str>) -> anyhow::Result<()> {
    let path = &config.users_file;
    let text = read_optional(path)?;
    let parsed = parse_users(path, &text);
    for e in &parsed.errors {
        eprintln!("error: {e}");
    }
    let domain = domain.map(str::to_ascii_lowercase);
    for entry in parsed.value.iter() {
        let in_domain = domain.as_deref().is_none_or(|d| {
            entry
                .address
                .rsplit_once('@')
                .is_some_and(|(_, ed)| ed == d)
        });
        if in_domain {
            println!("{}\t{}", entry.address, entry.password.scheme().name());
        }
    }
    Ok(())
}

/// A file that may not exist yet (it reads as empty).
fn read_optional(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => bail!("{}: {e}", path.display()),
    }
}

/// `alias@domain` (local) or `@domain` (catch-all).
fn check_alias(config: &Config, alias: &str) -> anyhow::Result<String> {
    if let Some(domain) = alias.strip_prefix('@') {
        let domain = domain.to_ascii_lowercase();
        if !config.domains.contains(&domain) {
            bail!("{domain:?} is not a local domain");
        }
        return Ok(format!("@{domain}"));
    }
    check_address(config, alias)
}

pub fn alias_add(config: &Config, alias: &str, targets: &[String]) -> anyhow::Result<()> {
    let alias = check_alias(config, alias)?;
    for t in targets {
        if !t.contains('@') || t.contains([',', ':', ' ']) {
            bail!("target {t:?} is not an address");
        }
    }
    let key = alias.to_lowercase();
    let path = &config.aliases_file;
    edit_file(path, ALIASES_MODE, None, |mut lines| {
        match lines
            .iter_mut()
            .find(|l| line_key(l).as_deref() == Some(key.as_str()))
        {
            Some(line) => {
                let (head, rest) = line.split_once(':').unwrap_or((line.as_str(), ""));
                let mut have: Vec<String> = split_targets(rest);
                for t in targets {
                    if !have.iter().any(|h| h.eq_ignore_ascii_case(t)) {
                        have.push(t.clone());
                    }
                }
                *line = format!("{}: {}", head.trim(), have.join(", "));
            }
            None => lines.push(format!("{alias}: {}", targets.join(", "))),
        }
        validated_aliases(path, lines)
    })
    .map_err(|e| edit_error(path, e))?;
    println!("{alias} -> {}", targets.join(", "));
    Ok(())
}

pub(crate) fn split_targets(text: &str) -> Vec<String> {
    text.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn alias_del(config: &Config, alias: &str, targets: &[String]) -> anyhow::Result<()> {
    let key = alias.to_lowercase();
    let path = &config.aliases_file;
    edit_file(path, ALIASES_MODE, None, |lines| {
        let mut found = false;
        let mut out = Vec::new();
        for line in lines {
            if line_key(&line).as_deref() != Some(key.as_str()) {
                out.push(line);
                continue;
            }
            found = true;
            if targets.is_empty() {
                continue;
            }
            let (head, rest) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let left: Vec<String> = split_targets(rest)
                .into_iter()
                .filter(|t| !targets.iter().any(|d| d.eq_ignore_ascii_case(t)))
                .collect();
            if !left.is_empty() {
                out.push(format!("{}: {}", head.trim(), left.join(", ")));
            }
        }
        if !found {
            return Err(EditError::Invalid(format!("{alias}: no such alias")));
        }
        validated_aliases(path, out)
    })
    .map_err(|e| edit_error(path, e))?;
    println!("updated {alias}");
    Ok(())
}

pub fn alias_list(config: &Config) -> anyhow::Result<()> {
    let path = &config.aliases_file;
    let text = read_optional(path)?;
    let parsed = parse_aliases(path, &text);
    for e in &parsed.errors {
        eprintln!("error: {e}");
    }
    for (alias, targets) in parsed.value.entries() {
        println!("{alias}: {}", targets.join(", "));
    }
    Ok(())
}

//! `postern import dms DIR [--dry-run]`: moves docker-mailserver's accounts and aliases into
//! Postern's users and aliases files (merged into what is there, written atomically under the
//! admin verbs' lock), and says what it could not take: every refused line with its number and
//! reason, relay settings as the `[relay]` lines to write, and the files it does not read.
//! The configuration file itself is never edited.

mod dms;
pub mod maildir;

use std::path::Path;

use anyhow::{Context as _, bail};
use shared::config::Config;
use shared::users::{EditError, edit_file};

use crate::admin::{ALIASES_MODE, USERS_MODE, line_key, users_owner};
use dms::{Account, Alias, Problem};

/// Whether the files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Yes,
    /// `--dry-run`: report what would change.
    DryRun,
}

/// How the import went, for the exit status.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every line was taken.
    Complete,
    /// Some lines were not taken (each was reported).
    Partial,
}

/// What the import did or would do.
#[derive(Debug, Default)]
struct Report {
    users_added: Vec<String>,
    users_present: usize,
    aliases_added: Vec<String>,
    aliases_extended: Vec<String>,
    skipped: Vec<Problem>,
    notes: Vec<Problem>,
    advice: Vec<String>,
}

/// docker-mailserver files this import does not read, and why.
const NOT_READ: [(&str, &str); 9] = [
    (
        "postfix-regexp.cf",
        "regular-expression aliases: Postern has exact aliases and @domain catch-alls only",
    ),
    (
        "postfix-aliases.cf",
        "local system aliases (root, postmaster on the host): not Postern mailboxes",
    ),
    ("dovecot-quotas.cf", "per-user quotas: Postern has none yet"),
    (
        "dovecot-masters.cf",
        "Dovecot master users: Postern has none",
    ),
    (
        "postfix-send-access.cf",
        "per-sender sending restrictions: not supported",
    ),
    (
        "postfix-receive-access.cf",
        "per-recipient receiving restrictions: not supported",
    ),
    (
        "postfix-main.cf",
        "Postfix settings: see postern.toml(5) for Postern's own",
    ),
    (
        "dovecot.cf",
        "Dovecot settings: see postern.toml(5) for Postern's own",
    ),
    (
        "opendkim",
        "DKIM keys: Postern does not sign yet; keep the keys",
    ),
];

pub fn dms(config: &Config, dir: &Path, write: Write) -> anyhow::Result<Outcome> {
    if !dir.is_dir() {
        bail!(
            "{}: not a directory (give docker-mailserver's config/ directory)",
            dir.display()
        );
    }
    let accounts_text = read_optional(&dir.join(dms::ACCOUNTS))?;
    let virtual_text = read_optional(&dir.join(dms::VIRTUAL))?;
    if accounts_text.is_none() && virtual_text.is_none() {
        bail!(
            "{}: neither {} nor {} is there; is it docker-mailserver's config/ directory?",
            dir.display(),
            dms::ACCOUNTS,
            dms::VIRTUAL
        );
    }
    let mut report = Report::default();
    let accounts = take(
        &mut report,
        dms::parse_accounts(&accounts_text.unwrap_or_default()),
    );
    let aliases = take(
        &mut report,
        dms::parse_virtual(&virtual_text.unwrap_or_default()),
    );
    advise_domains(config, &accounts, &aliases, &mut report);
    advise_relay(dir, &mut report)?;
    for (name, why) in NOT_READ {
        if dir.join(name).exists() {
            report.advice.push(format!("{name} not read: {why}"));
        }
    }
    if !accounts.is_empty() {
        import_users(config, &accounts, write, &mut report)?;
    }
    if !aliases.is_empty() {
        import_aliases(config, &aliases, write, &mut report)?;
    }
    print_report(config, dir, write, &report);
    Ok(if report.skipped.is_empty() {
        Outcome::Complete
    } else {
        Outcome::Partial
    })
}

fn take<T>(report: &mut Report, parsed: dms::Parsed<T>) -> Vec<T> {
    report.skipped.extend(parsed.skipped);
    report.notes.extend(parsed.notes);
    parsed.items
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

/// Domains the imported addresses use that `domains` does not list: mail for them would be
/// refused until they are added.
fn advise_domains(config: &Config, accounts: &[Account], aliases: &[Alias], report: &mut Report) {
    let mut missing: Vec<String> = accounts
        .iter()
        .map(|a| a.address.as_str())
        .chain(aliases.iter().map(|a| a.alias.as_str()))
        .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
        .filter(|d| !config.domains.contains(d))
        .collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        let mut all = config.domains.clone();
        all.extend(missing.iter().cloned());
        report.advice.push(format!(
            "domains {missing:?} are not local domains in {}: mail for them is refused until \
             you set domains = {all:?}",
            config.file.display()
        ));
    }
}

/// The `[relay]` section that matches the relay map, or why none can.
fn advise_relay(dir: &Path, report: &mut Report) -> anyhow::Result<()> {
    let Some(map) = read_optional(&dir.join(dms::RELAYMAP))? else {
        return Ok(());
    };
    let routes = dms::parse_relaymap(&map);
    let mut hosts: Vec<&str> = routes.iter().filter_map(|r| r.relay.as_deref()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let sender_specific: Vec<String> = routes
        .iter()
        .filter(|r| r.relay.is_none() || hosts.len() > 1)
        .map(|r| format!("{}:{} ({})", dms::RELAYMAP, r.line, r.sender))
        .collect();
    if !sender_specific.is_empty() {
        report.advice.push(format!(
            "relay: Postern sends all outgoing mail through one relay host or none; the \
             sender-dependent routes {} cannot be kept",
            sender_specific.join(", ")
        ));
    }
    let Some(host) = hosts.first() else {
        return Ok(());
    };
    let mut section = format!("[relay]\nhost = \"{}\"", dms::relay_host_port(host));
    let sasl = read_optional(&dir.join(dms::SASL_PASSWORD))?.unwrap_or_default();
    if let Some((user, line)) = dms::relay_username(&sasl, host) {
        section.push_str(&format!(
            "\nusername = \"{user}\"\npassword_file = \"/etc/postern/relay-password\"   \
             # the password from {}:{line}, alone on the first line, chmod 0600",
            dms::SASL_PASSWORD
        ));
    }
    report.advice.push(format!(
        "relay: add to postern.toml (465 means implicit TLS, other ports STARTTLS):\n{section}"
    ));
    Ok(())
}

/// Adds the accounts that are not in the users file yet; one already there is left alone.
fn merge_users(lines: &mut Vec<String>, accounts: &[Account], report: &mut Report) {
    for account in accounts {
        let key = account.address.to_lowercase();
        let field = account.password.to_field();
        let existing = lines
            .iter()
            .find(|l| line_key(l).as_deref() == Some(key.as_str()));
        match existing {
            Some(line) if line.trim().split(':').nth(1) == Some(field.as_str()) => {
                report.users_present += 1;
            }
            Some(_) => report.skipped.push(Problem {
                file: dms::ACCOUNTS,
                line: account.line,
                message: format!(
                    "{} is already in the users file with another password; the existing \
                     line is kept",
                    account.address
                ),
            }),
            None => {
                lines.push(format!("{}:{field}", account.address));
                report.users_added.push(account.address.clone());
            }
        }
    }
}

fn import_users(
    config: &Config,
    accounts: &[Account],
    write: Write,
    report: &mut Report,
) -> anyhow::Result<()> {
    let path = &config.users_file;
    let validate = |lines: Vec<String>| crate::admin::validated_users(path, lines);
    if write == Write::DryRun {
        let mut lines = current_lines(path)?;
        merge_users(&mut lines, accounts, report);
        return validate(lines).map(drop).map_err(|e| edit_error(path, e));
    }
    edit_file(path, USERS_MODE, users_owner(config), |mut lines| {
        merge_users(&mut lines, accounts, report);
        validate(lines)
    })
    .map_err(|e| edit_error(path, e))
}

/// Adds each alias, or the targets an existing alias lacks.
fn merge_aliases(lines: &mut Vec<String>, aliases: &[Alias], report: &mut Report) {
    for alias in aliases {
        let key = alias.alias.to_lowercase();
        match lines
            .iter_mut()
            .find(|l| line_key(l).as_deref() == Some(key.as_str()))
        {
            Some(line) => {
                let (head, rest) = line.split_once(':').unwrap_or((line.as_str(), ""));
                let mut have = crate::admin::split_targets(rest);
                let before = have.len();
                for t in &alias.targets {
                    if !have.iter().any(|h| h.eq_ignore_ascii_case(t)) {
                        have.push(t.clone());
                    }
                }
                if have.len() > before {
                    *line = format!("{}: {}", head.trim(), have.join(", "));
                    report.aliases_extended.push(alias.alias.clone());
                }
            }
            None => {
                lines.push(format!("{}: {}", alias.alias, alias.targets.join(", ")));
                report.aliases_added.push(alias.alias.clone());
            }
        }
    }
}

fn import_aliases(
    config: &Config,
    aliases: &[Alias],
    write: Write,
    report: &mut Report,
) -> anyhow::Result<()> {
    let path = &config.aliases_file;
    let validate = |lines: Vec<String>| crate::admin::validated_aliases(path, lines);
    if write == Write::DryRun {
        let mut lines = current_lines(path)?;
        merge_aliases(&mut lines, aliases, report);
        return validate(lines).map(drop).map_err(|e| edit_error(path, e));
    }
    edit_file(path, ALIASES_MODE, None, |mut lines| {
        merge_aliases(&mut lines, aliases, report);
        validate(lines)
    })
    .map_err(|e| edit_error(path, e))
}

fn current_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    Ok(read_optional(path)?
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect())
}

fn edit_error(path: &Path, e: EditError) -> anyhow::Error {
    match e {
        EditError::Io(io) => anyhow::anyhow!("{io}"),
        EditError::Invalid(message) => anyhow::anyhow!("{}: {message}", path.display()),
    }
}

fn print_report(config: &Config, dir: &Path, write: Write, report: &Report) {
    let (verb, extended) = match write {
        Write::Yes => ("added", "extended"),
        Write::DryRun => {
            println!("dry run: nothing is written");
            ("would add", "would extend")
        }
    };
    println!(
        "users ({}): {verb} {}, {} already there",
        config.users_file.display(),
        report.users_added.len(),
        report.users_present
    );
    for user in &report.users_added {
        println!("  + {user}");
    }
    println!(
        "aliases ({}): {verb} {}, {extended} {}",
        config.aliases_file.display(),
        report.aliases_added.len(),
        report.aliases_extended.len()
    );
    for alias in report.aliases_added.iter().chain(&report.aliases_extended) {
        println!("  + {alias}");
    }
    print_problems(dir, report);
    println!(
        "mailboxes: copy each Maildir with `postern import maildir MAILDIR --user USER@DOMAIN` \
         (into {}/DOMAIN/USER/, keeping UIDs, flags and keywords)",
        config.mail_dir().display()
    );
}

/// Lines not taken, lines taken with a loss, and advice.
fn print_problems(dir: &Path, report: &Report) {
    let shown = |p: &Problem| format!("{}:{}: {}", dir.join(p.file).display(), p.line, p.message);
    if !report.skipped.is_empty() {
        println!("not imported ({} lines):", report.skipped.len());
        report
            .skipped
            .iter()
            .for_each(|p| println!("  {}", shown(p)));
    }
    if !report.notes.is_empty() {
        println!("imported with a loss:");
        report.notes.iter().for_each(|p| println!("  {}", shown(p)));
    }
    for advice in &report.advice {
        println!("{advice}");
    }
}

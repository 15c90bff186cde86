//! authd's view of the users and aliases files: loaded at start, swapped atomically when a
//! file changes and parses cleanly; a broken edit is logged and the previous view kept.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use shared::config::slice::AuthSlice;
use shared::passwd::Scheme;
use shared::users::{Directory, parse_aliases, parse_users};

/// The scheme most users have (SHA512-CRYPT, the default, when there are none).
fn most_common_scheme(directory: &Directory) -> Scheme {
    let mut counts: Vec<(Scheme, usize)> = Vec::new();
    for user in directory.users.iter() {
        let scheme = user.password.scheme();
        match counts.iter_mut().find(|(s, _)| *s == scheme) {
            Some((_, n)) => *n += 1,
            None => counts.push((scheme, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(s, _)| s)
        .unwrap_or(Scheme::Sha512Crypt)
}

/// What identifies a version of a file: (inode, size, mtime ns, ctime ns), or absent.
type Stamp = Option<(u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().map(|m| {
        (
            m.ino(),
            m.size(),
            m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        )
    })
}

pub struct Watched {
    current: Mutex<Arc<Directory>>,
    /// The most common password scheme of the users file (for unknown users' dummy hash).
    common: Mutex<Scheme>,
    stamps: Mutex<(Stamp, Stamp)>,
}

/// Reads a file that may be missing (an absent users or aliases file is empty).
fn read_optional(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other,
    }
}

fn load(slice: &AuthSlice, domains: &[String]) -> Result<Directory, Vec<String>> {
    let users_text = read_optional(&slice.users_file)
        .map_err(|e| vec![format!("{}: {e}", slice.users_file.display())])?;
    let aliases_text = read_optional(&slice.aliases_file)
        .map_err(|e| vec![format!("{}: {e}", slice.aliases_file.display())])?;
    let users = parse_users(&slice.users_file, &users_text);
    let aliases = parse_aliases(&slice.aliases_file, &aliases_text);
    for w in users.warnings.iter().chain(&aliases.warnings) {
        tracing::warn!(event = "auth.file_warning", "{w}");
    }
    let errors: Vec<String> = users
        .errors
        .iter()
        .chain(&aliases.errors)
        .map(ToString::to_string)
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Directory {
        users: users.value,
        aliases: aliases.value,
        domains: domains.to_vec(),
    })
}

impl Watched {
    pub fn load(slice: &AuthSlice, domains: &[String]) -> anyhow::Result<Watched> {
        let stamps = (stamp(&slice.users_file), stamp(&slice.aliases_file));
        let directory = load(slice, domains).map_err(|e| anyhow::anyhow!(e.join("; ")))?;
        tracing::info!(
            event = "auth.loaded",
            users = directory.users.len(),
            "users and aliases loaded"
        );
        Ok(Watched {
            common: Mutex::new(most_common_scheme(&directory)),
            current: Mutex::new(Arc::new(directory)),
            stamps: Mutex::new(stamps),
        })
    }

    pub fn common_scheme(&self) -> Scheme {
        *self.common.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current(&self) -> Arc<Directory> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads when a file changed since the last look.
    pub fn refresh(&self, slice: &AuthSlice) {
        let now = (stamp(&slice.users_file), stamp(&slice.aliases_file));
        {
            let mut seen = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return;
            }
            *seen = now;
        }
        let domains = self.current().domains.clone();
        match load(slice, &domains) {
            Ok(directory) => {
                tracing::info!(
                    event = "auth.reload",
                    users = directory.users.len(),
                    "users and aliases reloaded"
                );
                *self.common.lock().unwrap_or_else(|p| p.into_inner()) =
                    most_common_scheme(&directory);
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(directory);
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!(event = "auth.reload_failed", "{e}");
                }
                tracing::error!(
                    event = "auth.reload_failed",
                    "keeping the previous users and aliases"
                );
            }
        }
    }
}

//! The users file (Dovecot passwd-file format) and the aliases file: parsing with file:line
//! errors, recipient resolution (mailbox, alias fan-out, catch-all, +tag), and atomic editing
//! under a lock for the admin CLI. No sockets here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::passwd::StoredPassword;

/// An error or warning in a users/aliases file, naming file and line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

#[derive(Debug, Clone)]
pub struct UserEntry {
    /// `user@domain`, domain lower-cased, local part as written.
    pub address: String,
    pub password: StoredPassword,
    /// Dovecot's extra fields after the password (uid, gid, home, ...), kept verbatim.
    pub extra: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Users {
    /// Keyed by the lower-cased address.
    entries: BTreeMap<String, UserEntry>,
}

impl Users {
    pub fn get(&self, address: &str) -> Option<&UserEntry> {
        todo!()
    }
    pub fn iter(&self) -> impl Iterator<Item = &UserEntry> {
        self.entries.values()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Parse result: what could be read, errors (the file is unusable when non-empty), warnings.
#[derive(Debug, Default)]
pub struct Parsed<T> {
    pub value: T,
    pub errors: Vec<FileProblem>,
    pub warnings: Vec<FileProblem>,
}

/// Parses a users file. `file` is only used in messages.
pub fn parse_users(file: &Path, text: &str) -> Parsed<Users> {
    todo!()
}

#[derive(Debug, Clone, Default)]
pub struct Aliases {
    /// lower-cased `alias@domain` -> targets as written (in file order)
    exact: BTreeMap<String, Vec<String>>,
    /// lower-cased domain -> targets of `@domain:`
    catch_all: BTreeMap<String, Vec<String>>,
}

impl Aliases {
    /// `(alias, targets)` in order; catch-alls appear as `@domain`.
    pub fn entries(&self) -> Vec<(String, Vec<String>)> {
        todo!()
    }
}

pub fn parse_aliases(file: &Path, text: &str) -> Parsed<Aliases> {
    todo!()
}

/// What a recipient address is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A local mailbox: the canonical user address from the users file.
    Mailbox(String),
    /// An alias: the final targets after recursive expansion, de-duplicated, in first-seen order.
    /// Local targets are canonical user addresses; remote targets are kept as written.
    Alias(Vec<String>),
    /// Not a local address (domain local but no such user/alias, or domain not local).
    Unknown,
}

/// Users + aliases + local domains: answers recipient lookups.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub users: Users,
    pub aliases: Aliases,
    /// lower-cased local domains
    pub domains: Vec<String>,
}

impl Directory {
    /// Resolves a recipient: exact alias, then mailbox, then `user+tag@` as `user@`, then the
    /// domain's catch-all. Alias expansion is recursive (depth-limited to 10) and de-duplicated.
    pub fn resolve(&self, address: &str) -> Resolution {
        todo!()
    }
    /// Addresses of the users of `domain`, sorted.
    pub fn users_of(&self, domain: &str) -> Vec<String> {
        todo!()
    }
    /// The addresses `user` may send as: itself and every alias resolving (directly or via
    /// expansion) to it, catch-alls excluded.
    pub fn sender_addresses(&self, user: &str) -> Vec<String> {
        todo!()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Rewrites `path` atomically: takes an exclusive lock on the file's directory, reads the current
/// lines (an absent file reads as empty), calls `edit`, writes a temp file in the same directory
/// with the old file's owner and mode (or `new_mode` and `new_owner` for a new file), fsyncs it,
/// renames it over `path`, and fsyncs the directory. `edit` returning Err leaves the file alone.
pub fn edit_file(
    path: &Path,
    new_mode: u32,
    new_owner: Option<(u32, u32)>,
    edit: impl FnOnce(Vec<String>) -> Result<Vec<String>, EditError>,
) -> Result<(), EditError> {
    todo!()
}

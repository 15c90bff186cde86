//! The mailstore (ARCHITECTURE §4): a user's Maildir++ folders and, beside each folder, the
//! IMAP index (UIDVALIDITY, UIDs, flags, keywords, MODSEQ, sizes) that the MDA, postern-imapd
//! and postern-pop3d share. This file holds the public types and the per-user [`Store`];
//! the per-folder handle is [`Folder`] (`folder.rs`, `write.rs`, `scan.rs`), the log format
//! is in `index.rs`, folder names in `names.rs`. Blocking file I/O only: async callers run it
//! on a blocking thread. No sockets, no protocol syntax here. `docs/mailstore.md` describes the
//! files on disk.

pub mod deliver;
pub mod dovecot;
mod flags;
mod folder;
mod index;
mod lock;
mod logfd;
pub mod names;
mod scan;
mod store;
mod uids;
mod write;

use std::path::{Path, PathBuf};

pub use flags::Flags;
pub use folder::{Changes, Folder};
pub use store::{FolderEntry, SpecialUse, Store};
pub use write::{StoreOp, StoreOutcome};

/// The index log of a folder, in the folder's directory.
pub const LOG_FILE: &str = "postern-index.log";
/// The lock file every writer of the log holds (`lock.rs`).
pub const LOCK_FILE: &str = "postern-index.lock";

/// Errors of the mailstore. `Io` carries the path; callers map it to a temporary failure
/// (and [`Error::is_no_space`] to "disk full").
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no such folder")]
    NoSuchFolder,
    #[error("folder already exists")]
    FolderExists,
    #[error("invalid folder name: {0}")]
    BadName(&'static str),
    #[error("INBOX cannot be {0}")]
    Inbox(&'static str),
    #[error("no such message (UID {0})")]
    NoSuchMessage(u32),
    #[error("{path}: index format version {version} is not one this Postern reads")]
    IndexVersion { path: PathBuf, version: u32 },
    #[error("address {0:?} cannot name a mailbox directory")]
    BadAddress(String),
}

impl Error {
    /// Whether the error is a full disk or quota (answer "try later, no space").
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::Io { source, .. } if matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// One message of a folder as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub uid: u32,
    /// RFC 7162 §3.1.1: the modseq of the message's last change (add or flags).
    pub modseq: u64,
    /// System flags (also in the file name's `:2,` info).
    pub flags: Flags,
    /// Keywords (RFC 3501 §2.3.2 flag-keyword), sorted; kept in the index only.
    pub keywords: Vec<String>,
    /// Size of the file (LF line ends as delivered).
    pub size: u64,
    /// Size with CRLF line ends: RFC822.SIZE (RFC 3501 §6.4.5), POP3 LIST/STAT octets.
    pub vsize: u64,
    /// Internal date (RFC 3501 §2.3.3), Unix seconds.
    pub internal_date: i64,
    /// The file relative to the folder directory as last seen: `new/<base>` or
    /// `cur/<base>:2,<info>`. Another session may have renamed it since:
    /// [`Folder::open_message`] copes with that.
    pub file: String,
}

impl MessageInfo {
    /// The Maildir base name: the file name without directory and `:2,` info.
    pub fn base(&self) -> &str {
        base_of(&self.file)
    }
}

/// `cur/1.M2P3.host,S=5:2,S` → `1.M2P3.host,S=5`.
pub(crate) fn base_of(file: &str) -> &str {
    let name = file.rsplit('/').next().unwrap_or(file);
    name.split_once(':').map_or(name, |(base, _)| base)
}

/// The POP3 UIDL of a message (RFC 1939 §7), in the default format of Dovecot
/// (`%08Xu%08Xv`: UID then UIDVALIDITY, 8 uppercase hex digits each), so that mail migrated
/// with its `dovecot-uidlist` keeps its UIDLs and POP3 clients download nothing twice.
pub fn uidl(uid: u32, uidvalidity: u32) -> String {
    format!("{uid:08X}{uidvalidity:08X}")
}

#[cfg(test)]
mod tests_bulk;
#[cfg(test)]
mod tests_concurrency;
#[cfg(test)]
mod tests_folder;
#[cfg(test)]
mod tests_uids;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidl_is_dovecots_default_format() {
        assert_eq!(uidl(1, 0x5f00_1234), "000000015F001234");
        assert_eq!(uidl(0xabc, 7), "00000ABC00000007");
    }

    #[test]
    fn base_names() {
        assert_eq!(base_of("cur/1.M2P3.h,S=5:2,S"), "1.M2P3.h,S=5");
        assert_eq!(base_of("new/1.M2P3.h,S=5"), "1.M2P3.h,S=5");
    }
}

//! [`Store`]: one user's Maildir++ (ARCHITECTURE §4): the folder tree (create, rename,
//! delete, list), SPECIAL-USE attributes (RFC 6154), subscriptions, and opening a
//! [`Folder`]. Knows directories, not messages.

use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::names;
use super::{Error, Folder, IoContext, Result};
use crate::maildir::{Maildir, mailbox_path, sync_dir};

/// Marks a Maildir++ subfolder (Maildir++ convention).
const FOLDER_MARKER: &str = "maildirfolder";
/// The SPECIAL-USE attribute of a folder, in its directory.
const SPECIAL_USE_FILE: &str = "postern-special-use";
/// Subscribed folder names, one per line in their on-disk form without the leading dot
/// (Dovecot's Maildir++ `subscriptions` file).
const SUBSCRIPTIONS_FILE: &str = "subscriptions";

/// RFC 6154 §2 attributes a folder can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    pub const ALL: [SpecialUse; 5] = [
        SpecialUse::Sent,
        SpecialUse::Drafts,
        SpecialUse::Trash,
        SpecialUse::Junk,
        SpecialUse::Archive,
    ];

    /// The attribute as IMAP writes it: `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }

    /// From an IMAP attribute, case-insensitive.
    pub fn from_attribute(text: &str) -> Option<SpecialUse> {
        SpecialUse::ALL
            .into_iter()
            .find(|s| s.attribute().eq_ignore_ascii_case(text))
    }

    /// The name of the default folder with this use.
    fn default_name(self) -> &'static str {
        &self.attribute()[1..]
    }
}

/// A folder as [`Store::list_folders`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    /// UTF-8, `/`-delimited.
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
}

/// One user's mailstore.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The mailstore of `address` under the mail root (`state_dir/mail`), its INBOX created
    /// if missing.
    pub fn open(mail_root: &Path, address: &str) -> Result<Store> {
        let root =
            mailbox_path(mail_root, address).ok_or_else(|| Error::BadAddress(address.into()))?;
        Store::at(&root)
    }

    /// The mailstore whose INBOX is the Maildir `root`, created if missing.
    pub fn at(root: &Path) -> Result<Store> {
        Maildir::create(root).at(root)?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of folder `name` (which may not exist).
    pub fn folder_dir(&self, name: &str) -> Result<PathBuf> {
        Ok(match names::to_disk(name)? {
            None => self.root.clone(),
            Some(disk) => self.root.join(disk),
        })
    }

    /// Creates the folders every user has (RFC 6154 §5 suggests them): Sent, Drafts, Trash,
    /// Junk, Archive, each with its attribute and subscribed. Existing ones are left alone.
    pub fn ensure_default_folders(&self) -> Result<()> {
        for use_ in SpecialUse::ALL {
            match self.create_folder(use_.default_name(), Some(use_)) {
                Ok(()) => self.subscribe(use_.default_name(), true)?,
                Err(Error::FolderExists) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every folder, INBOX first, the rest sorted by name.
    pub fn list_folders(&self) -> Result<Vec<FolderEntry>> {
        let subscribed = self.subscriptions()?;
        let mut names = vec!["INBOX".to_string()];
        for entry in std::fs::read_dir(&self.root).at(&self.root)? {
            let entry = entry.at(&self.root)?;
            let Some(name) = entry.file_name().to_str().and_then(names::from_disk) else {
                continue;
            };
            if entry.path().join("cur").is_dir() {
                names.push(name);
            }
        }
        names[1..].sort();
        Ok(names
            .into_iter()
            .map(|name| FolderEntry {
                special_use: self.special_use(&name),
                subscribed: subscribed.contains(&name),
                name,
            })
            .collect())
    }

    fn special_use(&self, name: &str) -> Option<SpecialUse> {
        let dir = self.folder_dir(name).ok()?;
        let text = std::fs::read_to_string(dir.join(SPECIAL_USE_FILE)).ok()?;
        SpecialUse::from_attribute(text.trim())
    }

    /// CREATE (RFC 3501 §6.3.3; RFC 6154 §3 CREATE-SPECIAL-USE): the Maildir++ directory with
    /// `tmp/ new/ cur/` and the `maildirfolder` marker, all fsynced.
    pub fn create_folder(&self, name: &str, special_use: Option<SpecialUse>) -> Result<()> {
        let Some(disk) = names::to_disk(name)? else {
            return Err(Error::FolderExists);
        };
        let dir = self.root.join(&disk);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::FolderExists);
            }
            Err(e) => return Err(e).at(&dir),
        }
        for sub in ["tmp", "new", "cur"] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.join(sub))
                .at(&dir)?;
        }
        File::create(dir.join(FOLDER_MARKER)).at(&dir)?;
        if let Some(use_) = special_use {
            std::fs::write(
                dir.join(SPECIAL_USE_FILE),
                format!("{}\n", use_.attribute()),
            )
            .at(&dir)?;
        }
        sync_dir(&dir).at(&dir)?;
        sync_dir(&self.root).at(&self.root)
    }

    /// RENAME (RFC 3501 §6.3.5): the folder and every folder below it. Renaming INBOX is
    /// refused (its messages would have to move; not supported yet).
    pub fn rename_folder(&self, from: &str, to: &str) -> Result<()> {
        let (Some(old), Some(new)) = (names::to_disk(from)?, names::to_disk(to)?) else {
            return Err(Error::Inbox("renamed"));
        };
        if !self.root.join(&old).join("cur").is_dir() {
            return Err(Error::NoSuchFolder);
        }
        if self.root.join(&new).exists() {
            return Err(Error::FolderExists);
        }
        let mut moves = vec![(old.clone(), new.clone())];
        let prefix = format!("{old}.");
        for entry in std::fs::read_dir(&self.root).at(&self.root)?.flatten() {
            if let Some(rest) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
            {
                moves.push((format!("{prefix}{rest}"), format!("{new}.{rest}")));
            }
        }
        for (a, b) in &moves {
            std::fs::rename(self.root.join(a), self.root.join(b)).at(&self.root.join(a))?;
        }
        sync_dir(&self.root).at(&self.root)?;
        let (from, to) = (names::normalize(from), names::normalize(to));
        let subs = self.subscriptions()?;
        if subs.contains(&from) {
            self.subscribe(&from, false)?;
            self.subscribe(&to, true)?;
        }
        Ok(())
    }

    /// DELETE (RFC 3501 §6.3.4): the folder's directory and messages; folders below it stay.
    /// The directory is first renamed out of the namespace, so a crash midway leaves no
    /// half-deleted folder visible.
    pub fn delete_folder(&self, name: &str) -> Result<()> {
        let Some(disk) = names::to_disk(name)? else {
            return Err(Error::Inbox("deleted"));
        };
        let dir = self.root.join(&disk);
        if !dir.join("cur").is_dir() {
            return Err(Error::NoSuchFolder);
        }
        let doomed = self.root.join(format!(
            "postern-deleting-{}-{}",
            std::process::id(),
            disk.len()
        ));
        std::fs::rename(&dir, &doomed).at(&dir)?;
        sync_dir(&self.root).at(&self.root)?;
        std::fs::remove_dir_all(&doomed).at(&doomed)
    }

    /// Subscribed folder names (RFC 3501 §6.3.6 LSUB / RFC 5258 SUBSCRIBED).
    pub fn subscriptions(&self) -> Result<Vec<String>> {
        let path = self.root.join(SUBSCRIPTIONS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).at(&path),
        };
        Ok(text
            .lines()
            // Dovecot's version 2 file starts with "V\t2" and separates levels with tabs.
            .filter(|l| !l.is_empty() && !l.starts_with("V\t"))
            .filter_map(|l| names::from_disk(&format!(".{}", l.replace('\t', "."))))
            .collect())
    }

    /// SUBSCRIBE / UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7). The file is replaced atomically.
    /// Sessions of one user subscribing at once (their first logins each create the default
    /// folders) take turns under `subscriptions.postern-lock`, so that none loses another's
    /// change or finds the shared temporary file renamed away.
    pub fn subscribe(&self, name: &str, subscribed: bool) -> Result<()> {
        let lock_path = self.root.join(format!("{SUBSCRIPTIONS_FILE}.postern-lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        lock.lock().at(&lock_path)?;
        let name = names::normalize(name);
        let mut subs = self.subscriptions()?;
        subs.retain(|s| *s != name);
        if subscribed {
            subs.push(name);
        }
        let mut text = String::new();
        for s in &subs {
            let disk = names::to_disk(s)?.unwrap_or_else(|| ".INBOX".to_string());
            text.push_str(&disk[1..]);
            text.push('\n');
        }
        let path = self.root.join(SUBSCRIPTIONS_FILE);
        let tmp = self.root.join(format!("{SUBSCRIPTIONS_FILE}.postern-tmp"));
        std::fs::write(&tmp, text).at(&tmp)?;
        File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
        std::fs::rename(&tmp, &path).at(&path)
    }

    /// Opens folder `name` (SELECT/EXAMINE, POP3's INBOX).
    pub fn open_folder(&self, name: &str) -> Result<Folder> {
        let dir = self.folder_dir(name)?;
        Folder::open(&names::normalize(name), &dir)
    }
}

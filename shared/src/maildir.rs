//! Maildir++ delivery (ARCHITECTURE §4, §6 step 4): the start of the mailstore the IMAP and
//! POP3 issues extend. A message is written to `tmp/` under a unique name, fsynced, linked into
//! `new/`, and `new/` is fsynced: only then is it delivered (the promise behind LMTP's 250).
//! The link is made under the folder's index lock, which gives the message its IMAP UID and a
//! name carrying it (`mailstore::deliver`). No sockets here.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::mailstore::deliver::link_delivery;

/// One Maildir (the INBOX of a user: ARCHITECTURE §4 puts it at `mail/DOMAIN/USER/`).
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

/// A message delivered.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub path: PathBuf,
    /// Its IMAP UID; `None` when indexing failed (logged; the next sync indexes it).
    pub uid: Option<u32>,
}

/// Deliveries of this process so far: part of the unique name.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// The Maildir of `address` under the mail root: `mail/DOMAIN/LOCAL/`, both lower-cased.
/// `None` for an address that cannot name a directory safely.
pub fn mailbox_path(mail_root: &Path, address: &str) -> Option<PathBuf> {
    let (local, domain) = address.rsplit_once('@')?;
    let safe = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && !part.contains(['/', '\0'])
            && part.len() <= 255
    };
    let (local, domain) = (local.to_lowercase(), domain.to_lowercase());
    (safe(&local) && safe(&domain)).then(|| mail_root.join(domain).join(local))
}

impl Maildir {
    /// Opens the Maildir at `root`, creating it and its `tmp/ new/ cur/` (mode 0700) on first
    /// delivery.
    /// A Maildir this process created or found complete is not checked again (three `stat`s
    /// per delivery saved); should it vanish, the delivery fails with `NotFound` and
    /// [`Maildir::deliver`] forgets it, so the next attempt creates it again.
    pub fn create(root: &Path) -> std::io::Result<Maildir> {
        if known(root) {
            return Ok(Maildir {
                root: root.to_path_buf(),
            });
        }
        if !root.join("new").is_dir() || !root.join("tmp").is_dir() || !root.join("cur").is_dir() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true).mode(0o700);
            for sub in ["tmp", "new", "cur"] {
                builder.create(root.join(sub))?;
            }
            // The new directories must survive a crash too: fsync the Maildir and the two
            // levels above it (mail/DOMAIN/USER) that may have just been created.
            for dir in root.ancestors().take(3) {
                sync_dir(dir)?;
            }
        }
        remember(root);
        Ok(Maildir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Delivers a message (LF line ends) into `new/` as `<unique>,S=..,W=..,U=<uid>`; returns
    /// once it is durable, with the UID the index gave it. On error nothing is left in `new/` (and the temporary file is
    /// removed).
    pub fn deliver(&self, parts: &[&[u8]], hostname: &str) -> std::io::Result<Delivered> {
        let size: usize = parts.iter().map(|p| p.len()).sum();
        let lines: usize = parts
            .iter()
            .map(|p| p.iter().filter(|&&b| b == b'\n').count())
            .sum();
        let name = unique_name(hostname, size, size + lines);
        let tmp = self.root.join("tmp").join(&name);
        let vsize = (size + lines) as u64;
        let result = write_synced(&tmp, parts).and_then(|()| {
            // link(2) fails rather than overwrite: the name is unique, but never clobber.
            let (linked, uid) = link_delivery(&self.root, &tmp, &name, size as u64, vsize)?;
            let new = self.root.join("new").join(linked);
            if let Err(e) = sync_dir(&self.root.join("new")) {
                let _ = std::fs::remove_file(&new);
                return Err(e);
            }
            Ok(Delivered { path: new, uid })
        });
        let _ = std::fs::remove_file(&tmp);
        if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
            forget(&self.root);
        }
        result
    }
}

/// Maildirs known complete in this process (bounded: emptied when full).
static KNOWN: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
const MAX_KNOWN: usize = 4096;

fn known(root: &Path) -> bool {
    KNOWN
        .lock()
        .is_ok_and(|k| k.as_ref().is_some_and(|k| k.contains(root)))
}

fn remember(root: &Path) {
    if let Ok(mut k) = KNOWN.lock() {
        let set = k.get_or_insert_with(HashSet::new);
        if set.len() >= MAX_KNOWN {
            set.clear();
        }
        set.insert(root.to_path_buf());
    }
}

fn forget(root: &Path) {
    if let Ok(mut k) = KNOWN.lock()
        && let Some(set) = k.as_mut()
    {
        set.remove(root);
    }
}

/// `<secs>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<vsize>` (Maildir conventions as Dovecot
/// writes them: S = size on disk, W = size with CRLF line ends).
pub(crate) fn unique_name(hostname: &str, size: usize, vsize: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = DELIVERIES.fetch_add(1, Ordering::Relaxed);
    // '/' and ':' would break the name; Maildir escapes them as \057 and \072.
    let host = hostname.replace('/', "\\057").replace(':', "\\072");
    format!(
        "{}.M{}P{}Q{n}.{host},S={size},W={vsize}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    )
}

fn write_synced(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    crate::fsio::write_parts(&mut file, parts)?;
    // The data must be on disk before the name in new/ can promise it.
    file.sync_all()
}

/// fsync of a directory: makes its entries (a link, a new subdirectory) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_with_a_unique_standard_name() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(&dir.path().join("example.org/alice")).unwrap();
        let a = md
            .deliver(&[b"Subject: a\n", b"\nbody\n"], "mx.example")
            .unwrap();
        let b = md.deliver(&[b"x\n"], "mx.example").unwrap();
        assert_eq!((a.uid, b.uid), (Some(1), Some(2)));
        let (a, b) = (a.path, b.path);
        assert_ne!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), b"Subject: a\n\nbody\n");
        let name = a.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.ends_with(".mx.example,S=17,W=20,U=1"), "{name}");
        assert!(
            name.contains(&format!("P{}Q", std::process::id())),
            "{name}"
        );
        assert_eq!(std::fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        for sub in ["cur", "new", "tmp"] {
            assert!(md.root().join(sub).is_dir());
        }
    }

    #[test]
    fn a_maildir_removed_after_delivery_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("example.org/gone");
        let md = Maildir::create(&root).unwrap();
        md.deliver(&[b"x\n"], "mx.example").unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        // Known complete, so not checked: the delivery finds it gone and forgets it.
        let e = Maildir::create(&root)
            .unwrap()
            .deliver(&[b"y\n"], "mx.example")
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let again = Maildir::create(&root).unwrap();
        let d = again.deliver(&[b"z\n"], "mx.example").unwrap();
        assert_eq!(std::fs::read(&d.path).unwrap(), b"z\n");
    }

    #[test]
    fn mailbox_paths_are_safe() {
        let root = Path::new("/m");
        assert_eq!(
            mailbox_path(root, "Alice@Example.ORG"),
            Some(PathBuf::from("/m/example.org/alice"))
        );
        assert_eq!(mailbox_path(root, "../x@example.org"), None);
        assert_eq!(mailbox_path(root, ".hidden@example.org"), None);
        assert_eq!(mailbox_path(root, "a/b@example.org"), None);
        assert_eq!(mailbox_path(root, "nodomain"), None);
    }

    #[test]
    fn a_failed_write_leaves_nothing_in_new() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path()).unwrap();
        std::fs::remove_dir(dir.path().join("tmp")).unwrap();
        assert!(md.deliver(&[b"x\n"], "h").is_err());
        assert_eq!(
            std::fs::read_dir(dir.path().join("new")).unwrap().count(),
            0
        );
    }
}

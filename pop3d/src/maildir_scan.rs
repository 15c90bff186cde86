//! A [`Store`] over plain Maildirs (ARCHITECTURE §4): the INBOX of `mail/DOMAIN/USER/` read by
//! scanning `new/` and `cur/`, the unique id taken from the file's base name (the part before
//! `:2,`, which never changes), the maildrop lock a `flock`ed file held by the session.
//!
//! TODO(mailstore): replace by `shared::mailstore` when it lands, so UIDLs come from
//! UIDVALIDITY+UID (stable across index rebuilds, seeded from `dovecot-uidlist`). Until then
//! this is the implementation `serve` uses. Blocking file I/O only; no sockets here.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use shared::maildir::{Maildir, mailbox_path, sync_dir};

use crate::maildrop::{MessageInfo, OpenError, Store, Update, is_valid_uidl};

/// The lock file in each Maildir: held (`flock`, exclusive) by the POP3 session that has the
/// maildrop open; the kernel releases it when the session's file is closed or its process dies.
pub const LOCK_FILE: &str = "postern-pop3.lock";

pub struct MaildirStore {
    pub mail_root: PathBuf,
}

struct Entry {
    /// "new" or "cur".
    sub: &'static str,
    name: String,
}

impl Entry {
    fn base(&self) -> &str {
        self.name.split_once(':').map_or(&self.name, |(b, _)| b)
    }
}

pub struct MaildirDrop {
    root: PathBuf,
    entries: Vec<Entry>,
    _lock: File,
}

impl Store for MaildirStore {
    fn open(
        &self,
        user: &str,
    ) -> Result<(Box<dyn crate::maildrop::Maildrop>, Vec<MessageInfo>), OpenError> {
        let root = mailbox_path(&self.mail_root, user).ok_or_else(|| {
            OpenError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "address names no mailbox",
            ))
        })?;
        let maildir = Maildir::create(&root)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(maildir.root().join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::InUse),
            Err(std::fs::TryLockError::Error(e)) => return Err(OpenError::Io(e)),
        }
        let entries = scan(&root)?;
        let infos = entries
            .iter()
            .map(|e| info(&root, e))
            .collect::<io::Result<Vec<_>>>()?;
        Ok((
            Box::new(MaildirDrop {
                root,
                entries,
                _lock: lock,
            }),
            infos,
        ))
    }
}

/// The messages of `new/` then `cur/`, in delivery order: by the leading seconds of the name,
/// then the name.
fn scan(root: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for sub in ["new", "cur"] {
        for dirent in std::fs::read_dir(root.join(sub))? {
            let dirent = dirent?;
            let Ok(name) = dirent.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            entries.push(Entry { sub, name });
        }
    }
    let seconds = |e: &Entry| -> u64 {
        let digits = e.name.bytes().take_while(u8::is_ascii_digit).count();
        e.name[..digits].parse().unwrap_or(u64::MAX)
    };
    entries.sort_by(|a, b| (seconds(a), a.base()).cmp(&(seconds(b), b.base())));
    Ok(entries)
}

fn info(root: &Path, entry: &Entry) -> io::Result<MessageInfo> {
    Ok(MessageInfo {
        size: match field(entry.base(), "W=") {
            Some(w) => w,
            None => {
                crate::reply::wire_size(&std::fs::read(root.join(entry.sub).join(&entry.name))?)
            }
        },
        uidl: uidl_of(entry.base()),
    })
}

/// A `,X=number` field of a Maildir base name (`S=` size, `W=` size with CRLF line ends).
fn field(base: &str, key: &str) -> Option<u64> {
    base.split(',')
        .skip(1)
        .find_map(|f| f.strip_prefix(key))
        .and_then(|v| v.parse().ok())
}

/// The base name when it is a valid UIDL, else a hash of it (long host names).
fn uidl_of(base: &str) -> String {
    if is_valid_uidl(base) {
        return base.to_string();
    }
    // FNV-1a, 64 bits twice with different offsets: stable across processes and versions.
    let fnv = |seed: u64| {
        base.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4)
    )
}

impl MaildirDrop {
    /// The current path of message `index`: another process (IMAP) may have moved it from
    /// `new/` to `cur/` or changed its flags since the scan.
    fn locate(&mut self, index: usize) -> io::Result<PathBuf> {
        let entry = self
            .entries
            .get(index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such message"))?;
        let path = self.root.join(entry.sub).join(&entry.name);
        if path.exists() {
            return Ok(path);
        }
        let prefix = format!("{}:", entry.base());
        for dirent in std::fs::read_dir(self.root.join("cur"))? {
            let name = dirent?.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) || name == entry.base() {
                self.entries[index] = Entry { sub: "cur", name };
                return Ok(self.root.join("cur").join(&self.entries[index].name));
            }
        }
        Err(io::Error::new(io::ErrorKind::NotFound, "message gone"))
    }

    fn mark_seen(&mut self, index: usize) -> io::Result<()> {
        let from = self.locate(index)?;
        let entry = &self.entries[index];
        let flags = entry.name.split_once(":2,").map_or("", |(_, f)| f);
        if flags.contains('S') {
            return Ok(());
        }
        let mut flags: Vec<char> = flags.chars().chain(['S']).collect();
        flags.sort_unstable();
        let name = format!("{}:2,{}", entry.base(), flags.iter().collect::<String>());
        std::fs::rename(&from, self.root.join("cur").join(&name))?;
        self.entries[index] = Entry { sub: "cur", name };
        Ok(())
    }
}

impl crate::maildrop::Maildrop for MaildirDrop {
    fn read(&mut self, index: usize) -> io::Result<Vec<u8>> {
        let path = self.locate(index)?;
        std::fs::read(path)
    }

    fn commit(&mut self, update: &Update) -> io::Result<()> {
        let mut first_error = None;
        for &i in &update.seen {
            if let Err(e) = self.mark_seen(i) {
                tracing::warn!(event = "pop3.seen_failed", error = %e, "cannot mark a message seen");
            }
        }
        for &i in &update.delete {
            let result = self.locate(i).and_then(std::fs::remove_file);
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // The unlinks and renames are promises once +OK is sent: make both directories'
        // entries durable first.
        sync_dir(&self.root.join("new"))?;
        sync_dir(&self.root.join("cur"))?;
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, MaildirStore, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("example.test/alice");
        let md = Maildir::create(&root).unwrap();
        md.deliver(&[b"Subject: one\n\nfirst\n"], "h").unwrap();
        md.deliver(&[b"Subject: two\n\n.second\n"], "h").unwrap();
        let store = MaildirStore {
            mail_root: dir.path().to_path_buf(),
        };
        (dir, store, root)
    }

    #[test]
    fn lists_reads_locks_marks_seen_and_deletes_durably() {
        let (_dir, store, root) = store();
        let (mut drop, infos) = store.open("alice@example.test").unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].size, 23, "CRLF size from W=");
        assert!(infos.iter().all(|i| is_valid_uidl(&i.uidl)));
        assert!(matches!(
            store.open("Alice@Example.test"),
            Err(OpenError::InUse)
        ));
        assert_eq!(drop.read(1).unwrap(), b"Subject: two\n\n.second\n");
        drop.commit(&Update {
            delete: vec![0],
            seen: vec![1],
        })
        .unwrap();
        std::mem::drop(drop);
        let (_again, after) = store.open("alice@example.test").unwrap();
        assert_eq!(after, vec![infos[1].clone()], "same UIDL after \\Seen");
        let cur: Vec<String> = std::fs::read_dir(root.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(cur.len() == 1 && cur[0].ends_with(":2,S"), "{cur:?}");
    }

    #[test]
    fn a_message_moved_by_another_process_is_still_found() {
        let (_dir, store, root) = store();
        let (mut drop, _) = store.open("alice@example.test").unwrap();
        let new = std::fs::read_dir(root.join("new")).unwrap();
        for e in new {
            let e = e.unwrap();
            let to = root
                .join("cur")
                .join(format!("{}:2,F", e.file_name().to_string_lossy()));
            std::fs::rename(e.path(), to).unwrap();
        }
        assert!(drop.read(0).unwrap().starts_with(b"Subject: one"));
        drop.commit(&Update {
            delete: vec![],
            seen: vec![0, 1],
        })
        .unwrap();
        let mut names: Vec<String> = std::fs::read_dir(root.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert!(names.iter().all(|n| n.ends_with(":2,FS")), "{names:?}");
    }

    #[test]
    fn long_names_get_a_hashed_uidl() {
        let long = "x".repeat(100);
        let u = uidl_of(&long);
        assert!(is_valid_uidl(&u) && u.len() == 32);
        assert_eq!(u, uidl_of(&long));
        assert_ne!(u, uidl_of(&"y".repeat(100)));
    }
}

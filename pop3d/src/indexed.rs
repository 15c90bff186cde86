//! The [`Store`] of postern-pop3d over `shared::mailstore`: the maildrop is the user's INBOX,
//! locked at login, opened and synced at login when it has an index, else at the first
//! listing (so a login never waits for an index to be built), listed in UID order, each message's UIDL derived from UID and UIDVALIDITY like Dovecot's
//! default (`%08Xu%08Xv`, so UIDLs survive an index rebuild and a migration that kept
//! `dovecot-uidlist`), sizes the index's CRLF size. The maildrop lock is a `flock`ed file in
//! the Maildir held by the session (IMAP sessions do not take it and may run alongside).
//! Blocking file I/O only; no sockets here.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use shared::mailstore::{self, Folder};

use crate::maildrop::{Maildrop, MessageInfo, OpenError, Store, Update};

/// The lock file in each Maildir: held (`flock`, exclusive) by the POP3 session that has the
/// maildrop open; the kernel releases it when the session's file is closed or its process
/// dies, so a crash never leaves a maildrop locked (RFC 1939 §8).
pub const LOCK_FILE: &str = "postern-pop3.lock";

pub struct IndexedStore {
    pub mail_root: PathBuf,
}

pub struct IndexedDrop {
    store: mailstore::Store,
    /// The INBOX, opened by [`Maildrop::list`].
    folder: Option<Folder>,
    /// UIDs in maildrop order: message number n is `uids[n - 1]`.
    uids: Vec<u32>,
    _lock: File,
}

fn io_error(e: mailstore::Error) -> io::Error {
    match e {
        mailstore::Error::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

impl Store for IndexedStore {
    fn open(&self, user: &str) -> Result<Box<dyn Maildrop>, OpenError> {
        let store = mailstore::Store::open(&self.mail_root, user).map_err(io_error)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(store.root().join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::InUse),
            Err(std::fs::TryLockError::Error(e)) => return Err(OpenError::Io(e)),
        }
        Ok(Box::new(IndexedDrop {
            store,
            folder: None,
            uids: Vec::new(),
            _lock: lock,
        }))
    }
}

impl IndexedDrop {
    fn folder(&mut self) -> io::Result<&mut Folder> {
        self.folder
            .as_mut()
            .ok_or_else(|| io::Error::other("the maildrop was not listed"))
    }

    fn uids_of(&self, indexes: &[usize]) -> Vec<u32> {
        indexes
            .iter()
            .filter_map(|&i| self.uids.get(i).copied())
            .collect()
    }
}

impl Maildrop for IndexedDrop {
    fn list(&mut self) -> io::Result<Vec<MessageInfo>> {
        let mut folder = self.store.open_folder("INBOX").map_err(io_error)?;
        // Files other programs put in the Maildir get their UIDs now (cheap when new/ and
        // cur/ are unchanged since the last scan).
        folder.sync().map_err(io_error)?;
        let uidvalidity = folder.uidvalidity();
        let (uids, infos) = folder
            .messages()
            .iter()
            .map(|m| {
                let info = MessageInfo {
                    size: m.vsize,
                    uidl: mailstore::uidl(m.uid, uidvalidity),
                };
                (m.uid, info)
            })
            .unzip();
        self.uids = uids;
        self.folder = Some(folder);
        Ok(infos)
    }

    fn read(&mut self, index: usize) -> io::Result<Vec<u8>> {
        let uid = *self
            .uids
            .get(index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such message"))?;
        let mut file = self.folder()?.open_message(uid).map_err(io_error)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn lists_cheaply(&self) -> bool {
        self.folder.is_none() && self.store.root().join(mailstore::LOG_FILE).exists()
    }

    fn commit(&mut self, update: &Update) -> io::Result<()> {
        if self.folder.is_none() {
            return Ok(()); // Never listed: nothing was read or marked deleted.
        }
        let seen = self.uids_of(&update.seen);
        if !seen.is_empty()
            && let Err(e) = self.folder()?.mark_seen(&seen)
        {
            // \Seen is a courtesy to IMAP clients; the deletions are the promise.
            tracing::warn!(event = "pop3.seen_failed", error = %e, "cannot mark messages seen");
        }
        let delete = self.uids_of(&update.delete);
        if !delete.is_empty() {
            // Durable on return: unlinks, directory fsyncs, expunge records fdatasynced.
            self.folder()?.expunge(&delete).map_err(io_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildrop::is_valid_uidl;
    use shared::maildir::Maildir;

    fn store() -> (tempfile::TempDir, IndexedStore, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("example.test/alice");
        let md = Maildir::create(&root).unwrap();
        md.deliver(&[b"Subject: one\n\nfirst\n"], "h").unwrap();
        md.deliver(&[b"Subject: two\n\n.second\n"], "h").unwrap();
        let store = IndexedStore {
            mail_root: dir.path().to_path_buf(),
        };
        (dir, store, root)
    }

    #[test]
    fn lists_reads_locks_marks_seen_and_deletes_durably() {
        let (_dir, store, root) = store();
        let mut drop = store.open("alice@example.test").unwrap();
        let infos = drop.list().unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].size, 23, "CRLF size");
        assert!(infos.iter().all(|i| is_valid_uidl(&i.uidl)));
        assert!(infos[0].uidl.starts_with("00000001") && infos[1].uidl.starts_with("00000002"));
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
        let after = store.open("alice@example.test").unwrap().list().unwrap();
        assert_eq!(after, vec![infos[1].clone()], "same UIDL after \\Seen");
        let cur: Vec<String> = std::fs::read_dir(root.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(cur.len() == 1 && cur[0].ends_with(":2,S"), "{cur:?}");
    }

    #[test]
    fn uidls_survive_an_index_rebuild() {
        let (_dir, store, root) = store();
        let before = store.open("alice@example.test").unwrap().list().unwrap();
        std::fs::remove_file(root.join(mailstore::LOG_FILE)).unwrap();
        let after = store.open("alice@example.test").unwrap().list().unwrap();
        let uid_part = |v: &[MessageInfo]| -> Vec<String> {
            v.iter().map(|m| m.uidl[..8].to_string()).collect()
        };
        assert_eq!(uid_part(&before), uid_part(&after));
    }
}

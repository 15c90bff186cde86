//! `postern import maildir SRC --user USER@DOMAIN [--dry-run]`: copies a Maildir++ tree
//! (INBOX and its `.Folder` subfolders, with Dovecot's `dovecot-uidlist`, `dovecot-keywords`
//! and `subscriptions`) into the user's mailstore (`state_dir/mail/DOMAIN/USER`), then opens
//! every folder with `shared::mailstore`, whose first index is seeded from the copied
//! `dovecot-uidlist`, and checks that UIDVALIDITY, UIDs, flags and keywords are the source's.
//! Refuses a destination that already holds mail. As root, the copy is given to the mail
//! service user. Never changes the source; never runs while asked to dry-run.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use shared::config::{Config, Role};
use shared::maildir::{mailbox_path, sync_dir};
use shared::mailstore::{Flags, Folder, LOG_FILE, Store, dovecot, names};

use super::Write;

/// Files copied beside the messages of a folder (Dovecot's state Postern reads).
const FOLDER_FILES: [&str; 3] = [
    dovecot::UIDLIST_FILE,
    dovecot::KEYWORDS_FILE,
    "maildirfolder",
];
/// Files copied from the root only.
const ROOT_FILES: [&str; 1] = ["subscriptions"];
/// Postern's own per-folder state, removed from an (empty) destination folder so that the
/// copied `dovecot-uidlist` seeds its index.
const POSTERN_FILES: [&str; 2] = [LOG_FILE, "postern-uidvalidity"];
/// Top-level folders that get their RFC 6154 attribute when the source has none for Postern.
const SPECIAL: [(&str, &str); 5] = [
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
];

/// One folder of the source.
struct Source {
    /// The directory name (`""` for INBOX, `.Archive.2024`).
    disk: String,
    /// The folder's name as Postern shows it.
    name: String,
    messages: Vec<PathBuf>,
    uidlist: Option<dovecot::Uidlist>,
}

pub fn run(config: &Config, src: &Path, user: &str, write: Write) -> anyhow::Result<()> {
    if !src.join("cur").is_dir() || !src.join("new").is_dir() {
        bail!("{}: not a Maildir (no cur/ and new/)", src.display());
    }
    let dest = mailbox_path(&config.mail_dir(), user)
        .with_context(|| format!("{user:?} cannot name a mailbox (give USER@DOMAIN)"))?;
    let sources = read_sources(src)?;
    refuse_mail_in(&dest)?;
    if write == Write::DryRun {
        println!("dry run: nothing is written");
        report(&sources, &dest, "would copy");
        return Ok(());
    }
    let created = make_destination(config, &dest)?;
    for source in &sources {
        copy_folder(src, &dest, source)?;
    }
    for name in ROOT_FILES {
        copy_state_file(&src.join(name), &dest.join(name))?;
    }
    sync_dir(&dest).with_context(|| dest.display().to_string())?;
    let checked = verify(&dest, &sources);
    give_to_mail_user(config, &dest, &created)?;
    checked?;
    report(&sources, &dest, "copied");
    Ok(())
}

/// INBOX and every `.Folder` directory that is a Maildir, with their messages.
fn read_sources(src: &Path) -> anyhow::Result<Vec<Source>> {
    let mut disks = vec![String::new()];
    for entry in std::fs::read_dir(src).with_context(|| src.display().to_string())? {
        let entry = entry.with_context(|| src.display().to_string())?;
        let Some(name) = entry.file_name().to_str().map(String::from) else {
            eprintln!("skipped {:?}: not a UTF-8 name", entry.path());
            continue;
        };
        if name.len() > 1 && name.starts_with('.') && entry.path().join("cur").is_dir() {
            disks.push(name);
        }
    }
    disks.sort();
    let mut out = Vec::new();
    for disk in disks {
        let dir = src.join(&disk);
        let name = match disk.as_str() {
            "" => "INBOX".to_string(),
            d => names::from_disk(d).unwrap_or_else(|| d.to_string()),
        };
        let mut messages = Vec::new();
        for sub in ["cur", "new"] {
            messages.extend(regular_files(&dir.join(sub))?);
        }
        let uidlist = dovecot::read_uidlist(&dir);
        out.push(Source {
            disk,
            name,
            messages,
            uidlist,
        });
    }
    Ok(out)
}

/// The regular files of a directory, without dot files; empty when it does not exist.
fn regular_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| dir.display().to_string()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| dir.display().to_string())?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().is_ok_and(|t| t.is_file()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Refuses a destination holding a message in any folder.
fn refuse_mail_in(dest: &Path) -> anyhow::Result<()> {
    if !dest.exists() {
        return Ok(());
    }
    for source in read_sources(dest)? {
        if !source.messages.is_empty() {
            bail!(
                "{}: folder {} already holds {} messages; the import copies into an empty \
                 mailbox only",
                dest.display(),
                source.name,
                source.messages.len()
            );
        }
    }
    Ok(())
}

/// Creates the mailbox directory and those above it up to the mail root (mode 0700, as the
/// supervisor makes the mail root; `state_dir` with the default mode); returns the ones it
/// created.
fn make_destination(config: &Config, dest: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let state = &config.state_dir;
    std::fs::create_dir_all(state).with_context(|| state.display().to_string())?;
    let mail_root = config.mail_dir();
    let mut missing: Vec<PathBuf> = dest
        .ancestors()
        .take_while(|d| *d != state.as_path())
        .filter(|d| !d.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    for dir in &missing {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| dir.display().to_string())?;
    }
    if !dest.starts_with(&mail_root) {
        bail!("{}: not under {}", dest.display(), mail_root.display());
    }
    Ok(missing)
}

fn copy_folder(src: &Path, dest: &Path, source: &Source) -> anyhow::Result<()> {
    let (from, to) = (src.join(&source.disk), dest.join(&source.disk));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for sub in ["tmp", "new", "cur"] {
        builder
            .create(to.join(sub))
            .with_context(|| to.join(sub).display().to_string())?;
    }
    for name in POSTERN_FILES {
        match std::fs::remove_file(to.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| to.join(name).display().to_string());
            }
            _ => {}
        }
    }
    for file in &source.messages {
        let rel = file.strip_prefix(&from).unwrap_or(file);
        copy_file(file, &to.join(rel))?;
    }
    for name in FOLDER_FILES {
        copy_state_file(&from.join(name), &to.join(name))?;
    }
    mark_special_use(&source.disk, &to)?;
    for dir in [to.join("cur"), to.join("new"), to.clone()] {
        sync_dir(&dir).with_context(|| dir.display().to_string())?;
    }
    Ok(())
}

/// Copies a message with its mtime (the IMAP internal date), fsynced.
fn copy_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut input = File::open(from).with_context(|| from.display().to_string())?;
    let mtime = input
        .metadata()
        .and_then(|m| m.modified())
        .with_context(|| from.display().to_string())?;
    let mut output = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| to.display().to_string())?;
    std::io::copy(&mut input, &mut output).with_context(|| to.display().to_string())?;
    output
        .set_modified(mtime)
        .and_then(|()| output.sync_all())
        .with_context(|| to.display().to_string())
}

/// Copies a state file if the source has it.
fn copy_state_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    if !from.is_file() {
        return Ok(());
    }
    let _ = std::fs::remove_file(to);
    copy_file(from, to)
}

/// Gives a top-level Sent, Drafts, Trash, Junk or Archive its RFC 6154 attribute (Dovecot
/// keeps these in its configuration, not beside the folder).
fn mark_special_use(disk: &str, to: &Path) -> anyhow::Result<()> {
    let Some((_, attribute)) = SPECIAL.iter().find(|(n, _)| disk == format!(".{n}")) else {
        return Ok(());
    };
    let path = to.join("postern-special-use");
    if !path.exists() {
        std::fs::write(&path, format!("{attribute}\n"))
            .with_context(|| path.display().to_string())?;
    }
    Ok(())
}

/// Opens every copied folder with the mailstore (which builds its index, seeded from the
/// copied `dovecot-uidlist`) and compares it with the source: the same UIDVALIDITY, each
/// listed file under its listed UID, every file indexed with the flags of its name.
fn verify(dest: &Path, sources: &[Source]) -> anyhow::Result<()> {
    let store = Store::at(dest).with_context(|| dest.display().to_string())?;
    for source in sources {
        let folder = store
            .open_folder(&source.name)
            .with_context(|| format!("opening {} after the copy", source.name))?;
        verify_folder(&folder, &dest.join(&source.disk), source)
            .map_err(|what| anyhow::anyhow!("{}: {what}", source.name))?;
    }
    Ok(())
}

fn verify_folder(folder: &Folder, dir: &Path, source: &Source) -> Result<(), String> {
    let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
    let (indexed, copied) = (folder.messages().len(), source.messages.len());
    check(
        indexed == copied,
        format!("{indexed} messages indexed of {copied} copied"),
    )?;
    if let Some(list) = &source.uidlist {
        let v = folder.uidvalidity();
        check(
            v == list.uidvalidity,
            format!("UIDVALIDITY {v} instead of {}", list.uidvalidity),
        )?;
        let by_base: HashMap<&str, u32> = folder
            .messages()
            .iter()
            .map(|m| (m.base(), m.uid))
            .collect();
        for (base, &uid) in &list.uids {
            let got = by_base.get(base.as_str()).copied().unwrap_or(uid);
            check(got == uid, format!("{base} has UID {got} instead of {uid}"))?;
        }
    }
    let letters = dovecot::read_keywords(dir);
    for m in folder.messages() {
        let info = m.file.split_once(":2,").map_or("", |(_, i)| i);
        check(
            m.flags == Flags::from_maildir(info),
            format!("{} has flags {:?}", m.file, m.flags),
        )?;
        let mut want: Vec<String> = info
            .bytes()
            .filter(u8::is_ascii_lowercase)
            .filter_map(|b| letters.get(usize::from(b - b'a')).cloned())
            .filter(|k| !k.is_empty())
            .collect();
        want.sort();
        want.dedup();
        check(
            m.keywords == want,
            format!("{} has keywords {:?}, not {want:?}", m.file, m.keywords),
        )?;
    }
    Ok(())
}

/// As root: the copy (and the directories above it that the import created) belongs to the
/// mail service user, as the supervisor makes the mail directory (`prepare.rs`).
fn give_to_mail_user(config: &Config, dest: &Path, created: &[PathBuf]) -> anyhow::Result<()> {
    if !crate::prepare::running_as_root() {
        return Ok(());
    }
    crate::prepare::ensure_service_users(config).map_err(anyhow::Error::msg)?;
    let name = config.service_users.for_role(Role::Mda);
    let user = nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .with_context(|| format!("service user {name} does not exist: run `postern check`"))?;
    let own = |path: &Path| {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            Some(user.uid),
            Some(user.gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .with_context(|| format!("chown {}", path.display()))
    };
    for dir in created {
        own(dir)?;
    }
    let mut stack = vec![dest.to_path_buf()];
    while let Some(dir) = stack.pop() {
        own(&dir)?;
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let entry = entry.with_context(|| dir.display().to_string())?;
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                _ => own(&entry.path())?,
            }
        }
    }
    Ok(())
}

fn report(sources: &[Source], dest: &Path, verb: &str) {
    let total: usize = sources.iter().map(|s| s.messages.len()).sum();
    println!(
        "{verb} {total} messages in {} folders to {}",
        sources.len(),
        dest.display()
    );
    for s in sources {
        let uids = match &s.uidlist {
            Some(l) => format!(
                "UIDVALIDITY {} and {} UIDs from dovecot-uidlist",
                l.uidvalidity,
                l.uids.len()
            ),
            None => "no dovecot-uidlist: new UIDs".to_string(),
        };
        println!("  {}: {} messages, {uids}", s.name, s.messages.len());
    }
}

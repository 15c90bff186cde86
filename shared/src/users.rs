//! The users file (Dovecot passwd-file format) and the aliases file: parsing with file:line
//! errors, recipient resolution (mailbox, alias fan-out, catch-all, +tag), and atomic editing
//! under a lock for the admin CLI. No sockets here.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{BufWriter, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::passwd::{Scheme, StoredPassword};

/// How many aliases one expansion may nest (`a -> b -> c ...`); deeper ones expand to nothing.
pub const MAX_ALIAS_DEPTH: usize = 10;

/// How many alias expansions one `resolve` may do in all. Depth alone does not bound the work:
/// ten levels of aliases that each name the same ten aliases would be 10^10 lookups.
pub const MAX_ALIAS_EXPANSIONS: usize = 1000;

/// The hint for a bad or cleartext password field.
const PASSWD_HINT: &str = "hash it with `postern user passwd`";

/// Addresses compare case-insensitively, local part included (as Dovecot's passwd-file does
/// by default and as every mailbox provider behaves).
fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// Splits `local@domain` after checking the shape every address here shares: no whitespace,
/// exactly one `@`, non-empty local part and domain. `what` names the address in the message.
fn check_address<'a>(what: &str, address: &'a str) -> Result<(&'a str, &'a str), String> {
    let hint = "write it as user@example.org";
    if address.is_empty() {
        return Err(format!("empty {what}: {hint}"));
    }
    if address.chars().any(char::is_whitespace) {
        return Err(format!("{what} {address:?} contains whitespace: {hint}"));
    }
    let Some((local, domain)) = address.split_once('@') else {
        return Err(format!("{what} {address:?} has no '@': {hint}"));
    };
    if domain.contains('@') {
        return Err(format!("{what} {address:?} has more than one '@': {hint}"));
    }
    if local.is_empty() {
        return Err(format!(
            "{what} {address:?} has an empty local part: {hint}"
        ));
    }
    if domain.is_empty() {
        return Err(format!("{what} {address:?} has an empty domain: {hint}"));
    }
    Ok((local, domain))
}

/// The lines that carry data, numbered from 1, trimmed; blank lines and `#` comments skipped.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn problem(file: &Path, line: usize, message: String) -> FileProblem {
    FileProblem {
        file: file.to_path_buf(),
        line,
        message,
    }
}

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
    /// The entry for `address`, compared case-insensitively.
    pub fn get(&self, address: &str) -> Option<&UserEntry> {
        self.entries.get(&fold(address))
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
///
/// Each line is `user@domain:{SCHEME}hash[:extra:fields...]`. A line with an error is left out
/// of the result; of two lines for one address the first is kept. `{PLAIN}` is a warning.
pub fn parse_users(file: &Path, text: &str) -> Parsed<Users> {
    let mut parsed = Parsed::<Users>::default();
    for (line, content) in content_lines(text) {
        let entry = match parse_user_line(content, line) {
            Ok(entry) => entry,
            Err(message) => {
                parsed.errors.push(problem(file, line, message));
                continue;
            }
        };
        let key = fold(&entry.address);
        if let Some(first) = parsed.value.entries.get(&key) {
            let message = format!(
                "duplicate address {:?} (first on line {}; addresses compare case-insensitively): \
                 remove one of the two lines",
                entry.address, first.line
            );
            parsed.errors.push(problem(file, line, message));
            continue;
        }
        if entry.password.scheme() == Scheme::Plain {
            let message = format!(
                "{:?} stores a cleartext password; {PASSWD_HINT}",
                entry.address
            );
            parsed.warnings.push(problem(file, line, message));
        }
        parsed.value.entries.insert(key, entry);
    }
    parsed
}

fn parse_user_line(content: &str, line: usize) -> Result<UserEntry, String> {
    let Some((address, rest)) = content.split_once(':') else {
        return Err(
            "missing ':' after the address: write `user@example.org:{SCHEME}hash`".to_string(),
        );
    };
    let (local, domain) = check_address("address", address)?;
    let (password, extra) = match rest.split_once(':') {
        Some((password, extra)) => (password, extra.split(':').map(String::from).collect()),
        None => (rest, Vec::new()),
    };
    let password = StoredPassword::parse(password)
        .map_err(|e| format!("bad password field for {address:?}: {e}; {PASSWD_HINT}"))?;
    Ok(UserEntry {
        address: format!("{local}@{}", fold(domain)),
        password,
        extra,
        line,
    })
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
    ///
    /// The order is by domain, then local part, a domain's catch-all first; aliases are
    /// lower-cased, targets as written.
    pub fn entries(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = self
            .exact
            .iter()
            .map(|(alias, targets)| (alias.clone(), targets.clone()))
            .chain(
                self.catch_all
                    .iter()
                    .map(|(domain, targets)| (format!("@{domain}"), targets.clone())),
            )
            .collect();
        out.sort_by(|(a, _), (b, _)| domain_then_local(a).cmp(&domain_then_local(b)));
        out
    }
}

fn domain_then_local(address: &str) -> (&str, &str) {
    match address.rsplit_once('@') {
        Some((local, domain)) => (domain, local),
        None => (address, ""),
    }
}

/// What the left side of an aliases line names.
enum AliasName {
    /// lower-cased `alias@domain`
    Exact(String),
    /// lower-cased domain of `@domain`
    CatchAll(String),
}

/// Parses an aliases file: `alias@domain: target, target` (targets separated by commas and/or
/// whitespace) and `@domain: targets` for the domain's catch-all. A line with an error is left
/// out; of two lines for one alias the first is kept.
pub fn parse_aliases(file: &Path, text: &str) -> Parsed<Aliases> {
    let mut parsed = Parsed::<Aliases>::default();
    // First line of each alias (exact ones by address, catch-alls by `@domain`).
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    for (line, content) in content_lines(text) {
        let (name, targets) = match parse_alias_line(content) {
            Ok(parsed_line) => parsed_line,
            Err(message) => {
                parsed.errors.push(problem(file, line, message));
                continue;
            }
        };
        let shown = match &name {
            AliasName::Exact(alias) => alias.clone(),
            AliasName::CatchAll(domain) => format!("@{domain}"),
        };
        if let Some(first) = first_line.get(&shown) {
            let message = format!(
                "duplicate alias {shown:?} (first on line {first}; aliases compare \
                 case-insensitively): merge the targets into one line"
            );
            parsed.errors.push(problem(file, line, message));
            continue;
        }
        first_line.insert(shown, line);
        match name {
            AliasName::Exact(alias) => parsed.value.exact.insert(alias, targets),
            AliasName::CatchAll(domain) => parsed.value.catch_all.insert(domain, targets),
        };
    }
    parsed
}

fn parse_alias_line(content: &str) -> Result<(AliasName, Vec<String>), String> {
    let Some((alias, targets)) = content.split_once(':') else {
        return Err(
            "missing ':' after the alias: write `alias@example.org: target@example.org, ...`"
                .to_string(),
        );
    };
    let alias = alias.trim();
    let name = match alias.strip_prefix('@') {
        // `@domain` checks as `x@domain` would.
        Some(domain) => check_address("catch-all", &format!("x@{domain}"))
            .map(|_| AliasName::CatchAll(fold(domain)))
            .map_err(|e| e.replacen("\"x@", "\"@", 1))?,
        None => check_address("alias", alias).map(|_| AliasName::Exact(fold(alias)))?,
    };
    let targets: Vec<String> = targets
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        return Err(format!(
            "alias {alias:?} has no targets: list one or more addresses after the ':'"
        ));
    }
    for target in &targets {
        check_address("target", target)?;
    }
    Ok((name, targets))
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
    ///
    /// Everything compares case-insensitively, and only addresses in `domains` are local. Each
    /// alias target resolves like a recipient: an alias expands in place, a mailbox (also
    /// `user+tag`) becomes the canonical user address, an unknown local address drops out,
    /// and a target outside `domains` stays as written. An alias met again inside its own
    /// expansion (a cycle, or `a@d: a@d, b@d`) is skipped, so the target goes on to the
    /// mailbox and catch-all steps. An alias whose expansion ends up empty makes the
    /// address `Unknown` (it does not fall through to the mailbox or catch-all).
    pub fn resolve(&self, address: &str) -> Resolution {
        match self.lookup(address, &mut Walk::default()) {
            Resolution::Alias(targets) if targets.is_empty() => Resolution::Unknown,
            found => found,
        }
    }
    /// Addresses of the users of `domain`, sorted.
    pub fn users_of(&self, domain: &str) -> Vec<String> {
        let domain = fold(domain);
        let mut out: Vec<String> = self
            .users
            .iter()
            .filter(|u| u.address.rsplit_once('@').is_some_and(|(_, d)| d == domain))
            .map(|u| u.address.clone())
            .collect();
        out.sort();
        out
    }
    /// The addresses `user` may send as: itself and every alias resolving (directly or via
    /// expansion) to it, catch-alls excluded.
    ///
    /// `user` is looked up case-insensitively; its canonical address comes first, then the
    /// aliases (lower-cased, sorted). Empty when `user` is not in the users file. `+tag`
    /// variants are not listed: stripping a tag is the caller's policy.
    pub fn sender_addresses(&self, user: &str) -> Vec<String> {
        let Some(entry) = self.users.get(user) else {
            return Vec::new();
        };
        let me = &entry.address;
        let mut out = vec![me.clone()];
        for alias in self.aliases.exact.keys() {
            if *alias == fold(me) {
                continue;
            }
            if let Resolution::Alias(targets) = self.resolve(alias)
                && targets.contains(me)
            {
                out.push(alias.clone());
            }
        }
        out
    }

    fn is_local(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| fold(d) == domain)
    }

    /// One step of resolution for `address`; an alias may come back with no targets.
    fn lookup(&self, address: &str, walk: &mut Walk) -> Resolution {
        let Ok((local, domain)) = check_address("address", address) else {
            return Resolution::Unknown;
        };
        let domain = fold(domain);
        if !self.is_local(&domain) {
            return Resolution::Unknown;
        }
        let mut candidates = vec![format!("{}@{domain}", fold(local))];
        // RFC 5233 subaddress: `user+tag` delivers to `user` (the first `+` splits).
        if let Some((base, _tag)) = local.split_once('+')
            && !base.is_empty()
        {
            candidates.push(format!("{}@{domain}", fold(base)));
        }
        for key in &candidates {
            if let Some(found) = self.expand(key, self.aliases.exact.get(key), walk) {
                return found;
            }
            if let Some(user) = self.users.entries.get(key) {
                return Resolution::Mailbox(user.address.clone());
            }
        }
        let catch_all = self.aliases.catch_all.get(&domain);
        self.expand(&format!("@{domain}"), catch_all, walk)
            .unwrap_or(Resolution::Unknown)
    }

    /// Expands the alias `key` (targets `targets`). `None` when there is no such alias or it is
    /// already being expanded further up (then the caller goes on to its next step).
    fn expand(
        &self,
        key: &str,
        targets: Option<&Vec<String>>,
        walk: &mut Walk,
    ) -> Option<Resolution> {
        let targets = targets?;
        if walk.active.iter().any(|a| a == key) {
            return None;
        }
        if walk.active.len() >= MAX_ALIAS_DEPTH || walk.expansions >= MAX_ALIAS_EXPANSIONS {
            return Some(Resolution::Alias(Vec::new()));
        }
        walk.expansions += 1;
        walk.active.push(key.to_string());
        let mut out = Expansion::default();
        for target in targets {
            match self.lookup(target, walk) {
                Resolution::Mailbox(mailbox) => out.push(mailbox),
                Resolution::Alias(list) => list.into_iter().for_each(|t| out.push(t)),
                Resolution::Unknown if !self.is_local_address(target) => out.push(target.clone()),
                Resolution::Unknown => {}
            }
        }
        walk.active.pop();
        Some(Resolution::Alias(out.list))
    }

    fn is_local_address(&self, address: &str) -> bool {
        check_address("address", address).is_ok_and(|(_, domain)| self.is_local(&fold(domain)))
    }
}

/// The state of one `resolve`: the aliases being expanded (outermost first) and how many
/// expansions it has done.
#[derive(Default)]
struct Walk {
    active: Vec<String>,
    expansions: usize,
}

/// Targets in first-seen order without repeats. Two targets are the same when they differ
/// only in the case of the domain: a remote local part may be case-sensitive (RFC 5321 §2.4),
/// and local mailboxes are already canonical.
#[derive(Default)]
struct Expansion {
    seen: HashSet<String>,
    list: Vec<String>,
}

impl Expansion {
    fn push(&mut self, address: String) {
        let key = match address.rsplit_once('@') {
            Some((local, domain)) => format!("{local}@{}", fold(domain)),
            None => address.clone(),
        };
        if self.seen.insert(key) {
            self.list.push(address);
        }
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
///
/// `edit` gets the lines without their line ends (LF or CRLF); each line it returns is written
/// followed by LF. The temp file is `.NAME.tmpXXXXXXXX`, created 0600 and only then given its final owner and
/// mode, so the hashes are never readable by others on the way. Ownership is set when running
/// as root; otherwise the file belongs to whoever edits it (only the group is attempted). A
/// line containing CR or LF is refused as `Invalid`. A symlink at `path` is replaced by the
/// new file, not followed.
pub fn edit_file(
    path: &Path,
    new_mode: u32,
    new_owner: Option<(u32, u32)>,
    edit: impl FnOnce(Vec<String>) -> Result<Vec<String>, EditError>,
) -> Result<(), EditError> {
    let Some(name) = path.file_name() else {
        return Err(EditError::Invalid(format!(
            "{}: not a file name",
            path.display()
        )));
    };
    let dir_path = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = File::open(dir_path).map_err(|e| io_context(dir_path, e))?;
    // One lock for every file of the directory: two admin commands (or a command and a reload
    // that rewrites) take turns instead of one losing the other's change.
    dir.lock().map_err(|e| io_context(dir_path, e))?;
    let (lines, old) = read_lines(path)?;
    let lines = edit(lines)?;
    if let Some(bad) = lines.iter().find(|l| l.contains(['\n', '\r'])) {
        return Err(EditError::Invalid(format!(
            "{}: a line may not contain CR or LF: {bad:?}",
            path.display()
        )));
    }
    let (mode, owner) = match &old {
        Some(meta) => (meta.mode() & 0o7777, Some((meta.uid(), meta.gid()))),
        None => (new_mode, new_owner),
    };
    let (tmp_path, tmp) = create_temp(dir_path, name)?;
    let written = write_temp(&tmp, &lines, mode, owner)
        // rename(2) replaces `path` in one step: a reader sees the old file or the new one.
        .and_then(|()| std::fs::rename(&tmp_path, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(io_context(path, e));
    }
    // The new directory entry survives a crash only once the directory itself is on disk.
    dir.sync_all().map_err(|e| io_context(dir_path, e))?;
    Ok(())
}

fn io_context(path: &Path, e: std::io::Error) -> EditError {
    EditError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// The file's lines and metadata; an absent file reads as no lines and no metadata.
fn read_lines(path: &Path) -> Result<(Vec<String>, Option<std::fs::Metadata>), EditError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(io_context(path, e)),
    };
    let meta = file.metadata().map_err(|e| io_context(path, e))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| io_context(path, e))?;
    Ok((text.lines().map(String::from).collect(), Some(meta)))
}

/// Creates `.NAME.tmpXXXXXXXX` beside the file, mode 0600, never reusing an existing name.
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> Result<(PathBuf, File), EditError> {
    for _ in 0..100 {
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp{:08x}", rand::random::<u32>()));
        let tmp_path = dir.join(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp_path)
        {
            Ok(file) => return Ok((tmp_path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_context(&tmp_path, e)),
        }
    }
    Err(EditError::Invalid(format!(
        "{}: no free temporary file name",
        dir.display()
    )))
}

fn write_temp(
    file: &File,
    lines: &[String],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    if let Some((uid, gid)) = owner {
        set_owner(file, uid, gid)?;
    }
    // After chown, which may clear set-id bits.
    file.set_permissions(Permissions::from_mode(mode))?;
    let mut out = BufWriter::new(file);
    for line in lines {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    drop(out);
    // The data must be on disk before the rename makes it the file: otherwise a crash could
    // leave an empty users file in place of the old one.
    file.sync_all()
}

fn set_owner(file: &File, uid: u32, gid: u32) -> std::io::Result<()> {
    let meta = file.metadata()?;
    if meta.uid() == uid && meta.gid() == gid {
        return Ok(());
    }
    if nix::unistd::geteuid().is_root() {
        return std::os::unix::fs::fchown(file, Some(uid), Some(gid));
    }
    // Not root: we cannot give the file away, but may keep its group if we belong to it.
    let _ = std::os::unix::fs::fchown(file, None, Some(gid));
    Ok(())
}

#[cfg(test)]
#[path = "users_tests.rs"]
mod tests;

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
mod tests {
    use super::*;

    const H1: &str = "{SHA512-CRYPT}$6$Zq3vLx9PqWm2Rt8K$h9i7vpvvNSxgPcZ.aw3rrcAWC5LXgCl18iTvW2s.7Jz4TdOVdwI9cCfqlnsRyhl7y0XYagj2Fyd/TqoNCU9aZ/";
    const H2: &str = "{BLF-CRYPT}$2y$04$MSxbO.rAnbN5UFq4MdtsW.Zv7BqjtGK0dvTXXXTlLaSfKoccg/Sue";

    fn users(text: &str) -> Parsed<Users> {
        parse_users(Path::new("/etc/postern/users"), text)
    }

    fn aliases(text: &str) -> Parsed<Aliases> {
        parse_aliases(Path::new("/etc/postern/aliases"), text)
    }

    /// `(line, message)` of each problem.
    fn lines(problems: &[FileProblem]) -> Vec<(usize, String)> {
        problems
            .iter()
            .map(|p| (p.line, p.message.clone()))
            .collect()
    }

    fn only_error(problems: &[FileProblem]) -> (usize, String) {
        assert_eq!(problems.len(), 1, "{problems:?}");
        (problems[0].line, problems[0].message.clone())
    }

    // ---- users file ----------------------------------------------------------------------

    #[test]
    fn users_parse_with_comments_blank_lines_and_extra_fields() {
        let text = format!(
            "# Postern users\n\n  alice@Example.ORG:{H1}  \n\t# indented comment\nBob@example.org:{H2}:1000:1000::/home/bob::userdb_quota_rule=*:storage=1G\r\n"
        );
        let p = users(&text);
        assert!(p.errors.is_empty() && p.warnings.is_empty(), "{p:?}");
        assert_eq!(p.value.len(), 2);
        let alice = p.value.get("ALICE@example.org").unwrap();
        assert_eq!(alice.address, "alice@example.org");
        assert_eq!(alice.line, 3);
        assert!(alice.extra.is_empty());
        assert!(alice.password.verify(b"correct horse battery staple"));
        let bob = p.value.get("bob@EXAMPLE.org").unwrap();
        assert_eq!(bob.address, "Bob@example.org", "local part as written");
        assert_eq!(bob.line, 5);
        assert_eq!(
            bob.extra,
            [
                "1000",
                "1000",
                "",
                "/home/bob",
                "",
                "userdb_quota_rule=*",
                "storage=1G"
            ]
        );
        assert!(bob.password.verify(b"hunter2"));
        assert!(p.value.get("carol@example.org").is_none());
        let all: Vec<&str> = p.value.iter().map(|u| u.address.as_str()).collect();
        assert_eq!(all, ["alice@example.org", "Bob@example.org"]);
    }

    #[test]
    fn empty_users_file_is_empty() {
        let p = users("");
        assert!(p.value.is_empty() && p.errors.is_empty() && p.warnings.is_empty());
        assert!(users("\n# nothing\n   \n").value.is_empty());
    }

    #[test]
    fn users_errors_name_line_and_problem() {
        let cases: &[(&str, &[&str])] = &[
            ("alice@example.org", &["missing ':'"]),
            (":{PLAIN}x", &["empty address"]),
            (
                "alice:{PLAIN}x",
                &["\"alice\" has no '@'", "user@example.org"],
            ),
            ("@example.org:{PLAIN}x", &["empty local part"]),
            ("alice@:{PLAIN}x", &["empty domain"]),
            ("a@b@example.org:{PLAIN}x", &["more than one '@'"]),
            ("alice @example.org:{PLAIN}x", &["contains whitespace"]),
            ("alice@example.org :{PLAIN}x", &["contains whitespace"]),
            (
                "alice@example.org:",
                &[
                    "bad password field",
                    "must start with {SCHEME}",
                    "postern user passwd",
                ],
            ),
            ("alice@example.org:hunter2", &["must start with {SCHEME}"]),
            (
                "alice@example.org:{MD5}x",
                &["unknown password scheme \"MD5\"", "postern user passwd"],
            ),
            (
                "alice@example.org:{SHA512-CRYPT}$6$x",
                &["malformed SHA512-CRYPT hash"],
            ),
            (
                "alice@example.org:{BLF-CRYPT}$6$x:1000",
                &["malformed BLF-CRYPT hash"],
            ),
        ];
        for (line, wanted) in cases {
            let text = format!("# header\n{line}\n");
            let p = users(&text);
            let (n, message) = only_error(&p.errors);
            assert_eq!(n, 2, "{line}");
            for w in *wanted {
                assert!(message.contains(w), "{line:?}: {message:?} lacks {w:?}");
            }
            assert!(p.value.is_empty(), "{line}");
            assert_eq!(
                p.errors[0].to_string(),
                format!("/etc/postern/users:2: {message}")
            );
        }
    }

    #[test]
    fn duplicate_users_compare_case_insensitively_and_name_the_first_line() {
        let text =
            format!("alice@example.org:{H1}\nbob@example.org:{H2}\n\nALICE@Example.org:{H2}\n");
        let p = users(&text);
        let (line, message) = only_error(&p.errors);
        assert_eq!(line, 4);
        assert!(
            message.contains("duplicate address \"ALICE@example.org\""),
            "{message}"
        );
        assert!(message.contains("first on line 1"), "{message}");
        // The first entry wins.
        assert!(
            p.value
                .get("alice@example.org")
                .unwrap()
                .password
                .verify(b"correct horse battery staple")
        );
        assert_eq!(p.value.len(), 2);
    }

    #[test]
    fn plain_passwords_are_a_warning() {
        let p = users(&format!(
            "alice@example.org:{H1}\ncarol@example.org:{{PLAIN}}hunter2\n"
        ));
        assert!(p.errors.is_empty());
        assert_eq!(
            lines(&p.warnings),
            [(
                2,
                "\"carol@example.org\" stores a cleartext password; hash it with `postern user passwd`"
                    .to_string()
            )]
        );
        assert!(
            p.value
                .get("carol@example.org")
                .unwrap()
                .password
                .verify(b"hunter2")
        );
    }

    #[test]
    fn every_bad_line_is_reported_and_good_lines_kept() {
        let text = format!("bad\nalice@example.org:{H1}\nx@y:{{NOPE}}z\nbob@example.org:{H2}\n");
        let p = users(&text);
        assert_eq!(p.errors.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(p.value.len(), 2);
    }

    // ---- aliases file --------------------------------------------------------------------

    #[test]
    fn aliases_parse_targets_separated_by_commas_and_whitespace() {
        let text = "# aliases\n\nPostmaster@Example.org: alice@example.org, Bob@Example.org\nteam@example.org:alice@example.org,bob@example.org  carol@elsewhere.net\n@example.net : alice@example.org\n";
        let p = aliases(text);
        assert!(p.errors.is_empty() && p.warnings.is_empty(), "{p:?}");
        assert_eq!(
            p.value.entries(),
            [
                (
                    "@example.net".to_string(),
                    vec!["alice@example.org".to_string()]
                ),
                (
                    "postmaster@example.org".to_string(),
                    vec![
                        "alice@example.org".to_string(),
                        "Bob@Example.org".to_string()
                    ]
                ),
                (
                    "team@example.org".to_string(),
                    vec![
                        "alice@example.org".to_string(),
                        "bob@example.org".to_string(),
                        "carol@elsewhere.net".to_string()
                    ]
                ),
            ]
        );
    }

    #[test]
    fn catch_all_sorts_first_in_its_domain() {
        let p = aliases("z@b.org: x@y\n@b.org: x@y\na@b.org: x@y\n@a.org: x@y\n");
        let names: Vec<String> = p.value.entries().into_iter().map(|(a, _)| a).collect();
        assert_eq!(names, ["@a.org", "@b.org", "a@b.org", "z@b.org"]);
    }

    #[test]
    fn aliases_errors_name_line_and_problem() {
        let cases: &[(&str, &[&str])] = &[
            ("team@example.org alice@example.org", &["missing ':'"]),
            (
                "team@example.org:",
                &["\"team@example.org\" has no targets"],
            ),
            ("team@example.org: , ,", &["has no targets"]),
            ("team@example.org: alice", &["target \"alice\" has no '@'"]),
            (
                "team@example.org: alice@example.org, @example.org",
                &["target \"@example.org\" has an empty local part"],
            ),
            (
                "team@example.org: alice@",
                &["target \"alice@\" has an empty domain"],
            ),
            ("team: alice@example.org", &["alias \"team\" has no '@'"]),
            (
                "te am@example.org: alice@example.org",
                &["alias \"te am@example.org\" contains whitespace"],
            ),
            (": alice@example.org", &["empty alias"]),
            (
                "@: alice@example.org",
                &["catch-all \"@\" has an empty domain"],
            ),
            (
                "@a@b: alice@example.org",
                &["catch-all \"@a@b\" has more than one '@'"],
            ),
        ];
        for (line, wanted) in cases {
            let p = aliases(&format!("\n{line}\n"));
            let (n, message) = only_error(&p.errors);
            assert_eq!(n, 2, "{line}");
            for w in *wanted {
                assert!(message.contains(w), "{line:?}: {message:?} lacks {w:?}");
            }
            assert!(p.value.entries().is_empty(), "{line}");
        }
    }

    #[test]
    fn duplicate_aliases_and_catch_alls_name_the_first_line() {
        let p = aliases(
            "team@example.org: a@x\n@example.org: b@x\nTEAM@example.org: c@x\n@EXAMPLE.org: d@x\n",
        );
        let found = lines(&p.errors);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 3);
        assert!(
            found[0].1.contains("duplicate alias \"team@example.org\"")
                && found[0].1.contains("first on line 1"),
            "{found:?}"
        );
        assert_eq!(found[1].0, 4);
        assert!(
            found[1].1.contains("duplicate alias \"@example.org\"")
                && found[1].1.contains("first on line 2"),
            "{found:?}"
        );
        assert_eq!(p.value.entries()[1].1, ["a@x"], "the first line wins");
    }

    // ---- resolution ----------------------------------------------------------------------

    fn directory(users_text: &str, aliases_text: &str) -> Directory {
        let u = users(users_text);
        let a = aliases(aliases_text);
        assert!(u.errors.is_empty(), "{:?}", u.errors);
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        Directory {
            users: u.value,
            aliases: a.value,
            domains: vec!["example.org".into(), "example.net".into()],
        }
    }

    fn standard() -> Directory {
        directory(
            &format!(
                "alice@example.org:{H1}\nBob@example.org:{H2}\ncarol@example.net:{H1}\nfoo+bar@example.org:{H1}\n"
            ),
            "postmaster@example.org: alice@example.org\n\
             team@example.org: alice@example.org, bob@example.org, friend@elsewhere.net\n\
             everyone@example.org: team@example.org, carol@example.net, ALICE@example.org, friend@ELSEWHERE.net\n\
             tagged@example.org: bob+lists@example.org\n\
             ghost@example.org: nobody@example.org\n\
             mixed@example.org: nobody@example.org, carol@example.net\n\
             @example.net: alice@example.org\n\
             remote@example.org: Someone@Far.Away\n\
             alice@elsewhere.net: bob@example.org\n",
        )
    }

    fn mailbox(a: &str) -> Resolution {
        Resolution::Mailbox(a.to_string())
    }

    fn alias(targets: &[&str]) -> Resolution {
        Resolution::Alias(targets.iter().map(|t| t.to_string()).collect())
    }

    #[test]
    fn mailboxes_resolve_case_insensitively_to_the_canonical_address() {
        let d = standard();
        assert_eq!(d.resolve("alice@example.org"), mailbox("alice@example.org"));
        assert_eq!(d.resolve("ALICE@Example.ORG"), mailbox("alice@example.org"));
        assert_eq!(d.resolve("bob@example.org"), mailbox("Bob@example.org"));
        assert_eq!(d.resolve("carol@EXAMPLE.NET"), mailbox("carol@example.net"));
    }

    #[test]
    fn unknown_and_malformed_addresses() {
        let d = standard();
        assert_eq!(d.resolve("nobody@example.org"), Resolution::Unknown);
        assert_eq!(d.resolve("alice"), Resolution::Unknown);
        assert_eq!(d.resolve(""), Resolution::Unknown);
        assert_eq!(d.resolve("@example.org"), Resolution::Unknown);
        assert_eq!(d.resolve("alice@"), Resolution::Unknown);
        assert_eq!(d.resolve("al ice@example.org"), Resolution::Unknown);
    }

    #[test]
    fn non_local_domains_are_unknown_even_when_listed_in_the_files() {
        let mut d = standard();
        assert_eq!(d.resolve("alice@elsewhere.net"), Resolution::Unknown);
        assert_eq!(d.resolve("friend@elsewhere.net"), Resolution::Unknown);
        d.domains.retain(|x| x != "example.net");
        assert_eq!(
            d.resolve("carol@example.net"),
            Resolution::Unknown,
            "user in a domain no longer local"
        );
        assert_eq!(
            d.resolve("anyone@example.net"),
            Resolution::Unknown,
            "catch-all of a domain no longer local"
        );
        // Targets in a domain that is not local are kept as written.
        assert_eq!(
            d.resolve("mixed@example.org"),
            alias(&["carol@example.net"])
        );
    }

    #[test]
    fn aliases_expand_with_canonical_local_targets_and_remote_ones_as_written() {
        let d = standard();
        assert_eq!(
            d.resolve("Postmaster@example.org"),
            alias(&["alice@example.org"])
        );
        assert_eq!(
            d.resolve("team@example.org"),
            alias(&[
                "alice@example.org",
                "Bob@example.org",
                "friend@elsewhere.net"
            ])
        );
        assert_eq!(
            d.resolve("remote@example.org"),
            alias(&["Someone@Far.Away"])
        );
    }

    #[test]
    fn alias_expansion_is_recursive_and_deduplicated_in_first_seen_order() {
        let d = standard();
        assert_eq!(
            d.resolve("everyone@example.org"),
            alias(&[
                "alice@example.org",
                "Bob@example.org",
                "friend@elsewhere.net",
                "carol@example.net"
            ])
        );
    }

    #[test]
    fn remote_targets_differing_in_local_part_case_are_kept_apart() {
        let d = directory(
            "",
            "x@example.org: Friend@far.org, friend@FAR.org, friend@far.org\n",
        );
        assert_eq!(
            d.resolve("x@example.org"),
            alias(&["Friend@far.org", "friend@FAR.org"])
        );
    }

    #[test]
    fn plus_tags_resolve_to_the_base_address() {
        let d = standard();
        assert_eq!(
            d.resolve("alice+news@example.org"),
            mailbox("alice@example.org")
        );
        assert_eq!(
            d.resolve("ALICE+News@example.org"),
            mailbox("alice@example.org")
        );
        assert_eq!(
            d.resolve("alice+a+b@example.org"),
            mailbox("alice@example.org")
        );
        assert_eq!(
            d.resolve("team+x@example.org"),
            d.resolve("team@example.org")
        );
        // The exact address wins over the tag rule.
        assert_eq!(
            d.resolve("foo+bar@example.org"),
            mailbox("foo+bar@example.org")
        );
        assert_eq!(d.resolve("foo+baz@example.org"), Resolution::Unknown);
        assert_eq!(d.resolve("+tag@example.org"), Resolution::Unknown);
        assert_eq!(d.resolve("nobody+x@example.org"), Resolution::Unknown);
        // ...and tagged targets resolve like recipients.
        assert_eq!(d.resolve("tagged@example.org"), alias(&["Bob@example.org"]));
    }

    #[test]
    fn catch_all_comes_after_exact_alias_mailbox_and_tag() {
        let d = standard();
        assert_eq!(
            d.resolve("anything@example.net"),
            alias(&["alice@example.org"])
        );
        assert_eq!(d.resolve("carol@example.net"), mailbox("carol@example.net"));
        assert_eq!(
            d.resolve("carol+x@example.net"),
            mailbox("carol@example.net")
        );
        let d = directory(
            &format!("alice@example.org:{H1}\n"),
            "@example.org: alice@example.org\nsales@example.org: remote@far.org\n",
        );
        assert_eq!(d.resolve("sales@example.org"), alias(&["remote@far.org"]));
        assert_eq!(d.resolve("alice@example.org"), mailbox("alice@example.org"));
        assert_eq!(
            d.resolve("random@example.org"),
            alias(&["alice@example.org"])
        );
        assert_eq!(
            d.resolve("random@EXAMPLE.org"),
            alias(&["alice@example.org"])
        );
    }

    #[test]
    fn unknown_local_targets_go_to_the_catch_all_or_drop_out() {
        let d = standard();
        // ghost's only target is unknown in example.org, which has no catch-all.
        assert_eq!(d.resolve("ghost@example.org"), Resolution::Unknown);
        assert_eq!(
            d.resolve("mixed@example.org"),
            alias(&["carol@example.net"])
        );
        let d = directory(
            &format!("alice@example.org:{H1}\n"),
            "ghost@example.org: nobody@example.org\n@example.org: alice@example.org\n",
        );
        assert_eq!(
            d.resolve("ghost@example.org"),
            alias(&["alice@example.org"])
        );
    }

    #[test]
    fn a_catch_all_naming_an_unknown_address_of_its_domain_stops() {
        let d = directory("", "@example.org: nobody@example.org\n");
        assert_eq!(d.resolve("x@example.org"), Resolution::Unknown);
    }

    #[test]
    fn self_target_is_kept_as_the_mailbox() {
        let d = directory(
            &format!("a@example.org:{H1}\nb@example.org:{H2}\n"),
            "a@example.org: a@example.org, b@example.org\n",
        );
        assert_eq!(
            d.resolve("A@example.org"),
            alias(&["a@example.org", "b@example.org"])
        );
        assert_eq!(d.resolve("b@example.org"), mailbox("b@example.org"));
    }

    #[test]
    fn cycles_stop() {
        let d = directory(
            &format!("user@example.org:{H1}\n"),
            "a@example.org: b@example.org\nb@example.org: a@example.org, user@example.org\nc@example.org: c@example.org\nx@example.org: y@example.org\ny@example.org: x@example.org\n",
        );
        assert_eq!(d.resolve("a@example.org"), alias(&["user@example.org"]));
        assert_eq!(d.resolve("b@example.org"), alias(&["user@example.org"]));
        assert_eq!(d.resolve("c@example.org"), Resolution::Unknown);
        assert_eq!(d.resolve("x@example.org"), Resolution::Unknown);
    }

    #[test]
    fn a_cycle_through_mailboxes_ends_at_the_mailbox() {
        let d = directory(
            &format!("a@example.org:{H1}\nb@example.org:{H2}\n"),
            "a@example.org: b@example.org\nb@example.org: a@example.org\n",
        );
        assert_eq!(d.resolve("a@example.org"), alias(&["a@example.org"]));
        assert_eq!(d.resolve("b@example.org"), alias(&["b@example.org"]));
    }

    /// `l0 -> l1 -> ... -> l{n-1} -> user`
    fn chain(n: usize) -> Directory {
        let mut text = String::new();
        for i in 0..n {
            let next = if i + 1 == n {
                "user@example.org".to_string()
            } else {
                format!("l{}@example.org", i + 1)
            };
            text.push_str(&format!("l{i}@example.org: {next}\n"));
        }
        directory(&format!("user@example.org:{H1}\n"), &text)
    }

    #[test]
    fn alias_depth_is_limited_to_ten() {
        assert_eq!(
            chain(MAX_ALIAS_DEPTH).resolve("l0@example.org"),
            alias(&["user@example.org"])
        );
        assert_eq!(
            chain(MAX_ALIAS_DEPTH + 1).resolve("l0@example.org"),
            Resolution::Unknown
        );
        assert_eq!(
            chain(MAX_ALIAS_DEPTH + 1).resolve("l1@example.org"),
            alias(&["user@example.org"])
        );
    }

    #[test]
    fn fan_out_work_is_bounded() {
        // Ten levels of ten aliases, each naming all ten of the next level: 10^10 paths.
        let mut text = String::new();
        for level in 0..10 {
            for i in 0..10 {
                let next: Vec<String> = (0..10)
                    .map(|j| {
                        if level == 9 {
                            format!("r{j}@far.org")
                        } else {
                            format!("a{}x{j}@example.org", level + 1)
                        }
                    })
                    .collect();
                text.push_str(&format!("a{level}x{i}@example.org: {}\n", next.join(", ")));
            }
        }
        let d = directory("", &text);
        let start = std::time::Instant::now();
        let found = d.resolve("a0x0@example.org");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        let Resolution::Alias(targets) = found else {
            panic!("{found:?}")
        };
        assert!(targets.len() <= 10);
    }

    #[test]
    fn users_of_lists_a_domain_sorted() {
        let d = standard();
        assert_eq!(
            d.users_of("EXAMPLE.org"),
            [
                "Bob@example.org",
                "alice@example.org",
                "foo+bar@example.org"
            ]
        );
        assert_eq!(d.users_of("example.net"), ["carol@example.net"]);
        assert!(d.users_of("elsewhere.net").is_empty());
    }

    #[test]
    fn sender_addresses_are_the_user_and_aliases_reaching_it() {
        let d = standard();
        assert_eq!(
            d.sender_addresses("ALICE@example.org"),
            [
                "alice@example.org",
                "everyone@example.org",
                "postmaster@example.org",
                "team@example.org"
            ]
        );
        // tagged@ reaches Bob through bob+lists@; alice@elsewhere.net is not a local domain.
        assert_eq!(
            d.sender_addresses("bob@example.org"),
            [
                "Bob@example.org",
                "everyone@example.org",
                "tagged@example.org",
                "team@example.org"
            ]
        );
        // carol gets mixed@ and everyone@ but not the example.net catch-all.
        assert_eq!(
            d.sender_addresses("carol@example.net"),
            [
                "carol@example.net",
                "everyone@example.org",
                "mixed@example.org"
            ]
        );
        assert!(d.sender_addresses("nobody@example.org").is_empty());
        let d = directory(
            &format!("a@example.org:{H1}\n"),
            "a@example.org: a@example.org, x@far.org\n",
        );
        assert_eq!(d.sender_addresses("a@example.org"), ["a@example.org"]);
    }

    proptest::proptest! {
        #[test]
        fn parsers_and_resolution_never_panic(
            text in "([a-zA-Z@:+#, .{}$\\-]{0,30}\r?\n){0,8}",
            probe in "[a-zA-Z@+.]{0,20}",
        ) {
            let u = users(&text);
            let a = aliases(&text);
            for problem in u.errors.iter().chain(&a.errors) {
                let line_ok = problem.line >= 1 && problem.line <= text.lines().count();
                proptest::prop_assert!(line_ok, "{problem}");
            }
            let d = Directory {
                users: u.value,
                aliases: a.value,
                domains: vec!["b".into(), "c.d".into()],
            };
            let _ = d.resolve(&probe);
            for (alias, _) in d.aliases.entries() {
                let _ = d.resolve(&alias);
                let _ = d.sender_addresses(&alias);
            }
            let _ = d.users_of("b");
        }
    }

    // ---- edit_file -----------------------------------------------------------------------

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn dir_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn edit_creates_a_missing_file_with_the_new_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        edit_file(&path, 0o640, None, |lines| {
            assert!(lines.is_empty());
            Ok(vec![
                "a@example.org:{PLAIN}x".into(),
                String::new(),
                "# c".into(),
            ])
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "a@example.org:{PLAIN}x\n\n# c\n"
        );
        assert_eq!(mode_of(&path), 0o640);
        assert_eq!(dir_names(dir.path()), ["users"]);
    }

    #[test]
    fn edit_sees_current_lines_and_preserves_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases");
        std::fs::write(&path, "one\r\ntwo\nthree").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o604)).unwrap();
        edit_file(&path, 0o600, None, |mut lines| {
            assert_eq!(lines, ["one", "two", "three"]);
            lines.push("four".into());
            Ok(lines)
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "one\ntwo\nthree\nfour\n"
        );
        assert_eq!(mode_of(&path), 0o604, "the old mode, not new_mode");
    }

    #[test]
    fn edit_preserves_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "x\n").unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let my_group = nix::unistd::getegid().as_raw();
        let (uid, gid) = if me == 0 {
            std::os::unix::fs::chown(&path, Some(4242), Some(4343)).unwrap();
            (4242, 4343)
        } else {
            (me, my_group)
        };
        edit_file(&path, 0o600, Some((0, 0)), Ok).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        if me == 0 {
            let fresh = dir.path().join("fresh");
            edit_file(&fresh, 0o640, Some((4242, 4343)), |_| Ok(vec!["y".into()])).unwrap();
            let meta = std::fs::metadata(&fresh).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o7777),
                (4242, 4343, 0o640)
            );
        }
    }

    #[test]
    fn a_failing_edit_leaves_the_file_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let original = b"alice@example.org:{PLAIN}x\r\n# no final newline";
        std::fs::write(&path, original).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        let err = edit_file(&path, 0o600, None, |_| {
            Err(EditError::Invalid("no such user".into()))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "no such user");
        let err = edit_file(&path, 0o600, None, |_| Ok(vec!["a\nb".into()])).unwrap_err();
        assert!(matches!(err, EditError::Invalid(_)), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), original);
        assert_eq!(mode_of(&path), 0o640);
        assert_eq!(dir_names(dir.path()), ["users"], "no temp file left behind");
        // A failing edit of a missing file creates nothing.
        let missing = dir.path().join("aliases");
        assert!(
            edit_file(&missing, 0o600, None, |_| Err(EditError::Invalid(
                "x".into()
            )))
            .is_err()
        );
        assert!(!missing.exists());
    }

    #[test]
    fn concurrent_edits_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::thread::scope(|scope| {
            for t in 0..2 {
                let path = &path;
                scope.spawn(move || {
                    for i in 0..50 {
                        edit_file(path, 0o600, None, |mut lines| {
                            lines.push(format!("t{t}-{i}"));
                            Ok(lines)
                        })
                        .unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let mut got: Vec<&str> = text.lines().collect();
        assert_eq!(got.len(), 100);
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 100);
        for t in 0..2 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("t{t}-")))
                .collect();
            let expected: Vec<String> = (0..50).map(|i| format!("t{t}-{i}")).collect();
            assert_eq!(mine, expected, "each thread's lines in its order");
        }
        assert_eq!(dir_names(dir.path()), ["users"]);
    }

    #[test]
    fn edit_reports_the_path_on_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("users");
        let err = edit_file(&path, 0o600, None, Ok).unwrap_err();
        assert!(matches!(err, EditError::Io(_)));
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }
}

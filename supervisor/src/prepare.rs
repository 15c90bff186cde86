//! Everything `postern serve` and `postern check` verify before anything is touched (service
//! users, binaries, users/aliases files, TLS files, relay password), then what `serve` sets up
//! as root before spawning (directories with owners and modes, the self-signed certificate)
//! and the configuration slice of each child.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};
use shared::config::slice::{AuthSlice, DaemonSlice, DkimKey, RelaySlice, TlsMaterial};
use shared::config::{Config, Role};

/// What `inspect` found: errors stop `serve` and fail `check`; warnings are printed.
#[derive(Default)]
pub struct Inspection {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Per role, the user to drop to (root only).
    pub ids: Vec<(Role, Uid, Gid)>,
    pub binaries: Vec<(Role, PathBuf)>,
    pub relay_password: Option<String>,
    /// `[dkim] keys` with their PEM text.
    pub dkim_keys: Vec<DkimKey>,
    /// Service users to create at start (`create_missing`).
    pub to_create: Vec<String>,
}

/// A child ready to be spawned.
pub struct ChildPlan {
    pub role: Role,
    pub program: PathBuf,
    pub args: Vec<&'static str>,
    pub drop_to: Option<(Uid, Gid)>,
    pub slice: Vec<u8>,
}

pub fn running_as_root() -> bool {
    Uid::effective().is_root()
}

/// The `useradd` line that creates a missing service user.
fn useradd_hint(name: &str) -> String {
    format!(
        "create it with: useradd --system --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin {name}"
    )
}

/// Checks everything `serve` needs, touching nothing.
pub fn inspect(config: &Config, as_root: bool) -> Inspection {
    let mut found = Inspection::default();
    if as_root {
        for role in Role::ALL {
            let name = config.service_users.for_role(role);
            match User::from_name(name) {
                Ok(Some(u)) if u.uid.is_root() => found.errors.push(format!(
                    "service user {name} ({}) has uid 0: daemons never run as root",
                    role.process_name()
                )),
                Ok(Some(u)) => found.ids.push((role, u.uid, u.gid)),
                Ok(None) if config.service_users.create_missing => {
                    if !found.to_create.iter().any(|n| n == name) {
                        found.warnings.push(format!("service user {name} does not exist; it is created at start (create_missing = true)"));
                        found.to_create.push(name.to_string());
                    }
                }
                Ok(None) => found.errors.push(format!(
                    "service user {name} ({}) does not exist; {}",
                    role.process_name(),
                    useradd_hint(name)
                )),
                Err(e) => found
                    .errors
                    .push(format!("cannot look up user {name}: {e}")),
            }
        }
    }
    for role in Role::ALL {
        match find_binary(role) {
            Ok(p) => found.binaries.push((role, p)),
            Err(e) => found.errors.push(e),
        }
    }
    inspect_users(config, &mut found);
    inspect_tls(config, &mut found);
    inspect_relay(config, &mut found);
    inspect_dkim(config, &mut found);
    if as_root && found.to_create.is_empty() {
        let errors = check_access(config, &found);
        found.errors.extend(errors);
    }
    found
}

/// As root, with every service user known: can each daemon reach what it must? (A checkout
/// under a 0700 home directory, or a users file authd cannot read, would otherwise only show
/// as daemons failing in a loop.)
fn check_access(config: &Config, found: &Inspection) -> Vec<String> {
    let mut errors = Vec::new();
    for (role, uid, gid) in &found.ids {
        let name = config.service_users.for_role(*role);
        let mut needs: Vec<PathBuf> = vec![config.runtime_dir.join("notify.sock")];
        if let Some((_, bin)) = found.binaries.iter().find(|(r, _)| r == role) {
            needs.push(bin.clone());
        }
        match role {
            Role::Authd => needs.extend([config.users_file.clone(), config.aliases_file.clone()]),
            Role::Mta => needs.push(config.queue_dir().join("x")),
            Role::Mda | Role::Imapd | Role::Pop3d => needs.push(config.mail_dir().join("x")),
        }
        for path in needs {
            if let Some(dir) = unsearchable_ancestor(&path, *uid, *gid) {
                errors.push(format!(
                    "{} (user {name}) cannot reach {}: directory {} is closed to it; \
                     give it o+x (chmod o+x {}) or move the files elsewhere",
                    role.process_name(),
                    path.display(),
                    dir.display(),
                    dir.display()
                ));
            }
        }
        if *role == Role::Authd
            && let Some(e) = users_file_unreadable(config, *uid, *gid)
        {
            errors.push(e);
        }
    }
    errors.sort();
    errors.dedup();
    errors
}

/// The first existing ancestor directory of `path` that `uid`/`gid` (no supplementary
/// groups: the daemons have none) cannot search. Missing ones are created later, 0755.
fn unsearchable_ancestor(path: &Path, uid: Uid, gid: Gid) -> Option<PathBuf> {
    path.ancestors().skip(1).find_map(|dir| {
        let meta = std::fs::metadata(dir).ok()?;
        (!permits(&meta, uid, gid, 0o1)).then(|| dir.to_path_buf())
    })
}

/// Whether the permission bits `bits` (4 read, 2 write, 1 execute/search) are granted to
/// `uid`/`gid` with no supplementary groups: the owner class if it owns the file, else the
/// group class if in its group, else the others class (chmod(1)).
fn permits(meta: &std::fs::Metadata, uid: Uid, gid: Gid, bits: u32) -> bool {
    let mode = meta.permissions().mode();
    let class = if meta.uid() == uid.as_raw() {
        mode >> 6
    } else if meta.gid() == gid.as_raw() {
        mode >> 3
    } else {
        mode
    };
    class & bits == bits
}

/// The users file holds password hashes: authd must be able to read it.
fn users_file_unreadable(config: &Config, uid: Uid, gid: Gid) -> Option<String> {
    let path = &config.users_file;
    let meta = std::fs::metadata(path).ok()?;
    let name = &config.service_users.auth;
    (!permits(&meta, uid, gid, 0o4)).then(|| {
        format!(
            "{}: authd (user {name}) cannot read it: chown root:{name} {p} && chmod 0640 {p}",
            path.display(),
            p = path.display()
        )
    })
}

fn inspect_users(config: &Config, found: &mut Inspection) {
    for (path, is_users) in [(&config.users_file, true), (&config.aliases_file, false)] {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                found.warnings.push(format!(
                    "{}: does not exist; {}",
                    path.display(),
                    if is_users {
                        "no one can log in until `postern user add` creates it"
                    } else {
                        "no aliases"
                    }
                ));
                continue;
            }
            Err(e) => {
                found
                    .errors
                    .push(format!("{}: cannot read: {e}", path.display()));
                continue;
            }
        };
        let (errors, warnings) = if is_users {
            let p = shared::users::parse_users(path, &text);
            (p.errors, p.warnings)
        } else {
            let p = shared::users::parse_aliases(path, &text);
            (p.errors, p.warnings)
        };
        found.errors.extend(errors.iter().map(ToString::to_string));
        found
            .warnings
            .extend(warnings.iter().map(ToString::to_string));
        if is_users {
            warn_if_world_readable(path, found);
        }
    }
}

/// The users file holds password hashes: others must not read it.
fn warn_if_world_readable(path: &Path, found: &mut Inspection) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o004 != 0 {
        found.warnings.push(format!(
            "{}: readable by every user (mode {:04o}); it holds password hashes: chmod 0640 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        ));
    }
}

fn inspect_tls(config: &Config, found: &mut Inspection) {
    if !config.needs_tls() {
        return;
    }
    let (cert, key) = (&config.tls.cert, &config.tls.key);
    let missing = !cert.exists() || !key.exists();
    if missing && config.tls.self_signed {
        return; // generated at start
    }
    if let Err(e) = shared::tls::read_material(cert, key) {
        let hint = if missing {
            "; set self_signed = true in [tls] to generate one, or install a certificate"
        } else {
            ""
        };
        found.errors.push(format!("tls: {e}{hint}"));
    }
}

fn inspect_relay(config: &Config, found: &mut Inspection) {
    let Some(path) = config.relay.as_ref().and_then(|r| r.password_file.as_ref()) else {
        return;
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            found.relay_password = text.lines().next().map(str::to_string);
            if found.relay_password.as_deref().unwrap_or("").is_empty() {
                found
                    .errors
                    .push(format!("{}: relay password file is empty", path.display()));
            }
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o004 != 0
            {
                found.warnings.push(format!(
                    "{}: readable by every user; chmod 0600 {}",
                    path.display(),
                    path.display()
                ));
            }
        }
        Err(e) => found.errors.push(format!(
            "{}: cannot read relay password: {e}",
            path.display()
        )),
    }
}

/// Reads the DKIM keys (as root: they may be 0600 root) and checks each is a private key.
fn inspect_dkim(config: &Config, found: &mut Inspection) {
    for k in &config.dkim {
        let path = k.key.display();
        match std::fs::read_to_string(&k.key) {
            Ok(key_pem) => {
                if !shared::tls::is_private_key_pem(&key_pem) {
                    found
                        .errors
                        .push(format!("{path}: no private key (PEM) for DKIM"));
                }
                if let Ok(meta) = std::fs::metadata(&k.key)
                    && meta.permissions().mode() & 0o004 != 0
                {
                    found.warnings.push(format!(
                        "{path}: DKIM key readable by every user; chmod 0600 {path}"
                    ));
                }
                found.dkim_keys.push(DkimKey {
                    domain: k.domain.clone(),
                    selector: k.selector.clone(),
                    key_pem,
                });
            }
            Err(e) => found
                .errors
                .push(format!("{path}: cannot read DKIM key: {e}")),
        }
    }
}

/// `postern authd` is this binary; the daemons live beside it, else in /usr/lib/postern.
pub fn find_binary(role: Role) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    if role == Role::Authd {
        return Ok(me);
    }
    let name = role.process_name();
    let candidates = [
        me.parent().map(|d| d.join(name)),
        Some(Path::new("/usr/lib/postern").join(name)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{name} not found beside {} nor in /usr/lib/postern (build the workspace: \
                 cargo build --workspace)",
                me.display()
            )
        })
}

/// Creates missing service users (`create_missing`), the directories of ARCHITECTURE §1 with
/// their owners and modes, the self-signed certificate if asked and missing, and reads the TLS
/// material.
pub fn set_up(config: &Config, found: &mut Inspection) -> Result<Option<TlsMaterial>, String> {
    let creating = !found.to_create.is_empty();
    create_users(config, found)?;
    if creating {
        let errors = check_access(config, found);
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
    }
    let owner = |role: Role| {
        found
            .ids
            .iter()
            .find(|(r, _, _)| *r == role)
            .map(|(_, u, g)| (*u, *g))
    };
    make_dir(&config.state_dir, 0o755, None, Existing::Keep)?;
    make_dir(
        &config.queue_dir(),
        0o700,
        owner(Role::Mta),
        Existing::Enforce,
    )?;
    make_dir(
        &config.mail_dir(),
        0o700,
        owner(Role::Mda),
        Existing::Enforce,
    )?;
    make_dir(&config.runtime_dir, 0o755, None, Existing::Keep)?;
    if !config.needs_tls() {
        return Ok(None);
    }
    let (cert, key) = (&config.tls.cert, &config.tls.key);
    if config.tls.self_signed && (!cert.exists() || !key.exists()) {
        let material =
            shared::tls::generate_self_signed(&config.hostname).map_err(|e| e.to_string())?;
        for (path, text, mode) in [
            (key, &material.key_pem, 0o600),
            (cert, &material.cert_pem, 0o644),
        ] {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            write_atomic(path, text.as_bytes(), mode)?;
        }
        tracing::info!(event = "tls.self_signed", cert = %cert.display(), "generated a self-signed certificate for {}", config.hostname);
    }
    shared::tls::read_material(cert, key)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// For the admin verbs: as root with `create_missing`, the service users exist before a
/// users file is created, so that it gets authd's group.
pub fn ensure_service_users(config: &Config) -> Result<(), String> {
    if !running_as_root() || !config.service_users.create_missing {
        return Ok(());
    }
    let mut found = Inspection::default();
    for role in Role::ALL {
        let name = config.service_users.for_role(role);
        if matches!(User::from_name(name), Ok(None)) && !found.to_create.iter().any(|n| n == name) {
            found.to_create.push(name.to_string());
        }
    }
    create_users(config, &mut found)
}

fn create_users(config: &Config, found: &mut Inspection) -> Result<(), String> {
    for name in std::mem::take(&mut found.to_create) {
        let status = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ])
            .status();
        // Another process may have created it meanwhile: what counts is that it exists now.
        match User::from_name(&name) {
            Ok(Some(_)) => tracing::info!(
                event = "service_user.created",
                "created service user {name}"
            ),
            _ => {
                return Err(format!(
                    "cannot create service user {name} (useradd: {status:?}); {}",
                    useradd_hint(&name)
                ));
            }
        }
    }
    for role in Role::ALL {
        if found.ids.iter().any(|(r, _, _)| *r == role) {
            continue;
        }
        let name = config.service_users.for_role(role);
        if let Ok(Some(u)) = User::from_name(name) {
            found.ids.push((role, u.uid, u.gid));
        }
    }
    Ok(())
}

/// Replaces `path` atomically (temp file with `mode` from the start, fsync, rename): a crash
/// leaves the old file or the new one, never half of a key.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

/// What to do with a directory that already exists.
#[derive(PartialEq)]
enum Existing {
    /// Leave it as the administrator made it (state_dir, runtime_dir may be shared paths).
    Keep,
    /// Give it our owner and mode (our own queue and mail directories).
    Enforce,
}

/// Creates `dir` if needed with `mode` and, as root, `owner` (root when `None`).
fn make_dir(
    dir: &Path,
    mode: u32,
    owner: Option<(Uid, Gid)>,
    existing: Existing,
) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    if dir.is_dir() && existing == Existing::Keep {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    if running_as_root() {
        let (uid, gid) = owner.unwrap_or((Uid::from_raw(0), Gid::from_raw(0)));
        nix::unistd::chown(dir, Some(uid), Some(gid)).map_err(|e| err(e.into()))?;
    }
    Ok(())
}

/// One plan per child, with its slice of the configuration.
pub fn plan_children(
    config: &Config,
    found: &Inspection,
    tls: Option<&TlsMaterial>,
) -> Vec<ChildPlan> {
    let id_of = |role: Role| {
        found
            .ids
            .iter()
            .find(|(r, _, _)| *r == role)
            .map(|(_, u, g)| (*u, *g))
    };
    let mut allowed_uids = vec![0, Uid::current().as_raw()];
    for role in [Role::Mta, Role::Mda] {
        if let Some((uid, _)) = id_of(role) {
            allowed_uids.push(uid.as_raw());
        }
    }
    allowed_uids.sort_unstable();
    allowed_uids.dedup();
    Role::ALL
        .into_iter()
        .filter_map(|role| {
            let program = found.binaries.iter().find(|(r, _)| *r == role)?.1.clone();
            let mut slice = DaemonSlice::common(config, role);
            match role {
                Role::Authd => {
                    slice.auth = Some(AuthSlice {
                        users_file: config.users_file.clone(),
                        aliases_file: config.aliases_file.clone(),
                        settings: config.auth.clone(),
                        allowed_uids: allowed_uids.clone(),
                    })
                }
                Role::Mta => {
                    slice.mta = Some(config.mta.clone());
                    slice.tls = tls.cloned();
                    slice.relay = config.relay.as_ref().map(|r| RelaySlice {
                        host: r.host.clone(),
                        port: r.port,
                        username: r.username.clone(),
                        password: found.relay_password.clone(),
                        tls_verify: r.tls_verify,
                        implicit_tls: r.implicit_tls,
                    });
                    slice.dkim = found.dkim_keys.clone();
                }
                Role::Imapd => {
                    slice.tls = tls.cloned();
                    slice.imap = Some(config.imap.clone());
                }
                Role::Pop3d => {
                    slice.tls = tls.cloned();
                    slice.pop3 = Some(config.pop3.clone());
                }
                Role::Mda => {}
            }
            Some(ChildPlan {
                role,
                program,
                args: if role == Role::Authd {
                    vec!["authd"]
                } else {
                    vec![]
                },
                drop_to: id_of(role),
                slice: serde_json::to_vec(&slice).ok()?,
            })
        })
        .collect()
}

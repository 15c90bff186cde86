//! The supervisor's sockets: TCP listeners bound from `[listen]` (or taken from systemd socket
//! units by name), and the Unix sockets it creates in `runtime_dir` for authd, the MDA and the
//! MTA's queue control.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::unistd::{Gid, Uid};
use shared::config::{Config, ListenerName};
use shared::listen::{Inherited, Listener};
use socket2::{Domain, Socket, Type};

/// One TCP listener and where it came from.
pub struct Bound {
    pub name: ListenerName,
    /// `None` for a socket handed over by systemd.
    pub addr: Option<SocketAddr>,
    pub fd: OwnedFd,
}

/// The listening sockets of one configuration generation.
pub struct Sockets {
    pub tcp: Vec<Bound>,
    pub auth: OwnedFd,
    pub lmtp: OwnedFd,
    /// queue.sock, served by the MTA as its `control` listener.
    pub queue: OwnedFd,
}

impl Sockets {
    /// The named fds a child of `role` receives.
    pub fn for_role(&self, role: shared::config::Role) -> Vec<(String, BorrowedFd<'_>)> {
        use shared::config::Role;
        match role {
            Role::Authd => vec![("auth".into(), self.auth.as_fd())],
            Role::Mda => vec![("lmtp".into(), self.lmtp.as_fd())],
            _ => {
                let mut fds: Vec<(String, BorrowedFd<'_>)> = self
                    .tcp
                    .iter()
                    .filter(|b| b.name.role() == role)
                    .map(|b| (b.name.as_str().to_string(), b.fd.as_fd()))
                    .collect();
                if role == Role::Mta {
                    fds.push(("control".into(), self.queue.as_fd()));
                }
                fds
            }
        }
    }
}

/// Backlog of every TCP listener.
const BACKLOG: i32 = 1024;

pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<OwnedFd> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `[::]:25` and `0.0.0.0:25` are separate listeners (ARCHITECTURE §5 lists both).
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Binds every configured TCP listener, reusing sockets of `previous` with the same name and
/// address (a reload) and those systemd handed over (by `FileDescriptorName=`). All or nothing.
pub fn bind_all(
    config: &Config,
    previous: Vec<Bound>,
    systemd: &mut Vec<Inherited>,
) -> Result<Vec<Bound>, (Vec<String>, Vec<Bound>)> {
    let mut previous = previous;
    // (socket, newly bound in this call)
    let mut out: Vec<(Bound, bool)> = Vec::new();
    let mut errors = Vec::new();
    for name in ListenerName::ALL {
        // Sockets from systemd take the place of the configured addresses of that name.
        let from_systemd: Vec<Bound> =
            take_matching(&mut previous, |b| b.name == name && b.addr.is_none());
        let mut handed = Vec::new();
        let mut i = 0;
        while i < systemd.len() {
            if systemd[i].name == name.as_str() {
                let inh = systemd.remove(i);
                match inh.listener {
                    Listener::Tcp(l) => handed.push(Bound {
                        name,
                        addr: None,
                        fd: l.into(),
                    }),
                    Listener::Unix(_) => {
                        errors.push(format!("systemd socket {} is not TCP", name.as_str()))
                    }
                }
            } else {
                i += 1;
            }
        }
        if !from_systemd.is_empty() || !handed.is_empty() {
            tracing::info!(
                event = "listen.systemd",
                listener = name.as_str(),
                count = from_systemd.len() + handed.len(),
                "using sockets from systemd"
            );
            out.extend(from_systemd.into_iter().map(|b| (b, false)));
            out.extend(handed.into_iter().map(|b| (b, false)));
            continue;
        }
        for &addr in config.listen_addrs(name) {
            if let Some(reused) =
                take_matching(&mut previous, |b| b.name == name && b.addr == Some(addr)).pop()
            {
                out.push((reused, false));
                continue;
            }
            match bind_tcp(addr) {
                Ok(fd) => out.push((
                    Bound {
                        name,
                        addr: Some(addr),
                        fd,
                    },
                    true,
                )),
                Err(e) => errors.push(format!(
                    "listen.{}: cannot listen on {addr}: {e}",
                    name.as_str()
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok(out.into_iter().map(|(b, _)| b).collect())
    } else {
        // Give the caller back what it had (new sockets are closed), so a failed reload keeps
        // serving on the old ones.
        let kept = out.into_iter().filter(|(_, new)| !new).map(|(b, _)| b);
        Err((errors, kept.chain(previous).collect()))
    }
}

fn take_matching(list: &mut Vec<Bound>, pred: impl Fn(&Bound) -> bool) -> Vec<Bound> {
    let mut taken = Vec::new();
    let mut i = 0;
    while i < list.len() {
        if pred(&list[i]) {
            taken.push(list.remove(i));
        } else {
            i += 1;
        }
    }
    taken
}

/// A Unix listening socket at `path` (a stale one is replaced), with `mode` and, as root,
/// `owner`.
///
/// The socket is made under a temporary name, given its mode and owner, then renamed into
/// place: nobody can connect to it while it still has the umask's permissions.
pub fn bind_unix(path: &Path, mode: u32, owner: Option<(Uid, Gid)>) -> std::io::Result<OwnedFd> {
    let tmp = path.with_extension("sock.new");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(&tmp, Some(uid), Some(gid))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(listener.into())
}

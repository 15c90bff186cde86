//! Listening sockets handed over by the systemd socket-activation protocol (`LISTEN_FDS`,
//! `LISTEN_FDNAMES`, `LISTEN_PID`; fds from 3), as the supervisor hands them to its children
//! and as systemd hands them to the supervisor. Reads the environment once; binds nothing.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage, getsockname};

/// A listening socket taken over from the environment.
#[derive(Debug)]
pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

#[derive(Debug)]
pub struct Inherited {
    pub name: String,
    pub listener: Listener,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("LISTEN_FDS: {0}")]
    Env(String),
    #[error("inherited fd {fd} ({name}) is not a listening socket: {reason}")]
    NotASocket {
        fd: RawFd,
        name: String,
        reason: String,
    },
}

/// Takes the inherited listeners. Returns an empty list when `LISTEN_PID` is not ours (the
/// variables were meant for another process). Must be called before threads are started, as
/// it removes the variables from the environment so that no grandchild sees them.
pub fn take_inherited() -> Result<Vec<Inherited>, ListenError> {
    let fds: Vec<(RawFd, String)> = match sd_notify::listen_fds_with_names() {
        Ok(fds) => fds.collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ListenError::Env(e.to_string())),
    };
    // SAFETY: called at start-up, before any thread exists (documented contract above).
    unsafe {
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
        std::env::remove_var("LISTEN_PID");
    }
    fds.into_iter()
        .map(|(fd, name)| classify(fd, name))
        .collect()
}

fn classify(fd: RawFd, name: String) -> Result<Inherited, ListenError> {
    let bad = |reason: String| ListenError::NotASocket {
        fd,
        name: name.clone(),
        reason,
    };
    let addr: SockaddrStorage = getsockname(fd).map_err(|e| bad(e.to_string()))?;
    // SAFETY: the fd was handed to this process to own by the socket-activation protocol,
    // and is taken exactly once (the environment variables are removed above).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| bad(e.to_string()))?;
    let listener = match addr.family() {
        Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => {
            Listener::Tcp(std::net::TcpListener::from(owned))
        }
        Some(AddressFamily::Unix) => Listener::Unix(std::os::unix::net::UnixListener::from(owned)),
        other => return Err(bad(format!("unsupported address family {other:?}"))),
    };
    Ok(Inherited { name, listener })
}

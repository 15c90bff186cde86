//! fork + exec of one child (ARCHITECTURE §1): listeners at fds 3.. by the socket-activation
//! protocol, the configuration slice on a pipe, the death pipe, and — when running as root —
//! `setgroups([])`, `setgid`, `setuid`, `PR_SET_NO_NEW_PRIVS` between fork and exec.
//!
//! Everything the child needs is built before `fork`; between fork and exec the child calls
//! only async-signal-safe functions (no allocation), so this stays correct even if a thread
//! is ever added to the supervisor.

use std::ffi::{CString, c_char};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use nix::unistd::{ForkResult, Gid, Pid, Uid};
use shared::daemon::{ENV_CONFIG_FD, ENV_DEATH_FD, ENV_VERSION};

/// What to start.
pub struct SpawnSpec<'a> {
    pub program: &'a Path,
    /// argv without argv[0] (argv[0] is the process name).
    pub args: &'a [&'a str],
    pub process_name: &'a str,
    pub listeners: &'a [(String, BorrowedFd<'a>)],
    pub slice: &'a [u8],
    pub death_read: BorrowedFd<'a>,
    pub notify_socket: &'a Path,
    /// Drop to this user and group (root only).
    pub drop_to: Option<(Uid, Gid)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0}: {1}")]
    Setup(&'static str, std::io::Error),
    #[error("child failed before exec at {stage}: {source}")]
    Child {
        stage: &'static str,
        source: std::io::Error,
    },
}

/// Stages the child reports back on the status pipe when it fails before exec.
const STAGES: [&str; 6] = [
    "dup",
    "setgroups",
    "setgid",
    "setuid",
    "no_new_privs",
    "exec",
];

/// Variables passed through from the supervisor's own environment.
const PASS_THROUGH: [&str; 3] = ["JOURNAL_STREAM", "POSTERN_LOG", "RUST_BACKTRACE"];

fn cstring(s: impl Into<Vec<u8>>) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| {
        SpawnError::Setup(
            "argument",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL byte"),
        )
    })
}

/// Starts the child and returns its pid once it has exec'd (or an error saying where it failed).
pub fn spawn(spec: &SpawnSpec<'_>) -> Result<Pid, SpawnError> {
    use std::io::Write;
    let io = |what: &'static str| move |e: nix::Error| SpawnError::Setup(what, e.into());

    // The slice travels on a pipe, written in full before fork (the pipe is sized to hold it).
    let (slice_read, slice_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io("pipe"))?;
    if spec.slice.len() > 60 * 1024 {
        nix::fcntl::fcntl(
            &slice_write,
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(spec.slice.len() as i32 + 4096),
        )
        .map_err(io("pipe size"))?;
    }
    std::fs::File::from(slice_write)
        .write_all(spec.slice)
        .map_err(|e| SpawnError::Setup("slice", e))?;
    // Reports exec failures: closed by a successful exec (O_CLOEXEC), else carries the stage.
    let (status_read, status_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io("pipe"))?;

    let n = spec.listeners.len() as RawFd;
    let config_fd = 3 + n;
    let death_fd = 4 + n;
    let mut sources: Vec<RawFd> = spec
        .listeners
        .iter()
        .map(|(_, fd)| fd.as_raw_fd())
        .collect();
    sources.push(slice_read.as_raw_fd());
    sources.push(spec.death_read.as_raw_fd());

    let names: Vec<&str> = spec.listeners.iter().map(|(n, _)| n.as_str()).collect();
    let mut env: Vec<CString> = vec![
        cstring("PATH=/usr/sbin:/usr/bin:/sbin:/bin")?,
        cstring(format!("{ENV_VERSION}={}", shared::VERSION))?,
        cstring(format!("{ENV_CONFIG_FD}={config_fd}"))?,
        cstring(format!("{ENV_DEATH_FD}={death_fd}"))?,
        cstring(format!("NOTIFY_SOCKET={}", spec.notify_socket.display()))?,
    ];
    for var in PASS_THROUGH {
        if let Ok(v) = std::env::var(var) {
            env.push(cstring(format!("{var}={v}"))?);
        }
    }
    if n > 0 {
        env.push(cstring(format!("LISTEN_FDS={n}"))?);
        env.push(cstring(format!("LISTEN_FDNAMES={}", names.join(":")))?);
    }
    // LISTEN_PID must be the child's pid, known only after fork: a fixed-width slot of digits
    // the child fills in without allocating.
    let listen_pid: Vec<u8> = b"LISTEN_PID=0000000000\0".to_vec();
    let pid_digits = "LISTEN_PID=".len()..listen_pid.len() - 1;
    let mut envp: Vec<*const c_char> = env.iter().map(|c| c.as_ptr()).collect();
    let listen_pid_index = envp.len();
    envp.push(listen_pid.as_ptr() as *const c_char);
    if n == 0 {
        envp.pop();
    }
    envp.push(std::ptr::null());

    let program = cstring(spec.program.as_os_str().as_encoded_bytes())?;
    let mut argv_c = vec![cstring(spec.process_name)?];
    for a in spec.args {
        argv_c.push(cstring(*a)?);
    }
    let mut argv: Vec<*const c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let status_fd = status_write.as_raw_fd();
    // The descriptors the child gets are 3 .. 3 + sources; the lowest number above them.
    let above_targets = 3 + sources.len() as RawFd;

    // SAFETY: the child branch below calls only async-signal-safe libc functions on memory
    // prepared above, then execs or _exits; the parent only records the pid.
    match unsafe { nix::unistd::fork() }.map_err(io("fork"))? {
        ForkResult::Child => unsafe {
            // The status pipe moves above the target range first (its number may be one of
            // the targets) and stays open, close-on-exec, through the clean-up below. Only as
            // far as needed: a daemon may run under a small open-files limit.
            let report_fd = libc::fcntl(status_fd, libc::F_DUPFD_CLOEXEC, above_targets);
            if report_fd < 0 {
                libc::_exit(127);
            }
            let fail = |stage: usize| -> ! {
                let errno = *libc::__errno_location();
                let report = [stage as i32, errno];
                libc::write(report_fd, report.as_ptr() as *const libc::c_void, 8);
                libc::_exit(127);
            };
            // First move every source above the target range, then into place: a source fd
            // may sit where another target goes.
            let mut high = [0 as RawFd; 64];
            if sources.len() > high.len() {
                fail(0);
            }
            for (i, fd) in sources.iter().enumerate() {
                high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, above_targets);
                if high[i] < 0 {
                    fail(0);
                }
            }
            for (i, fd) in high.iter().take(sources.len()).enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    fail(0);
                }
            }
            // Close everything else: an fd the supervisor inherited without O_CLOEXEC (from
            // whoever started it) must not reach an unprivileged daemon (ARCHITECTURE §1).
            let first_free = 3 + sources.len() as libc::c_uint;
            let report = report_fd as libc::c_uint;
            for (from, to) in [(first_free, report - 1), (report + 1, libc::c_uint::MAX)] {
                if libc::syscall(libc::SYS_close_range, from, to, 0) != 0 {
                    // Kernels before 5.9: close one by one, up to a bound.
                    for fd in from..to.min(65536) {
                        libc::close(fd as RawFd);
                    }
                }
            }
            if let Some((uid, gid)) = spec.drop_to {
                if libc::setgroups(0, std::ptr::null()) != 0 {
                    fail(1);
                }
                if libc::setgid(gid.as_raw()) != 0 {
                    fail(2);
                }
                if libc::setuid(uid.as_raw()) != 0 {
                    fail(3);
                }
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                fail(4);
            }
            // Rust ignores SIGPIPE in the supervisor; an ignored signal stays ignored across exec.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let mut sigset: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut sigset);
            libc::sigprocmask(libc::SIG_SETMASK, &sigset, std::ptr::null_mut());
            if n > 0 {
                let mut pid = libc::getpid() as u32;
                let slot = envp[listen_pid_index] as *mut u8;
                for i in pid_digits.clone().rev() {
                    *slot.add(i) = b'0' + (pid % 10) as u8;
                    pid /= 10;
                }
            }
            libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            fail(5);
        },
        ForkResult::Parent { child } => {
            drop(status_write);
            drop(slice_read);
            // Keep the buffers alive until the child has exec'd (copy-on-write makes this
            // belt and braces, but the pointers above refer to them).
            let _ = (&listen_pid, &env, &argv_c);
            let mut report = [0u8; 8];
            let mut file = std::fs::File::from(status_read);
            match std::io::Read::read(&mut file, &mut report) {
                Ok(8) => {
                    let stage = i32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
                    let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(SpawnError::Child {
                        stage: STAGES.get(stage as usize).copied().unwrap_or("?"),
                        source: std::io::Error::from_raw_os_error(errno),
                    })
                }
                _ => Ok(child),
            }
        }
    }
}

/// A pipe whose write end the supervisor keeps: when the supervisor dies, however it dies,
/// the kernel closes it and every child reads EOF on its end.
pub fn death_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((r, w))
}

//! `postern-pop3d`: POP3 retrieval. Wiring only: the skeleton of `shared::daemon` runs
//! [`pop3d::serve`].

use std::process::ExitCode;

use shared::config::Role;
use shared::daemon::DaemonSpec;

const SPEC: DaemonSpec = DaemonSpec {
    role: Role::Pop3d,
    listeners: &["pop3", "pop3s"],
};

fn main() -> ExitCode {
    shared::daemon::run(&SPEC, pop3d::serve)
}

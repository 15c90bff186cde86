//! `postern-mda`: LMTP delivery into Maildirs. Wiring only: the skeleton of `shared::daemon` runs
//! [`mda::serve`].

use std::process::ExitCode;

use shared::config::Role;
use shared::daemon::DaemonSpec;

const SPEC: DaemonSpec = DaemonSpec {
    role: Role::Mda,
    listeners: &["lmtp"],
};

fn main() -> ExitCode {
    shared::daemon::run(&SPEC, mda::serve)
}

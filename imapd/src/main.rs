//! `postern-imapd`: IMAP retrieval. Wiring only: the skeleton of `shared::daemon` runs
//! [`imapd::serve`].

use std::process::ExitCode;

use shared::config::Role;
use shared::daemon::DaemonSpec;

const SPEC: DaemonSpec = DaemonSpec {
    role: Role::Imapd,
    listeners: &["imap", "imaps"],
};

fn main() -> ExitCode {
    shared::daemon::run(&SPEC, imapd::serve)
}

//! `postern-mta`: SMTP transfer and submission, the queue, outbound delivery. Wiring only: the skeleton of `shared::daemon` runs
//! [`mta::serve`].

use std::process::ExitCode;

use shared::config::Role;
use shared::daemon::DaemonSpec;

const SPEC: DaemonSpec = DaemonSpec {
    role: Role::Mta,
    listeners: &["smtp", "submission", "submissions", "control"],
};

fn main() -> ExitCode {
    shared::daemon::run(&SPEC, mta::serve)
}

//! `postern check`: every configuration error at once (file, line, key, hint), then the checks
//! of the files it names (users, aliases, TLS, relay password); exit 1 on any error, else the
//! effective configuration on stdout (unless `--quiet`) and exit 0. Touches nothing.

use std::path::Path;
use std::process::ExitCode;

use crate::prepare;

pub fn run(path: &Path, quiet: bool) -> ExitCode {
    let config = match shared::config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s); nothing started", errors.len());
            return ExitCode::FAILURE;
        }
    };
    let found = prepare::inspect(&config, prepare::running_as_root());
    for w in &found.warnings {
        eprintln!("warning: {w}");
    }
    if !found.errors.is_empty() {
        for e in &found.errors {
            eprintln!("error: {e}");
        }
        eprintln!("{} error(s); nothing started", found.errors.len());
        return ExitCode::FAILURE;
    }
    if !quiet {
        print!(
            "# effective configuration of {}\n{}",
            config.file.display(),
            config.to_toml()
        );
    }
    ExitCode::SUCCESS
}

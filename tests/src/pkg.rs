//! Helpers of the package tests: commands run from the workspace with a deadline, and the
//! Debian package built from the dev binaries with `etc/debian/build-deb`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::wait_output;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Runs a command, returns (success, stdout + stderr).
pub fn run(program: &str, args: &[&str]) -> (bool, String) {
    run_env(program, args, &[])
}

pub fn run_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let (status, out, err) = wait_output(child, std::time::Duration::from_secs(600));
    (status.success(), format!("{out}{err}"))
}

pub fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds the package with `version` into `out_dir`; returns its path.
pub fn build_deb(out_dir: &Path, version: &str) -> PathBuf {
    let deb = out_dir.join(format!("postern_{version}.deb"));
    let started = std::time::Instant::now();
    let (ok, out) = run_env(
        "etc/debian/build-deb",
        &[
            "--fast",
            "--deb-version",
            version,
            "--output",
            deb.to_str().unwrap(),
        ],
        &[
            ("POSTERN_DEB_PROFILE", "dev"),
            ("POSTERN_DEB_NO_BUILD", "1"),
        ],
    );
    assert!(ok && deb.is_file(), "build-deb failed:\n{out}");
    eprintln!("built {} in {:?}", deb.display(), started.elapsed());
    deb
}

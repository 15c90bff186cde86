//! `postern generate man|completions DIR` (hidden): the manual pages and shell completions the
//! package ships, generated from the one CLI definition (`main.rs`) and, for `postern.toml(5)`,
//! from the annotated `etc/postern.toml`, so neither can drift from what the binary accepts.
//! Writes only into DIR; reads no configuration.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use clap_complete::Shell;

use crate::toml_man;

/// Section of every command page: system administration (man-pages(7)).
const COMMAND_SECTION: &str = "8";

/// Writes `postern.8`, one `postern-VERB[-SUBVERB].8` per visible subcommand, and
/// `postern.toml.5` into `dir`.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write_command_pages(&cmd, dir, true)?;
    let config_page = dir.join("postern.toml.5");
    std::fs::write(&config_page, toml_man::render(shared::VERSION))
        .with_context(|| format!("{}", config_page.display()))?;
    Ok(())
}

fn write_command_pages(cmd: &clap::Command, dir: &Path, top: bool) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_command_pages(sub, dir, false)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section(COMMAND_SECTION)
        .manual("Postern")
        .source(format!("postern {}", shared::VERSION));
    let path = dir.join(man.get_filename());
    let mut out = Vec::new();
    man.render(&mut out)?;
    if top {
        out.extend_from_slice(TOP_PAGE_EXTRA.as_bytes());
    }
    let mut file = std::fs::File::create(&path).with_context(|| format!("{}", path.display()))?;
    file.write_all(&out)
        .with_context(|| format!("{}", path.display()))?;
    Ok(())
}

/// FILES and SEE ALSO of `postern(8)` (ARCHITECTURE §4).
const TOP_PAGE_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/postern/postern.toml\fR
The configuration, see \fBpostern.toml\fR(5).
.TP
\fI/etc/postern/users\fR
Users and password hashes, one \fIuser@domain\fR:{\fISCHEME\fR}\fIhash\fR per line; mode 0640, group postern\-auth.
.TP
\fI/etc/postern/aliases\fR
Aliases, \fIalias@domain\fR: \fItarget\fR, \fItarget\fR; \fI@domain\fR: is the catch\-all.
.TP
\fI/etc/postern/tls/\fR
Certificate chain and private key (PEM).
.TP
\fI/var/lib/postern/queue/\fR, \fI/var/lib/postern/mail/\fR
The queue (user postern\-mta) and the Maildirs, one per \fIDOMAIN\fR/\fIUSER\fR (user postern\-mail).
.TP
\fI/run/postern/\fR
Sockets between the daemons.
.TP
\fI/usr/lib/postern/\fR
The daemons postern\-mta, postern\-mda, postern\-imapd and postern\-pop3d.
.SH SEE ALSO
\fBpostern.toml\fR(5), \fBsystemctl\fR(1), \fBsystemd.socket\fR(5)
"#;

/// Writes `postern.bash`, `_postern` and `postern.fish` into `dir`.
pub fn completions(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let mut cmd = without_hidden(&cmd);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "postern", dir)
            .with_context(|| format!("{shell} completions into {}", dir.display()))?;
    }
    Ok(())
}

/// A copy of `cmd` without its hidden subcommands and arguments (the completion generators
/// would offer them).
fn without_hidden(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_string())
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(without_hidden),
        );
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        <crate::Cli as clap::CommandFactory>::command()
    }

    #[test]
    fn man_pages_cover_every_visible_command_and_the_config() {
        let dir = tempfile::tempdir().unwrap();
        man_pages(cli(), dir.path()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for want in [
            "postern.8",
            "postern-serve.8",
            "postern-check.8",
            "postern-user-add.8",
            "postern-alias-list.8",
            "postern-import-dms.8",
            "postern-import-maildir.8",
            "postern-dkim-generate.8",
            "postern-queue-list.8",
            "postern-queue-show.8",
            "postern-queue-flush.8",
            "postern-queue-retry.8",
            "postern-queue-delete.8",
            "postern.toml.5",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("postern-authd") || n.starts_with("postern-generate")),
            "hidden commands get no page: {names:?}"
        );
        let top = std::fs::read_to_string(dir.path().join("postern.8")).unwrap();
        assert!(top.contains(".TH postern 8"), "{top}");
        assert!(top.contains(".SH FILES"));
    }

    #[test]
    fn completions_for_three_shells() {
        let dir = tempfile::tempdir().unwrap();
        completions(cli(), dir.path()).unwrap();
        for (file, needle) in [
            ("postern.bash", "serve"),
            ("_postern", "check"),
            ("postern.fish", "alias"),
        ] {
            let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
            assert!(text.contains(needle), "{file} lacks {needle}");
            assert!(!text.contains("authd"), "{file} offers the hidden authd");
        }
    }
}

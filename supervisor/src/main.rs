//! `postern`: the supervisor (`serve`), the configuration checker (`check`), the authd role
//! (`authd`, spawned by `serve`) and the admin verbs. Argument parsing and dispatch only.

mod admin;
mod authd;
mod check;
mod dkim;
mod generate;
mod import;
mod listeners;
mod prepare;
mod queue;
mod spawn;
mod supervise;
mod toml_man;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use shared::config::{self, Role};
use shared::daemon::DaemonSpec;
use shared::passwd::Scheme;

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "Postern mail server: supervisor and administration"
)]
pub(crate) struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the mail server: bind the ports, start and supervise the daemons.
    Serve,
    /// Validate the configuration and the files it names; print the effective configuration.
    Check {
        /// Print only warnings and errors (as the service's ExecStartPre does).
        #[arg(long, short)]
        quiet: bool,
    },
    /// The authentication daemon (started by `serve`; not for use by hand).
    #[command(hide = true)]
    Authd,
    /// Manage users (the users file).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage aliases (the aliases file).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Import users and aliases, or mailboxes, from another mail server.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Write the manual pages or shell completions into DIR (used to build the package).
    #[command(hide = true)]
    Generate { what: Generated, dir: PathBuf },
    /// DKIM signing keys.
    #[command(subcommand)]
    Dkim(DkimCommand),
    /// Inspect and control the mail queue of the running server (as root).
    #[command(subcommand)]
    Queue(QueueCommand),
}

#[derive(Subcommand)]
enum QueueCommand {
    /// List queued messages: id, size, arrival, sender, and each recipient's state with the
    /// last error and the next attempt. Reads the queue directory when the MTA is not running.
    List,
    /// Print a queued message's envelope and header section.
    Show { id: String },
    /// Make every waiting message due for delivery now.
    Flush,
    /// Make one waiting message due for delivery now.
    Retry { id: String },
    /// Delete a queued message; it is never delivered (logged as queue.deleted).
    Delete { id: String },
}

#[derive(Subcommand)]
enum DkimCommand {
    /// Write a new signing key (0600, beside the configuration unless --out is given) and
    /// print the DNS TXT record to publish and the `[dkim] keys` entry to add.
    Generate {
        domain: String,
        #[arg(long, default_value = "postern")]
        selector: String,
        /// "rsa" (2048 bits, RSA-SHA256: verified everywhere) or "ed25519" (RFC 8463).
        #[arg(long, default_value = "rsa")]
        algorithm: String,
        /// Where to write the key (default: dkim/DOMAIN.SELECTOR.pem beside the config).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import docker-mailserver's accounts (postfix-accounts.cf) and aliases
    /// (postfix-virtual.cf) from its config/ directory into the users and aliases files, keeping
    /// the password hashes; report every line not taken, and the [relay] settings that match
    /// postfix-relaymap.cf. Exit status 0: everything taken; 2: written, but some lines were
    /// not taken; 1: error, nothing written.
    Dms {
        /// docker-mailserver's config/ directory (docker-data/dms/config).
        dir: PathBuf,
        /// Report what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy a Maildir++ (INBOX and its .Folder subfolders, with Dovecot's dovecot-uidlist,
    /// dovecot-keywords and subscriptions) into USER's mailstore, keeping UIDVALIDITY, UIDs,
    /// flags and keywords (so IMAP clients and POP3 UIDLs see the same messages), then check
    /// them by opening every folder. The destination must hold no mail; stop the server
    /// first. As root, the copy is given to the mail service user.
    Maildir {
        /// The Maildir (e.g. docker-mailserver's mail-data/DOMAIN/USER).
        src: PathBuf,
        /// The Postern user whose mailbox receives the copy.
        #[arg(long, value_name = "USER@DOMAIN")]
        user: String,
        /// Report what would be copied; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Generated {
    /// postern(8), a page per subcommand, postern.toml(5).
    Man,
    /// bash, zsh and fish completions.
    Completions,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is asked for (or read from stdin).
    Add {
        address: String,
        /// Password scheme.
        #[arg(long, default_value = "SHA512-CRYPT", value_parser = parse_scheme)]
        scheme: Scheme,
    },
    /// Change a user's password (asked for, or read from stdin).
    Passwd {
        address: String,
        #[arg(long, default_value = "SHA512-CRYPT", value_parser = parse_scheme)]
        scheme: Scheme,
    },
    /// Delete a user (the mailbox is kept).
    Del { address: String },
    /// List users, optionally of one domain.
    List { domain: Option<String> },
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Add targets to an alias (`alias@domain`, or `@domain` for the catch-all).
    Add {
        alias: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Delete an alias, or only some of its targets.
    Del { alias: String, targets: Vec<String> },
    /// List aliases.
    List,
}

fn parse_scheme(s: &str) -> Result<Scheme, String> {
    let s = s.trim_matches(['{', '}']);
    match Scheme::from_name(s) {
        Some(Scheme::Plain) => Err("PLAIN stores cleartext passwords; choose a hash".into()),
        Some(scheme) => Ok(scheme),
        None => Err(format!(
            "unknown scheme {s:?} (SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ARGON2ID, ARGON2I)"
        )),
    }
}

const AUTHD: DaemonSpec = DaemonSpec {
    role: Role::Authd,
    listeners: &["auth"],
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => supervise::serve(&cli.config),
        Command::Check { quiet } => check::run(&cli.config, quiet),
        Command::Authd => shared::daemon::run(&AUTHD, authd::serve),
        Command::User(cmd) => admin_verb(&cli.config, |c| match cmd {
            UserCommand::Add { address, scheme } => admin::user_add(c, &address, scheme),
            UserCommand::Passwd { address, scheme } => admin::user_passwd(c, &address, scheme),
            UserCommand::Del { address } => admin::user_del(c, &address),
            UserCommand::List { domain } => admin::user_list(c, domain.as_deref()),
        }),
        Command::Alias(cmd) => admin_verb(&cli.config, |c| match cmd {
            AliasCommand::Add { alias, targets } => admin::alias_add(c, &alias, &targets),
            AliasCommand::Del { alias, targets } => admin::alias_del(c, &alias, &targets),
            AliasCommand::List => admin::alias_list(c),
        }),
        Command::Queue(cmd) => admin_verb(&cli.config, |c| {
            let verb = match cmd {
                QueueCommand::List => queue::Verb::List,
                QueueCommand::Show { id } => queue::Verb::Show(id),
                QueueCommand::Flush => queue::Verb::Flush,
                QueueCommand::Retry { id } => queue::Verb::Retry(id),
                QueueCommand::Delete { id } => queue::Verb::Delete(id),
            };
            queue::run(c, verb)
        }),
        Command::Import(ImportCommand::Dms { dir, dry_run }) => {
            import_dms(&cli.config, &dir, dry_run)
        }
        Command::Dkim(DkimCommand::Generate {
            domain,
            selector,
            algorithm,
            out,
        }) => admin_verb(&cli.config, |c| {
            dkim::generate(c, &domain, &selector, &algorithm, out.as_deref())
        }),
        Command::Import(ImportCommand::Maildir { src, user, dry_run }) => {
            let write = match dry_run {
                true => import::Write::DryRun,
                false => import::Write::Yes,
            };
            admin_verb(&cli.config, |c| import::maildir::run(c, &src, &user, write))
        }
        Command::Generate { what, dir } => {
            let done = match what {
                Generated::Man => generate::man_pages(Cli::command(), &dir),
                Generated::Completions => generate::completions(Cli::command(), &dir),
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `postern import dms`: exit 2 when some lines were not taken (each was reported).
fn import_dms(config: &std::path::Path, dir: &std::path::Path, dry_run: bool) -> ExitCode {
    let write = if dry_run {
        import::Write::DryRun
    } else {
        import::Write::Yes
    };
    let mut outcome = None;
    let code = admin_verb(config, |c| {
        outcome = Some(import::dms(c, dir, write)?);
        Ok(())
    });
    match outcome {
        Some(import::Outcome::Partial) => ExitCode::from(2),
        _ => code,
    }
}

/// Loads the configuration, runs an admin verb, prints its error.
fn admin_verb(
    path: &std::path::Path,
    verb: impl FnOnce(&config::Config) -> anyhow::Result<()>,
) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    match verb(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

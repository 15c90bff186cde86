//! The IMAP session (RFC 9051 §3, RFC 3501 §3): the state machine NotAuthenticated →
//! Authenticated → Selected → Logout, the one table saying which command each state (and a
//! connection without TLS) allows, and the answers. No sockets and no clocks: the io layer
//! feeds it parsed commands and runs what it asks ([`Step`]): STARTTLS, a verification with
//! authd, an AUTHENTICATE continuation, IDLE. The mailstore is blocking file I/O and is
//! called from here directly; the io layer therefore runs [`Session::handle`] on a blocking
//! thread (`spawn_blocking`), so a session is a plain value that owns its open folder and
//! sequence map, and unit tests drive it without a runtime.

mod auth;
mod cache;
mod fetch;
mod headertext;
mod mailbox;
mod message;
mod prefill;
mod qresync;
mod search;
mod selected;
mod sort;
mod structure;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cache;
mod update;
mod write;

use std::path::PathBuf;
use std::sync::Arc;

use shared::mailstore::{Folder, Store};

use crate::command::{Command, CommandBody};
use crate::response::{Code, Data, Encoding, Response, Status, Untagged};

pub use auth::Credentials;

/// What the session needs from the configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `state_dir/mail`: the users' mailstores.
    pub mail_root: PathBuf,
    /// Syntax errors (BAD) before `* BYE` and close (STYLE §2 limits).
    pub max_errors: u32,
    /// Commands a client may send before it logs in.
    pub max_commands_before_auth: u32,
    /// Largest message APPEND takes (RFC 7889 APPENDLIMIT); equals the literal limit.
    pub append_limit: u64,
    /// Nesting the parser accepts (parentheses, NOT/OR).
    pub max_depth: usize,
}

/// What the io layer does after [`Session::handle`] (the responses are in [`Session::take_output`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the next command.
    Next,
    /// Send the output, run the TLS handshake, then call [`Session::tls_started`].
    StartTls,
    /// Ask authd, wait a failure's delay, then call [`Session::auth_result`].
    Verify(Credentials),
    /// Send `+ `, read one line and give it to [`Session::auth_line`] (RFC 9051 §6.2.2).
    AuthContinue,
    /// Send the output, then call [`Session::resume`] (a long FETCH in batches).
    Flush,
    /// Send `+ idling`; until DONE (to [`Session::idle_done`]) call [`Session::idle_poll`]
    /// when the folder's files change (RFC 2177).
    Idle,
    /// Send the output and close the connection.
    Close,
}

/// Which states a command is valid in (RFC 9051 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    Any,
    NotAuth,
    Auth,
    AuthOrSelected,
    Selected,
}

/// The one command table (STYLE §2): the states a command is valid in, and whether it may
/// be used before TLS (ARCHITECTURE §2: nothing but these on 143 in clear).
fn rule(body: &CommandBody) -> (Allowed, bool) {
    use Allowed::*;
    use CommandBody as C;
    match body {
        C::Capability | C::Noop | C::Logout => (Any, true),
        C::Id(_) => (Any, false),
        C::StartTls => (NotAuth, true),
        C::Login { .. } | C::Authenticate { .. } => (NotAuth, false),
        C::Enable(_) => (Auth, false),
        C::Select { .. } | C::Create { .. } | C::Delete(_) | C::Rename { .. } => {
            (AuthOrSelected, false)
        }
        C::Subscribe(_) | C::Unsubscribe(_) | C::List(_) | C::Lsub { .. } => {
            (AuthOrSelected, false)
        }
        C::Namespace | C::Status { .. } | C::Append(_) | C::Idle => (AuthOrSelected, false),
        C::GetQuota(_) | C::GetQuotaRoot(_) | C::SetQuota { .. } => (AuthOrSelected, false),
        C::Check | C::Close | C::Unselect | C::Expunge { .. } | C::Search(_) => (Selected, false),
        C::Sort { .. } | C::Fetch { .. } | C::Store { .. } | C::Copy { .. } | C::Move { .. } => {
            (Selected, false)
        }
    }
}

/// Extensions turned on by ENABLE (RFC 5161) or implied (CONDSTORE by a MODSEQ fetch).
#[derive(Debug, Default, Clone, Copy)]
struct Enabled {
    condstore: bool,
    qresync: bool,
    rev2: bool,
    utf8: bool,
}

enum State {
    NotAuth,
    Auth,
    Selected(Box<selected::Mailbox>),
    Logout,
}

pub struct Session {
    cfg: Arc<Config>,
    tls: bool,
    state: State,
    user: Option<String>,
    store: Option<Store>,
    enabled: Enabled,
    errors: u32,
    commands_before_auth: u32,
    /// The tag of the command waiting for authd, an AUTHENTICATE line or IDLE's DONE.
    pending_tag: Vec<u8>,
    /// Whether the command being answered may announce EXPUNGE (not FETCH, STORE, SEARCH by
    /// sequence number, RFC 9051 §7.5.1).
    allow_expunge: bool,
    /// A FETCH whose responses are being sent in batches.
    fetching: Option<Box<fetch::PendingFetch>>,
    out: Vec<u8>,
}

impl Session {
    /// A new connection; `tls` when it is already encrypted (993).
    pub fn new(cfg: Arc<Config>, tls: bool) -> Session {
        Session {
            cfg,
            tls,
            state: State::NotAuth,
            user: None,
            store: None,
            enabled: Enabled::default(),
            errors: 0,
            commands_before_auth: 0,
            pending_tag: Vec::new(),
            allow_expunge: true,
            fetching: None,
            out: Vec::new(),
        }
    }

    /// `* OK [CAPABILITY ...] ready` (RFC 9051 §7.1.1).
    pub fn greeting(&mut self) {
        let caps = self.capabilities();
        let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
        self.untagged(Untagged::Ok, Some(Code::Capability(&caps)), "Postern ready");
    }

    /// The responses queued so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// How strings are written: UTF-8 once UTF8=ACCEPT or IMAP4rev2 is enabled (RFC 6855 §3).
    pub fn encoding(&self) -> Encoding {
        Encoding {
            utf8: self.enabled.utf8 || self.enabled.rev2,
        }
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn is_authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// The open folder, for IDLE's watch.
    pub fn folder(&self) -> Option<&Folder> {
        match &self.state {
            State::Selected(m) => Some(&m.folder),
            _ => None,
        }
    }

    /// One parsed command.
    pub fn handle(&mut self, cmd: Command) -> Step {
        if self.user.is_none() {
            self.commands_before_auth += 1;
            if self.commands_before_auth > self.cfg.max_commands_before_auth {
                tracing::info!(
                    event = "imap.too_many_commands",
                    "too many commands before login"
                );
                return self.bye("Too many commands before login");
            }
        }
        if !self.tls && !rule(&cmd.body).1 {
            // RFC 9051 §6.2.3 (LOGINDISABLED), RFC 5530 §3: nothing but these in clear.
            tracing::info!(
                event = "imap.tls_required",
                command = cmd.body.name(),
                "command refused before TLS"
            );
            return self.no(
                &cmd.tag,
                Some(Code::PrivacyRequired),
                "TLS required first: use STARTTLS",
            );
        }
        if let Err(text) = self.check_rule(&cmd.body) {
            return self.finish_bad(&cmd.tag, text);
        }
        self.allow_expunge = !matches!(
            cmd.body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search(crate::command::Search { uid: false, .. })
                | CommandBody::Sort {
                    search: crate::command::Search { uid: false, .. },
                    ..
                }
        );
        let step = self.dispatch(cmd.tag.clone(), cmd.body);
        if matches!(self.state, State::Logout) {
            return Step::Close;
        }
        step
    }

    /// A command that did not parse: its `BAD` was written by the caller; counts toward
    /// the error limit. Returns [`Step::Close`] after `* BYE` when the limit is reached.
    pub fn syntax_error(&mut self) -> Step {
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            tracing::info!(event = "imap.too_many_errors", "too many errors; closing");
            return self.bye("Too many errors");
        }
        Step::Next
    }

    /// `* BYE` and close.
    pub fn bye(&mut self, text: &str) -> Step {
        self.untagged(Untagged::Bye, None, text);
        self.state = State::Logout;
        Step::Close
    }

    fn check_rule(&self, body: &CommandBody) -> Result<(), &'static str> {
        let (allowed, _) = rule(body);
        let ok = matches!(
            (&self.state, allowed),
            (_, Allowed::Any)
                | (State::NotAuth, Allowed::NotAuth)
                | (State::Auth, Allowed::Auth | Allowed::AuthOrSelected)
                | (
                    State::Selected(_),
                    Allowed::Selected | Allowed::AuthOrSelected
                )
        );
        if !ok {
            return Err(match allowed {
                Allowed::NotAuth => "Already authenticated",
                Allowed::Selected => "No mailbox selected",
                _ => "Not allowed in this state",
            });
        }
        if self.tls && matches!(body, CommandBody::StartTls) {
            return Err("TLS already active");
        }
        Ok(())
    }

    fn dispatch(&mut self, tag: Vec<u8>, body: CommandBody) -> Step {
        use CommandBody as C;
        match body {
            C::Capability => self.capability(&tag),
            C::Noop | C::Check => self.noop(&tag),
            C::Logout => self.logout(&tag),
            C::StartTls => {
                self.ok(&tag, None, "Begin TLS negotiation now");
                Step::StartTls
            }
            C::Id(_) => self.id(&tag),
            C::Login { user, password } => self.login(tag, user, password),
            C::Authenticate { mechanism, initial } => self.authenticate(tag, &mechanism, initial),
            C::Enable(caps) => self.enable(&tag, &caps),
            C::Idle => self.idle(tag),
            C::Namespace => self.namespace(&tag),
            C::Sort { search, criteria } => self.sort(&tag, &search, &criteria),
            C::GetQuota(_) | C::GetQuotaRoot(_) | C::SetQuota { .. } => {
                self.finish_bad(&tag, "Command not supported")
            }
            body => self.mailbox_command(tag, body),
        }
    }

    fn capability(&mut self, tag: &[u8]) -> Step {
        let caps = self.capabilities();
        let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
        self.data(Data::Capability(&caps));
        self.done(tag)
    }

    /// What this connection may use now (RFC 9051 §7.2.2): before TLS only STARTTLS and
    /// LOGINDISABLED (ARCHITECTURE §2, RFC 9051 §6.2.3), then AUTH=PLAIN; after login the
    /// extensions.
    fn capabilities(&self) -> Vec<String> {
        let mut caps = vec!["IMAP4rev1".to_string(), "IMAP4rev2".to_string()];
        if !self.tls {
            caps.extend(["STARTTLS".into(), "LOGINDISABLED".into()]);
        } else if self.user.is_none() {
            caps.extend(["AUTH=PLAIN".into(), "SASL-IR".into()]);
        }
        caps.extend(["ID".into(), "LITERAL+".into(), "ENABLE".into()]);
        if self.user.is_some() {
            for c in EXTENSIONS {
                caps.push((*c).to_string());
            }
            caps.push(format!("APPENDLIMIT={}", self.cfg.append_limit));
        }
        caps
    }

    fn noop(&mut self, tag: &[u8]) -> Step {
        self.updates(true);
        self.done(tag)
    }

    fn logout(&mut self, tag: &[u8]) -> Step {
        self.untagged(Untagged::Bye, None, "Logging out");
        self.ok(tag, None, "LOGOUT completed");
        self.state = State::Logout;
        Step::Close
    }

    /// RFC 2971 §3.3: the server's identification.
    fn id(&mut self, tag: &[u8]) -> Step {
        self.data(Data::Id(Some(&[("name", Some(b"Postern"))])));
        self.done(tag)
    }

    /// RFC 5161 §3.1; RFC 7162 §3.1 and §3.2.3, RFC 6855 §3.
    fn enable(&mut self, tag: &[u8], caps: &[String]) -> Step {
        let mut newly: Vec<&str> = Vec::new();
        for cap in caps {
            let (flag, name) = match cap.to_ascii_uppercase().as_str() {
                "CONDSTORE" => (&mut self.enabled.condstore, "CONDSTORE"),
                "QRESYNC" => (&mut self.enabled.qresync, "QRESYNC"),
                "IMAP4REV2" => (&mut self.enabled.rev2, "IMAP4rev2"),
                "UTF8=ACCEPT" => (&mut self.enabled.utf8, "UTF8=ACCEPT"),
                _ => continue,
            };
            if !*flag {
                *flag = true;
                newly.push(name);
            }
        }
        // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
        self.enabled.condstore |= self.enabled.qresync;
        self.data(Data::Enabled(&newly));
        self.done(tag)
    }

    fn namespace(&mut self, tag: &[u8]) -> Step {
        use crate::response::NamespaceDesc;
        let personal = [NamespaceDesc {
            prefix: b"",
            delimiter: Some(b'/'),
        }];
        self.data(Data::Namespace {
            personal: &personal,
            other: &[],
            shared: &[],
        });
        self.done(tag)
    }

    // --- writing responses ---

    fn data(&mut self, d: Data) {
        let enc = self.encoding();
        Response::Data(d).encode(&mut self.out, enc);
    }

    fn untagged(&mut self, status: Untagged, code: Option<Code>, text: &str) {
        let enc = self.encoding();
        Response::Untagged { status, code, text }.encode(&mut self.out, enc);
    }

    fn tagged(&mut self, tag: &[u8], status: Status, code: Option<Code>, text: &str) {
        let enc = self.encoding();
        Response::Tagged {
            tag,
            status,
            code,
            text,
        }
        .encode(&mut self.out, enc);
    }

    fn ok(&mut self, tag: &[u8], code: Option<Code>, text: &str) {
        self.tagged(tag, Status::Ok, code, text);
    }

    /// `tag OK done` after the pending updates of the selected mailbox (RFC 9051 §7).
    fn done(&mut self, tag: &[u8]) -> Step {
        self.updates(self.allow_expunge);
        self.ok(tag, None, "done");
        Step::Next
    }

    fn no(&mut self, tag: &[u8], code: Option<Code>, text: &str) -> Step {
        self.tagged(tag, Status::No, code, text);
        Step::Next
    }

    /// `BAD`, counted toward the error limit.
    fn finish_bad(&mut self, tag: &[u8], text: &str) -> Step {
        self.tagged(tag, Status::Bad, None, text);
        self.syntax_error()
    }
}

/// What an authenticated session announces beyond the basics. Only what is implemented.
const EXTENSIONS: &[&str] = &[
    "IDLE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "NAMESPACE",
    "CHILDREN",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "STATUS=SIZE",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "UTF8=ACCEPT",
    "BINARY",
    "SEARCHRES",
    "SORT",
    "SORT=DISPLAY",
];

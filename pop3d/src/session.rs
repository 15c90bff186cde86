//! The POP3 server session (RFC 1939) as a state machine: AUTHORIZATION → TRANSACTION →
//! UPDATE. Command lines in, [`Step`]s out (replies, and requests the driver carries out:
//! STLS, verification with authd, opening the maildrop, sending a message, the UPDATE).
//! What each command may do is decided in one place, [`Session::check`], from one table
//! ([`rule`]): its states, and whether it is allowed before TLS (RFC 8314, ARCHITECTURE §2).
//! No sockets, files or clocks here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use shared::proto::auth::{Mechanism, VerifyOutcome};

use crate::maildrop::{MessageInfo, OpenError, Update};
use crate::parser::{Command, ParseError, parse};
use crate::reply::{self, Reply};

/// What the session knows of its configuration.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    /// Commands allowed before a successful login.
    pub max_commands_before_auth: u32,
    /// `-ERR` replies before the session is closed.
    pub max_errors: u32,
    /// A certificate is configured (STLS can be offered).
    pub tls_available: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// RFC 1939 §4; `user` is the name given with USER.
    Authorization { user: Option<String> },
    /// After `AUTH PLAIN` without an initial response: the next line is the response.
    AuthPlain,
    /// Credentials verified; the maildrop is being opened.
    Opening,
    /// RFC 1939 §5: the maildrop is locked (and listed once `Transaction::listed`).
    Transaction(Transaction),
    /// RFC 1939 §6: QUIT given, the update is being applied.
    Update,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Transaction {
    /// The listing is taken at the first command that needs it, then fixed for the session
    /// (RFC 1939 §5: message numbers do not change).
    listed: bool,
    messages: Vec<MessageInfo>,
    deleted: Vec<bool>,
    retrieved: Vec<bool>,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reply(Reply),
    /// Send the reply and close the connection.
    Close(Reply),
    /// Send the reply, discard anything the client already sent, do the TLS handshake, then
    /// call [`Session::tls_started`] (RFC 2595 §4).
    StartTls(Reply),
    /// Verify with authd, wait the delay of a failure, then call [`Session::auth_result`].
    Verify {
        mechanism: Mechanism,
        username: String,
        password: String,
    },
    /// Lock the maildrop of `user`, then call [`Session::opened`].
    Open {
        user: String,
    },
    /// List the locked maildrop, then call [`Session::listed`].
    List,
    /// Read message `index` (0-based); send `+OK`, the message (all of it, or the header and
    /// `lines` body lines) dot-stuffed, and ".". If it cannot be read, call
    /// [`Session::read_failed`] and send its reply instead.
    Send {
        index: usize,
        lines: Option<u64>,
    },
    /// Apply the update durably, then call [`Session::committed`] and close with its reply.
    Commit(Update),
}

/// Which states allow a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    Authorization,
    Transaction,
    Both,
}

/// The command table (STYLE §2): where each command is valid, and whether it may be used
/// before TLS on a listener that requires it (RFC 2595 §4, RFC 8314 §3: no credentials in
/// clear; ARCHITECTURE §2: `pop3` requires STLS before USER, PASS and AUTH).
fn rule(command: &Command) -> (Allowed, bool) {
    use Allowed::*;
    match command {
        Command::Capa | Command::Quit => (Both, true),
        Command::Stls | Command::Utf8 => (Authorization, true),
        Command::User(_) | Command::Pass(_) | Command::Auth(_) => (Authorization, false),
        Command::Stat
        | Command::List(_)
        | Command::Retr(_)
        | Command::Dele(_)
        | Command::Noop
        | Command::Rset
        | Command::Top(..)
        | Command::Uidl(_) => (Transaction, true),
    }
}

pub struct Session {
    cfg: SessionConfig,
    /// TLS is required before credentials (the `pop3` listener).
    tls_required: bool,
    tls: bool,
    utf8: bool,
    user: Option<String>,
    state: State,
    errors: u32,
    commands_before_auth: u32,
    /// The transaction command waiting for [`Step::List`].
    pending: Option<Command>,
}

impl Session {
    /// `tls`: the connection is already TLS (`pop3s`); `tls_required`: credentials only over
    /// TLS (`pop3`).
    pub fn new(cfg: SessionConfig, tls: bool, tls_required: bool) -> Session {
        Session {
            cfg,
            tls_required,
            tls,
            utf8: false,
            user: None,
            state: State::Authorization { user: None },
            errors: 0,
            commands_before_auth: 0,
            pending: None,
        }
    }

    /// RFC 1939 §4: the greeting (no APOP timestamp: APOP is not offered).
    pub fn greeting(&self) -> Reply {
        Reply::ok_text(format!("{} POP3 Postern ready", self.cfg.hostname))
    }

    /// The user logged in, once the maildrop is open.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Feeds one line (ending in LF). After `AUTH PLAIN` the line is the SASL response.
    pub fn command(&mut self, line: &[u8]) -> Step {
        let step = if self.state == State::AuthPlain {
            self.state = State::Authorization { user: None };
            self.auth_response(line)
        } else {
            match parse(line) {
                Ok(command) => self.dispatch(command),
                Err(e) => {
                    tracing::info!(event = "pop3.bad_command", reason = ?e, "bad command line");
                    Step::Reply(match e {
                        ParseError::Unknown | ParseError::Empty => reply::UNKNOWN_COMMAND,
                        ParseError::Syntax | ParseError::Encoding => reply::SYNTAX_ERROR,
                    })
                }
            }
        };
        self.count(step)
    }

    /// A line longer than the limit was read and dropped (RFC 2449 §4).
    pub fn line_too_long(&mut self) -> Step {
        tracing::info!(event = "pop3.line_too_long", "command line too long");
        if self.state == State::AuthPlain {
            self.state = State::Authorization { user: None };
        }
        self.count(Step::Reply(reply::LINE_TOO_LONG))
    }

    /// Error and pre-login accounting: too many of either closes the session.
    fn count(&mut self, step: Step) -> Step {
        let Step::Reply(r) = &step else {
            return step;
        };
        if !r.is_ok() {
            self.errors += 1;
            if self.errors >= self.cfg.max_errors {
                tracing::warn!(
                    event = "pop3.too_many_errors",
                    "closing after too many errors"
                );
                return Step::Close(reply::TOO_MANY_ERRORS);
            }
        }
        if matches!(self.state, State::Authorization { .. } | State::AuthPlain) {
            self.commands_before_auth += 1;
            if self.commands_before_auth > self.cfg.max_commands_before_auth {
                tracing::warn!(
                    event = "pop3.too_many_commands",
                    "closing: too many commands before login"
                );
                return Step::Close(reply::TOO_MANY_COMMANDS);
            }
        }
        step
    }

    /// The one check before dispatch: state, then TLS.
    fn check(&self, command: &Command) -> Result<(), Reply> {
        let (allowed, before_tls) = rule(command);
        let in_state = matches!(
            (&self.state, allowed),
            (_, Allowed::Both)
                | (State::Authorization { .. }, Allowed::Authorization)
                | (State::Transaction(_), Allowed::Transaction)
        );
        if !in_state {
            return Err(reply::WRONG_STATE);
        }
        if !before_tls && self.tls_required && !self.tls {
            return Err(reply::TLS_REQUIRED);
        }
        Ok(())
    }

    fn dispatch(&mut self, command: Command) -> Step {
        if let Err(reply) = self.check(&command) {
            return Step::Reply(reply);
        }
        match command {
            Command::Capa => Step::Reply(self.capabilities()),
            Command::Quit => self.quit(),
            Command::Stls => self.stls(),
            Command::Utf8 => {
                self.utf8 = true;
                Step::Reply(reply::UTF8_ON)
            }
            Command::User(name) => {
                self.state = State::Authorization { user: Some(name) };
                Step::Reply(reply::USER_OK)
            }
            Command::Pass(password) => self.pass(password),
            Command::Auth(None) => {
                Step::Reply(Reply::multi("SASL mechanisms follow", vec!["PLAIN".into()]))
            }
            Command::Auth(Some((mechanism, initial))) => self.auth(&mechanism, initial),
            other => self.transaction(other),
        }
    }

    /// RFC 2449 §5: exactly what is valid now, in this state, on this connection.
    fn capabilities(&self) -> Reply {
        let mut caps: Vec<String> = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
            .map(String::from)
            .into();
        let authorization = matches!(self.state, State::Authorization { .. });
        if authorization {
            if self.cfg.tls_available && !self.tls {
                caps.push("STLS".into()); // RFC 2595 §4
            }
            if self.tls || !self.tls_required {
                caps.push("USER".into()); // RFC 2449 §6.8
                caps.push("SASL PLAIN".into()); // RFC 5034 §5
            }
            caps.push("UTF8 USER".into()); // RFC 6856 §2
        }
        caps.push("EXPIRE NEVER".into()); // RFC 2449 §6.7
        caps.push("IMPLEMENTATION Postern".into()); // RFC 2449 §6.9
        Reply::multi("Capability list follows", caps)
    }

    fn stls(&mut self) -> Step {
        if self.tls {
            return Step::Reply(reply::TLS_ACTIVE);
        }
        if !self.cfg.tls_available {
            return Step::Reply(reply::TLS_UNAVAILABLE);
        }
        Step::StartTls(reply::BEGIN_TLS)
    }

    /// After the handshake: anything learnt before TLS is forgotten (RFC 2595 §4).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.state = State::Authorization { user: None };
    }

    fn pass(&mut self, password: String) -> Step {
        let State::Authorization { user: Some(user) } = &self.state else {
            return Step::Reply(reply::USER_FIRST);
        };
        let username = user.clone();
        self.state = State::Authorization { user: None };
        Step::Verify {
            mechanism: Mechanism::Plain,
            username,
            password,
        }
    }

    fn auth(&mut self, mechanism: &str, initial: Option<String>) -> Step {
        if mechanism != "PLAIN" {
            return Step::Reply(reply::AUTH_NO_MECHANISM);
        }
        match initial {
            None => {
                self.state = State::AuthPlain;
                Step::Reply(reply::AUTH_CONTINUE)
            }
            // RFC 5034 §4: "=" is an empty initial response.
            Some(ir) if ir == "=" => self.auth_plain(b""),
            Some(ir) => self.auth_plain(ir.as_bytes()),
        }
    }

    fn auth_response(&mut self, line: &[u8]) -> Step {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"*" {
            return Step::Reply(reply::AUTH_CANCELLED); // RFC 5034 §4
        }
        self.auth_plain(line)
    }

    /// RFC 4616 §2: `authzid NUL authcid NUL passwd`; an authzid must name the same user.
    fn auth_plain(&mut self, b64: &[u8]) -> Step {
        let Some(text) = B64.decode(b64).ok().and_then(|b| String::from_utf8(b).ok()) else {
            return Step::Reply(reply::AUTH_BAD_BASE64);
        };
        match text.split('\0').collect::<Vec<_>>().as_slice() {
            [authz, user, password] if authz.is_empty() || authz.eq_ignore_ascii_case(user) => {
                Step::Verify {
                    mechanism: Mechanism::Plain,
                    username: user.to_string(),
                    password: password.to_string(),
                }
            }
            [_, _, _] => Step::Reply(reply::AUTH_FAILED),
            _ => Step::Reply(reply::AUTH_BAD_PLAIN),
        }
    }

    /// authd's answer to [`Step::Verify`] (the caller has already waited a failure's delay).
    pub fn auth_result(&mut self, outcome: VerifyOutcome) -> Step {
        let step = match outcome {
            VerifyOutcome::Ok { user } => {
                self.state = State::Opening;
                Step::Open { user }
            }
            VerifyOutcome::Fail { .. } => Step::Reply(reply::AUTH_FAILED),
            VerifyOutcome::TempFail { .. } => Step::Reply(reply::AUTH_TEMP),
        };
        self.count(step)
    }

    /// The maildrop after [`Step::Open`]: locked, not yet listed (RFC 1939 §4 asks only for
    /// the lock; the listing comes with [`Session::listed_at_login`] or waits for the first
    /// command that needs it).
    pub fn opened(&mut self, user: &str, result: Result<(), OpenError>) -> Step {
        let step = match result {
            Ok(()) => {
                self.user = Some(user.to_string());
                self.state = State::Transaction(Transaction {
                    listed: false,
                    messages: Vec::new(),
                    deleted: Vec::new(),
                    retrieved: Vec::new(),
                });
                Step::Reply(reply::LOGGED_IN)
            }
            Err(e) => {
                self.state = State::Authorization { user: None };
                Step::Reply(match e {
                    OpenError::InUse => reply::IN_USE,
                    OpenError::Io(_) => reply::MAILDROP_TEMP,
                })
            }
        };
        self.count(step)
    }

    /// A listing taken at login, with the lock ([`crate::maildrop::Maildrop::lists_cheaply`]):
    /// the transaction starts listed. Ignored unless the maildrop was just opened unlisted.
    pub fn listed_at_login(&mut self, messages: Vec<MessageInfo>) {
        if let State::Transaction(t) = &mut self.state
            && !t.listed
        {
            let n = messages.len();
            *t = Transaction {
                listed: true,
                messages,
                deleted: vec![false; n],
                retrieved: vec![false; n],
            };
        }
    }

    /// The listing after [`Step::List`]; carries on with the command that asked for it. A
    /// failure answers that command and leaves the maildrop unlisted (the next one retries).
    pub fn listed(&mut self, result: std::io::Result<Vec<MessageInfo>>) -> Step {
        let pending = self.pending.take();
        let step = match (result, &mut self.state, pending) {
            (Ok(messages), State::Transaction(t), Some(command)) => {
                let n = messages.len();
                *t = Transaction {
                    listed: true,
                    messages,
                    deleted: vec![false; n],
                    retrieved: vec![false; n],
                };
                self.transaction(command)
            }
            _ => Step::Reply(reply::MAILDROP_TEMP),
        };
        self.count(step)
    }

    fn transaction(&mut self, command: Command) -> Step {
        let State::Transaction(t) = &mut self.state else {
            return Step::Reply(reply::WRONG_STATE);
        };
        if !t.listed && command != Command::Noop {
            self.pending = Some(command);
            return Step::List;
        }
        Step::Reply(match command {
            Command::Stat => {
                let (n, octets) = t.totals();
                Reply::ok_text(format!("{n} {octets}")) // RFC 1939 §5 STAT
            }
            Command::List(None) => Reply::multi(
                "scan listing follows",
                t.live()
                    .map(|(i, m)| format!("{} {}", i + 1, m.size))
                    .collect(),
            ),
            Command::List(Some(n)) => match t.index(n) {
                Ok(i) => Reply::ok_text(format!("{n} {}", t.messages[i].size)),
                Err(r) => r,
            },
            Command::Uidl(None) => Reply::multi(
                "unique-id listing follows",
                t.live()
                    .map(|(i, m)| format!("{} {}", i + 1, m.uidl))
                    .collect(),
            ),
            Command::Uidl(Some(n)) => match t.index(n) {
                Ok(i) => Reply::ok_text(format!("{n} {}", t.messages[i].uidl)),
                Err(r) => r,
            },
            Command::Retr(n) => match t.index(n) {
                Ok(index) => {
                    t.retrieved[index] = true;
                    return Step::Send { index, lines: None };
                }
                Err(r) => r,
            },
            Command::Top(n, lines) => match t.index(n) {
                Ok(index) => {
                    return Step::Send {
                        index,
                        lines: Some(lines),
                    };
                }
                Err(r) => r,
            },
            Command::Dele(n) => match t.index(n) {
                Ok(i) => {
                    t.deleted[i] = true;
                    reply::DELETED
                }
                Err(_) if t.deleted.get((n as usize).wrapping_sub(1)) == Some(&true) => {
                    reply::ALREADY_DELETED
                }
                Err(r) => r,
            },
            Command::Rset => {
                t.deleted.iter_mut().for_each(|d| *d = false);
                let (n, octets) = t.totals();
                Reply::ok_text(format!("maildrop has {n} messages ({octets} octets)"))
            }
            Command::Noop => reply::OK,
            _ => reply::WRONG_STATE,
        })
    }

    /// The `+OK` line before a message sent for [`Step::Send`].
    pub fn send_header(&self, index: usize, lines: Option<u64>) -> Reply {
        match (lines, &self.state) {
            (None, State::Transaction(t)) => t
                .messages
                .get(index)
                .map(|m| Reply::ok_text(format!("{} octets", m.size)))
                .unwrap_or(reply::OK),
            _ => reply::OK,
        }
    }

    /// Message `index` could not be read for [`Step::Send`].
    pub fn read_failed(&mut self, index: usize) -> Step {
        if let State::Transaction(t) = &mut self.state
            && let Some(r) = t.retrieved.get_mut(index)
        {
            *r = false;
        }
        self.count(Step::Reply(reply::READ_FAILED))
    }

    /// RFC 1939 §6: QUIT in TRANSACTION enters UPDATE; elsewhere it just closes.
    fn quit(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Update) {
            State::Transaction(t) => Step::Commit(Update {
                delete: (0..t.messages.len()).filter(|&i| t.deleted[i]).collect(),
                seen: (0..t.messages.len())
                    .filter(|&i| t.retrieved[i] && !t.deleted[i])
                    .collect(),
            }),
            _ => Step::Close(reply::BYE),
        }
    }

    /// The outcome of [`Step::Commit`]; the connection closes after this reply.
    pub fn committed(&mut self, result: std::io::Result<()>) -> Reply {
        match result {
            Ok(()) => reply::BYE,
            Err(_) => reply::UPDATE_FAILED,
        }
    }
}

impl Transaction {
    /// Messages not marked deleted, with their index.
    fn live(&self) -> impl Iterator<Item = (usize, &MessageInfo)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
    }

    fn totals(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, o), (_, m)| (n + 1, o + m.size))
    }

    /// The index of message number `n` (1-based), if it exists and is not marked deleted
    /// (RFC 1939 §5: "may NOT refer to a message marked as deleted").
    fn index(&self, n: u32) -> Result<usize, Reply> {
        let i = (n as usize).wrapping_sub(1);
        match self.deleted.get(i) {
            Some(false) => Ok(i),
            _ => Err(reply::NO_SUCH_MESSAGE),
        }
    }
}

#[cfg(test)]
mod tests;

//! The SMTP server session (RFC 5321) as a state machine: command lines in, replies and
//! requests out. The listener's policy (ARCHITECTURE §2) is applied here in one place:
//! `check_command` decides, before dispatch, what a command may do in this state, on this
//! listener, with or without TLS and authentication. No sockets, files or clocks here.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use shared::config::ListenerName;
use shared::proto::auth::{Mechanism, Recipient, VerifyOutcome};
use shared::smtp::{DataError, Reply, parse_command, replies, reply_to_parse_error};
use smtp_proto::Request;

use crate::policy::Policy;

/// What the session knows of its configuration.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub domains: Vec<String>,
    pub max_size: u64,
    pub max_recipients: usize,
    pub max_errors: u32,
    pub max_commands_before_mail: u32,
    pub restrict_sender: bool,
    pub tls_available: bool,
}

/// One recipient of the envelope, with its DSN parameters (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rcpt {
    pub address: String,
    /// In a local domain (delivered by LMTP) or not (queued for the outbound issue).
    pub local: bool,
    pub notify: Vec<String>,
    pub orcpt: Option<String>,
}

/// The envelope of a message (RFC 5321 §2.3.1), kept in the queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    pub sender: String,
    pub recipients: Vec<Rcpt>,
    /// RFC 3461 RET and ENVID, RFC 6152 BODY, RFC 6531 SMTPUTF8.
    pub ret: Option<String>,
    pub envid: Option<String>,
    pub body_8bit: bool,
    pub smtputf8: bool,
}

/// An accepted alias: the alias itself as a local recipient when it has local targets (the
/// MDA resolves it to them), and each remote target as a remote recipient, with the alias as
/// its ORCPT (RFC 3461 §4.2) so a bounce names what the sender wrote. Expanding here, once,
/// records the forwards in the queued envelope: a restart or a retry never forwards twice.
fn add_alias(envelope: &mut Envelope, mut rcpt: Rcpt, targets: Vec<String>, domains: &[String]) {
    let is_local = |a: &str| {
        a.rsplit_once('@')
            .is_some_and(|(_, d)| domains.iter().any(|l| l.eq_ignore_ascii_case(d)))
    };
    let (local, remote): (Vec<String>, Vec<String>) =
        targets.into_iter().partition(|t| is_local(t));
    for target in remote {
        let known = envelope
            .recipients
            .iter()
            .any(|r| r.address.eq_ignore_ascii_case(&target));
        if !known {
            envelope.recipients.push(Rcpt {
                address: target,
                local: false,
                notify: rcpt.notify.clone(),
                orcpt: Some(rcpt.orcpt.clone().unwrap_or_else(|| rcpt.address.clone())),
            });
        }
    }
    if !local.is_empty() {
        rcpt.local = true;
        envelope.recipients.push(rcpt);
    }
}

/// Who sent the message, for the Received: header (RFC 5321 §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub helo: String,
    pub remote: IpAddr,
    pub tls: Option<String>,
    pub user: Option<String>,
    pub esmtp: bool,
    pub smtputf8: bool,
}

impl Trace {
    /// The protocol keyword of RFC 3848 / RFC 6531 §3.7.3.
    pub fn protocol(&self) -> String {
        let base = match (self.smtputf8, self.esmtp) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => "SMTP",
        };
        let s = if self.tls.is_some() { "S" } else { "" };
        let a = if self.user.is_some() { "A" } else { "" };
        format!("{base}{s}{a}")
    }
}

/// A message ready to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub envelope: Envelope,
    pub trace: Trace,
    /// LF line ends.
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Before EHLO/HELO (again after STARTTLS, RFC 3207 §4.2).
    Fresh,
    Idle,
    Mail(Envelope),
    /// Receiving BDAT chunks (RFC 3030).
    Bdat {
        envelope: Envelope,
        body: Vec<u8>,
        too_big: bool,
    },
    /// Waiting for the message after 354.
    Data(Envelope),
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword(String),
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reply(Reply),
    /// Send the reply and close the connection.
    Close(Reply),
    /// Send the reply, discard anything the client already sent, do the TLS handshake, then
    /// call [`Session::tls_started`].
    StartTls(Reply),
    /// Verify with authd, wait the delay of a failure, then call [`Session::auth_result`] (and
    /// [`Session::set_senders`] on success).
    Verify {
        mechanism: Mechanism,
        username: String,
        password: String,
    },
    /// Look the local recipient up with authd, then call [`Session::resolved`].
    Lookup(String),
    /// Send the 354 reply, read the message, call [`Session::data_received`].
    ReceiveData(Reply),
    /// Read exactly `size` octets, then call [`Session::chunk_received`].
    ReceiveChunk {
        size: usize,
        last: bool,
    },
    /// Queue the message durably, then call [`Session::queued`].
    Queue(Message),
}

pub struct Session {
    cfg: SessionConfig,
    policy: Policy,
    remote: IpAddr,
    tls: Option<String>,
    helo: Option<String>,
    esmtp: bool,
    user: Option<String>,
    senders: Vec<String>,
    state: State,
    errors: u32,
    idle_commands: u32,
    /// The recipient waiting for its lookup.
    pending: Option<Rcpt>,
    /// The reply owed after a refused BDAT's chunk has been read.
    discard: Option<Reply>,
}

/// Which commands may run when (STYLE §2: the table, checked in one place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// EHLO, HELO, NOOP, RSET, QUIT, HELP, VRFY: always.
    Anytime,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    Bdat,
}

impl Session {
    pub fn new(
        cfg: SessionConfig,
        listener: ListenerName,
        remote: IpAddr,
        tls: Option<String>,
    ) -> Session {
        Session {
            cfg,
            policy: Policy::for_listener(listener),
            remote,
            tls,
            helo: None,
            esmtp: false,
            user: None,
            senders: Vec::new(),
            state: State::Fresh,
            errors: 0,
            idle_commands: 0,
            pending: None,
            discard: None,
        }
    }

    pub fn greeting(&self) -> Reply {
        Reply::with_text(220, "", format!("{} ESMTP Postern", self.cfg.hostname))
    }

    pub fn max_size(&self) -> u64 {
        self.cfg.max_size
    }

    /// Feeds one line (ending in LF). In AUTH states the line is the client's SASL response.
    pub fn command(&mut self, line: &[u8]) -> Step {
        let step = match &self.state {
            State::AuthPlain | State::AuthLoginUser | State::AuthLoginPassword(_) => {
                self.auth_response(line)
            }
            _ => match parse_command(line) {
                Ok(request) => self.dispatch(request),
                Err(e) => Step::Reply(reply_to_parse_error(&e)),
            },
        };
        self.count(step)
    }

    /// Error and idle-command accounting: too many of either closes the session.
    fn count(&mut self, step: Step) -> Step {
        if let Step::Reply(r) = &step {
            if r.code >= 500 {
                self.errors += 1;
                if self.errors >= self.cfg.max_errors {
                    return Step::Close(replies::TOO_MANY_ERRORS);
                }
            }
            if matches!(self.state, State::Fresh | State::Idle) {
                self.idle_commands += 1;
                if self.idle_commands > self.cfg.max_commands_before_mail {
                    return Step::Close(Reply::new(
                        421,
                        "4.7.0",
                        "too many commands without mail: closing connection",
                    ));
                }
            }
        }
        step
    }

    fn dispatch(&mut self, request: Request<String>) -> Step {
        let kind = match &request {
            Request::StartTls => Kind::StartTls,
            Request::Auth { .. } => Kind::Auth,
            Request::Mail { .. } => Kind::Mail,
            Request::Rcpt { .. } => Kind::Rcpt,
            Request::Data => Kind::Data,
            Request::Bdat { .. } => Kind::Bdat,
            _ => Kind::Anytime,
        };
        if let Err(reply) = self.check_command(kind) {
            return match request {
                // A refused BDAT still carries its chunk: it must be read and dropped.
                Request::Bdat { chunk_size, .. } => {
                    self.state = match std::mem::replace(&mut self.state, State::Idle) {
                        State::Bdat { .. } => State::Idle,
                        other => other,
                    };
                    self.discard_chunk(chunk_size, reply)
                }
                _ => Step::Reply(reply),
            };
        }
        match request {
            Request::Ehlo { host } => self.hello(host, true),
            Request::Helo { host } => self.hello(host, false),
            Request::Lhlo { .. } => Step::Reply(replies::UNKNOWN_COMMAND),
            Request::StartTls => Step::StartTls(Reply::new(220, "2.0.0", "ready to start TLS")),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response),
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to),
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.reset();
                Step::Reply(replies::OK)
            }
            Request::Noop { .. } => Step::Reply(replies::OK),
            Request::Vrfy { .. } => Step::Reply(replies::VRFY_NO_DISCLOSURE),
            Request::Help { .. } => Step::Reply(Reply::new(
                214,
                "2.0.0",
                "see RFC 5321; commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT",
            )),
            Request::Quit => Step::Close(replies::BYE),
            _ => Step::Reply(Reply::new(502, "5.5.1", "command not implemented")),
        }
    }

    /// The policy table (ARCHITECTURE §2) and the command sequence (RFC 5321 §4.1.4).
    fn check_command(&self, kind: Kind) -> Result<(), Reply> {
        let in_tls = self.tls.is_some();
        let needs_tls_first = self.policy.tls_required && !in_tls;
        match kind {
            Kind::Anytime => Ok(()),
            Kind::StartTls if in_tls => Err(Reply::new(503, "5.5.1", "TLS already active")),
            Kind::StartTls if !self.cfg.tls_available => {
                Err(Reply::new(454, "4.7.0", "TLS not available"))
            }
            Kind::StartTls if !matches!(self.state, State::Fresh | State::Idle) => {
                Err(replies::BAD_SEQUENCE)
            }
            Kind::StartTls => Ok(()),
            // RFC 3207 §4, RFC 8314: no credentials and no mail before TLS where it is required.
            Kind::Auth | Kind::Mail if needs_tls_first => Err(Reply::new(
                530,
                "5.7.0",
                "must issue a STARTTLS command first",
            )),
            Kind::Auth if !self.policy.auth => {
                Err(Reply::new(503, "5.5.1", "authentication not enabled"))
            }
            Kind::Auth if self.user.is_some() => {
                Err(Reply::new(503, "5.5.1", "already authenticated"))
            }
            Kind::Auth | Kind::Mail if self.helo.is_none() => {
                Err(Reply::new(503, "5.5.1", "send EHLO first"))
            }
            Kind::Auth if self.state != State::Idle => {
                Err(Reply::new(503, "5.5.1", "not during a mail transaction"))
            }
            Kind::Auth => Ok(()),
            Kind::Mail if self.policy.auth && self.user.is_none() => {
                Err(Reply::new(530, "5.7.0", "authentication required"))
            }
            Kind::Mail if self.state != State::Idle => {
                Err(Reply::new(503, "5.5.1", "nested MAIL command"))
            }
            Kind::Mail => Ok(()),
            Kind::Rcpt if !matches!(self.state, State::Mail(_)) => {
                Err(Reply::new(503, "5.5.1", "need MAIL before RCPT"))
            }
            Kind::Rcpt => Ok(()),
            Kind::Data => match &self.state {
                State::Mail(env) if env.recipients.is_empty() => Err(replies::NO_VALID_RECIPIENTS),
                State::Mail(_) => Ok(()),
                State::Bdat { .. } => Err(Reply::new(503, "5.5.1", "DATA during BDAT")),
                _ => Err(Reply::new(503, "5.5.1", "need MAIL and RCPT before DATA")),
            },
            Kind::Bdat => match &self.state {
                State::Mail(env) if env.recipients.is_empty() => Err(replies::NO_VALID_RECIPIENTS),
                State::Mail(_) | State::Bdat { .. } => Ok(()),
                _ => Err(Reply::new(503, "5.5.1", "need MAIL and RCPT before BDAT")),
            },
        }
    }

    fn hello(&mut self, host: String, esmtp: bool) -> Step {
        if host.is_empty() {
            return Step::Reply(Reply::new(
                501,
                "5.5.4",
                "EHLO needs a domain or address literal",
            ));
        }
        self.reset();
        self.state = State::Idle;
        self.helo = Some(host);
        self.esmtp = esmtp;
        if !esmtp {
            return Step::Reply(Reply::with_text(250, "", self.cfg.hostname.clone()));
        }
        let mut lines = vec![
            self.cfg.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.cfg.max_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if self.cfg.tls_available && self.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        // RFC 4954 §4: mechanisms are announced only where they may be used.
        if self.policy.auth
            && (self.tls.is_some() || !self.policy.tls_required)
            && self.user.is_none()
        {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        Step::Reply(Reply::with_text(250, "", lines.join("\n")))
    }

    /// After the handshake: everything said before TLS is forgotten (RFC 3207 §4.2).
    pub fn tls_started(&mut self, description: String) {
        self.tls = Some(description);
        self.helo = None;
        self.esmtp = false;
        self.state = State::Fresh;
    }

    fn reset(&mut self) {
        if !matches!(self.state, State::Fresh) {
            self.state = State::Idle;
        }
    }

    fn auth(&mut self, mechanism: u64, initial: String) -> Step {
        if mechanism == smtp_proto::AUTH_PLAIN {
            if initial.is_empty() {
                self.state = State::AuthPlain;
                return Step::Reply(Reply::new(334, "", ""));
            }
            return self.auth_plain(initial.as_bytes());
        }
        if mechanism == smtp_proto::AUTH_LOGIN {
            if initial.is_empty() {
                self.state = State::AuthLoginUser;
                return Step::Reply(Reply::new(334, "", "VXNlcm5hbWU6")); // "Username:"
            }
            return self.auth_login_user(initial.as_bytes());
        }
        Step::Reply(Reply::new(504, "5.5.4", "unrecognized authentication type"))
    }

    fn auth_response(&mut self, line: &[u8]) -> Step {
        let line = trim_crlf(line);
        let state = std::mem::replace(&mut self.state, State::Idle);
        if line == b"*" {
            return Step::Reply(Reply::new(501, "5.0.0", "authentication cancelled")); // RFC 4954 §4
        }
        match state {
            State::AuthPlain => self.auth_plain(line),
            State::AuthLoginUser => self.auth_login_user(line),
            State::AuthLoginPassword(user) => match decode(line) {
                Some(password) => Step::Verify {
                    mechanism: Mechanism::Login,
                    username: user,
                    password,
                },
                None => Step::Reply(bad_base64()),
            },
            _ => Step::Reply(replies::BAD_SEQUENCE),
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`; an authzid must name the same user.
    fn auth_plain(&mut self, b64: &[u8]) -> Step {
        let Some(text) = decode(b64) else {
            return Step::Reply(bad_base64());
        };
        let parts: Vec<&str> = text.split('\0').collect();
        match parts.as_slice() {
            [authz, user, password] if authz.is_empty() || authz.eq_ignore_ascii_case(user) => {
                Step::Verify {
                    mechanism: Mechanism::Plain,
                    username: user.to_string(),
                    password: password.to_string(),
                }
            }
            [_, _, _] => Step::Reply(Reply::new(
                535,
                "5.7.8",
                "authentication credentials invalid",
            )),
            _ => Step::Reply(Reply::new(501, "5.5.2", "malformed PLAIN response")),
        }
    }

    fn auth_login_user(&mut self, b64: &[u8]) -> Step {
        match decode(b64) {
            Some(user) => {
                self.state = State::AuthLoginPassword(user);
                Step::Reply(Reply::new(334, "", "UGFzc3dvcmQ6")) // "Password:"
            }
            None => Step::Reply(bad_base64()),
        }
    }

    /// authd's answer to [`Step::Verify`] (the caller has already waited a failure's delay).
    pub fn auth_result(&mut self, outcome: VerifyOutcome) -> Reply {
        self.state = State::Idle;
        match outcome {
            VerifyOutcome::Ok { user } => {
                self.user = Some(user);
                Reply::new(235, "2.7.0", "authentication successful") // RFC 4954 §6
            }
            VerifyOutcome::Fail { .. } => {
                Reply::new(535, "5.7.8", "authentication credentials invalid")
            }
            VerifyOutcome::TempFail { .. } => {
                Reply::new(454, "4.7.0", "temporary authentication failure")
            }
        }
    }

    pub fn remote(&self) -> IpAddr {
        self.remote
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The addresses the authenticated user may send as.
    pub fn set_senders(&mut self, senders: Vec<String>) {
        self.senders = senders;
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>) -> Step {
        if from.size > 0 && from.size as u64 > self.cfg.max_size {
            return Step::Reply(replies::MESSAGE_TOO_BIG);
        }
        if let Some(user) = &self.user
            && self.cfg.restrict_sender
            && !self
                .senders
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&from.address))
        {
            return Step::Reply(Reply::with_text(
                553,
                "5.7.1",
                format!("sender address not owned by {user}"),
            ));
        }
        let flags = from.flags;
        self.idle_commands = 0;
        self.state = State::Mail(Envelope {
            sender: from.address,
            recipients: Vec::new(),
            ret: if flags & smtp_proto::MAIL_RET_FULL != 0 {
                Some("FULL".into())
            } else if flags & smtp_proto::MAIL_RET_HDRS != 0 {
                Some("HDRS".into())
            } else {
                None
            },
            envid: from.env_id,
            body_8bit: flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            smtputf8: flags & smtp_proto::MAIL_SMTPUTF8 != 0,
        });
        Step::Reply(replies::SENDER_OK)
    }

    fn rcpt(&mut self, to: smtp_proto::RcptTo<String>) -> Step {
        let State::Mail(envelope) = &mut self.state else {
            return Step::Reply(replies::BAD_SEQUENCE);
        };
        if envelope.recipients.len() >= self.cfg.max_recipients {
            return Step::Reply(replies::TOO_MANY_RECIPIENTS);
        }
        // `<postmaster>` without a domain must be accepted (RFC 5321 §4.5.1).
        let address = if to.address.is_empty() {
            match self.cfg.domains.first() {
                Some(d) => format!("postmaster@{d}"),
                None => return Step::Reply(replies::NO_SUCH_USER),
            }
        } else {
            to.address
        };
        let notify: Vec<String> = [
            (smtp_proto::RCPT_NOTIFY_SUCCESS, "SUCCESS"),
            (smtp_proto::RCPT_NOTIFY_FAILURE, "FAILURE"),
            (smtp_proto::RCPT_NOTIFY_DELAY, "DELAY"),
            (smtp_proto::RCPT_NOTIFY_NEVER, "NEVER"),
        ]
        .iter()
        .filter(|(flag, _)| to.flags & flag != 0)
        .map(|(_, n)| n.to_string())
        .collect();
        let rcpt = Rcpt {
            address: address.clone(),
            local: false,
            notify,
            orcpt: to.orcpt,
        };
        match classify(&address, &self.cfg.domains) {
            // Relay tricks (RFC 5321 §3.6, §7.9): never interpreted, refused for everyone
            // unauthenticated, and refused in local domains for everyone.
            Target::Trick if self.user.is_none() => {
                Step::Reply(Reply::new(550, "5.7.1", "relay access denied"))
            }
            Target::Trick | Target::Local => {
                self.pending = Some(rcpt);
                Step::Lookup(address)
            }
            Target::Remote if self.user.is_none() => {
                Step::Reply(Reply::new(550, "5.7.1", "relay access denied"))
            }
            Target::Remote => {
                envelope.recipients.push(rcpt);
                Step::Reply(replies::RECIPIENT_OK)
            }
        }
    }

    /// authd's answer to [`Step::Lookup`].
    pub fn resolved(&mut self, found: Recipient) -> Reply {
        let (State::Mail(envelope), Some(mut rcpt)) = (&mut self.state, self.pending.take()) else {
            return replies::BAD_SEQUENCE;
        };
        match found {
            Recipient::Mailbox { .. } => {
                rcpt.local = true;
                envelope.recipients.push(rcpt);
                replies::RECIPIENT_OK
            }
            Recipient::Alias { targets } => {
                add_alias(envelope, rcpt, targets, &self.cfg.domains);
                replies::RECIPIENT_OK
            }
            Recipient::Unknown => replies::NO_SUCH_USER,
        }
    }

    /// authd could not answer a lookup.
    pub fn lookup_failed(&mut self) -> Reply {
        self.pending = None;
        replies::TEMP_LOCAL_ERROR
    }

    fn data(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Mail(envelope) => {
                self.state = State::Data(envelope);
                Step::ReceiveData(replies::START_DATA)
            }
            other => {
                self.state = other;
                Step::Reply(replies::BAD_SEQUENCE)
            }
        }
    }

    fn bdat(&mut self, size: usize, last: bool) -> Step {
        self.state = match std::mem::replace(&mut self.state, State::Idle) {
            State::Mail(envelope) => State::Bdat {
                envelope,
                body: Vec::new(),
                too_big: false,
            },
            other => other,
        };
        Step::ReceiveChunk { size, last }
    }

    /// A refused BDAT: its octets are read and dropped, then `reply` is sent.
    fn discard_chunk(&mut self, size: usize, reply: Reply) -> Step {
        self.discard = Some(reply);
        Step::ReceiveChunk { size, last: false }
    }

    /// The octets of a BDAT chunk (RFC 3030 §2).
    pub fn chunk_received(&mut self, chunk: &[u8], last: bool) -> Step {
        if let Some(reply) = self.discard.take() {
            return Step::Reply(reply);
        }
        let State::Bdat { body, too_big, .. } = &mut self.state else {
            return Step::Reply(replies::BAD_SEQUENCE);
        };
        if !*too_big {
            if (body.len() + chunk.len()) as u64 > self.cfg.max_size {
                *too_big = true;
                body.clear();
            } else {
                body.extend_from_slice(chunk);
            }
        }
        if !last {
            return Step::Reply(Reply::with_text(
                250,
                "2.0.0",
                format!("{} octets received", chunk.len()),
            ));
        }
        let State::Bdat {
            envelope,
            body,
            too_big,
        } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return Step::Reply(replies::BAD_SEQUENCE);
        };
        if too_big {
            return Step::Reply(replies::MESSAGE_TOO_BIG);
        }
        // Stored with LF line ends like DATA messages; BDAT needs no unstuffing.
        let body = crlf_to_lf(&body);
        Step::Queue(self.message(envelope, body))
    }

    /// The message after [`Step::ReceiveData`].
    pub fn data_received(&mut self, message: Result<Vec<u8>, DataError>) -> Step {
        let State::Data(envelope) = std::mem::replace(&mut self.state, State::Idle) else {
            return Step::Reply(replies::BAD_SEQUENCE);
        };
        match message {
            Ok(body) => Step::Queue(self.message(envelope, body)),
            Err(DataError::TooBig) => Step::Reply(replies::MESSAGE_TOO_BIG),
            Err(DataError::BareLineEnding) => Step::Reply(replies::BARE_LINE_FEED),
        }
    }

    fn message(&self, envelope: Envelope, body: Vec<u8>) -> Message {
        Message {
            trace: Trace {
                helo: self.helo.clone().unwrap_or_default(),
                remote: self.remote,
                tls: self.tls.clone(),
                user: self.user.clone(),
                esmtp: self.esmtp,
                smtputf8: envelope.smtputf8,
            },
            envelope,
            body,
        }
    }

    /// The outcome of [`Step::Queue`].
    pub fn queued(&mut self, result: Result<String, std::io::Error>) -> Reply {
        self.state = State::Idle;
        match result {
            Ok(id) => Reply::with_text(250, "2.0.0", format!("OK queued as {id}")),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                replies::TEMP_NO_SPACE
            }
            Err(_) => replies::TEMP_LOCAL_ERROR,
        }
    }
}

/// Where a recipient goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Local,
    Remote,
    /// `%` or `!` routing, a quoted local part holding an `@`, or more than one `@`: relay
    /// tricks older MTAs interpreted.
    Trick,
}

fn classify(address: &str, domains: &[String]) -> Target {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Target::Trick;
    };
    if local.contains(['%', '!', '@', '"']) || domain.is_empty() {
        return Target::Trick;
    }
    if domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        Target::Local
    } else {
        Target::Remote
    }
}

fn decode(b64: &[u8]) -> Option<String> {
    B64.decode(trim_crlf(b64))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

fn bad_base64() -> Reply {
    Reply::new(501, "5.5.2", "cannot decode the base64 response")
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn crlf_to_lf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\r' && body.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

//! The SMTP client's protocol core, without sockets: the reply parser (RFC 5321 §4.2), the
//! EHLO capabilities (RFC 5321 §4.1.1.1), the MAIL/RCPT/DATA parameters (SIZE RFC 1870,
//! BODY RFC 6152, SMTPUTF8 RFC 6531, DSN RFC 3461) and one mail transaction as a state machine
//! fed reply after reply, pipelined (RFC 2920) or not. `session.rs` drives it over TCP/TLS.

use crate::session::{Envelope, Rcpt};

/// Longest reply line accepted (RFC 5321 §4.5.3.1.5 sets 512 octets, CRLF included; servers
/// exceed it in practice).
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply (EHLO lists a few dozen at most).
pub const MAX_REPLY_LINES: usize = 200;

/// A complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, after the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![text.to_string()],
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// One line for logs and the DSN's Diagnostic-Code: "550 5.1.1 no such user".
    pub fn summary(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }
}

/// Why the server's bytes are not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    TooLong,
    TooManyLines,
    Malformed(String),
}

/// Turns received bytes into replies; keeps what is incomplete.
#[derive(Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    lines: Vec<String>,
    code: Option<u16>,
}

impl ReplyParser {
    /// Takes more bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete reply, if the bytes so far hold one.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let Some(end) = self.buf.iter().position(|&b| b == b'\n') else {
                return if self.buf.len() > MAX_REPLY_LINE {
                    Err(ReplyError::TooLong)
                } else {
                    Ok(None)
                };
            };
            if end > MAX_REPLY_LINE {
                return Err(ReplyError::TooLong);
            }
            let raw: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(reply) = self.take_line(line)? {
                return Ok(Some(reply));
            }
        }
    }

    fn take_line(&mut self, line: &str) -> Result<Option<Reply>, ReplyError> {
        let bytes = line.as_bytes();
        let code = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| ReplyError::Malformed(line.chars().take(80).collect()))?;
        // Every line of a multi-line reply carries the same code (RFC 5321 §4.2.1).
        if self.code.is_some_and(|c| c != code) {
            return Err(ReplyError::Malformed(line.chars().take(80).collect()));
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        self.code = Some(code);
        self.lines.push(line.get(4..).unwrap_or("").to_string());
        match bytes.get(3) {
            Some(b'-') => Ok(None),
            None | Some(b' ') => Ok(Some(Reply {
                code,
                lines: std::mem::take(&mut self.lines),
            }))
            .inspect(|_| self.code = None),
            Some(_) => Err(ReplyError::Malformed(line.chars().take(80).collect())),
        }
    }
}

/// What the server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    pub starttls: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    /// SIZE limit; 0 when announced without one (RFC 1870 §4), None when not announced.
    pub size: Option<u64>,
    pub auth_plain: bool,
    pub auth_login: bool,
}

impl Capabilities {
    /// From the lines of a 250 EHLO reply (the first is the greeting).
    pub fn parse(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => {
                    for mech in words {
                        caps.auth_plain |= mech.eq_ignore_ascii_case("PLAIN");
                        caps.auth_login |= mech.eq_ignore_ascii_case("LOGIN");
                    }
                }
                _ => {}
            }
        }
        caps
    }
}

/// xtext (RFC 3461 §4): '+', '=', controls, space and non-ASCII as "+XX".
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Why a message cannot be offered to this server at all (before MAIL).
pub fn refuse_before_mail(
    caps: &Capabilities,
    env: &Envelope,
    size: u64,
    needs_utf8: bool,
) -> Option<Reply> {
    if let Some(limit) = caps.size.filter(|l| *l > 0 && size > *l) {
        // RFC 1870 §6: a message bigger than the announced SIZE is a permanent failure.
        return Some(Reply::new(
            552,
            &format!("5.3.4 message of {size} bytes exceeds the server's limit of {limit}"),
        ));
    }
    if env.smtputf8 && needs_utf8 && !caps.smtputf8 {
        // RFC 6531 §3.4: no downgrade here; the message bounces.
        return Some(Reply::new(
            553,
            "5.6.7 the message needs SMTPUTF8, which the server does not offer",
        ));
    }
    None
}

/// The MAIL FROM command with the parameters the server offered.
pub fn mail_command(caps: &Capabilities, env: &Envelope, size: u64) -> String {
    let mut cmd = format!("MAIL FROM:<{}>", env.sender);
    if caps.size.is_some() {
        cmd.push_str(&format!(" SIZE={size}"));
    }
    if env.body_8bit && caps.eightbitmime {
        cmd.push_str(" BODY=8BITMIME");
    }
    if env.smtputf8 && caps.smtputf8 {
        cmd.push_str(" SMTPUTF8");
    }
    if caps.dsn {
        if let Some(ret) = &env.ret {
            cmd.push_str(&format!(" RET={ret}"));
        }
        if let Some(envid) = &env.envid {
            cmd.push_str(&format!(" ENVID={}", xtext(envid)));
        }
    }
    cmd.push_str("\r\n");
    cmd
}

/// A RCPT TO command, with NOTIFY and ORCPT when the server offered DSN (RFC 3461 §4.1-4.2).
pub fn rcpt_command(caps: &Capabilities, rcpt: &Rcpt) -> String {
    let mut cmd = format!("RCPT TO:<{}>", rcpt.address);
    if caps.dsn {
        if !rcpt.notify.is_empty() {
            cmd.push_str(&format!(" NOTIFY={}", rcpt.notify.join(",")));
        }
        if let Some(orcpt) = &rcpt.orcpt {
            cmd.push_str(&format!(" ORCPT=rfc822;{}", xtext(orcpt)));
        }
    }
    cmd.push_str("\r\n");
    cmd
}

/// What the driver must do next in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write these command bytes, then feed the replies they bring.
    Send(Vec<u8>),
    /// Write the dot-stuffed message (which ends with ".\r\n"), then feed the final reply.
    SendBody,
    /// Wait for the next reply.
    Wait,
    /// The transaction is over; `reset`: RSET before reusing the connection.
    Done { results: Vec<Reply>, reset: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Mail,
    Rcpt(usize),
    Data,
    /// The server said 354 although no recipient was accepted: an empty message ends it.
    Abandon,
    Final,
    Over,
}

/// One mail transaction (RFC 5321 §3.3) for some recipients: MAIL, RCPT each, DATA, body.
pub struct Transaction {
    commands: Vec<String>,
    pipelining: bool,
    stage: Stage,
    mail: Option<Reply>,
    rcpts: Vec<Option<Reply>>,
}

impl Transaction {
    /// `mail` and `rcpts` are the full command lines (CRLF included).
    pub fn new(mail: String, rcpts: Vec<String>, pipelining: bool) -> Transaction {
        let mut commands = vec![mail];
        commands.extend(rcpts);
        let n = commands.len() - 1;
        Transaction {
            commands,
            pipelining,
            stage: Stage::Mail,
            mail: None,
            rcpts: vec![None; n],
        }
    }

    /// The first bytes to send: MAIL alone, or with PIPELINING every command up to DATA
    /// (RFC 2920 §3.1: DATA is the last command of a batch).
    pub fn start(&self) -> Step {
        if self.pipelining {
            let mut batch = self.commands.concat();
            batch.push_str("DATA\r\n");
            Step::Send(batch.into_bytes())
        } else {
            Step::Send(self.commands[0].clone().into_bytes())
        }
    }

    /// Feeds the next reply; says what to do next.
    pub fn on_reply(&mut self, reply: Reply) -> Step {
        match self.stage {
            Stage::Mail => self.on_mail(reply),
            Stage::Rcpt(i) => self.on_rcpt(i, reply),
            Stage::Data => self.on_data(reply),
            Stage::Abandon => {
                self.stage = Stage::Over;
                self.finish(None, true)
            }
            Stage::Final => {
                self.stage = Stage::Over;
                self.finish(Some(reply), false)
            }
            Stage::Over => Step::Wait,
        }
    }

    fn on_mail(&mut self, reply: Reply) -> Step {
        let accepted = reply.is_positive();
        self.mail = Some(reply);
        if self.rcpts.is_empty() {
            return self.after_rcpts();
        }
        self.stage = Stage::Rcpt(0);
        if self.pipelining {
            Step::Wait
        } else if accepted {
            Step::Send(self.commands[1].clone().into_bytes())
        } else {
            self.stage = Stage::Over;
            self.finish(None, true)
        }
    }

    fn on_rcpt(&mut self, i: usize, reply: Reply) -> Step {
        if let Some(slot) = self.rcpts.get_mut(i) {
            *slot = Some(reply);
        }
        if i + 1 < self.rcpts.len() {
            self.stage = Stage::Rcpt(i + 1);
            return if self.pipelining {
                Step::Wait
            } else {
                Step::Send(self.commands[i + 2].clone().into_bytes())
            };
        }
        self.after_rcpts()
    }

    /// Every RCPT answered: DATA (already sent when pipelining) if anyone was accepted.
    fn after_rcpts(&mut self) -> Step {
        self.stage = Stage::Data;
        if self.pipelining {
            return Step::Wait;
        }
        if self.any_accepted() {
            Step::Send(b"DATA\r\n".to_vec())
        } else {
            self.stage = Stage::Over;
            self.finish(None, true)
        }
    }

    fn on_data(&mut self, reply: Reply) -> Step {
        if reply.code == 354 && self.any_accepted() {
            self.stage = Stage::Final;
            return Step::SendBody;
        }
        if reply.code == 354 {
            // RFC 2920 §3.1: a server may accept DATA after refusing every RCPT; an empty
            // message (just the dot) ends that transaction without delivering anything.
            self.stage = Stage::Abandon;
            return Step::Send(b".\r\n".to_vec());
        }
        self.stage = Stage::Over;
        self.finish(Some(reply), true)
    }

    fn any_accepted(&self) -> bool {
        self.mail.as_ref().is_some_and(Reply::is_positive)
            && self.rcpts.iter().flatten().any(Reply::is_positive)
    }

    /// Each recipient's result: its own refusal, the sender's refusal, or `last` (the reply to
    /// DATA or to the final dot) for those accepted so far.
    fn finish(&mut self, last: Option<Reply>, reset: bool) -> Step {
        let fallback = Reply::new(451, "4.4.0 transaction ended without a reply");
        let mail = self.mail.clone().unwrap_or_else(|| fallback.clone());
        let results = self
            .rcpts
            .iter()
            .map(|r| match r {
                _ if !mail.is_positive() => mail.clone(),
                Some(r) if !r.is_positive() => r.clone(),
                Some(_) => last.clone().unwrap_or_else(|| fallback.clone()),
                None => fallback.clone(),
            })
            .collect();
        Step::Done { results, reset }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;

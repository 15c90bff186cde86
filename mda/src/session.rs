//! The LMTP session (RFC 2033) as a state machine: command lines in, replies and requests out
//! (recipient lookups, delivery). No sockets, files or clocks here: `io.rs` drives it.

use shared::proto::auth::Recipient;
use shared::smtp::{DataError, Reply, parse_command, replies, reply_to_parse_error};
use smtp_proto::Request;

/// Most recipients in one transaction (RFC 5321 §4.5.3.1.8 asks for at least 100).
pub const MAX_RECIPIENTS: usize = 1000;

/// An accepted recipient: what the client named and the mailboxes it delivers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub address: String,
    pub mailboxes: Vec<String>,
}

/// A message ready to be delivered: one reply per accepted recipient is owed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub sender: String,
    pub recipients: Vec<Accepted>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Before LHLO.
    Start,
    /// After LHLO, no transaction.
    Ready,
    /// After MAIL: the sender and the recipients accepted so far.
    Mail {
        sender: String,
        recipients: Vec<Accepted>,
    },
    /// After DATA's 354: waiting for the message.
    Data {
        sender: String,
        recipients: Vec<Accepted>,
    },
}

/// What the driver must do after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reply(Reply),
    /// Look the recipient up (authd), then call [`Session::resolved`].
    Lookup(String),
    /// Send the 354 reply, then read the message and call [`Session::data_received`].
    ReceiveData(Reply),
    /// Send the reply and close.
    Quit(Reply),
}

/// What to do with a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutcome {
    Deliver(Transaction),
    /// The message is refused as a whole: this reply once per accepted recipient.
    Refuse {
        reply: Reply,
        count: usize,
    },
}

pub struct Session {
    hostname: String,
    domains: Vec<String>,
    max_size: u64,
    state: State,
}

impl Session {
    pub fn new(hostname: &str, domains: &[String], max_size: u64) -> Session {
        Session {
            hostname: hostname.to_string(),
            domains: domains.to_vec(),
            max_size,
            state: State::Start,
        }
    }

    pub fn greeting(&self) -> Reply {
        Reply::with_text(220, "", format!("{} LMTP Postern ready", self.hostname))
    }

    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    pub fn command(&mut self, line: &[u8]) -> Step {
        let request = match parse_command(line) {
            Ok(r) => r,
            Err(e) => return Step::Reply(reply_to_parse_error(&e)),
        };
        match request {
            Request::Lhlo { host } => self.lhlo(&host),
            Request::Helo { .. } | Request::Ehlo { .. } => Step::Reply(Reply::new(
                500,
                "5.5.1",
                "this is LMTP: say LHLO (RFC 2033 §4.1)",
            )),
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(&to.address),
            Request::Data => self.data(),
            Request::Rset => {
                if self.state != State::Start {
                    self.state = State::Ready;
                }
                Step::Reply(replies::OK)
            }
            Request::Noop { .. } => Step::Reply(replies::OK),
            Request::Vrfy { .. } => Step::Reply(replies::VRFY_NO_DISCLOSURE),
            Request::Quit => Step::Quit(replies::BYE),
            _ => Step::Reply(Reply::new(502, "5.5.1", "command not implemented")),
        }
    }

    fn lhlo(&mut self, host: &str) -> Step {
        if host.is_empty() {
            return Step::Reply(replies::SYNTAX_ERROR);
        }
        self.state = State::Ready;
        // RFC 2033 §4.1, with the extensions of RFC 2920, 2034, 6152, 6531 and 1870.
        let text = format!(
            "{}\nPIPELINING\nENHANCEDSTATUSCODES\n8BITMIME\nSMTPUTF8\nSIZE {}",
            self.hostname, self.max_size
        );
        Step::Reply(Reply::with_text(250, "", text))
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>) -> Step {
        match self.state {
            State::Ready => {}
            State::Start => return Step::Reply(Reply::new(503, "5.5.1", "say LHLO first")),
            _ => return Step::Reply(Reply::new(503, "5.5.1", "nested MAIL command")),
        }
        if from.size > 0 && from.size as u64 > self.max_size {
            return Step::Reply(replies::MESSAGE_TOO_BIG);
        }
        self.state = State::Mail {
            sender: from.address,
            recipients: Vec::new(),
        };
        Step::Reply(replies::SENDER_OK)
    }

    fn rcpt(&mut self, address: &str) -> Step {
        let State::Mail { recipients, .. } = &self.state else {
            return Step::Reply(Reply::new(503, "5.5.1", "need MAIL before RCPT"));
        };
        if recipients.len() >= MAX_RECIPIENTS {
            return Step::Reply(replies::TOO_MANY_RECIPIENTS);
        }
        Step::Lookup(address.to_string())
    }

    /// The answer to a [`Step::Lookup`]: the reply for that RCPT.
    pub fn resolved(&mut self, address: String, found: Recipient) -> Reply {
        let State::Mail { recipients, .. } = &mut self.state else {
            return replies::BAD_SEQUENCE;
        };
        let local = |a: &String| {
            a.rsplit_once('@')
                .is_some_and(|(_, d)| self.domains.iter().any(|l| l.eq_ignore_ascii_case(d)))
        };
        let mailboxes: Vec<String> = match found {
            Recipient::Mailbox { address } => vec![address],
            // Remote targets of an alias are the MTA's to forward; the MDA stores local mail.
            Recipient::Alias { targets } => targets.into_iter().filter(local).collect(),
            Recipient::Unknown => Vec::new(),
        };
        if mailboxes.is_empty() {
            return replies::NO_SUCH_USER;
        }
        recipients.push(Accepted { address, mailboxes });
        replies::RECIPIENT_OK
    }

    fn data(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Mail { sender, recipients } if !recipients.is_empty() => {
                self.state = State::Data { sender, recipients };
                Step::ReceiveData(replies::START_DATA)
            }
            State::Mail { sender, recipients } => {
                self.state = State::Mail { sender, recipients };
                Step::Reply(Reply::new(503, "5.5.1", "no valid recipients"))
            }
            other => {
                self.state = other;
                Step::Reply(Reply::new(503, "5.5.1", "need MAIL and RCPT before DATA"))
            }
        }
    }

    /// The message after [`Step::ReceiveData`]; the transaction ends either way.
    pub fn data_received(&mut self, message: Result<Vec<u8>, DataError>) -> DataOutcome {
        let State::Data { sender, recipients } = std::mem::replace(&mut self.state, State::Ready)
        else {
            return DataOutcome::Refuse {
                reply: replies::BAD_SEQUENCE,
                count: 1,
            };
        };
        match message {
            Ok(body) => DataOutcome::Deliver(Transaction {
                sender,
                recipients,
                body,
            }),
            Err(e) => DataOutcome::Refuse {
                reply: match e {
                    DataError::TooBig => replies::MESSAGE_TOO_BIG,
                    DataError::BareLineEnding => replies::BARE_LINE_FEED,
                },
                count: recipients.len(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new("mx.example.test", &["example.test".to_string()], 1000)
    }

    fn reply(step: Step) -> Reply {
        match step {
            Step::Reply(r) | Step::Quit(r) | Step::ReceiveData(r) => r,
            Step::Lookup(a) => panic!("unexpected lookup of {a}"),
        }
    }

    #[test]
    fn a_whole_transaction() {
        let mut s = session();
        assert_eq!(s.greeting().code, 220);
        assert_eq!(
            reply(s.command(b"MAIL FROM:<a@b>\r\n")).code,
            503,
            "LHLO first"
        );
        let lhlo = reply(s.command(b"LHLO client\r\n"));
        assert!(
            String::from_utf8(lhlo.to_bytes())
                .unwrap()
                .contains("250-PIPELINING")
        );
        assert_eq!(reply(s.command(b"RCPT TO:<x@example.test>\r\n")).code, 503);
        assert_eq!(
            reply(s.command(b"MAIL FROM:<a@elsewhere.net> SIZE=10\r\n")),
            replies::SENDER_OK
        );
        assert_eq!(reply(s.command(b"DATA\r\n")).code, 503, "no recipients yet");
        assert_eq!(
            s.command(b"RCPT TO:<alice@example.test>\r\n"),
            Step::Lookup("alice@example.test".into())
        );
        let r = s.resolved(
            "alice@example.test".into(),
            Recipient::Mailbox {
                address: "alice@example.test".into(),
            },
        );
        assert_eq!(r, replies::RECIPIENT_OK);
        assert_eq!(
            s.command(b"RCPT TO:<nobody@example.test>\r\n"),
            Step::Lookup("nobody@example.test".into())
        );
        assert_eq!(
            s.resolved("nobody@example.test".into(), Recipient::Unknown),
            replies::NO_SUCH_USER
        );
        assert_eq!(
            s.command(b"RCPT TO:<list@example.test>\r\n"),
            Step::Lookup("list@example.test".into())
        );
        let r = s.resolved(
            "list@example.test".into(),
            Recipient::Alias {
                targets: vec!["bob@example.test".into(), "far@elsewhere.net".into()],
            },
        );
        assert_eq!(r, replies::RECIPIENT_OK);
        assert_eq!(
            s.command(b"DATA\r\n"),
            Step::ReceiveData(replies::START_DATA)
        );
        match s.data_received(Ok(b"hi\n".to_vec())) {
            DataOutcome::Deliver(tx) => {
                assert_eq!(tx.sender, "a@elsewhere.net");
                assert_eq!(tx.recipients.len(), 2);
                assert_eq!(
                    tx.recipients[1].mailboxes,
                    vec!["bob@example.test".to_string()]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            reply(s.command(b"MAIL FROM:<>\r\n")),
            replies::SENDER_OK,
            "null sender, next transaction"
        );
        assert_eq!(s.command(b"QUIT\r\n"), Step::Quit(replies::BYE));
    }

    #[test]
    fn refusals() {
        let mut s = session();
        assert_eq!(reply(s.command(b"EHLO x\r\n")).code, 500);
        reply(s.command(b"LHLO x\r\n"));
        assert_eq!(
            reply(s.command(b"MAIL FROM:<a@b> SIZE=5000\r\n")),
            replies::MESSAGE_TOO_BIG
        );
        assert_eq!(reply(s.command(b"BOGUS\r\n")).code, 500);
        assert_eq!(reply(s.command(b"MAIL FROM:<a@b>\r\n")), replies::SENDER_OK);
        assert_eq!(reply(s.command(b"MAIL FROM:<a@b>\r\n")).code, 503);
        s.command(b"RCPT TO:<a@example.test>\r\n");
        s.resolved(
            "a@example.test".into(),
            Recipient::Mailbox {
                address: "a@example.test".into(),
            },
        );
        s.command(b"DATA\r\n");
        let out = s.data_received(Err(DataError::BareLineEnding));
        assert_eq!(
            out,
            DataOutcome::Refuse {
                reply: replies::BARE_LINE_FEED,
                count: 1
            }
        );
        // Only local targets of an alias count: an alias of remote targets is no mailbox here.
        s.command(b"MAIL FROM:<a@b>\r\n");
        s.command(b"RCPT TO:<fwd@example.test>\r\n");
        let r = s.resolved(
            "fwd@example.test".into(),
            Recipient::Alias {
                targets: vec!["x@elsewhere.net".into()],
            },
        );
        assert_eq!(r, replies::NO_SUCH_USER);
    }
}

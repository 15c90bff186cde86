//! POP3 replies (RFC 1939 §3): `+OK` / `-ERR` with an optional response code in brackets
//! (RFC 2449 §8, RFC 3206), an optional multi-line body (dot-stuffed, ended by a lone "."),
//! and the SASL continuation `+ ` (RFC 5034 §4). Named replies cite their RFC section. Also the
//! transformation of a stored message into what RETR and TOP send. No I/O here.

use std::borrow::Cow;

/// The status indicator of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Err,
    /// `+ ` followed by a base64 challenge (empty for PLAIN): RFC 5034 §4.
    Continue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    /// RFC 2449 §8 extended response code, e.g. "IN-USE", "SYS/TEMP", "AUTH".
    pub code: Option<&'static str>,
    pub text: Cow<'static, str>,
    /// Lines of a multi-line reply (CAPA, LIST, UIDL), sent dot-stuffed and ended by ".".
    pub body: Option<Vec<String>>,
}

impl Reply {
    pub const fn ok(text: &'static str) -> Reply {
        Reply {
            status: Status::Ok,
            code: None,
            text: Cow::Borrowed(text),
            body: None,
        }
    }

    pub const fn err(text: &'static str) -> Reply {
        Reply {
            status: Status::Err,
            code: None,
            text: Cow::Borrowed(text),
            body: None,
        }
    }

    pub const fn err_code(code: &'static str, text: &'static str) -> Reply {
        Reply {
            status: Status::Err,
            code: Some(code),
            text: Cow::Borrowed(text),
            body: None,
        }
    }

    pub fn ok_text(text: impl Into<String>) -> Reply {
        Reply {
            text: Cow::Owned(text.into()),
            ..Reply::ok("")
        }
    }

    pub fn err_text(text: impl Into<String>) -> Reply {
        Reply {
            text: Cow::Owned(text.into()),
            ..Reply::err("")
        }
    }

    /// A multi-line `+OK` reply (RFC 1939 §3).
    pub fn multi(text: impl Into<String>, body: Vec<String>) -> Reply {
        Reply {
            body: Some(body),
            ..Reply::ok_text(text)
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status != Status::Err
    }

    /// Appends the reply as sent on the wire.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.status {
            Status::Ok => b"+OK",
            Status::Err => b"-ERR",
            Status::Continue => b"+",
        });
        if let Some(code) = self.code {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_bytes());
            out.push(b']');
        }
        if !self.text.is_empty() || self.status == Status::Continue {
            out.push(b' ');
            out.extend_from_slice(self.text.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = &self.body {
            for line in body {
                if line.starts_with('.') {
                    out.push(b'.'); // RFC 1939 §3: byte-stuffing of the termination octet.
                }
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

// RFC 1939 §3–§7 and the codes of RFC 2449 §8, RFC 3206 §4.
pub const OK: Reply = Reply::ok(""); // RFC 1939 §5 NOOP
pub const BYE: Reply = Reply::ok("Postern POP3 server signing off"); // RFC 1939 §4, §6
pub const UNKNOWN_COMMAND: Reply = Reply::err("unknown command"); // RFC 1939 §3
pub const SYNTAX_ERROR: Reply = Reply::err("syntax error"); // RFC 1939 §3
pub const LINE_TOO_LONG: Reply = Reply::err("line too long"); // RFC 2449 §4
pub const WRONG_STATE: Reply = Reply::err("command not valid in this state"); // RFC 1939 §3
pub const NO_SUCH_MESSAGE: Reply = Reply::err("no such message"); // RFC 1939 §5 LIST, RETR
pub const ALREADY_DELETED: Reply = Reply::err("message already deleted"); // RFC 1939 §5 DELE
pub const DELETED: Reply = Reply::ok("message deleted"); // RFC 1939 §5 DELE
pub const USER_OK: Reply = Reply::ok("send PASS"); // RFC 1939 §7 USER
pub const USER_FIRST: Reply = Reply::err("send USER first"); // RFC 1939 §7 PASS
pub const TLS_REQUIRED: Reply = Reply::err("plaintext authentication disallowed: issue STLS first"); // RFC 2595 §4, RFC 8314 §3
pub const TLS_ACTIVE: Reply = Reply::err("TLS already active"); // RFC 2595 §4
pub const TLS_UNAVAILABLE: Reply = Reply::err_code("SYS/TEMP", "TLS not available"); // RFC 3206 §4
pub const BEGIN_TLS: Reply = Reply::ok("begin TLS negotiation"); // RFC 2595 §4
pub const LOGGED_IN: Reply = Reply::ok("logged in"); // RFC 5034 §4 (and §7 of RFC 1939)
pub const AUTH_FAILED: Reply = Reply::err_code("AUTH", "authentication failed"); // RFC 3206 §4
pub const AUTH_TEMP: Reply = Reply::err_code(
    "SYS/TEMP",
    "authentication temporarily unavailable; try again later",
); // RFC 3206 §4
pub const AUTH_CANCELLED: Reply = Reply::err("authentication cancelled"); // RFC 5034 §4
pub const AUTH_BAD_BASE64: Reply = Reply::err("cannot decode the base64 response"); // RFC 5034 §4
pub const AUTH_BAD_PLAIN: Reply = Reply::err("malformed PLAIN response"); // RFC 4616 §2
pub const AUTH_NO_MECHANISM: Reply = Reply::err("unsupported authentication mechanism"); // RFC 5034 §4
pub const AUTH_CONTINUE: Reply = Reply {
    status: Status::Continue,
    code: None,
    text: Cow::Borrowed(""),
    body: None,
}; // RFC 5034 §4: an empty challenge for PLAIN
pub const IN_USE: Reply = Reply::err_code("IN-USE", "maildrop already locked by another session"); // RFC 2449 §8.1.2
pub const MAILDROP_TEMP: Reply =
    Reply::err_code("SYS/TEMP", "cannot open the maildrop; try again later"); // RFC 3206 §4
pub const READ_FAILED: Reply =
    Reply::err_code("SYS/TEMP", "cannot read the message; try again later"); // RFC 3206 §4
pub const UPDATE_FAILED: Reply = Reply::err_code("SYS/TEMP", "some deleted messages not removed"); // RFC 1939 §6
pub const UTF8_ON: Reply = Reply::ok("UTF8 enabled"); // RFC 6856 §2
pub const TOO_MANY_ERRORS: Reply = Reply::err("too many bad commands; closing connection"); // RFC 1939 §3
pub const TOO_MANY_COMMANDS: Reply =
    Reply::err("too many commands before login; closing connection"); // RFC 1939 §3
pub const TIMEOUT: Reply = Reply::err("autologout: idle timeout; closing connection"); // RFC 1939 §3
pub const TOO_MANY_CONNECTIONS: Reply =
    Reply::err_code("SYS/TEMP", "too many connections; try again later"); // RFC 3206 §4
pub const SHUTTING_DOWN: Reply =
    Reply::err_code("SYS/TEMP", "server shutting down; try again later"); // RFC 3206 §4

/// Appends a stored message as RETR (`lines` = None) or TOP (the header, the blank line and
/// at most `lines` body lines) send it (RFC 1939 §7): every line ends in CRLF whatever the
/// file uses, a line starting with "." gets one more, and the ".\r\n" terminator follows.
pub fn write_message(message: &[u8], lines: Option<u64>, out: &mut Vec<u8>) {
    out.reserve(message.len() + message.len() / 32 + 8);
    let mut in_body = false;
    let mut body_lines = 0u64;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if in_body && lines.is_some_and(|max| body_lines >= max) {
            break;
        }
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
        if in_body {
            body_lines += 1;
        } else if content.is_empty() {
            in_body = true;
        }
    }
    out.extend_from_slice(b".\r\n");
}

/// The octets [`write_message`] sends for the whole message, before dot-stuffing and without
/// the terminator: the size LIST and STAT announce (RFC 1939 §5, §7).
pub fn wire_size(message: &[u8]) -> u64 {
    message
        .split_inclusive(|&b| b == b'\n')
        .map(|line| {
            let content = line.strip_suffix(b"\n").unwrap_or(line);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            content.len() as u64 + 2
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_multi_and_coded_replies() {
        assert_eq!(OK.to_bytes(), b"+OK\r\n");
        assert_eq!(
            IN_USE.to_bytes(),
            b"-ERR [IN-USE] maildrop already locked by another session\r\n"
        );
        assert_eq!(AUTH_CONTINUE.to_bytes(), b"+ \r\n");
        let capa = Reply::multi("Capability list follows", vec!["TOP".into(), ".x".into()]);
        assert_eq!(
            capa.to_bytes(),
            b"+OK Capability list follows\r\nTOP\r\n..x\r\n.\r\n"
        );
    }

    #[test]
    fn messages_are_sent_with_crlf_and_dot_stuffed() {
        let msg = b"Subject: a\n\n.line\r\nsecond\nthird";
        let mut out = Vec::new();
        write_message(msg, None, &mut out);
        assert_eq!(out, b"Subject: a\r\n\r\n..line\r\nsecond\r\nthird\r\n.\r\n");
        assert_eq!(wire_size(msg), out.len() as u64 - 3 - 1);
        let mut top = Vec::new();
        write_message(msg, Some(1), &mut top);
        assert_eq!(top, b"Subject: a\r\n\r\n..line\r\n.\r\n");
        let mut headers = Vec::new();
        write_message(msg, Some(0), &mut headers);
        assert_eq!(headers, b"Subject: a\r\n\r\n.\r\n");
        assert_eq!(wire_size(b"a\r\nb\n"), 6);
    }
}

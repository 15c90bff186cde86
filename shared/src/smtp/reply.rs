//! SMTP/LMTP replies: a code, an enhanced status code (RFC 3463, announced with
//! ENHANCEDSTATUSCODES, RFC 2034) and a text. Each constant cites where its code comes from.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code, e.g. "2.1.0"; empty for replies that take none (220, 221, 354).
    pub status: &'static str,
    pub text: Cow<'static, str>,
}

impl Reply {
    pub const fn new(code: u16, status: &'static str, text: &'static str) -> Reply {
        Reply {
            code,
            status,
            text: Cow::Borrowed(text),
        }
    }

    pub fn with_text(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status,
            text: Cow::Owned(text.into()),
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The reply on the wire; several lines of text become a multi-line reply (RFC 5321
    /// §4.2.1), each line carrying the enhanced code.
    pub fn to_bytes(&self) -> Vec<u8> {
        let lines: Vec<&str> = self.text.split('\n').collect();
        let mut out = Vec::with_capacity(self.text.len() + 16 * lines.len());
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{sep}", self.code).as_bytes());
            if !self.status.is_empty() {
                out.extend_from_slice(self.status.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

pub const OK: Reply = Reply::new(250, "2.0.0", "OK"); // RFC 5321 §4.2.2
pub const SENDER_OK: Reply = Reply::new(250, "2.1.0", "sender OK"); // RFC 3463 §3.2
pub const RECIPIENT_OK: Reply = Reply::new(250, "2.1.5", "recipient OK"); // RFC 3463 §3.2
pub const DELIVERED: Reply = Reply::new(250, "2.0.0", "delivered"); // RFC 2033 §4.2
pub const START_DATA: Reply = Reply::new(354, "", "end data with <CR><LF>.<CR><LF>"); // RFC 5321 §4.3.2
pub const BYE: Reply = Reply::new(221, "2.0.0", "bye"); // RFC 5321 §4.2.2
pub const VRFY_NO_DISCLOSURE: Reply = Reply::new(252, "2.5.0", "cannot VRFY user; try RCPT"); // RFC 5321 §3.5.3
pub const TEMP_LOCAL_ERROR: Reply = Reply::new(451, "4.3.0", "local error; try again later"); // RFC 5321 §4.2.3
pub const TEMP_NO_SPACE: Reply = Reply::new(452, "4.3.1", "insufficient system storage"); // RFC 3463 §3.4
pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, "4.5.3", "too many recipients"); // RFC 5321 §4.5.3.1.10
pub const SYNTAX_ERROR: Reply = Reply::new(501, "5.5.4", "syntax error"); // RFC 5321 §4.2.2
pub const UNKNOWN_COMMAND: Reply = Reply::new(500, "5.5.1", "command not recognized"); // RFC 5321 §4.2.2
pub const LINE_TOO_LONG: Reply = Reply::new(500, "5.5.2", "line too long"); // RFC 5321 §4.5.3.1.4
pub const BAD_SEQUENCE: Reply = Reply::new(503, "5.5.1", "bad sequence of commands"); // RFC 5321 §4.2.2
pub const BAD_PARAMETER: Reply =
    Reply::new(555, "5.5.4", "parameter not recognized or not implemented"); // RFC 5321 §4.2.2
pub const BAD_SENDER_SYNTAX: Reply = Reply::new(501, "5.1.7", "bad sender address syntax"); // RFC 3463 §3.2
pub const BAD_RECIPIENT_SYNTAX: Reply = Reply::new(501, "5.1.3", "bad recipient address syntax"); // RFC 3463 §3.2
pub const NO_SUCH_USER: Reply = Reply::new(550, "5.1.1", "mailbox unavailable"); // RFC 5321 §4.2.2
pub const MESSAGE_TOO_BIG: Reply = Reply::new(552, "5.3.4", "message size exceeds fixed maximum"); // RFC 1870 §6
pub const BARE_LINE_FEED: Reply = Reply::new(
    550,
    "5.5.2",
    "message contains a bare <LF> or <CR>: lines must end with <CR><LF>",
); // RFC 5321 §2.3.8, §4.1.1.4
pub const NO_VALID_RECIPIENTS: Reply = Reply::new(554, "5.5.1", "no valid recipients"); // RFC 5321 §3.3
pub const TIMEOUT: Reply = Reply::new(421, "4.4.2", "timeout: closing connection"); // RFC 5321 §4.5.3.2
pub const TOO_MANY_ERRORS: Reply = Reply::new(421, "4.7.0", "too many errors: closing connection"); // RFC 5321 §4.2.2
pub const SHUTTING_DOWN: Reply =
    Reply::new(421, "4.3.2", "service shutting down: closing connection"); // RFC 3463 §3.4

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_replies() {
        assert_eq!(OK.to_bytes(), b"250 2.0.0 OK\r\n");
        assert_eq!(
            START_DATA.to_bytes(),
            b"354 end data with <CR><LF>.<CR><LF>\r\n"
        );
        let ehlo = Reply::with_text(250, "", "mx.example\nPIPELINING\nSIZE 100");
        assert_eq!(
            ehlo.to_bytes(),
            b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
        );
    }
}

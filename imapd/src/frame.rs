//! Sans-IO framing of client commands (RFC 9051 §2.2.1, §4.3, §7.5; RFC 7888): finds where
//! one command ends across its lines and literals, decides when the server must send the
//! `+` continuation for a synchronizing literal, and applies the line, literal and command
//! limits before a single literal octet is read. It looks only at line ends and literal
//! markers; the grammar is the parser's. No I/O here: [`crate::conn`] drives it.

use crate::parser::peek_tag;
use crate::response::{Code, Encoding, Response, Status, Untagged};

/// Literals larger than this may not be non-synchronizing under LITERAL- (RFC 7888 §4).
pub const LITERAL_MINUS_MAX: u64 = 4096;

/// Which non-synchronizing literals the server announced (RFC 7888 §3 and §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonSync {
    /// LITERAL+: any size up to the literal limit.
    Plus,
    /// LITERAL- (and IMAP4rev2, RFC 9051 §4.3): at most 4096 octets.
    Minus,
}

/// What a client may send in one command.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// One line of a command, literals not counted (RFC 2683 §3.2.1.5 asks servers to accept
    /// lines of at least 8000 octets).
    pub max_line: usize,
    /// One literal: the APPENDLIMIT (RFC 7889) for a message.
    pub max_literal: u64,
    /// A whole command, lines and literals together, so that many literals cannot add up.
    pub max_command: u64,
    pub non_sync: NonSync,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 64 * 1024,
            max_literal: 50 * 1024 * 1024,
            max_command: 50 * 1024 * 1024 + 64 * 1024,
            non_sync: NonSync::Plus,
        }
    }
}

/// What the bytes read so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No complete command yet: read more and call again with the grown buffer.
    NeedMore,
    /// A synchronizing literal was announced and accepted: send the continuation request
    /// (`+ ...`, RFC 9051 §7.5) now, then read more; the client waits for it.
    SendContinuation,
    /// `buf[..n]` is one complete command, ready for the parser.
    Command(usize),
    /// The first `n` bytes belong to an over-long line being skipped: drop them, read more.
    Discard(usize),
    /// The command is refused unparsed: drop `consumed` bytes, answer, and close if told to.
    Refuse(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub consumed: usize,
    /// The command's tag, when its first line had a valid one.
    pub tag: Option<Vec<u8>>,
    pub reason: RefuseReason,
    /// The client will send octets we cannot tell from commands (a non-synchronizing literal
    /// we refused): the connection must close after the answer.
    pub close: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    LineTooLong,
    /// A literal over [`Limits::max_literal`] or a command over [`Limits::max_command`].
    LiteralTooBig,
    /// A non-synchronizing literal over 4096 octets under LITERAL- (RFC 7888 §4).
    NonSyncTooBig,
}

impl Refusal {
    /// The answer (RFC 9051 §7.1). A synchronizing literal that is too large is refused
    /// before its continuation request, so the client never sends it: `NO [TOOBIG]`
    /// (APPENDLIMIT, RFC 7889, with the TOOBIG code of RFC 4469 and RFC 9051 §7.1). A refused non-synchronizing literal is already
    /// on its way: `BAD [TOOBIG]` (RFC 7888 §4) and then `* BYE`, since what follows cannot
    /// be told apart from commands. An over-long line gets `BAD` (RFC 9051 §7.1.3).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (status, code, text) = match self.reason {
            RefuseReason::LineTooLong => (Status::Bad, None, "Command line too long"),
            RefuseReason::LiteralTooBig if !self.close => {
                (Status::No, Some(Code::TooBig), "Literal too large")
            }
            RefuseReason::LiteralTooBig => (Status::Bad, Some(Code::TooBig), "Literal too large"),
            RefuseReason::NonSyncTooBig => (
                Status::Bad,
                Some(Code::TooBig),
                "Non-synchronizing literal over 4096 octets",
            ),
        };
        let enc = Encoding::default();
        match &self.tag {
            Some(tag) => Response::Tagged {
                tag,
                status,
                code: code.clone(),
                text,
            }
            .encode(out, enc),
            None => Response::Untagged {
                status: Untagged::Bad,
                code: code.clone(),
                text,
            }
            .encode(out, enc),
        }
        if self.close {
            let bye = Response::Untagged {
                status: Untagged::Bye,
                code,
                text: "Closing: literal data cannot be skipped",
            };
            bye.encode(out, enc);
        }
    }
}

/// A literal announced at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker {
    /// `None` when the number does not fit in 64 bits.
    len: Option<u64>,
    non_sync: bool,
}

/// The framing state of the command being received. The command always starts at `buf[0]`
/// of the buffer the caller passes in.
#[derive(Debug, Default)]
pub struct Framer {
    /// Start of the current line (after the last literal).
    line_start: usize,
    /// Where the search for the line's LF goes on.
    scanned: usize,
    /// The end of the literal being received.
    literal_end: Option<usize>,
    /// Skipping an over-long line: its tag and its last octets (to see a literal marker).
    skipping: Option<Skip>,
}

#[derive(Debug)]
struct Skip {
    tag: Option<Vec<u8>>,
    tail: Vec<u8>,
}

const TAIL: usize = 32;

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// True while a command has started (so EOF now cuts a command short).
    pub fn in_command(&self, buf: &[u8]) -> bool {
        !buf.is_empty() || self.skipping.is_some()
    }

    /// Advances over `buf`, which starts at the beginning of the command (or of what is left
    /// of a skipped line) and holds everything read since.
    pub fn advance(&mut self, buf: &[u8], limits: &Limits) -> Step {
        loop {
            if let Some(end) = self.literal_end {
                if buf.len() < end {
                    return Step::NeedMore;
                }
                self.literal_end = None;
                self.line_start = end;
                self.scanned = end;
            }
            if self.skipping.is_some() {
                return self.skip(buf);
            }
            let Some(lf) = memchr(b'\n', &buf[self.scanned..]).map(|p| p + self.scanned) else {
                return self.line_incomplete(buf, limits);
            };
            if lf + 1 - self.line_start > limits.max_line {
                let marker = literal_marker(&buf[self.line_start..=lf]);
                return self.refuse(buf, lf + 1, RefuseReason::LineTooLong, marker);
            }
            let Some(marker) = literal_marker(&buf[self.line_start..=lf]) else {
                *self = Framer::default();
                return Step::Command(lf + 1);
            };
            if let Some(refused) = self.check_literal(buf, lf, marker, limits) {
                return refused;
            }
            let len = marker.len.unwrap_or(u64::MAX) as usize;
            self.literal_end = Some(lf + 1 + len);
            if !marker.non_sync {
                return Step::SendContinuation;
            }
        }
    }

    /// The literal limits, checked before any of its octets is read.
    fn check_literal(&mut self, buf: &[u8], lf: usize, m: Marker, limits: &Limits) -> Option<Step> {
        let len = m.len.unwrap_or(u64::MAX);
        let total = (lf as u64 + 1).saturating_add(len);
        let reason = if len > limits.max_literal || total > limits.max_command {
            RefuseReason::LiteralTooBig
        } else if m.non_sync && limits.non_sync == NonSync::Minus && len > LITERAL_MINUS_MAX {
            RefuseReason::NonSyncTooBig
        } else {
            return None;
        };
        Some(self.refuse(buf, lf + 1, reason, Some(m)))
    }

    fn refuse(
        &mut self,
        buf: &[u8],
        consumed: usize,
        reason: RefuseReason,
        m: Option<Marker>,
    ) -> Step {
        let tag = peek_tag(buf);
        *self = Framer::default();
        Step::Refuse(Refusal {
            consumed,
            tag,
            reason,
            close: m.is_some_and(|m| m.non_sync),
        })
    }

    /// No LF yet: wait, or start skipping a line already over the limit.
    fn line_incomplete(&mut self, buf: &[u8], limits: &Limits) -> Step {
        if buf.len() - self.line_start <= limits.max_line {
            self.scanned = buf.len();
            return Step::NeedMore;
        }
        self.skipping = Some(Skip {
            tag: peek_tag(buf),
            tail: tail_of(&[], buf),
        });
        self.line_start = 0;
        self.scanned = 0;
        Step::Discard(buf.len())
    }

    /// Drops an over-long line up to its LF, then refuses it.
    fn skip(&mut self, buf: &[u8]) -> Step {
        let Some(skip) = self.skipping.as_mut() else {
            return Step::NeedMore;
        };
        match memchr(b'\n', buf) {
            None if buf.is_empty() => Step::NeedMore,
            None => {
                skip.tail = tail_of(&skip.tail, buf);
                Step::Discard(buf.len())
            }
            Some(lf) => {
                let tail = tail_of(&skip.tail, &buf[..=lf]);
                let tag = skip.tag.take();
                *self = Framer::default();
                Step::Refuse(Refusal {
                    consumed: lf + 1,
                    tag,
                    reason: RefuseReason::LineTooLong,
                    close: literal_marker(&tail).is_some_and(|m| m.non_sync),
                })
            }
        }
    }
}

/// The last [`TAIL`] octets of `old` followed by `new`.
fn tail_of(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(TAIL * 2);
    t.extend_from_slice(old);
    t.extend_from_slice(&new[new.len().saturating_sub(TAIL)..]);
    let cut = t.len().saturating_sub(TAIL);
    t.drain(..cut);
    t
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// A literal marker `{n}`, `{n+}`, `~{n}` or `~{n+}` at the end of a line (before CRLF or a
/// bare LF), as in RFC 9051 §9 literal and RFC 3516 §4.3 literal8.
fn literal_marker(line: &[u8]) -> Option<Marker> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let (line, non_sync) = match line.strip_suffix(b"+") {
        Some(l) => (l, true),
        None => (line, false),
    };
    let digits = line.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || line.len() == digits || line[line.len() - digits - 1] != b'{' {
        return None;
    }
    let len = line[line.len() - digits..].iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Some(Marker { len, non_sync })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        let m = |s: &[u8]| literal_marker(s);
        assert_eq!(
            m(b"a {3}\r\n"),
            Some(Marker {
                len: Some(3),
                non_sync: false
            })
        );
        assert_eq!(
            m(b"a ~{3+}\n"),
            Some(Marker {
                len: Some(3),
                non_sync: true
            })
        );
        assert_eq!(m(b"a {99999999999999999999999}\r\n").unwrap().len, None);
        assert_eq!(m(b"a {}\r\n"), None);
        assert_eq!(m(b"{3}\r\n").map(|m| m.len), Some(Some(3)));
        assert_eq!(m(b"a 3}\r\n"), None);
        assert_eq!(m(b"a {3}x\r\n"), None);
    }
}

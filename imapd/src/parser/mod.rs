//! Bytes → [`Command`]: a recursive-descent parser of the client grammar of RFC 9051 §9
//! (which includes RFC 3501's) and of the extensions Postern announces. It takes one complete
//! command as framed by [`crate::frame`] (its lines and literals, literals in place) and
//! returns the command or a [`ParseError`] that says what to answer. Limits are passed in;
//! recursion is bounded by [`ParseLimits::max_depth`]. No I/O and no session state here.

mod commands;
mod fetch;
#[cfg(test)]
mod roundtrip;
mod search;
#[cfg(test)]
mod tests;

use crate::command::{Command, Date, DateTime, SeqNumber, SequenceSet};

/// Limits the parser enforces itself (the frame limits are in [`crate::frame::Limits`]).
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Nested parentheses and search-key operators (NOT, OR) together.
    pub max_depth: usize,
}

impl Default for ParseLimits {
    fn default() -> ParseLimits {
        ParseLimits { max_depth: 32 }
    }
}

/// Why a command was refused, and so what the client is told: `tag BAD` when the tag was
/// read, `* BAD` otherwise (RFC 9051 §7.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub tag: Option<Vec<u8>>,
    pub kind: ErrorKind,
    /// Offset of the offending byte in the command, for the log.
    pub at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// An empty line.
    Empty,
    /// No valid tag at the start of the line.
    MissingTag,
    UnknownCommand,
    /// The arguments do not follow the grammar; the text names what was expected.
    Syntax(&'static str),
    /// More nesting than [`ParseLimits::max_depth`].
    TooDeep,
    /// A number larger than its type (RFC 9051 §9 number / number64).
    NumberTooLarge,
    /// A NUL octet outside a literal8 (RFC 9051 §4.3: "Literals MUST NOT contain NUL").
    Nul,
    /// An octet ≥ 0x80 where only ASCII is allowed (an atom, a tag).
    EightBit,
}

impl ParseError {
    /// The text of the BAD response: generic, never echoing client bytes.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorKind::Empty => "Empty command line",
            ErrorKind::MissingTag => "Missing or invalid tag",
            ErrorKind::UnknownCommand => "Unknown command",
            ErrorKind::Syntax(what) => what,
            ErrorKind::TooDeep => "Too deeply nested",
            ErrorKind::NumberTooLarge => "Number out of range",
            ErrorKind::Nul => "NUL octet not allowed",
            ErrorKind::EightBit => "8-bit octet not allowed here",
        }
    }
}

impl ParseError {
    /// `tag BAD text`, or `* BAD text` without a tag (RFC 9051 §7.1.3).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let enc = crate::response::Encoding::default();
        let text = self.reason();
        match &self.tag {
            Some(tag) => crate::response::Response::Tagged {
                tag,
                status: crate::response::Status::Bad,
                code: None,
                text,
            }
            .encode(out, enc),
            None => crate::response::Response::Untagged {
                status: crate::response::Untagged::Bad,
                code: None,
                text,
            }
            .encode(out, enc),
        }
    }
}

/// Parses one complete command (lines and literals, ending in CRLF or LF).
pub fn parse_command(input: &[u8], limits: &ParseLimits) -> Result<Command, ParseError> {
    let mut p = Parser::new(input, limits);
    p.command()
}

/// Reads the tag at the start of a line, if there is a valid one: used to answer a line that
/// was too long to parse with a tagged BAD.
pub fn peek_tag(input: &[u8]) -> Option<Vec<u8>> {
    let end = input.iter().position(|&b| !is_tag_char(b))?;
    (end > 0 && input[end] == b' ').then(|| input[..end].to_vec())
}

type PResult<T> = Result<T, ParseError>;

/// atom-specials of RFC 9051 §9, plus CTL and 8-bit (which are not CHAR).
pub(crate) fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// ASTRING-CHAR: ATOM-CHAR or resp-specials ("]").
fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// tag = 1*<any ASTRING-CHAR except "+">.
fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// list-char = ATOM-CHAR / list-wildcards / resp-specials.
fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

pub(crate) struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
    max_depth: usize,
    tag: Option<Vec<u8>>,
}

impl<'a> Parser<'a> {
    fn new(s: &'a [u8], limits: &ParseLimits) -> Parser<'a> {
        Parser {
            s,
            i: 0,
            depth: 0,
            max_depth: limits.max_depth,
            tag: None,
        }
    }

    fn err<T>(&self, kind: ErrorKind) -> PResult<T> {
        Err(ParseError {
            tag: self.tag.clone(),
            kind,
            at: self.i,
        })
    }

    fn syntax<T>(&self, what: &'static str) -> PResult<T> {
        self.err(ErrorKind::Syntax(what))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            self.syntax(what)
        }
    }

    fn sp(&mut self) -> PResult<()> {
        self.expect(b' ', "Expected a space")
    }

    /// True at the end of the line (CRLF or a bare LF): nothing may follow.
    fn at_eol(&self) -> bool {
        matches!(&self.s[self.i..], b"\r\n" | b"\n")
    }

    fn eol(&mut self) -> PResult<()> {
        if self.at_eol() {
            self.i = self.s.len();
            Ok(())
        } else if self.peek() == Some(0) {
            self.err(ErrorKind::Nul)
        } else {
            self.syntax("Unexpected arguments")
        }
    }

    /// Enters one level of nesting (a parenthesis or a recursive search key).
    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return self.err(ErrorKind::TooDeep);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Consumes `word` (upper case) when it comes next, case-insensitively, followed by SP.
    fn eat_word(&mut self, word: &[u8]) -> bool {
        let rest = &self.s[self.i..];
        let found = rest.len() > word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word)
            && rest[word.len()] == b' ';
        if found {
            self.i += word.len();
        }
        found
    }

    /// Reports a bad octet precisely: NUL and 8-bit get their own errors.
    fn bad_octet<T>(&self, what: &'static str) -> PResult<T> {
        match self.peek() {
            Some(0) => self.err(ErrorKind::Nul),
            Some(b) if b >= 0x80 => self.err(ErrorKind::EightBit),
            _ => self.syntax(what),
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn atom(&mut self) -> PResult<&'a [u8]> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return self.bad_octet("Expected an atom");
        }
        Ok(a)
    }

    /// An atom compared case-insensitively, upper-cased into a small stack buffer.
    fn keyword(&mut self) -> PResult<Keyword> {
        let a = self.atom()?;
        Ok(Keyword::new(a))
    }

    fn tag(&mut self) -> PResult<()> {
        let t = self.take_while(is_tag_char);
        if t.is_empty() || self.peek() != Some(b' ') {
            return match self.peek() {
                Some(0) => self.err(ErrorKind::Nul),
                Some(b) if b >= 0x80 => self.err(ErrorKind::EightBit),
                _ => self.err(ErrorKind::MissingTag),
            };
        }
        self.tag = Some(t.to_vec());
        self.i += 1;
        Ok(())
    }

    fn digits(&mut self) -> PResult<u64> {
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() {
            return self.syntax("Expected a number");
        }
        let mut n: u64 = 0;
        for &c in d {
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(c - b'0')))
            {
                Some(n) => n,
                None => return self.err(ErrorKind::NumberTooLarge),
            };
        }
        Ok(n)
    }

    /// number (RFC 9051 §9): a 32-bit unsigned value.
    fn number(&mut self) -> PResult<u32> {
        let n = self.digits()?;
        u32::try_from(n).or_else(|_| self.err(ErrorKind::NumberTooLarge))
    }

    fn nz_number(&mut self) -> PResult<u32> {
        match self.number()? {
            0 => self.syntax("Expected a non-zero number"),
            n => Ok(n),
        }
    }

    /// number64 (RFC 9051 §9): at most 2^63-1.
    fn number64(&mut self) -> PResult<u64> {
        let n = self.digits()?;
        if n > i64::MAX as u64 {
            return self.err(ErrorKind::NumberTooLarge);
        }
        Ok(n)
    }

    /// quoted = DQUOTE *QUOTED-CHAR DQUOTE, with `\"` and `\\` escapes; 8-bit is allowed
    /// (UTF-8 in IMAP4rev2 and UTF8=ACCEPT, RFC 9051 §9 QUOTED-CHAR).
    fn quoted(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'"', "Expected a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(c),
                        _ => return self.syntax("Bad escape in quoted string"),
                    }
                }
                Some(0) => return self.err(ErrorKind::Nul),
                Some(b'\r' | b'\n') | None => return self.syntax("Unterminated quoted string"),
                Some(c) => out.push(c),
            }
            self.i += 1;
        }
    }

    /// literal = "{" number64 ["+"] "}" CRLF *CHAR8 (RFC 9051 §9, RFC 7888 §3); with
    /// `binary`, also literal8 = "~{" number64 ["+"] "}" CRLF *OCTET (RFC 3516 §4.3). Returns
    /// the data and whether it was a literal8.
    fn literal(&mut self, binary: bool) -> PResult<(Vec<u8>, bool)> {
        let is8 = binary && self.eat(b'~');
        self.expect(b'{', "Expected a literal")?;
        let n = self.digits()?;
        self.eat(b'+');
        self.expect(b'}', "Bad literal")?;
        self.eat(b'\r');
        self.expect(b'\n', "Expected CRLF after literal")?;
        let end = usize::try_from(n).ok().and_then(|n| self.i.checked_add(n));
        let data = match end.and_then(|end| self.s.get(self.i..end)) {
            Some(data) => data,
            None => return self.syntax("Truncated literal"),
        };
        if !is8 && data.contains(&0) {
            return self.err(ErrorKind::Nul);
        }
        self.i += data.len();
        Ok((data.to_vec(), is8))
    }

    fn string(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => Ok(self.literal(false)?.0),
            _ => self.bad_octet("Expected a string"),
        }
    }

    fn astring(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    return self.bad_octet("Expected a string");
                }
                Ok(a.to_vec())
            }
        }
    }

    /// NIL or a string.
    fn nstring(&mut self) -> PResult<Option<Vec<u8>>> {
        if self.s[self.i..].len() >= 3 && self.s[self.i..self.i + 3].eq_ignore_ascii_case(b"NIL") {
            self.i += 3;
            return Ok(None);
        }
        self.string().map(Some)
    }

    /// list-mailbox = 1*list-char / string (RFC 9051 §9).
    fn list_mailbox(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let a = self.take_while(is_list_char);
                if a.is_empty() {
                    return self.bad_octet("Expected a mailbox pattern");
                }
                Ok(a.to_vec())
            }
        }
    }

    /// `(` items separated by SP `)`; `allow_empty` for lists that may be `()`.
    fn paren_list<T>(
        &mut self,
        allow_empty: bool,
        mut item: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        self.expect(b'(', "Expected (")?;
        self.enter()?;
        let mut out = Vec::new();
        if !(allow_empty && self.peek() == Some(b')')) {
            loop {
                out.push(item(self)?);
                if !self.eat(b' ') {
                    break;
                }
            }
        }
        self.expect(b')', "Expected )")?;
        self.leave();
        Ok(out)
    }

    /// flag = "\" atom / atom (RFC 9051 §9 flag, flag-keyword, flag-extension).
    fn flag(&mut self) -> PResult<Vec<u8>> {
        let start = self.i;
        self.eat(b'\\');
        self.atom()?;
        Ok(self.s[start..self.i].to_vec())
    }

    fn flag_list(&mut self) -> PResult<Vec<Vec<u8>>> {
        self.paren_list(true, |p| p.flag())
    }

    fn seq_number(&mut self) -> PResult<SeqNumber> {
        if self.eat(b'*') {
            Ok(SeqNumber::Largest)
        } else {
            Ok(SeqNumber::Value(self.nz_number()?))
        }
    }

    /// sequence-set (RFC 9051 §9) or "$" (RFC 5182 §2.1).
    fn sequence_set(&mut self) -> PResult<SequenceSet> {
        if self.eat(b'$') {
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let a = self.seq_number()?;
            let b = if self.eat(b':') {
                self.seq_number()?
            } else {
                a
            };
            ranges.push((a, b));
            if !self.eat(b',') {
                return Ok(SequenceSet::Ranges(ranges));
            }
        }
    }

    fn month(&mut self) -> PResult<u8> {
        const MONTHS: [&[u8]; 12] = [
            b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV",
            b"DEC",
        ];
        let m = self.s.get(self.i..self.i + 3).unwrap_or_default();
        match MONTHS.iter().position(|n| n.eq_ignore_ascii_case(m)) {
            Some(pos) => {
                self.i += 3;
                Ok(pos as u8 + 1)
            }
            None => self.syntax("Bad month"),
        }
    }

    /// date-text = date-day "-" date-month "-" date-year, the day with 1 or 2 digits.
    fn date_text(&mut self, space_padded: bool) -> PResult<Date> {
        if space_padded {
            self.eat(b' ');
        }
        let start = self.i;
        let day = self.number()?;
        if self.i - start > 2 || !(1..=31).contains(&day) {
            return self.syntax("Bad day");
        }
        self.expect(b'-', "Bad date")?;
        let month = self.month()?;
        self.expect(b'-', "Bad date")?;
        let start = self.i;
        let year = self.number()?;
        if self.i - start != 4 {
            return self.syntax("Bad year");
        }
        Ok(Date {
            year: year as u16,
            month,
            day: day as u8,
        })
    }

    /// date = date-text / DQUOTE date-text DQUOTE.
    fn date(&mut self) -> PResult<Date> {
        if self.eat(b'"') {
            let d = self.date_text(false)?;
            self.expect(b'"', "Bad date")?;
            Ok(d)
        } else {
            self.date_text(false)
        }
    }

    /// Two digits, at most `max`.
    fn two_digits(&mut self, max: u8) -> PResult<u8> {
        match self.s.get(self.i..self.i + 2) {
            Some([a, b]) if a.is_ascii_digit() && b.is_ascii_digit() => {
                let n = (a - b'0') * 10 + (b - b'0');
                if n > max {
                    return self.syntax("Bad time");
                }
                self.i += 2;
                Ok(n)
            }
            _ => self.syntax("Bad time"),
        }
    }

    /// date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE.
    fn date_time(&mut self) -> PResult<DateTime> {
        self.expect(b'"', "Expected a date-time")?;
        let date = self.date_text(true)?;
        self.sp()?;
        let hour = self.two_digits(23)?;
        self.expect(b':', "Bad time")?;
        let minute = self.two_digits(59)?;
        self.expect(b':', "Bad time")?;
        let second = self.two_digits(60)?;
        self.sp()?;
        let sign: i16 = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return self.syntax("Bad zone"),
        };
        self.i += 1;
        let zh = self.two_digits(99)?;
        let zm = self.two_digits(59)?;
        self.expect(b'"', "Bad date-time")?;
        Ok(DateTime {
            date,
            hour,
            minute,
            second,
            zone_minutes: sign * (i16::from(zh) * 60 + i16::from(zm)),
        })
    }
}

/// An atom upper-cased for matching keywords; longer ones than any keyword compare unequal.
pub(crate) struct Keyword {
    buf: [u8; 24],
    len: usize,
}

impl Keyword {
    fn new(a: &[u8]) -> Keyword {
        let mut buf = [0u8; 24];
        let len = if a.len() <= buf.len() {
            buf[..a.len()].copy_from_slice(a);
            buf[..a.len()].make_ascii_uppercase();
            a.len()
        } else {
            0
        };
        Keyword { buf, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

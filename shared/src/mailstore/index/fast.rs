//! The fast path of reading the index log's two common records, add (`a`) and flags (`f`),
//! exactly as the encoder writes them: fields in their fixed order, strings without escapes,
//! numbers in their shortest form. Anything else (an escape, another order, a number out of
//! range) returns `None`, and the caller decodes the line with serde, so this path never
//! accepts a line serde would read differently or reject. No I/O here.

use super::{Added, Record};
use crate::mailstore::Flags;

/// The record of `json` when it is an add or flags record in the encoder's exact form.
pub(super) fn decode(json: &[u8]) -> Option<Record> {
    let mut c = Cursor { rest: json };
    let record = if c.eat(br#"{"t":"a","uid":"#) {
        add(&mut c)?
    } else if c.eat(br#"{"t":"f","uid":"#) {
        flags(&mut c)?
    } else {
        return None;
    };
    c.rest.is_empty().then_some(record)
}

fn add(c: &mut Cursor) -> Option<Record> {
    let uid = u32::try_from(c.unsigned()?).ok()?;
    let ms = c.field(br#","ms":"#)?.unsigned()?;
    let f = c.field(br#","f":"#)?.string()?.to_string();
    let fl = Flags::from_maildir(c.field(br#","fl":"#)?.string()?);
    let kw = c.field(br#","kw":"#)?.strings()?;
    let size = c.field(br#","size":"#)?.unsigned()?;
    let vsize = c.field(br#","vsize":"#)?.unsigned()?;
    let date = c.field(br#","date":"#)?.signed()?;
    c.field(b"}")?;
    Some(Record::Add(Added {
        uid,
        ms,
        f,
        fl,
        kw,
        size,
        vsize,
        date,
    }))
}

fn flags(c: &mut Cursor) -> Option<Record> {
    let uid = u32::try_from(c.unsigned()?).ok()?;
    let ms = c.field(br#","ms":"#)?.unsigned()?;
    let fl = Flags::from_maildir(c.field(br#","fl":"#)?.string()?);
    let kw = c.field(br#","kw":"#)?.strings()?;
    let f = c.field(br#","f":"#)?.string()?.to_string();
    c.field(b"}")?;
    Some(Record::Flags { uid, ms, fl, kw, f })
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, literal: &[u8]) -> bool {
        match self.rest.strip_prefix(literal) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// Consumes `literal` and returns the cursor, for chaining.
    fn field(&mut self, literal: &[u8]) -> Option<&mut Self> {
        self.eat(literal).then_some(self)
    }

    /// A JSON number without sign, fraction or exponent, no leading zero, in a `u64`.
    fn unsigned(&mut self) -> Option<u64> {
        let digits = self.rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (number, rest) = self.rest.split_at(digits);
        if digits == 0 || (digits > 1 && number[0] == b'0') {
            return None;
        }
        if matches!(rest.first(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let value = number.iter().try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
        self.rest = rest;
        Some(value)
    }

    /// Like [`Cursor::unsigned`], with an optional minus, in an `i64`.
    fn signed(&mut self) -> Option<i64> {
        if self.eat(b"-") {
            let magnitude = self.unsigned()?;
            if magnitude == 0 {
                return None; // "-0": left to serde
            }
            0i64.checked_sub_unsigned(magnitude)
        } else {
            i64::try_from(self.unsigned()?).ok()
        }
    }

    /// A string without escapes or control characters, valid UTF-8.
    fn string(&mut self) -> Option<&'a str> {
        let body = self.rest.strip_prefix(b"\"")?;
        let end = body
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if body[end] != b'"' {
            return None;
        }
        let text = std::str::from_utf8(&body[..end]).ok()?;
        self.rest = &body[end + 1..];
        Some(text)
    }

    /// An array of such strings.
    fn strings(&mut self) -> Option<Vec<String>> {
        self.eat(b"[").then_some(())?;
        let mut out = Vec::new();
        if self.eat(b"]") {
            return Some(out);
        }
        loop {
            out.push(self.string()?.to_string());
            if self.eat(b"]") {
                return Some(out);
            }
            self.field(b",")?;
        }
    }
}

//! The text a SEARCH header key matches (RFC 9051 §6.4.4 FROM, TO, CC, BCC, SUBJECT and
//! HEADER): for every field of the name, its raw value and its decoded value (RFC 2047
//! encoded words and charsets undone by `mail-parser`; for address fields each display
//! name and address), lower-cased. Computed from a header as stored, or kept in the
//! folder's cache (`cache.rs`) for the fields of [`CACHED`], so that a SEARCH on those
//! reads no file. Pure functions over bytes: no file access, no responses.
//!
//! Stored form: per text, the index of its field in [`CACHED`] (one octet), its length (four
//! octets, little-endian) and the UTF-8 text. A field always has its raw text, possibly
//! empty: a field's presence is what an empty HEADER string matches.

use mail_parser::{HeaderValue, MessageParser};
use memchr::memmem::Finder;

use super::message::fields;

/// The fields whose texts the cache keeps, by index.
pub(super) const CACHED: [&[u8]; 5] = [b"from", b"to", b"cc", b"bcc", b"subject"];

/// The index in [`CACHED`] of a SEARCH key's field name, if it is one.
pub(super) fn cached_index(name: &[u8]) -> Option<u8> {
    CACHED
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

/// Where the header of a message as stored ends (bare LF or CRLF line ends): after the
/// first empty line, or the whole message when there is none. With CRLF line ends this is
/// `message::header_end`; converting the cut header to CRLF gives the same octets as cutting
/// the converted message.
pub(super) fn header_len(raw: &[u8]) -> usize {
    if raw.starts_with(b"\n") {
        return 1;
    }
    if raw.starts_with(b"\r\n") {
        return 2;
    }
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'\n', &raw[from..]) {
        let next = from + p + 1;
        match raw.get(next..) {
            Some([b'\n', ..]) => return next + 1,
            Some([b'\r', b'\n', ..]) => return next + 2,
            _ => from = next,
        }
    }
    raw.len()
}

/// The name of a field as the parser reads it: up to the first colon that follows a
/// non-blank, blanks left out, lower case; `None` for a line without one.
fn parser_name(field: &[u8]) -> Option<Vec<u8>> {
    let mut name = Vec::new();
    for &b in field {
        match b {
            b':' if !name.is_empty() => return Some(name),
            b'\n' => return None,
            _ if b.is_ascii_whitespace() || b == b':' => {}
            _ => name.push(b.to_ascii_lowercase()),
        }
    }
    None
}

fn squeeze(name: &[u8]) -> Vec<u8> {
    name.iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(u8::to_ascii_lowercase)
        .collect()
}

/// The texts of the fields called `names[i]` in `header`: (i, text) in field order, the raw
/// value first, then the decoded value unless it is part of the raw one (it could then
/// match nothing the raw value does not).
pub(super) fn texts(header: &[u8], names: &[&[u8]]) -> Vec<(u8, String)> {
    let wanted: Vec<Vec<u8>> = names.iter().map(|n| squeeze(n)).collect();
    // Only the fields that may carry a wanted name go to the parser: the rest (Received
    // among them) cost time and cannot match.
    let mut picked = Vec::new();
    for (_, field) in fields(header) {
        if parser_name(field).is_some_and(|n| wanted.contains(&n)) {
            picked.extend_from_slice(field);
        }
    }
    let mut out = Vec::new();
    if picked.is_empty() {
        return out;
    }
    let Some(msg) = MessageParser::default().parse_headers(&picked) else {
        return out;
    };
    let names: Vec<String> = names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    for h in msg.headers() {
        let Some(i) = names
            .iter()
            .position(|n| h.name.as_str().eq_ignore_ascii_case(n))
        else {
            continue;
        };
        let raw = picked
            .get(h.offset_start as usize..h.offset_end as usize)
            .unwrap_or_default();
        let raw = String::from_utf8_lossy(raw).to_lowercase();
        let decoded = decoded(&h.value);
        let adds = !raw.contains(&decoded);
        out.push((i as u8, raw));
        if adds {
            out.push((i as u8, decoded));
        }
    }
    out
}

/// The decoded value: text, a list's items, or each address's name and address.
fn decoded(v: &HeaderValue) -> String {
    let mut s = String::new();
    match v {
        HeaderValue::Text(t) => s.push_str(t),
        HeaderValue::TextList(l) => l.iter().for_each(|t| {
            s.push_str(t);
            s.push(' ')
        }),
        HeaderValue::Address(a) => a.iter().for_each(|a| {
            s.push_str(a.name.as_deref().unwrap_or_default());
            s.push(' ');
            s.push_str(a.address.as_deref().unwrap_or_default());
            s.push(' ');
        }),
        _ => {}
    }
    s.to_lowercase()
}

/// The texts of the [`CACHED`] fields of `header`, in stored form.
pub(super) fn encode(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, text) in texts(header, &CACHED) {
        out.push(i);
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out
}

/// Whether stored texts are well formed (the cache checks what it reads).
pub(super) fn valid(mut stored: &[u8]) -> bool {
    while let [i, a, b, c, d, rest @ ..] = stored {
        let len = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
        if usize::from(*i) >= CACHED.len() || rest.len() < len {
            return false;
        }
        stored = &rest[len..];
    }
    stored.is_empty()
}

/// A lower-cased SEARCH string, ready to be looked for.
pub(super) struct Needle {
    finder: Finder<'static>,
    empty: bool,
}

impl Needle {
    pub fn new(s: &[u8]) -> Needle {
        let lower = String::from_utf8_lossy(s).to_lowercase();
        Needle {
            empty: lower.is_empty(),
            finder: Finder::new(lower.as_bytes()).into_owned(),
        }
    }

    /// Whether any text of field `index` contains the needle (an empty needle: whether the
    /// field is present).
    pub fn in_stored(&self, mut stored: &[u8], index: u8) -> bool {
        while let [i, a, b, c, d, rest @ ..] = stored {
            let len = (u32::from_le_bytes([*a, *b, *c, *d]) as usize).min(rest.len());
            let (text, next) = rest.split_at(len);
            if *i == index && (self.empty || self.finder.find(text).is_some()) {
                return true;
            }
            stored = next;
        }
        false
    }

    /// The same over texts computed from a header.
    pub fn in_texts(&self, texts: &[(u8, String)]) -> bool {
        texts
            .iter()
            .any(|(_, t)| self.empty || self.finder.find(t.as_bytes()).is_some())
    }
}

#[cfg(test)]
#[path = "headertext_tests.rs"]
mod tests;

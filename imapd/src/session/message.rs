//! A stored message as IMAP sees it (RFC 9051 §6.4.5, RFC 2045–2046): the octets with CRLF
//! line ends (what RFC822.SIZE counts, the mailstore's `vsize`), the header and text, the
//! header fields a `HEADER.FIELDS` asks for, and the MIME part a section number names.
//! Pure functions over bytes; reading the file is the caller's.

use std::borrow::Cow;

use crate::command::{Section, SectionText};

/// `data` with every bare LF made CRLF (Maildir files may use either, RFC 9051 §2.3.4 counts
/// CRLF).
pub(super) fn crlf(data: Vec<u8>) -> Vec<u8> {
    let bare = |i: usize| i == 0 || data[i - 1] != b'\r';
    let count = memchr::memchr_iter(b'\n', &data)
        .filter(|&i| bare(i))
        .count();
    if count == 0 {
        return data;
    }
    let mut out = Vec::with_capacity(data.len() + count);
    let mut from = 0;
    for i in memchr::memchr_iter(b'\n', &data).filter(|&i| bare(i)) {
        out.extend_from_slice(&data[from..i]);
        out.extend_from_slice(b"\r\n");
        from = i + 1;
    }
    out.extend_from_slice(&data[from..]);
    out
}

/// Where the header ends: after the empty line, or the whole entity when there is none.
pub(super) fn header_end(entity: &[u8]) -> usize {
    if entity.starts_with(b"\r\n") {
        return 2;
    }
    entity
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(entity.len())
}

/// The header's fields, each with its continuation lines: (name, whole field with CRLF).
pub(super) fn fields(header: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out: Vec<(&[u8], &[u8])> = Vec::new();
    let mut start = 0;
    while start < header.len() {
        let mut end = start;
        loop {
            end += memchr::memchr(b'\n', &header[end..]).map_or(header.len() - end, |p| p + 1);
            if end >= header.len() || !matches!(header[end], b' ' | b'\t') {
                break;
            }
        }
        let field = &header[start..end];
        if let Some(colon) = memchr::memchr(b':', field) {
            out.push((trim(&field[..colon]), field));
        }
        start = end;
    }
    out
}

fn trim(s: &[u8]) -> &[u8] {
    let s = s.strip_suffix(b" ").unwrap_or(s);
    s.strip_suffix(b"\t").unwrap_or(s)
}

/// The unfolded value of the first field called `name`.
pub(super) fn header_value(header: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let (_, field) = fields(header)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
    let colon = field.iter().position(|&b| b == b':')?;
    let value: Vec<u8> = field[colon + 1..]
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    Some(value[start..end].to_vec())
}

/// HEADER.FIELDS (or .NOT): the chosen fields then the empty line (RFC 9051 §6.4.5).
fn pick_fields(header: &[u8], names: &[Vec<u8>], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, field) in fields(header) {
        if name.is_empty() || field == b"\r\n" {
            continue;
        }
        if names.iter().any(|n| n.eq_ignore_ascii_case(name)) != not {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The octets of `section` of the message `raw` (CRLF), `None` when the part is missing.
pub(super) fn section<'a>(raw: &'a [u8], section: &Section) -> Option<Cow<'a, [u8]>> {
    let (entity, is_message) = part(raw, &section.part)?;
    let h = header_end(entity);
    Some(match &section.text {
        None if section.part.is_empty() => Cow::Borrowed(raw),
        None => Cow::Borrowed(&entity[h..]),
        Some(SectionText::Mime) => Cow::Borrowed(&entity[..h]),
        // HEADER/TEXT of a part apply to an encapsulated message (RFC 9051 §6.4.5).
        Some(text) => {
            let msg = if section.part.is_empty() || !is_message {
                entity
            } else {
                &entity[h..]
            };
            let mh = header_end(msg);
            match text {
                SectionText::Header => Cow::Borrowed(&msg[..mh]),
                SectionText::Text => Cow::Borrowed(&msg[mh..]),
                SectionText::HeaderFields { not, fields } => {
                    Cow::Owned(pick_fields(&msg[..mh], fields, *not))
                }
                SectionText::Mime => Cow::Borrowed(&entity[..h]),
            }
        }
    })
}

/// A Content-Transfer-Encoding BINARY cannot undo (RFC 3516 §4.3: `NO [UNKNOWN-CTE]`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct UnknownCte;

/// BINARY[part] (RFC 3516 §4.2): the part's body with its transfer encoding undone; the
/// whole message as it is for an empty part. `Ok(None)` when the part does not exist.
pub(super) fn binary(raw: &[u8], path: &[u32]) -> Result<Option<Vec<u8>>, UnknownCte> {
    if path.is_empty() {
        return Ok(Some(raw.to_vec()));
    }
    let Some((entity, _)) = part(raw, path) else {
        return Ok(None);
    };
    let h = header_end(entity);
    let body = &entity[h..];
    let cte = header_value(&entity[..h], b"content-transfer-encoding").unwrap_or_default();
    match cte.to_ascii_lowercase().as_slice() {
        b"" | b"7bit" | b"8bit" | b"binary" => Ok(Some(body.to_vec())),
        b"base64" => Ok(Some(base64(body))),
        b"quoted-printable" => Ok(Some(quoted_printable(body))),
        _ => Err(UnknownCte),
    }
}

/// Base64 with line breaks and other noise skipped (RFC 2045 §6.8); a bad tail is dropped.
fn base64(body: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    // A lone sixth-bit character at the end cannot make an octet.
    let usable = &clean[..clean.len() - usize::from(clean.len() % 4 == 1)];
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(usable)
        .unwrap_or_default()
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` octets and `=` soft line breaks.
fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match (body[i], body.get(i + 1), body.get(i + 2)) {
            (b'=', Some(b'\r'), Some(b'\n')) => i += 3,
            (b'=', Some(b'\n'), _) => i += 2,
            (b'=', Some(&a), Some(&b)) if hex(a).is_some() && hex(b).is_some() => {
                out.push(hex(a).unwrap_or(0) * 16 + hex(b).unwrap_or(0));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The MIME entity (header and body) of part `path`, and whether it is message/rfc822.
fn part<'a>(raw: &'a [u8], path: &[u32]) -> Option<(&'a [u8], bool)> {
    let mut entity = raw;
    let mut is_message = false;
    for (depth, &n) in path.iter().enumerate() {
        // Inside message/rfc822, the numbers name the encapsulated message's parts.
        if is_message && depth > 0 {
            entity = &entity[header_end(entity)..];
        }
        let h = header_end(entity);
        let ct = content_type(&entity[..h]);
        if let Some(boundary) = ct.boundary.as_deref().filter(|_| ct.media == b"multipart") {
            let parts = split_multipart(&entity[h..], boundary);
            entity = parts.get((n as usize).checked_sub(1)?)?;
        } else if n != 1 {
            return None;
        }
        let sub = content_type(&entity[..header_end(entity)]);
        is_message =
            sub.media == b"message" && (sub.subtype == b"rfc822" || sub.subtype == b"global");
    }
    Some((entity, is_message))
}

/// A Content-Type's type, subtype (lower case) and boundary.
pub(super) struct ContentType {
    pub media: Vec<u8>,
    pub subtype: Vec<u8>,
    pub boundary: Option<Vec<u8>>,
}

pub(super) fn content_type(header: &[u8]) -> ContentType {
    let value = header_value(header, b"content-type").unwrap_or_default();
    let mut pieces = value.split(|&b| b == b';');
    let main = pieces.next().unwrap_or_default();
    let (media, subtype) = match main.iter().position(|&b| b == b'/') {
        Some(p) => (trim_ws(&main[..p]), trim_ws(&main[p + 1..])),
        None => (&b"text"[..], &b"plain"[..]),
    };
    let boundary = pieces.find_map(|p| {
        let p = trim_ws(p);
        let eq = p.iter().position(|&b| b == b'=')?;
        trim_ws(&p[..eq])
            .eq_ignore_ascii_case(b"boundary")
            .then(|| {
                let v = trim_ws(&p[eq + 1..]);
                v.strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v)
                    .to_vec()
            })
    });
    ContentType {
        media: media.to_ascii_lowercase(),
        subtype: subtype.to_ascii_lowercase(),
        boundary,
    }
}

fn trim_ws(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &s[start..end]
}

/// The body parts between `--boundary` lines (RFC 2046 §5.1.1); the CRLF before a
/// delimiter belongs to the delimiter.
pub(super) fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut pos = 0;
    while pos <= body.len() {
        let line_end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |p| pos + p + 1);
        let line = &body[pos..line_end];
        if line.starts_with(&delim) {
            if let Some(start) = current {
                let end = pos.saturating_sub(2).max(start);
                parts.push(&body[start..end]);
            }
            if line[delim.len()..].starts_with(b"--") {
                return parts;
            }
            current = Some(line_end);
        }
        if line_end == body.len() {
            break;
        }
        pos = line_end;
    }
    if let Some(start) = current {
        parts.push(&body[start.min(body.len())..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@b\r\nSubject: hi\r\n there\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npre\r\n--XX\r\nContent-Type: text/plain\r\n\r\none\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--XX--\r\n";

    fn sec(part: &[u32], text: Option<SectionText>) -> Vec<u8> {
        let s = Section {
            part: part.to_vec(),
            text,
        };
        section(MSG, &s)
            .map(|c| c.into_owned())
            .unwrap_or_else(|| b"NIL".to_vec())
    }

    #[test]
    fn binary_undoes_transfer_encodings() {
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db=\r\nc\r\n--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nx\r\n--b--\r\n";
        assert_eq!(binary(m, &[1]), Ok(Some(b"hello".to_vec())));
        assert_eq!(binary(m, &[2]), Ok(Some(b"a=bc".to_vec())));
        assert_eq!(binary(m, &[3]), Err(UnknownCte));
        assert_eq!(binary(m, &[4]), Ok(None));
    }

    #[test]
    fn crlf_only_where_bare() {
        assert_eq!(crlf(b"a\nb\r\nc\n".to_vec()), b"a\r\nb\r\nc\r\n");
        assert_eq!(crlf(b"\n\n\r\r\n".to_vec()), b"\r\n\r\n\r\r\n");
        assert_eq!(crlf(b"x\r\n".to_vec()), b"x\r\n");
    }

    #[test]
    fn sections() {
        assert!(sec(&[], Some(SectionText::Header)).ends_with(b"\"XX\"\r\n\r\n"));
        assert_eq!(sec(&[1], None), b"one");
        assert_eq!(
            sec(&[1], Some(SectionText::Mime)),
            b"Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(sec(&[2, 1], None), b"inner body");
        assert_eq!(
            sec(&[2], Some(SectionText::Header)),
            b"Subject: inner\r\n\r\n"
        );
        assert_eq!(sec(&[3], None), b"NIL");
        let fields = SectionText::HeaderFields {
            not: false,
            fields: vec![b"SUBJECT".to_vec()],
        };
        assert_eq!(sec(&[], Some(fields)), b"Subject: hi\r\n there\r\n\r\n");
        assert_eq!(header_value(MSG, b"subject").unwrap(), b"hi there");
    }
}

//! ENVELOPE and BODYSTRUCTURE of a message (RFC 9051 §7.4.2) built from its octets, every
//! string borrowed from them: header values as they stand (RFC 9051 keeps encoded words
//! undecoded in the envelope), Content-Type parameters, and the sizes and line counts of the
//! MIME parts (RFC 2045–2046). Pure functions.

use super::message::{self, header_end, split_multipart};
use crate::response::{
    Address, BodyExt, BodyFields, BodyStructure, Disposition, Envelope, MultiExt, SingleKind,
};

/// Nested message/rfc822 deeper than this is shown as an opaque part.
const MAX_DEPTH: usize = 16;

pub(super) struct Parsed<'a> {
    envelope: Envelope<'a>,
    structure: BodyStructure<'a>,
}

impl<'a> Parsed<'a> {
    pub fn new(raw: &'a [u8]) -> Parsed<'a> {
        let header = &raw[..header_end(raw)];
        Parsed {
            envelope: envelope(header),
            structure: structure(raw, 0, false),
        }
    }
    pub fn envelope(&self) -> &Envelope<'a> {
        &self.envelope
    }
    pub fn structure(&self) -> &BodyStructure<'a> {
        &self.structure
    }
}

/// A header's fields, split once: (name, whole field).
pub(super) struct Header<'a>(Vec<(&'a [u8], &'a [u8])>);

impl<'a> Header<'a> {
    pub fn new(header: &'a [u8]) -> Header<'a> {
        Header(message::fields(header))
    }

    /// The first field called `name`, as it stands (folding included), trimmed; `None`
    /// when absent.
    pub fn value(&self, name: &[u8]) -> Option<&'a [u8]> {
        let (_, field) = self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        let colon = field.iter().position(|&b| b == b':')?;
        Some(trim(&field[colon + 1..]))
    }
}

fn trim(s: &[u8]) -> &[u8] {
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

fn unquote(s: &[u8]) -> &[u8] {
    let s = trim(s);
    s.strip_prefix(b"\"")
        .and_then(|s| s.strip_suffix(b"\""))
        .unwrap_or(s)
}

/// The ENVELOPE of a message whose header (CRLF line ends) is `header`.
pub(super) fn envelope(header: &[u8]) -> Envelope<'_> {
    let header = Header::new(header);
    let list = |name: &[u8]| header.value(name).map(addresses).unwrap_or_default();
    let from = list(b"from");
    let mut sender = list(b"sender");
    let mut reply_to = list(b"reply-to");
    // RFC 9051 §7.4.2: sender and reply-to default to from.
    if sender.is_empty() {
        sender = from.clone();
    }
    if reply_to.is_empty() {
        reply_to = from.clone();
    }
    Envelope {
        date: header.value(b"date"),
        subject: header.value(b"subject"),
        from,
        sender,
        reply_to,
        to: list(b"to"),
        cc: list(b"cc"),
        bcc: list(b"bcc"),
        in_reply_to: header.value(b"in-reply-to"),
        message_id: header.value(b"message-id"),
    }
}

/// Splits at `sep` outside quotes, angle brackets and comments.
fn split_outside(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let (mut out, mut start, mut quoted, mut depth) = (Vec::new(), 0, false, 0i32);
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' | b'(' if !quoted => depth += 1,
            b'>' | b')' if !quoted => depth -= 1,
            _ if b == sep && !quoted && depth <= 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// An address list (RFC 5322 §3.4); groups become the start/end markers of RFC 9051.
fn addresses(value: &[u8]) -> Vec<Address<'_>> {
    let mut out = Vec::new();
    for item in split_outside(value, b',') {
        let mut item = trim(item);
        if let Some(colon) = split_outside(item, b':').first().map(|f| f.len())
            && colon < item.len()
        {
            out.push(Address {
                mailbox: Some(trim(&item[..colon])),
                ..Address::default()
            });
            item = trim(&item[colon + 1..]);
        }
        let end_group = item.ends_with(b";");
        let item = trim(item.strip_suffix(b";").unwrap_or(item));
        if !item.is_empty() {
            out.push(mailbox(item));
        }
        if end_group {
            out.push(Address::default());
        }
    }
    out
}

fn mailbox(item: &[u8]) -> Address<'_> {
    let (name, spec) = match (
        item.iter().position(|&b| b == b'<'),
        item.iter().rposition(|&b| b == b'>'),
    ) {
        (Some(lt), Some(gt)) if lt < gt => {
            let name = unquote(&item[..lt]);
            ((!name.is_empty()).then_some(name), &item[lt + 1..gt])
        }
        _ => (None, item),
    };
    let spec = trim(spec);
    let (mailbox, host) = match spec.iter().rposition(|&b| b == b'@') {
        Some(at) => (&spec[..at], Some(&spec[at + 1..])),
        None => (spec, None),
    };
    Address {
        name,
        adl: None,
        mailbox: Some(mailbox),
        host: host.or(Some(b"")),
    }
}

/// `type/subtype; a=b; ...`: (type, subtype, parameters).
type ContentType<'a> = (&'a [u8], &'a [u8], Vec<(&'a [u8], &'a [u8])>);

fn params<'a>(pieces: &[&'a [u8]]) -> Vec<(&'a [u8], &'a [u8])> {
    pieces
        .iter()
        .filter_map(|p| {
            let eq = p.iter().position(|&b| b == b'=')?;
            Some((trim(&p[..eq]), unquote(&p[eq + 1..])))
        })
        .collect()
}

fn content_type<'a>(header: &Header<'a>, in_digest: bool) -> ContentType<'a> {
    let default: ContentType = if in_digest {
        (b"message", b"rfc822", Vec::new())
    } else {
        (b"text", b"plain", vec![(b"charset", b"us-ascii")])
    };
    let Some(value) = header.value(b"content-type") else {
        return default;
    };
    let pieces = split_outside(value, b';');
    match pieces[0].iter().position(|&b| b == b'/') {
        Some(slash) => (
            trim(&pieces[0][..slash]),
            trim(&pieces[0][slash + 1..]),
            params(&pieces[1..]),
        ),
        None => default,
    }
}

fn ext<'a>(header: &Header<'a>) -> BodyExt<'a> {
    let disposition = header.value(b"content-disposition").map(|v| {
        let pieces = split_outside(v, b';');
        Disposition {
            kind: trim(pieces[0]),
            params: params(&pieces[1..]),
        }
    });
    BodyExt {
        disposition,
        language: header.value(b"content-language").into_iter().collect(),
        location: header.value(b"content-location"),
    }
}

fn structure(entity: &[u8], depth: usize, in_digest: bool) -> BodyStructure<'_> {
    let h = header_end(entity);
    let (header, body) = (Header::new(&entity[..h]), &entity[h..]);
    let (media, subtype, params) = content_type(&header, in_digest);
    let boundary = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(b"boundary"))
        .map(|(_, v)| *v);
    if media.eq_ignore_ascii_case(b"multipart")
        && depth < MAX_DEPTH
        && let Some(b) = boundary
    {
        let digest = subtype.eq_ignore_ascii_case(b"digest");
        let mut parts: Vec<_> = split_multipart(body, b)
            .into_iter()
            .map(|p| structure(p, depth + 1, digest))
            .collect();
        if parts.is_empty() {
            parts.push(structure(b"", depth + 1, false));
        }
        return BodyStructure::Multi {
            parts,
            subtype,
            ext: MultiExt {
                params,
                ext: ext(&header),
            },
        };
    }
    single(&header, body, (media, subtype, params), depth)
}

/// A non-multipart entity: its fields, and the kind (text lines, an encapsulated message).
fn single<'a>(
    header: &Header<'a>,
    body: &'a [u8],
    ct: ContentType<'a>,
    depth: usize,
) -> BodyStructure<'a> {
    let (media, subtype, params) = ct;
    let lines = memchr::memchr_iter(b'\n', body).count() as u64;
    let kind = if media.eq_ignore_ascii_case(b"text") {
        SingleKind::Text { lines }
    } else if media.eq_ignore_ascii_case(b"message")
        && subtype.eq_ignore_ascii_case(b"rfc822")
        && depth < MAX_DEPTH
    {
        SingleKind::Message {
            envelope: Box::new(envelope(&body[..header_end(body)])),
            body: Box::new(structure(body, depth + 1, false)),
            lines,
        }
    } else {
        SingleKind::Basic
    };
    let fields = BodyFields {
        media_type: media,
        subtype,
        params,
        id: header.value(b"content-id"),
        description: header.value(b"content-description"),
        encoding: header
            .value(b"content-transfer-encoding")
            .unwrap_or(b"7BIT"),
        size: body.len() as u64,
    };
    BodyStructure::Single {
        fields,
        kind,
        md5: header.value(b"content-md5"),
        ext: ext(header),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{Encoding, FetchAttr};

    fn encode(attr: FetchAttr) -> String {
        let mut out = Vec::new();
        crate::response::Response::Data(crate::response::Data::Fetch {
            seq: 1,
            attrs: &[attr],
        })
        .encode(&mut out, Encoding::default());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn envelope_of_a_simple_message() {
        let raw = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: \"Alice A\" <alice@example.org>\r\nTo: bob@example.org, Team: c@d, e@f;\r\nSubject: Hello\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n";
        let p = Parsed::new(raw);
        let got = encode(FetchAttr::Envelope(p.envelope()));
        assert_eq!(
            got,
            "* 1 FETCH (ENVELOPE (\"Mon, 1 Jan 2024 00:00:00 +0000\" \"Hello\" ((\"Alice A\" NIL \"alice\" \"example.org\")) ((\"Alice A\" NIL \"alice\" \"example.org\")) ((\"Alice A\" NIL \"alice\" \"example.org\")) ((NIL NIL \"bob\" \"example.org\")(NIL NIL \"Team\" NIL)(NIL NIL \"c\" \"d\")(NIL NIL \"e\" \"f\")(NIL NIL NIL NIL)) NIL NIL NIL \"<1@x>\"))\r\n"
        );
    }

    #[test]
    fn bodystructure_of_multipart() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\nthere\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\n";
        let p = Parsed::new(raw);
        let got = encode(FetchAttr::Body(p.structure()));
        assert_eq!(
            got,
            "* 1 FETCH (BODY ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 9 1)(\"application\" \"pdf\" NIL NIL NIL \"base64\" 4) \"mixed\"))\r\n"
        );
    }
}

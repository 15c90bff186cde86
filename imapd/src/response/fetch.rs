//! FETCH responses (RFC 9051 §7.4.2): every message data item, the ENVELOPE and
//! BODY/BODYSTRUCTURE encodings from structured data, body sections with their origin, and
//! BINARY literal8 (RFC 3516 §4.2). Written straight into the output buffer: one FETCH of
//! many messages allocates nothing per message here. Building these values from the
//! mailstore's cache is the session's job.

use super::wire::{self, Encoding};
use crate::command::{Section, SectionText};

/// The system flags as bits, so that a message's flags need no list of strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemFlags(pub u8);

impl SystemFlags {
    pub const SEEN: u8 = 1;
    pub const ANSWERED: u8 = 2;
    pub const FLAGGED: u8 = 4;
    pub const DELETED: u8 = 8;
    pub const DRAFT: u8 = 16;
    pub const RECENT: u8 = 32;
    const NAMES: [(u8, &'static [u8]); 6] = [
        (Self::SEEN, b"\\Seen"),
        (Self::ANSWERED, b"\\Answered"),
        (Self::FLAGGED, b"\\Flagged"),
        (Self::DELETED, b"\\Deleted"),
        (Self::DRAFT, b"\\Draft"),
        (Self::RECENT, b"\\Recent"),
    ];
}

/// One item of a FETCH response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr<'a> {
    Uid(u32),
    Flags {
        system: SystemFlags,
        keywords: &'a [&'a [u8]],
    },
    /// Seconds since the epoch and the zone in minutes east of UTC.
    InternalDate {
        unix: i64,
        zone_minutes: i16,
    },
    Rfc822Size(u64),
    Envelope(&'a Envelope<'a>),
    /// BODY: the structure without extension data.
    Body(&'a BodyStructure<'a>),
    BodyStructure(&'a BodyStructure<'a>),
    ModSeq(u64),
    /// BODY[section]<origin> with its octets, or NIL.
    Section {
        section: &'a Section,
        origin: Option<u32>,
        data: Option<&'a [u8]>,
    },
    /// BINARY[part]<origin>: literal8 when the data holds NUL (RFC 3516 §4.2).
    Binary {
        part: &'a [u32],
        origin: Option<u32>,
        data: Option<&'a [u8]>,
    },
    BinarySize {
        part: &'a [u32],
        size: u64,
    },
    Rfc822(Option<&'a [u8]>),
    Rfc822Header(Option<&'a [u8]>),
    Rfc822Text(Option<&'a [u8]>),
    /// An item the caller encoded before (a cached `ENVELOPE (...)`), written as it is; it
    /// must have been encoded with this connection's [`Encoding`].
    Encoded(&'a [u8]),
}

/// An address of an envelope (RFC 9051 §7.4.2 ENVELOPE); a group is marked by an address
/// with no host (start: mailbox = group name, end: mailbox NIL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address<'a> {
    pub name: Option<&'a [u8]>,
    pub adl: Option<&'a [u8]>,
    pub mailbox: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
}

/// The envelope structure (RFC 9051 §7.4.2); empty address lists are sent as NIL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub date: Option<&'a [u8]>,
    pub subject: Option<&'a [u8]>,
    pub from: Vec<Address<'a>>,
    pub sender: Vec<Address<'a>>,
    pub reply_to: Vec<Address<'a>>,
    pub to: Vec<Address<'a>>,
    pub cc: Vec<Address<'a>>,
    pub bcc: Vec<Address<'a>>,
    pub in_reply_to: Option<&'a [u8]>,
    pub message_id: Option<&'a [u8]>,
}

/// The fields every non-multipart body has (RFC 9051 §9 body-fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyFields<'a> {
    pub media_type: &'a [u8],
    pub subtype: &'a [u8],
    pub params: Vec<(&'a [u8], &'a [u8])>,
    pub id: Option<&'a [u8]>,
    pub description: Option<&'a [u8]>,
    pub encoding: &'a [u8],
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingleKind<'a> {
    Basic,
    Text {
        lines: u64,
    },
    /// MESSAGE/RFC822 and MESSAGE/GLOBAL.
    Message {
        envelope: Box<Envelope<'a>>,
        body: Box<BodyStructure<'a>>,
        lines: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposition<'a> {
    pub kind: &'a [u8],
    pub params: Vec<(&'a [u8], &'a [u8])>,
}

/// body-ext-1part's fields after MD5 (RFC 9051 §9), shared with multipart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyExt<'a> {
    pub disposition: Option<Disposition<'a>>,
    pub language: Vec<&'a [u8]>,
    pub location: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultiExt<'a> {
    pub params: Vec<(&'a [u8], &'a [u8])>,
    pub ext: BodyExt<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStructure<'a> {
    Single {
        fields: BodyFields<'a>,
        kind: SingleKind<'a>,
        md5: Option<&'a [u8]>,
        ext: BodyExt<'a>,
    },
    Multi {
        parts: Vec<BodyStructure<'a>>,
        subtype: &'a [u8],
        ext: MultiExt<'a>,
    },
}

/// `* n FETCH (items)`.
pub(super) fn fetch(out: &mut Vec<u8>, seq: u32, attrs: &[FetchAttr], enc: Encoding) {
    wire::number(out, seq.into());
    out.extend_from_slice(b" FETCH (");
    for (i, a) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        attr(out, a, enc);
    }
    out.push(b')');
}

/// One FETCH item alone, as it appears inside `FETCH (...)`: what a cache keeps and gives
/// back as [`FetchAttr::Encoded`].
pub fn encode_attr(out: &mut Vec<u8>, a: &FetchAttr, enc: Encoding) {
    attr(out, a, enc);
}

fn attr(out: &mut Vec<u8>, a: &FetchAttr, enc: Encoding) {
    match a {
        FetchAttr::Uid(n) => word_number(out, b"UID ", (*n).into()),
        FetchAttr::Flags { system, keywords } => flags(out, *system, keywords),
        FetchAttr::InternalDate { unix, zone_minutes } => {
            out.extend_from_slice(b"INTERNALDATE ");
            internal_date(out, *unix, *zone_minutes);
        }
        FetchAttr::Rfc822Size(n) => word_number(out, b"RFC822.SIZE ", *n),
        FetchAttr::ModSeq(n) => {
            word_number(out, b"MODSEQ (", *n);
            out.push(b')');
        }
        FetchAttr::Envelope(e) => {
            out.extend_from_slice(b"ENVELOPE ");
            envelope(out, e, enc);
        }
        FetchAttr::Body(b) => {
            out.extend_from_slice(b"BODY ");
            body(out, b, false, enc);
        }
        FetchAttr::BodyStructure(b) => {
            out.extend_from_slice(b"BODYSTRUCTURE ");
            body(out, b, true, enc);
        }
        FetchAttr::Section {
            section,
            origin,
            data,
        } => {
            out.extend_from_slice(b"BODY[");
            section_spec(out, section, enc);
            out.push(b']');
            origin_data(out, *origin, *data, false);
        }
        FetchAttr::Binary { part, origin, data } => {
            out.extend_from_slice(b"BINARY[");
            part_path(out, part);
            out.push(b']');
            origin_data(out, *origin, *data, true);
        }
        FetchAttr::BinarySize { part, size } => {
            out.extend_from_slice(b"BINARY.SIZE[");
            part_path(out, part);
            word_number(out, b"] ", *size);
        }
        FetchAttr::Rfc822(d) => literal_item(out, b"RFC822 ", *d),
        FetchAttr::Rfc822Header(d) => literal_item(out, b"RFC822.HEADER ", *d),
        FetchAttr::Rfc822Text(d) => literal_item(out, b"RFC822.TEXT ", *d),
        FetchAttr::Encoded(raw) => out.extend_from_slice(raw),
    }
}

fn word_number(out: &mut Vec<u8>, word: &[u8], n: u64) {
    out.extend_from_slice(word);
    wire::number(out, n);
}

fn flags(out: &mut Vec<u8>, system: SystemFlags, keywords: &[&[u8]]) {
    out.extend_from_slice(b"FLAGS (");
    let mut first = true;
    let names = SystemFlags::NAMES
        .iter()
        .filter(|(bit, _)| system.0 & bit != 0);
    for name in names.map(|(_, n)| *n).chain(keywords.iter().copied()) {
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(name);
    }
    out.push(b')');
}

/// Message contents are always literals: they hold CRLF, and a client reads them fastest.
fn literal_item(out: &mut Vec<u8>, word: &[u8], data: Option<&[u8]>) {
    out.extend_from_slice(word);
    match data {
        Some(d) => wire::literal(out, d),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// `<origin>` then SP and the data (RFC 9051 §7.4.2 BODY[<section>]<<origin octet>>).
fn origin_data(out: &mut Vec<u8>, origin: Option<u32>, data: Option<&[u8]>, binary: bool) {
    if let Some(o) = origin {
        out.push(b'<');
        wire::number(out, o.into());
        out.push(b'>');
    }
    out.push(b' ');
    match data {
        Some(d) if binary && d.contains(&0) => wire::literal8(out, d),
        Some(d) => wire::literal(out, d),
        None => out.extend_from_slice(b"NIL"),
    }
}

fn part_path(out: &mut Vec<u8>, part: &[u32]) {
    for (i, p) in part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        wire::number(out, (*p).into());
    }
}

/// The section as the client asked for it, echoed in the response.
fn section_spec(out: &mut Vec<u8>, s: &Section, enc: Encoding) {
    part_path(out, &s.part);
    let Some(text) = &s.text else { return };
    if !s.part.is_empty() {
        out.push(b'.');
    }
    match text {
        SectionText::Header => out.extend_from_slice(b"HEADER"),
        SectionText::Text => out.extend_from_slice(b"TEXT"),
        SectionText::Mime => out.extend_from_slice(b"MIME"),
        SectionText::HeaderFields { not, fields } => {
            out.extend_from_slice(if *not {
                b"HEADER.FIELDS.NOT ("
            } else {
                b"HEADER.FIELDS ("
            });
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                wire::astring(out, f, enc);
            }
            out.push(b')');
        }
    }
}

/// "(" date SP subject SP from SP sender SP reply-to SP to SP cc SP bcc SP in-reply-to SP
/// message-id ")" (RFC 9051 §9 envelope).
fn envelope(out: &mut Vec<u8>, e: &Envelope, enc: Encoding) {
    out.push(b'(');
    wire::nstring(out, e.date, enc);
    out.push(b' ');
    wire::nstring(out, e.subject, enc);
    for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        out.push(b' ');
        addresses(out, list, enc);
    }
    out.push(b' ');
    wire::nstring(out, e.in_reply_to, enc);
    out.push(b' ');
    wire::nstring(out, e.message_id, enc);
    out.push(b')');
}

fn addresses(out: &mut Vec<u8>, list: &[Address], enc: Encoding) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        for (i, part) in [a.name, a.adl, a.mailbox, a.host].into_iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            wire::nstring(out, part, enc);
        }
        out.push(b')');
    }
    out.push(b')');
}

/// body = "(" (body-type-1part / body-type-mpart) ")"; `ext` adds the extension data of
/// BODYSTRUCTURE (RFC 9051 §9).
fn body(out: &mut Vec<u8>, b: &BodyStructure, ext: bool, enc: Encoding) {
    out.push(b'(');
    match b {
        BodyStructure::Single {
            fields,
            kind,
            md5,
            ext: e,
        } => {
            body_fields(out, fields, enc);
            single_kind(out, kind, ext, enc);
            if ext {
                out.push(b' ');
                wire::nstring(out, *md5, enc);
                body_ext(out, e, enc);
            }
        }
        BodyStructure::Multi {
            parts,
            subtype,
            ext: e,
        } => {
            for p in parts {
                body(out, p, ext, enc);
            }
            out.push(b' ');
            wire::string(out, subtype, enc);
            if ext {
                out.push(b' ');
                params(out, &e.params, enc);
                body_ext(out, &e.ext, enc);
            }
        }
    }
    out.push(b')');
}

/// What follows body-fields: body-fld-lines for text, envelope, body and lines for a
/// message (RFC 9051 §9 body-type-text, body-type-msg).
fn single_kind(out: &mut Vec<u8>, kind: &SingleKind, ext: bool, enc: Encoding) {
    match kind {
        SingleKind::Basic => {}
        SingleKind::Text { lines } => word_number(out, b" ", *lines),
        SingleKind::Message {
            envelope: env,
            body: inner,
            lines,
        } => {
            out.push(b' ');
            envelope(out, env, enc);
            out.push(b' ');
            body(out, inner, ext, enc);
            word_number(out, b" ", *lines);
        }
    }
}

/// body-fields = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP
/// body-fld-octets, after media type and subtype.
fn body_fields(out: &mut Vec<u8>, f: &BodyFields, enc: Encoding) {
    wire::string(out, f.media_type, enc);
    out.push(b' ');
    wire::string(out, f.subtype, enc);
    out.push(b' ');
    params(out, &f.params, enc);
    out.push(b' ');
    wire::nstring(out, f.id, enc);
    out.push(b' ');
    wire::nstring(out, f.description, enc);
    out.push(b' ');
    wire::string(out, f.encoding, enc);
    word_number(out, b" ", f.size);
}

/// SP body-fld-dsp SP body-fld-lang SP body-fld-loc.
fn body_ext(out: &mut Vec<u8>, e: &BodyExt, enc: Encoding) {
    out.push(b' ');
    match &e.disposition {
        Some(d) => {
            out.push(b'(');
            wire::string(out, d.kind, enc);
            out.push(b' ');
            params(out, &d.params, enc);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match e.language.as_slice() {
        [] => out.extend_from_slice(b"NIL"),
        [one] => wire::string(out, one, enc),
        many => {
            out.push(b'(');
            for (i, l) in many.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                wire::string(out, l, enc);
            }
            out.push(b')');
        }
    }
    out.push(b' ');
    wire::nstring(out, e.location, enc);
}

/// body-fld-param = "(" string SP string *(SP string SP string) ")" / nil.
fn params(out: &mut Vec<u8>, p: &[(&[u8], &[u8])], enc: Encoding) {
    if p.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in p.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        wire::string(out, k, enc);
        out.push(b' ');
        wire::string(out, v, enc);
    }
    out.push(b')');
}

/// date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE.
pub fn internal_date(out: &mut Vec<u8>, unix: i64, zone_minutes: i16) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let local = unix + i64::from(zone_minutes) * 60;
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = shared::date::civil_from_days(days);
    let (m, d) = (i64::from(m), i64::from(d));
    let two = |out: &mut Vec<u8>, n: i64| {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8])
    };
    out.push(b'"');
    if d < 10 {
        out.push(b' ');
        out.push(b'0' + d as u8);
    } else {
        two(out, d);
    }
    out.push(b'-');
    out.extend_from_slice(MONTHS[(m - 1) as usize]);
    out.push(b'-');
    wire::number(out, y.clamp(0, 9999) as u64);
    out.push(b' ');
    two(out, secs / 3600);
    out.push(b':');
    two(out, secs / 60 % 60);
    out.push(b':');
    two(out, secs % 60);
    out.push(b' ');
    out.push(if zone_minutes < 0 { b'-' } else { b'+' });
    let z = i64::from(zone_minutes).abs();
    two(out, z / 60 % 100);
    two(out, z % 60);
    out.push(b'"');
}

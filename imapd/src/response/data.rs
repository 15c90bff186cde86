//! Encoding of untagged data responses (RFC 9051 §7.2–7.4 and the extensions cited on
//! [`Data`]'s variants), without the final CRLF.

use super::wire::{self, Encoding};
use super::{Data, ESearch, IdField, ListExtended, NamespaceDesc};

impl Data<'_> {
    pub(super) fn encode(&self, out: &mut Vec<u8>, enc: Encoding) {
        out.extend_from_slice(b"* ");
        match self {
            Data::Capability(caps) => {
                out.extend_from_slice(b"CAPABILITY ");
                wire::words(out, caps);
            }
            Data::List {
                lsub,
                attributes,
                delimiter,
                mailbox,
                extended,
            } => {
                out.extend_from_slice(if *lsub { b"LSUB " } else { b"LIST " });
                list(out, attributes, *delimiter, mailbox, extended, enc);
            }
            Data::Status { mailbox, items } => status(out, mailbox, items, enc),
            Data::Flags(flags) => {
                out.extend_from_slice(b"FLAGS ");
                wire::atom_list(out, flags);
            }
            Data::Exists(n) => number_word(out, *n, b" EXISTS"),
            Data::Recent(n) => number_word(out, *n, b" RECENT"),
            Data::Expunge(n) => number_word(out, *n, b" EXPUNGE"),
            Data::Vanished { earlier, uids } => {
                out.extend_from_slice(b"VANISHED ");
                if *earlier {
                    out.extend_from_slice(b"(EARLIER) ");
                }
                wire::ranges(out, uids);
            }
            Data::Search { ids, modseq } => id_list(out, b"SEARCH", ids, *modseq),
            Data::Sort { ids, modseq } => id_list(out, b"SORT", ids, *modseq),
            Data::ESearch(e) => esearch(out, e),
            Data::Enabled(caps) => {
                out.extend_from_slice(b"ENABLED");
                for c in caps.iter() {
                    out.push(b' ');
                    out.extend_from_slice(c.as_bytes());
                }
            }
            Data::Id(fields) => id(out, *fields, enc),
            Data::Namespace {
                personal,
                other,
                shared,
            } => {
                out.extend_from_slice(b"NAMESPACE");
                for list in [personal, other, shared] {
                    out.push(b' ');
                    namespace(out, list, enc);
                }
            }
            Data::Quota { root, resources } => quota(out, root, resources, enc),
            Data::QuotaRoot { mailbox, roots } => {
                out.extend_from_slice(b"QUOTAROOT ");
                wire::astring(out, mailbox, enc);
                for r in roots.iter() {
                    out.push(b' ');
                    wire::astring(out, r, enc);
                }
            }
            Data::Fetch { seq, attrs } => super::fetch::fetch(out, *seq, attrs, enc),
        }
    }
}

/// status-att-list (RFC 9051 §9).
fn status(out: &mut Vec<u8>, mailbox: &[u8], items: &[super::StatusValue], enc: Encoding) {
    out.extend_from_slice(b"STATUS ");
    wire::astring(out, mailbox, enc);
    out.extend_from_slice(b" (");
    for (i, (item, value)) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(item.name().as_bytes());
        out.push(b' ');
        wire::number(out, *value);
    }
    out.push(b')');
}

fn number_word(out: &mut Vec<u8>, n: u32, word: &[u8]) {
    wire::number(out, n.into());
    out.extend_from_slice(word);
}

/// The delimiter as a quoted char or NIL (RFC 9051 §9 mailbox-list).
fn delimiter(out: &mut Vec<u8>, d: Option<u8>) {
    match d {
        Some(d @ (b'"' | b'\\')) => out.extend_from_slice(&[b'"', b'\\', d, b'"']),
        Some(d) => out.extend_from_slice(&[b'"', d, b'"']),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// mailbox-list = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox
/// [SP mbox-list-extended] (RFC 9051 §9).
fn list(
    out: &mut Vec<u8>,
    attributes: &[&str],
    d: Option<u8>,
    mailbox: &[u8],
    extended: &[ListExtended],
    enc: Encoding,
) {
    wire::atom_list(out, attributes);
    out.push(b' ');
    delimiter(out, d);
    out.push(b' ');
    wire::astring(out, mailbox, enc);
    if extended.is_empty() {
        return;
    }
    out.extend_from_slice(b" (");
    for (i, item) in extended.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        match item {
            ListExtended::ChildInfo(opts) => {
                out.extend_from_slice(b"\"CHILDINFO\" (");
                for (j, o) in opts.iter().enumerate() {
                    if j > 0 {
                        out.push(b' ');
                    }
                    wire::string(out, o.as_bytes(), enc);
                }
                out.push(b')');
            }
            ListExtended::OldName(name) => {
                out.extend_from_slice(b"\"OLDNAME\" (");
                wire::astring(out, name, enc);
                out.push(b')');
            }
        }
    }
    out.push(b')');
}

fn id_list(out: &mut Vec<u8>, word: &[u8], ids: &[u32], modseq: Option<u64>) {
    out.extend_from_slice(word);
    for &id in ids {
        out.push(b' ');
        wire::number(out, id.into());
    }
    if let Some(m) = modseq {
        out.extend_from_slice(b" (MODSEQ ");
        wire::number(out, m);
        out.push(b')');
    }
}

/// esearch-response = "ESEARCH" [search-correlator] [SP "UID"] *(SP search-return-data)
/// (RFC 4731 §3.1, RFC 9051 §9).
fn esearch(out: &mut Vec<u8>, e: &ESearch) {
    out.extend_from_slice(b"ESEARCH");
    if let Some(tag) = e.tag {
        out.extend_from_slice(b" (TAG \"");
        out.extend_from_slice(tag);
        out.extend_from_slice(b"\")");
    }
    if e.uid {
        out.extend_from_slice(b" UID");
    }
    let numbers = [(b"MIN", e.min), (b"MAX", e.max)];
    for (word, value) in numbers {
        if let Some(v) = value {
            out.push(b' ');
            out.extend_from_slice(word);
            out.push(b' ');
            wire::number(out, v.into());
        }
    }
    if let Some(all) = e.all.filter(|a| !a.is_empty()) {
        out.extend_from_slice(b" ALL ");
        wire::ranges(out, all);
    }
    if let Some(c) = e.count {
        out.extend_from_slice(b" COUNT ");
        wire::number(out, c.into());
    }
    if let Some(m) = e.modseq {
        out.extend_from_slice(b" MODSEQ ");
        wire::number(out, m);
    }
}

/// id-response = "ID" SP id-params-list (RFC 2971 §4).
fn id(out: &mut Vec<u8>, fields: Option<&[IdField]>, enc: Encoding) {
    out.extend_from_slice(b"ID ");
    let Some(fields) = fields.filter(|f| !f.is_empty()) else {
        out.extend_from_slice(b"NIL");
        return;
    };
    out.push(b'(');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        wire::string(out, k.as_bytes(), enc);
        out.push(b' ');
        wire::nstring(out, *v, enc);
    }
    out.push(b')');
}

/// Namespace = nil / "(" 1*Namespace-Descr ")" (RFC 2342 §5).
fn namespace(out: &mut Vec<u8>, list: &[NamespaceDesc], enc: Encoding) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for ns in list {
        out.push(b'(');
        wire::string(out, ns.prefix, enc);
        out.push(b' ');
        delimiter(out, ns.delimiter);
        out.push(b')');
    }
    out.push(b')');
}

/// quota-response = "QUOTA" SP quota-root-name SP quota-list (RFC 9208 §6).
fn quota(out: &mut Vec<u8>, root: &[u8], resources: &[(&str, u64, u64)], enc: Encoding) {
    out.extend_from_slice(b"QUOTA ");
    wire::astring(out, root, enc);
    out.extend_from_slice(b" (");
    for (i, (name, usage, limit)) in resources.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        wire::number(out, *usage);
        out.push(b' ');
        wire::number(out, *limit);
    }
    out.push(b')');
}

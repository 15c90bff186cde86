//! FETCH and UID FETCH (RFC 9051 §6.4.5, §6.4.9; MODSEQ and CHANGEDSINCE RFC 7162 §3.1.4):
//! the items of each message from the index (flags, UID, dates, sizes, modseq) and, when
//! asked, from the file (sections, RFC822.*, BINARY, ENVELOPE, BODYSTRUCTURE). A body fetch
//! without PEEK sets `\Seen` in a read-write mailbox (RFC 9051 §6.4.5).

use std::collections::HashSet;
use std::io::Read;

use shared::mailstore::{Flags, MessageInfo, StoreOp};

use super::cache::{Entry, Made};
use super::headertext;
use super::message;
use super::selected::Mailbox;
use super::structure;
use super::{Session, State, Step};
use crate::command::{FetchItem, SequenceSet};
use crate::response::fetch::encode_attr;
use crate::response::{Code, Data, Encoding, FetchAttr, Response, SystemFlags};

/// A fetch's options beyond the items.
pub(super) struct FetchArgs {
    pub uid: bool,
    pub changed_since: Option<u64>,
    /// VANISHED (RFC 7162 §3.2.6): UID FETCH with CHANGEDSINCE under QRESYNC only.
    pub vanished: bool,
}

impl Session {
    pub(super) fn fetch(
        &mut self,
        tag: &[u8],
        set: &SequenceSet,
        mut items: Vec<FetchItem>,
        args: FetchArgs,
    ) -> Step {
        if args.uid && !items.contains(&FetchItem::Uid) {
            items.insert(0, FetchItem::Uid); // RFC 9051 §6.4.9
        }
        if args.changed_since.is_some() && !items.contains(&FetchItem::ModSeq) {
            items.push(FetchItem::ModSeq); // RFC 7162 §3.1.4.1
        }
        if items.contains(&FetchItem::ModSeq) {
            self.enabled.condstore = true; // RFC 7162 §3.1
        }
        if args.vanished && !(args.uid && args.changed_since.is_some() && self.enabled.qresync) {
            return self.finish_bad(tag, "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC");
        }
        let enc = self.encoding();
        let Session { state, out, .. } = self;
        let State::Selected(mb) = state else {
            return Step::Next;
        };
        let Ok(targets) = mb.resolve(set, args.uid) else {
            return self.finish_bad(tag, "Invalid message sequence number");
        };
        if args.vanished {
            super::qresync::fetch_vanished(mb, set, out, enc);
        }
        if items.iter().any(is_structure) {
            mb.cache.refresh();
        }
        let seen_now = if !mb.read_only && items.iter().any(sets_seen) {
            mark_seen(&mut mb.folder, &targets)
        } else {
            HashSet::new()
        };
        self.fetching = Some(Box::new(PendingFetch {
            tag: tag.to_vec(),
            targets,
            next: 0,
            items,
            args,
            seen_now,
            all_known: true,
            prefilled: 0,
        }));
        self.resume()
    }

    /// Writes the next batch of a FETCH's responses (about [`BATCH`] octets); after the
    /// last, the updates and the tagged reply. [`Step::Flush`] while more remain, so a
    /// `FETCH 1:* BODY[]` over a large folder never sits whole in memory.
    pub fn resume(&mut self) -> Step {
        let enc = self.encoding();
        let (Some(mut f), State::Selected(mb)) = (self.fetching.take(), &mut self.state) else {
            return Step::Next;
        };
        while f.next < f.targets.len() && self.out.len() < BATCH {
            if f.next >= f.prefilled {
                prefill_ahead(mb, &mut f);
            }
            let (seq, uid) = f.targets[f.next];
            f.next += 1;
            f.all_known &= fetch_one(mb, &mut self.out, enc, seq, uid, &f);
        }
        mb.cache.save();
        if f.next < f.targets.len() {
            self.fetching = Some(f);
            return Step::Flush;
        }
        self.updates(f.args.uid);
        if !f.all_known {
            let text = "Unknown Content-Transfer-Encoding";
            return self.no(&f.tag, Some(Code::UnknownCte), text);
        }
        self.done(&f.tag)
    }
}

/// Output written per batch of a long FETCH before it is sent.
const BATCH: usize = 1 << 20;
/// Messages whose cache entries are made at once, ahead of their responses.
const PREFILL: usize = 1024;

/// When the structure items are all a FETCH reads files for, makes the cache entries of
/// the next targets at once (`prefill.rs`).
fn prefill_ahead(mb: &mut Mailbox, f: &mut PendingFetch) {
    let end = (f.next + PREFILL).min(f.targets.len());
    let items = &f.items;
    if !items.iter().any(is_structure) || items.iter().any(needs_file) {
        f.prefilled = f.targets.len();
        return;
    }
    let whole = items
        .iter()
        .any(|i| matches!(i, FetchItem::Body | FetchItem::BodyStructure));
    let since = f.args.changed_since;
    let uids: Vec<u32> = f.targets[f.next..end]
        .iter()
        .map(|&(_, uid)| uid)
        .filter(|&uid| {
            mb.folder
                .message(uid)
                .is_some_and(|m| since.is_none_or(|s| m.modseq > s))
        })
        .collect();
    super::prefill::prefill(mb, &uids, whole);
    f.prefilled = end;
}

/// A FETCH under way: what remains to send.
pub(super) struct PendingFetch {
    tag: Vec<u8>,
    targets: Vec<(u32, u32)>,
    next: usize,
    items: Vec<FetchItem>,
    args: FetchArgs,
    /// Messages this FETCH set `\Seen` on: their FLAGS go with them.
    seen_now: HashSet<u32>,
    all_known: bool,
    /// The targets before this index had their cache entries made ahead.
    prefilled: usize,
}

/// The FETCH response of one message; false when a BINARY item met an unknown encoding.
fn fetch_one(
    mb: &mut Mailbox,
    out: &mut Vec<u8>,
    enc: Encoding,
    seq: u32,
    uid: u32,
    f: &PendingFetch,
) -> bool {
    let Some(info) = mb.folder.message(uid).cloned() else {
        return true; // expunged by another session, not announced yet (RFC 2180 §4.1.3)
    };
    if f.args
        .changed_since
        .is_some_and(|since| info.modseq <= since)
    {
        return true;
    }
    let items = &f.items;
    let body = contents(mb, &info, items);
    let flags_too = f.seen_now.contains(&uid) && !items.contains(&FetchItem::Flags);
    let structure = items
        .iter()
        .any(is_structure)
        .then(|| mb.cache.get(uid))
        .flatten();
    let msg = Msg {
        seq,
        info: &info,
        body: body.as_deref(),
        structure,
    };
    one(out, enc, &msg, items, flags_too)
}

/// The message's octets when an item needs them; the structure items asked for are made
/// sure to be in the cache (read from the file when missing: the header alone when only
/// the ENVELOPE is asked for).
fn contents(mb: &mut Mailbox, info: &MessageInfo, items: &[FetchItem]) -> Option<Vec<u8>> {
    let uid = info.uid;
    let whole = items
        .iter()
        .any(|i| matches!(i, FetchItem::Body | FetchItem::BodyStructure));
    let missing = items.iter().any(is_structure)
        && !mb
            .cache
            .get(uid)
            .is_some_and(|e| e.has_structure() || !whole);
    let file = items.iter().any(needs_file);
    let raw = if file || (missing && whole) {
        read(&mut mb.folder, info, false)
    } else if missing {
        read(&mut mb.folder, info, true)
    } else {
        None
    };
    let raw = raw?;
    let search = missing.then(|| headertext::encode(&raw[..headertext::header_len(&raw)]));
    let data = message::crlf(raw);
    if let Some(search) = search {
        let made = make_entry(&data, search, whole || file);
        mb.cache.put(uid, made.entry());
    }
    file.then_some(data)
}

fn sets_seen(item: &FetchItem) -> bool {
    matches!(
        item,
        FetchItem::Section { peek: false, .. }
            | FetchItem::Binary { peek: false, .. }
            | FetchItem::Rfc822
            | FetchItem::Rfc822Text
    )
}

/// Items that need the message's octets (the structure items come from the cache when
/// they can).
fn needs_file(item: &FetchItem) -> bool {
    !is_structure(item)
        && !matches!(
            item,
            FetchItem::Uid
                | FetchItem::Flags
                | FetchItem::InternalDate
                | FetchItem::Rfc822Size
                | FetchItem::ModSeq
        )
}

fn is_structure(item: &FetchItem) -> bool {
    matches!(
        item,
        FetchItem::Envelope | FetchItem::Body | FetchItem::BodyStructure
    )
}

/// The cache entry of a message (`data` with CRLF line ends; the header alone unless
/// `whole`): its ENVELOPE, and its BODY and BODYSTRUCTURE when whole.
pub(super) fn make_entry(data: &[u8], search: Vec<u8>, whole: bool) -> Made {
    let enc = Encoding::default();
    let encode = |a: FetchAttr| {
        let mut out = Vec::new();
        encode_attr(&mut out, &a, enc);
        out
    };
    if !whole {
        let envelope = structure::envelope(&data[..message::header_end(data)]);
        return Made {
            envelope: encode(FetchAttr::Envelope(&envelope)),
            search,
            ..Made::default()
        };
    }
    let p = structure::Parsed::new(data);
    Made {
        envelope: encode(FetchAttr::Envelope(p.envelope())),
        search,
        body: encode(FetchAttr::Body(p.structure())),
        bodystructure: encode(FetchAttr::BodyStructure(p.structure())),
    }
}

/// One message of a FETCH: its number, index data, octets and cached structure.
struct Msg<'a> {
    seq: u32,
    info: &'a MessageInfo,
    body: Option<&'a [u8]>,
    structure: Option<Entry<'a>>,
}

/// Sets `\Seen` on the targets without it; returns their UIDs.
fn mark_seen(folder: &mut shared::mailstore::Folder, targets: &[(u32, u32)]) -> HashSet<u32> {
    let unseen: Vec<u32> = targets
        .iter()
        .filter(|(_, uid)| {
            folder
                .message(*uid)
                .is_some_and(|m| !m.flags.contains(Flags::SEEN))
        })
        .map(|&(_, uid)| uid)
        .collect();
    if unseen.is_empty() {
        return HashSet::new();
    }
    match folder.store_flags(&unseen, StoreOp::Add, Flags::SEEN, &[], None) {
        Ok(o) => o.modified.into_iter().map(|(uid, _)| uid).collect(),
        Err(e) => {
            tracing::warn!(event = "imap.seen_failed", error = %e, "cannot set \\Seen");
            HashSet::new()
        }
    }
}

/// The octets of a message as stored, or its header alone (with the empty line after it);
/// `None` when it cannot be read. Reads with no `stat`, and the header in one `read` or few.
pub(super) fn read(
    folder: &mut shared::mailstore::Folder,
    info: &MessageInfo,
    header_only: bool,
) -> Option<Vec<u8>> {
    let uid = info.uid;
    let result = folder.open_message(uid).and_then(|f| {
        read_from(f, info.size, header_only).map_err(|e| shared::mailstore::Error::Io {
            path: folder.dir().join(&info.file),
            source: e,
        })
    });
    match result {
        Ok(data) => Some(data),
        Err(e) => {
            tracing::warn!(event = "imap.read_failed", uid, error = %e, "cannot read a message");
            None
        }
    }
}

/// The octets of an open message file, or its header alone, without a `stat` (`size`, the
/// index's, sizes the first read).
pub(super) fn read_from(
    mut f: std::fs::File,
    size: u64,
    header_only: bool,
) -> std::io::Result<Vec<u8>> {
    let first = if header_only {
        8192
    } else {
        usize::try_from(size)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    };
    let mut want = first.clamp(64, 1 << 24);
    let mut data = Vec::new();
    loop {
        let old = data.len();
        data.resize(old + want, 0);
        let n = loop {
            match f.read(&mut data[old..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let n = n?;
        data.truncate(old + n);
        if n == 0 {
            return Ok(data);
        }
        if header_only {
            let h = headertext::header_len(&data);
            if h < data.len() {
                data.truncate(h);
                return Ok(data);
            }
        }
        // A short read is most likely the end: probe with little, then grow.
        want = if n < want {
            64
        } else {
            want.saturating_mul(2).min(1 << 24)
        };
    }
}

/// `* seq FETCH (...)` for one message.
/// Writes the response; false when a BINARY item met an unknown transfer encoding (the item
/// is left out and the command ends `NO [UNKNOWN-CTE]`, RFC 3516 §4.3).
fn one(out: &mut Vec<u8>, enc: Encoding, msg: &Msg, items: &[FetchItem], flags_too: bool) -> bool {
    let (seq, info) = (msg.seq, msg.info);
    let keywords: Vec<&[u8]> = info.keywords.iter().map(|k| k.as_bytes()).collect();
    let flags = FetchAttr::Flags {
        system: SystemFlags(info.flags.bits()),
        keywords: &keywords,
    };
    let empty: &[u8] = b"";
    let raw = msg.body.unwrap_or(empty);
    let sections: Vec<Option<Vec<u8>>> = items.iter().map(|i| section_data(i, raw)).collect();
    let unknown_cte = items.iter().any(|i| match i {
        FetchItem::Binary { part, .. } | FetchItem::BinarySize(part) => {
            message::binary(raw, part).is_err()
        }
        _ => false,
    });
    let mut attrs = Vec::with_capacity(items.len() + 1);
    for (item, data) in items.iter().zip(&sections) {
        attrs.push(match item {
            FetchItem::Uid => FetchAttr::Uid(info.uid),
            FetchItem::Flags => flags.clone(),
            FetchItem::InternalDate => FetchAttr::InternalDate {
                unix: info.internal_date,
                zone_minutes: 0,
            },
            FetchItem::Rfc822Size => FetchAttr::Rfc822Size(info.vsize),
            FetchItem::ModSeq => FetchAttr::ModSeq(info.modseq),
            FetchItem::Envelope | FetchItem::Body | FetchItem::BodyStructure => {
                // Left out when the message could not be read.
                let encoded = match (msg.structure, item) {
                    (Some(e), FetchItem::Envelope) => e.envelope,
                    (Some(e), FetchItem::Body) => e.body,
                    (Some(e), _) => e.bodystructure,
                    (None, _) => continue,
                };
                if encoded.is_empty() {
                    continue;
                }
                FetchAttr::Encoded(encoded)
            }
            FetchItem::Binary { .. } | FetchItem::BinarySize(_) if unknown_cte => continue,
            other => data_attr(other, data.as_deref()),
        });
    }
    if flags_too {
        attrs.push(flags.clone());
    }
    Response::Data(Data::Fetch { seq, attrs: &attrs }).encode(out, enc);
    !unknown_cte
}

/// The octets of a body item, already cut to its partial range.
fn section_data(item: &FetchItem, raw: &[u8]) -> Option<Vec<u8>> {
    let (data, partial) = match item {
        FetchItem::Section {
            section, partial, ..
        } => (message::section(raw, section)?.into_owned(), *partial),
        FetchItem::Binary { part, partial, .. } => (message::binary(raw, part).ok()??, *partial),
        FetchItem::BinarySize(part) => (message::binary(raw, part).ok()??, None),
        FetchItem::Rfc822 => (raw.to_vec(), None),
        FetchItem::Rfc822Header => (raw[..message::header_end(raw)].to_vec(), None),
        FetchItem::Rfc822Text => (raw[message::header_end(raw)..].to_vec(), None),
        _ => return None,
    };
    Some(match partial {
        Some((start, len)) => {
            let start = (start as usize).min(data.len());
            let end = start.saturating_add(len as usize).min(data.len());
            data[start..end].to_vec()
        }
        None => data,
    })
}

fn data_attr<'a>(item: &'a FetchItem, data: Option<&'a [u8]>) -> FetchAttr<'a> {
    match item {
        FetchItem::Section {
            section, partial, ..
        } => FetchAttr::Section {
            section,
            origin: partial.map(|(o, _)| o),
            data,
        },
        FetchItem::Binary { part, partial, .. } => FetchAttr::Binary {
            part,
            origin: partial.map(|(o, _)| o),
            data,
        },
        FetchItem::BinarySize(part) => FetchAttr::BinarySize {
            part,
            size: data.map_or(0, |d| d.len() as u64),
        },
        FetchItem::Rfc822 => FetchAttr::Rfc822(data),
        FetchItem::Rfc822Header => FetchAttr::Rfc822Header(data),
        _ => FetchAttr::Rfc822Text(data),
    }
}

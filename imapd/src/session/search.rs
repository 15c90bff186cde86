//! SEARCH and UID SEARCH (RFC 9051 §6.4.4) with ESEARCH results (RFC 4731, RFC 9051
//! §7.3.4) and MODSEQ (RFC 7162 §3.1.5). Flag, size, date and set keys use the index; header
//! keys match the raw and the decoded (RFC 2047) values (`headertext.rs`), BODY and TEXT the
//! decoded text parts (charsets converted by `mail-parser`), case-insensitively. FROM, TO,
//! CC, BCC and SUBJECT (and HEADER on those) are answered from the folder's cache; a message
//! not in it yet has its header read once and cached. A message is read at most once per
//! SEARCH (its header, or all of it), and only when a key needs it.

use std::collections::HashMap;

use mail_parser::MessageParser;
use shared::mailstore::{Flags, MessageInfo};

use super::headertext::{self, Needle};
use super::message::header_end;
use super::selected::{Mailbox, ranges};
use super::write::days_from_civil;
use super::{Session, State, Step};
use crate::command::{Date, Search, SearchKey, SearchReturn, SeqNumber, SequenceSet};
use crate::response::{Code, Data, ESearch};

/// One message under evaluation, its file (or header) read on first need.
struct Candidate<'a> {
    seq: u32,
    info: &'a MessageInfo,
    /// The whole message as stored.
    raw: Option<Vec<u8>>,
    /// Its header as stored, when only that was read.
    header: Option<Vec<u8>>,
}

/// The lower-cased strings of a search's keys, prepared once.
type Needles = HashMap<Vec<u8>, Needle>;

impl Session {
    pub(super) fn search(&mut self, tag: &[u8], s: &Search) -> Step {
        if let Some(cs) = &s.charset
            && !matches!(cs.to_ascii_uppercase().as_str(), "UTF-8" | "US-ASCII")
        {
            return self.no(
                tag,
                Some(Code::BadCharset(&["UTF-8", "US-ASCII"])),
                "Unsupported charset",
            );
        }
        if unsupported(&s.key) {
            return self.finish_bad(tag, "Search key or option not supported");
        }
        let State::Selected(mb) = &mut self.state else {
            return Step::Next;
        };
        let (hits, modseq) = run(mb, &s.key);
        let ids: Vec<u32> = hits
            .iter()
            .map(|&(seq, uid)| if s.uid { uid } else { seq })
            .collect();
        let modseq = uses_modseq(&s.key).then_some(modseq);
        if s.returns
            .as_ref()
            .is_some_and(|r| r.contains(&SearchReturn::Save))
        {
            mb.saved = hits.iter().map(|&(_, uid)| uid).collect();
        }
        let returns = s
            .returns
            .clone()
            .or_else(|| self.enabled.rev2.then(Vec::new));
        match returns {
            None => self.data(Data::Search { ids: &ids, modseq }),
            // RFC 5182 §2.1: SAVE alone answers nothing but OK.
            Some(r) if r == [SearchReturn::Save] => {}
            Some(r) => self.esearch(tag, s.uid, &ids, &r, modseq),
        }
        self.updates(s.uid);
        self.done(tag)
    }

    /// RFC 4731 §3.1: an empty RETURN () means ALL.
    fn esearch(
        &mut self,
        tag: &[u8],
        uid: bool,
        ids: &[u32],
        r: &[SearchReturn],
        modseq: Option<u64>,
    ) {
        let all_ranges = ranges(ids);
        // RFC 4731 §3.1 / RFC 5182 §2.1: only SAVE or nothing means ALL.
        let only_save = r.iter().all(|x| *x == SearchReturn::Save);
        let want = |x| only_save && x == SearchReturn::All || r.contains(&x);
        let e = ESearch {
            tag: Some(tag),
            uid,
            min: want(SearchReturn::Min)
                .then(|| ids.first().copied())
                .flatten(),
            max: want(SearchReturn::Max)
                .then(|| ids.last().copied())
                .flatten(),
            count: want(SearchReturn::Count).then_some(ids.len() as u32),
            all: (want(SearchReturn::All) && !ids.is_empty()).then_some(&all_ranges[..]),
            modseq: modseq.filter(|_| !ids.is_empty()),
        };
        self.data(Data::ESearch(e));
    }
}

fn unsupported(key: &SearchKey) -> bool {
    match key {
        SearchKey::And(ks) => ks.iter().any(unsupported),
        SearchKey::Or(a, b) => unsupported(a) || unsupported(b),
        SearchKey::Not(k) => unsupported(k),
        SearchKey::Older(_) | SearchKey::Younger(_) => true,
        _ => false,
    }
}

fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::And(ks) => ks.iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::ModSeq { .. } => true,
        _ => false,
    }
}

/// The (sequence number, UID) of every match, and the highest modseq among them.
pub(super) fn run(mb: &mut Mailbox, key: &SearchKey) -> (Vec<(u32, u32)>, u64) {
    let mut needles = Needles::new();
    prepare(key, &mut needles);
    mb.cache.refresh();
    let mut hits = Vec::new();
    let mut highest = 0;
    let uids = mb.uids.clone();
    let ahead = reads_headers(key);
    for (i, &uid) in uids.iter().enumerate() {
        if ahead && i % PREFILL == 0 {
            let end = (i + PREFILL).min(uids.len());
            super::prefill::prefill(mb, &uids[i..end], false);
        }
        let Some(info) = mb.folder.message(uid).cloned() else {
            continue;
        };
        let mut c = Candidate {
            seq: i as u32 + 1,
            info: &info,
            raw: None,
            header: None,
        };
        if eval(mb, &mut c, key, &needles) {
            hits.push((c.seq, uid));
            highest = highest.max(info.modseq);
        }
    }
    mb.cache.save();
    (hits, highest)
}

/// Messages whose cache entries are made at once, ahead of their evaluation.
const PREFILL: usize = 1024;

/// Whether `key` reads the cached header texts of every message (then they are made ahead,
/// `prefill.rs`); not when a set may spare most messages that.
fn reads_headers(key: &SearchKey) -> bool {
    use SearchKey as K;
    match key {
        K::From(_) | K::To(_) | K::Cc(_) | K::Bcc(_) | K::Subject(_) => true,
        K::Header(name, _) => headertext::cached_index(name).is_some(),
        K::And(ks) => {
            ks.iter().any(reads_headers)
                && !ks.iter().any(|k| matches!(k, K::Uid(_) | K::Sequence(_)))
        }
        K::Or(a, _) => reads_headers(a),
        K::Not(k) => reads_headers(k),
        _ => false,
    }
}

fn prepare(key: &SearchKey, needles: &mut Needles) {
    use SearchKey as K;
    match key {
        K::And(ks) => ks.iter().for_each(|k| prepare(k, needles)),
        K::Or(a, b) => {
            prepare(a, needles);
            prepare(b, needles);
        }
        K::Not(k) => prepare(k, needles),
        K::From(s) | K::To(s) | K::Cc(s) | K::Bcc(s) | K::Subject(s) | K::Header(_, s) => {
            needles.entry(s.clone()).or_insert_with(|| Needle::new(s));
        }
        _ => {}
    }
}

fn eval(mb: &mut Mailbox, c: &mut Candidate, key: &SearchKey, n: &Needles) -> bool {
    use SearchKey as K;
    let flag = |f| c.info.flags.contains(f);
    match key {
        K::And(ks) => ks.iter().all(|k| eval(mb, c, k, n)),
        K::Or(a, b) => eval(mb, c, a, n) || eval(mb, c, b, n),
        K::Not(k) => !eval(mb, c, k, n),
        K::All | K::Old => true,
        K::New | K::Recent => false,
        K::Sequence(set) => in_set(mb, set, c.seq, false),
        K::Uid(set) => in_set(mb, set, c.info.uid, true),
        K::Answered => flag(Flags::ANSWERED),
        K::Deleted => flag(Flags::DELETED),
        K::Draft => flag(Flags::DRAFT),
        K::Flagged => flag(Flags::FLAGGED),
        K::Seen => flag(Flags::SEEN),
        K::Unanswered => !flag(Flags::ANSWERED),
        K::Undeleted => !flag(Flags::DELETED),
        K::Undraft => !flag(Flags::DRAFT),
        K::Unflagged => !flag(Flags::FLAGGED),
        K::Unseen => !flag(Flags::SEEN),
        K::Keyword(k) => has_keyword(c.info, k),
        K::Unkeyword(k) => !has_keyword(c.info, k),
        K::Larger(n) => c.info.vsize > *n,
        K::Smaller(n) => c.info.vsize < *n,
        K::ModSeq { modseq, .. } => c.info.modseq >= *modseq,
        K::Before(d) => day(c.info.internal_date) < epoch_day(d),
        K::On(d) => day(c.info.internal_date) == epoch_day(d),
        K::Since(d) => day(c.info.internal_date) >= epoch_day(d),
        K::SentBefore(d) => sent_day(mb, c).is_some_and(|s| s < epoch_day(d)),
        K::SentOn(d) => sent_day(mb, c).is_some_and(|s| s == epoch_day(d)),
        K::SentSince(d) => sent_day(mb, c).is_some_and(|s| s >= epoch_day(d)),
        K::From(s) => header_has(mb, c, b"from", s, n),
        K::To(s) => header_has(mb, c, b"to", s, n),
        K::Cc(s) => header_has(mb, c, b"cc", s, n),
        K::Bcc(s) => header_has(mb, c, b"bcc", s, n),
        K::Subject(s) => header_has(mb, c, b"subject", s, n),
        K::Header(name, s) => header_has(mb, c, name, s, n),
        K::Body(s) => text_has(mb, c, s, false),
        K::Text(s) => text_has(mb, c, s, true),
        K::Older(_) | K::Younger(_) => false,
    }
}

/// Whether `n` (a sequence number or a UID) is in `set`, without resolving the set per
/// message (a `SEARCH 1:* ...` over a large folder stays linear).
fn in_set(mb: &Mailbox, set: &SequenceSet, n: u32, uid: bool) -> bool {
    let SequenceSet::Ranges(ranges) = set else {
        return uid_of(mb, n, uid).is_some_and(|u| mb.saved.contains(&u));
    };
    let largest = if uid {
        mb.uids.last().copied().unwrap_or(0)
    } else {
        mb.uids.len() as u32
    };
    let value = |v: SeqNumber| match v {
        SeqNumber::Value(v) => v,
        SeqNumber::Largest => largest,
    };
    ranges
        .iter()
        .any(|&(a, b)| (value(a).min(value(b))..=value(a).max(value(b))).contains(&n))
}

fn uid_of(mb: &Mailbox, n: u32, uid: bool) -> Option<u32> {
    if uid {
        Some(n)
    } else {
        (n as usize)
            .checked_sub(1)
            .and_then(|i| mb.uids.get(i))
            .copied()
    }
}

fn has_keyword(info: &MessageInfo, k: &[u8]) -> bool {
    info.keywords
        .iter()
        .any(|w| w.as_bytes().eq_ignore_ascii_case(k))
}

fn day(unix: i64) -> i64 {
    unix.div_euclid(86_400)
}

fn epoch_day(d: &Date) -> i64 {
    days_from_civil(d.year.into(), d.month.into(), d.day.into())
}

/// The whole message as stored (empty when it cannot be read).
fn raw<'c>(mb: &mut Mailbox, c: &'c mut Candidate) -> &'c [u8] {
    if c.raw.is_none() {
        c.raw = Some(super::fetch::read(&mut mb.folder, c.info, false).unwrap_or_default());
        c.header = None;
    }
    c.raw.as_deref().unwrap_or_default()
}

/// The header as stored, read alone unless the whole message was.
fn header<'c>(mb: &mut Mailbox, c: &'c mut Candidate) -> &'c [u8] {
    if c.raw.is_none() && c.header.is_none() {
        c.header = Some(super::fetch::read(&mut mb.folder, c.info, true).unwrap_or_default());
    }
    match (&c.raw, &c.header) {
        (Some(raw), _) => &raw[..headertext::header_len(raw)],
        (None, Some(h)) => h,
        (None, None) => &[],
    }
}

/// RFC 9051 §6.4.4: the Date: header's date, "disregarding time and timezone".
fn sent_day(mb: &mut Mailbox, c: &mut Candidate) -> Option<i64> {
    let header = header(mb, c);
    let msg = MessageParser::default().parse_headers(header)?;
    let d = msg.date()?;
    Some(days_from_civil(d.year.into(), d.month.into(), d.day.into()))
}

fn lower(s: &[u8]) -> String {
    String::from_utf8_lossy(s).to_lowercase()
}

/// A header key (RFC 9051 §6.4.4; HEADER with an empty string matches any message with
/// the field): a raw or decoded value of a field of the name contains the string. The
/// fields the cache keeps come from it, and a message not in it is added (from its
/// header: the ENVELOPE is made too).
fn header_has(mb: &mut Mailbox, c: &mut Candidate, name: &[u8], s: &[u8], n: &Needles) -> bool {
    let prepared;
    let needle = match n.get(s) {
        Some(needle) => needle,
        None => {
            prepared = Needle::new(s);
            &prepared
        }
    };
    let Some(index) = headertext::cached_index(name) else {
        return needle.in_texts(&headertext::texts(header(mb, c), &[name]));
    };
    let uid = c.info.uid;
    if let Some(e) = mb.cache.get(uid) {
        return needle.in_stored(e.search, index);
    }
    let stored = header(mb, c);
    if stored.is_empty() {
        return false; // unreadable (or empty): nothing to match, nothing to cache
    }
    let search = headertext::encode(stored);
    let made = super::fetch::make_entry(&super::message::crlf(stored.to_vec()), search, false);
    let found = needle.in_stored(&made.search, index);
    mb.cache.put(uid, made.entry());
    found
}

/// BODY (text parts, decoded) or TEXT (also the header).
fn text_has(mb: &mut Mailbox, c: &mut Candidate, needle: &[u8], with_header: bool) -> bool {
    let raw = raw(mb, c);
    let needle = lower(needle);
    if with_header && lower(&raw[..header_end(raw)]).contains(&needle) {
        return true;
    }
    let Some(msg) = MessageParser::default().parse(raw) else {
        return false;
    };
    msg.parts.iter().any(|p| match p.text_contents() {
        Some(t) => t.to_lowercase().contains(&needle),
        None => false,
    })
}

//! SORT and UID SORT (RFC 5256 §3): the messages a search selects, ordered by ARRIVAL,
//! DATE, FROM, TO, CC, SIZE, SUBJECT (the base subject of §2.1, simplified: `Re:`, `Fw:`,
//! `Fwd:`, `[blob]` prefixes and a `(fwd)` trailer removed, case folded) and DISPLAYFROM /
//! DISPLAYTO (RFC 5957), each possibly REVERSE; ties by sequence number (§3).

use std::cmp::Ordering;
use std::io::Read;

use mail_parser::MessageParser;

use super::message::header_end;
use super::search::run;
use super::selected::Mailbox;
use super::write::days_from_civil;
use super::{Session, State, Step};
use crate::command::{Search, SortCriterion, SortKey};
use crate::response::Data;

/// The values a message is sorted by, one per criterion.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Number(i64),
    Text(String),
}

impl Session {
    pub(super) fn sort(&mut self, tag: &[u8], search: &Search, criteria: &[SortCriterion]) -> Step {
        if let Some(cs) = &search.charset
            && !matches!(cs.to_ascii_uppercase().as_str(), "UTF-8" | "US-ASCII")
        {
            let code = crate::response::Code::BadCharset(&["UTF-8", "US-ASCII"]);
            return self.no(tag, Some(code), "Unsupported charset");
        }
        let State::Selected(mb) = &mut self.state else {
            return Step::Next;
        };
        let (hits, _) = run(mb, &search.key);
        let mut keyed: Vec<(Vec<Value>, u32, u32)> = hits
            .into_iter()
            .map(|(seq, uid)| (values(mb, uid, criteria), seq, uid))
            .collect();
        keyed.sort_by(|a, b| compare(&a.0, &b.0, criteria).then(a.1.cmp(&b.1)));
        let ids: Vec<u32> = keyed
            .iter()
            .map(|k| if search.uid { k.2 } else { k.1 })
            .collect();
        self.data(Data::Sort {
            ids: &ids,
            modseq: None,
        });
        self.done(tag)
    }
}

fn compare(a: &[Value], b: &[Value], criteria: &[SortCriterion]) -> Ordering {
    for ((x, y), c) in a.iter().zip(b).zip(criteria) {
        let o = if c.reverse { y.cmp(x) } else { x.cmp(y) };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn values(mb: &mut Mailbox, uid: u32, criteria: &[SortCriterion]) -> Vec<Value> {
    let Some(info) = mb.folder.message(uid).cloned() else {
        return Vec::new();
    };
    let needs_header = criteria
        .iter()
        .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size));
    let mut raw = Vec::new();
    if needs_header && let Ok(f) = mb.folder.open_message(uid) {
        // The header is enough: read a bounded prefix.
        let _ = f.take(256 * 1024).read_to_end(&mut raw);
    }
    let header = &raw[..header_end(&raw)];
    let msg = MessageParser::default().parse_headers(header);
    criteria
        .iter()
        .map(|c| match (c.key, &msg) {
            (SortKey::Arrival, _) => Value::Number(info.internal_date),
            (SortKey::Size, _) => Value::Number(info.vsize as i64),
            (_, None) => Value::Text(String::new()),
            (SortKey::Date, Some(m)) => Value::Number(m.date().map_or(info.internal_date, |d| {
                let days = days_from_civil(d.year.into(), d.month.into(), d.day.into());
                let offset = i64::from(d.tz_hour) * 3600 + i64::from(d.tz_minute) * 60;
                let offset = if d.tz_before_gmt { -offset } else { offset };
                days * 86_400
                    + i64::from(d.hour) * 3600
                    + i64::from(d.minute) * 60
                    + i64::from(d.second)
                    - offset
            })),
            (SortKey::Subject, Some(m)) => {
                Value::Text(base_subject(m.subject().unwrap_or_default()))
            }
            (key, Some(m)) => Value::Text(address_key(m, key)),
        })
        .collect()
}

/// The mailbox (local part) of the first address, or its display name for DISPLAY*
/// (RFC 5256 §3, RFC 5957 §3), lower-cased.
fn address_key(m: &mail_parser::Message, key: SortKey) -> String {
    let list = match key {
        SortKey::From | SortKey::DisplayFrom => m.from(),
        SortKey::Cc => m.cc(),
        _ => m.to(),
    };
    let Some(first) = list.and_then(|l| l.first()) else {
        return String::new();
    };
    let address = first.address.as_deref().unwrap_or_default();
    let mailbox = address.split('@').next().unwrap_or_default();
    let text = match key {
        SortKey::DisplayFrom | SortKey::DisplayTo => first.name.as_deref().unwrap_or(address),
        _ => mailbox,
    };
    text.to_lowercase()
}

/// RFC 5256 §2.1 base subject, simplified (see the module documentation).
pub(super) fn base_subject(subject: &str) -> String {
    let mut s = subject
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    loop {
        let before = s.len();
        if let Some(rest) = s.strip_suffix("(fwd)") {
            s = rest.trim_end().to_string();
        }
        for prefix in ["re:", "fw:", "fwd:"] {
            if let Some(rest) = s.strip_prefix(prefix) {
                s = rest.trim_start().to_string();
            }
        }
        if s.starts_with('[')
            && let Some(end) = s.find(']')
            && end + 1 < s.len()
        {
            s = s[end + 1..].trim_start().to_string();
        }
        if s.len() == before {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::base_subject;

    #[test]
    fn base_subjects() {
        assert_eq!(
            base_subject("Re: [list] Fwd:  Hello  World (fwd)"),
            "hello world"
        );
        assert_eq!(base_subject("[only]"), "[only]");
        assert_eq!(base_subject("RE: re: x"), "x");
    }
}

//! Reading the IMAP state Dovecot leaves beside a Maildir, so that a mailbox migrated from
//! Postfix+Dovecot keeps its UIDVALIDITY and UIDs (and so its POP3 UIDLs) and its keywords:
//! `dovecot-uidlist` (version 3) and `dovecot-keywords`. Read-only: Postern never writes
//! Dovecot's files. Anything unreadable means "no seed", logged.

use std::collections::HashMap;
use std::path::Path;

use super::base_of;

pub const UIDLIST_FILE: &str = "dovecot-uidlist";
pub const KEYWORDS_FILE: &str = "dovecot-keywords";

/// What a `dovecot-uidlist` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uidlist {
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// Maildir base name → UID.
    pub uids: HashMap<String, u32>,
}

/// Reads `dir/dovecot-uidlist`; `None` when absent or not a version 3 list.
pub fn read_uidlist(dir: &Path) -> Option<Uidlist> {
    let path = dir.join(UIDLIST_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    let parsed = parse_uidlist(&text);
    if parsed.is_none() {
        tracing::warn!(event = "mailstore.dovecot_uidlist", file = %path.display(), "unreadable dovecot-uidlist (only version 3 is read); UIDs start afresh");
    }
    parsed
}

/// Version 3: a header `3 V<uidvalidity> N<nextuid> [G<guid>] ...`, then one line per
/// message `<uid> [extension fields] :<file name>`.
pub fn parse_uidlist(text: &str) -> Option<Uidlist> {
    let mut lines = text.lines();
    let mut header = lines.next()?.split(' ');
    if header.next()? != "3" {
        return None;
    }
    let (mut uidvalidity, mut uidnext) = (None, None);
    for field in header {
        if let Some(v) = field.strip_prefix('V') {
            uidvalidity = v.parse::<u32>().ok();
        } else if let Some(n) = field.strip_prefix('N') {
            uidnext = n.parse::<u32>().ok();
        }
    }
    let mut uids = HashMap::new();
    let mut highest = 0;
    for line in lines {
        let Some((fields, name)) = line.split_once(':') else {
            continue;
        };
        let Some(uid) = fields
            .split(' ')
            .next()
            .and_then(|u| u.parse::<u32>().ok())
            .filter(|&u| u > 0)
        else {
            continue;
        };
        highest = highest.max(uid);
        uids.insert(base_of(name).to_string(), uid);
    }
    Some(Uidlist {
        uidvalidity: uidvalidity.filter(|&v| v > 0)?,
        uidnext: uidnext.unwrap_or(1).max(highest.saturating_add(1)),
        uids,
    })
}

/// `dir/dovecot-keywords`: the keyword for each letter of a file name's info (`a` is
/// index 0); empty when absent.
pub fn read_keywords(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(KEYWORDS_FILE))
        .map(|t| parse_keywords(&t))
        .unwrap_or_default()
}

/// Lines `<index> <keyword>`, index 0..26.
pub fn parse_keywords(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((index, keyword)) = line.split_once(' ') else {
            continue;
        };
        let Some(i) = index.parse::<usize>().ok().filter(|&i| i < 26) else {
            continue;
        };
        if keyword.is_empty() {
            continue;
        }
        if out.len() <= i {
            out.resize(i + 1, String::new());
        }
        out[i] = keyword.to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_version_3_uidlist() {
        let text = "3 V1700000000 N12 G3085f01b8a6d5a65d9440000f3e8a3a1\n\
                    5 :1700000001.M1P2.host,S=10,W=11\n\
                    7 W1234 S1200 G0123 :1700000002.M3P4.host,S=1200,W=1234:2,S\n\
                    bogus line\n";
        let list = parse_uidlist(text).unwrap();
        assert_eq!(list.uidvalidity, 1_700_000_000);
        assert_eq!(list.uidnext, 12);
        assert_eq!(list.uids["1700000001.M1P2.host,S=10,W=11"], 5);
        assert_eq!(list.uids["1700000002.M3P4.host,S=1200,W=1234"], 7);
        assert_eq!(list.uids.len(), 2);
    }

    #[test]
    fn uidnext_is_past_every_listed_uid_and_other_versions_are_refused() {
        let list = parse_uidlist("3 V9 N2\n40 :a\n").unwrap();
        assert_eq!(list.uidnext, 41);
        assert!(parse_uidlist("1 9 2\n1 S a\n").is_none());
        assert!(parse_uidlist("3 N2\n").is_none());
        assert!(parse_uidlist("").is_none());
    }

    #[test]
    fn keywords_by_index() {
        let kw = parse_keywords("0 $Forwarded\n2 Work\nx junk\n99 far\n");
        assert_eq!(kw, ["$Forwarded", "", "Work"]);
    }
}

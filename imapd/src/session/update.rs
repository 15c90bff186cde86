//! Telling the client what changed in its selected mailbox (RFC 9051 §7.5.1, §5.2): after
//! each command the folder is refreshed and EXPUNGE, EXISTS and FETCH FLAGS are sent for
//! the changes of other sessions and the MDA. EXPUNGE only where the rules allow it (not
//! while answering FETCH, STORE or SEARCH by sequence number, RFC 3501 §7.4.1).

use crate::response::{Data, Encoding, FetchAttr, Response, SystemFlags};

use super::selected::Mailbox;
use super::{Session, State, Step};

impl Session {
    /// Refreshes the selected folder and announces what changed; `allow_expunge` false
    /// holds EXPUNGEs back (the sequence map keeps the UIDs until a later command).
    pub(super) fn updates(&mut self, allow_expunge: bool) {
        let enc = self.encoding();
        let (condstore, qresync) = (self.enabled.condstore, self.enabled.qresync);
        let State::Selected(mb) = &mut self.state else {
            return;
        };
        match mb.folder.refresh() {
            Ok(changes) => {
                mb.changed.extend(changes.flags);
                mb.maybe_expunged |= !changes.expunged.is_empty();
                if changes.uidvalidity_changed {
                    tracing::warn!(
                        event = "imap.uidvalidity_changed",
                        "UIDVALIDITY changed under a session"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(event = "imap.refresh_failed", error = %e, "cannot refresh the folder");
                return;
            }
        }
        let out = &mut self.out;
        if allow_expunge && mb.maybe_expunged {
            announce_expunges(mb, out, enc, qresync);
        }
        announce_new(mb, out, enc);
        announce_flags(mb, out, enc, condstore);
    }
}

/// EXPUNGE from the highest sequence number down, so each number is valid when sent; or
/// one VANISHED under QRESYNC (RFC 7162 §3.2.10).
fn announce_expunges(mb: &mut Mailbox, out: &mut Vec<u8>, enc: Encoding, qresync: bool) {
    mb.maybe_expunged = false;
    let mut vanished = Vec::new();
    for i in (0..mb.uids.len()).rev() {
        if mb.folder.message(mb.uids[i]).is_none() {
            vanished.push(mb.uids.remove(i));
            if !qresync {
                Response::Data(Data::Expunge(i as u32 + 1)).encode(out, enc);
            }
        }
    }
    if qresync && !vanished.is_empty() {
        super::qresync::vanished_now(&mut vanished, out, enc);
    }
}

fn announce_new(mb: &mut Mailbox, out: &mut Vec<u8>, enc: Encoding) {
    let last = mb.uids.last().copied().unwrap_or(0);
    let messages = mb.folder.messages();
    let start = messages.partition_point(|m| m.uid <= last);
    if start < messages.len() {
        mb.uids.extend(messages[start..].iter().map(|m| m.uid));
        Response::Data(Data::Exists(mb.uids.len() as u32)).encode(out, enc);
    }
}

fn announce_flags(mb: &mut Mailbox, out: &mut Vec<u8>, enc: Encoding, condstore: bool) {
    for uid in std::mem::take(&mut mb.changed) {
        let (Some(seq), Some(m)) = (mb.seq_of(uid), mb.folder.message(uid)) else {
            continue;
        };
        let keywords: Vec<&[u8]> = m.keywords.iter().map(|k| k.as_bytes()).collect();
        let mut attrs = vec![
            FetchAttr::Flags {
                system: SystemFlags(m.flags.bits()),
                keywords: &keywords,
            },
            FetchAttr::Uid(uid),
        ];
        if condstore {
            attrs.push(FetchAttr::ModSeq(m.modseq));
        }
        Response::Data(Data::Fetch { seq, attrs: &attrs }).encode(out, enc);
    }
}

impl Session {
    /// IDLE (RFC 2177 §3): pending updates now, then more whenever the io layer sees the
    /// folder's files change.
    pub(super) fn idle(&mut self, tag: Vec<u8>) -> Step {
        self.pending_tag = tag;
        Step::Idle
    }

    /// The folder's files changed (or a periodic check): announce what is new. Blocking.
    pub fn idle_poll(&mut self) {
        self.updates(true);
    }

    /// The line that ends IDLE: `DONE` (any case), else `BAD`.
    pub fn idle_done(&mut self, line: &[u8]) -> Step {
        let tag = std::mem::take(&mut self.pending_tag);
        if !line.eq_ignore_ascii_case(b"DONE") {
            return self.finish_bad(&tag, "Expected DONE");
        }
        self.updates(true);
        self.ok(&tag, None, "IDLE terminated");
        Step::Next
    }
}

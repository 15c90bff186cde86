//! The commands that change messages, and the routing of the selected-state commands:
//! STORE (RFC 9051 §6.4.6, UNCHANGEDSINCE RFC 7162 §3.1.3), EXPUNGE and UID EXPUNGE
//! (RFC 9051 §6.4.3, RFC 4315 §2.1), APPEND (RFC 9051 §6.3.12, APPENDUID RFC 4315 §3,
//! APPENDLIMIT RFC 7889), COPY and MOVE (RFC 9051 §6.4.7, RFC 6851, COPYUID RFC 4315 §3).
//! Every write is durable in the mailstore before the tagged OK.

use shared::mailstore::{Flags, StoreOp};

use super::fetch::FetchArgs;
use super::selected::{Mailbox, ranges};
use super::{Session, State, Step};
use crate::command::{Append, CommandBody, DateTime, SequenceSet, StoreMode};
use crate::response::{Code, Data, Encoding, FetchAttr, Response, SystemFlags};

impl Session {
    pub(super) fn message_command(&mut self, tag: Vec<u8>, body: CommandBody) -> Step {
        use CommandBody as C;
        match body {
            C::Append(append) => self.append(&tag, append),
            C::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => {
                let args = FetchArgs {
                    uid,
                    changed_since,
                    vanished,
                };
                self.fetch(&tag, &set, items, args)
            }
            C::Store {
                uid,
                set,
                unchanged_since,
                mode,
                silent,
                flags,
            } => {
                let args = StoreArgs {
                    uid,
                    unchanged_since,
                    mode,
                    silent,
                };
                self.store_cmd(&tag, &set, &flags, args)
            }
            C::Expunge { uids } => self.expunge(&tag, uids.as_ref()),
            C::Copy { uid, set, mailbox } => self.copy(&tag, uid, &set, &mailbox, false),
            C::Move { uid, set, mailbox } => self.copy(&tag, uid, &set, &mailbox, true),
            C::Search(search) => self.search(&tag, &search),
            _ => self.finish_bad(&tag, "Command not supported"),
        }
    }

    fn read_only(&mut self, tag: &[u8]) -> Option<Step> {
        match &self.state {
            State::Selected(mb) if mb.read_only => {
                Some(self.no(tag, Some(Code::ReadOnly), "Mailbox is read-only"))
            }
            _ => None,
        }
    }

    fn store_cmd(
        &mut self,
        tag: &[u8],
        set: &SequenceSet,
        flags: &[Vec<u8>],
        a: StoreArgs,
    ) -> Step {
        if let Some(step) = self.read_only(tag) {
            return step;
        }
        let Some((system, keywords)) = parse_flags(flags) else {
            return self.finish_bad(tag, "Invalid flag");
        };
        if a.unchanged_since.is_some() {
            self.enabled.condstore = true;
        }
        let (enc, condstore) = (self.encoding(), self.enabled.condstore);
        let Session { state, out, .. } = self;
        let State::Selected(mb) = state else {
            return Step::Next;
        };
        let Ok(targets) = mb.resolve(set, a.uid) else {
            return self.finish_bad(tag, "Invalid message sequence number");
        };
        let uids: Vec<u32> = targets.iter().map(|&(_, u)| u).collect();
        let op = match a.mode {
            StoreMode::Add => StoreOp::Add,
            StoreMode::Remove => StoreOp::Remove,
            StoreMode::Replace => StoreOp::Replace,
        };
        // RFC 7162 §3.1.3: messages changed since are left alone and named in MODIFIED.
        let outcome = match mb
            .folder
            .store_flags(&uids, op, system, &keywords, a.unchanged_since)
        {
            Ok(o) => o,
            Err(e) => return self.store_error(tag, &e),
        };
        // RFC 9051 §6.4.6: the flags of every message of the set unless .SILENT (except
        // those UNCHANGEDSINCE kept); RFC 7162 §3.1.3: MODSEQ of the changed ones even then.
        if !a.silent {
            let kept: std::collections::HashSet<u32> = outcome.conflicts.iter().copied().collect();
            let all: Vec<u32> = uids.iter().copied().filter(|u| !kept.contains(u)).collect();
            report_flags(mb, out, enc, &all, &a, condstore);
        } else if condstore {
            let changed: Vec<u32> = outcome.modified.iter().map(|&(uid, _)| uid).collect();
            report_flags(mb, out, enc, &changed, &a, condstore);
        }
        let conflicts: Vec<u32> = if a.uid {
            outcome.conflicts.clone()
        } else {
            outcome
                .conflicts
                .iter()
                .filter_map(|&u| mb.seq_of(u))
                .collect()
        };
        self.updates(a.uid);
        if conflicts.is_empty() {
            return self.done(tag);
        }
        let set = ranges(&conflicts);
        self.ok(tag, Some(Code::Modified(&set)), "Conditional STORE failed");
        Step::Next
    }

    fn expunge(&mut self, tag: &[u8], uids: Option<&SequenceSet>) -> Step {
        if let Some(step) = self.read_only(tag) {
            return step;
        }
        let State::Selected(mb) = &mut self.state else {
            return Step::Next;
        };
        let allowed = match uids {
            Some(set) => match mb.resolve(set, true) {
                Ok(t) => Some(t.into_iter().map(|(_, u)| u).collect::<Vec<_>>()),
                Err(_) => return self.finish_bad(tag, "Invalid UID set"),
            },
            None => None,
        };
        let deleted: Vec<u32> = mb
            .folder
            .messages()
            .iter()
            .filter(|m| m.flags.contains(Flags::DELETED))
            .filter(|m| {
                allowed
                    .as_ref()
                    .is_none_or(|a| a.binary_search(&m.uid).is_ok())
            })
            .map(|m| m.uid)
            .collect();
        if let Err(e) = mb.folder.expunge(&deleted) {
            return self.store_error(tag, &e);
        }
        mb.maybe_expunged = true;
        self.updates(true);
        self.done(tag)
    }

    fn append(&mut self, tag: &[u8], a: Append) -> Step {
        if a.message.len() as u64 > self.cfg.append_limit {
            return self.no(tag, Some(Code::TooBig), "Message too large"); // RFC 7889 §4
        }
        let Some(name) = self.decode_name(&a.mailbox) else {
            return self.finish_bad(tag, "Invalid mailbox name encoding");
        };
        let Some((flags, keywords)) = parse_flags(&a.flags) else {
            return self.finish_bad(tag, "Invalid flag");
        };
        let date = a.date.map(unix_time);
        let appended = self
            .store()
            .and_then(|s| s.open_folder(&name))
            .and_then(|mut f| {
                let uid = f.append(&a.message, flags, &keywords, date)?;
                Ok((f.uidvalidity(), uid))
            });
        let (uid_validity, uid) = match appended {
            Ok(v) => v,
            Err(shared::mailstore::Error::NoSuchFolder) => {
                return self.no(tag, Some(Code::TryCreate), "No such mailbox"); // RFC 9051 §6.3.12
            }
            Err(e) => return self.store_error(tag, &e),
        };
        self.updates(true);
        let code = Code::AppendUid {
            uid_validity,
            uids: &[(uid, uid)],
        };
        self.ok(tag, Some(code), "APPEND completed");
        Step::Next
    }

    fn copy(
        &mut self,
        tag: &[u8],
        uid: bool,
        set: &SequenceSet,
        raw: &[u8],
        is_move: bool,
    ) -> Step {
        if is_move && let Some(step) = self.read_only(tag) {
            return step;
        }
        let Some(name) = self.decode_name(raw) else {
            return self.finish_bad(tag, "Invalid mailbox name encoding");
        };
        let mut dest = match self.store().and_then(|s| s.open_folder(&name)) {
            Ok(f) => f,
            Err(shared::mailstore::Error::NoSuchFolder) => {
                return self.no(tag, Some(Code::TryCreate), "No such mailbox");
            }
            Err(e) => return self.store_error(tag, &e),
        };
        let State::Selected(mb) = &mut self.state else {
            return Step::Next;
        };
        let Ok(targets) = mb.resolve(set, uid) else {
            return self.finish_bad(tag, "Invalid message sequence number");
        };
        let uids: Vec<u32> = targets.iter().map(|&(_, u)| u).collect();
        let pairs = match mb.folder.copy_to(&uids, &mut dest) {
            Ok(p) => p,
            Err(e) => return self.store_error(tag, &e),
        };
        if is_move {
            let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            if let Err(e) = mb.folder.expunge(&moved) {
                return self.store_error(tag, &e);
            }
            mb.maybe_expunged = true;
        }
        self.copied(tag, uid, &pairs, dest.uidvalidity(), is_move)
    }

    /// COPYUID (RFC 4315 §3): in the tagged OK of COPY; for MOVE in an untagged OK before
    /// the EXPUNGEs (RFC 6851 §4.3). None when nothing was copied.
    fn copied(
        &mut self,
        tag: &[u8],
        uid: bool,
        pairs: &[(u32, u32)],
        uid_validity: u32,
        is_move: bool,
    ) -> Step {
        let source = ranges(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
        let destination = ranges(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
        let code = (!pairs.is_empty()).then_some(Code::CopyUid {
            uid_validity,
            source: &source,
            destination: &destination,
        });
        if is_move {
            if code.is_some() {
                self.untagged(crate::response::Untagged::Ok, code, "Moved");
            }
            self.updates(true);
            return self.done(tag);
        }
        self.updates(uid);
        self.ok(tag, code, "COPY completed");
        Step::Next
    }
}

/// `* n FETCH (FLAGS … UID … MODSEQ …)` for the messages a STORE changed.
fn report_flags(
    mb: &Mailbox,
    out: &mut Vec<u8>,
    enc: Encoding,
    uids: &[u32],
    a: &StoreArgs,
    condstore: bool,
) {
    for &uid in uids {
        let (Some(seq), Some(m)) = (mb.seq_of(uid), mb.folder.message(uid)) else {
            continue;
        };
        let kw: Vec<&[u8]> = m.keywords.iter().map(|k| k.as_bytes()).collect();
        let mut attrs = Vec::new();
        if !a.silent {
            attrs.push(FetchAttr::Flags {
                system: SystemFlags(m.flags.bits()),
                keywords: &kw,
            });
        }
        if a.uid {
            attrs.push(FetchAttr::Uid(uid));
        }
        if condstore {
            attrs.push(FetchAttr::ModSeq(m.modseq));
        }
        Response::Data(Data::Fetch { seq, attrs: &attrs }).encode(out, enc);
    }
}

pub(super) struct StoreArgs {
    uid: bool,
    unchanged_since: Option<u64>,
    mode: StoreMode,
    silent: bool,
}

/// System flags and keywords from a flag list (RFC 9051 §9 flag); `\Recent` and other
/// backslash words are refused.
pub(super) fn parse_flags(list: &[Vec<u8>]) -> Option<(Flags, Vec<String>)> {
    let (mut flags, mut keywords) = (Flags::EMPTY, Vec::new());
    for raw in list {
        let text = std::str::from_utf8(raw).ok()?;
        if let Some(f) = Flags::from_imap_name(text) {
            flags = flags.union(f);
        } else if text.starts_with('\\') {
            return None;
        } else if !keywords
            .iter()
            .any(|k: &String| k.eq_ignore_ascii_case(text))
        {
            keywords.push(text.to_string());
        }
    }
    Some((flags, keywords))
}

/// An APPEND date-time as seconds since the epoch.
pub(super) fn unix_time(d: DateTime) -> i64 {
    let days = days_from_civil(d.date.year.into(), d.date.month.into(), d.date.day.into());
    let secs =
        days * 86_400 + i64::from(d.hour) * 3600 + i64::from(d.minute) * 60 + i64::from(d.second);
    secs - i64::from(d.zone_minutes) * 60
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

//! Commands on mailboxes as a whole (RFC 9051 §6.3): SELECT/EXAMINE, CREATE, DELETE, RENAME,
//! SUBSCRIBE/UNSUBSCRIBE, LIST (with LIST-EXTENDED RFC 5258, SPECIAL-USE RFC 6154,
//! LIST-STATUS RFC 5819), LSUB, STATUS (with STATUS=SIZE RFC 8438 and HIGHESTMODSEQ
//! RFC 7162), CLOSE and UNSELECT (RFC 3691). Names: modified UTF-7 on the wire unless
//! UTF8=ACCEPT is enabled (RFC 6855 §3), UTF-8 with `/` in the mailstore.

use shared::mailstore::{Error, Folder, FolderEntry, SpecialUse, names};

use super::selected::Mailbox;
use super::{Session, State, Step};
use crate::command::{CommandBody, ListCommand, ListReturn, ListSelect, StatusItem};
use crate::response::{Code, Data, StatusValue, Untagged};

/// The flags every folder takes (RFC 9051 §7.3.5); keywords are allowed too (`\*`).
const FLAGS: &[&[u8]] = &[
    b"\\Answered",
    b"\\Flagged",
    b"\\Deleted",
    b"\\Seen",
    b"\\Draft",
];
const PERMANENT: &[&[u8]] = &[
    b"\\Answered",
    b"\\Flagged",
    b"\\Deleted",
    b"\\Seen",
    b"\\Draft",
    b"\\*",
];

impl Session {
    pub(super) fn mailbox_command(&mut self, tag: Vec<u8>, body: CommandBody) -> Step {
        use CommandBody as C;

        match body {
            C::Select {
                mailbox,
                read_only,
                condstore,
                qresync,
            } => self.select(&tag, &mailbox, read_only, condstore, qresync),
            C::Create {
                mailbox,
                special_use,
            } => self.create(&tag, &mailbox, &special_use),
            C::Delete(mailbox) => {
                self.with_name(&tag, &mailbox, |s, n| s.store()?.delete_folder(n))
            }
            C::Rename { from, to } => self.rename(&tag, &from, &to),
            C::Subscribe(m) => self.with_name(&tag, &m, |s, n| s.store()?.subscribe(n, true)),
            C::Unsubscribe(m) => self.with_name(&tag, &m, |s, n| s.store()?.subscribe(n, false)),
            C::List(list) => self.list(&tag, &list),
            C::Lsub { reference, pattern } => self.lsub(&tag, &reference, &pattern),
            C::Status { mailbox, items } => self.status(&tag, &mailbox, &items),
            C::Close => self.close(&tag),
            C::Unselect => {
                self.state = State::Auth;
                self.done(&tag)
            }
            body => self.message_command(tag, body),
        }
    }

    pub(super) fn store(&self) -> Result<&shared::mailstore::Store, Error> {
        self.store.as_ref().ok_or(Error::NoSuchFolder)
    }

    /// A mailbox name from the wire as the mailstore's UTF-8 name (RFC 6855 §3, RFC 9051
    /// §5.1.3); `None` when it is neither.
    pub(super) fn decode_name(&self, raw: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(raw).ok()?;
        let name = if self.encoding().utf8 || !text.is_ascii() {
            text.to_string()
        } else {
            names::decode_mutf7(text)?
        };
        Some(names::normalize(name.trim_end_matches(names::DELIMITER)))
    }

    pub(super) fn encode_name(&self, name: &str) -> Vec<u8> {
        if self.encoding().utf8 {
            name.as_bytes().to_vec()
        } else {
            names::encode_mutf7(name).into_bytes()
        }
    }

    /// The tagged reply to a mailstore error (RFC 5530 codes).
    pub(super) fn store_error(&mut self, tag: &[u8], e: &Error) -> Step {
        let code = match e {
            Error::NoSuchFolder => Code::NonExistent,
            Error::FolderExists => Code::AlreadyExists,
            Error::BadName(_) | Error::Inbox(_) | Error::BadAddress(_) => Code::Cannot,
            Error::NoSuchMessage(_) => Code::ExpungeIssued,
            e if e.is_no_space() => Code::OverQuota,
            _ => {
                tracing::error!(event = "imap.store_error", error = %e, "mailstore failure");
                Code::ServerBug
            }
        };
        let text = e.to_string();
        self.no(tag, Some(code), &text)
    }

    fn with_name(
        &mut self,
        tag: &[u8],
        raw: &[u8],
        op: impl FnOnce(&Session, &str) -> Result<(), Error>,
    ) -> Step {
        let Some(name) = self.decode_name(raw) else {
            return self.finish_bad(tag, "Invalid mailbox name encoding");
        };
        match op(self, &name) {
            Ok(()) => self.done(tag),
            Err(e) => self.store_error(tag, &e),
        }
    }

    fn rename(&mut self, tag: &[u8], from: &[u8], to: &[u8]) -> Step {
        let Some(to) = self.decode_name(to) else {
            return self.finish_bad(tag, "Invalid mailbox name encoding");
        };
        self.with_name(tag, from, |s, from| s.store()?.rename_folder(from, &to))
    }

    /// RFC 6154 §3: CREATE with USE; an unknown attribute is `NO [USEATTR]`.
    fn create(&mut self, tag: &[u8], raw: &[u8], special_use: &[String]) -> Step {
        let mut use_ = None;
        for attr in special_use {
            match SpecialUse::from_attribute(attr) {
                Some(u) => use_ = Some(u),
                None => return self.no(tag, Some(Code::UseAttr), "Unsupported special-use"),
            }
        }
        self.with_name(tag, raw, |s, n| create_with_parents(s.store()?, n, use_))
    }

    /// SELECT / EXAMINE (RFC 9051 §6.3.2): any selected mailbox is closed first, without
    /// expunging (RFC 9051 §6.3.2, `* OK [CLOSED]` per RFC 7162 §3.2.11).
    fn select(
        &mut self,
        tag: &[u8],
        raw: &[u8],
        read_only: bool,
        condstore: bool,
        qresync: Option<crate::command::QResync>,
    ) -> Step {
        if qresync.is_some() && !self.enabled.qresync {
            return self.finish_bad(tag, "QRESYNC is not enabled"); // RFC 7162 §3.2.5
        }
        if matches!(self.state, State::Selected(_)) {
            self.state = State::Auth;
            self.untagged(Untagged::Ok, Some(Code::Closed), "Previous mailbox closed");
        }
        let Some(name) = self.decode_name(raw) else {
            return self.finish_bad(tag, "Invalid mailbox name encoding");
        };
        // sync: also takes in files outside programs put in new/ and cur/.
        let opened = self.store().and_then(|s| s.open_folder(&name));
        let folder = match opened.and_then(|mut f| f.sync().map(|_| f)) {
            Ok(f) => f,
            Err(e) => return self.store_error(tag, &e),
        };
        self.enabled.condstore |= condstore;
        self.select_responses(&folder, read_only);
        let mb = Mailbox::new(folder, read_only);
        if let Some(q) = &qresync {
            let enc = self.encoding();
            super::qresync::select_resync(&mb, q, &mut self.out, enc);
        }
        self.state = State::Selected(Box::new(mb));
        let code = Some(if read_only {
            Code::ReadOnly
        } else {
            Code::ReadWrite
        });
        self.ok(tag, code, "Selected");
        Step::Next
    }

    fn select_responses(&mut self, folder: &Folder, read_only: bool) {
        // The system flags and the keywords in use (RFC 9051 §7.3.5).
        let keywords: std::collections::BTreeSet<&str> = folder
            .messages()
            .iter()
            .flat_map(|m| m.keywords.iter().map(String::as_str))
            .collect();
        let mut flags: Vec<&[u8]> = FLAGS.to_vec();
        flags.extend(keywords.iter().map(|k| k.as_bytes()));
        self.data(Data::Flags(&flags));
        self.data(Data::Exists(folder.messages().len() as u32));
        if !self.enabled.rev2 {
            self.data(Data::Recent(0));
        }
        let ok = Untagged::Ok;
        self.untagged(
            ok,
            Some(Code::UidValidity(folder.uidvalidity())),
            "UIDs valid",
        );
        self.untagged(
            ok,
            Some(Code::UidNext(folder.uidnext())),
            "Predicted next UID",
        );
        let permanent: &[&[u8]] = if read_only { &[] } else { PERMANENT };
        self.untagged(ok, Some(Code::PermanentFlags(permanent)), "Flags permitted");
        if self.enabled.condstore {
            let code = Code::HighestModSeq(folder.highest_modseq());
            self.untagged(ok, Some(code), "Highest");
        }
    }

    /// CLOSE (RFC 9051 §6.4.1): expunges `\Deleted` silently when read-write.
    fn close(&mut self, tag: &[u8]) -> Step {
        let State::Selected(mb) = std::mem::replace(&mut self.state, State::Auth) else {
            return self.done(tag);
        };
        let mut mb = *mb;
        if !mb.read_only {
            let deleted: Vec<u32> = mb
                .folder
                .messages()
                .iter()
                .filter(|m| m.flags.contains(shared::mailstore::Flags::DELETED))
                .map(|m| m.uid)
                .collect();
            if let Err(e) = mb.folder.expunge(&deleted) {
                return self.store_error(tag, &e);
            }
        }
        self.done(tag)
    }

    /// STATUS (RFC 9051 §6.3.11) of any folder; the selected one answers from its handle.
    fn status(&mut self, tag: &[u8], raw: &[u8], items: &[StatusItem]) -> Step {
        let Some(name) = self.decode_name(raw) else {
            return self.finish_bad(tag, "Invalid mailbox name encoding");
        };
        match self.status_values(&name, items) {
            Ok(values) => {
                let mailbox = self.encode_name(&name);
                self.data(Data::Status {
                    mailbox: &mailbox,
                    items: &values,
                });
                self.done(tag)
            }
            Err(e) => self.store_error(tag, &e),
        }
    }

    fn status_values(
        &mut self,
        name: &str,
        items: &[StatusItem],
    ) -> Result<Vec<StatusValue>, Error> {
        if let State::Selected(mb) = &mut self.state
            && mb.folder.name() == name
        {
            // What changed is kept for the next announcement, not lost here.
            let changes = mb.folder.refresh()?;
            mb.changed.extend(changes.flags);
            mb.maybe_expunged |= !changes.expunged.is_empty();
            return Ok(values(&mb.folder, items, self.cfg.append_limit));
        }
        let folder = self.store()?.open_folder(name)?;
        Ok(values(&folder, items, self.cfg.append_limit))
    }

    fn list(&mut self, tag: &[u8], cmd: &ListCommand) -> Step {
        if cmd.patterns.len() == 1 && cmd.patterns[0].is_empty() && cmd.selection.is_empty() {
            // RFC 9051 §6.3.9: the delimiter and root.
            self.data(Data::List {
                lsub: false,
                attributes: &["\\Noselect"],
                delimiter: Some(b'/'),
                mailbox: b"",
                extended: &[],
            });
            return self.done(tag);
        }
        let entries = match self.store().and_then(|s| s.list_folders()) {
            Ok(e) => e,
            Err(e) => return self.store_error(tag, &e),
        };
        let Some(patterns) = self.patterns(&cmd.reference, &cmd.patterns) else {
            return self.finish_bad(tag, "Invalid mailbox name encoding");
        };
        let options = ListOptions::of(cmd);
        for entry in &entries {
            if !patterns.iter().any(|p| matches(p, &entry.name)) || !options.selects(entry) {
                continue;
            }
            self.list_entry(entry, &entries, &options, false);
            if let Some(items) = &options.status {
                self.list_status(&entry.name, items);
            }
        }
        if options.only_subscribed {
            self.list_missing(&entries, &patterns, false);
        }
        self.done(tag)
    }

    /// Subscribed names without a folder: `\NonExistent` in LIST (SUBSCRIBED) (RFC 5258
    /// §3.1), `\Noselect` in LSUB (RFC 3501 §6.3.9).
    fn list_missing(&mut self, entries: &[FolderEntry], patterns: &[String], lsub: bool) {
        let Ok(subscribed) = self.store().and_then(|s| s.subscriptions()) else {
            return;
        };
        let attributes: &[&str] = if lsub {
            &["\\Noselect"]
        } else {
            &["\\NonExistent", "\\Subscribed"]
        };
        for name in subscribed {
            if entries.iter().any(|e| e.name == name) || !patterns.iter().any(|p| matches(p, &name))
            {
                continue;
            }
            let mailbox = self.encode_name(&name);
            self.data(Data::List {
                lsub,
                attributes,
                delimiter: Some(b'/'),
                mailbox: &mailbox,
                extended: &[],
            });
        }
    }

    fn list_status(&mut self, name: &str, items: &[StatusItem]) {
        if let Ok(values) = self.status_values(name, items) {
            let mailbox = self.encode_name(name);
            self.data(Data::Status {
                mailbox: &mailbox,
                items: &values,
            });
        }
    }

    fn lsub(&mut self, tag: &[u8], reference: &[u8], pattern: &[u8]) -> Step {
        let entries = match self.store().and_then(|s| s.list_folders()) {
            Ok(e) => e,
            Err(e) => return self.store_error(tag, &e),
        };
        let Some(patterns) = self.patterns(reference, &[pattern.to_vec()]) else {
            return self.finish_bad(tag, "Invalid mailbox name encoding");
        };
        let options = ListOptions::default();
        for entry in entries.iter().filter(|e| e.subscribed) {
            if matches(&patterns[0], &entry.name) {
                self.list_entry(entry, &entries, &options, true);
            }
        }
        self.list_missing(&entries, &patterns, true);
        self.done(tag)
    }

    fn patterns(&self, reference: &[u8], patterns: &[Vec<u8>]) -> Option<Vec<String>> {
        let reference = self.decode_name(reference)?;
        let mut out = Vec::new();
        for p in patterns {
            let text = std::str::from_utf8(p).ok()?;
            let p = if self.encoding().utf8 {
                text.to_string()
            } else {
                names::decode_mutf7(text)?
            };
            out.push(if reference.is_empty() || p.starts_with('/') {
                names::normalize(&p)
            } else {
                format!("{reference}/{p}")
            });
        }
        Some(out)
    }

    fn list_entry(
        &mut self,
        entry: &FolderEntry,
        all: &[FolderEntry],
        o: &ListOptions,
        lsub: bool,
    ) {
        let prefix = format!("{}/", entry.name);
        let children = all.iter().any(|e| e.name.starts_with(&prefix));
        let mut attributes = vec![if children {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        }];
        if let Some(u) = entry.special_use {
            attributes.push(u.attribute());
        }
        if entry.subscribed && o.subscribed && !lsub {
            attributes.push("\\Subscribed");
        }
        let mailbox = self.encode_name(&entry.name);
        self.data(Data::List {
            lsub,
            attributes: &attributes,
            delimiter: Some(b'/'),
            mailbox: &mailbox,
            extended: &[],
        });
    }
}

/// CREATE of `a/b/c` creates `a` and `a/b` too when missing (RFC 9051 §6.3.4), so that the
/// hierarchy shows in LIST.
fn create_with_parents(
    store: &shared::mailstore::Store,
    name: &str,
    use_: Option<SpecialUse>,
) -> Result<(), Error> {
    for (i, _) in name.match_indices(names::DELIMITER) {
        match store.create_folder(&name[..i], None) {
            Ok(()) | Err(Error::FolderExists | Error::Inbox(_)) => {}
            Err(e) => return Err(e),
        }
    }
    store.create_folder(name, use_)
}

/// What a LIST asks beyond names (RFC 5258 §3).
#[derive(Default)]
struct ListOptions {
    only_subscribed: bool,
    only_special: bool,
    subscribed: bool,
    status: Option<Vec<StatusItem>>,
}

impl ListOptions {
    fn of(cmd: &ListCommand) -> ListOptions {
        let mut o = ListOptions::default();
        for s in &cmd.selection {
            match s {
                ListSelect::Subscribed => o.only_subscribed = true,
                ListSelect::SpecialUse => o.only_special = true,
                ListSelect::Remote | ListSelect::RecursiveMatch => {}
            }
        }
        o.subscribed = o.only_subscribed;
        for r in &cmd.returns {
            match r {
                ListReturn::Subscribed => o.subscribed = true,
                ListReturn::Status(items) => o.status = Some(items.clone()),
                ListReturn::Children | ListReturn::SpecialUse => {}
            }
        }
        o
    }

    fn selects(&self, e: &FolderEntry) -> bool {
        (!self.only_subscribed || e.subscribed) && (!self.only_special || e.special_use.is_some())
    }
}

/// LIST wildcards (RFC 9051 §6.3.9): `*` matches anything, `%` anything but the delimiter.
/// INBOX matches in any case.
pub(super) fn matches(pattern: &str, name: &str) -> bool {
    let name = if names::is_inbox(name.split('/').next().unwrap_or("")) {
        names::normalize(name)
    } else {
        name.to_string()
    };
    let pattern = names::normalize(pattern);
    wildcard(pattern.as_bytes(), name.as_bytes())
}

/// Dynamic programming over the name, so hostile patterns (`*a*a*a…`) stay linear per
/// pattern octet.
fn wildcard(p: &[u8], n: &[u8]) -> bool {
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    for &c in p {
        let mut next = vec![false; n.len() + 1];
        let mut on = false;
        for j in 0..=n.len() {
            match c {
                b'*' | b'%' => {
                    on |= reach[j];
                    next[j] = on;
                    if c == b'%' && n.get(j) == Some(&b'/') {
                        on = false;
                    }
                }
                _ => {
                    if j < n.len() {
                        next[j + 1] = reach[j] && n[j] == c;
                    }
                }
            }
        }
        reach = next;
    }
    reach[n.len()]
}

fn values(folder: &Folder, items: &[StatusItem], append_limit: u64) -> Vec<StatusValue> {
    use shared::mailstore::Flags;
    let msgs = folder.messages();
    let count = |f: Flags, set: bool| msgs.iter().filter(|m| m.flags.contains(f) == set).count();
    items
        .iter()
        .map(|&item| {
            let v = match item {
                StatusItem::Messages => msgs.len() as u64,
                StatusItem::UidNext => folder.uidnext().into(),
                StatusItem::UidValidity => folder.uidvalidity().into(),
                StatusItem::Unseen => count(Flags::SEEN, false) as u64,
                StatusItem::Deleted => count(Flags::DELETED, true) as u64,
                StatusItem::Size => msgs.iter().map(|m| m.vsize).sum(),
                StatusItem::Recent => 0,
                StatusItem::HighestModSeq => folder.highest_modseq(),
                StatusItem::AppendLimit => append_limit,
            };
            (item, v)
        })
        .collect()
}

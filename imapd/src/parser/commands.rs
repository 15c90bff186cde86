//! The command table of the parser: the tag, the command name, and each command's arguments
//! (RFC 9051 §6 and §9, extensions cited per command). Search keys and FETCH items are in
//! their own files.

use super::{ErrorKind, PResult, Parser};
use crate::command::{
    Append, Command, CommandBody, ListCommand, ListReturn, ListSelect, QResync, StatusItem,
    StoreMode,
};

impl Parser<'_> {
    pub(super) fn command(&mut self) -> PResult<Command> {
        if self.at_eol() || self.s.is_empty() {
            return self.err(ErrorKind::Empty);
        }
        self.tag()?;
        let name = self.keyword()?;
        let body = self.command_body(name.as_bytes())?;
        self.eol()?;
        Ok(Command {
            tag: self.tag.take().unwrap_or_default(),
            body,
        })
    }

    fn command_body(&mut self, name: &[u8]) -> PResult<CommandBody> {
        use CommandBody::*;
        Ok(match name {
            b"CAPABILITY" => Capability,
            b"NOOP" => Noop,
            b"LOGOUT" => Logout,
            b"STARTTLS" => StartTls,
            b"NAMESPACE" => Namespace,
            b"IDLE" => Idle,
            b"CHECK" => Check,
            b"CLOSE" => Close,
            b"UNSELECT" => Unselect,
            b"EXPUNGE" => Expunge { uids: None },
            b"AUTHENTICATE" => self.authenticate()?,
            b"LOGIN" => self.login()?,
            b"ENABLE" => self.enable()?,
            b"SELECT" => self.select(false)?,
            b"EXAMINE" => self.select(true)?,
            b"CREATE" => self.create()?,
            b"DELETE" => Delete(self.sp_astring()?),
            b"RENAME" => Rename {
                from: self.sp_astring()?,
                to: self.sp_astring()?,
            },
            b"SUBSCRIBE" => Subscribe(self.sp_astring()?),
            b"UNSUBSCRIBE" => Unsubscribe(self.sp_astring()?),
            b"LIST" => List(self.list()?),
            b"LSUB" => self.lsub()?,
            b"STATUS" => self.status()?,
            b"APPEND" => Append(self.append()?),
            b"ID" => self.id()?,
            b"GETQUOTA" => GetQuota(self.sp_astring()?),
            b"GETQUOTAROOT" => GetQuotaRoot(self.sp_astring()?),
            b"SETQUOTA" => self.setquota()?,
            b"UID" => {
                self.sp()?;
                let name = self.keyword()?;
                self.uid_command(name.as_bytes())?
            }
            other => self.sequence_command(other, false)?,
        })
    }

    /// The commands that take a sequence set, with or without the UID prefix.
    fn sequence_command(&mut self, name: &[u8], uid: bool) -> PResult<CommandBody> {
        match name {
            b"FETCH" => self.fetch(uid),
            b"STORE" => self.store(uid),
            b"COPY" | b"MOVE" => {
                self.sp()?;
                let set = self.sequence_set()?;
                let mailbox = self.sp_astring()?;
                Ok(if name == b"COPY" {
                    CommandBody::Copy { uid, set, mailbox }
                } else {
                    CommandBody::Move { uid, set, mailbox }
                })
            }
            b"SEARCH" => Ok(CommandBody::Search(self.search(uid)?)),
            b"SORT" => self.sort(uid),
            _ => self.err(ErrorKind::UnknownCommand),
        }
    }

    fn uid_command(&mut self, name: &[u8]) -> PResult<CommandBody> {
        if name == b"EXPUNGE" {
            // RFC 4315 §2.1: UID EXPUNGE sequence-set.
            self.sp()?;
            return Ok(CommandBody::Expunge {
                uids: Some(self.sequence_set()?),
            });
        }
        self.sequence_command(name, true)
    }

    fn sp_astring(&mut self) -> PResult<Vec<u8>> {
        self.sp()?;
        self.astring()
    }

    /// AUTHENTICATE SP auth-type [SP (base64 / "=")] (RFC 9051 §6.2.2, RFC 4959 §7).
    fn authenticate(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        let mechanism = String::from_utf8_lossy(self.atom()?).to_ascii_uppercase();
        let initial = if self.eat(b' ') {
            if self.eat(b'=') {
                Some(Vec::new())
            } else {
                let b = self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                if b.is_empty() {
                    return self.syntax("Expected base64");
                }
                Some(b.to_vec())
            }
        } else {
            None
        };
        Ok(CommandBody::Authenticate { mechanism, initial })
    }

    fn login(&mut self) -> PResult<CommandBody> {
        let user = self.sp_astring()?;
        let password = self.sp_astring()?;
        Ok(CommandBody::Login { user, password })
    }

    /// ENABLE 1*(SP capability) (RFC 5161 §4).
    fn enable(&mut self) -> PResult<CommandBody> {
        let mut caps = Vec::new();
        while self.eat(b' ') {
            caps.push(String::from_utf8_lossy(self.atom()?).to_ascii_uppercase());
        }
        if caps.is_empty() {
            return self.syntax("Expected a capability");
        }
        Ok(CommandBody::Enable(caps))
    }

    /// SELECT/EXAMINE mailbox [SP "(" select-param *(SP select-param) ")"] (RFC 4466 §2.1,
    /// RFC 7162 §3.1.8 CONDSTORE, §3.2.5 QRESYNC).
    fn select(&mut self, read_only: bool) -> PResult<CommandBody> {
        let mailbox = self.sp_astring()?;
        let mut condstore = false;
        let mut qresync = None;
        if self.eat(b' ') {
            self.paren_list(false, |p| {
                let name = p.keyword()?;
                match name.as_bytes() {
                    b"CONDSTORE" => condstore = true,
                    b"QRESYNC" => {
                        p.sp()?;
                        qresync = Some(p.qresync()?);
                    }
                    _ => return p.syntax("Unknown SELECT parameter"),
                }
                Ok(())
            })?;
        }
        Ok(CommandBody::Select {
            mailbox,
            read_only,
            condstore,
            qresync,
        })
    }

    /// "(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")".
    fn qresync(&mut self) -> PResult<QResync> {
        self.expect(b'(', "Expected (")?;
        self.enter()?;
        let uid_validity = self.nz_number()?;
        self.sp()?;
        let modseq = self.number64()?;
        let mut known_uids = None;
        let mut seq_match = None;
        if self.eat(b' ') && self.peek() != Some(b'(') {
            known_uids = Some(self.sequence_set()?);
            self.eat(b' ');
        }
        if self.eat(b'(') {
            let seqs = self.sequence_set()?;
            self.sp()?;
            let uids = self.sequence_set()?;
            self.expect(b')', "Expected )")?;
            seq_match = Some((seqs, uids));
        }
        self.expect(b')', "Expected )")?;
        self.leave();
        Ok(QResync {
            uid_validity,
            modseq,
            known_uids,
            seq_match,
        })
    }

    /// CREATE mailbox [SP "(" "USE" SP "(" use-attrs ")" ")"] (RFC 6154 §3, RFC 4466 §2.2).
    fn create(&mut self) -> PResult<CommandBody> {
        let mailbox = self.sp_astring()?;
        let mut special_use = Vec::new();
        if self.eat(b' ') {
            self.paren_list(false, |p| {
                if p.keyword()?.as_bytes() != b"USE" {
                    return p.syntax("Unknown CREATE parameter");
                }
                p.sp()?;
                let flags = p.flag_list()?;
                special_use.extend(
                    flags
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned()),
                );
                Ok(())
            })?;
        }
        Ok(CommandBody::Create {
            mailbox,
            special_use,
        })
    }

    /// LIST [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
    /// (RFC 5258 §6, RFC 9051 §9).
    fn list(&mut self) -> PResult<ListCommand> {
        let mut cmd = ListCommand::default();
        self.sp()?;
        if self.peek() == Some(b'(') {
            cmd.selection = self.paren_list(true, |p| p.list_select())?;
            self.sp()?;
        }
        cmd.reference = self.astring()?;
        self.sp()?;
        cmd.patterns = if self.peek() == Some(b'(') {
            self.paren_list(false, |p| p.list_mailbox())?
        } else {
            vec![self.list_mailbox()?]
        };
        if self.eat(b' ') {
            if self.keyword()?.as_bytes() != b"RETURN" {
                return self.syntax("Expected RETURN");
            }
            self.sp()?;
            cmd.returns = self.paren_list(true, |p| p.list_return())?;
        }
        Ok(cmd)
    }

    fn list_select(&mut self) -> PResult<ListSelect> {
        Ok(match self.keyword()?.as_bytes() {
            b"SUBSCRIBED" => ListSelect::Subscribed,
            b"REMOTE" => ListSelect::Remote,
            b"RECURSIVEMATCH" => ListSelect::RecursiveMatch,
            b"SPECIAL-USE" => ListSelect::SpecialUse,
            _ => return self.syntax("Unknown LIST selection option"),
        })
    }

    fn list_return(&mut self) -> PResult<ListReturn> {
        Ok(match self.keyword()?.as_bytes() {
            b"SUBSCRIBED" => ListReturn::Subscribed,
            b"CHILDREN" => ListReturn::Children,
            b"SPECIAL-USE" => ListReturn::SpecialUse,
            b"STATUS" => {
                self.sp()?;
                ListReturn::Status(self.paren_list(false, |p| p.status_item())?)
            }
            _ => return self.syntax("Unknown LIST return option"),
        })
    }

    fn lsub(&mut self) -> PResult<CommandBody> {
        let reference = self.sp_astring()?;
        self.sp()?;
        let pattern = self.list_mailbox()?;
        Ok(CommandBody::Lsub { reference, pattern })
    }

    fn status(&mut self) -> PResult<CommandBody> {
        let mailbox = self.sp_astring()?;
        self.sp()?;
        let items = self.paren_list(false, |p| p.status_item())?;
        Ok(CommandBody::Status { mailbox, items })
    }

    fn status_item(&mut self) -> PResult<StatusItem> {
        Ok(match self.keyword()?.as_bytes() {
            b"MESSAGES" => StatusItem::Messages,
            b"UIDNEXT" => StatusItem::UidNext,
            b"UIDVALIDITY" => StatusItem::UidValidity,
            b"UNSEEN" => StatusItem::Unseen,
            b"DELETED" => StatusItem::Deleted,
            b"SIZE" => StatusItem::Size,
            b"RECENT" => StatusItem::Recent,
            b"HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            b"APPENDLIMIT" => StatusItem::AppendLimit,
            _ => return self.syntax("Unknown STATUS item"),
        })
    }

    /// APPEND mailbox [SP flag-list] [SP date-time] SP (literal / literal8 /
    /// "UTF8" SP "(" literal8 ")") (RFC 9051 §6.3.12, RFC 3516 §4.4, RFC 6855 §4).
    fn append(&mut self) -> PResult<Append> {
        let mailbox = self.sp_astring()?;
        self.sp()?;
        let mut flags = Vec::new();
        let mut date = None;
        if self.peek() == Some(b'(') {
            flags = self.flag_list()?;
            self.sp()?;
        }
        if self.peek() == Some(b'"') {
            date = Some(self.date_time()?);
            self.sp()?;
        }
        let utf8 = matches!(self.peek(), Some(b'U' | b'u'));
        let (message, binary) = if utf8 {
            if self.keyword()?.as_bytes() != b"UTF8" {
                return self.syntax("Expected a literal");
            }
            self.sp()?;
            self.expect(b'(', "Expected (")?;
            let m = self.literal(true)?;
            self.expect(b')', "Expected )")?;
            m
        } else {
            self.literal(true)?
        };
        Ok(Append {
            mailbox,
            flags,
            date,
            message,
            binary,
            utf8,
        })
    }

    /// ID SP ("(" string SP nstring *(SP string SP nstring) ")" / NIL) (RFC 2971 §4).
    fn id(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        if self.peek() != Some(b'(') {
            return match self.nstring()? {
                None => Ok(CommandBody::Id(None)),
                Some(_) => self.syntax("Expected ( or NIL"),
            };
        }
        let pairs = self.paren_list(false, |p| {
            let field = p.string()?;
            p.sp()?;
            Ok((field, p.nstring()?))
        })?;
        Ok(CommandBody::Id(Some(pairs)))
    }

    /// SETQUOTA quota-root SP "(" [setquota-resource *(SP setquota-resource)] ")"
    /// (RFC 9208 §4.1.3).
    fn setquota(&mut self) -> PResult<CommandBody> {
        let root = self.sp_astring()?;
        self.sp()?;
        let limits = self.paren_list(true, |p| {
            let name = String::from_utf8_lossy(p.atom()?).to_ascii_uppercase();
            p.sp()?;
            Ok((name, p.number64()?))
        })?;
        Ok(CommandBody::SetQuota { root, limits })
    }

    /// STORE sequence-set [SP "(" "UNCHANGEDSINCE" SP mod-sequence-valzer ")"] SP
    /// ["+" / "-"] "FLAGS" [".SILENT"] SP (flag-list / (flag *(SP flag)))
    /// (RFC 9051 §6.4.6, RFC 7162 §3.1.3).
    fn store(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.peek() == Some(b'(') {
            let mods = self.paren_list(false, |p| {
                if p.keyword()?.as_bytes() != b"UNCHANGEDSINCE" {
                    return p.syntax("Unknown STORE modifier");
                }
                p.sp()?;
                p.number64()
            })?;
            unchanged_since = mods.last().copied();
            self.sp()?;
        }
        let mode = if self.eat(b'+') {
            StoreMode::Add
        } else if self.eat(b'-') {
            StoreMode::Remove
        } else {
            StoreMode::Replace
        };
        let silent = match self.keyword()?.as_bytes() {
            b"FLAGS" => false,
            b"FLAGS.SILENT" => true,
            _ => return self.syntax("Expected FLAGS"),
        };
        self.sp()?;
        let flags = self.store_flags()?;
        Ok(CommandBody::Store {
            uid,
            set,
            unchanged_since,
            mode,
            silent,
            flags,
        })
    }

    /// flag-list / (flag *(SP flag)).
    fn store_flags(&mut self) -> PResult<Vec<Vec<u8>>> {
        if self.peek() == Some(b'(') {
            return self.flag_list();
        }
        let mut flags = vec![self.flag()?];
        while self.eat(b' ') {
            flags.push(self.flag()?);
        }
        Ok(flags)
    }
}

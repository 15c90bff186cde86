//! FETCH arguments: data items and macros (RFC 9051 §6.4.5), body sections and partials,
//! BINARY items (RFC 3516 §4.2), and the CONDSTORE/QRESYNC modifiers (RFC 7162 §3.1.4,
//! §3.2.6).

use super::{PResult, Parser};
use crate::command::{CommandBody, FetchItem, Section, SectionText};

impl Parser<'_> {
    /// FETCH SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att /
    /// "(" fetch-att *(SP fetch-att) ")") [SP "(" fetch-modifier *(SP fetch-modifier) ")"].
    pub(super) fn fetch(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let items = if self.peek() == Some(b'(') {
            self.paren_list(false, |p| p.fetch_att())?
        } else {
            self.fetch_macro_or_att()?
        };
        let mut changed_since = None;
        let mut vanished = false;
        if self.eat(b' ') {
            self.paren_list(false, |p| {
                match p.keyword()?.as_bytes() {
                    b"CHANGEDSINCE" => {
                        p.sp()?;
                        changed_since = Some(p.number64()?);
                    }
                    b"VANISHED" => vanished = true,
                    _ => return p.syntax("Unknown FETCH modifier"),
                }
                Ok(())
            })?;
        }
        Ok(CommandBody::Fetch {
            uid,
            set,
            items,
            changed_since,
            vanished,
        })
    }

    /// The macros of RFC 9051 §6.4.5, expanded, or a single item.
    fn fetch_macro_or_att(&mut self) -> PResult<Vec<FetchItem>> {
        use FetchItem::*;
        let fast = [Flags, InternalDate, Rfc822Size];
        if self.eat_macro(b"ALL") {
            return Ok([&fast[..], &[Envelope]].concat());
        }
        if self.eat_macro(b"FAST") {
            return Ok(fast.to_vec());
        }
        if self.eat_macro(b"FULL") {
            return Ok([&fast[..], &[Envelope, Body]].concat());
        }
        Ok(vec![self.fetch_att()?])
    }

    /// A macro name followed by the end of the line or the modifiers.
    fn eat_macro(&mut self, name: &[u8]) -> bool {
        let rest = &self.s[self.i..];
        let found = rest.len() >= name.len()
            && rest[..name.len()].eq_ignore_ascii_case(name)
            && matches!(rest.get(name.len()), Some(b' ' | b'\r' | b'\n'));
        if found {
            self.i += name.len();
        }
        found
    }

    fn fetch_att(&mut self) -> PResult<FetchItem> {
        use FetchItem::*;
        let name = self.take_while(|b| super::is_atom_char(b) && b != b'[' && b != b'<');
        let name = super::Keyword::new(name);
        Ok(match name.as_bytes() {
            b"UID" => Uid,
            b"FLAGS" => Flags,
            b"INTERNALDATE" => InternalDate,
            b"RFC822.SIZE" => Rfc822Size,
            b"ENVELOPE" => Envelope,
            b"BODYSTRUCTURE" => BodyStructure,
            b"RFC822" => Rfc822,
            b"RFC822.HEADER" => Rfc822Header,
            b"RFC822.TEXT" => Rfc822Text,
            b"MODSEQ" => ModSeq,
            b"BODY" if self.peek() != Some(b'[') => Body,
            b"BODY" | b"BODY.PEEK" => {
                let peek = name.as_bytes() == b"BODY.PEEK";
                let section = self.section()?;
                let partial = self.partial()?;
                Section {
                    peek,
                    section,
                    partial,
                }
            }
            b"BINARY" | b"BINARY.PEEK" => {
                let peek = name.as_bytes() == b"BINARY.PEEK";
                let part = self.section_binary()?;
                let partial = self.partial()?;
                Binary {
                    peek,
                    part,
                    partial,
                }
            }
            b"BINARY.SIZE" => BinarySize(self.section_binary()?),
            _ => return self.syntax("Unknown FETCH item"),
        })
    }

    /// section-part = nz-number *("." nz-number); stops before a "." not followed by a digit.
    fn section_part(&mut self) -> PResult<Vec<u32>> {
        let mut part = Vec::new();
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            part.push(self.nz_number()?);
            let next_digit = self.s.get(self.i + 1).is_some_and(|b| b.is_ascii_digit());
            if !(self.peek() == Some(b'.') && next_digit) {
                break;
            }
            self.i += 1;
        }
        Ok(part)
    }

    /// section = "[" [section-spec] "]" (RFC 9051 §9).
    fn section(&mut self) -> PResult<Section> {
        self.expect(b'[', "Expected [")?;
        let part = self.section_part()?;
        let has_text = if part.is_empty() {
            self.peek() != Some(b']')
        } else {
            self.eat(b'.')
        };
        let text = match has_text {
            true => Some(self.section_text(!part.is_empty())?),
            false => None,
        };
        self.expect(b']', "Expected ]")?;
        Ok(Section { part, text })
    }

    fn section_text(&mut self, has_part: bool) -> PResult<SectionText> {
        let word = self.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
        let word = super::Keyword::new(word);
        Ok(match word.as_bytes() {
            b"HEADER" => SectionText::Header,
            b"TEXT" => SectionText::Text,
            b"MIME" if has_part => SectionText::Mime,
            b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT" => {
                let not = word.as_bytes().len() > b"HEADER.FIELDS".len();
                self.sp()?;
                let fields = self.paren_list(false, |p| p.astring())?;
                SectionText::HeaderFields { not, fields }
            }
            _ => return self.syntax("Bad section"),
        })
    }

    /// section-binary = "[" [section-part] "]" (RFC 3516 §4.2).
    fn section_binary(&mut self) -> PResult<Vec<u32>> {
        self.expect(b'[', "Expected [")?;
        let part = self.section_part()?;
        self.expect(b']', "Expected ]")?;
        Ok(part)
    }

    /// partial = "<" number64 "." nz-number64 ">" (offsets beyond 32 bits are refused).
    fn partial(&mut self) -> PResult<Option<(u32, u32)>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let origin = self.number()?;
        self.expect(b'.', "Bad partial")?;
        let len = self.nz_number()?;
        self.expect(b'>', "Bad partial")?;
        Ok(Some((origin, len)))
    }
}

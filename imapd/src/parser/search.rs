//! SEARCH and SORT arguments: return options (ESEARCH RFC 4731 §3.1, SEARCHRES RFC 5182 §2),
//! the charset, and search keys (RFC 9051 §6.4.4), whose recursion (parentheses, NOT, OR)
//! counts against the nesting limit.

use super::{PResult, Parser};
use crate::command::{CommandBody, Search, SearchKey, SearchReturn, SortCriterion, SortKey};

impl Parser<'_> {
    /// SEARCH [SP search-return-opts] [SP "CHARSET" SP charset] 1*(SP search-key).
    pub(super) fn search(&mut self, uid: bool) -> PResult<Search> {
        self.sp()?;
        let mut returns = None;
        if self.eat_word(b"RETURN") {
            self.sp()?;
            returns = Some(self.paren_list(true, |p| p.search_return())?);
            self.sp()?;
        }
        let charset = self.charset()?;
        let key = self.search_keys()?;
        Ok(Search {
            uid,
            returns,
            charset,
            key,
        })
    }

    /// SORT sort-criteria SP charset 1*(SP search-key) (RFC 5256 §5), with the ESEARCH-style
    /// RETURN options of RFC 5267 §3.2 before the criteria.
    pub(super) fn sort(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let mut returns = None;
        if self.peek() != Some(b'(') {
            if self.keyword()?.as_bytes() != b"RETURN" {
                return self.syntax("Expected sort criteria");
            }
            self.sp()?;
            returns = Some(self.paren_list(true, |p| p.search_return())?);
            self.sp()?;
        }
        let criteria = self.paren_list(false, |p| p.sort_criterion())?;
        self.sp()?;
        let charset = Some(String::from_utf8_lossy(&self.astring()?).to_ascii_uppercase());
        self.sp()?;
        let key = self.search_keys()?;
        let search = Search {
            uid,
            returns,
            charset,
            key,
        };
        Ok(CommandBody::Sort { search, criteria })
    }

    fn sort_criterion(&mut self) -> PResult<SortCriterion> {
        let mut word = self.keyword()?;
        let reverse = word.as_bytes() == b"REVERSE";
        if reverse {
            self.sp()?;
            word = self.keyword()?;
        }
        let key = match word.as_bytes() {
            b"ARRIVAL" => SortKey::Arrival,
            b"CC" => SortKey::Cc,
            b"DATE" => SortKey::Date,
            b"FROM" => SortKey::From,
            b"SIZE" => SortKey::Size,
            b"SUBJECT" => SortKey::Subject,
            b"TO" => SortKey::To,
            b"DISPLAYFROM" => SortKey::DisplayFrom,
            b"DISPLAYTO" => SortKey::DisplayTo,
            _ => return self.syntax("Unknown sort criterion"),
        };
        Ok(SortCriterion { reverse, key })
    }

    fn search_return(&mut self) -> PResult<SearchReturn> {
        Ok(match self.keyword()?.as_bytes() {
            b"MIN" => SearchReturn::Min,
            b"MAX" => SearchReturn::Max,
            b"ALL" => SearchReturn::All,
            b"COUNT" => SearchReturn::Count,
            b"SAVE" => SearchReturn::Save,
            _ => return self.syntax("Unknown SEARCH return option"),
        })
    }

    /// ["CHARSET" SP astring SP], leaving the position after it.
    fn charset(&mut self) -> PResult<Option<String>> {
        if self.eat_word(b"CHARSET") {
            self.sp()?;
            let cs = self.astring()?;
            self.sp()?;
            return Ok(Some(String::from_utf8_lossy(&cs).to_ascii_uppercase()));
        }
        Ok(None)
    }

    /// 1*(search-key) separated by SP, ANDed; a single key stands alone.
    fn search_keys(&mut self) -> PResult<SearchKey> {
        let mut keys = vec![self.search_key()?];
        while self.eat(b' ') {
            keys.push(self.search_key()?);
        }
        Ok(if keys.len() == 1 {
            keys.remove(0)
        } else {
            SearchKey::And(keys)
        })
    }

    /// One key; parentheses count as nesting in `paren_list`, NOT and OR in `search_word`.
    fn search_key(&mut self) -> PResult<SearchKey> {
        let key = match self.peek() {
            Some(b'(') => {
                let mut keys = self.paren_list(false, |p| p.search_key())?;
                if keys.len() == 1 {
                    keys.remove(0)
                } else {
                    SearchKey::And(keys)
                }
            }
            Some(b'$' | b'*' | b'0'..=b'9') => SearchKey::Sequence(self.sequence_set()?),
            _ => {
                let word = self.keyword()?;
                self.search_word(word.as_bytes())?
            }
        };
        Ok(key)
    }

    fn sp_astring_key(&mut self) -> PResult<Vec<u8>> {
        self.sp()?;
        self.astring()
    }

    fn sp_date(&mut self) -> PResult<crate::command::Date> {
        self.sp()?;
        self.date()
    }

    fn search_word(&mut self, word: &[u8]) -> PResult<SearchKey> {
        use SearchKey::*;
        Ok(match word {
            b"ALL" => All,
            b"ANSWERED" => Answered,
            b"DELETED" => Deleted,
            b"DRAFT" => Draft,
            b"FLAGGED" => Flagged,
            b"NEW" => New,
            b"OLD" => Old,
            b"RECENT" => Recent,
            b"SEEN" => Seen,
            b"UNANSWERED" => Unanswered,
            b"UNDELETED" => Undeleted,
            b"UNDRAFT" => Undraft,
            b"UNFLAGGED" => Unflagged,
            b"UNSEEN" => Unseen,
            b"KEYWORD" | b"UNKEYWORD" => {
                self.sp()?;
                let flag = self.atom()?.to_vec();
                if word == b"KEYWORD" {
                    Keyword(flag)
                } else {
                    Unkeyword(flag)
                }
            }
            b"BCC" => Bcc(self.sp_astring_key()?),
            b"BODY" => Body(self.sp_astring_key()?),
            b"CC" => Cc(self.sp_astring_key()?),
            b"FROM" => From(self.sp_astring_key()?),
            b"SUBJECT" => Subject(self.sp_astring_key()?),
            b"TEXT" => Text(self.sp_astring_key()?),
            b"TO" => To(self.sp_astring_key()?),
            b"HEADER" => Header(self.sp_astring_key()?, self.sp_astring_key()?),
            b"BEFORE" => Before(self.sp_date()?),
            b"ON" => On(self.sp_date()?),
            b"SINCE" => Since(self.sp_date()?),
            b"SENTBEFORE" => SentBefore(self.sp_date()?),
            b"SENTON" => SentOn(self.sp_date()?),
            b"SENTSINCE" => SentSince(self.sp_date()?),
            b"LARGER" | b"SMALLER" => {
                self.sp()?;
                let n = self.number64()?;
                if word == b"LARGER" {
                    Larger(n)
                } else {
                    Smaller(n)
                }
            }
            b"OLDER" | b"YOUNGER" => {
                self.sp()?;
                let n = self.nz_number()?;
                if word == b"OLDER" {
                    Older(n)
                } else {
                    Younger(n)
                }
            }
            b"UID" => {
                self.sp()?;
                Uid(self.sequence_set()?)
            }
            b"NOT" => {
                self.sp()?;
                self.enter()?;
                let key = Not(Box::new(self.search_key()?));
                self.leave();
                key
            }
            b"OR" => {
                self.sp()?;
                self.enter()?;
                let a = self.search_key()?;
                self.sp()?;
                let key = Or(Box::new(a), Box::new(self.search_key()?));
                self.leave();
                key
            }
            b"MODSEQ" => self.modseq_key()?,
            _ => return self.syntax("Unknown search key"),
        })
    }

    /// "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer (RFC 7162 §3.1.5).
    fn modseq_key(&mut self) -> PResult<SearchKey> {
        self.sp()?;
        let mut entry = None;
        if self.peek() == Some(b'"') {
            let name = self.quoted()?;
            self.sp()?;
            let kind = String::from_utf8_lossy(self.atom()?).to_ascii_lowercase();
            if !matches!(kind.as_str(), "priv" | "shared" | "all") {
                return self.syntax("Bad entry type");
            }
            self.sp()?;
            entry = Some((name, kind));
        }
        let modseq = self.number64()?;
        Ok(SearchKey::ModSeq { entry, modseq })
    }
}

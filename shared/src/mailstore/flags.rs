//! The IMAP system flags (RFC 3501 §2.3.2) and their Maildir letters (the `:2,` info of a
//! file name: D draft, F flagged, R replied, S seen, T trashed, kept sorted). Keywords are
//! strings beside these, not here.

use serde::{Deserialize, Serialize};

/// A set of system flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub struct Flags(u8);

/// (flag, Maildir letter, IMAP name), in the letters' ASCII order (the order Maildir wants).
const TABLE: [(Flags, char, &str); 5] = [
    (Flags::DRAFT, 'D', "\\Draft"),
    (Flags::FLAGGED, 'F', "\\Flagged"),
    (Flags::ANSWERED, 'R', "\\Answered"),
    (Flags::SEEN, 'S', "\\Seen"),
    (Flags::DELETED, 'T', "\\Deleted"),
];

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(2);
    pub const FLAGGED: Flags = Flags(4);
    pub const DELETED: Flags = Flags(8);
    pub const DRAFT: Flags = Flags(16);
    pub const EMPTY: Flags = Flags(0);

    /// From a bit pattern (unknown bits dropped).
    pub fn from_bits(bits: u8) -> Flags {
        Flags(bits & 31)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// The system flags among the letters of a Maildir info (`"FRSa"` → flagged, replied,
    /// seen); lower-case keyword letters and unknown letters are ignored.
    pub fn from_maildir(info: &str) -> Flags {
        info.chars().fold(Flags::EMPTY, |acc, c| {
            TABLE
                .iter()
                .find(|(_, letter, _)| *letter == c)
                .map_or(acc, |(f, _, _)| acc.union(*f))
        })
    }

    /// The Maildir letters, sorted: `"FS"`.
    pub fn to_maildir(self) -> String {
        TABLE
            .iter()
            .filter(|(f, _, _)| self.contains(*f))
            .map(|(_, letter, _)| *letter)
            .collect()
    }

    /// The IMAP names of the flags set (`\Seen` ...), in a fixed order.
    pub fn imap_names(self) -> impl Iterator<Item = &'static str> {
        TABLE
            .iter()
            .filter(move |(f, _, _)| self.contains(*f))
            .map(|(_, _, name)| *name)
    }

    /// The flag an IMAP name denotes (case-insensitive, RFC 3501 §9 `flag`); `None` for a
    /// keyword or `\Recent` (which is not stored).
    pub fn from_imap_name(name: &str) -> Option<Flags> {
        TABLE
            .iter()
            .find(|(_, _, n)| n.eq_ignore_ascii_case(name))
            .map(|(f, _, _)| *f)
    }
}

impl From<Flags> for String {
    fn from(flags: Flags) -> String {
        flags.to_maildir()
    }
}

impl From<String> for Flags {
    fn from(letters: String) -> Flags {
        Flags::from_maildir(&letters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_letters_are_sorted_and_round_trip() {
        for bits in 0..32 {
            let f = Flags::from_bits(bits);
            assert_eq!(Flags::from_maildir(&f.to_maildir()), f);
        }
        let all = Flags::from_bits(31).to_maildir();
        assert_eq!(all, "DFRST");
        assert_eq!(Flags::from_maildir("Sa,bP"), Flags::SEEN);
    }

    #[test]
    fn imap_names() {
        assert_eq!(Flags::from_imap_name("\\SEEN"), Some(Flags::SEEN));
        assert_eq!(Flags::from_imap_name("\\Recent"), None);
        assert_eq!(Flags::from_imap_name("$Junk"), None);
        let names: Vec<_> = Flags::SEEN.union(Flags::ANSWERED).imap_names().collect();
        assert_eq!(names, ["\\Answered", "\\Seen"]);
    }
}

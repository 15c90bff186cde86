//! Finds the line of a dotted key path (`listen.smtp`, `listen.smtp.1`) in the TOML source,
//! so every configuration error can name its line. Pure: works on the text it is given.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub struct Locator<'a> {
    text: &'a str,
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Locator<'a> {
        Locator {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Line of the key (for a table or scalar) or of the array element (numeric segment).
    /// Falls back to the deepest ancestor found; `None` when not even the first segment is.
    pub fn line_of_path(&self, path: &str) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut table: &DeTable = root.get_ref();
        let mut found: Option<usize> = None;
        let mut value: Option<&Spanned<DeValue>> = None;
        for segment in path.split('.') {
            if let Some(v) = value {
                match v.get_ref() {
                    DeValue::Table(t) => table = t,
                    DeValue::Array(items) => {
                        if let Some(item) = segment.parse::<usize>().ok().and_then(|i| items.get(i))
                        {
                            found = Some(item.span().start);
                        }
                        break;
                    }
                    _ => break,
                }
            }
            let Some((key, v)) = table
                .iter()
                .find(|(k, _)| AsRef::<str>::as_ref(k.get_ref()) == segment)
            else {
                break;
            };
            found = Some(key.span().start);
            value = Some(v);
        }
        found.map(|offset| self.line_of(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_tables_and_array_items() {
        let text = "hostname = \"a\"\n\n[listen]\nsmtp = [\n  \"x\",\n  \"y\",\n]\n";
        let l = Locator::new(text);
        assert_eq!(l.line_of_path("hostname"), Some(1));
        assert_eq!(l.line_of_path("listen"), Some(3));
        assert_eq!(l.line_of_path("listen.smtp"), Some(4));
        assert_eq!(l.line_of_path("listen.smtp.1"), Some(6));
        assert_eq!(l.line_of_path("listen.imap"), Some(3));
        assert_eq!(l.line_of_path("nothing"), None);
    }
}

//! `postern.toml(5)`, rendered from the annotated `etc/postern.toml` (compiled in), which stays
//! the one place where keys are documented (a shared test checks it lists every key). Pure
//! text transformation: no I/O here.
//!
//! The file's shape, which this relies on: a header comment, then per table a `[name]` line
//! (or `# [name]` for an optional table), and per key one or more comment lines followed by
//! `key = value` (set in the shipped file) or `# key = value` (commented out: the default).
//! Keys that follow each other without a comment between them share the comment before them.

/// The annotated production configuration.
pub const ANNOTATED: &str = include_str!("../../etc/postern.toml");

/// One documented group: the keys and the comment that explains them.
#[derive(Debug, Default)]
struct Entry {
    /// (key, value as written, commented out = the default)
    keys: Vec<(String, String, bool)>,
    text: Vec<String>,
}

#[derive(Debug, Default)]
struct Section {
    /// `None` for the top-level keys.
    table: Option<String>,
    entries: Vec<Entry>,
}

/// The manual page, roff source.
pub fn render(version: &str) -> String {
    let (header, sections) = parse(ANNOTATED);
    let mut out = format!(
        ".TH postern.toml 5 \"\" \"postern {version}\" \"Postern\"\n\
         .SH NAME\npostern.toml \\- configuration of the Postern mail server\n\
         .SH SYNOPSIS\n\\fI/etc/postern/postern.toml\\fR\n.SH DESCRIPTION\n"
    );
    for paragraph in header.split(|l| l.is_empty()).filter(|p| !p.is_empty()) {
        out.push_str(".PP\n");
        out.push_str(&escape(&paragraph.join(" ")));
        out.push('\n');
    }
    for section in &sections {
        let title = match &section.table {
            None => "TOP-LEVEL KEYS".to_string(),
            Some(t) => format!("[{t}]"),
        };
        out.push_str(&format!(".SH \"{}\"\n", escape(&title)));
        for entry in &section.entries {
            render_entry(entry, &mut out);
        }
    }
    out.push_str(
        ".SH FILES\n\\fI/etc/postern/postern.toml\\fR; an annotated copy with every default is \
         installed there.\n.SH SEE ALSO\n\\fBpostern\\fR(8), \\fBpostern\\-check\\fR(8)\n",
    );
    out
}

fn render_entry(entry: &Entry, out: &mut String) {
    if entry.keys.is_empty() {
        if !entry.text.is_empty() {
            out.push_str(&format!(".PP\n{}\n", escape(&entry.text.join(" "))));
        }
        return;
    }
    for (i, (key, value, default)) in entry.keys.iter().enumerate() {
        out.push_str(if i == 0 { ".TP\n" } else { ".TQ\n" });
        let note = if *default { " (default)" } else { "" };
        out.push_str(&format!(
            "\\fB{}\\fR = {}{note}\n",
            escape(key),
            escape(value)
        ));
    }
    out.push_str(&escape(&entry.text.join(" ")));
    out.push('\n');
}

/// Escapes text for roff: backslashes, and a leading `.` or `'` that would read as a request.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with(['.', '\'']) {
        format!("\\&{text}")
    } else {
        text
    }
}

/// A `[table]` or `# [table]` line.
fn table_name(line: &str) -> Option<&str> {
    let t = line.trim_start_matches('#').trim();
    let name = t.strip_prefix('[')?.strip_suffix(']')?;
    name.chars()
        .all(|c| c.is_ascii_lowercase() || c == '_')
        .then_some(name)
}

/// A `key = value` or `# key = value` line: (key, value, commented out).
fn key_line(line: &str) -> Option<(String, String, bool)> {
    let commented = line.starts_with('#');
    let body = line.trim_start_matches('#').trim();
    let (key, value) = body.split_once('=')?;
    let key = key.trim();
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    is_key.then(|| (key.to_string(), value.trim().to_string(), commented))
}

/// The header (comment lines up to the first blank line, blank lines kept as "") and the
/// sections.
fn parse(text: &str) -> (Vec<String>, Vec<Section>) {
    let mut lines = text.lines().peekable();
    let mut header = Vec::new();
    while let Some(line) = lines.next_if(|l| l.starts_with('#')) {
        header.push(comment_text(line));
    }
    let mut sections = vec![Section::default()];
    let mut entry = Entry::default();
    for line in lines {
        let line = line.trim();
        let last = sections.len() - 1;
        if let Some(name) = table_name(line) {
            // A comment right before a table introduces the table, not the last key.
            if !entry.keys.is_empty() {
                flush(&mut sections[last], &mut entry);
            }
            sections.push(Section {
                table: Some(name.to_string()),
                entries: Vec::new(),
            });
        } else if let Some(key) = key_line(line) {
            entry.keys.push(key);
        } else if line.starts_with('#') {
            if !entry.keys.is_empty() {
                flush(&mut sections[last], &mut entry);
            }
            entry.text.push(comment_text(line));
        } else if line.is_empty() {
            flush(&mut sections[last], &mut entry);
        }
    }
    let last = sections.len() - 1;
    flush(&mut sections[last], &mut entry);
    // The file names the header's own path on its first line: that is the title already.
    if header.first().is_some_and(|l| l.contains("postern.toml")) {
        header.remove(0);
    }
    (header, sections)
}

fn comment_text(line: &str) -> String {
    line.trim_start_matches('#').trim().to_string()
}

fn flush(section: &mut Section, entry: &mut Entry) {
    if !entry.keys.is_empty() || !entry.text.is_empty() {
        section.entries.push(std::mem::take(entry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_annotated_file_is_on_the_page() {
        let page = render("9.9.9");
        let (_, sections) = parse(ANNOTATED);
        let mut count = 0;
        for line in ANNOTATED.lines() {
            if let Some((key, _, _)) = key_line(line.trim()) {
                count += 1;
                assert!(
                    page.contains(&format!("\\fB{}\\fR = ", escape(&key))),
                    "{key} missing from postern.toml(5)"
                );
            }
        }
        assert!(count > 30, "only {count} keys found: the parser lost track");
        let tables: Vec<_> = sections.iter().filter_map(|s| s.table.clone()).collect();
        for t in ["tls", "listen", "relay", "limits", "service_users", "log"] {
            assert!(tables.iter().any(|x| x == t), "[{t}] missing: {tables:?}");
            assert!(page.contains(&format!(".SH \"[{}]\"", escape(t))));
        }
    }

    #[test]
    fn every_key_has_an_explanation() {
        let (_, sections) = parse(ANNOTATED);
        for s in &sections {
            for e in &s.entries {
                if let Some((key, _, _)) = e.keys.first() {
                    assert!(!e.text.is_empty(), "{key} has no comment before it");
                }
            }
        }
    }

    #[test]
    fn roff_requests_in_text_are_escaped() {
        assert_eq!(escape(".not a request"), "\\&.not a request");
        assert_eq!(escape("a\\b-c"), "a\\eb\\-c");
    }
}

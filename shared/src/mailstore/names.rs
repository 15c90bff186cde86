//! Folder names. The store speaks UTF-8 names with `/` as the hierarchy delimiter
//! (`Archive/2024`), `INBOX` case-insensitive (RFC 3501 §5.1). On disk a folder is the
//! Maildir++ directory `.` + the components joined by `.`, each in modified UTF-7
//! (RFC 3501 §5.1.3, as Dovecot writes them), a `.` inside a component written `&AC4-`.
//! Also the modified UTF-7 codec an IMAP session needs for clients without UTF8=ACCEPT
//! (RFC 9051 §6.3.1 / RFC 6855). Pure functions, no file access.

use super::{Error, Result};

/// The hierarchy delimiter of the names the store takes and gives.
pub const DELIMITER: char = '/';
/// Longest on-disk directory name (a file name on Linux file systems).
const MAX_DISK_NAME: usize = 255;
/// `.` inside a component, in modified UTF-7 (U+002E).
const ESCAPED_DOT: &str = "&AC4-";

/// Whether `name` is INBOX (any case).
pub fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

/// `name` with a first component of `inbox` in any case written `INBOX`.
pub fn normalize(name: &str) -> String {
    match name.split_once(DELIMITER) {
        Some((first, rest)) if is_inbox(first) => format!("INBOX{DELIMITER}{rest}"),
        None if is_inbox(name) => "INBOX".to_string(),
        _ => name.to_string(),
    }
}

/// The directory of folder `name` under the user's Maildir root: `None` for INBOX (the root
/// itself), else `.A.B`. Refuses empty components, control characters and over-long names.
pub fn to_disk(name: &str) -> Result<Option<String>> {
    let name = normalize(name);
    if name == "INBOX" {
        return Ok(None);
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(Error::BadName("control character"));
    }
    let mut disk = String::new();
    for component in name.split(DELIMITER) {
        if component.is_empty() {
            return Err(Error::BadName("empty hierarchy level"));
        }
        disk.push('.');
        let parts: Vec<String> = component.split('.').map(encode_mutf7).collect();
        disk.push_str(&parts.join(ESCAPED_DOT));
    }
    if disk.len() > MAX_DISK_NAME {
        return Err(Error::BadName("too long"));
    }
    Ok(Some(disk))
}

/// The folder name of a Maildir++ directory (`.A.B` → `A/B`); `None` when it is not one
/// (no leading dot, `.`/`..`, an empty level, bad modified UTF-7).
pub fn from_disk(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix('.')?;
    if rest.is_empty() || rest == "." {
        return None;
    }
    let mut components = Vec::new();
    for part in rest.split('.') {
        if part.is_empty() {
            return None;
        }
        components.push(decode_mutf7(part)?);
    }
    Some(normalize(&components.join(&DELIMITER.to_string())))
}

/// Modified UTF-7 (RFC 3501 §5.1.3): printable ASCII as itself (`&` as `&-`), other
/// characters as UTF-16 in modified base64 between `&` and `-`.
pub fn encode_mutf7(text: &str) -> String {
    let mut out = String::new();
    let mut run: Vec<u16> = Vec::new();
    for c in text.chars() {
        if (' '..='~').contains(&c) {
            flush_run(&mut run, &mut out);
            match c {
                '&' => out.push_str("&-"),
                _ => out.push(c),
            }
        } else {
            run.extend(c.encode_utf16(&mut [0; 2]).iter());
        }
    }
    flush_run(&mut run, &mut out);
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn flush_run(run: &mut Vec<u16>, out: &mut String) {
    if run.is_empty() {
        return;
    }
    let bytes: Vec<u8> = run.drain(..).flat_map(u16::to_be_bytes).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out.push('-');
}

/// Decodes modified UTF-7; `None` for anything malformed (a raw non-ASCII or control
/// character, an unterminated or invalid base64 run, broken UTF-16).
pub fn decode_mutf7(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !(' '..='~').contains(&c) {
            return None;
        }
        if c != '&' {
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        let end = rest.find('-')?;
        let encoded = &rest[1..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            out.push_str(&decode_run(encoded)?);
        }
        rest = &rest[end + 1..];
    }
    Some(out)
}

fn decode_run(encoded: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut bytes = Vec::new();
    for b in encoded.bytes() {
        let v = B64.iter().position(|&x| x == b)? as u32;
        bits = bits << 6 | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    // Leftover bits must be zero padding (RFC 2152 via RFC 3501 §5.1.3).
    if bits != 0 || bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    // Names hold no control characters (`to_disk` refuses them too).
    String::from_utf16(&units)
        .ok()
        .filter(|s| !s.chars().any(char::is_control))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_3501_examples() {
        // RFC 3501 §5.1.3's example, and the usual German and Japanese names.
        assert_eq!(
            encode_mutf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(encode_mutf7("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode_mutf7("A&B"), "A&-B");
        assert_eq!(decode_mutf7("Entw&APw-rfe").as_deref(), Some("Entwürfe"));
        assert_eq!(decode_mutf7("&U,BTFw-").as_deref(), Some("台北"));
        assert_eq!(encode_mutf7("😀"), "&2D3eAA-");
    }

    #[test]
    fn malformed_modified_utf7_is_refused() {
        for bad in ["&", "&U,BTFw", "é", "&AAA-", "&2D0-", "a\tb", "&=-"] {
            assert_eq!(decode_mutf7(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn folder_names_on_disk() {
        assert_eq!(to_disk("inbox").unwrap(), None);
        assert_eq!(to_disk("Sent").unwrap().as_deref(), Some(".Sent"));
        assert_eq!(
            to_disk("Archive/2024/Entwürfe").unwrap().as_deref(),
            Some(".Archive.2024.Entw&APw-rfe")
        );
        assert_eq!(to_disk("a.b").unwrap().as_deref(), Some(".a&AC4-b"));
        assert_eq!(to_disk("Inbox/x").unwrap().as_deref(), Some(".INBOX.x"));
        assert!(to_disk("a//b").is_err());
        assert!(to_disk("/a").is_err());
        assert!(to_disk("a\nb").is_err());
        assert!(to_disk(&"x".repeat(300)).is_err());
        assert_eq!(from_disk(".a&AC4-b").as_deref(), Some("a.b"));
        assert_eq!(from_disk(".INBOX.x").as_deref(), Some("INBOX/x"));
        for bad in ["Sent", ".", "..", ".a..b", ".a.", ".&x"] {
            assert_eq!(from_disk(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn mutf7_round_trips(s in "\\PC*") {
            let encoded = encode_mutf7(&s);
            prop_assert!(encoded.chars().all(|c| (' '..='~').contains(&c)));
            prop_assert_eq!(decode_mutf7(&encoded), Some(s));
        }

        #[test]
        fn decoding_anything_never_panics(s in "\\PC*") {
            let _ = decode_mutf7(&s);
        }

        #[test]
        fn disk_names_round_trip(parts in proptest::collection::vec("[^/\\p{Cc}]{1,8}", 1..4)) {
            let name = normalize(&parts.join("/"));
            if let Some(disk) = to_disk(&name).unwrap() {
                prop_assert_eq!(from_disk(&disk), Some(name));
            }
        }
    }
}

//! The lexical layer of server output (RFC 9051 §4, §9): numbers, strings with the choice of
//! quoted form or literal, NIL, literal8, sequence sets. Everything writes into one
//! `Vec<u8>`; nothing here allocates on its own.

/// How strings may be written on this connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoding {
    /// The client enabled UTF8=ACCEPT or IMAP4rev2 (RFC 6855 §3, RFC 9051 §9 QUOTED-CHAR):
    /// valid UTF-8 may go in a quoted string; otherwise 8-bit octets force a literal.
    pub utf8: bool,
}

/// Strings longer than this are sent as literals even when they could be quoted: a client
/// reads a literal without scanning for escapes.
const QUOTED_MAX: usize = 1024;

pub fn number(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// True when `s` can be sent as a quoted string (RFC 9051 §9 quoted): no CR, LF or NUL,
/// and 8-bit only as valid UTF-8 once the client accepts it.
fn quotable(s: &[u8], enc: Encoding) -> bool {
    if s.len() > QUOTED_MAX {
        return false;
    }
    let mut eight_bit = false;
    for &b in s {
        match b {
            0 | b'\r' | b'\n' => return false,
            0x80.. => eight_bit = true,
            _ => {}
        }
    }
    !eight_bit || (enc.utf8 && std::str::from_utf8(s).is_ok())
}

/// A string, quoted when safe, otherwise a literal (RFC 9051 §4.3).
pub fn string(out: &mut Vec<u8>, s: &[u8], enc: Encoding) {
    if quotable(s, enc) {
        quoted(out, s);
    } else {
        literal(out, s);
    }
}

/// A quoted string; the caller has checked [`quotable`]. `"` and `\` are escaped.
fn quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if b == b'"' || b == b'\\' {
            out.extend_from_slice(&s[start..i]);
            out.push(b'\\');
            start = i;
        }
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// `{n}` CRLF and the octets.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'{');
    number(out, s.len() as u64);
    out.extend_from_slice(b"}\r\n");
    out.extend_from_slice(s);
}

/// `~{n}` CRLF and the octets: literal8, which may hold NUL (RFC 3516 §4.3).
pub fn literal8(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'~');
    literal(out, s);
}

/// NIL or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, enc: Encoding) {
    match s {
        Some(s) => string(out, s, enc),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// An astring: bare when it is a non-empty atom (plus "]"), else a string.
pub fn astring(out: &mut Vec<u8>, s: &[u8], enc: Encoding) {
    let atom = !s.is_empty()
        && !s.eq_ignore_ascii_case(b"NIL")
        && s.iter()
            .all(|&b| crate::parser::is_atom_char(b) || b == b']');
    if atom {
        out.extend_from_slice(s);
    } else {
        string(out, s, enc);
    }
}

/// Free text of a status response (RFC 9051 §9 text = 1*TEXT-CHAR): CR and LF become spaces,
/// and it is never empty.
pub fn text(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.extend_from_slice(b"done");
        return;
    }
    out.extend(
        s.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

/// A set of UIDs or sequence numbers as ranges, `a:b,c` (RFC 9051 §9 sequence-set).
pub fn ranges(out: &mut Vec<u8>, r: &[(u32, u32)]) {
    for (i, &(a, b)) in r.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        number(out, a.into());
        if b != a {
            out.push(b':');
            number(out, b.into());
        }
    }
}

/// `(a b c)` of atoms or pre-checked words.
pub fn atom_list<S: AsRef<[u8]>>(out: &mut Vec<u8>, items: &[S]) {
    out.push(b'(');
    words(out, items);
    out.push(b')');
}

/// Words separated by spaces.
pub fn words<S: AsRef<[u8]>>(out: &mut Vec<u8>, items: &[S]) {
    for (i, w) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(w.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &[u8], utf8: bool) -> Vec<u8> {
        let mut out = Vec::new();
        string(&mut out, x, Encoding { utf8 });
        out
    }

    #[test]
    fn quoting_edge_cases() {
        assert_eq!(s(b"", false), b"\"\"");
        assert_eq!(s(b"plain", false), b"\"plain\"");
        assert_eq!(s(b"a\"b", false), b"\"a\\\"b\"");
        assert_eq!(s(b"a\\b", false), b"\"a\\\\b\"");
        assert_eq!(s(b"\\\"", false), b"\"\\\\\\\"\"");
        assert_eq!(s(b"a\r\nb", false), b"{4}\r\na\r\nb");
        assert_eq!(s(b"a\nb", false), b"{3}\r\na\nb");
        assert_eq!(s("é".as_bytes(), false), b"{2}\r\n\xc3\xa9");
        assert_eq!(s("é".as_bytes(), true), "\"é\"".as_bytes());
        assert_eq!(s(b"\xff", true), b"{1}\r\n\xff");
        assert_eq!(s(b"a\0b", true), b"{3}\r\na\0b");
        assert_eq!(s(&[b'x'; 1025], false)[..7], *b"{1025}\r");
        let mut out = Vec::new();
        nstring(&mut out, None, Encoding::default());
        out.push(b' ');
        astring(&mut out, b"INBOX", Encoding::default());
        out.push(b' ');
        astring(&mut out, b"nil", Encoding::default());
        out.push(b' ');
        astring(&mut out, b"a b", Encoding::default());
        out.push(b' ');
        literal8(&mut out, b"\0");
        assert_eq!(out, b"NIL INBOX \"nil\" \"a b\" ~{1}\r\n\0");
    }

    #[test]
    fn numbers_ranges_text() {
        let mut out = Vec::new();
        number(&mut out, 0);
        out.push(b' ');
        number(&mut out, u64::MAX);
        out.push(b' ');
        ranges(&mut out, &[(1, 1), (3, 7)]);
        out.push(b' ');
        text(&mut out, "a\r\nb");
        assert_eq!(out, b"0 18446744073709551615 1,3:7 a  b");
    }
}

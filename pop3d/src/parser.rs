//! POP3 command lines (RFC 1939 §3) into [`Command`]s: a case-insensitive keyword, arguments
//! separated by spaces, CRLF (a bare LF is tolerated). Only syntax is checked here; what a
//! command may do in a state is the session's. The line length limit is applied by the framing
//! before a line gets here. No I/O here.

/// Longest argument accepted. RFC 1939 §3 says 40 octets, but user names are mail addresses,
/// and RFC 2449 §4 raised the line to 255 octets: an argument may fill it.
pub const MAX_ARGUMENT: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// The rest of the line: RFC 1939 §7 notes that passwords may contain spaces.
    Pass(String),
    Quit,
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Top(u32, u64),
    Uidl(Option<u32>),
    Capa,
    Stls,
    /// `AUTH` alone lists the mechanisms; else a mechanism (upper-cased) and an optional
    /// initial response (RFC 5034 §4).
    Auth(Option<(String, Option<String>)>),
    Utf8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    Unknown,
    /// Wrong arguments for a known command (missing, extra, not a number, too long).
    Syntax,
    /// Not UTF-8 where text is expected.
    Encoding,
}

/// Parses one line (with or without its line ending).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Encoding)?;
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
    if keyword.len() > 4 {
        return Err(ParseError::Unknown);
    }
    let keyword = keyword.to_ascii_uppercase();
    // PASS takes the rest of the line verbatim.
    if keyword == "PASS" {
        return match rest {
            "" => Err(ParseError::Syntax),
            p if p.len() > MAX_ARGUMENT => Err(ParseError::Syntax),
            p => Ok(Command::Pass(p.to_string())),
        };
    }
    let args: Vec<&str> = rest.split(' ').filter(|a| !a.is_empty()).collect();
    if args.iter().any(|a| a.len() > MAX_ARGUMENT) {
        return Err(ParseError::Syntax);
    }
    match (keyword.as_str(), args.as_slice()) {
        ("USER", [name]) => Ok(Command::User(name.to_string())),
        ("QUIT", []) => Ok(Command::Quit),
        ("STAT", []) => Ok(Command::Stat),
        ("LIST", []) => Ok(Command::List(None)),
        ("LIST", [n]) => Ok(Command::List(Some(number(n)?))),
        ("RETR", [n]) => Ok(Command::Retr(number(n)?)),
        ("DELE", [n]) => Ok(Command::Dele(number(n)?)),
        ("NOOP", []) => Ok(Command::Noop),
        ("RSET", []) => Ok(Command::Rset),
        ("TOP", [n, lines]) => Ok(Command::Top(number(n)?, number(lines)?.into())),
        ("UIDL", []) => Ok(Command::Uidl(None)),
        ("UIDL", [n]) => Ok(Command::Uidl(Some(number(n)?))),
        ("CAPA", []) => Ok(Command::Capa),
        ("STLS", []) => Ok(Command::Stls),
        ("AUTH", []) => Ok(Command::Auth(None)),
        ("AUTH", [mech]) => Ok(Command::Auth(Some((mech.to_ascii_uppercase(), None)))),
        ("AUTH", [mech, initial]) => Ok(Command::Auth(Some((
            mech.to_ascii_uppercase(),
            Some(initial.to_string()),
        )))),
        ("UTF8", []) => Ok(Command::Utf8),
        (
            "USER" | "QUIT" | "STAT" | "LIST" | "RETR" | "DELE" | "NOOP" | "RSET" | "TOP" | "UIDL"
            | "CAPA" | "STLS" | "AUTH" | "UTF8",
            _,
        ) => Err(ParseError::Syntax),
        _ => Err(ParseError::Unknown),
    }
}

/// A message number or line count: decimal digits only (RFC 1939 §3), fitting in 32 bits.
fn number(text: &str) -> Result<u32, ParseError> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Syntax);
    }
    text.parse().map_err(|_| ParseError::Syntax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_and_their_arguments() {
        assert_eq!(
            parse(b"user alice@example.test\r\n"),
            Ok(Command::User("alice@example.test".into()))
        );
        assert_eq!(
            parse(b"PASS pass with spaces \r\n"),
            Ok(Command::Pass("pass with spaces ".into()))
        );
        assert_eq!(parse(b"LIST\r\n"), Ok(Command::List(None)));
        assert_eq!(parse(b"list 3\n"), Ok(Command::List(Some(3))));
        assert_eq!(parse(b"TOP 1 10\r\n"), Ok(Command::Top(1, 10)));
        assert_eq!(parse(b"UIDL 2\r\n"), Ok(Command::Uidl(Some(2))));
        assert_eq!(
            parse(b"AUTH plain dGVzdA==\r\n"),
            Ok(Command::Auth(Some((
                "PLAIN".into(),
                Some("dGVzdA==".into())
            ))))
        );
        assert_eq!(parse(b"AUTH\r\n"), Ok(Command::Auth(None)));
        assert_eq!(parse(b"Stls\r\n"), Ok(Command::Stls));
        assert_eq!(parse(b"UTF8\r\n"), Ok(Command::Utf8));
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b"\r\n"), Err(ParseError::Empty));
        assert_eq!(parse(b"APOP a b\r\n"), Err(ParseError::Unknown));
        assert_eq!(parse(b"HELLO\r\n"), Err(ParseError::Unknown));
        assert_eq!(parse(b"RETR\r\n"), Err(ParseError::Syntax));
        assert_eq!(parse(b"RETR x\r\n"), Err(ParseError::Syntax));
        assert_eq!(parse(b"RETR -1\r\n"), Err(ParseError::Syntax));
        assert_eq!(parse(b"RETR 99999999999\r\n"), Err(ParseError::Syntax));
        assert_eq!(parse(b"STAT 1\r\n"), Err(ParseError::Syntax));
        assert_eq!(parse(b"PASS\r\n"), Err(ParseError::Syntax));
        assert_eq!(parse(b"USER \xff\r\n"), Err(ParseError::Encoding));
        let long = format!("USER {}\r\n", "a".repeat(MAX_ARGUMENT + 1));
        assert_eq!(parse(long.as_bytes()), Err(ParseError::Syntax));
    }

    proptest! {
        /// Whatever the bytes, parsing answers (never panics), and a parsed command's line
        /// parses the same with LF or CRLF.
        #[test]
        fn any_bytes_parse_without_panic(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            let first = parse(&line);
            let mut with_crlf = line.clone();
            with_crlf.extend_from_slice(b"\r\n");
            if !line.ends_with(b"\r") && !line.ends_with(b"\n") {
                prop_assert_eq!(parse(&with_crlf), first);
            }
        }

        #[test]
        fn numbers_round_trip(n in any::<u32>(), m in any::<u32>()) {
            prop_assert_eq!(parse(format!("RETR {n}\r\n").as_bytes()), Ok(Command::Retr(n)));
            prop_assert_eq!(parse(format!("top {n} {m}\r\n").as_bytes()), Ok(Command::Top(n, m.into())));
        }

        #[test]
        fn user_names_round_trip(name in "[!-~]{1,100}") {
            prop_assert_eq!(parse(format!("USER {name}\r\n").as_bytes()), Ok(Command::User(name)));
        }
    }
}

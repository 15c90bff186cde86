//! The DATA receiver (RFC 5321 §4.1.1.4, §4.5.2): bytes in, the message out with dot-stuffing
//! removed and lines ending in LF. A message ends only at `<CRLF>.<CRLF>`. A bare LF or bare
//! CR anywhere in the message makes it invalid (SMTP smuggling, CVE-2023-51764 class): the
//! receiver still reads to the real end, so the connection stays in step, and then reports it
//! so the message is rejected as a whole. Oversized messages are read to their end and
//! discarded. Pure: fed any split of the input it gives the same result.

/// Why a message that reached its end cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    /// Larger than the limit (after dot-unstuffing, with CRLF line ends).
    TooBig,
    /// Contains a LF not preceded by CR, or a CR not followed by LF.
    BareLineEnding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the very beginning).
    LineStart,
    /// Inside a line.
    InLine,
    /// After a CR inside a line.
    Cr,
    /// A line started with '.': either the end marker or a stuffed dot.
    Dot,
    /// After ".\r" at the start of a line.
    DotCr,
    Done,
}

pub struct DataReceiver {
    state: State,
    body: Vec<u8>,
    /// Size in the wire format (CRLF line ends), as SIZE counts it (RFC 1870).
    wire_size: u64,
    limit: u64,
    bare: bool,
}

impl DataReceiver {
    pub fn new(limit: u64) -> DataReceiver {
        DataReceiver {
            state: State::LineStart,
            body: Vec::new(),
            wire_size: 0,
            limit,
            bare: false,
        }
    }

    fn push(&mut self, byte: u8) {
        self.wire_size += if byte == b'\n' { 2 } else { 1 };
        if self.wire_size <= self.limit {
            self.body.push(byte);
        }
    }

    /// Consumes bytes up to the end of the message; returns how many were used. When
    /// [`DataReceiver::is_done`] the rest belongs to the next command (PIPELINING).
    pub fn feed(&mut self, input: &[u8]) -> usize {
        for (i, &b) in input.iter().enumerate() {
            self.state = match (self.state, b) {
                (State::Done, _) => return i,
                (State::LineStart, b'.') => State::Dot,
                (State::LineStart | State::InLine, b'\r') => State::Cr,
                (State::LineStart | State::InLine, b'\n') => {
                    // A bare LF ends no line: what follows is not at a line start, so it can
                    // never form the end marker.
                    self.bare = true;
                    self.push(b'\n');
                    State::InLine
                }
                (State::LineStart | State::InLine, _) => {
                    self.push(b);
                    State::InLine
                }
                (State::Cr, b'\n') => {
                    self.push(b'\n');
                    State::LineStart
                }
                (State::Cr, b'\r') => {
                    // A CR followed by another CR: the first one is bare.
                    self.bare = true;
                    self.push(b'\r');
                    State::Cr
                }
                (State::Cr, _) => {
                    self.bare = true;
                    self.push(b'\r');
                    self.push(b);
                    State::InLine
                }
                (State::Dot, b'\r') => State::DotCr,
                (State::Dot, b'\n') => {
                    // ".\n" never ends a message.
                    self.bare = true;
                    self.push(b'\n');
                    State::InLine
                }
                (State::Dot, _) => {
                    // Dot-stuffing (RFC 5321 §4.5.2): a leading dot is removed.
                    match b {
                        b'\r' => State::Cr,
                        _ => {
                            self.push(b);
                            State::InLine
                        }
                    }
                }
                (State::DotCr, b'\n') => State::Done,
                (State::DotCr, _) => {
                    // ".\r" followed by anything but LF: a bare CR in a stuffed line.
                    self.bare = true;
                    self.push(b'\r');
                    if b == b'\r' {
                        State::Cr
                    } else {
                        self.push(b);
                        State::InLine
                    }
                }
            };
            if self.state == State::Done {
                return i + 1;
            }
        }
        input.len()
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Size in wire format so far (CRLF line ends).
    pub fn wire_size(&self) -> u64 {
        self.wire_size
    }

    /// The message (LF line ends) once done, or why it cannot be accepted.
    pub fn finish(self) -> Result<Vec<u8>, DataError> {
        if self.wire_size > self.limit {
            Err(DataError::TooBig)
        } else if self.bare {
            Err(DataError::BareLineEnding)
        } else {
            Ok(self.body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` whole, split at every position, and byte by byte (STYLE §7); all must
    /// agree. Returns (bytes used, result).
    fn run(input: &[u8], limit: u64) -> (usize, Result<Vec<u8>, DataError>) {
        let whole = {
            let mut r = DataReceiver::new(limit);
            let used = r.feed(input);
            (used, r.is_done(), r.finish())
        };
        for split in 0..=input.len() {
            let mut r = DataReceiver::new(limit);
            let mut used = r.feed(&input[..split]);
            if !r.is_done() {
                used += r.feed(&input[split..]);
            }
            assert_eq!(
                (used, r.is_done(), r.finish()),
                whole.clone(),
                "split at {split}"
            );
        }
        let mut r = DataReceiver::new(limit);
        let mut used = 0;
        for b in input {
            if r.is_done() {
                break;
            }
            used += r.feed(std::slice::from_ref(b));
        }
        assert_eq!(
            (used, r.is_done(), r.finish()),
            whole.clone(),
            "byte by byte"
        );
        assert!(whole.1, "message not ended");
        (whole.0, whole.2)
    }

    #[test]
    fn ends_at_crlf_dot_crlf_and_unstuffs() {
        let (used, body) = run(b"Subject: x\r\n\r\n..dot\r\nend\r\n.\r\nQUIT\r\n", 1000);
        assert_eq!(body.unwrap(), b"Subject: x\n\n.dot\nend\n");
        assert_eq!(used, 29);
    }

    #[test]
    fn empty_message() {
        assert_eq!(run(b".\r\n", 10).1.unwrap(), b"");
    }

    #[test]
    fn smuggling_sequences_never_end_the_message_and_are_refused() {
        // "\n.\n", "\n.\r\n", "\r.\r\n" and ".\n" must not end a message or start another.
        for evil in [
            &b"a\n.\nMAIL FROM:<x>\r\n.\r\n"[..],
            &b"a\n.\r\nMAIL FROM:<x>\r\n.\r\n"[..],
            &b"a\r.\r\nMAIL FROM:<x>\r\n.\r\n"[..],
            &b"a\r\n.\nMAIL FROM:<x>\r\n.\r\n"[..],
            &b"a\r\n.\rMAIL FROM:<x>\r\n.\r\n"[..],
        ] {
            let (used, result) = run(evil, 1000);
            assert_eq!(used, evil.len(), "{evil:?} ended early");
            assert_eq!(result, Err(DataError::BareLineEnding), "{evil:?}");
        }
    }

    #[test]
    fn too_big_is_read_to_the_end() {
        let mut msg = vec![b'x'; 100];
        msg.extend_from_slice(b"\r\n.\r\n");
        let (used, result) = run(&msg, 50);
        assert_eq!(used, msg.len());
        assert_eq!(result, Err(DataError::TooBig));
        // The limit counts CRLF: 3 lines of 1 char + CRLF = 9 octets.
        assert!(run(b"a\r\nb\r\nc\r\n.\r\n", 9).1.is_ok());
        assert_eq!(run(b"a\r\nb\r\nc\r\n.\r\n", 8).1, Err(DataError::TooBig));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_ends_without_the_marker(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut r = DataReceiver::new(1000);
            let used = r.feed(&input);
            if r.is_done() {
                proptest::prop_assert!(input[..used].ends_with(b"\r\n.\r\n") || input[..used] == *b".\r\n");
            }
            let _ = r.finish();
        }
    }
}

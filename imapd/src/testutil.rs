//! Test driver of the sans-IO wire layer: feeds client bytes through [`Framer`] and the
//! parser in chunks, as a connection would, and records what the server would do. Used to
//! check that whole, split and byte-by-byte input give the same result (STYLE §7).

use crate::command::Command;
use crate::frame::{Framer, Limits, Refusal, Step};
use crate::parser::{ParseError, ParseLimits, parse_command};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server sent `+ OK` for a synchronizing literal.
    Continue,
    Command(Result<Command, ParseError>),
    Refused(Refusal),
}

/// Feeds `chunks` one after the other; returns the events and the bytes left unframed.
pub fn drive<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    limits: &Limits,
) -> (Vec<Event>, usize) {
    let mut framer = Framer::new();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match framer.advance(&buf, limits) {
                Step::NeedMore => break,
                Step::SendContinuation => events.push(Event::Continue),
                Step::Discard(n) => {
                    buf.drain(..n);
                }
                Step::Command(n) => {
                    events.push(Event::Command(parse_command(
                        &buf[..n],
                        &ParseLimits::default(),
                    )));
                    buf.drain(..n);
                }
                Step::Refuse(r) => {
                    buf.drain(..r.consumed);
                    let close = r.close;
                    // How much was dropped depends on the chunks (an over-long line is
                    // discarded as it comes); what is left over is checked instead.
                    events.push(Event::Refused(Refusal { consumed: 0, ..r }));
                    if close {
                        // The connection closes: what the client sent after is never read.
                        return (events, 0);
                    }
                }
            }
        }
    }
    (events, buf.len())
}

/// Runs `input` whole, split in two at every position, and byte by byte; asserts the three
/// agree and returns the events.
pub fn trickle(input: &[u8], limits: &Limits) -> Vec<Event> {
    let whole = drive([input], limits);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(
            drive([a, b], limits),
            whole,
            "split at {at} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytes = drive(input.chunks(1), limits);
    assert_eq!(
        bytes,
        whole,
        "byte by byte: {:?}",
        String::from_utf8_lossy(input)
    );
    whole.0
}

/// The commands parsed from `input`, which must all be valid.
pub fn commands(input: &[u8]) -> Vec<Command> {
    trickle(input, &Limits::default())
        .into_iter()
        .filter_map(|e| match e {
            Event::Continue => None,
            Event::Command(Ok(c)) => Some(c),
            other => panic!("{other:?} in {:?}", String::from_utf8_lossy(input)),
        })
        .collect()
}

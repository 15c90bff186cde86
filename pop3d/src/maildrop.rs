//! What POP3 needs from the mailstore, as two small traits: a [`Store`] opens a user's
//! [`Maildrop`] exclusively (RFC 1939 §8: one session per maildrop), which lists its messages
//! (at the first command that needs it) in a fixed order with their sizes and unique ids, reads them, and applies the UPDATE state
//! (deletions and \Seen) durably. The session and the socket code depend only on this; the
//! implementations live beside it. Blocking file I/O: called on blocking threads.

use std::io;

/// One message as POP3 shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Octets as sent by RETR (CRLF line ends), before dot-stuffing: RFC 1939 §5 LIST.
    pub size: u64,
    /// RFC 1939 §7 UIDL: 1 to 70 octets in 0x21..=0x7E, stable across sessions.
    pub uidl: String,
}

/// Why a maildrop could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another session holds the maildrop lock (RFC 2449 §8.1.2 `[IN-USE]`).
    InUse,
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> OpenError {
        OpenError::Io(e)
    }
}

/// The effects of the UPDATE state (RFC 1939 §6), by message index (0-based, in the order
/// [`Maildrop::list`] listed them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub delete: Vec<usize>,
    /// Retrieved with RETR and not deleted: marked \Seen.
    pub seen: Vec<usize>,
}

/// An open, locked maildrop. Dropping it releases the lock, however the session ended.
pub trait Maildrop: Send + Sync + 'static {
    /// Lists the messages in a fixed order (called once per session, at the first command
    /// that needs the listing; the order and the indexes below refer to it).
    fn list(&mut self) -> io::Result<Vec<MessageInfo>>;
    /// The message as stored (LF or CRLF line ends).
    fn read(&mut self, index: usize) -> io::Result<Vec<u8>>;
    /// Applies `update` and returns only when it is durable (RFC 1939 §6: the `+OK` after QUIT
    /// promises the deletions). A message already gone counts as deleted.
    fn commit(&mut self, update: &Update) -> io::Result<()>;
    /// Whether listing now is cheap (an index to read, nothing to build): then the listing
    /// is taken at login, with the lock, and the first command finds it ready.
    fn lists_cheaply(&self) -> bool {
        false
    }
}

/// Opens maildrops.
pub trait Store: Send + Sync + 'static {
    /// Locks the maildrop of `user` (the canonical address authd answered). RFC 1939 §4 asks
    /// only that it be locked at login; it is listed at login too when that is cheap
    /// ([`Maildrop::lists_cheaply`]), else at the first command that needs the listing.
    fn open(&self, user: &str) -> Result<Box<dyn Maildrop>, OpenError>;
}

/// True when `uidl` is a valid unique-id listing (RFC 1939 §7 UIDL).
pub fn is_valid_uidl(uidl: &str) -> bool {
    (1..=70).contains(&uidl.len()) && uidl.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

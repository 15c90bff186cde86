//! A short-lived memory of recipient lookups, so that the MDA does not ask authd again for a
//! mailbox the MTA resolved a moment earlier (every queued message reaches the MDA as one
//! RCPT per mailbox, each of which was looked up at the MTA's RCPT). Only positive answers
//! are kept, for [`TTL`]: a mailbox added to the users file is found at once; a mailbox
//! removed from it may still receive mail for up to [`TTL`] (mail the MTA accepted for it
//! while it existed), and an alias given new targets may still deliver to its old ones for
//! that long. authd stays the only judge: nothing here outlives the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::proto::auth::Recipient;

/// How long a positive answer is reused.
pub const TTL: Duration = Duration::from_secs(2);
/// Entries kept at most; past that the memory is emptied (a burst to many mailboxes).
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub struct Lookups {
    entries: Mutex<HashMap<String, (Instant, Recipient)>>,
}

impl Lookups {
    /// The remembered answer for `address` when it is younger than [`TTL`] at `now`.
    pub fn get(&self, address: &str, now: Instant) -> Option<Recipient> {
        let entries = self.entries.lock().ok()?;
        let (at, found) = entries.get(&key(address))?;
        (now.saturating_duration_since(*at) < TTL).then(|| found.clone())
    }

    /// Remembers `found` for `address` when it names a mailbox or an alias.
    pub fn put(&self, address: &str, found: &Recipient, now: Instant) {
        if matches!(found, Recipient::Unknown) {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < TTL);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(key(address), (now, found.clone()));
        }
    }
}

/// Addresses are looked up without regard to case (authd does the same).
fn key(address: &str) -> String {
    address.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(a: &str) -> Recipient {
        Recipient::Mailbox { address: a.into() }
    }

    #[test]
    fn positive_answers_are_reused_until_the_ttl() {
        let l = Lookups::default();
        let t0 = Instant::now();
        l.put("User@Example.test", &mailbox("user@example.test"), t0);
        assert_eq!(
            l.get("user@example.TEST", t0 + Duration::from_millis(1999)),
            Some(mailbox("user@example.test"))
        );
        assert_eq!(l.get("user@example.test", t0 + TTL), None);
    }

    #[test]
    fn unknown_is_never_remembered() {
        let l = Lookups::default();
        let t0 = Instant::now();
        l.put("nobody@example.test", &Recipient::Unknown, t0);
        assert_eq!(l.get("nobody@example.test", t0), None);
    }

    #[test]
    fn the_memory_is_bounded() {
        let l = Lookups::default();
        let t0 = Instant::now();
        for n in 0..MAX_ENTRIES + 10 {
            l.put(
                &format!("u{n}@example.test"),
                &mailbox("x@example.test"),
                t0,
            );
        }
        let len = l.entries.lock().unwrap().len();
        assert!(len <= MAX_ENTRIES, "{len}");
    }
}

//! Positive verification cache (Dovecot's auth_cache): remembers that a user's password
//! verified, so an expensive hash is not recomputed at every login. Stores a salted SHA-256 of
//! the secret, never the secret; an entry is void when the user's stored hash changes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Most entries kept; past it expired entries are dropped, then the cache is cleared.
const MAX_ENTRIES: usize = 100_000;

struct Entry {
    stored: String,
    digest: [u8; 32],
    expires: Instant,
}

pub struct Cache {
    ttl: Duration,
    salt: [u8; 32],
    entries: HashMap<String, Entry>,
}

impl Cache {
    pub fn new(ttl: Duration) -> Cache {
        Cache {
            ttl,
            salt: rand::random(),
            entries: HashMap::new(),
        }
    }

    fn digest(&self, secret: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(secret.as_bytes());
        h.finalize().into()
    }

    /// True when `user` verified with this `secret` against this `stored` hash within the TTL.
    pub fn hit(&self, user: &str, stored: &str, secret: &str, now: Instant) -> bool {
        let Some(e) = self.entries.get(user) else {
            return false;
        };
        let digest = self.digest(secret);
        let same = e
            .digest
            .iter()
            .zip(digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        same && e.stored == stored && now < e.expires
    }

    pub fn insert(&mut self, user: &str, stored: &str, secret: &str, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        let digest = self.digest(secret);
        self.entries.insert(
            user.to_string(),
            Entry {
                stored: stored.to_string(),
                digest,
                expires: now + self.ttl,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_same_secret_same_hash_within_ttl() {
        let mut c = Cache::new(Duration::from_secs(10));
        let now = Instant::now();
        c.insert("a@x", "{PLAIN}pw", "pw", now);
        assert!(c.hit("a@x", "{PLAIN}pw", "pw", now));
        assert!(!c.hit("a@x", "{PLAIN}pw", "wrong", now));
        assert!(
            !c.hit("a@x", "{PLAIN}new", "pw", now),
            "changed hash voids the entry"
        );
        assert!(!c.hit("b@x", "{PLAIN}pw", "pw", now));
        assert!(!c.hit("a@x", "{PLAIN}pw", "pw", now + Duration::from_secs(11)));
        let mut off = Cache::new(Duration::ZERO);
        off.insert("a@x", "{PLAIN}pw", "pw", now);
        assert!(!off.hit("a@x", "{PLAIN}pw", "pw", now));
    }
}

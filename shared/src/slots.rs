//! Counting what a client may hold at once: connections per address and in total (every
//! protocol daemon), sessions per logged-in user (postern-imapd). A slot is released when
//! dropped, however the session ends. No policy beyond counting: the caller refuses.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts per key with a cap, and a total cap.
pub struct Counter<K: Hash + Eq + Clone> {
    table: Mutex<(HashMap<K, u32>, u32)>,
    per_key: u32,
    total: u32,
}

/// A taken place in a [`Counter`], given back on drop.
pub struct Slot<K: Hash + Eq + Clone> {
    counter: Arc<Counter<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    pub fn new(per_key: u32, total: u32) -> Arc<Counter<K>> {
        Arc::new(Counter {
            table: Mutex::new((HashMap::new(), 0)),
            per_key,
            total,
        })
    }

    /// A place for `key`, or `None` when `key` or everyone is at the limit.
    pub fn take(self: &Arc<Self>, key: &K) -> Option<Slot<K>> {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mine = t.0.get(key).copied().unwrap_or(0);
        if t.1 >= self.total || mine >= self.per_key {
            return None;
        }
        t.1 += 1;
        *t.0.entry(key.clone()).or_default() += 1;
        Some(Slot {
            counter: self.clone(),
            key: key.clone(),
        })
    }
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut t = self.counter.table.lock().unwrap_or_else(|p| p.into_inner());
        t.1 = t.1.saturating_sub(1);
        if let Some(n) = t.0.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                t.0.remove(&self.key);
            }
        }
    }
}

pub type Connections = Counter<IpAddr>;
pub type Users = Counter<String>;
pub type UserSlot = Slot<String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_come_back_when_dropped() {
        let c = Users::new(2, 3);
        let a1 = c.take(&"a".to_string()).unwrap();
        let _a2 = c.take(&"a".to_string()).unwrap();
        assert!(c.take(&"a".to_string()).is_none(), "per key");
        let _b = c.take(&"b".to_string()).unwrap();
        assert!(c.take(&"c".to_string()).is_none(), "total");
        drop(a1);
        assert!(c.take(&"a".to_string()).is_some());
    }
}

//! Brute-force throttle: failed logins counted per remote address (IPv6 by /64) and per user
//! name over a sliding window. Each failure makes the next answer wait longer; past a limit the
//! address or user is refused with a temporary failure until the window has passed. Pure: the
//! caller passes the clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use shared::config::AuthSettings;

/// Keys tracked at most per map; past it the stalest keys are dropped (memory bound against
/// an attacker rotating addresses or user names).
const MAX_KEYS: usize = 100_000;

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Over a limit with decided failures: `by` says which ("ip" or "user").
    Blocked { by: &'static str },
    /// At the limit only because of attempts still being checked: the caller may wait for
    /// them to be decided and begin again (a burst of logins from one address behind NAT
    /// is not a spray of guesses until its hashes say so).
    Busy { by: &'static str },
}

pub struct Throttle {
    settings: AuthSettings,
    by_ip: HashMap<IpAddr, VecDeque<Instant>>,
    by_user: HashMap<String, VecDeque<Instant>>,
    /// How many of the times counted above are attempts not yet decided.
    pending_ip: HashMap<IpAddr, u32>,
    pending_user: HashMap<String, u32>,
}

/// The address failures are counted under: IPv6 clients usually own a whole /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        ),
        v4 => v4,
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

impl Throttle {
    pub fn new(settings: AuthSettings) -> Throttle {
        Throttle {
            settings,
            by_ip: HashMap::new(),
            by_user: HashMap::new(),
            pending_ip: HashMap::new(),
            pending_user: HashMap::new(),
        }
    }

    fn count<K: std::hash::Hash + Eq>(
        map: &mut HashMap<K, VecDeque<Instant>>,
        key: &K,
        now: Instant,
        window: Duration,
    ) -> u32 {
        match map.get_mut(key) {
            Some(times) => {
                prune(times, now, window);
                times.len() as u32
            }
            None => 0,
        }
    }

    /// Starts an attempt: refused when the address or the user is over its limit, else
    /// counted as a failure right away, so that concurrent guesses cannot exceed the limits
    /// while their hashes are being checked. [`Throttle::succeed`] takes it back. At the
    /// limit only because of undecided attempts, the answer is [`Verdict::Busy`].
    pub fn begin(
        &mut self,
        ip: Option<IpAddr>,
        user: &str,
        now: Instant,
    ) -> Result<Attempt, Verdict> {
        let window = self.settings.fail_window;
        let user = user.to_lowercase();
        if let Some(ip) = ip {
            let key = ip_key(ip);
            let counted = Self::count(&mut self.by_ip, &key, now, window);
            let pending = self.pending_ip.get(&key).copied().unwrap_or(0);
            verdict(counted, pending, self.settings.max_failures_per_ip, "ip")?;
        }
        let counted = Self::count(&mut self.by_user, &user, now, window);
        let pending = self.pending_user.get(&user).copied().unwrap_or(0);
        verdict(
            counted,
            pending,
            self.settings.max_failures_per_user,
            "user",
        )?;
        if let Some(ip) = ip {
            record(&mut self.by_ip, ip_key(ip), now, window);
            *self.pending_ip.entry(ip_key(ip)).or_default() += 1;
        }
        record(&mut self.by_user, user.clone(), now, window);
        *self.pending_user.entry(user.clone()).or_default() += 1;
        Ok(Attempt { ip, user, at: now })
    }

    /// The attempt is decided: no longer pending.
    fn decided(&mut self, attempt: &Attempt) {
        if let Some(ip) = attempt.ip {
            release(&mut self.pending_ip, &ip_key(ip));
        }
        release(&mut self.pending_user, &attempt.user);
    }

    /// The attempt failed: it stays counted. Returns the failures now counted (the larger of
    /// address and user) and the delay the caller must wait before answering.
    pub fn fail(&mut self, attempt: &Attempt, now: Instant) -> (u32, Duration) {
        self.decided(attempt);
        let window = self.settings.fail_window;
        let mut worst = 0;
        if let Some(ip) = attempt.ip {
            worst = Self::count(&mut self.by_ip, &ip_key(ip), now, window);
        }
        worst = worst.max(Self::count(&mut self.by_user, &attempt.user, now, window));
        let exponent = worst.saturating_sub(1).min(20);
        let delay = self
            .settings
            .fail_delay
            .saturating_mul(1u32 << exponent)
            .min(self.settings.fail_delay_max);
        (worst, delay)
    }

    /// The attempt succeeded: it is taken back, and the user's failures are cleared (not the
    /// address's: one good password from an address does not excuse a spray of guesses).
    pub fn succeed(&mut self, attempt: Attempt) {
        self.decided(&attempt);
        self.cancel_ip(&attempt);
        self.by_user.remove(&attempt.user);
    }

    /// The attempt could not be decided (internal error): taken back, nothing else changes.
    pub fn cancel(&mut self, attempt: Attempt) {
        self.decided(&attempt);
        self.cancel_ip(&attempt);
        if let Some(times) = self.by_user.get_mut(&attempt.user)
            && let Some(i) = times.iter().position(|t| *t == attempt.at)
        {
            times.remove(i);
        }
    }

    fn cancel_ip(&mut self, attempt: &Attempt) {
        if let Some(ip) = attempt.ip
            && let Some(times) = self.by_ip.get_mut(&ip_key(ip))
            && let Some(i) = times.iter().position(|t| *t == attempt.at)
        {
            times.remove(i);
        }
    }
}

/// `Blocked` when the decided failures (`counted` less the `pending` attempts) reach `max`,
/// `Busy` when only the pending ones make it reach `max`.
fn verdict(counted: u32, pending: u32, max: u32, by: &'static str) -> Result<(), Verdict> {
    if counted.saturating_sub(pending) >= max {
        Err(Verdict::Blocked { by })
    } else if counted >= max {
        Err(Verdict::Busy { by })
    } else {
        Ok(())
    }
}

fn release<K: std::hash::Hash + Eq>(pending: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = pending.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            pending.remove(key);
        }
    }
}

/// A verification in progress (see [`Throttle::begin`]).
pub struct Attempt {
    ip: Option<IpAddr>,
    user: String,
    at: Instant,
}

fn record<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, VecDeque<Instant>>,
    key: K,
    now: Instant,
    window: Duration,
) -> u32 {
    if map.len() >= MAX_KEYS && !map.contains_key(&key) {
        map.retain(|_, times| {
            prune(times, now, window);
            !times.is_empty()
        });
        if map.len() >= MAX_KEYS {
            // Still full of live keys: forget the one whose last failure is oldest.
            if let Some(stalest) = map
                .iter()
                .min_by_key(|(_, t)| t.back().copied())
                .map(|(k, _)| k.clone())
            {
                map.remove(&stalest);
            }
        }
    }
    let times = map.entry(key).or_default();
    prune(times, now, window);
    times.push_back(now);
    times.len() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            cache_ttl: Duration::from_secs(60),
            fail_delay: Duration::from_millis(100),
            fail_delay_max: Duration::from_millis(1000),
            fail_window: Duration::from_secs(60),
            max_failures_per_ip: 5,
            max_failures_per_user: 3,
        }
    }

    fn fail(
        t: &mut Throttle,
        ip: Option<IpAddr>,
        user: &str,
        now: Instant,
    ) -> Result<(u32, Duration), Verdict> {
        let a = t.begin(ip, user, now)?;
        Ok(t.fail(&a, now))
    }

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let mut t = Throttle::new(AuthSettings {
            max_failures_per_ip: 50,
            ..settings()
        });
        let now = Instant::now();
        let ip = Some("192.0.2.1".parse().unwrap());
        let delays: Vec<u128> = (0..5)
            .map(|i| {
                fail(&mut t, ip, &format!("u{i}"), now)
                    .unwrap()
                    .1
                    .as_millis()
            })
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000]);
    }

    #[test]
    fn blocks_per_ip_and_per_user_until_the_window_passes() {
        let mut t = Throttle::new(settings());
        let now = Instant::now();
        let ip = Some("192.0.2.1".parse().unwrap());
        for _ in 0..3 {
            fail(&mut t, ip, "a@x", now).unwrap();
        }
        assert_eq!(
            t.begin(ip, "A@X", now).err(),
            Some(Verdict::Blocked { by: "user" })
        );
        // Another user from the same address is fine until the address limit.
        fail(&mut t, ip, "b@x", now).unwrap();
        fail(&mut t, ip, "c@x", now).unwrap();
        assert_eq!(
            t.begin(ip, "d@x", now).err(),
            Some(Verdict::Blocked { by: "ip" })
        );
        let later = now + Duration::from_secs(61);
        assert!(t.begin(ip, "a@x", later).is_ok());
    }

    #[test]
    fn concurrent_attempts_count_before_they_finish() {
        let mut t = Throttle::new(settings());
        let now = Instant::now();
        let in_flight: Vec<Attempt> = (0..3).map(|_| t.begin(None, "a@x", now).unwrap()).collect();
        assert_eq!(
            t.begin(None, "a@x", now).err(),
            Some(Verdict::Busy { by: "user" })
        );
        for a in in_flight {
            t.cancel(a);
        }
        assert!(t.begin(None, "a@x", now).is_ok());
    }

    #[test]
    fn a_burst_from_one_address_waits_for_decisions_and_guesses_still_stop_at_the_limit() {
        let mut t = Throttle::new(settings());
        let now = Instant::now();
        let ip = Some("192.0.2.7".parse().unwrap());
        let burst: Vec<Attempt> = (0..5)
            .map(|i| t.begin(ip, &format!("u{i}"), now).unwrap())
            .collect();
        // Five undecided logins from the address: the sixth waits, it is not refused.
        assert_eq!(
            t.begin(ip, "u5", now).err(),
            Some(Verdict::Busy { by: "ip" })
        );
        let mut burst = burst.into_iter();
        t.succeed(burst.next().unwrap());
        let sixth = t.begin(ip, "u5", now).unwrap();
        t.succeed(sixth);
        // The rest turn out to be wrong guesses: 4 failures, one more makes the limit.
        for a in burst {
            t.fail(&a, now);
        }
        fail(&mut t, ip, "u6", now).unwrap();
        assert_eq!(
            t.begin(ip, "u7", now).err(),
            Some(Verdict::Blocked { by: "ip" })
        );
    }

    #[test]
    fn ipv6_counts_by_prefix_and_success_clears_the_user() {
        let mut t = Throttle::new(settings());
        let now = Instant::now();
        for i in 1..=5 {
            let ip: IpAddr = format!("2001:db8::{i}").parse().unwrap();
            fail(&mut t, Some(ip), &format!("u{i}"), now).unwrap();
        }
        let other: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert_eq!(
            t.begin(Some(other), "z", now).err(),
            Some(Verdict::Blocked { by: "ip" })
        );
        fail(&mut t, None, "a@x", now).unwrap();
        fail(&mut t, None, "a@x", now).unwrap();
        let ok = t.begin(None, "a@x", now).unwrap();
        t.succeed(ok);
        assert_eq!(fail(&mut t, None, "a@x", now).unwrap().0, 1);
    }
}

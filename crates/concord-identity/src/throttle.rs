//! Login throttling: repeated failures from one client address, for one username or for any,
//! make further attempts wait for a back-off period that doubles with each lock-out.
//!
//! Kept in memory, bounded in size. Per-(username, address) entries stop guessing at one
//! account; per-address entries stop spraying many accounts. A success clears only the
//! (username, address) entry, so logging into one's own account between guesses does not
//! reset the per-address count. No key is per-username alone, so nobody can lock another
//! person out from a different address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Throttling limits. The defaults: 5 failures for one username or 20 for any username from
/// one address within 5 minutes lock that key for 1 minute, doubling per lock-out up to an
/// hour; keys are forgotten after an hour without failures.
#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// Failures for one (username, address) within `window` before a lock-out.
    pub max_failures_per_user: u32,
    /// Failures for any username from one address within `window` before a lock-out.
    pub max_failures_per_address: u32,
    /// The window in which failures are counted.
    pub window: Duration,
    /// The first lock-out's length; each further one doubles it.
    pub base_lockout: Duration,
    /// The longest lock-out.
    pub max_lockout: Duration,
    /// How long a key is remembered after its last failure (and the lock-out count with it).
    pub forget_after: Duration,
    /// Most keys kept per table; beyond it the stalest are dropped.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures_per_user: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(5 * 60),
            base_lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
            forget_after: Duration::from_secs(3600),
            max_entries: 10_000,
        }
    }
}

/// How long a throttled client must wait (for a `Retry-After` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1.
    pub fn seconds(self) -> u64 {
        let secs = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        secs.max(1)
    }
}

impl std::fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many failed logins; try again in {} seconds",
            self.seconds()
        )
    }
}

#[derive(Clone, Debug)]
struct Entry {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
    lockouts: u32,
    last_failure: Instant,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
            lockouts: 0,
            last_failure: now,
        }
    }

    fn is_stale(&self, now: Instant, config: &ThrottleConfig) -> bool {
        let locked = self.locked_until.is_some_and(|until| until > now);
        !locked && now.saturating_duration_since(self.last_failure) >= config.forget_after
    }

    fn retry_after(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    fn fail(&mut self, now: Instant, limit: u32, config: &ThrottleConfig) {
        if now.saturating_duration_since(self.window_start) > config.window {
            self.window_start = now;
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
        if self.failures >= limit {
            self.lockouts = self.lockouts.saturating_add(1);
            let factor = 2u32.saturating_pow(self.lockouts.saturating_sub(1).min(31));
            let lockout = config
                .base_lockout
                .checked_mul(factor)
                .unwrap_or(config.max_lockout)
                .min(config.max_lockout);
            self.locked_until = Some(now + lockout);
            self.failures = 0;
            self.window_start = now;
        }
    }
}

/// One table of throttle entries, bounded in size.
#[derive(Debug)]
struct Table<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new() -> Self {
        Table {
            entries: HashMap::new(),
        }
    }

    fn retry_after(&self, key: &K, now: Instant) -> Option<Duration> {
        self.entries
            .get(key)
            .and_then(|entry| entry.retry_after(now))
    }

    fn fail(&mut self, key: K, now: Instant, limit: u32, config: &ThrottleConfig) {
        if let Some(entry) = self.entries.get_mut(&key) {
            if entry.is_stale(now, config) {
                *entry = Entry::new(now);
            }
            entry.fail(now, limit, config);
            return;
        }
        if self.entries.len() >= config.max_entries {
            self.entries.retain(|_, entry| !entry.is_stale(now, config));
        }
        if self.entries.len() >= config.max_entries {
            // Still full: drop the entry whose last failure is oldest.
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_failure)
                .map(|(key, _)| key.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        let mut entry = Entry::new(now);
        entry.fail(now, limit, config);
        self.entries.insert(key, entry);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Debug)]
struct Tables {
    by_user: Table<(String, IpAddr)>,
    by_address: Table<IpAddr>,
}

/// In-memory login throttle; share one per server (`Arc<LoginThrottle>`).
#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    tables: Mutex<Tables>,
}

/// The key for an address: IPv4-mapped IPv6 as IPv4, other IPv6 by their /64 (one host
/// usually owns a whole /64, so single addresses would be free to rotate).
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

/// The username part of a key, truncated: usernames here are unvalidated input.
fn username_key(username: &str) -> String {
    let mut end = username.len().min(crate::validate::MAX_NAME_LEN);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    username[..end].to_string()
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(ThrottleConfig::default())
    }
}

impl LoginThrottle {
    /// A throttle with the given limits.
    pub fn new(config: ThrottleConfig) -> Self {
        LoginThrottle {
            config,
            tables: Mutex::new(Tables {
                by_user: Table::new(),
                by_address: Table::new(),
            }),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a login attempt for `username` from `addr` may go ahead now. Call before
    /// checking the password.
    pub fn check_throttle(&self, username: &str, addr: IpAddr) -> Result<(), RetryAfter> {
        self.check_throttle_at(username, addr, Instant::now())
    }

    /// Counts a failed login.
    pub fn record_failure(&self, username: &str, addr: IpAddr) {
        self.record_failure_at(username, addr, Instant::now());
    }

    /// Counts a successful login: clears the (username, address) failures.
    pub fn record_success(&self, username: &str, addr: IpAddr) {
        let key = (username_key(username), address_key(addr));
        self.tables().by_user.entries.remove(&key);
    }

    /// How many keys are remembered (both tables), for tests and metrics.
    pub fn tracked_keys(&self) -> usize {
        let tables = self.tables();
        tables.by_user.len() + tables.by_address.len()
    }

    fn check_throttle_at(
        &self,
        username: &str,
        addr: IpAddr,
        now: Instant,
    ) -> Result<(), RetryAfter> {
        let address = address_key(addr);
        let tables = self.tables();
        let wait = [
            tables
                .by_user
                .retry_after(&(username_key(username), address), now),
            tables.by_address.retry_after(&address, now),
        ]
        .into_iter()
        .flatten()
        .max();
        match wait {
            Some(wait) => Err(RetryAfter(wait)),
            None => Ok(()),
        }
    }

    fn record_failure_at(&self, username: &str, addr: IpAddr, now: Instant) {
        let address = address_key(addr);
        let config = &self.config;
        let mut tables = self.tables();
        tables.by_user.fail(
            (username_key(username), address),
            now,
            config.max_failures_per_user,
            config,
        );
        tables
            .by_address
            .fail(address, now, config.max_failures_per_address, config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn five_failures_lock_the_user_from_that_address_with_growing_backoff() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..4 {
            throttle.record_failure_at("alice", a, t0 + Duration::from_secs(i));
            assert!(throttle
                .check_throttle_at("alice", a, t0 + Duration::from_secs(i))
                .is_ok());
        }
        throttle.record_failure_at("alice", a, t0 + Duration::from_secs(4));
        let wait = throttle
            .check_throttle_at("alice", a, t0 + Duration::from_secs(4))
            .unwrap_err();
        assert_eq!(wait.seconds(), 60);
        assert!(wait.to_string().contains("60 seconds"));

        // Other users from the same address and the same user elsewhere are not locked.
        assert!(throttle
            .check_throttle_at("bob", a, t0 + Duration::from_secs(5))
            .is_ok());
        assert!(throttle
            .check_throttle_at("alice", ip("198.51.100.7"), t0 + Duration::from_secs(5))
            .is_ok());

        // After the lock-out, five more failures lock for twice as long.
        let t1 = t0 + Duration::from_secs(65);
        assert!(throttle.check_throttle_at("alice", a, t1).is_ok());
        for _ in 0..5 {
            throttle.record_failure_at("alice", a, t1);
        }
        assert_eq!(
            throttle
                .check_throttle_at("alice", a, t1)
                .unwrap_err()
                .seconds(),
            120
        );

        // Long after, the key is forgotten and the back-off starts again.
        let t2 = t1 + Duration::from_secs(2 * 3600);
        for _ in 0..5 {
            throttle.record_failure_at("alice", a, t2);
        }
        assert_eq!(
            throttle
                .check_throttle_at("alice", a, t2)
                .unwrap_err()
                .seconds(),
            60
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..10 {
            // One failure every 2 minutes: never 5 within 5 minutes... except that the window
            // is fixed from its first failure, so at most 3 fall into one window.
            throttle.record_failure_at("alice", a, t0 + Duration::from_secs(120 * i));
            assert!(throttle
                .check_throttle_at("alice", a, t0 + Duration::from_secs(120 * i))
                .is_ok());
        }
    }

    #[test]
    fn success_clears_the_user_entry_but_not_the_address_count() {
        let config = ThrottleConfig {
            max_failures_per_address: 8,
            ..Default::default()
        };
        let throttle = LoginThrottle::new(config);
        let t0 = Instant::now();
        let a = ip("2001:db8::1");
        for _ in 0..4 {
            throttle.record_failure_at("alice", a, t0);
        }
        throttle.record_success("alice", a);
        for _ in 0..4 {
            throttle.record_failure_at("alice", a, t0);
        }
        // 4 user failures since the success: the user key is open…
        // …but 8 failures from the address (same /64 for IPv6) lock every username.
        let wait = throttle
            .check_throttle_at("carol", ip("2001:db8::ffff"), t0)
            .unwrap_err();
        assert_eq!(wait.seconds(), 60);
        assert!(throttle
            .check_throttle_at("carol", ip("2001:db8:0:1::1"), t0)
            .is_ok());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            throttle.record_failure_at("alice", ip("::ffff:192.0.2.9"), t0);
        }
        assert!(throttle
            .check_throttle_at("alice", ip("192.0.2.9"), t0)
            .is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let config = ThrottleConfig {
            max_entries: 100,
            ..Default::default()
        };
        let throttle = LoginThrottle::new(config);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let addr = IpAddr::from(i.to_be_bytes());
            throttle.record_failure_at(&format!("user{i}{}", "x".repeat(500)), addr, t0);
        }
        assert!(
            throttle.tracked_keys() <= 200,
            "{}",
            throttle.tracked_keys()
        );
        let tables = throttle.tables();
        assert!(tables
            .by_user
            .entries
            .keys()
            .all(|(name, _)| name.len() <= 64));
    }
}

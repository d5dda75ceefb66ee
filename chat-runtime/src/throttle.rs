//! The login throttle: failed logins slow a password guesser to a crawl, and nobody else.
//!
//! Only refusals that say the credentials were wrong (`auth_failed`) count, per name (from any
//! address) and per client address (for any name). The [`FAILURES`]th failure within
//! [`WINDOW`] locks that name, or that address, for [`LOCK`]: a login with a password or token
//! for a locked name, or from a locked address, is answered `rate_limited` at once, without its
//! credentials being checked, so a guessing loop costs one hash per [`FAILURES`] tries a
//! minute. Guest logins are never throttled, and a locked address's other frames go on as usual.
//!
//! The state is the core task's alone (no lock); time is passed in. Entries are dropped once
//! their window and lock are over, so the table holds only recent failures.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

use chat_core::UserKey;
use tokio::time::Instant;

/// Failures within [`WINDOW`] that lock a name or an address.
pub const FAILURES: usize = 5;
/// How far back failures count.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a lock lasts.
pub const LOCK: Duration = Duration::from_secs(60);
/// Above this many tracked names or addresses, stale entries are swept out.
const SWEEP_ABOVE: usize = 1024;

/// Recent failed logins, per name and per address. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    names: Failures<UserKey>,
    addrs: Failures<IpAddr>,
}

/// What [`LoginThrottle::failed`] started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Locked {
    /// The name is locked from now on.
    pub(crate) name: bool,
    /// The address is locked from now on.
    pub(crate) addr: bool,
}

impl LoginThrottle {
    /// Whether a login with credentials for `name` from `addr` is refused unchecked now.
    pub(crate) fn is_locked(
        &mut self,
        name: Option<&UserKey>,
        addr: Option<IpAddr>,
        now: Instant,
    ) -> bool {
        name.is_some_and(|name| self.names.is_locked(name, now))
            || addr.is_some_and(|addr| self.addrs.is_locked(&addr, now))
    }

    /// Counts one failed login; says which locks it started.
    pub(crate) fn failed(
        &mut self,
        name: Option<&UserKey>,
        addr: Option<IpAddr>,
        now: Instant,
    ) -> Locked {
        Locked {
            name: name.is_some_and(|name| self.names.failed(name.clone(), now)),
            addr: addr.is_some_and(|addr| self.addrs.failed(addr, now)),
        }
    }
}

/// Failures and locks for one kind of key.
#[derive(Debug)]
struct Failures<K> {
    entries: HashMap<K, Entry>,
}

impl<K> Default for Failures<K> {
    fn default() -> Self {
        Failures {
            entries: HashMap::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// When the recent failures happened, oldest first (at most [`FAILURES`]).
    recent: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Entry {
    fn is_stale(&self, now: Instant) -> bool {
        self.locked_until.is_none_or(|until| until <= now)
            && self.recent.back().is_none_or(|last| *last + WINDOW <= now)
    }
}

impl<K: Hash + Eq> Failures<K> {
    fn is_locked(&mut self, key: &K, now: Instant) -> bool {
        self.entries
            .get(key)
            .and_then(|entry| entry.locked_until)
            .is_some_and(|until| now < until)
    }

    /// Counts a failure; `true` if it starts a lock.
    fn failed(&mut self, key: K, now: Instant) -> bool {
        if self.entries.len() > SWEEP_ABOVE {
            self.entries.retain(|_, entry| !entry.is_stale(now));
        }
        let entry = self.entries.entry(key).or_default();
        if entry.locked_until.is_some_and(|until| now < until) {
            return false;
        }
        while entry.recent.front().is_some_and(|at| *at + WINDOW <= now) {
            entry.recent.pop_front();
        }
        entry.recent.push_back(now);
        if entry.recent.len() < FAILURES {
            return false;
        }
        entry.recent.clear();
        entry.locked_until = Some(now + LOCK);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> UserKey {
        chat_core::UserName::parse(name).unwrap().key()
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn the_fifth_failure_in_a_minute_locks_the_name_for_a_minute() {
        let mut throttle = LoginThrottle::default();
        let start = Instant::now();
        let alice = key("alice");
        for n in 0..4u8 {
            // From different addresses: the name counts them all.
            let locked = throttle.failed(Some(&alice), ip(n), start);
            assert_eq!(locked, Locked::default());
        }
        assert!(!throttle.is_locked(Some(&alice), ip(9), start));
        let locked = throttle.failed(Some(&alice), ip(4), start + Duration::from_secs(59));
        assert!(locked.name && !locked.addr);
        let during = start + Duration::from_secs(100);
        assert!(throttle.is_locked(Some(&alice), ip(9), during));
        assert!(!throttle.is_locked(Some(&key("bob")), ip(9), during));
        let after = start + Duration::from_secs(59) + LOCK;
        assert!(!throttle.is_locked(Some(&alice), ip(9), after));
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let mut throttle = LoginThrottle::default();
        let start = Instant::now();
        let alice = key("alice");
        for n in 0..10u32 {
            let at = start + Duration::from_secs(16) * n;
            throttle.failed(Some(&alice), None, at);
            assert!(
                !throttle.is_locked(Some(&alice), None, at),
                "four failures a minute never lock"
            );
        }
    }

    #[test]
    fn an_address_trying_many_names_is_locked() {
        let mut throttle = LoginThrottle::default();
        let now = Instant::now();
        for n in 0..FAILURES {
            throttle.failed(Some(&key(&format!("user{n}"))), ip(7), now);
        }
        assert!(throttle.is_locked(Some(&key("someone")), ip(7), now));
        assert!(throttle.is_locked(None, ip(7), now), "tokens from it too");
        assert!(!throttle.is_locked(Some(&key("someone")), ip(8), now));
    }

    #[test]
    fn stale_entries_are_swept_so_the_table_stays_small() {
        let mut throttle = LoginThrottle::default();
        let start = Instant::now();
        for n in 0..=SWEEP_ABOVE {
            throttle.failed(Some(&key(&format!("u{n}"))), None, start);
        }
        let later = start + WINDOW + LOCK;
        throttle.failed(Some(&key("fresh")), None, later);
        assert_eq!(throttle.names.entries.len(), 1);
    }
}

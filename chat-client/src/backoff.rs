//! [`Backoff`]: how long a session waits before each reconnection attempt. The wait doubles from
//! `first` up to `max`, and is spread by ±20 % so that the clients one server restart dropped do
//! not all come back in the same millisecond.

use std::time::Duration;

/// How long to wait before each reconnection attempt: `first`, doubling up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry (500 ms).
    pub first: Duration,
    /// The longest wait (15 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(15),
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (1 for the first), without jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// [`delay`](Self::delay) spread by ±20 % with `seed`, so that clients the same restart
    /// dropped do not all come back in the same millisecond.
    pub fn jittered(&self, attempt: u32, seed: u64) -> Duration {
        let base = self.delay(attempt);
        // 0.8 ..= 1.2 of the base, in steps of 0.1 %.
        let permille = 800 + (mix(seed ^ u64::from(attempt)) % 401);
        base.mul_f64(permille as f64 / 1000.0)
    }
}

/// A 64-bit mixer (splitmix64's finaliser): spreads a seed's bits for the jitter.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_bounded_jitter() {
        let backoff = Backoff::default();
        let waits: Vec<u64> = (1..=7)
            .map(|a| backoff.delay(a).as_millis() as u64)
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 15000, 15000]);
        assert_eq!(backoff.delay(u32::MAX), backoff.max);
        for seed in 0..200 {
            let wait = backoff.jittered(2, seed);
            assert!(
                (800..=1200).contains(&(wait.as_millis() as u64)),
                "{wait:?}"
            );
        }
    }
}

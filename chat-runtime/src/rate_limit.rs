//! The per-connection rate limit, shared by every transport.
//!
//! A token bucket that starts full: `N` frames per second, bursts up to `2N`. A frame over the
//! limit is refused (the transport answers `rate_limited` and the connection stays). Refusals
//! less than [`CALM`] apart form one episode; a connection whose episode has lasted
//! [`FLOOD_GRACE`] is flooding and is closed, even though the bucket lets a frame through now and
//! then. Time is passed in, so the rule is tested without sleeping.

use std::time::Duration;

use tokio::time::Instant;

/// How long a connection may keep sending over its limit before it is closed.
pub const FLOOD_GRACE: Duration = Duration::from_secs(3);

/// Refusals this far apart are separate episodes: a client that went quiet for this long was
/// within its limit in between.
pub const CALM: Duration = Duration::from_secs(1);

/// The verdict on one incoming frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Within the limit: handle it.
    Allowed,
    /// Over the limit: answer `rate_limited`, drop the frame.
    Limited,
    /// Over the limit for longer than [`FLOOD_GRACE`]: close the connection (1008).
    Flooding,
}

/// One connection's token bucket.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// The first and the latest refusal of the current episode.
    episode: Option<(Instant, Instant)>,
}

impl RateLimiter {
    /// A full bucket for `per_second` frames per second, or `None` when the limit is disabled (0).
    pub fn new(per_second: u32, now: Instant) -> Option<Self> {
        (per_second > 0).then(|| {
            let burst = 2.0 * f64::from(per_second);
            RateLimiter {
                per_second: f64::from(per_second),
                burst,
                tokens: burst,
                last: now,
                episode: None,
            }
        })
    }

    /// Takes a token for a frame that arrived at `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Allowed;
        }
        let since = match self.episode {
            Some((since, latest)) if now.saturating_duration_since(latest) < CALM => since,
            _ => now,
        };
        self.episode = Some((since, now));
        if now.saturating_duration_since(since) >= FLOOD_GRACE {
            Admission::Flooding
        } else {
            Admission::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_passes_then_frames_are_limited() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(5, t0).unwrap();
        let verdicts: Vec<Admission> = (0..11).map(|_| limiter.admit(t0)).collect();
        assert!(verdicts[..10].iter().all(|v| *v == Admission::Allowed));
        assert_eq!(verdicts[10], Admission::Limited);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10, t0).unwrap();
        for _ in 0..20 {
            assert_eq!(limiter.admit(t0), Admission::Allowed);
        }
        assert_eq!(limiter.admit(t0), Admission::Limited);
        let later = t0 + Duration::from_millis(100);
        assert_eq!(
            limiter.admit(later),
            Admission::Allowed,
            "one token per 100 ms"
        );
        assert_eq!(limiter.admit(later), Admission::Limited);
    }

    #[test]
    fn three_seconds_over_the_limit_is_a_flood_even_if_some_frames_pass() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1, t0).unwrap();
        // 100 frames a second against a limit of 1: one gets through now and then, but the
        // episode of refusals goes on, and three seconds into it the connection is flooding.
        let mut first_flood = None;
        let mut allowed = 0;
        for step in 0..400u32 {
            let t = t0 + Duration::from_millis(10 * u64::from(step));
            match limiter.admit(t) {
                Admission::Allowed => allowed += 1,
                Admission::Limited => {}
                Admission::Flooding => {
                    first_flood = Some(t - t0);
                    break;
                }
            }
        }
        assert!(allowed > 2, "the bucket still refills during the episode");
        let first_flood = first_flood.expect("a sustained flood is detected");
        assert!(
            first_flood >= FLOOD_GRACE && first_flood < FLOOD_GRACE + Duration::from_millis(50)
        );
    }

    #[test]
    fn a_calm_second_ends_the_episode() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1, t0).unwrap();
        limiter.admit(t0);
        limiter.admit(t0);
        assert_eq!(limiter.admit(t0), Admission::Limited);
        // Quiet for two seconds, then over the limit again: a new episode, not a flood.
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(limiter.admit(t2), Admission::Allowed);
        assert_eq!(limiter.admit(t2), Admission::Allowed);
        assert_eq!(limiter.admit(t2), Admission::Limited);
        let t3 = t0 + Duration::from_millis(3500);
        assert_eq!(limiter.admit(t3), Admission::Allowed);
        assert_eq!(
            limiter.admit(t3),
            Admission::Limited,
            "1.5 s into this episode"
        );
    }

    #[test]
    fn zero_disables_the_limit() {
        assert!(RateLimiter::new(0, Instant::now()).is_none());
    }
}

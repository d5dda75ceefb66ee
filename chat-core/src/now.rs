//! [`Now`]: the time an input happens at, in the two clocks the core needs.
//!
//! A message's `ts` is wall-clock time, because that is what people read. Deadlines (how long a
//! connection may take to log in) must not move when the wall clock is stepped (an NTP
//! correction, an administrator's `date -s`), so they are kept on a monotonic clock: any
//! reading that only ever goes forward, from an origin the runtime picks (its start, say).
//! The core never reads either clock; the runtime passes both with every input.

use std::time::Duration;

use crate::timestamp::Timestamp;

/// The moment an input happens at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Wall-clock time: what accepted messages are stamped with.
    pub wall: Timestamp,
    /// Monotonic time since an origin of the runtime's choosing: what deadlines are measured
    /// on, and what [`Chat::poll_timeout`](crate::Chat::poll_timeout) answers in.
    pub monotonic: Duration,
}

impl Now {
    /// A moment read from both clocks.
    pub fn new(wall: Timestamp, monotonic: Duration) -> Self {
        Now { wall, monotonic }
    }
}

impl From<Timestamp> for Now {
    /// A moment whose monotonic reading is the wall clock's time since the Unix epoch: right for
    /// simulations and tests, whose clock never steps back.
    fn from(wall: Timestamp) -> Self {
        Now {
            wall,
            monotonic: Duration::from_millis(wall.unix_millis()),
        }
    }
}

//! Timeouts that cost nothing when the work finishes at once.
//!
//! Transports bound every socket write in time, and most writes complete on their first poll
//! (the kernel's buffer has room). Arming a tokio timer for each of them would register and
//! deregister it in the timer wheel for nothing, so [`within`] polls the work once first and
//! arms the timer only if it has to wait.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;

/// The work did not finish in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct TimedOut;

/// Runs `work` to completion, or gives up after `limit`.
pub async fn within<F: Future>(limit: Duration, work: F) -> Result<F::Output, TimedOut> {
    let mut work = std::pin::pin!(work);
    if let Some(done) = (&mut work).now_or_never() {
        return Ok(done);
    }
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_work_needs_no_timer_and_slow_work_times_out() {
        assert_eq!(within(Duration::ZERO, async { 7 }).await, Ok(7));
        let never = std::future::pending::<()>();
        assert_eq!(
            within(Duration::from_millis(10), never).await,
            Err(TimedOut)
        );
        let later = async {
            tokio::task::yield_now().await;
            5
        };
        assert_eq!(within(Duration::from_secs(10), later).await, Ok(5));
    }
}

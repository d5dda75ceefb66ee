//! [`Helped`]: a task that the tasks feeding it may run themselves, on one thread.
//!
//! On a current-thread runtime, a task that another task wakes is polled after every task
//! already woken: a connection that hands the core a message would have it handled only after
//! a round of every connection the last broadcast woke (at 1,000 receivers, a thousand writes).
//! A minimal fan-out server has no such hand-off: the task that reads a line copies it to every
//! client at once. So the core and the delivery (one future, see `runtime.rs`) are kept here,
//! and a connection that has just handed the core an input [`help`](Helped::help)s: it polls
//! that future itself, at once, when nobody else is polling it. The future is polled with its
//! own task's waker, so whatever it waits on still wakes its own task; a helper only moves its
//! next poll earlier. Nothing is decided differently: the core sees the same inputs in the same
//! order, only sooner.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};

/// A future shared by its own task and its helpers.
pub(crate) struct Helped<F: Future> {
    state: Mutex<State<F>>,
}

struct State<F: Future> {
    /// `None` once finished.
    future: Option<Pin<Box<F>>>,
    /// The waker of the task that owns the future, from its last poll.
    waker: Option<Waker>,
    /// The thread that polled it last: a helper on another thread (a plain thread, another
    /// runtime) does not poll it, as its timers and spawns belong to the owner's runtime.
    thread: Option<ThreadId>,
    /// The output, when a helper's poll finished the future.
    output: Option<F::Output>,
}

impl<F: Future> Helped<F> {
    /// Shares `future`; [`run`](Helped::run) it on its own task.
    pub(crate) fn new(future: F) -> Arc<Self> {
        Arc::new(Helped {
            state: Mutex::new(State {
                future: Some(Box::pin(future)),
                waker: None,
                thread: None,
                output: None,
            }),
        })
    }

    /// The owner task's side: polls the future until it finishes, and returns its output.
    ///
    /// # Panics
    ///
    /// If the future panicked in a helper's poll (the helper's task panics too): the owner's
    /// join handle then reports the panic, as it would had the owner polled.
    pub(crate) fn run(self: Arc<Self>) -> impl Future<Output = F::Output> {
        // If this task is dropped unfinished (its runtime went away without a shutdown, even
        // before its first poll), the future goes with it: nothing may poll it outside its
        // runtime, and dropping it closes its channels, so those who feed it learn it is gone.
        let owner = Owner(self);
        async move {
            std::future::poll_fn(|cx| {
                // Poisoned only by a panic in the owner's own poll, which ended this task.
                let mut state = owner.0.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(output) = state.output.take() {
                    return Poll::Ready(output);
                }
                state.thread = Some(thread::current().id());
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                let future = state
                    .future
                    .as_mut()
                    .expect("the future is only gone after its output was taken or it panicked");
                let polled = future.as_mut().poll(cx);
                if polled.is_ready() {
                    state.future = None;
                }
                polled
            })
            .await
        }
    }

    /// A feeder's side: polls the future now, with its owner's waker, unless it is being
    /// polled already, has finished, has never been polled by its owner, or this is not the
    /// owner's thread.
    pub(crate) fn help(&self) {
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        if state.thread != Some(thread::current().id()) {
            return;
        }
        let Some(waker) = state.waker.clone() else {
            return;
        };
        let Some(future) = state.future.as_mut() else {
            return;
        };
        let mut cx = Context::from_waker(&waker);
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(&mut cx)
        }));
        match polled {
            Ok(Poll::Ready(output)) => {
                state.future = None;
                state.output = Some(output);
                drop(state);
                waker.wake();
            }
            Ok(Poll::Pending) => {}
            Err(panic) => {
                // The owner's next poll finds the future gone and panics; so does this task.
                state.future = None;
                drop(state);
                waker.wake();
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// The owner task's hold on the future; see [`Helped::run`].
struct Owner<F: Future>(Arc<Helped<F>>);

impl<F: Future> Drop for Owner<F> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        let future = state.future.take();
        drop(state);
        // Dropped outside the lock: whatever its drop does may call `help`.
        drop(future);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn a_helper_runs_the_future_at_once_and_the_owner_still_gets_its_output() {
        let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
        let (seen_tx, mut seen) = mpsc::unbounded_channel::<u32>();
        let helped = Helped::new(async move {
            let mut sum = 0;
            while let Some(n) = rx.recv().await {
                sum += n;
                let _ = seen_tx.send(n);
            }
            sum
        });
        let owner = tokio::spawn(helped.clone().run());
        // Let the owner poll once, so the future has a waker to be helped with.
        tokio::task::yield_now().await;
        tx.send(1).unwrap();
        helped.help();
        // The helper's poll handled the value: nothing else ran since the send.
        assert_eq!(seen.try_recv(), Ok(1));
        tx.send(2).unwrap();
        drop(tx);
        assert_eq!(owner.await.unwrap(), 3);
        assert_eq!(seen.try_recv(), Ok(2));
    }

    #[tokio::test]
    async fn help_before_the_owner_polled_does_nothing() {
        let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
        let helped = Helped::new(async move { rx.recv().await });
        tx.send(7).unwrap();
        helped.help();
        let owner = tokio::spawn(helped.clone().run());
        assert_eq!(owner.await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn a_helper_on_another_thread_leaves_the_future_to_its_owner() {
        let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
        let (seen_tx, mut seen) = mpsc::unbounded_channel::<u32>();
        let helped = Helped::new(async move {
            while let Some(n) = rx.recv().await {
                let _ = seen_tx.send(n);
            }
        });
        let owner = tokio::spawn(helped.clone().run());
        tokio::task::yield_now().await;
        tx.send(1).unwrap();
        let elsewhere = helped.clone();
        std::thread::spawn(move || elsewhere.help()).join().unwrap();
        assert!(seen.try_recv().is_err(), "another thread does not poll it");
        helped.help();
        assert_eq!(seen.try_recv(), Ok(1));
        drop(tx);
        owner.await.unwrap();
    }

    #[test]
    fn a_future_whose_owner_is_dropped_is_dropped_with_it() {
        let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
        let helped = Helped::new(async move { while rx.recv().await.is_some() {} });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime starts");
        runtime.spawn(helped.clone().run());
        runtime.block_on(tokio::task::yield_now());
        assert!(!tx.is_closed(), "the owner holds the future");
        drop(runtime);
        assert!(
            tx.is_closed(),
            "the future, and its receiver, went with the owner task"
        );
        helped.help();
    }

    #[tokio::test]
    async fn a_future_a_helper_finishes_is_handed_to_the_owner() {
        let (tx, rx) = tokio::sync::oneshot::channel::<&str>();
        let helped = Helped::new(async move { rx.await.unwrap() });
        let owner = tokio::spawn(helped.clone().run());
        tokio::task::yield_now().await;
        tx.send("done").unwrap();
        helped.help();
        assert_eq!(owner.await.unwrap(), "done");
    }
}

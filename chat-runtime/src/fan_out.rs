//! A [`Run`]: consecutive broadcasts to one recipient set, delivered as one.
//!
//! At load, a connection's task hands the core every frame its client has already sent before
//! the core runs ([`drive`](crate::drive)), so one round of the delivery task often holds
//! several messages that one sender sent to one room: consecutive broadcasts to the same
//! recipient set (the room's cached set, one shared allocation) skipping the same connection
//! (the sender, who gets its own copies as echoes). The delivery task gathers them into a run,
//! joins their frames once per wire format that allows it ([`WireFormat::joins`]), and pushes
//! the whole run to each recipient at once: one lock, one reference count and one buffer to
//! write per recipient, instead of one of each per message. A minimal fan-out server copies
//! every message into every client's buffer; this copies a run once.
//!
//! No recipient sees anything in another order: the delivery task ends a run before it sends
//! anything else to anyone the run is for (only outputs to the skipped sender may pass it).
//!
//! A run is also ended once it holds [`Run::FULL`] bytes: a run is pushed whole, and weighed
//! against a recipient's outbox bound whole, so a long one (a cluster replica catching up)
//! could overflow the outbox of a client that reads fast enough to keep up with the same
//! messages one by one.

use std::sync::Arc;

use bytes::Bytes;
use chat_core::{ConnectionId, Event, Recipients, SendKind};

use crate::outbox::event_weight;
use crate::wire::{WireFormat, join};

/// Broadcasts waiting to be delivered together.
pub(crate) struct Run {
    /// Who gets them.
    pub(crate) to: Recipients,
    /// The one recipient skipped (the sender).
    pub(crate) except: Option<ConnectionId>,
    /// The events, in order.
    pub(crate) events: Vec<Arc<Event>>,
    /// About the bytes of their frames ([`event_weight`]).
    weight: usize,
}

/// A run's frames in one wire format: what each recipient is pushed, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frames {
    /// The pushes: one, joined, where the format allows it; else a frame each.
    pub(crate) pushes: Vec<Bytes>,
    /// How many frames they hold (events the format shows nothing for have none).
    pub(crate) frames: u64,
}

impl Run {
    /// The bytes of frames at which a run is full: a thousand chat lines' worth at most, a
    /// small part of any sensible outbox bound (1 MiB by default).
    pub(crate) const FULL: usize = 64 * 1024;

    /// A run of one broadcast.
    pub(crate) fn new(to: Recipients, except: Option<ConnectionId>, event: Arc<Event>) -> Self {
        Run {
            to,
            except,
            weight: event_weight(&event),
            events: vec![event],
        }
    }

    /// Whether a broadcast to `to`, skipping `except`, may join this run: the same recipients,
    /// and room for more.
    pub(crate) fn continued_by(&self, to: &Recipients, except: Option<ConnectionId>) -> bool {
        self.to.ptr_eq(to) && self.except == except && self.weight < Self::FULL
    }

    /// Adds a broadcast that [`continued_by`](Self::continued_by) let in.
    pub(crate) fn push(&mut self, event: Arc<Event>) {
        self.weight += event_weight(&event);
        self.events.push(event);
    }

    /// Whether something for `conn` alone may be carried out while this run waits: only if
    /// the run skips it, so it sees nothing of the run.
    pub(crate) fn passes(&self, conn: ConnectionId) -> bool {
        self.except == Some(conn)
    }

    /// The run's frames in `format`, encoded once for all its recipients.
    pub(crate) fn encode(&self, format: &dyn WireFormat) -> Frames {
        let mut frames: Vec<Bytes> = self
            .events
            .iter()
            .filter_map(|event| format.encode(event, None, SendKind::Push))
            .collect();
        let count = frames.len() as u64;
        if frames.len() > 1 && format.joins() {
            frames = vec![join(frames.iter().map(|frame| &frame[..]))];
        }
        Frames {
            pushes: frames,
            frames: count,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chat_core::{Event, Ref, SendKind};

    use super::*;

    /// Shows pongs only, as `p`; joins if `joins`.
    struct Letters {
        joins: bool,
    }

    impl WireFormat for Letters {
        fn name(&self) -> &'static str {
            "letters"
        }

        fn encode(&self, event: &Event, _: Option<&Ref>, _: SendKind) -> Option<Bytes> {
            matches!(event, Event::Pong).then(|| Bytes::from_static(b"p"))
        }

        fn joins(&self) -> bool {
            self.joins
        }
    }

    fn recipients() -> Recipients {
        [ConnectionId(1), ConnectionId(2)].into_iter().collect()
    }

    fn run_of(events: Vec<Event>) -> Run {
        let mut events = events.into_iter().map(Arc::new);
        let first = events.next().expect("a run has a first event");
        let mut run = Run::new(recipients(), None, first);
        events.for_each(|event| run.push(event));
        run
    }

    #[test]
    fn a_joining_format_gets_one_push_holding_every_frame_shown() {
        let run = run_of(vec![
            Event::Pong,
            Event::Rooms { rooms: Vec::new() },
            Event::Pong,
            Event::Pong,
        ]);
        let frames = run.encode(&Letters { joins: true });
        assert_eq!(frames.pushes, [Bytes::from_static(b"ppp")]);
        assert_eq!(
            frames.frames, 3,
            "the event it shows nothing for has no frame"
        );
    }

    #[test]
    fn any_other_format_gets_a_push_per_frame() {
        let run = run_of(vec![
            Event::Pong,
            Event::Rooms { rooms: Vec::new() },
            Event::Pong,
        ]);
        let frames = run.encode(&Letters { joins: false });
        assert_eq!(frames.pushes.len(), 2);
        assert_eq!(frames.frames, 2);
    }

    #[test]
    fn a_run_continues_only_with_the_same_recipient_set_and_exception() {
        let to = recipients();
        let run = Run::new(to.clone(), Some(ConnectionId(1)), Arc::new(Event::Pong));
        assert!(run.continued_by(&to, Some(ConnectionId(1))));
        assert!(!run.continued_by(&to, None), "another sender");
        assert!(
            !run.continued_by(&recipients(), Some(ConnectionId(1))),
            "an equal set that is not the same allocation (the room's cached one)"
        );
        assert!(run.passes(ConnectionId(1)));
        assert!(!run.passes(ConnectionId(2)));
    }

    #[test]
    fn a_run_takes_no_more_once_it_holds_full_bytes_of_frames() {
        let to = recipients();
        let error = |len: usize| {
            Arc::new(Event::Error {
                code: chat_core::ErrorCode::BadFrame,
                message: "x".repeat(len),
            })
        };
        let mut run = Run::new(to.clone(), None, error(Run::FULL / 2));
        assert!(run.continued_by(&to, None));
        run.push(error(Run::FULL / 2 - 200));
        assert!(
            run.continued_by(&to, None),
            "just under: the frames' own bytes count"
        );
        run.push(error(0));
        assert!(!run.continued_by(&to, None), "full");
        assert_eq!(run.events.len(), 3);
    }
}

//! [`Resume`]: what the session has shown, so that a reconnection picks up where the last
//! connection left off and shows nothing twice.
//!
//! Message ids are one increasing sequence over room messages and DMs, so one number says how far
//! the user got: the newest id shown. Every login after the first sends it as `since`; the
//! server answers each room's `joined` with the messages after it (instead of the last few), and
//! an account's missed DMs follow as `dm` frames with `replay`. A guest's room that is not among
//! the welcome's rooms is joined again with the same `since`.
//!
//! When a resumed `joined` says `complete: false` (more were missed than the server's resume
//! limit, or its memory no longer reaches back), the session pages backwards with `history`
//! before the oldest message it got, until a page reaches `since` (or is empty). Meanwhile it
//! holds that `joined` and the room's live messages, then reports one `joined` whose history is
//! every missed message, oldest first, followed by what it held. In a terminal the missed
//! messages of a room so read as one block, in order, once, rather than the newest ones first and
//! the older ones printed after them, out of order. The pages are few and quick (500 messages
//! each), so the wait is short.
//!
//! An account's DMs at a resumed login come in two runs: those queued while it was offline, then
//! the older ones its last connection missed, replayed. The session holds the login's DMs until
//! the `pong` of a `ping` it sends right after the welcome (the server answers in order, so the
//! `pong` follows all of them), then shows them in id order.
//!
//! Safety nets, for servers that ignore `since` and for the races of a reconnection: a room's
//! message is not shown when a message of that room with the same or a later id was shown (the
//! room's messages are shown in id order), and a DM whose id was shown is not shown again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chat_core::{Command, Event, Ref, RoomMessage, RoomName, SendKind};

/// The size of the pages asked for while catching up: the protocol's largest.
const PAGE: i64 = 500;

/// How many DM ids are remembered to drop a DM shown before. Replays come after the `since` of
/// the login, so the newest few thousand are all it takes; the oldest are forgotten first.
const DM_IDS_KEPT: usize = 4096;

/// A server event to report, as [`Update::Server`](crate::Update::Server) carries it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Shown {
    pub(crate) event: Event,
    pub(crate) answers_command: bool,
    pub(crate) kind: SendKind,
}

/// What [`Resume::on_event`] makes of one server event.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Step {
    /// What to report, in order (nothing while it is held, several when a catch-up ends).
    pub(crate) shown: Vec<Shown>,
    /// A page to ask for; its `ref` goes to [`Resume::asked`].
    pub(crate) page: Option<PageWanted>,
}

/// A `history` page a catch-up needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PageWanted {
    pub(crate) room: RoomName,
    /// Messages older than this id (`None`: the newest).
    pub(crate) before: Option<u64>,
}

impl PageWanted {
    /// The `history` frame that asks for it.
    pub(crate) fn command(&self) -> Command {
        Command::room_history(self.room.as_str(), self.before, Some(PAGE))
    }
}

/// A room whose missed messages this connection has not shown yet.
#[derive(Debug)]
enum Pending {
    /// Its `joined` has not come yet.
    Awaiting { since: u64 },
    /// Its `joined` said `complete: false`: paging back.
    Paging(CatchUp),
}

impl Pending {
    fn since(&self) -> u64 {
        match self {
            Pending::Awaiting { since } => *since,
            Pending::Paging(catch_up) => catch_up.since,
        }
    }
}

/// A room being caught up with: its `joined` and the room's live events, held until the pages
/// reach `since`.
#[derive(Debug)]
struct CatchUp {
    since: u64,
    joined: Shown,
    /// The pages so far, newest page first, each oldest first; only messages after `since`.
    pages: Vec<Vec<Arc<RoomMessage>>>,
    /// The room's events that came meanwhile, in order.
    held: Vec<Shown>,
    /// The `ref` of the page asked for.
    asked: Option<Ref>,
    /// The `before` of that page.
    before: Option<u64>,
}

/// The DMs of a resumed login, held until its burst of frames ends.
#[derive(Debug)]
struct DmBurst {
    /// The login's `since`.
    since: u64,
    /// The `ref` of the `ping` whose `pong` ends the burst.
    end: Option<Ref>,
    held: Vec<Shown>,
}

/// What the session has shown, and what the current connection still has to show of what was
/// missed. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// The newest message id shown, rooms and DMs.
    seen: Option<u64>,
    /// The newest message id shown per room.
    newest: HashMap<RoomName, u64>,
    /// The ids of the newest DMs shown.
    dms: BTreeSet<u64>,
    /// The `since` this connection's login sent (`None`: a first login).
    since: Option<u64>,
    /// Rooms whose missed messages are not all shown yet.
    pending: HashMap<RoomName, Pending>,
    /// Rooms joined at a re-login that the session leaves again (a guest's default room, when
    /// the guest was elsewhere): nothing of them is news.
    leaving: HashSet<RoomName>,
    /// After a resumed login, until its burst ends.
    dm_burst: Option<DmBurst>,
}

impl Resume {
    /// The `since` for the login of a new connection: none on a first login; after that the
    /// newest id shown, or less while a room's missed messages were not all shown when the last
    /// connection ended (the safety nets drop what comes twice).
    pub(crate) fn login(&mut self, reconnection: bool) -> Option<u64> {
        self.since = reconnection.then(|| {
            let pending = self.pending.values().map(Pending::since);
            let dms = self.dm_burst.as_ref().map(|burst| burst.since);
            pending.chain(dms).chain(self.seen).min().unwrap_or(0)
        });
        self.since
    }

    /// The `since` of this connection's login.
    pub(crate) fn since(&self) -> Option<u64> {
        self.since
    }

    /// The connection ended: what was held is dropped unshown (the next login's `since` asks for
    /// it again).
    pub(crate) fn disconnected(&mut self) {
        for pending in self.pending.values_mut() {
            *pending = Pending::Awaiting {
                since: pending.since(),
            };
        }
        self.leaving.clear();
        if let Some(burst) = &mut self.dm_burst {
            burst.held.clear();
            burst.end = None;
        }
    }

    /// The login was welcomed into `rooms`: after a resumed login, their `joined` frames carry
    /// what was missed.
    pub(crate) fn welcomed(&mut self, rooms: &[RoomName]) {
        let Some(since) = self.since else {
            return;
        };
        // This login's `since` is at most every pending one's: it asks for all of it again.
        self.pending.clear();
        for room in rooms {
            self.pending
                .insert(room.clone(), Pending::Awaiting { since });
        }
        self.dm_burst = Some(DmBurst {
            since,
            end: None,
            held: Vec::new(),
        });
    }

    /// Whether the login's DMs wait for the `pong` of a `ping`, to be shown in order.
    pub(crate) fn wants_burst_end(&self) -> bool {
        self.dm_burst
            .as_ref()
            .is_some_and(|burst| burst.end.is_none())
    }

    /// The `ping` whose `pong` ends the login's burst was sent with `reference`.
    pub(crate) fn burst_ends_at(&mut self, reference: Ref) {
        if let Some(burst) = &mut self.dm_burst {
            burst.end = Some(reference);
        }
    }

    /// Whether a `pong` with `reference` ends the login's burst (it is then handed to
    /// [`on_event`](Self::on_event); other pongs are not news).
    pub(crate) fn ends_burst(&self, reference: Option<&Ref>) -> bool {
        let end = self.dm_burst.as_ref().and_then(|burst| burst.end.as_ref());
        end.is_some() && end == reference
    }

    /// After a resumed login, the session joins `room` again with this connection's `since`.
    pub(crate) fn rejoining(&mut self, room: RoomName) {
        if let Some(since) = self.since {
            self.pending.insert(room, Pending::Awaiting { since });
        }
    }

    /// After a resumed login, the session leaves `room` again at once.
    pub(crate) fn leaving(&mut self, room: RoomName) {
        self.pending.remove(&room);
        self.leaving.insert(room);
    }

    /// The page of `room`'s catch-up was asked for with `reference`.
    pub(crate) fn asked(&mut self, room: &RoomName, reference: Ref) {
        if let Some(Pending::Paging(catch_up)) = self.pending.get_mut(room) {
            catch_up.asked = Some(reference);
        }
    }

    /// One server event, as the session would report it. `asked`: it answers a command the user
    /// typed (a `joined` of `/join` is shown whole; the one of a login or of the rejoin after a
    /// reconnection is not).
    pub(crate) fn on_event(&mut self, shown: Shown, asked: bool, reference: Option<&Ref>) -> Step {
        let mut step = Step::default();
        match &shown.event {
            Event::Joined { room, .. } if !asked => {
                let room = room.clone();
                self.joined(room, shown, &mut step);
                return step;
            }
            Event::History { room, .. } if self.is_page(room, reference) => {
                let room = room.clone();
                let Event::History { messages, .. } = shown.event else {
                    unreachable!("matched above")
                };
                self.page(room, messages, &mut step);
                return step;
            }
            Event::Error { .. } => {
                let room = self
                    .pending
                    .iter()
                    .find_map(|(room, pending)| match pending {
                        Pending::Paging(catch_up) if catch_up.asked.as_ref() == reference => {
                            Some(room.clone())
                        }
                        _ => None,
                    });
                // A page refused: show what there is, then why.
                if let (Some(room), Some(_)) = (room, reference) {
                    self.finish(&room, false, &mut step);
                }
            }
            Event::Message(message) if self.leaving.contains(&message.room) => return step,
            Event::Presence { room, .. } if self.leaving.contains(room) => return step,
            Event::Message(message) => {
                if let Some(Pending::Paging(catch_up)) = self.pending.get_mut(&message.room) {
                    catch_up.held.push(shown);
                    return step;
                }
                if self.newest.get(&message.room) >= Some(&message.id.get()) {
                    return step;
                }
            }
            Event::Presence { room, .. } => {
                if let Some(Pending::Paging(catch_up)) = self.pending.get_mut(room) {
                    catch_up.held.push(shown);
                    return step;
                }
            }
            Event::Dm { message, .. } if self.dms.contains(&message.id.get()) => return step,
            Event::Dm { .. } => {
                if let Some(burst) = &mut self.dm_burst {
                    burst.held.push(shown);
                    return step;
                }
            }
            Event::Pong if self.ends_burst(reference) => {
                let mut held = self.dm_burst.take().map(|b| b.held).unwrap_or_default();
                held.sort_by_key(|shown| match &shown.event {
                    Event::Dm { message, .. } => message.id.get(),
                    _ => 0,
                });
                for shown in held {
                    let again = match &shown.event {
                        Event::Dm { message, .. } => self.dms.contains(&message.id.get()),
                        _ => false,
                    };
                    if !again {
                        self.show(shown, &mut step);
                    }
                }
                return step;
            }
            Event::Left { room } => {
                let room = room.clone();
                self.leaving.remove(&room);
                if let Some(Pending::Paging(_)) = self.pending.get(&room) {
                    self.finish(&room, false, &mut step);
                }
                self.pending.remove(&room);
            }
            _ => {}
        }
        self.show(shown, &mut step);
        step
    }

    fn is_page(&self, room: &RoomName, reference: Option<&Ref>) -> bool {
        match (self.pending.get(room), reference) {
            (Some(Pending::Paging(catch_up)), Some(reference)) => {
                catch_up.asked.as_ref() == Some(reference)
            }
            _ => false,
        }
    }

    /// A `joined` the user did not type a `/join` for.
    fn joined(&mut self, room: RoomName, mut shown: Shown, step: &mut Step) {
        let Event::Joined {
            history, complete, ..
        } = &mut shown.event
        else {
            unreachable!("only joined frames come here")
        };
        if self.leaving.contains(&room) {
            history.clear();
            self.show(shown, step);
            return;
        }
        let newest = self.newest.get(&room).copied();
        let oldest = history.first().map(|m| m.id.get());
        // A message shown before is in it: nothing between is missing.
        let overlaps = newest.is_some_and(|newest| oldest.is_some_and(|oldest| oldest <= newest));
        history.retain(|m| newest.is_none_or(|newest| m.id.get() > newest));
        let resumed = match self.pending.get(&room) {
            Some(Pending::Awaiting { since }) => Some(*since),
            _ => None,
        };
        match resumed {
            Some(since) if *complete == Some(false) && !overlaps => {
                let catch_up = CatchUp {
                    since,
                    joined: shown,
                    pages: Vec::new(),
                    held: Vec::new(),
                    asked: None,
                    before: oldest,
                };
                self.pending.insert(room.clone(), Pending::Paging(catch_up));
                step.page = Some(PageWanted {
                    room,
                    before: oldest,
                });
            }
            _ => {
                if resumed.is_some() {
                    self.pending.remove(&room);
                }
                self.show(shown, step);
            }
        }
    }

    /// A page of a catch-up.
    fn page(&mut self, room: RoomName, messages: Vec<Arc<RoomMessage>>, step: &mut Step) {
        let Some(Pending::Paging(catch_up)) = self.pending.get_mut(&room) else {
            return;
        };
        let since = catch_up.since;
        let newest = self.newest.get(&room).copied().unwrap_or(0);
        let oldest = messages.first().map(|m| m.id.get());
        // An empty page: nothing older exists. A page that reaches `since`: all is here. A page
        // that is not older than the last (a confused server): stop rather than loop.
        let done = match oldest {
            None => true,
            Some(oldest) => {
                oldest <= since.max(newest) || catch_up.before.is_some_and(|b| oldest >= b)
            }
        };
        let missed: Vec<_> = messages
            .into_iter()
            .filter(|m| m.id.get() > since.max(newest))
            .filter(|m| catch_up.before.is_none_or(|before| m.id.get() < before))
            .collect();
        catch_up.pages.push(missed);
        catch_up.asked = None;
        if done {
            self.finish(&room, true, step);
        } else {
            catch_up.before = oldest;
            step.page = Some(PageWanted {
                room,
                before: oldest,
            });
        }
    }

    /// Ends `room`'s catch-up: its `joined`, with every page's messages in front of its own,
    /// then what was held.
    fn finish(&mut self, room: &RoomName, complete: bool, step: &mut Step) {
        let Some(Pending::Paging(catch_up)) = self.pending.remove(room) else {
            return;
        };
        let CatchUp {
            mut joined,
            pages,
            held,
            ..
        } = catch_up;
        if let Event::Joined {
            history,
            complete: said,
            ..
        } = &mut joined.event
        {
            let mut all: Vec<_> = pages.into_iter().rev().flatten().collect();
            all.append(history);
            *history = all;
            *said = Some(complete);
        }
        self.show(joined, step);
        for shown in held {
            let duplicate = match &shown.event {
                Event::Message(message) => {
                    self.newest.get(&message.room) >= Some(&message.id.get())
                }
                _ => false,
            };
            if !duplicate {
                self.show(shown, step);
            }
        }
    }

    /// Reports `shown`, noting the ids it shows.
    fn show(&mut self, shown: Shown, step: &mut Step) {
        match &shown.event {
            Event::Joined { room, history, .. } => {
                let ids = history.iter().map(|m| m.id.get());
                self.note_room(room, ids);
            }
            Event::Message(message) => self.note_room(&message.room, [message.id.get()]),
            Event::History { messages, .. } => {
                self.note(messages.iter().map(|m| m.id.get()).max());
            }
            Event::Dm { message, .. } => {
                let id = message.id.get();
                self.dms.insert(id);
                if self.dms.len() > DM_IDS_KEPT {
                    self.dms.pop_first();
                }
                self.note(Some(id));
            }
            Event::DmHistory { messages, .. } => {
                self.note(messages.iter().map(|m| m.id.get()).max());
            }
            _ => {}
        }
        step.shown.push(shown);
    }

    fn note_room(&mut self, room: &RoomName, ids: impl IntoIterator<Item = u64>) {
        if let Some(max) = ids.into_iter().max() {
            let newest = self.newest.entry(room.clone()).or_insert(0);
            *newest = (*newest).max(max);
            self.note(Some(max));
        }
    }

    fn note(&mut self, id: Option<u64>) {
        if let Some(id) = id {
            self.seen = Some(self.seen.map_or(id, |seen| seen.max(id)));
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_core::{DirectMessage, ErrorCode, MessageId, Text, Timestamp, UserName};

    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn said(room_name: &str, id: u64) -> Arc<RoomMessage> {
        Arc::new(RoomMessage {
            room: room(room_name),
            id: MessageId::new(id).unwrap(),
            from: UserName::parse("bob").unwrap(),
            text: Text::parse(&format!("m{id}"), 4096).unwrap(),
            ts: Timestamp::parse("2026-12-01T10:00:00.000Z").unwrap(),
        })
    }

    fn said_in(room_name: &str, ids: impl IntoIterator<Item = u64>) -> Vec<Arc<RoomMessage>> {
        ids.into_iter().map(|id| said(room_name, id)).collect()
    }

    fn pushed(event: Event) -> Shown {
        Shown {
            event,
            answers_command: false,
            kind: SendKind::Push,
        }
    }

    fn joined(
        room_name: &str,
        ids: impl IntoIterator<Item = u64>,
        complete: Option<bool>,
    ) -> Shown {
        Shown {
            event: Event::Joined {
                room: room(room_name),
                members: Vec::new(),
                member_count: None,
                history: said_in(room_name, ids),
                complete,
            },
            answers_command: false,
            kind: SendKind::Backlog,
        }
    }

    fn page(room_name: &str, ids: impl IntoIterator<Item = u64>) -> Shown {
        Shown {
            event: Event::History {
                room: room(room_name),
                messages: said_in(room_name, ids),
            },
            answers_command: true,
            kind: SendKind::Backlog,
        }
    }

    fn dm(id: u64, replay: bool) -> Shown {
        let message = Arc::new(DirectMessage {
            id: MessageId::new(id).unwrap(),
            from: UserName::parse("bob").unwrap(),
            to: UserName::parse("alice").unwrap(),
            text: Text::parse("psst", 4096).unwrap(),
            ts: Timestamp::parse("2026-12-01T10:00:00.000Z").unwrap(),
        });
        pushed(Event::Dm {
            message,
            queued: false,
            replay,
        })
    }

    /// The message ids `shown` shows, in order.
    fn ids(shown: &[Shown]) -> Vec<u64> {
        shown
            .iter()
            .flat_map(|shown| match &shown.event {
                Event::Joined { history, .. } => history.iter().map(|m| m.id.get()).collect(),
                Event::Message(message) => vec![message.id.get()],
                Event::Dm { message, .. } => vec![message.id.get()],
                _ => Vec::new(),
            })
            .collect()
    }

    /// A resume that showed `general`'s messages up to `seen` on its first connection, and has
    /// logged in again, welcomed into `general`.
    fn resumed_after(seen: u64) -> Resume {
        let mut resume = Resume::default();
        assert_eq!(resume.login(false), None, "a first login sends no since");
        let shown = resume.on_event(joined("general", seen - 2..=seen, None), false, None);
        assert_eq!(ids(&shown.shown), (seen - 2..=seen).collect::<Vec<_>>());
        resume.disconnected();
        assert_eq!(resume.login(true), Some(seen));
        resume.welcomed(&[room("general")]);
        resume
    }

    /// Ends the burst of a resumed login (with no DMs in it).
    fn end_burst(resume: &mut Resume) {
        resume.burst_ends_at(Ref::number(99));
        let pong = pushed(Event::Pong);
        let step = resume.on_event(pong, false, Some(&Ref::number(99)));
        assert!(step.shown.is_empty());
    }

    #[test]
    fn a_reconnection_resumes_from_the_newest_id_shown_in_any_room_or_dm() {
        let mut resume = resumed_after(5);
        let step = resume.on_event(joined("general", 6..=8, Some(true)), false, None);
        assert_eq!((ids(&step.shown), step.page), (vec![6, 7, 8], None));
        end_burst(&mut resume);
        let step = resume.on_event(dm(9, true), false, None);
        assert_eq!(ids(&step.shown), [9]);
        resume.disconnected();
        assert_eq!(resume.login(true), Some(9));
    }

    #[test]
    fn nothing_is_shown_twice() {
        let mut resume = resumed_after(5);
        // A server that ignores since sends the last few again.
        let step = resume.on_event(joined("general", 3..=7, None), false, None);
        assert_eq!(ids(&step.shown), [6, 7]);
        let again = resume.on_event(pushed(Event::Message(said("general", 7))), false, None);
        assert!(again.shown.is_empty(), "{again:?}");
        end_burst(&mut resume);
        assert_eq!(ids(&resume.on_event(dm(8, false), false, None).shown), [8]);
        let replayed = resume.on_event(dm(8, true), false, None);
        assert!(replayed.shown.is_empty(), "a DM shown is not shown again");
    }

    #[test]
    fn a_cut_resume_pages_back_and_shows_the_missed_messages_once_in_order() {
        let mut resume = resumed_after(10);
        let step = resume.on_event(joined("general", 31..=40, Some(false)), false, None);
        assert!(step.shown.is_empty(), "held until the pages are in");
        let wanted = step.page.unwrap();
        assert_eq!(wanted.before, Some(31));
        assert_eq!(
            wanted.command(),
            Command::room_history("general", Some(31), Some(500))
        );
        resume.asked(&room("general"), Ref::number(1));
        // A live message meanwhile waits too, and so does news of other rooms' members.
        let live = resume.on_event(pushed(Event::Message(said("general", 41))), false, None);
        assert!(live.shown.is_empty());
        let other = resume.on_event(pushed(Event::Message(said("rust", 42))), false, None);
        assert_eq!(ids(&other.shown), [42], "other rooms are not held");

        let step = resume.on_event(page("general", 21..=30), false, Some(&Ref::number(1)));
        assert!(step.shown.is_empty());
        assert_eq!(step.page.unwrap().before, Some(21));
        resume.asked(&room("general"), Ref::number(2));
        let step = resume.on_event(page("general", 4..=20), false, Some(&Ref::number(2)));
        assert_eq!(step.page, None, "the page reached since");
        assert_eq!(ids(&step.shown), (11..=41).collect::<Vec<_>>());
        let Event::Joined { complete, .. } = &step.shown[0].event else {
            panic!("{step:?}")
        };
        assert_eq!(*complete, Some(true));
        end_burst(&mut resume);
        resume.disconnected();
        assert_eq!(resume.login(true), Some(42));
    }

    #[test]
    fn a_connection_lost_while_paging_resumes_from_before_the_missed_messages() {
        let mut resume = resumed_after(10);
        let step = resume.on_event(joined("general", 31..=40, Some(false)), false, None);
        assert!(step.page.is_some());
        let other = resume.on_event(pushed(Event::Message(said("rust", 50))), false, None);
        assert_eq!(ids(&other.shown), [50]);
        resume.disconnected();
        assert_eq!(
            resume.login(true),
            Some(10),
            "#general's missed messages were not shown"
        );
        resume.welcomed(&[room("general"), room("rust")]);
        let step = resume.on_event(joined("rust", 45..=50, Some(true)), false, None);
        assert!(ids(&step.shown).is_empty(), "#rust was all shown");
        let step = resume.on_event(joined("general", 11..=40, Some(true)), false, None);
        assert_eq!(ids(&step.shown), (11..=40).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_page_ends_the_catch_up_and_a_refused_one_shows_what_there_is() {
        let mut resume = resumed_after(10);
        resume.welcomed(&[room("general"), room("rust")]);
        resume.on_event(joined("general", 31..=40, Some(false)), false, None);
        resume.asked(&room("general"), Ref::number(1));
        let step = resume.on_event(page("general", []), false, Some(&Ref::number(1)));
        assert_eq!(ids(&step.shown), (31..=40).collect::<Vec<_>>());

        resume.on_event(joined("rust", 61..=70, Some(false)), false, None);
        resume.asked(&room("rust"), Ref::number(2));
        let refused = Shown {
            event: Event::Error {
                code: ErrorCode::Unavailable,
                message: "the store is unavailable".into(),
            },
            answers_command: true,
            kind: SendKind::Reply,
        };
        let step = resume.on_event(refused, false, Some(&Ref::number(2)));
        assert_eq!(ids(&step.shown), (61..=70).collect::<Vec<_>>());
        assert!(matches!(
            step.shown[0].event,
            Event::Joined {
                complete: Some(false),
                ..
            }
        ));
        assert!(matches!(step.shown[1].event, Event::Error { .. }));
    }

    #[test]
    fn a_resumed_logins_dms_show_in_id_order_once_its_burst_ends() {
        let mut resume = resumed_after(5);
        assert!(resume.wants_burst_end());
        resume.burst_ends_at(Ref::number(7));
        assert!(!resume.wants_burst_end());
        let quiet = resume.on_event(joined("general", [], Some(true)), false, None);
        assert_eq!(quiet.shown.len(), 1);
        // Queued while offline first, then the older ones the last connection missed.
        for (id, replay) in [(20, false), (21, false), (8, true), (12, true)] {
            let step = resume.on_event(dm(id, replay), false, None);
            assert!(step.shown.is_empty(), "held until the burst ends");
        }
        let other_pong = pushed(Event::Pong);
        assert!(!resume.ends_burst(Some(&Ref::number(3))));
        assert!(resume.ends_burst(Some(&Ref::number(7))));
        let step = resume.on_event(other_pong, false, Some(&Ref::number(7)));
        assert_eq!(
            ids(&step.shown),
            [8, 12, 20, 21],
            "the pong itself is not shown"
        );
        assert_eq!(
            ids(&resume.on_event(dm(22, false), false, None).shown),
            [22]
        );
        resume.disconnected();
        assert_eq!(resume.login(true), Some(22));
    }

    #[test]
    fn dms_held_when_the_connection_ends_are_asked_for_again() {
        let mut resume = resumed_after(5);
        resume.burst_ends_at(Ref::number(7));
        resume.on_event(dm(8, true), false, None);
        let step = resume.on_event(joined("general", 6..=30, Some(true)), false, None);
        assert_eq!(ids(&step.shown).last(), Some(&30));
        resume.disconnected();
        assert_eq!(resume.login(true), Some(5), "DM 8 was not shown");
    }

    #[test]
    fn a_room_left_again_after_a_relogin_shows_nothing() {
        let mut resume = resumed_after(5);
        resume.leaving(room("general"));
        let step = resume.on_event(joined("general", 6..=9, Some(true)), false, None);
        assert!(ids(&step.shown).is_empty());
        let live = resume.on_event(pushed(Event::Message(said("general", 10))), false, None);
        assert!(live.shown.is_empty());
        resume.on_event(
            pushed(Event::Left {
                room: room("general"),
            }),
            false,
            None,
        );
        resume.disconnected();
        assert_eq!(resume.login(true), Some(5));
    }
}

//! Random client sessions for the property tests: ops (connect, log in, join, say, DM, page
//! history, disconnect) over a small vocabulary of names, rooms and texts, valid and not, each
//! aimed at an open connection by a [`Pick`] the test resolves against its own connections.
//! `model.rs` runs them against a reference model; `checkpoint.rs` runs them against replicas.

#![allow(dead_code, unreachable_pub)]

use chat_core::Command;
use proptest::prelude::*;

use crate::sim::Sim;

pub const NAMES: [&str; 6] = ["alice", "ALICE", "bob", "Bob", "carol", "no good"];
pub const ROOMS: [&str; 4] = ["general", "rust", "RUST", "not a room"];
pub const TEXTS: [&str; 5] = ["hi", "two\nlines", "   ", "bell\u{7}", "much too long"];

/// A message id for `since` or `before`, resolved against the ids handed out when the op runs.
#[derive(Clone, Copy, Debug)]
pub enum Point {
    /// Before every id.
    Zero,
    /// `k` ids back from the newest handed out (the newest itself for 0; 0 if there are fewer).
    Back(u64),
    /// Past every id there will ever be (`u64::MAX`).
    Far,
}

impl Point {
    /// The id this point stands for when `newest` is the newest id handed out (0: none yet).
    pub fn resolve(self, newest: u64) -> u64 {
        match self {
            Point::Zero => 0,
            Point::Back(k) => newest.saturating_sub(k),
            Point::Far => u64::MAX,
        }
    }
}

/// What a `history` frame names.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Room(usize),
    With(usize),
    /// A room and a user: a bad frame.
    Both(usize, usize),
    /// Neither: a bad frame.
    Neither,
}

/// Which open connection an op goes to: the `index`-th (cyclically) of those logged in, or of
/// those not (for a login), or of all of them, so that commands before a login and logins after
/// one happen too. With none of the kind wanted, of all of them; but a login that finds every
/// connection logged in opens a new one.
#[derive(Clone, Copy, Debug)]
pub struct Pick {
    pub index: usize,
    pub among: Among,
}

/// The connections a [`Pick`] is among.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Among {
    LoggedIn,
    NotLoggedIn,
    All,
}

/// One thing a client does: open a connection, send a frame, or go away.
#[derive(Clone, Debug)]
pub enum Op {
    Connect,
    /// Connection, name, whether with a token, and where to resume from.
    Login(Pick, usize, bool, Option<Point>),
    Join(Pick, usize, Option<Point>),
    Leave(Pick, usize),
    Say(Pick, usize, usize),
    Dm(Pick, usize, usize),
    /// Connection, what, `before` and `limit`.
    History(Pick, Target, Option<Point>, i64),
    Disconnect(Pick),
}

/// Mostly a connection `usual` says, sometimes any.
pub fn pick(usual: Among) -> impl Strategy<Value = Pick> {
    (0..6usize, proptest::bool::weighted(0.85)).prop_map(move |(index, usual_one)| Pick {
        index,
        among: if usual_one { usual } else { Among::All },
    })
}

/// Mostly a room people are in.
pub fn room() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0usize), 4 => 1..ROOMS.len()]
}

/// Mostly a valid text.
pub fn text() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0..2usize, 1 => 2..TEXTS.len()]
}

/// Half the time no `since` (or `before`); else mostly one near the newest id.
pub fn point() -> impl Strategy<Value = Option<Point>> {
    let point = prop_oneof![
        1 => Just(Point::Zero),
        1 => Just(Point::Far),
        5 => (0..10u64).prop_map(Point::Back),
    ];
    proptest::option::weighted(0.5, point)
}

pub fn target() -> impl Strategy<Value = Target> {
    let name = 0..NAMES.len();
    prop_oneof![
        4 => room().prop_map(Target::Room),
        4 => name.clone().prop_map(Target::With),
        1 => (room(), name).prop_map(|(r, n)| Target::Both(r, n)),
        1 => Just(Target::Neither),
    ]
}

pub fn op() -> impl Strategy<Value = Op> {
    let user = || pick(Among::LoggedIn);
    prop_oneof![
        2 => Just(Op::Connect),
        3 => (pick(Among::NotLoggedIn), 0..NAMES.len(), proptest::bool::weighted(0.5), point())
            .prop_map(|(c, n, t, s)| Op::Login(c, n, t, s)),
        2 => (user(), room(), point()).prop_map(|(c, r, s)| Op::Join(c, r, s)),
        1 => (user(), room()).prop_map(|(c, r)| Op::Leave(c, r)),
        5 => (user(), room(), text()).prop_map(|(c, r, t)| Op::Say(c, r, t)),
        5 => (user(), 0..NAMES.len(), text()).prop_map(|(c, n, t)| Op::Dm(c, n, t)),
        3 => (user(), target(), point(), -1..6i64)
            .prop_map(|(c, t, b, l)| Op::History(c, t, b, l)),
        1 => pick(Among::All).prop_map(Op::Disconnect),
    ]
}

/// The frame `op` sends, with its `since` or `before` resolved to `point`.
pub fn command(op: &Op, point: Option<u64>) -> Command {
    match op {
        Op::Login(_, n, token, _) => {
            let mut login = match token {
                true => Sim::token_login(NAMES[*n]),
                false => Command::login(NAMES[*n]),
            };
            if let Command::Login { since, .. } = &mut login {
                *since = point;
            }
            login
        }
        Op::Join(_, r, _) => Command::Join {
            room: ROOMS[*r].into(),
            since: point,
        },
        Op::Leave(_, r) => Command::Leave {
            room: ROOMS[*r].into(),
        },
        Op::Say(_, r, t) => Command::Say {
            room: ROOMS[*r].into(),
            text: TEXTS[*t].into(),
        },
        Op::Dm(_, n, t) => Command::Dm {
            to: NAMES[*n].into(),
            text: TEXTS[*t].into(),
        },
        Op::History(_, target, _, limit) => {
            let (room, with) = match *target {
                Target::Room(r) => (Some(ROOMS[r]), None),
                Target::With(n) => (None, Some(NAMES[n])),
                Target::Both(r, n) => (Some(ROOMS[r]), Some(NAMES[n])),
                Target::Neither => (None, None),
            };
            Command::History {
                room: room.map(Into::into),
                with: with.map(Into::into),
                before: point,
                limit: Some(*limit),
            }
        }
        Op::Connect | Op::Disconnect(_) => unreachable!("not a frame"),
    }
}

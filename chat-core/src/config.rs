//! The core's settings, with the protocol's defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::room_name::RoomName;
use crate::text::DEFAULT_MAX_TEXT_BYTES;

/// How a [`Chat`](crate::Chat) behaves. `Config::default()` is the protocol's defaults.
///
/// It serialises (every field, none optional), so that the nodes of a cluster, which must all
/// decide alike, can check that they run with equal configs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The room a guest joins at login, and an account at its first login ever (`general`);
    /// `None` disables it. Later logins of an account rejoin the account's own rooms.
    pub default_room: Option<RoomName>,
    /// Messages kept in memory per room, and DMs per account (1000); older pages come from the
    /// store.
    pub history: usize,
    /// Messages sent to a user who joins a room (5). They come from memory, so at most
    /// `history` are sent: a larger value is capped at it.
    pub join_history: usize,
    /// The most messages a resume (`since`) sends per room, and the most DMs it replays (500,
    /// `--resume-limit`); past it the `joined` frame says `complete: false` and the client pages.
    /// They come from memory, so at most `history` are sent: a larger value is capped at it.
    pub resume_limit: usize,
    /// DMs kept per offline name (1000).
    pub mailbox: usize,
    /// DMs kept in all offline mailboxes together (100,000): past it every offline DM is
    /// refused with `mailbox_full`, so DMs to ever new names cannot grow memory without bound.
    pub max_queued: usize,
    /// The most rooms one user may be in at once (100), so that no client can make the server
    /// keep an unbounded number of rooms.
    pub max_rooms: usize,
    /// The largest text in bytes of UTF-8 (4096).
    pub max_text_bytes: usize,
    /// How long a connection may stay without logging in before the core closes it (60 s);
    /// `None` lets it stay.
    pub login_timeout: Option<Duration>,
    /// How many ids one [`Record::IdsReserved`](crate::Record::IdsReserved) reserves (1024):
    /// larger blocks mean fewer store writes and larger gaps after a crash.
    pub id_block: u64,
    /// Whether a name without an account may log in (`--guests`, on). Off, every login needs a
    /// password or a token, and offline DMs are kept for any name.
    pub guests: bool,
    /// Whether logins without a password or token go to the runtime's authenticator too
    /// ([`Output::Authenticate`](crate::Output::Authenticate)), for an app that knows its users
    /// by something else the transport saw (a session cookie). Off (the default), the core
    /// admits them as guests itself.
    pub authenticate_guests: bool,
    /// The most connections one account may be logged in from at once (10, `--max-sessions`);
    /// past it a login is refused with `too_many_sessions`. A guest name has one session.
    pub max_sessions: usize,
    /// The most members a room may have and still be told every join and leave (500,
    /// `--large-room`). A room with more members than this is *large*: a join into it and a
    /// leave out of it send no `presence` frames, and its `joined` frame lists only the first
    /// `large_room` members (in the usual order) with the total in `member_count`. So filling a
    /// room costs O(1) frames per join instead of O(members). `who` still lists everyone.
    pub large_room: usize,
}

/// The default of [`Config::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 10;

/// The default of [`Config::large_room`].
pub const DEFAULT_LARGE_ROOM: usize = 500;

/// The default of [`Config::resume_limit`].
pub const DEFAULT_RESUME_LIMIT: usize = 500;

/// The default room's name.
pub const DEFAULT_ROOM: &str = "general";

/// The default number of messages in a `history` page when the client gives no `limit`.
pub const DEFAULT_PAGE: usize = 50;

/// The largest `history` page.
pub const MAX_PAGE: usize = 500;

impl Config {
    /// This config as a chat runs it: [`Config::join_history`] and [`Config::resume_limit`] are
    /// served from memory, so they are capped at [`Config::history`].
    pub(crate) fn capped(mut self) -> Self {
        self.join_history = self.join_history.min(self.history);
        self.resume_limit = self.resume_limit.min(self.history);
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_room: Some(
                RoomName::parse(DEFAULT_ROOM).expect("the default room name is a valid room name"),
            ),
            history: 1000,
            join_history: 5,
            resume_limit: DEFAULT_RESUME_LIMIT,
            mailbox: 1000,
            max_rooms: 100,
            max_queued: 100_000,
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
            login_timeout: Some(Duration::from_secs(60)),
            id_block: 1024,
            guests: true,
            authenticate_guests: false,
            max_sessions: DEFAULT_MAX_SESSIONS,
            large_room: DEFAULT_LARGE_ROOM,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_round_trips_through_json_and_a_missing_field_is_an_error() {
        let configs = [
            Config::default(),
            Config {
                default_room: None,
                login_timeout: None,
                ..Config::default()
            },
        ];
        for config in configs {
            let json = serde_json::to_value(&config).unwrap();
            assert_eq!(
                serde_json::from_value::<Config>(json.clone()).unwrap(),
                config
            );
            let mut partial = json;
            partial.as_object_mut().unwrap().remove("large_room");
            assert!(serde_json::from_value::<Config>(partial).is_err());
        }
    }
}

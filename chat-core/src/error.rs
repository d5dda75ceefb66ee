//! Errors: what a client did wrong ([`ChatError`], one variant per protocol error code) and what
//! a runtime or store did wrong ([`InputError`], [`RestoreError`]).
//!
//! A [`ChatError`] is never fatal to a connection: the core answers it with an `error` event and
//! the connection stays open. Its [`code`](ChatError::code) is the stable `code` field on the
//! wire; its `Display` text is the `message`, a sentence for a person.

use serde::{Deserialize, Serialize};

use crate::ids::{ConnectionId, MessageId};
use crate::room_name::RoomName;
use crate::user_name::{UserKey, UserName};

/// The stable error codes of the protocol, as they appear in `{"type":"error","code":…}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or mistyped field, or a binary frame.
    BadFrame,
    /// A frame whose `type` the server does not know.
    UnknownType,
    /// Anything but `login` and `ping` before logging in.
    NotLoggedIn,
    /// A second `login` on one connection.
    AlreadyLoggedIn,
    /// A user name outside the rules.
    InvalidName,
    /// The name is online already (case-insensitively) as a guest's, or a guest's login for a
    /// name that is online (a guest name has one session; an account adds sessions instead).
    NameTaken,
    /// A room name outside the rules.
    InvalidRoom,
    /// The room needs membership (say, leave, history).
    NotInRoom,
    /// Empty, blank, or with control characters.
    InvalidText,
    /// A text over the size limit.
    TooLong,
    /// A DM to oneself.
    InvalidTarget,
    /// The recipient's offline mailbox is full; nothing was kept.
    MailboxFull,
    /// Frames faster than the connection's rate limit.
    RateLimited,
    /// The server cannot store or read messages right now (its store failed); nothing of the
    /// frame was delivered. Try again.
    Unavailable,
    /// The name is an account's (or the server admits only accounts): log in with its password
    /// or a token.
    AuthRequired,
    /// A wrong password, a password for a name without an account, or a bad token (one message
    /// for all of them).
    AuthFailed,
    /// A password outside the rules (8–256 bytes of UTF-8).
    InvalidPassword,
    /// `register` by a connection whose name is an account already.
    AlreadyRegistered,
    /// A DM to a name that is neither online nor an account: nothing was kept.
    UserOffline,
    /// The account is logged in from as many connections as the server allows.
    TooManySessions,
}

impl ErrorCode {
    /// The code as it appears on the wire, e.g. `"name_taken"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::AlreadyLoggedIn => "already_logged_in",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::InvalidText => "invalid_text",
            ErrorCode::TooLong => "too_long",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::MailboxFull => "mailbox_full",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::AuthRequired => "auth_required",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::InvalidPassword => "invalid_password",
            ErrorCode::AlreadyRegistered => "already_registered",
            ErrorCode::UserOffline => "user_offline",
            ErrorCode::TooManySessions => "too_many_sessions",
        }
    }
}

/// A rule a client broke. Each variant is one protocol error code; the text is for a person.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The frame could not be read as a command (transports raise this while decoding).
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// The frame's `type` is not a command (transports raise this while decoding).
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    /// The command needs a logged-in connection.
    #[error("log in first")]
    NotLoggedIn,
    /// The connection is logged in already.
    #[error("you are already logged in as {0}")]
    AlreadyLoggedIn(UserName),
    /// The name breaks the naming rules; the text says which.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// Someone online has this name (compared case-insensitively) and the login cannot be one
    /// more of its sessions (a guest is on either side).
    #[error("the name {0} is taken")]
    NameTaken(UserName),
    /// The room name breaks the naming rules, or the user may join no more rooms; the text says
    /// which. (The protocol has no separate code for the room limit; `invalid_room` is the
    /// nearest: this room cannot be joined. The protocol reference, `docs/protocol.md` in the
    /// repository, says so too.)
    #[error("{0}")]
    InvalidRoom(String),
    /// The command needs membership of this room.
    #[error("you are not in #{0}")]
    NotInRoom(RoomName),
    /// The text breaks the text rules; the text says which.
    #[error("invalid text: {0}")]
    InvalidText(String),
    /// The text is over the size limit.
    #[error("the text is {len} bytes; the limit is {max}")]
    TooLong {
        /// The text's size in bytes of UTF-8.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The DM's recipient cannot receive it (oneself).
    #[error("you cannot send a direct message to yourself")]
    InvalidTarget,
    /// The recipient is offline and their mailbox is full; the DM was not kept.
    #[error("{0} is offline and their mailbox is full; the message was not kept")]
    MailboxFull(UserName),
    /// The connection sends faster than its rate limit (raised by the runtime).
    #[error("too many messages; slow down")]
    RateLimited,
    /// Too many failed logins for this name or from this address: a login with a password or
    /// token is refused unchecked for a while (raised by the runtime's login throttle; the
    /// code is `rate_limited`).
    #[error("too many failed logins for this name or from this address; try again in a minute")]
    LoginsThrottled,
    /// The store failed to keep a message or to read a history page (raised by the runtime);
    /// nothing of the frame reached anyone. The core raises it too for a message when the ids
    /// have run out, which only a corrupt snapshot or checkpoint can bring about.
    #[error("the server cannot store or read messages right now; try again")]
    Unavailable,
    /// The login needs a password or a token; the text says why.
    #[error("{0}")]
    AuthRequired(String),
    /// The password or token did not prove the name (the text is the same whatever failed, see
    /// [`AUTH_FAILED`](crate::AUTH_FAILED), unless the server does not offer what was asked).
    #[error("{0}")]
    AuthFailed(String),
    /// The password breaks the password rules; the text says which.
    #[error("invalid password: {0}")]
    InvalidPassword(String),
    /// The name is an account already.
    #[error("{0} is registered already")]
    AlreadyRegistered(UserName),
    /// The DM's recipient is not online and has no account, so nothing would ever deliver it.
    #[error("{0} is not online and has no account; the message was not kept")]
    UserOffline(UserName),
    /// The account has as many sessions as the server allows (the number is the limit).
    #[error(
        "{0} is logged in from {1} connections, the most one account may have; log out of one first"
    )]
    TooManySessions(UserName, usize),
}

impl ChatError {
    /// The protocol error code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ChatError::BadFrame(_) => ErrorCode::BadFrame,
            ChatError::UnknownType(_) => ErrorCode::UnknownType,
            ChatError::NotLoggedIn => ErrorCode::NotLoggedIn,
            ChatError::AlreadyLoggedIn(_) => ErrorCode::AlreadyLoggedIn,
            ChatError::InvalidName(_) => ErrorCode::InvalidName,
            ChatError::NameTaken(_) => ErrorCode::NameTaken,
            ChatError::InvalidRoom(_) => ErrorCode::InvalidRoom,
            ChatError::NotInRoom(_) => ErrorCode::NotInRoom,
            ChatError::InvalidText(_) => ErrorCode::InvalidText,
            ChatError::TooLong { .. } => ErrorCode::TooLong,
            ChatError::InvalidTarget => ErrorCode::InvalidTarget,
            ChatError::MailboxFull(_) => ErrorCode::MailboxFull,
            ChatError::RateLimited | ChatError::LoginsThrottled => ErrorCode::RateLimited,
            ChatError::Unavailable => ErrorCode::Unavailable,
            ChatError::AuthRequired(_) => ErrorCode::AuthRequired,
            ChatError::AuthFailed(_) => ErrorCode::AuthFailed,
            ChatError::InvalidPassword(_) => ErrorCode::InvalidPassword,
            ChatError::AlreadyRegistered(_) => ErrorCode::AlreadyRegistered,
            ChatError::UserOffline(_) => ErrorCode::UserOffline,
            ChatError::TooManySessions(..) => ErrorCode::TooManySessions,
        }
    }
}

/// The runtime fed the core an input that contradicts what it told the core before. These are
/// bugs in the driver, not in a client, so the core reports them instead of guessing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A command or disconnect for a connection that was never connected, or already left.
    #[error("{0} is not connected")]
    UnknownConnection(ConnectionId),
    /// A connect for an id that is still connected.
    #[error("{0} is connected already")]
    DuplicateConnection(ConnectionId),
}

/// A snapshot handed to [`Chat::restore`](crate::Chat::restore), or a checkpoint handed to
/// [`Chat::from_checkpoint`](crate::Chat::from_checkpoint), cannot be continued from: it
/// contradicts itself, or it is of another format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// A room's history is not in strictly increasing id order, or holds another room's message.
    #[error("the history of #{room} is not in strictly increasing id order at id {id}")]
    HistoryOrder {
        /// The room whose history is wrong.
        room: RoomName,
        /// The first id out of place.
        id: MessageId,
    },
    /// A user's DM tail is not in strictly increasing id order, or holds a DM the user is not a
    /// party to.
    #[error("the DMs of {user} are out of order or hold another conversation's message at id {id}")]
    DmOrder {
        /// Whose DMs.
        user: UserKey,
        /// The first id out of place.
        id: MessageId,
    },
    /// A room appears twice in the snapshot.
    #[error("#{0} appears twice in the snapshot")]
    DuplicateRoom(RoomName),
    /// A mailbox is not in strictly increasing id order, or holds a DM for someone else.
    #[error("the mailbox of {owner} is out of order or holds another user's message at id {id}")]
    MailboxOrder {
        /// The mailbox's owner.
        owner: UserKey,
        /// The first id out of place.
        id: MessageId,
    },
    /// A mailbox appears twice in the snapshot.
    #[error("the mailbox of {0} appears twice in the snapshot")]
    DuplicateMailbox(UserKey),
    /// The checkpoint was written in a format this build does not read (by another version of
    /// the chat).
    #[error("the checkpoint has format version {found}; this build reads version {supported}")]
    CheckpointVersion {
        /// The checkpoint's version.
        found: u32,
        /// The one this build reads, [`Checkpoint::VERSION`](crate::Checkpoint::VERSION).
        supported: u32,
    },
    /// The checkpoint contradicts itself; the text names the part and what is wrong with it
    /// (a session that is no connection, a room a user is in that it does not hold, an id
    /// counter behind the ids it holds, …).
    #[error("the checkpoint contradicts itself: {0}")]
    InconsistentCheckpoint(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_wire_names() {
        for code in [
            ErrorCode::BadFrame,
            ErrorCode::UnknownType,
            ErrorCode::NotLoggedIn,
            ErrorCode::AlreadyLoggedIn,
            ErrorCode::InvalidName,
            ErrorCode::NameTaken,
            ErrorCode::InvalidRoom,
            ErrorCode::NotInRoom,
            ErrorCode::InvalidText,
            ErrorCode::TooLong,
            ErrorCode::InvalidTarget,
            ErrorCode::MailboxFull,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
            ErrorCode::AuthRequired,
            ErrorCode::AuthFailed,
            ErrorCode::InvalidPassword,
            ErrorCode::AlreadyRegistered,
            ErrorCode::UserOffline,
            ErrorCode::TooManySessions,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }
}

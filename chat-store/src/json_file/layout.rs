//! Where things live in a [`JsonFileStore`](super::JsonFileStore) directory, and how names become
//! file names and back.
//!
//! ```text
//! DIR/rooms/<room>.jsonl        one RoomMessage per line, in id order, append-only
//! DIR/dms/<a>+<b>.jsonl         one DirectMessage per line: the conversation of users a and b
//!                               (a < b, in either direction), in id order, append-only
//! DIR/mailboxes/<user>.jsonl    one DirectMessage per line, the undelivered DMs of <user>
//! DIR/accounts.jsonl            one Account per line ({"name":..,"hash":..}), append-only
//! DIR/account_rooms.jsonl       one room set per line ({"owner":..,"rooms":[..]}), append-only
//! DIR/ids.json                  {"next_id":N}: ids below N may have been handed out
//! DIR/write-probe.tmp           briefly, while a recovery checks that the disk takes writes
//! ```
//!
//! `accounts.jsonl` and `account_rooms.jsonl` have fixed names, so no user name ever becomes part
//! of a path through them.
//!
//! Room and user names are validated by chat-core (`[a-z0-9_.-]`, never starting with `.`), so
//! they are file names as they are. The store encodes them anyway, so that no name, however it
//! was made, can name a path outside its directory: every byte other than `a–z 0–9 _ -` and a
//! `.` that is not the first byte is written as `%XX` (upper-case hex). A valid name is therefore
//! its own file name, and `..`, `/`, `\`, NUL or upper case can never appear unencoded. Nor can
//! `+`, which is why it can join the two user keys of a conversation's file name unambiguously.
//!
//! A file counts as the store's only if its name is exactly what the store would make of the
//! name it decodes to (a valid room or user key, the two keys of a conversation in order), so
//! one room, mailbox or conversation never has two files.

use std::path::{Path, PathBuf};

use chat_core::{RoomName, UserKey};

use crate::conversations::Conversation;

/// The extension of room, conversation and mailbox files.
const EXTENSION: &str = ".jsonl";
/// What joins the two user keys in the file name of a conversation.
const PARTIES_SEPARATOR: char = '+';
/// The suffix of a file being written before it is renamed into place.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// The paths of one store directory.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The store directory itself.
    pub(crate) dir: PathBuf,
    /// `DIR/rooms`.
    pub(crate) rooms: PathBuf,
    /// `DIR/mailboxes`.
    pub(crate) mailboxes: PathBuf,
    /// `DIR/dms`.
    pub(crate) dms: PathBuf,
}

impl Layout {
    pub(crate) fn new(dir: &Path) -> Self {
        Layout {
            dir: dir.to_path_buf(),
            rooms: dir.join("rooms"),
            mailboxes: dir.join("mailboxes"),
            dms: dir.join("dms"),
        }
    }

    /// The history file of `room`.
    pub(crate) fn room(&self, room: &RoomName) -> PathBuf {
        self.rooms
            .join(format!("{}{EXTENSION}", encode(room.as_str())))
    }

    /// The history file of the conversation of `a` and `b` (`a <= b`, as [`Conversation`]s are).
    pub(crate) fn conversation(&self, (a, b): &Conversation) -> PathBuf {
        self.dms.join(format!(
            "{}{PARTIES_SEPARATOR}{}{EXTENSION}",
            encode(a.as_str()),
            encode(b.as_str())
        ))
    }

    /// The mailbox file of `owner`.
    pub(crate) fn mailbox(&self, owner: &UserKey) -> PathBuf {
        self.mailboxes
            .join(format!("{}{EXTENSION}", encode(owner.as_str())))
    }

    /// The accounts file.
    pub(crate) fn accounts(&self) -> PathBuf {
        self.dir.join("accounts.jsonl")
    }

    /// The account rooms file.
    pub(crate) fn account_rooms(&self) -> PathBuf {
        self.dir.join("account_rooms.jsonl")
    }

    /// The id counter file.
    pub(crate) fn ids(&self) -> PathBuf {
        self.dir.join("ids.json")
    }

    /// The file [`recover`](crate::Store::recover) writes and removes to check that the disk
    /// takes writes again.
    pub(crate) fn probe(&self) -> PathBuf {
        self.dir.join(format!("write-probe{TMP_SUFFIX}"))
    }
}

/// What a directory entry of `rooms/`, `dms/` or `mailboxes/` is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry<N> {
    /// A data file; the name of what it holds (a room, a conversation, an owner).
    Data(N),
    /// A leftover of a replacement that did not finish.
    Temporary,
    /// Not the store's.
    Foreign,
}

/// Classifies a file name found in `rooms/`, `dms/` or `mailboxes/`; `name_of` gives the name a
/// data file's stem (its name without extension) stands for, or `None` if the stem is not one
/// the store makes ([`room_of`], [`conversation_of`], [`owner_of`]).
pub(crate) fn classify<N>(file_name: &str, name_of: impl FnOnce(&str) -> Option<N>) -> Entry<N> {
    if file_name.ends_with(TMP_SUFFIX) {
        return Entry::Temporary;
    }
    match file_name.strip_suffix(EXTENSION).and_then(name_of) {
        Some(name) => Entry::Data(name),
        None => Entry::Foreign,
    }
}

/// The room whose file has the stem `stem`.
pub(crate) fn room_of(stem: &str) -> Option<RoomName> {
    let name = name_of(stem)?;
    RoomName::parse(&name)
        .ok()
        .filter(|room| room.as_str() == name)
}

/// The user whose mailbox file has the stem `stem`.
pub(crate) fn owner_of(stem: &str) -> Option<UserKey> {
    let name = name_of(stem)?;
    UserKey::parse(&name)
        .ok()
        .filter(|key| key.as_str() == name)
}

/// The conversation whose file has the stem `stem`: two user keys joined by `+`, the smaller
/// first.
pub(crate) fn conversation_of(stem: &str) -> Option<Conversation> {
    let (a, b) = stem.split_once(PARTIES_SEPARATOR)?;
    let (a, b) = (owner_of(a)?, owner_of(b)?);
    (a <= b).then_some((a, b))
}

/// The name a stem encodes, if the stem is exactly what [`encode`] makes of it.
fn name_of(stem: &str) -> Option<String> {
    decode(stem).filter(|name| encode(name) == stem)
}

fn is_plain(byte: u8, first: bool) -> bool {
    matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-') || (byte == b'.' && !first)
}

/// The file-name form of `name` (without extension); see the module docs.
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, byte) in name.bytes().enumerate() {
        if is_plain(byte, i == 0) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The name a file-name stem encodes, if it is a well-formed encoding of a UTF-8 name.
pub(crate) fn decode(stem: &str) -> Option<String> {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_their_own_file_names() {
        for name in ["general", "rust-2026.x_y", "a", "7up"] {
            assert_eq!(encode(name), name);
            assert_eq!(
                classify(&format!("{name}.jsonl"), name_of),
                Entry::Data(name.into())
            );
        }
    }

    #[test]
    fn hostile_names_cannot_escape_the_directory() {
        for hostile in [
            "..",
            ".",
            "../../etc/passwd",
            "a/b",
            "a\\b",
            "/abs",
            "nul\0byte",
            ".hidden",
            "UPPER",
            "%2e%2e",
            "ünï",
        ] {
            let encoded = encode(hostile);
            assert!(
                !encoded.contains('/') && !encoded.contains('\\') && !encoded.contains('\0'),
                "{hostile:?} -> {encoded:?}"
            );
            assert!(!encoded.starts_with('.'), "{hostile:?} -> {encoded:?}");
            assert_eq!(decode(&encoded).as_deref(), Some(hostile));
            let layout = Layout::new(Path::new("/data"));
            let path = layout.rooms.join(format!("{encoded}.jsonl"));
            assert_eq!(path.parent(), Some(layout.rooms.as_path()));
            assert_eq!(path.components().count(), 4, "{path:?}");
        }
        assert_eq!(encode("../x"), "%2E.%2Fx");
    }

    #[test]
    fn only_canonical_file_names_are_data() {
        let name = |file_name: &str| classify(file_name, name_of);
        assert_eq!(name("general.jsonl.tmp"), Entry::Temporary);
        assert_eq!(name("notes.txt"), Entry::Foreign);
        assert_eq!(name(".jsonl"), Entry::Foreign);
        assert_eq!(name("gen%65ral.jsonl"), Entry::Foreign);
        assert_eq!(name("General.jsonl"), Entry::Foreign);
        assert_eq!(name("bad%zz.jsonl"), Entry::Foreign);
        assert_eq!(name("%2E..jsonl"), Entry::Data("..".into()));
        assert_eq!(name("%2E%2E.jsonl"), Entry::Foreign);
        // Only valid names are rooms and owners.
        assert_eq!(classify("%2E..jsonl", room_of), Entry::Foreign);
        assert_eq!(classify("%2E..jsonl", owner_of), Entry::Foreign);
        assert_eq!(
            classify("general.jsonl", room_of),
            Entry::Data(RoomName::parse("general").unwrap())
        );
        assert_eq!(
            classify("bob.jsonl", owner_of),
            Entry::Data(UserKey::parse("bob").unwrap())
        );
    }

    fn key(name: &str) -> UserKey {
        UserKey::parse(name).unwrap()
    }

    #[test]
    fn a_conversation_file_is_named_by_its_two_keys_in_order() {
        let layout = Layout::new(Path::new("/data"));
        let conversation = chat_core::conversation(key("bob"), key("alice"));
        let path = layout.conversation(&conversation);
        assert_eq!(path, Path::new("/data/dms/alice+bob.jsonl"));
        let file_name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            classify(file_name, conversation_of),
            Entry::Data(conversation)
        );
        // A DM to oneself (which the core refuses) would still have a file of its own.
        assert_eq!(
            classify("bob+bob.jsonl", conversation_of),
            Entry::Data((key("bob"), key("bob")))
        );
    }

    #[test]
    fn other_conversation_file_names_are_foreign() {
        for file_name in [
            "bob+alice.jsonl",
            "alice.jsonl",
            "alice+.jsonl",
            "+bob.jsonl",
            "alice+bob+carol.jsonl",
            "alice%2Bbob.jsonl",
            "Alice+bob.jsonl",
            "alice+b%6Fb.jsonl",
        ] {
            assert_eq!(
                classify(file_name, conversation_of),
                Entry::Foreign,
                "{file_name}"
            );
        }
        assert_eq!(
            classify("alice+bob.jsonl.tmp", conversation_of),
            Entry::Temporary
        );
    }

    #[test]
    fn encoded_names_never_contain_the_parties_separator() {
        for name in ["a+b", "+", "x+", "+y"] {
            let encoded = encode(name);
            assert!(
                !encoded.contains(PARTIES_SEPARATOR),
                "{name:?} -> {encoded:?}"
            );
            assert_eq!(decode(&encoded).as_deref(), Some(name));
        }
    }
}

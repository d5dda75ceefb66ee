//! Room names: lower-cased and validated once.
//!
//! A [`RoomName`] is 1–64 characters from `a–z 0–9 _ - .`, starting with a letter or digit. The
//! server lower-cases what clients send (`General` is `general`), so two spellings never make two
//! rooms, and a room name is always safe to use as a file name.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ChatError;
use crate::identifier::{IdentifierProblem, check_identifier};

/// The longest room name, in characters.
pub const MAX_ROOM_NAME_LEN: usize = 64;

/// A valid, lower-case room name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RoomName(Box<str>);

impl RoomName {
    /// Lower-cases and validates `name`; [`ChatError::InvalidRoom`] says what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, ChatError> {
        check_identifier(name, MAX_ROOM_NAME_LEN).map_err(|problem| {
            ChatError::InvalidRoom(format!(
                "invalid room name: {}",
                match problem {
                    IdentifierProblem::Empty => "a room name needs at least one character",
                    IdentifierProblem::TooLong => "a room name has at most 64 characters",
                    IdentifierProblem::BadStart => "a room name starts with a letter or a digit",
                    IdentifierProblem::BadCharacter => {
                        "a room name uses only letters, digits, '_', '-' and '.'"
                    }
                }
            ))
        })?;
        Ok(RoomName(name.to_ascii_lowercase().into()))
    }

    /// The name, lower-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RoomName {
    type Err = ChatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoomName::parse(s)
    }
}

impl<'de> Deserialize<'de> for RoomName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        RoomName::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lower_cases_what_it_receives() {
        assert_eq!(RoomName::parse("General").unwrap().as_str(), "general");
        assert_eq!(
            RoomName::parse("rust-2026.x_y").unwrap().as_str(),
            "rust-2026.x_y"
        );
        assert_eq!(
            RoomName::parse(&"R".repeat(64)).unwrap().as_str(),
            "r".repeat(64)
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "#rust",
            "_a",
            "-a",
            ".",
            "..",
            "a b",
            "a/b",
            "a\\b",
            "ü",
            &"r".repeat(65),
        ] {
            assert!(
                matches!(RoomName::parse(bad), Err(ChatError::InvalidRoom(_))),
                "{bad:?} was accepted"
            );
        }
    }

    proptest! {
        #[test]
        fn parsing_is_idempotent(text in "[A-Za-z0-9][A-Za-z0-9_.-]{0,70}") {
            if let Ok(room) = RoomName::parse(&text) {
                prop_assert_eq!(RoomName::parse(room.as_str()).unwrap(), room.clone());
                prop_assert_eq!(room.as_str(), text.to_ascii_lowercase());
            } else {
                prop_assert!(text.len() > MAX_ROOM_NAME_LEN);
            }
        }
    }
}

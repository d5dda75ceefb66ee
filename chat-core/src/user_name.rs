//! User names: validated once, compared case-insensitively everywhere.
//!
//! A [`UserName`] is 1–32 characters from `A–Z a–z 0–9 _ - .`, starting with a letter or digit,
//! and keeps the spelling the user gave. Uniqueness among online users, DM routing and mailboxes
//! all use its [`UserKey`], the ASCII-lower-cased form, so `Alice` and `alice` are one person.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ChatError;
use crate::identifier::{IdentifierProblem, check_identifier};

/// The longest user name, in characters (all ASCII, so also bytes).
pub const MAX_USER_NAME_LEN: usize = 32;

/// A valid user name, as the user spelled it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserName(Box<str>);

/// The case-insensitive identity of a [`UserName`]: its ASCII-lower-cased form. Online names,
/// DM targets and mailboxes are keyed by it. It is itself a valid name, and safe as a file name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UserKey(Box<str>);

impl UserName {
    /// Validates `name`; [`ChatError::InvalidName`] says what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, ChatError> {
        check_identifier(name, MAX_USER_NAME_LEN).map_err(|problem| {
            ChatError::InvalidName(
                match problem {
                    IdentifierProblem::Empty => "a name needs at least one character",
                    IdentifierProblem::TooLong => "a name has at most 32 characters",
                    IdentifierProblem::BadStart => "a name starts with a letter or a digit",
                    IdentifierProblem::BadCharacter => {
                        "a name uses only the letters A-Z and a-z, digits, '_', '-' and '.'"
                    }
                }
                .to_owned(),
            )
        })?;
        Ok(UserName(name.into()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive identity of this name.
    pub fn key(&self) -> UserKey {
        UserKey(self.0.to_ascii_lowercase().into())
    }

    /// Calls `f` with this name's key as a string, lower-cased on the stack: for lookups on the
    /// hot path (a map keyed by [`UserKey`] finds it through `Borrow<str>`), without the
    /// allocation of [`UserName::key`].
    pub(crate) fn with_key<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let mut buffer = [0u8; MAX_USER_NAME_LEN];
        let key = &mut buffer[..self.0.len()];
        key.copy_from_slice(self.0.as_bytes());
        key.make_ascii_lowercase();
        f(std::str::from_utf8(key).expect("a valid name is ASCII, and so is its lower case"))
    }
}

impl UserKey {
    /// The key as a string: lower-case, and a valid user name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of `name`, if it is a valid name (a store reading a key back from disk uses this).
    pub fn parse(name: &str) -> Result<Self, ChatError> {
        UserName::parse(name).map(|n| n.key())
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for UserKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for UserName {
    type Err = ChatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserName::parse(s)
    }
}

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        UserName::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for UserKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        UserKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_stack_key_is_the_key() {
        for name in ["Alice", "BOB", "x.Y-z_W", &"Q".repeat(32)] {
            let name = UserName::parse(name).unwrap();
            assert_eq!(name.with_key(str::to_owned), name.key().as_str());
        }
    }

    #[test]
    fn accepts_the_documented_alphabet() {
        for good in ["alice", "Bob", "7up", "a", "x.y-z_w", &"a".repeat(32)] {
            assert_eq!(UserName::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "_alice",
            "-a",
            ".a",
            "al ice",
            "al/ice",
            "élodie",
            "a\n",
            &"a".repeat(33),
            "../etc",
        ] {
            assert!(
                matches!(UserName::parse(bad), Err(ChatError::InvalidName(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn keys_fold_case_and_names_keep_it() {
        let a = UserName::parse("Alice").unwrap();
        let b = UserName::parse("aLICE").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().as_str(), "alice");
        assert_eq!(a.to_string(), "Alice");
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<UserName>("\"bob\"").is_ok());
        assert!(serde_json::from_str::<UserName>("\"bo b\"").is_err());
        assert_eq!(
            serde_json::from_str::<UserKey>("\"BoB\"").unwrap().as_str(),
            "bob"
        );
    }

    proptest! {
        #[test]
        fn a_parsed_name_keeps_its_text_and_its_key_is_a_name(text in "\\PC{0,40}") {
            if let Ok(name) = UserName::parse(&text) {
                prop_assert_eq!(name.as_str(), text.as_str());
                prop_assert!(UserName::parse(name.key().as_str()).is_ok());
            }
        }
    }
}

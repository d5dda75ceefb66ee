//! Message texts: what a room message or DM may say.
//!
//! A [`Text`] is UTF-8, not empty, not only white space, and free of control characters (Unicode
//! category Cc: C0, DEL, C1) other than newline and tab. The size limit (4096 bytes by default) is
//! configuration, so it is checked when a message is accepted ([`Text::parse`]) but not when a
//! stored message is read back, which stays readable after the limit is lowered.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ChatError;

/// The default largest text, in bytes of UTF-8.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 4096;

/// A valid message text, stored verbatim.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Text(Box<str>);

impl Text {
    /// Validates `text` against the text rules and a limit of `max_bytes` bytes.
    pub fn parse(text: &str, max_bytes: usize) -> Result<Self, ChatError> {
        if text.len() > max_bytes {
            return Err(ChatError::TooLong {
                len: text.len(),
                max: max_bytes,
            });
        }
        Self::check_rules(text)?;
        Ok(Text(text.into()))
    }

    fn check_rules(text: &str) -> Result<(), ChatError> {
        if text.is_empty() {
            return Err(ChatError::InvalidText("the text is empty".into()));
        }
        if let Some(c) = text
            .chars()
            .find(|&c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ChatError::InvalidText(format!(
                "control character U+{:04X} is not allowed (only newline and tab are)",
                u32::from(c)
            )));
        }
        if text.chars().all(char::is_whitespace) {
            return Err(ChatError::InvalidText(
                "the text is only white space".into(),
            ));
        }
        Ok(())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text's lines, as the line transport shows them one output line each.
    pub fn lines(&self) -> std::str::Lines<'_> {
        self.0.lines()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Text::check_rules(&text).map_err(serde::de::Error::custom)?;
        Ok(Text(text.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code(text: &str) -> Option<crate::ErrorCode> {
        Text::parse(text, 16).err().map(|e| e.code())
    }

    #[test]
    fn accepts_ordinary_text_with_newlines_and_tabs() {
        assert_eq!(code("hi"), None);
        assert_eq!(code("a\nb\tc"), None);
        assert_eq!(code(" ünïcödé "), None);
        assert_eq!(code(&"x".repeat(16)), None);
    }

    #[test]
    fn rejects_empty_blank_and_control_characters() {
        use crate::ErrorCode::InvalidText;
        for bad in [
            "",
            " ",
            "\n\t ",
            "a\rb",
            "a\u{0}",
            "a\u{7f}",
            "a\u{85}",
            "\u{1b}[2J",
        ] {
            assert_eq!(code(bad), Some(InvalidText), "{bad:?}");
        }
    }

    #[test]
    fn the_limit_counts_bytes_not_characters() {
        assert_eq!(code(&"x".repeat(17)), Some(crate::ErrorCode::TooLong));
        // Nine two-byte characters are 18 bytes.
        assert_eq!(code(&"é".repeat(9)), Some(crate::ErrorCode::TooLong));
        assert_eq!(code(&"é".repeat(8)), None);
    }

    #[test]
    fn stored_texts_are_checked_for_rules_but_not_size() {
        let long = format!("\"{}\"", "x".repeat(5000));
        assert!(serde_json::from_str::<Text>(&long).is_ok());
        assert!(serde_json::from_str::<Text>("\"  \"").is_err());
    }

    proptest! {
        #[test]
        fn an_accepted_text_is_kept_verbatim(text in "\\PC{0,20}") {
            if let Ok(t) = Text::parse(&text, 4096) {
                prop_assert_eq!(t.as_str(), text.as_str());
                prop_assert!(!text.trim().is_empty());
            }
        }
    }
}

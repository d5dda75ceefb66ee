//! The alphabet that user names and room names share.
//!
//! Both are 1–N characters from `A–Z a–z 0–9 _ - .` and start with a letter or digit: short,
//! printable, unambiguous in a terminal, and safe as file names (no `/`, no leading `.`).

/// Why a string is not an identifier, phrased for a person ("a name …" / "a room name …").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdentifierProblem {
    /// The string is empty.
    Empty,
    /// The string is longer than allowed.
    TooLong,
    /// The first character is not a letter or digit.
    BadStart,
    /// A character outside the alphabet.
    BadCharacter,
}

/// Checks `text` against the shared alphabet with at most `max_len` characters.
pub(crate) fn check_identifier(text: &str, max_len: usize) -> Result<(), IdentifierProblem> {
    let bytes = text.as_bytes();
    match bytes.first() {
        None => Err(IdentifierProblem::Empty),
        Some(_) if bytes.len() > max_len => Err(IdentifierProblem::TooLong),
        Some(first) if !first.is_ascii_alphanumeric() => Err(IdentifierProblem::BadStart),
        Some(_)
            if !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) =>
        {
            Err(IdentifierProblem::BadCharacter)
        }
        Some(_) => Ok(()),
    }
}

//! The line protocol: plain UTF-8 lines a person types and reads, so `nc` is a full client.
//!
//! The line TCP transport speaks it to `nc`, and the terminal client speaks it to its user over
//! WebSocket; both read what is typed and show what happens with the modules here, so a rule or
//! a text is never written twice:
//!
//! - [`split`]: framing, a byte stream cut into lines (`\n`, `\r\n`, over-long lines dropped).
//! - [`slash`]: the slash-command language (`/join rust`, `/dm bob hi`) a typed line is read with.
//! - [`session`]: the line session, a state machine from typed lines and server events to
//!   commands and lines to show (naming, one room at a time, every problem's text).
//! - [`render`]: how events look as lines (`[HH:MM:SS] #room <alice> text`, `* …`, `! …`).

pub mod render;
pub mod session;
pub mod slash;
pub mod split;

pub use session::{Action, BYE, LineSession, NAME_PROMPT};
pub use slash::{HELP, Slash, parse_line};
pub use split::{Line, LineSplitter};

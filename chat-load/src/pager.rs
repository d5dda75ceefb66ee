//! The pager (`--pager ROOM`): one more WebSocket client that reads a room's stored history while
//! the load runs, so that a run with it and one without show whether history reads stall
//! fan-out.
//!
//! It logs in, joins ROOM, leaves the load's room (so the broadcast's recipients are the same with
//! and without it), and then asks for one page of 500 at a time, newest first: the first without
//! `before`, each next one before the oldest id of the last, and after an empty page from the
//! newest again. It waits for each answer (matched by `ref`) before it asks again, so at most
//! one page is in flight; with `--pager-rate R` it also asks R pages a second at most (an answer
//! that comes late delays the asks after it, and none are made up for). An `unavailable` or
//! `rate_limited` error is counted and the same page asked again after a short pause; any other
//! error, a room without history, or the connection's end fails the run. It stops at the end of
//! the sending period; a page still in flight then is not counted.

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::{self, Reader, Target, Writer};
use crate::ws_raw::{Frame, RawReader, RawWriter};

/// Messages per page: the most the server gives.
const PAGE: usize = 500;
/// The pause before a refused page is asked again.
const RETRY: Duration = Duration::from_millis(10);
/// How long setting up (the leave) may take.
const SETUP: Duration = Duration::from_secs(10);

/// What the pager read.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PagerStats {
    /// Pages answered, empty ones included.
    pub(crate) pages: u64,
    /// Messages in those pages.
    pub(crate) messages: u64,
    /// Pages refused with `unavailable` or `rate_limited` (and asked again).
    pub(crate) refused: u64,
}

/// The fields of a server frame the pager looks at; the rest is skipped.
#[derive(Deserialize)]
struct Reply {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    messages: Vec<Id>,
    #[serde(rename = "ref", default)]
    reference: Option<u64>,
}

#[derive(Deserialize)]
struct Id {
    id: u64,
}

/// A logged-in connection that is in the room it pages through.
pub(crate) struct Pager {
    writer: RawWriter,
    reader: RawReader,
    room: String,
    /// The `ref` of the last request.
    reference: u64,
}

impl Pager {
    /// Connects as `name`, joins `room` and leaves `leave` (the load's room, which the login may
    /// have joined).
    pub(crate) async fn connect(
        target: &Target,
        source: Option<Ipv4Addr>,
        name: &str,
        room: &str,
        leave: &str,
    ) -> io::Result<Self> {
        let (Writer::Ws(writer), Reader::Ws(reader)) =
            client::connect(target, source, name, Some(room)).await?
        else {
            return Err(io::Error::other("the pager speaks WebSocket only"));
        };
        let mut pager = Pager {
            writer,
            reader,
            room: room.to_owned(),
            reference: 0,
        };
        if leave != room {
            // `left`, or `not_in_room` if the login joined no such room: either is fine.
            let frame = format!(r#"{{"type":"leave","room":"{leave}","ref":0}}"#);
            pager.writer.text(frame.as_bytes()).await?;
            tokio::time::timeout(SETUP, pager.reply(0))
                .await
                .map_err(|_| io::Error::other("no answer to the pager's leave"))??;
        }
        Ok(pager)
    }

    /// Pages until `deadline`, at most `rate` pages a second (0: no pause between pages).
    pub(crate) async fn run(mut self, deadline: Instant, rate: f64) -> io::Result<PagerStats> {
        let mut stats = PagerStats::default();
        let mut before: Option<u64> = None;
        // A tick that comes late (a slow answer) delays the ticks after it: no burst makes up
        // for it.
        let mut pace = (rate > 0.0).then(|| {
            let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
            pace
        });
        loop {
            if let Some(pace) = &mut pace
                && tokio::time::timeout_at(deadline, pace.tick())
                    .await
                    .is_err()
            {
                return Ok(stats);
            }
            let page = match tokio::time::timeout_at(deadline, self.page(before)).await {
                Ok(page) => page?,
                Err(_) => return Ok(stats),
            };
            match page {
                Some(ids) if ids.is_empty() && before.is_none() => {
                    return Err(io::Error::other(format!(
                        "#{} has no history for the pager to read",
                        self.room
                    )));
                }
                Some(ids) => {
                    stats.pages += 1;
                    stats.messages += ids.len() as u64;
                    // Oldest first, but the minimum does not rely on it.
                    before = ids.iter().map(|id| id.id).min();
                }
                None => {
                    stats.refused += 1;
                    if tokio::time::timeout_at(deadline, tokio::time::sleep(RETRY))
                        .await
                        .is_err()
                    {
                        return Ok(stats);
                    }
                }
            }
        }
    }

    /// Asks for the page before `before` (the newest without it) and waits for it: its ids, or
    /// `None` if the server refused it for now.
    async fn page(&mut self, before: Option<u64>) -> io::Result<Option<Vec<Id>>> {
        self.reference += 1;
        let before = before
            .map(|id| format!(r#","before":{id}"#))
            .unwrap_or_default();
        let frame = format!(
            r#"{{"type":"history","room":"{}"{before},"limit":{PAGE},"ref":{}}}"#,
            self.room, self.reference
        );
        self.writer.text(frame.as_bytes()).await?;
        let reply = self.reply(self.reference).await?;
        match (reply.kind.as_str(), reply.code.as_deref()) {
            ("history", _) => Ok(Some(reply.messages)),
            ("error", Some("unavailable" | "rate_limited")) => Ok(None),
            (kind, code) => Err(io::Error::other(format!(
                "the pager's history request got {kind} {}",
                code.unwrap_or_default()
            ))),
        }
    }

    /// The next frame carrying `reference`; other frames are skipped.
    async fn reply(&mut self, reference: u64) -> io::Result<Reply> {
        loop {
            match self.reader.next().await {
                Some(Frame::Text(text)) => {
                    if let Ok(reply) = serde_json::from_slice::<Reply>(text) {
                        if reply.reference == Some(reference) {
                            return Ok(reply);
                        }
                    }
                }
                Some(Frame::Other) => {}
                Some(Frame::Close) | None => {
                    return Err(io::Error::other("the server closed the pager's connection"));
                }
            }
        }
    }
}

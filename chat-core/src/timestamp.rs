//! Wall-clock instants as the protocol shows them.
//!
//! The core never reads a clock: the runtime passes a [`Timestamp`] with every input, and a message
//! keeps the one it was accepted at. On the wire a timestamp is RFC 3339 in UTC with milliseconds
//! (`2026-11-22T01:02:03.456Z`), and the line transport shows `HH:MM:SS`.
//!
//! The conversion between days and calendar dates is Howard Hinnant's `civil_from_days` /
//! `days_from_civil` (public domain, exact for the proleptic Gregorian calendar). It is written out
//! here rather than taken from a date crate because `chat-core` keeps its dependencies to serde and
//! thiserror; the tests check it against an independent calendar walk.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC; the year is kept within 0000–9999 so that every value
/// has an RFC 3339 form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// Milliseconds from 1970-01-01 to 10000-01-01: the first instant that has no 4-digit year.
const END_MILLIS: u64 = 253_402_300_800_000;
const MILLIS_PER_DAY: u64 = 86_400_000;

/// Why a string is not a timestamp of the protocol's form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 UTC timestamp of the form 2026-11-22T01:02:03.456Z: {0:?}")]
pub struct TimestampError(String);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00.000Z.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The instant `millis` milliseconds after the Unix epoch, clamped to the last instant of the
    /// year 9999.
    pub fn from_unix_millis(millis: u64) -> Self {
        Timestamp(millis.min(END_MILLIS - 1))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> u64 {
        self.0
    }

    /// Converts a system time; instants before the epoch become the epoch. This is the one place
    /// a runtime turns its clock into core time.
    pub fn from_system_time(time: SystemTime) -> Self {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self::from_unix_millis(millis)
    }

    /// This instant plus `duration` (saturating at the end of year 9999).
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self::from_unix_millis(self.0.saturating_add(millis))
    }

    /// Hours, minutes and seconds of the day in UTC, as the line transport's `[HH:MM:SS]` shows.
    pub fn time_of_day(self) -> (u8, u8, u8) {
        let secs = (self.0 % MILLIS_PER_DAY) / 1000;
        // Each part is below 60 (or 24), so the narrowing cannot lose anything.
        (
            (secs / 3600) as u8,
            (secs / 60 % 60) as u8,
            (secs % 60) as u8,
        )
    }

    /// Parses the exact form [`Display`](fmt::Display) writes: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError(text.chars().take(40).collect());
        let b = text.as_bytes();
        if b.len() != 24
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || b[19] != b'.'
            || b[23] != b'Z'
        {
            return Err(err());
        }
        let num = |range: std::ops::Range<usize>| -> Option<u64> {
            b[range].iter().try_fold(0u64, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
            })
        };
        let field = |range| num(range).ok_or_else(err);
        let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
        let (hour, minute, second, milli) = (
            field(11..13)?,
            field(14..16)?,
            field(17..19)?,
            field(20..23)?,
        );
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(err());
        }
        let days = days_from_civil(year as i64, month as u32, day as u32);
        let since_epoch_ms = days * MILLIS_PER_DAY as i64
            + ((hour * 3600 + minute * 60 + second) * 1000 + milli) as i64;
        // Years before 1970 are valid RFC 3339 but predate every message this server can accept.
        u64::try_from(since_epoch_ms)
            .map(Timestamp)
            .map_err(|_| err())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = (self.0 / MILLIS_PER_DAY) as i64;
        let ms_of_day = self.0 % MILLIS_PER_DAY;
        let (year, month, day) = civil_from_days(days);
        let (h, m, s) = self.time_of_day();
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
            ms_of_day % 1000
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn is_leap(year: u64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_the_protocol_example() {
        let ts = Timestamp::parse("2026-11-22T01:02:03.456Z").unwrap();
        assert_eq!(ts.to_string(), "2026-11-22T01:02:03.456Z");
        assert_eq!(ts.time_of_day(), (1, 2, 3));
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00.000Z");
        // 2026-11-22T00:00:00Z is 20,779 days after the epoch.
        assert_eq!(ts.unix_millis(), 20_779 * MILLIS_PER_DAY + 3_723_456);
    }

    #[test]
    fn leap_days_are_dates_and_their_neighbours_are_not() {
        assert!(Timestamp::parse("2024-02-29T00:00:00.000Z").is_ok());
        assert!(Timestamp::parse("2000-02-29T00:00:00.000Z").is_ok());
        assert!(Timestamp::parse("2100-02-29T00:00:00.000Z").is_err());
        assert!(Timestamp::parse("2023-02-29T00:00:00.000Z").is_err());
        assert!(Timestamp::parse("2023-04-31T00:00:00.000Z").is_err());
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "",
            "2026-11-22T01:02:03Z",
            "2026-11-22T01:02:03.456+00:00",
            "2026-11-22 01:02:03.456Z",
            "2026-13-22T01:02:03.456Z",
            "2026-11-22T24:02:03.456Z",
            "2026-11-22T01:60:03.456Z",
            "2026-11-22T01:02:60.456Z",
            "2026-11-2aT01:02:03.456Z",
            "1969-12-31T23:59:59.999Z",
            "2026-11-22T01:02:03.456Zé",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let ts = Timestamp::from_unix_millis(1_700_000_000_123);
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
    }

    #[test]
    fn clamps_to_year_9999() {
        let last = Timestamp::from_unix_millis(u64::MAX);
        assert_eq!(last.to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(last.saturating_add(Duration::from_secs(5)), last);
    }

    /// An independent calendar: walk the days from the epoch one month at a time.
    fn walk(days: u64) -> (u64, u64, u64) {
        let (mut y, mut m, mut left) = (1970, 1, days);
        loop {
            let len = days_in_month(y, m);
            if left < len {
                return (y, m, left + 1);
            }
            left -= len;
            m += 1;
            if m == 13 {
                (y, m) = (y + 1, 1);
            }
        }
    }

    #[test]
    fn every_day_of_four_centuries_matches_a_calendar_walk() {
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for days in 0..146_097u64 {
            let (cy, cm, cd) = civil_from_days(days as i64);
            assert_eq!((cy as u64, cm as u64, cd as u64), (y, m, d), "day {days}");
            assert_eq!(days_from_civil(cy, cm, cd), days as i64);
            d += 1;
            if d > days_in_month(y, m) {
                (m, d) = (m + 1, 1);
                if m == 13 {
                    (y, m) = (y + 1, 1);
                }
            }
        }
        assert_eq!(walk(20_779), (2026, 11, 22));
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(millis in 0..END_MILLIS) {
            let ts = Timestamp::from_unix_millis(millis);
            let text = ts.to_string();
            prop_assert_eq!(text.len(), 24);
            prop_assert_eq!(Timestamp::parse(&text).unwrap(), ts);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,30}") {
            let _ = Timestamp::parse(&text);
        }
    }
}

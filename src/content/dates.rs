//! Content stage: reading post dates in the shapes generators write them.
//!
//! Imports: nothing of the crate.
//!
//! Date only (`2025-03-09`, midnight in the site timezone), RFC 3339,
//! `YYYY-MM-DD HH:MM:SS ±zzzz` (Jekyll, Hugo), naive date-times read in the
//! site timezone, and RFC 2822.

use chrono::{DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// The formats a date may take, for error messages.
pub const EXPECTED: &str = "YYYY-MM-DD, an RFC 3339 time (2025-03-09T10:00:00+01:00), YYYY-MM-DD HH:MM:SS +ZZZZ, or RFC 2822";

/// Why a date could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateError {
    /// Not in any of the [`EXPECTED`] shapes.
    Unreadable,
    /// Readable, but outside the years feeds and mail headers can carry.
    OutOfRange,
}

/// The years a date may fall in: RFC 2822 (RSS, mail) writes four digits.
pub const YEARS: std::ops::RangeInclusive<i32> = 1000..=9999;

/// Reads `text` as a point in time; naive values are read in `tz`.
pub fn parse(text: &str, tz: Tz) -> Result<DateTime<FixedOffset>, DateError> {
    let date = read(text, tz).ok_or(DateError::Unreadable)?;
    if in_range(&date) {
        Ok(date)
    } else {
        Err(DateError::OutOfRange)
    }
}

/// Whether `date` falls within [`YEARS`], both where it was written and in UTC.
pub fn in_range(date: &DateTime<FixedOffset>) -> bool {
    YEARS.contains(&date.year()) && YEARS.contains(&date.naive_utc().year())
}

fn read(text: &str, tz: Tz) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(date) = DateTime::parse_from_rfc3339(text) {
        return Some(date);
    }
    for format in [
        "%Y-%m-%d %H:%M:%S %z",
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%d %H:%M %z",
    ] {
        if let Ok(date) = DateTime::parse_from_str(text, format) {
            return Some(date);
        }
    }
    if let Ok(date) = DateTime::parse_from_rfc2822(text) {
        return Some(date);
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return in_zone(naive, tz);
        }
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    in_zone(date.and_hms_opt(0, 0, 0)?, tz)
}

/// A wall-clock time in `tz`; in a daylight-saving gap the first valid
/// instant after it, in an overlap the earlier one.
pub fn in_zone(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<FixedOffset>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(date) | LocalResult::Ambiguous(date, _) => Some(date.fixed_offset()),
        LocalResult::None => in_zone(naive + chrono::Duration::hours(1), tz),
    }
}

/// The `YYYY-MM-DD-` prefix of a Jekyll file name, and the rest.
pub fn jekyll_prefix(stem: &str) -> Option<(NaiveDate, &str)> {
    let prefix = stem.get(..11)?;
    let date = NaiveDate::parse_from_str(prefix.strip_suffix('-')?, "%Y-%m-%d").ok()?;
    if !YEARS.contains(&date.year()) {
        return None;
    }
    let rest = &stem[11..];
    (!rest.is_empty()).then_some((date, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, tz: Tz) -> String {
        match parse(text, tz) {
            Ok(d) => d.to_rfc3339(),
            Err(DateError::Unreadable) => "none".into(),
            Err(DateError::OutOfRange) => "out of range".into(),
        }
    }

    #[test]
    fn every_documented_shape() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(at("2025-03-09", Tz::UTC), "2025-03-09T00:00:00+00:00");
        assert_eq!(at("2025-03-09", berlin), "2025-03-09T00:00:00+01:00");
        assert_eq!(
            at("2025-03-09T10:30:00Z", berlin),
            "2025-03-09T10:30:00+00:00"
        );
        assert_eq!(
            at("2025-03-09T10:30:00-05:00", berlin),
            "2025-03-09T10:30:00-05:00"
        );
        assert_eq!(
            at("2025-03-09 10:30:00 +0100", Tz::UTC),
            "2025-03-09T10:30:00+01:00"
        );
        assert_eq!(
            at("2025-07-09 10:30:00", berlin),
            "2025-07-09T10:30:00+02:00"
        );
        assert_eq!(at("2025-07-09T10:30", berlin), "2025-07-09T10:30:00+02:00");
        assert_eq!(
            at("Sun, 09 Mar 2025 10:30:00 +0000", berlin),
            "2025-03-09T10:30:00+00:00"
        );
        assert_eq!(at("March 9", Tz::UTC), "none");
        assert_eq!(at("2025-02-30", Tz::UTC), "none");
    }

    #[test]
    fn years_outside_four_digits_are_out_of_range() {
        assert_eq!(at("+10000-01-01", Tz::UTC), "out of range");
        assert_eq!(at("-0001-01-01", Tz::UTC), "out of range");
        assert_eq!(at("1 Jan 99999 00:00 +0000", Tz::UTC), "out of range");
        assert_eq!(at("0999-12-31", Tz::UTC), "out of range");
        assert_eq!(at("9999-12-31T23:00:00-05:00", Tz::UTC), "out of range");
        assert_eq!(at("1000-01-01", Tz::UTC), "1000-01-01T00:00:00+00:00");
    }

    #[test]
    fn daylight_saving_gap_moves_forward() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            at("2025-03-30 02:30:00", berlin),
            "2025-03-30T03:30:00+02:00"
        );
    }

    #[test]
    fn jekyll_prefixes() {
        let (date, rest) = jekyll_prefix("2024-01-31-hello-world").unwrap();
        assert_eq!(date.to_string(), "2024-01-31");
        assert_eq!(rest, "hello-world");
        assert!(jekyll_prefix("2024-01-31").is_none());
        assert!(jekyll_prefix("hello").is_none());
    }
}

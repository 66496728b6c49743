//! Date parsing for `date` fields: RFC 3339, `yyyy-MM-dd` and epoch milliseconds.

use tantivy::time::format_description::well_known::Rfc3339;
use tantivy::time::{Date, Month, OffsetDateTime};
use tantivy::DateTime;

/// Nanoseconds in one day.
const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

/// A parsed date value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ParsedDate {
    /// The instant (midnight UTC for a day-only date).
    pub instant: DateTime,
    /// Whether the input was a day (`yyyy-MM-dd`) rather than an instant.
    pub day_only: bool,
}

impl ParsedDate {
    /// The instant one day later, if representable.
    pub fn next_day(&self) -> Option<DateTime> {
        self.instant
            .into_timestamp_nanos()
            .checked_add(DAY_NANOS)
            .map(DateTime::from_timestamp_nanos)
    }
}

/// Epoch milliseconds to a date, if representable (tantivy dates are i64
/// nanoseconds: years 1677 to 2262).
pub(crate) fn from_epoch_millis(millis: i64) -> Option<DateTime> {
    millis
        .checked_mul(1_000_000)
        .map(DateTime::from_timestamp_nanos)
}

/// Parses a date string: RFC 3339 (`2024-01-01T10:00:00Z`), a local date-time
/// without offset taken as UTC (`2024-01-01T10:00:00`), a day
/// (`2024-01-01`), or epoch milliseconds (`1704067200000`).
pub(crate) fn parse_date(text: &str) -> Option<ParsedDate> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let millis: i64 = text.parse().ok()?;
        return from_epoch_millis(millis).map(|instant| ParsedDate {
            instant,
            day_only: false,
        });
    }
    if let Some(instant) = parse_rfc3339(text) {
        return Some(ParsedDate {
            instant,
            day_only: false,
        });
    }
    if let Some(instant) = parse_day(text) {
        return Some(ParsedDate {
            instant,
            day_only: true,
        });
    }
    // `yyyy-MM-ddTHH:mm:ss[.fff]` without offset: UTC, as Elasticsearch does.
    if text.len() >= 19 && text.as_bytes().get(10) == Some(&b'T') {
        if let Some(instant) = parse_rfc3339(&format!("{text}Z")) {
            return Some(ParsedDate {
                instant,
                day_only: false,
            });
        }
    }
    None
}

/// Strict RFC 3339 parsing, as used for dynamic date detection.
pub(crate) fn parse_rfc3339(text: &str) -> Option<DateTime> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    DateTime::try_from_utc(parsed)
}

fn parse_day(text: &str) -> Option<DateTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year: i32 = text.get(0..4)?.parse().ok()?;
    let month: u8 = text.get(5..7)?.parse().ok()?;
    let day: u8 = text.get(8..10)?.parse().ok()?;
    if !text.get(0..4)?.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    DateTime::try_from_utc(date.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_formats() {
        let day = parse_date("2024-01-02").unwrap();
        assert!(day.day_only);
        assert_eq!(day.instant.into_timestamp_secs(), 1_704_153_600);
        let instant = parse_date("2024-01-02T00:00:00Z").unwrap();
        assert!(!instant.day_only);
        assert_eq!(instant.instant, day.instant);
        assert_eq!(
            parse_date("2024-01-02T01:00:00+01:00").unwrap().instant,
            day.instant
        );
        assert_eq!(
            parse_date("2024-01-02T00:00:00").unwrap().instant,
            day.instant
        );
        assert_eq!(parse_date("1704153600000").unwrap().instant, day.instant);
        assert_eq!(
            day.next_day().unwrap().into_timestamp_secs(),
            1_704_153_600 + 86_400
        );
    }

    #[test]
    fn rejects_garbage_and_out_of_range() {
        for bad in [
            "",
            "-",
            "abc",
            "2024-13-01",
            "2024-02-30",
            "+024-01-01",
            "9999999999999999999",
        ] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
        assert!(from_epoch_millis(i64::MAX).is_none());
    }
}

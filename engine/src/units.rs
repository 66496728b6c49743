//! Elasticsearch's unit values: time values (`500ms`, `1m`, `12h`) and byte sizes (`1mb`,
//! `512mb`, `9223372036854775807b`), parsed from and rendered to the strings its REST API uses.
//!
//! Rendering picks the largest unit that represents the value exactly, so the defaults render
//! the way Elasticsearch shows them (`32mb`, `500ms`, `1m`) and a render/parse round trip never
//! changes a value.

use std::fmt;
use std::time::Duration;

/// Parses an Elasticsearch time value (`500ms`, `1s`, `5m`, `12h`, `1d`, or bare
/// milliseconds) into milliseconds. `None` for anything else (negative values included).
pub fn parse_time_millis(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Renders milliseconds as an Elasticsearch time value in the largest exact unit (`0s` for 0).
pub fn format_time_millis(millis: u64) -> String {
    if millis == 0 {
        return "0s".to_string();
    }
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    for (factor, unit) in UNITS {
        if millis.is_multiple_of(factor) {
            return format!("{}{unit}", millis / factor);
        }
    }
    format!("{millis}ms")
}

/// A duration that renders as an Elasticsearch time value (millisecond precision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeValue(pub Duration);

impl TimeValue {
    /// `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> TimeValue {
        TimeValue(Duration::from_millis(millis))
    }

    /// Parses `500ms`, `1m`, ... (see [`parse_time_millis`]).
    pub fn parse(text: &str) -> Option<TimeValue> {
        parse_time_millis(text).map(TimeValue::from_millis)
    }

    /// Whole milliseconds.
    pub fn millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for TimeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_time_millis(self.millis()))
    }
}

const BYTE_UNITS: [(u64, &str); 5] = [
    (1 << 50, "pb"),
    (1 << 40, "tb"),
    (1 << 30, "gb"),
    (1 << 20, "mb"),
    (1 << 10, "kb"),
];

/// A number of bytes that parses and renders as an Elasticsearch byte size (`1mb`, `512mb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` mebibytes.
    pub const fn mb(n: u64) -> ByteSize {
        ByteSize(n << 20)
    }

    /// The byte count.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Parses `<number><unit>` with unit `b`, `k`/`kb`, `m`/`mb`, `g`/`gb`, `t`/`tb` or
    /// `p`/`pb` (any case); the number may have a fraction (`1.5gb`, rounded down to whole
    /// bytes). Like Elasticsearch, a bare number is refused unless it is `0`, so that a missing
    /// unit is never silently read as bytes.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(ByteSize(0));
        }
        let lower = text.to_ascii_lowercase();
        let split = lower
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("failed to parse [{text}]: unit is missing or unrecognized"))?;
        let (number, unit) = lower.split_at(split);
        let factor: u64 = match unit.trim() {
            "b" => 1,
            "k" | "kb" => 1 << 10,
            "m" | "mb" => 1 << 20,
            "g" | "gb" => 1 << 30,
            "t" | "tb" => 1 << 40,
            "p" | "pb" => 1 << 50,
            _ => {
                return Err(format!(
                    "failed to parse [{text}]: unit is missing or unrecognized"
                ))
            }
        };
        let invalid = || format!("failed to parse [{text}]: not a byte size");
        let bytes = match number.split_once('.') {
            None => number
                .parse::<u64>()
                .ok()
                .and_then(|whole| whole.checked_mul(factor))
                .ok_or_else(invalid)?,
            Some(_) => {
                let value: f64 = number.parse().map_err(|_| invalid())?;
                let bytes = value * factor as f64;
                if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
                    return Err(invalid());
                }
                bytes as u64
            }
        };
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 > 0 {
            for (factor, unit) in BYTE_UNITS {
                if self.0.is_multiple_of(factor) {
                    return write!(f, "{}{unit}", self.0 / factor);
                }
            }
        }
        write!(f, "{}b", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_values_parse_and_render_in_the_largest_exact_unit() {
        assert_eq!(parse_time_millis("1s"), Some(1000));
        assert_eq!(parse_time_millis("500ms"), Some(500));
        assert_eq!(parse_time_millis("12h"), Some(43_200_000));
        assert_eq!(parse_time_millis("250"), Some(250));
        assert_eq!(parse_time_millis("abc"), None);
        assert_eq!(parse_time_millis("5x"), None);
        assert_eq!(parse_time_millis("-1"), None);
        assert_eq!(format_time_millis(500), "500ms");
        assert_eq!(format_time_millis(60_000), "1m");
        assert_eq!(format_time_millis(90_000), "90s");
        assert_eq!(format_time_millis(43_200_000), "12h");
        assert_eq!(format_time_millis(0), "0s");
        for millis in [1, 999, 1000, 61_000, 3_600_000, 86_400_000 * 3] {
            assert_eq!(parse_time_millis(&format_time_millis(millis)), Some(millis));
        }
        assert_eq!(TimeValue::from_millis(60_000).to_string(), "1m");
    }

    #[test]
    fn byte_sizes_parse_like_elasticsearch_and_round_trip() {
        assert_eq!(ByteSize::parse("1mb"), Ok(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("32MB"), Ok(ByteSize::mb(32)));
        assert_eq!(ByteSize::parse("512m"), Ok(ByteSize::mb(512)));
        assert_eq!(ByteSize::parse("10kb"), Ok(ByteSize(10 << 10)));
        assert_eq!(ByteSize::parse("1.5gb"), Ok(ByteSize(3 << 29)));
        assert_eq!(ByteSize::parse("17b"), Ok(ByteSize(17)));
        assert_eq!(ByteSize::parse("0"), Ok(ByteSize(0)));
        assert!(ByteSize::parse("100")
            .unwrap_err()
            .contains("unit is missing"));
        assert!(ByteSize::parse("12zb").is_err());
        assert!(ByteSize::parse("mb").is_err());
        assert!(ByteSize::parse("99999999999pb").is_err());
        assert_eq!(ByteSize::mb(32).to_string(), "32mb");
        assert_eq!(ByteSize::mb(1024).to_string(), "1gb");
        assert_eq!(
            ByteSize(i64::MAX as u64).to_string(),
            "9223372036854775807b"
        );
        assert_eq!(ByteSize(0).to_string(), "0b");
        for bytes in [1, 1023, 1024, 5 << 20, (7 << 30) + 1, i64::MAX as u64] {
            assert_eq!(
                ByteSize::parse(&ByteSize(bytes).to_string()),
                Ok(ByteSize(bytes))
            );
        }
    }
}

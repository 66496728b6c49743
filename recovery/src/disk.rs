//! The disk high watermark: a recovery refuses to copy a commit that would take the follower's
//! disk past it (Elasticsearch's `cluster.routing.allocation.disk.watermark.high`, 90% by
//! default, which there keeps shards from being allocated to a node past it).
//!
//! The check uses the lengths the leader announces, before any file is created, so a leader
//! that announces more than the disk holds (by mistake or on purpose) costs nothing but an
//! error. Free space is read with `statvfs(3)` on the follower's shard directory: the blocks
//! available to unprivileged users (`f_bavail`), as Elasticsearch counts them, so the space
//! reserved for root is not counted as free.

use std::fmt;
use std::path::Path;

use crate::error::RecoveryError;
use tandem_engine::storage::Storage;

/// The setting's name, as Elasticsearch spells it (error messages name it).
pub const DISK_WATERMARK_HIGH_SETTING: &str = "cluster.routing.allocation.disk.watermark.high";
/// Elasticsearch's switch for every disk watermark.
pub const DISK_THRESHOLD_ENABLED_SETTING: &str =
    "cluster.routing.allocation.disk.threshold_enabled";
/// Basis points in 100%.
const ALL_BASIS_POINTS: u64 = 10_000;

/// How full a recovery may make the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskWatermark {
    /// The used share of the disk may not pass this many hundredths of a percent
    /// (`"90%"` or `0.9` is 9000).
    UsedBasisPoints(u32),
    /// At least this many bytes must stay available (`"50gb"`).
    FreeBytes(u64),
    /// No check (`cluster.routing.allocation.disk.threshold_enabled: false`).
    Disabled,
}

impl Default for DiskWatermark {
    /// 90% used, Elasticsearch's default.
    fn default() -> Self {
        DiskWatermark::UsedBasisPoints(9_000)
    }
}

impl fmt::Display for DiskWatermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskWatermark::UsedBasisPoints(points) if points % 100 == 0 => {
                write!(f, "{}%", points / 100)
            }
            DiskWatermark::UsedBasisPoints(points) => {
                write!(f, "{}.{:02}%", points / 100, points % 100)
            }
            DiskWatermark::FreeBytes(bytes) => write!(f, "{bytes}b"),
            DiskWatermark::Disabled => f.write_str("disabled"),
        }
    }
}

impl DiskWatermark {
    /// Parses Elasticsearch's forms: a percentage (`"90%"`, `"92.5%"`), a ratio (`"0.9"`) or
    /// a byte size of free space to keep, given as a number of bytes already parsed by the
    /// caller (`parse_bytes`, which knows the units), tried when the value is neither.
    pub fn parse(
        value: &str,
        parse_bytes: impl FnOnce(&str) -> Option<u64>,
    ) -> Result<DiskWatermark, String> {
        let value = value.trim();
        let out_of_range = || format!("[{value}] is not a percentage or ratio in 0..=100%");
        if let Some(percent) = value.strip_suffix('%') {
            let percent: f64 = percent.trim().parse().map_err(|_| out_of_range())?;
            return Self::from_fraction(percent / 100.0).ok_or_else(out_of_range);
        }
        if let Ok(ratio) = value.parse::<f64>() {
            return Self::from_fraction(ratio).ok_or_else(out_of_range);
        }
        parse_bytes(value)
            .map(DiskWatermark::FreeBytes)
            .ok_or_else(|| format!("[{value}] is not a percentage, a ratio or a byte size"))
    }

    fn from_fraction(fraction: f64) -> Option<DiskWatermark> {
        if !(0.0..=1.0).contains(&fraction) {
            return None;
        }
        Some(DiskWatermark::UsedBasisPoints(
            (fraction * ALL_BASIS_POINTS as f64).round() as u32,
        ))
    }

    /// True when a disk of `total_bytes` with `available_bytes` available is past this
    /// watermark: more used than the share allowed, or less available than the bytes to keep.
    pub fn is_exceeded(&self, total_bytes: u64, available_bytes: u64) -> bool {
        match *self {
            DiskWatermark::UsedBasisPoints(points) => {
                let used = total_bytes.saturating_sub(available_bytes);
                u128::from(used) * u128::from(ALL_BASIS_POINTS)
                    > u128::from(total_bytes) * u128::from(points)
            }
            DiskWatermark::FreeBytes(keep) => available_bytes < keep,
            DiskWatermark::Disabled => false,
        }
    }

    /// Whether `self` allows no more of the disk to be used than `other` does, when both are
    /// of the same form (a share used, or bytes kept free); `None` when their forms differ,
    /// which Elasticsearch refuses for the watermarks of one node.
    pub fn at_most(&self, other: &DiskWatermark) -> Option<bool> {
        match (*self, *other) {
            (DiskWatermark::UsedBasisPoints(a), DiskWatermark::UsedBasisPoints(b)) => Some(a <= b),
            (DiskWatermark::FreeBytes(a), DiskWatermark::FreeBytes(b)) => Some(a >= b),
            (DiskWatermark::Disabled, _) | (_, DiskWatermark::Disabled) => Some(true),
            _ => None,
        }
    }

    /// Bytes that may still be written on a disk of `total_bytes` with `available_bytes`
    /// available before this watermark is passed.
    pub fn writable_bytes(&self, total_bytes: u64, available_bytes: u64) -> u64 {
        match *self {
            DiskWatermark::UsedBasisPoints(points) => {
                let used = total_bytes.saturating_sub(available_bytes);
                let allowed = (u128::from(total_bytes) * u128::from(points)
                    / u128::from(ALL_BASIS_POINTS)) as u64;
                allowed.saturating_sub(used).min(available_bytes)
            }
            DiskWatermark::FreeBytes(keep) => available_bytes.saturating_sub(keep),
            DiskWatermark::Disabled => u64::MAX,
        }
    }
}

pub use tandem_engine::storage::DiskSpace;

/// Refuses to write `needed_bytes` into `dir` of `storage` when that would pass `watermark`
/// (a storage without a size, the simulated disk, passes).
pub fn check_watermark(
    storage: &dyn Storage,
    dir: &Path,
    watermark: DiskWatermark,
    needed_bytes: u64,
) -> Result<(), RecoveryError> {
    if watermark == DiskWatermark::Disabled || needed_bytes == 0 {
        return Ok(());
    }
    let Some(space) = storage
        .disk_space(dir)
        .map_err(|error| RecoveryError::io(dir, error))?
    else {
        return Ok(());
    };
    let writable_bytes = watermark.writable_bytes(space.total_bytes, space.available_bytes);
    if needed_bytes > writable_bytes {
        return Err(RecoveryError::DiskWatermark {
            setting: DISK_WATERMARK_HIGH_SETTING,
            watermark: watermark.to_string(),
            needed_bytes,
            writable_bytes,
            available_bytes: space.available_bytes,
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_engine::storage::RealStorage;

    fn no_bytes(_: &str) -> Option<u64> {
        None
    }

    #[test]
    fn a_watermark_is_exceeded_past_its_share_or_under_its_free_bytes() {
        let gib = 1u64 << 30;
        let ninety_five = DiskWatermark::UsedBasisPoints(9_500);
        assert!(
            !ninety_five.is_exceeded(100 * gib, 5 * gib),
            "exactly 95% used"
        );
        assert!(ninety_five.is_exceeded(100 * gib, 5 * gib - 1));
        assert!(ninety_five.is_exceeded(100 * gib, 0));
        assert!(
            !ninety_five.is_exceeded(0, 0),
            "a disk of no size is not full"
        );
        let keep = DiskWatermark::FreeBytes(10 * gib);
        assert!(!keep.is_exceeded(100 * gib, 10 * gib));
        assert!(keep.is_exceeded(100 * gib, 10 * gib - 1));
        assert!(!DiskWatermark::Disabled.is_exceeded(100 * gib, 0));
        assert_eq!(
            DiskWatermark::UsedBasisPoints(9_000).at_most(&ninety_five),
            Some(true)
        );
        assert_eq!(
            ninety_five.at_most(&DiskWatermark::UsedBasisPoints(9_000)),
            Some(false)
        );
        assert_eq!(
            DiskWatermark::FreeBytes(20 * gib).at_most(&keep),
            Some(true)
        );
        assert_eq!(
            keep.at_most(&DiskWatermark::FreeBytes(20 * gib)),
            Some(false)
        );
        assert_eq!(keep.at_most(&ninety_five), None);
    }

    #[test]
    fn percentages_and_ratios_parse_as_elasticsearch_writes_them() {
        let parse = |value| DiskWatermark::parse(value, no_bytes);
        assert_eq!(parse("90%"), Ok(DiskWatermark::UsedBasisPoints(9_000)));
        assert_eq!(parse("92.5%"), Ok(DiskWatermark::UsedBasisPoints(9_250)));
        assert_eq!(parse("0.85"), Ok(DiskWatermark::UsedBasisPoints(8_500)));
        assert_eq!(parse("100%"), Ok(DiskWatermark::UsedBasisPoints(10_000)));
        assert!(parse("101%").is_err());
        assert!(parse("-1%").is_err());
        assert!(parse("1.5").is_err());
        assert!(parse("lots").is_err());
        assert_eq!(
            DiskWatermark::parse("50gb", |_| Some(50 << 30)),
            Ok(DiskWatermark::FreeBytes(50 << 30))
        );
        assert_eq!(DiskWatermark::default().to_string(), "90%");
        assert_eq!(DiskWatermark::UsedBasisPoints(9_250).to_string(), "92.50%");
    }

    #[test]
    fn writable_bytes_stop_at_the_watermark() {
        let ninety = DiskWatermark::default();
        // 1000 bytes, 400 available: 600 used, 900 allowed.
        assert_eq!(ninety.writable_bytes(1_000, 400), 300);
        // Already past it.
        assert_eq!(ninety.writable_bytes(1_000, 50), 0);
        // Never more than is available, whatever the setting.
        assert_eq!(
            DiskWatermark::UsedBasisPoints(10_000).writable_bytes(1_000, 10),
            10
        );
        assert_eq!(
            DiskWatermark::FreeBytes(100).writable_bytes(1_000, 400),
            300
        );
        assert_eq!(DiskWatermark::FreeBytes(500).writable_bytes(1_000, 400), 0);
        // No overflow at the extremes.
        assert!(ninety.writable_bytes(u64::MAX, u64::MAX / 2) <= u64::MAX / 2);
        assert_eq!(ninety.writable_bytes(0, 0), 0);
    }

    #[test]
    fn a_need_past_the_watermark_is_refused_naming_the_setting_and_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let space = RealStorage.disk_space(dir.path()).unwrap().unwrap();
        assert!(space.total_bytes >= space.available_bytes);
        let needed = space.available_bytes + (1 << 40);
        let error = check_watermark(&RealStorage, dir.path(), DiskWatermark::default(), needed)
            .unwrap_err()
            .to_string();
        assert!(error.contains(DISK_WATERMARK_HIGH_SETTING), "{error}");
        assert!(error.contains(&needed.to_string()), "{error}");
        check_watermark(&RealStorage, dir.path(), DiskWatermark::Disabled, needed).unwrap();
        check_watermark(&RealStorage, dir.path(), DiskWatermark::default(), 0).unwrap();
    }
}

//! The retention lease log: a shard's leases persisted as an append-only log of changes, so
//! that adding or renewing one lease writes one small record, not every lease.
//!
//! # On-disk format (`retention_leases.log` in the shard directory)
//!
//! ```text
//! magic "TDLEASE1" (8 bytes)
//! record*: length (u32 LE) | crc32c of the payload (u32 LE) | payload (`length` bytes, JSON)
//! ```
//!
//! A payload is a [`LeaseChange`]: the leases version after the change, the leases added or
//! changed (whole), the ids removed, and `reset` for a snapshot (every lease, replacing all
//! before). The first record of a file is always a snapshot.
//!
//! # Guarantees
//!
//! - A change is appended and fsynced before [`LeaseLog::append`] returns `Ok`; the caller
//!   installs the change only then, so the leases in memory are never ahead of the disk.
//! - [`LeaseLog::open`] replays the records in order. A torn tail (the last record cut short,
//!   or failing its checksum with nothing but zeros after it: a crash during an append) is
//!   ignored and cut off: the state at open is what was fsynced. A bad record followed by
//!   valid bytes is corruption, reported as [`EngineError::Corrupted`], never skipped.
//! - When the file grows past [`LEASE_LOG_COMPACT_MIN_BYTES`] and four times its last
//!   snapshot, it is compacted: replaced atomically ([`durable_file::replace_atomically`]) by
//!   one snapshot. The file's size is therefore bounded by a constant plus a multiple of the
//!   leases' own size (themselves bounded in count and id length by [`crate::leases`]).
//! - A failed append cuts the file back to its last good record, and if even that fails, the
//!   next change compacts: a failed write never leaves garbage that later records follow.
//! - Cutting a tail (at open, or after a failed append) is not synced by itself: the next
//!   append writes at the cut and its sync makes the new length durable too. A power cut
//!   before that brings back a tail that replay drops again: what follows the last good record
//!   is either a record cut short, zeros, or the JSON of an older record's payload (when a
//!   shorter record was written over it), whose first four bytes, read as a length, point far
//!   past the end of the file, which replay treats as a torn tail, never as corruption.
//!
//! Only the shard's lease mutex calls these functions (one writer per file).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable_file;
use crate::error::{EngineError, Result};
use crate::leases::{RetentionLease, RetentionLeases};
use crate::storage::{FileRef, OpenMode, StorageRef, SyncSite};

/// The file holding a shard's lease log.
pub const RETENTION_LEASES_LOG_FILE: &str = "retention_leases.log";
/// The whole-file JSON format of earlier versions: read once, converted to a log, removed.
const LEGACY_LEASES_FILE: &str = "retention_leases.json";
/// First bytes of a lease log.
const MAGIC: &[u8; 8] = b"TDLEASE1";
/// Bytes before a record's payload: its length and its checksum.
const RECORD_HEADER_BYTES: usize = 8;
/// The largest record: a snapshot of the most leases a shard may hold with the longest ids and
/// sources ([`crate::leases::MAX_RETENTION_LEASES_PER_SHARD`] of about 1.4 KiB each) fits
/// several times over; anything longer is not a record.
pub const MAX_LEASE_RECORD_BYTES: usize = 8 * 1024 * 1024;
/// A log smaller than this is never compacted: at about 200 bytes per renewal it holds
/// thousands of changes before one rewrite.
pub const LEASE_LOG_COMPACT_MIN_BYTES: u64 = 1024 * 1024;
/// A log is compacted when it is larger than this many times its last snapshot (and than
/// [`LEASE_LOG_COMPACT_MIN_BYTES`]).
const COMPACT_RATIO: u64 = 4;

/// One record: a change of the leases, or a snapshot of all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseChange {
    /// The leases version after the change.
    version: u64,
    /// A snapshot: the leases before are dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    reset: bool,
    /// Leases added or changed, whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    put: Vec<RetentionLease>,
    /// Ids of the leases removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    remove: Vec<String>,
}

impl LeaseChange {
    fn snapshot(leases: &RetentionLeases) -> LeaseChange {
        LeaseChange {
            version: leases.version,
            reset: true,
            put: leases.leases.values().cloned().collect(),
            remove: Vec::new(),
        }
    }

    /// What turns `before` into `after`.
    fn between(before: &RetentionLeases, after: &RetentionLeases) -> LeaseChange {
        LeaseChange {
            version: after.version,
            reset: false,
            put: after
                .leases
                .values()
                .filter(|lease| before.leases.get(&lease.id) != Some(lease))
                .cloned()
                .collect(),
            remove: before
                .leases
                .keys()
                .filter(|id| !after.leases.contains_key(*id))
                .cloned()
                .collect(),
        }
    }

    fn apply(self, leases: &mut RetentionLeases) {
        if self.reset {
            leases.leases.clear();
        }
        for id in self.remove {
            leases.leases.remove(&id);
        }
        for lease in self.put {
            leases.leases.insert(lease.id.clone(), lease);
        }
        leases.version = self.version;
    }
}

/// The open lease log of one shard (see the module documentation).
pub(crate) struct LeaseLog {
    storage: StorageRef,
    path: PathBuf,
    file: FileRef,
    /// Bytes of the file up to the end of its last good record.
    length: u64,
    /// Bytes of the snapshot the file starts with.
    snapshot_bytes: u64,
    /// Set when a failed append may have left bytes after the last good record: the next
    /// change rewrites the file.
    needs_rewrite: bool,
}

impl LeaseLog {
    /// Opens the log of the shard in `dir` and replays it; creates it (from the legacy JSON
    /// file if there is one, else empty) when there is none.
    pub(crate) fn open(storage: StorageRef, dir: &Path) -> Result<(LeaseLog, RetentionLeases)> {
        let path = dir.join(RETENTION_LEASES_LOG_FILE);
        let Some(bytes) = durable_file::read_if_exists(&*storage, &path)? else {
            let leases = load_legacy(&storage, dir)?;
            let log = LeaseLog::create(storage.clone(), dir, &leases)?;
            durable_file::remove_file(&*storage, &dir.join(LEGACY_LEASES_FILE))?;
            return Ok((log, leases));
        };
        let replayed = replay(&path, &bytes)?;
        let file = storage
            .open(&path, OpenMode::ReadWrite)
            .map_err(|error| EngineError::io(&path, error))?;
        if replayed.length < bytes.len() as u64 {
            tracing::warn!(path = %path.display(), kept = replayed.length, found = bytes.len(), "cutting the torn tail of a retention lease log");
            // Not synced: the next append's sync makes the cut durable with it, and a tail that
            // comes back after a power cut before that is cut again (see the module docs).
            file.set_len(replayed.length)
                .map_err(|error| EngineError::io(&path, error))?;
        }
        let log = LeaseLog {
            storage,
            path,
            file,
            length: replayed.length,
            snapshot_bytes: replayed.snapshot_bytes,
            needs_rewrite: false,
        };
        Ok((log, replayed.leases))
    }

    /// Writes a new log in `dir` holding `leases` (replacing any log there) and opens it.
    pub(crate) fn create(
        storage: StorageRef,
        dir: &Path,
        leases: &RetentionLeases,
    ) -> Result<LeaseLog> {
        let path = dir.join(RETENTION_LEASES_LOG_FILE);
        let record = encode_record(&LeaseChange::snapshot(leases))?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + record.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&record);
        durable_file::replace_atomically(&*storage, &path, &bytes)?;
        let file = storage
            .open(&path, OpenMode::ReadWrite)
            .map_err(|error| EngineError::io(&path, error))?;
        Ok(LeaseLog {
            storage,
            path,
            file,
            length: bytes.len() as u64,
            snapshot_bytes: record.len() as u64,
            needs_rewrite: false,
        })
    }

    /// Bytes of the log file.
    pub(crate) fn size_in_bytes(&self) -> u64 {
        self.length
    }

    /// Persists the change from `before` to `after` durably: appends it, or compacts the log
    /// into a snapshot of `after` when it has grown past its bound. On `Err` the file holds
    /// `before` (the caller keeps it installed).
    pub(crate) fn append(
        &mut self,
        before: &RetentionLeases,
        after: &RetentionLeases,
    ) -> Result<()> {
        let bound = LEASE_LOG_COMPACT_MIN_BYTES.max(self.snapshot_bytes * COMPACT_RATIO);
        if self.needs_rewrite || self.length > bound {
            let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
            *self = LeaseLog::create(self.storage.clone(), &dir, after)?;
            return Ok(());
        }
        let record = encode_record(&LeaseChange::between(before, after))?;
        let written = self
            .file
            .write_all_at(&record, self.length)
            .and_then(|()| self.file.sync_data(SyncSite::LeaseLogAppend));
        if let Err(error) = written {
            // Cut what may have reached the file; if that fails too, rewrite on the next change.
            // Not synced, as at open: the next append's sync covers it.
            let cut = self.file.set_len(self.length);
            self.needs_rewrite = cut.is_err();
            return Err(EngineError::io(&self.path, error));
        }
        self.length += record.len() as u64;
        Ok(())
    }
}

/// The leases of the legacy whole-file format, or none.
fn load_legacy(storage: &StorageRef, dir: &Path) -> Result<RetentionLeases> {
    let path = dir.join(LEGACY_LEASES_FILE);
    match durable_file::read_if_exists(&**storage, &path)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|error| EngineError::Corrupted {
            path,
            reason: format!("retention leases are not valid JSON: {error}"),
        }),
        None => Ok(RetentionLeases::default()),
    }
}

fn encode_record(change: &LeaseChange) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(change)
        .map_err(|error| EngineError::encode("a retention lease change", error))?;
    assert!(
        payload.len() <= MAX_LEASE_RECORD_BYTES,
        "lease counts and id lengths are bounded, so a record is: {} bytes",
        payload.len()
    );
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// What a replay found.
struct Replayed {
    leases: RetentionLeases,
    /// Bytes up to the end of the last good record.
    length: u64,
    snapshot_bytes: u64,
}

fn replay(path: &Path, bytes: &[u8]) -> Result<Replayed> {
    let corrupted = |reason: String| EngineError::Corrupted {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupted(
            "not a retention lease log (bad magic)".to_string(),
        ));
    }
    let mut leases = RetentionLeases::default();
    let mut offset = MAGIC.len();
    let mut snapshot_bytes = None;
    while offset < bytes.len() {
        let Some(payload) = record_at(bytes, offset) else {
            let rest = &bytes[offset..];
            let torn = record_extends_past(bytes, offset) || rest.iter().all(|byte| *byte == 0);
            if torn && snapshot_bytes.is_some() {
                break;
            }
            return Err(corrupted(format!(
                "a damaged record at byte {offset} is followed by more data"
            )));
        };
        let change: LeaseChange = serde_json::from_slice(payload).map_err(|error| {
            corrupted(format!(
                "record at byte {offset} is not a lease change: {error}"
            ))
        })?;
        let record_bytes = (RECORD_HEADER_BYTES + payload.len()) as u64;
        if snapshot_bytes.is_none() {
            if !change.reset {
                return Err(corrupted("the first record is not a snapshot".to_string()));
            }
            snapshot_bytes = Some(record_bytes);
        }
        change.apply(&mut leases);
        offset += record_bytes as usize;
    }
    let Some(snapshot_bytes) = snapshot_bytes else {
        return Err(corrupted("the log has no snapshot record".to_string()));
    };
    Ok(Replayed {
        leases,
        length: offset as u64,
        snapshot_bytes,
    })
}

/// The payload of the record at `offset` if the record is whole and its checksum matches.
fn record_at(bytes: &[u8], offset: usize) -> Option<&[u8]> {
    let header = bytes.get(offset..offset.checked_add(RECORD_HEADER_BYTES)?)?;
    let length = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if length == 0 || length > MAX_LEASE_RECORD_BYTES {
        return None;
    }
    let start = offset + RECORD_HEADER_BYTES;
    let payload = bytes.get(start..start.checked_add(length)?)?;
    (crc32c::crc32c(payload) == crc).then_some(payload)
}

/// True when the record at `offset` is cut by the end of the file (its header, or the length
/// its header announces, does not fit), or is the last thing in it: an append interrupted by a
/// crash.
fn record_extends_past(bytes: &[u8], offset: usize) -> bool {
    let Some(header) = bytes.get(offset..offset + RECORD_HEADER_BYTES) else {
        return true;
    };
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    offset + RECORD_HEADER_BYTES + length >= bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SeqNo;
    use std::fs;

    fn add(leases: &mut RetentionLeases, id: &str, seq_no: i64) {
        leases.add(id, SeqNo(seq_no), "ccr", 1).unwrap();
    }

    #[test]
    fn changes_replay_to_the_same_leases() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut leases) = LeaseLog::open(crate::storage::real(), dir.path()).unwrap();
        assert_eq!(leases, RetentionLeases::default());
        for (id, seq_no) in [("a", 1), ("b", 2), ("c", 3)] {
            let before = leases.clone();
            add(&mut leases, id, seq_no);
            log.append(&before, &leases).unwrap();
        }
        let before = leases.clone();
        leases.renew("b", SeqNo(9), 5).unwrap();
        leases.remove("a").unwrap();
        log.append(&before, &leases).unwrap();
        drop(log);
        let (_, replayed) = LeaseLog::open(crate::storage::real(), dir.path()).unwrap();
        assert_eq!(replayed, leases);
    }

    #[test]
    fn a_legacy_json_file_is_converted_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut leases = RetentionLeases::default();
        add(&mut leases, "old", 4);
        fs::write(
            dir.path().join(LEGACY_LEASES_FILE),
            serde_json::to_vec(&leases).unwrap(),
        )
        .unwrap();
        let (_, opened) = LeaseLog::open(crate::storage::real(), dir.path()).unwrap();
        assert_eq!(opened, leases);
        assert!(!dir.path().join(LEGACY_LEASES_FILE).exists());
        let (_, reopened) = LeaseLog::open(crate::storage::real(), dir.path()).unwrap();
        assert_eq!(reopened, leases);
    }

    #[test]
    fn damage_before_the_tail_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut leases) = LeaseLog::open(crate::storage::real(), dir.path()).unwrap();
        let first_record_end = log.size_in_bytes();
        for id in ["a", "b"] {
            let before = leases.clone();
            add(&mut leases, id, 1);
            log.append(&before, &leases).unwrap();
        }
        drop(log);
        let path = dir.path().join(RETENTION_LEASES_LOG_FILE);
        let mut bytes = fs::read(&path).unwrap();
        // Flip a payload byte of the second record ("a"), which the third follows.
        bytes[first_record_end as usize + RECORD_HEADER_BYTES + 2] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            LeaseLog::open(crate::storage::real(), dir.path()),
            Err(EngineError::Corrupted { .. })
        ));
        fs::write(&path, b"TDLEASE0").unwrap();
        assert!(matches!(
            LeaseLog::open(crate::storage::real(), dir.path()),
            Err(EngineError::Corrupted { .. })
        ));
    }
}

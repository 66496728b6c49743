//! Write-ahead translog of a shard.
//!
//! Every operation the engine applies is first appended here as a record
//! `(seq_no, payload)`; a record is *durable* once [`Translog::sync_up_to`]
//! (or [`Translog::sync`]) returned `Ok` for a location at or after it.
//! On restart [`Translog::open`] replays the records so the engine can redo
//! whatever its index had not committed.
//!
//! # Files
//!
//! A translog directory holds:
//!
//! * `translog-<generation>.tlog`: one file per generation. The newest is the
//!   *current* generation (appends go there); [`Translog::roll_generation`]
//!   starts a new one and [`Translog::trim_below`] deletes old ones.
//! * `translog.ckp`: the checkpoint, saying which generations exist and how
//!   many bytes of the current one are known to be fsynced.
//!
//! All integers are little-endian.
//!
//! ## Generation file
//!
//! ```text
//! header:  magic "TNDMTLOG" (8) | format version u32 (= 1) | generation u64
//!          | uuid length u32 (<= 256) | uuid bytes (UTF-8)
//!          | crc32c u32 over everything before it in the header
//! records: len u32 | crc32c u32 | seq_no u64 | payload
//! ```
//!
//! `len` counts the bytes that follow the crc (`8 + payload.len()`), so it is
//! at least 8 and at most `8 + MAX_RECORD_BYTES`; the crc32c covers `seq_no`
//! and `payload`. A `len` of zero marks the end of the log: the current
//! generation file is preallocated in `PREALLOCATION_CHUNK_BYTES` steps by *writing zeros*
//! (not `fallocate`, whose unwritten extents make every later fdatasync commit
//! a metadata change: ~950 µs against ~330 µs measured here), and the zeros past
//! the logical end read as a clean end.
//!
//! ## Checkpoint file
//!
//! 8192 bytes holding two slots, A at offset 0 and B at offset 4096, each:
//!
//! ```text
//! magic "TNDMCKPT" (8) | counter u64 | current generation u64
//! | min generation u64 | synced offset of the current generation u64
//! | crc32c u32 over the 40 bytes before it
//! ```
//!
//! Each write goes to slot `counter % 2` with `counter + 1`, so writes
//! alternate between the slots; on open the valid slot with the highest counter
//! wins, a slot with a bad crc is ignored, and two bad slots are
//! [`TranslogError::Corrupted`].
//!
//! * After every group-commit `fdatasync` of the generation file, the new
//!   synced offset is `pwrite`n to the next slot *without* fsyncing the
//!   checkpoint: a process crash keeps it in the page cache, and after a power
//!   loss an older slot only claims fewer synced bytes, which is more lenient.
//! * Roll, trim and open change which files exist (or shrink the
//!   current file). They write the new state into **both** slots, fsyncing
//!   after each, so that no slot describing the previous set of files can win
//!   later, even if a later non-fsynced slot write is torn by a power loss.
//!   The fsync of the first of those two writes is the commit point.
//! * Create writes both slots without fsyncing them: nothing depends on a new
//!   translog before it is opened, and open writes the checkpoint durably (the
//!   engine opens every translog it creates before a commit that names it can
//!   be acknowledged; a shard or index whose creation was cut short is removed).
//! * Removing generation files (trim, left-overs at open) is not made durable
//!   with a directory fsync: a removed generation that comes back after a power
//!   loss is outside the checkpoint's `[min generation, generation]` and is
//!   removed again by the next open. The checkpoint naming the new min
//!   generation is durable before any file is removed.
//!
//! # Guarantees and open rules
//!
//! * A record whose location was passed to a successful `sync_up_to` is on
//!   disk (written with one `write_all` and `fdatasync`) and will be returned
//!   by `open`, in append order.
//! * Rolled generations (< current) were fully synced and truncated to their
//!   logical end before the checkpoint naming the new generation was
//!   committed: any invalid frame in them is `Corrupted { path, offset }`.
//! * In the current generation every frame before the checkpoint's synced
//!   offset must be valid (`Corrupted` otherwise, never skipped). After it,
//!   valid frames are kept and the first invalid or incomplete frame, or a
//!   zero length, ends the log: the file is truncated there and fsynced, and a
//!   `tracing::warn!` says how many bytes were dropped (unless they were only
//!   preallocated zeros).
//! * Generation files above the checkpoint's generation (an interrupted roll)
//!   or below its min generation (an interrupted trim) are deleted on open.
//! * Headers are always validated: wrong magic, version, generation or uuid,
//!   or a bad header crc is `Corrupted`.
//! * A failed write or fsync latches the translog: every later sync, roll or
//!   trim returns [`TranslogError::Failed`] and appends are dropped (an fsync
//!   is never retried, since the page-cache state is unknown after a failure).
//! * Except a full disk: a write of buffered records that fails with `ENOSPC`
//!   (before any fsync) returns [`TranslogError::NoSpace`] and puts the records
//!   back in the buffer, in order, ahead of anything appended since. Nothing
//!   is latched: the next sync writes them again at the same offset (a
//!   positional write of the same bytes, so a partly written first attempt
//!   does not matter), and they become durable once the disk has room. A
//!   roll's own write of records appended while it runs is the exception: it
//!   has already switched generations, so `ENOSPC` there latches.
//! * `append` does no I/O: it encodes the frame into an in-memory buffer under
//!   a `parking_lot` mutex. Concurrent `sync_up_to` callers share one
//!   write + fsync (group commit).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::durable_file::{self, DurableFileError};
use crate::storage::{FileReader, FileRef, OpenMode, Storage, StorageFile, StorageRef, SyncSite};

mod format;
#[cfg(test)]
mod tests;

#[cfg(test)]
use format::scan_frames;
use format::{
    encode_frame, encode_header, header_len, read_checkpoint, read_header, scan_file, Checkpoint,
    StopKind, CKP_FILE_BYTES, CKP_SLOT_STRIDE, MAX_UUID_BYTES,
};
#[cfg(any(test, feature = "fuzzing"))]
use format::{frame_prefix, push_frame};

/// Largest payload a single record may carry (64 MiB). A frame's `len` field
/// is at most `8 + MAX_RECORD_BYTES`; anything larger is treated as invalid.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Size of the steps in which the current generation file is preallocated.
const PREALLOCATION_CHUNK_BYTES: u64 = if cfg!(test) { 64 * 1024 } else { 2 << 20 };

/// Name of the checkpoint file.
const CHECKPOINT_FILE: &str = "translog.ckp";

/// Where a record ends in the log; records are totally ordered by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TranslogLocation {
    /// Generation file holding the record.
    pub generation: u64,
    /// Offset just past the record's frame in that file.
    pub end_offset: u64,
}

/// Errors of the translog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranslogError {
    /// An I/O operation failed.
    #[error("translog I/O error on {path}: {source}")]
    Io {
        /// File or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds data that cannot be valid (and is not a torn tail).
    #[error("translog corrupted: {path} at offset {offset}: {reason}")]
    Corrupted {
        /// The corrupted file.
        path: PathBuf,
        /// Offset of the invalid header, frame or slot.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The disk under the translog is full: the records were not written, stay buffered,
    /// and are written by the next sync (see the module docs). Nothing is latched.
    #[error(
        "no space left on the device of the translog {path}: the operations are kept in memory \
         and written once space is freed ({source})"
    )]
    NoSpace {
        /// The generation file the write was for.
        path: PathBuf,
        /// The underlying error (`ENOSPC`).
        #[source]
        source: std::io::Error,
    },
    /// An earlier write or fsync failed; the translog accepts no more writes.
    #[error("translog is closed after an earlier I/O failure: {0}")]
    Failed(String),
}

impl From<DurableFileError> for TranslogError {
    fn from(error: DurableFileError) -> Self {
        TranslogError::Io {
            path: error.path,
            source: error.source,
        }
    }
}

/// Result type of the translog.
pub type Result<T> = std::result::Result<T, TranslogError>;

/// Counters for tests and stats.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TranslogStats {
    /// `fdatasync` calls made by group commits (one per batch written).
    pub fsyncs: u64,
    /// Records appended since this `Translog` was created or opened.
    pub records_appended: u64,
    /// Records made durable by this `Translog`'s syncs.
    pub records_synced: u64,
}

type Listener = dyn Fn(&[u64]) + Send + Sync;

/// In-memory part: records appended but not yet handed to a sync.
struct AppendBuffer {
    /// Generation the buffered records belong to.
    generation: u64,
    /// File offset where `bytes` will be written.
    start: u64,
    /// Encoded frames.
    bytes: Vec<u8>,
    /// Seq_nos of the frames in `bytes`, in order.
    seq_nos: Vec<u64>,
    /// Records appended (stats).
    appended: u64,
}

impl AppendBuffer {
    fn end(&self) -> TranslogLocation {
        TranslogLocation {
            generation: self.generation,
            end_offset: self.start + self.bytes.len() as u64,
        }
    }
}

/// The checkpoint file and the last state written to it.
struct CheckpointFile {
    file: FileRef,
    path: PathBuf,
    last: Checkpoint,
}

impl CheckpointFile {
    /// Writes the next slot (no fsync).
    fn write(
        &mut self,
        generation: u64,
        min_generation: u64,
        synced_offset: u64,
    ) -> io::Result<()> {
        let next = Checkpoint {
            counter: self.last.counter + 1,
            generation,
            min_generation,
            synced_offset,
        };
        self.file
            .write_all_at(&next.encode(), next.slot() * CKP_SLOT_STRIDE)?;
        self.last = next;
        Ok(())
    }

    /// Writes the state into both slots, fsyncing after each.
    fn write_durable(
        &mut self,
        generation: u64,
        min_generation: u64,
        synced_offset: u64,
    ) -> io::Result<()> {
        for _ in 0..2 {
            self.write(generation, min_generation, synced_offset)?;
            self.file.sync_data(SyncSite::TranslogCheckpoint)?;
        }
        Ok(())
    }
}

/// State owned by the syncing thread (held during write + fsync).
struct SyncState {
    /// Current generation file.
    file: FileRef,
    path: PathBuf,
    generation: u64,
    /// Logical end of the data written (and fsynced) to `file`.
    written_end: u64,
    /// Length the file was preallocated to.
    allocated_end: u64,
    /// False once preallocation failed for this file.
    preallocation_enabled: bool,
    min_generation: u64,
    checkpoint_file: CheckpointFile,
    /// Logical sizes of the kept rolled generations.
    older_sizes: BTreeMap<u64, u64>,
    /// Reusable buffer swapped in for the append buffer.
    spare: Vec<u8>,
}

impl SyncState {
    /// Makes sure the file is preallocated up to at least `needed` bytes.
    fn preallocate(&mut self, needed: u64) {
        if !self.preallocation_enabled || needed <= self.allocated_end {
            return;
        }
        let new_end = (needed / PREALLOCATION_CHUNK_BYTES + 1) * PREALLOCATION_CHUNK_BYTES;
        let from = self.allocated_end;
        match preallocate_with_zeros(&*self.file, from, new_end - from) {
            Ok(()) => self.allocated_end = new_end,
            Err(error) => {
                tracing::debug!(path = %self.path.display(), error = %error, "translog preallocation unavailable");
                self.preallocation_enabled = false;
            }
        }
    }
}

/// Writes zeros over `offset..offset + length`, so the blocks are allocated and initialized.
fn preallocate_with_zeros(file: &dyn StorageFile, offset: u64, length: u64) -> io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];
    let mut position = offset;
    let end = offset + length;
    while position < end {
        let step = (end - position).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..step], position)?;
        position += step as u64;
    }
    Ok(())
}

/// The write-ahead log of one shard. `Send + Sync`; share it as
/// `Arc<Translog>` between writer threads.
pub struct Translog {
    /// Where the files are.
    storage: StorageRef,
    dir: PathBuf,
    uuid: String,
    header_length: u64,
    buffer: Mutex<AppendBuffer>,
    sync: Mutex<SyncState>,
    /// Everything up to here is durable.
    durable: Mutex<TranslogLocation>,
    /// Signalled (with `durable` held) when a group-commit leader finishes.
    durable_changed: Condvar,
    /// True while a group-commit leader writes and fsyncs; changed with `durable` held.
    syncing: AtomicBool,
    failed: OnceLock<String>,
    listener: RwLock<Option<Arc<Listener>>>,
    current_generation: AtomicU64,
    min_generation: AtomicU64,
    older_bytes: AtomicU64,
    fsyncs: AtomicU64,
    records_synced: AtomicU64,
    #[cfg(test)]
    fail_next_sync: std::sync::atomic::AtomicBool,
}

fn io_error(path: &Path, source: io::Error) -> TranslogError {
    TranslogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupted(path: &Path, offset: u64, reason: impl Into<String>) -> TranslogError {
    TranslogError::Corrupted {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

fn generation_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("translog-{generation}.tlog"))
}

/// Generation files present in `dir`, sorted by generation.
fn list_generations(storage: &dyn Storage, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut generations = Vec::new();
    for entry in storage.list(dir).map_err(|error| io_error(dir, error))? {
        let name = entry.name.as_str();
        let Some(number) = name
            .strip_prefix("translog-")
            .and_then(|rest| rest.strip_suffix(".tlog"))
        else {
            continue;
        };
        if let Ok(generation) = number.parse::<u64>() {
            generations.push((generation, dir.join(name)));
        }
    }
    generations.sort();
    Ok(generations)
}

/// Creates a generation file holding just its header, fsynced.
fn create_generation_file(
    storage: &dyn Storage,
    path: &Path,
    generation: u64,
    uuid: &str,
) -> io::Result<FileRef> {
    let file = storage.open(path, OpenMode::CreateTruncate)?;
    file.write_all_at(&encode_header(generation, uuid), 0)?;
    file.sync_all(SyncSite::TranslogGenerationHeader)?;
    Ok(file)
}

/// True when `file` holds only zero bytes in `from..to`.
fn range_is_zero(file: &dyn StorageFile, from: u64, to: u64) -> io::Result<bool> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut position = from;
    while position < to {
        let step = ((to - position).min(chunk.len() as u64)) as usize;
        file.read_exact_at(&mut chunk[..step], position)?;
        if chunk[..step].iter().any(|&byte| byte != 0) {
            return Ok(false);
        }
        position += step as u64;
    }
    Ok(true)
}

impl Translog {
    /// Creates a new, empty translog in `dir` (which must exist and hold no
    /// translog) at generation 1. The generation file and the directory are
    /// fsynced, the checkpoint is not: it is durable once the translog is
    /// opened (see the module docs), which every caller does before relying on it.
    pub fn create(storage: StorageRef, dir: &Path, translog_uuid: &str) -> Result<Translog> {
        if translog_uuid.len() > MAX_UUID_BYTES {
            return Err(io_error(
                dir,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("translog uuid longer than {MAX_UUID_BYTES} bytes"),
                ),
            ));
        }
        let checkpoint_path = dir.join(CHECKPOINT_FILE);
        let exists = storage
            .exists(&checkpoint_path)
            .map_err(|error| io_error(&checkpoint_path, error))?;
        if exists || !list_generations(&*storage, dir)?.is_empty() {
            return Err(io_error(
                dir,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "directory already holds a translog",
                ),
            ));
        }
        let generation = 1;
        let path = generation_path(dir, generation);
        let file = create_generation_file(&*storage, &path, generation, translog_uuid)
            .map_err(|error| io_error(&path, error))?;
        let header_length = header_len(translog_uuid);
        let checkpoint_handle = storage
            .open(&checkpoint_path, OpenMode::CreateNew)
            .map_err(|error| io_error(&checkpoint_path, error))?;
        checkpoint_handle
            .set_len(CKP_FILE_BYTES)
            .map_err(|error| io_error(&checkpoint_path, error))?;
        let mut checkpoint_file = CheckpointFile {
            file: checkpoint_handle,
            path: checkpoint_path,
            last: Checkpoint {
                counter: 0,
                generation,
                min_generation: generation,
                synced_offset: header_length,
            },
        };
        checkpoint_file
            .write(generation, generation, header_length)
            .and_then(|()| checkpoint_file.write(generation, generation, header_length))
            .map_err(|error| io_error(&checkpoint_file.path, error))?;
        durable_file::sync_dir(&*storage, dir, SyncSite::TranslogDirCreate)?;
        Ok(Self::assemble(
            storage,
            dir,
            translog_uuid.to_owned(),
            file,
            path,
            generation,
            generation,
            header_length,
            checkpoint_file,
            BTreeMap::new(),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        storage: StorageRef,
        dir: &Path,
        uuid: String,
        file: FileRef,
        path: PathBuf,
        generation: u64,
        min_generation: u64,
        end: u64,
        checkpoint_file: CheckpointFile,
        older_sizes: BTreeMap<u64, u64>,
    ) -> Translog {
        let header_length = header_len(&uuid);
        let older_bytes = older_sizes.values().sum();
        Translog {
            storage,
            dir: dir.to_path_buf(),
            uuid,
            header_length,
            buffer: Mutex::new(AppendBuffer {
                generation,
                start: end,
                bytes: Vec::new(),
                seq_nos: Vec::new(),
                appended: 0,
            }),
            sync: Mutex::new(SyncState {
                file,
                path,
                generation,
                written_end: end,
                allocated_end: end,
                preallocation_enabled: true,
                min_generation,
                checkpoint_file,
                older_sizes,
                spare: Vec::new(),
            }),
            durable: Mutex::new(TranslogLocation {
                generation,
                end_offset: end,
            }),
            durable_changed: Condvar::new(),
            syncing: AtomicBool::new(false),
            failed: OnceLock::new(),
            listener: RwLock::new(None),
            current_generation: AtomicU64::new(generation),
            min_generation: AtomicU64::new(min_generation),
            older_bytes: AtomicU64::new(older_bytes),
            fsyncs: AtomicU64::new(0),
            records_synced: AtomicU64::new(0),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Opens an existing translog: validates every kept generation file,
    /// truncates a torn tail of the current generation, and returns the
    /// translog plus every record `(seq_no, payload)` of generations
    /// `>= from_generation`, in log order. See the module docs for the rules.
    #[allow(clippy::type_complexity)] // the signature is the engine's contract
    pub fn open(
        storage: StorageRef,
        dir: &Path,
        from_generation: u64,
    ) -> Result<(Translog, Vec<(u64, Vec<u8>)>)> {
        let checkpoint_path = dir.join(CHECKPOINT_FILE);
        let checkpoint_handle = storage
            .open(&checkpoint_path, OpenMode::ReadWrite)
            .map_err(|error| io_error(&checkpoint_path, error))?;
        let checkpoint = read_checkpoint(&*checkpoint_handle, &checkpoint_path)?;
        let open_generation = |generation: u64, write: bool| -> Result<(FileRef, PathBuf)> {
            let path = generation_path(dir, generation);
            let mode = if write {
                OpenMode::ReadWrite
            } else {
                OpenMode::Read
            };
            match storage.open(&path, mode) {
                Ok(file) => Ok((file, path)),
                Err(error) if error.kind() == io::ErrorKind::NotFound => Err(corrupted(
                    &path,
                    0,
                    format!("generation file {generation} named by the checkpoint is missing"),
                )),
                Err(error) => Err(io_error(&path, error)),
            }
        };

        // The current generation's header tells the uuid all others must carry.
        let (current_file, current_path) = open_generation(checkpoint.generation, true)?;
        let (uuid, header_length) = read_header(
            &mut FileReader::new(&*current_file, 0),
            &current_path,
            checkpoint.generation,
            None,
        )?;

        let mut records = Vec::new();
        let mut older_sizes = BTreeMap::new();
        for generation in checkpoint.min_generation..checkpoint.generation {
            let (file, path) = open_generation(generation, false)?;
            let length = file.len().map_err(|error| io_error(&path, error))?;
            let (_, records_start) = read_header(
                &mut FileReader::new(&*file, 0),
                &path,
                generation,
                Some(&uuid),
            )?;
            let keep = generation >= from_generation;
            let outcome = scan_file(
                &*file,
                &path,
                records_start,
                length,
                &mut |_, _, seq_no, payload| {
                    if keep {
                        records.push((seq_no, payload.to_vec()));
                    }
                },
            )?;
            match outcome.stop {
                StopKind::End => {}
                StopKind::ZeroLength => {
                    return Err(corrupted(
                        &path,
                        outcome.valid_end,
                        "zero-length frame in a rolled generation",
                    ))
                }
                StopKind::Invalid(reason) => {
                    return Err(corrupted(&path, outcome.valid_end, reason));
                }
            }
            older_sizes.insert(generation, length);
        }

        // Current generation: strict up to the synced offset, lenient after.
        let length = current_file
            .len()
            .map_err(|error| io_error(&current_path, error))?;
        let synced = checkpoint.synced_offset.max(header_length);
        if synced > length {
            return Err(corrupted(
                &current_path,
                length,
                format!("file has {length} bytes but the checkpoint says {synced} are synced"),
            ));
        }
        let keep = checkpoint.generation >= from_generation;
        let mut hit_synced = synced == header_length;
        let outcome = scan_file(
            &*current_file,
            &current_path,
            header_length,
            length,
            &mut |_, end, seq_no, payload| {
                hit_synced |= end == synced;
                if keep {
                    records.push((seq_no, payload.to_vec()));
                }
            },
        )?;
        if outcome.valid_end < synced {
            let reason = match outcome.stop {
                StopKind::Invalid(reason) => reason,
                _ => "zero-length frame".to_owned(),
            };
            return Err(corrupted(
                &current_path,
                outcome.valid_end,
                format!("{reason} before the synced offset {synced}"),
            ));
        }
        if !hit_synced {
            return Err(corrupted(
                &current_path,
                synced,
                "synced offset is not at a record boundary",
            ));
        }
        let end = outcome.valid_end;
        if length > end {
            let dropped = length - end;
            let zeros = matches!(outcome.stop, StopKind::ZeroLength)
                && range_is_zero(&*current_file, end, length)
                    .map_err(|error| io_error(&current_path, error))?;
            if zeros {
                tracing::debug!(path = %current_path.display(), dropped, "dropping preallocated translog tail");
            } else {
                let reason = match &outcome.stop {
                    StopKind::Invalid(reason) => reason.as_str(),
                    _ => "zero-length frame followed by garbage",
                };
                tracing::warn!(
                    path = %current_path.display(),
                    offset = end,
                    dropped_bytes = dropped,
                    reason,
                    "truncating torn translog tail"
                );
            }
            current_file
                .set_len(end)
                .map_err(|error| io_error(&current_path, error))?;
        }
        // Frames past the old synced offset may only be in the page cache.
        current_file
            .sync_all(SyncSite::TranslogOpenTail)
            .map_err(|error| io_error(&current_path, error))?;

        // Leftovers of an interrupted roll (above) or trim (below); one that comes back after a
        // power loss is removed again (see the module docs).
        for (generation, path) in list_generations(&*storage, dir)? {
            if generation > checkpoint.generation || generation < checkpoint.min_generation {
                tracing::warn!(path = %path.display(), "removing leftover translog generation file");
                storage
                    .remove_file(&path)
                    .map_err(|error| io_error(&path, error))?;
            }
        }

        let mut checkpoint_file = CheckpointFile {
            file: checkpoint_handle,
            path: checkpoint_path,
            last: checkpoint,
        };
        checkpoint_file
            .write_durable(checkpoint.generation, checkpoint.min_generation, end)
            .map_err(|error| io_error(&checkpoint_file.path, error))?;
        let translog = Self::assemble(
            storage,
            dir,
            uuid,
            current_file,
            current_path,
            checkpoint.generation,
            checkpoint.min_generation,
            end,
            checkpoint_file,
            older_sizes,
        );
        Ok((translog, records))
    }

    /// The translog's uuid (stored in every generation header).
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// Generation new appends go to.
    #[cfg(test)]
    pub fn current_generation(&self) -> u64 {
        self.current_generation.load(Ordering::Acquire)
    }

    /// Oldest generation still kept.
    #[cfg(test)]
    pub fn min_generation(&self) -> u64 {
        self.min_generation.load(Ordering::Acquire)
    }

    /// Buffers one record in memory (no I/O, no syscalls) and returns where it
    /// ends. After a latched failure the record is dropped (it could never
    /// become durable) and the next sync returns [`TranslogError::Failed`].
    ///
    /// # Panics
    ///
    /// If `payload` is longer than [`MAX_RECORD_BYTES`].
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn append(&self, seq_no: u64, payload: &[u8]) -> TranslogLocation {
        assert!(
            payload.len() <= MAX_RECORD_BYTES,
            "translog record of {} bytes exceeds MAX_RECORD_BYTES",
            payload.len()
        );
        // The checksum is computed before taking the lock.
        let prefix = frame_prefix(seq_no, payload);
        let mut buffer = self.buffer.lock();
        if self.failed.get().is_none() {
            push_frame(&mut buffer.bytes, &prefix, payload);
            buffer.seq_nos.push(seq_no);
            buffer.appended += 1;
        }
        buffer.end()
    }

    /// Buffers many records under one lock acquisition; returns the location
    /// of the last one (or the current end of the log if there were none).
    ///
    /// # Panics
    ///
    /// If a payload is longer than [`MAX_RECORD_BYTES`].
    pub fn append_batch<'a>(
        &self,
        records: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> TranslogLocation {
        let mut buffer = self.buffer.lock();
        let live = self.failed.get().is_none();
        for (seq_no, payload) in records {
            assert!(
                payload.len() <= MAX_RECORD_BYTES,
                "translog record of {} bytes exceeds MAX_RECORD_BYTES",
                payload.len()
            );
            if live {
                encode_frame(&mut buffer.bytes, seq_no, payload);
                buffer.seq_nos.push(seq_no);
                buffer.appended += 1;
            }
        }
        buffer.end()
    }

    /// Group commit: returns once every record up to `location` is written
    /// and fdatasync'ed. The first caller to take the sync lock writes
    /// everything buffered so far (other threads' records included) with one
    /// write and one fdatasync; callers whose location is already covered
    /// return without a syscall.
    pub fn sync_up_to(&self, location: TranslogLocation) -> Result<()> {
        // Group commit: the first caller that finds no sync running becomes the leader, writes
        // and fsyncs everything buffered (its own record and everyone else's), then wakes every
        // waiter at once. Waiters whose records the leader did not cover (appended after it
        // took the buffer) elect the next leader among themselves. Waking all at once matters:
        // handing a mutex from waiter to waiter costs one context switch each, which here was
        // more than the fsync itself.
        let mut durable = self.durable.lock();
        loop {
            if *durable >= location {
                return Ok(());
            }
            self.check_failed()?;
            if self.syncing.load(Ordering::Acquire) {
                self.durable_changed.wait(&mut durable);
                continue;
            }
            self.syncing.store(true, Ordering::Release);
            drop(durable);
            let result = {
                let mut sync_state = self.sync.lock();
                self.flush_locked(&mut sync_state)
            };
            durable = self.durable.lock();
            self.syncing.store(false, Ordering::Release);
            self.durable_changed.notify_all();
            let seq_nos = result?;
            if !seq_nos.is_empty() {
                drop(durable);
                self.notify(&seq_nos);
                durable = self.durable.lock();
            }
        }
    }

    /// Syncs everything buffered so far.
    pub fn sync(&self) -> Result<()> {
        self.check_failed()?;
        let end = self.buffer.lock().end();
        self.sync_up_to(end)
    }

    /// True when some appended record is not yet durable.
    pub fn needs_sync(&self) -> bool {
        let end = self.buffer.lock().end();
        end > *self.durable.lock()
    }

    /// Registers the callback invoked with the seq_nos of records that just
    /// became durable (on the syncing thread, after the fsync, outside the
    /// translog's locks). Replaces any earlier listener.
    #[allow(clippy::type_complexity)] // the signature is the engine's contract
    pub fn set_durability_listener(&self, listener: Box<dyn Fn(&[u64]) + Send + Sync>) {
        *self.listener.write() = Some(Arc::from(listener));
    }

    /// Syncs, then starts a new generation file and returns its number.
    /// Records appended before the call end up in older generations, records
    /// appended after it in the new one (appends racing with the call land on
    /// one side or the other, never get lost).
    pub fn roll_generation(&self) -> Result<u64> {
        let (new_generation, seq_nos, flushed) = {
            let mut sync_state = self.sync.lock();
            self.check_failed()?;
            // What is buffered now is written first, where a full disk leaves it buffered and
            // the translog as it was (see the module docs).
            let flushed = self.flush_locked(&mut sync_state)?;
            let old_generation = sync_state.generation;
            let new_generation = old_generation + 1;
            let (data, seq_nos, start) = {
                let mut buffer = self.buffer.lock();
                let data = std::mem::take(&mut buffer.bytes);
                let seq_nos = std::mem::take(&mut buffer.seq_nos);
                let start = buffer.start;
                buffer.generation = new_generation;
                buffer.start = self.header_length;
                self.current_generation
                    .store(new_generation, Ordering::Release);
                (data, seq_nos, start)
            };
            let old_end = if data.is_empty() {
                sync_state.written_end
            } else {
                // The records appended since the sync above: their locations name the old
                // generation, which is closed below, so they cannot go back to the buffer.
                self.write_and_sync(&mut sync_state, old_generation, start, &data, seq_nos.len())
                    .map_err(|error| match error {
                        TranslogError::NoSpace { path, source } => {
                            self.latch("write", &path, source)
                        }
                        other => other,
                    })?
            };
            // Shrink the old file to its logical end and make that durable.
            let path = sync_state.path.clone();
            sync_state
                .file
                .set_len(old_end)
                .and_then(|()| sync_state.file.sync_all(SyncSite::TranslogRolledGeneration))
                .map_err(|error| self.latch("closing rolled generation", &path, error))?;
            let new_path = generation_path(&self.dir, new_generation);
            let file =
                create_generation_file(&*self.storage, &new_path, new_generation, &self.uuid)
                    .map_err(|error| self.latch("creating generation", &new_path, error))?;
            durable_file::sync_dir(&*self.storage, &self.dir, SyncSite::TranslogDirCreate)
                .map_err(|error| self.latch("fsync dir", &error.path, error.source))?;
            let (min_generation, header_length) = (sync_state.min_generation, self.header_length);
            let checkpoint_path = sync_state.checkpoint_file.path.clone();
            sync_state
                .checkpoint_file
                .write_durable(new_generation, min_generation, header_length)
                .map_err(|error| self.latch("checkpoint write", &checkpoint_path, error))?;
            sync_state.older_sizes.insert(old_generation, old_end);
            self.older_bytes.fetch_add(old_end, Ordering::AcqRel);
            sync_state.file = file;
            sync_state.path = new_path;
            sync_state.generation = new_generation;
            sync_state.written_end = header_length;
            sync_state.allocated_end = header_length;
            sync_state.preallocation_enabled = true;
            *self.durable.lock() = TranslogLocation {
                generation: new_generation,
                end_offset: header_length,
            };
            self.durable_changed.notify_all();
            (new_generation, seq_nos, flushed)
        };
        self.notify(&flushed);
        self.notify(&seq_nos);
        Ok(new_generation)
    }

    /// Deletes every generation below `generation` (never the current one).
    /// The new min generation is persisted in the checkpoint (fsynced) before
    /// any file is deleted.
    pub fn trim_below(&self, generation: u64) -> Result<()> {
        let mut sync_state = self.sync.lock();
        self.check_failed()?;
        let target = generation.min(sync_state.generation);
        let old_min_generation = sync_state.min_generation;
        if target <= old_min_generation {
            return Ok(());
        }
        let (current_generation, end) = (sync_state.generation, sync_state.written_end);
        let checkpoint_path = sync_state.checkpoint_file.path.clone();
        sync_state
            .checkpoint_file
            .write_durable(current_generation, target, end)
            .map_err(|error| self.latch("checkpoint write", &checkpoint_path, error))?;
        sync_state.min_generation = target;
        self.min_generation.store(target, Ordering::Release);
        let mut first_error = None;
        for trimmed_generation in old_min_generation..target {
            let path = generation_path(&self.dir, trimmed_generation);
            if let Some(size) = sync_state.older_sizes.remove(&trimmed_generation) {
                self.older_bytes.fetch_sub(size, Ordering::AcqRel);
            }
            match self.storage.remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                // A file left behind is removed by the next open.
                Err(error) => {
                    first_error.get_or_insert(io_error(&path, error));
                }
            }
        }
        // No directory fsync: a removed generation that comes back is removed by the next open.
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Reads every record of generations `>= from_generation`: the part on
    /// disk plus the records still buffered, in log order.
    #[cfg(test)]
    pub fn read_from(&self, from_generation: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let sync_state = self.sync.lock();
        self.check_failed()?;
        let (buffered, buffered_generation, buffered_start) = {
            let buffer = self.buffer.lock();
            (buffer.bytes.clone(), buffer.generation, buffer.start)
        };
        let mut records = Vec::new();
        for generation in from_generation.max(sync_state.min_generation)..=sync_state.generation {
            let path = generation_path(&self.dir, generation);
            let file = self
                .storage
                .open(&path, OpenMode::Read)
                .map_err(|error| io_error(&path, error))?;
            let (_, records_start) = read_header(
                &mut FileReader::new(&*file, 0),
                &path,
                generation,
                Some(&self.uuid),
            )?;
            let end = if generation == sync_state.generation {
                sync_state.written_end
            } else {
                match sync_state.older_sizes.get(&generation) {
                    Some(&size) => size,
                    None => file.len().map_err(|error| io_error(&path, error))?,
                }
            };
            let outcome = scan_file(
                &*file,
                &path,
                records_start,
                end,
                &mut |_, _, seq_no, payload| {
                    records.push((seq_no, payload.to_vec()));
                },
            )?;
            match outcome.stop {
                StopKind::End => {}
                StopKind::ZeroLength => {
                    return Err(corrupted(
                        &path,
                        outcome.valid_end,
                        "unexpected zero length",
                    ))
                }
                StopKind::Invalid(reason) => {
                    return Err(corrupted(&path, outcome.valid_end, reason))
                }
            }
        }
        if buffered_generation >= from_generation && !buffered.is_empty() {
            let end = buffered_start + buffered.len() as u64;
            // Frames we encoded ourselves: always valid.
            scan_frames(
                &mut &buffered[..],
                buffered_start,
                end,
                &mut |_, _, seq_no, payload| {
                    records.push((seq_no, payload.to_vec()));
                },
            )
            .map_err(|error| io_error(&self.dir, error))?;
        }
        Ok(records)
    }

    /// Total bytes of the kept generation files (logical length, without
    /// preallocation) plus the buffered records.
    pub fn size_in_bytes(&self) -> u64 {
        let current = self.buffer.lock().end().end_offset;
        self.older_bytes.load(Ordering::Acquire) + current
    }

    /// Counters: fsyncs made, records appended and made durable.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> TranslogStats {
        let records_appended = self.buffer.lock().appended;
        TranslogStats {
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            records_appended,
            records_synced: self.records_synced.load(Ordering::Relaxed),
        }
    }

    fn check_failed(&self) -> Result<()> {
        match self.failed.get() {
            Some(message) => Err(TranslogError::Failed(message.clone())),
            None => Ok(()),
        }
    }

    /// Latches the failure and turns it into the error returned to this caller.
    fn latch(&self, what: &str, path: &Path, source: io::Error) -> TranslogError {
        let message = format!("{what} failed on {}: {source}", path.display());
        tracing::error!("translog failed: {message}");
        let _ = self.failed.set(message);
        io_error(path, source)
    }

    /// With the sync lock held: writes and fsyncs everything buffered.
    /// Returns the seq_nos that became durable.
    fn flush_locked(&self, sync_state: &mut SyncState) -> Result<Vec<u64>> {
        self.check_failed()?;
        let spare = std::mem::take(&mut sync_state.spare);
        let (mut data, seq_nos, generation, start) = {
            let mut buffer = self.buffer.lock();
            if buffer.bytes.is_empty() {
                drop(buffer);
                sync_state.spare = spare;
                return Ok(Vec::new());
            }
            let data = std::mem::replace(&mut buffer.bytes, spare);
            let seq_nos = std::mem::take(&mut buffer.seq_nos);
            let start = buffer.start;
            buffer.start += data.len() as u64;
            (data, seq_nos, buffer.generation, start)
        };
        let written = self.write_and_sync(sync_state, generation, start, &data, seq_nos.len());
        if let Err(error) = written {
            if matches!(error, TranslogError::NoSpace { .. }) {
                // Back in the buffer, ahead of what was appended since: the same bytes at the
                // same offset next time. The generation cannot have changed (a roll holds the
                // sync lock, which this caller holds).
                let mut buffer = self.buffer.lock();
                assert_eq!(
                    buffer.generation, generation,
                    "a roll ran without the sync lock"
                );
                data.extend_from_slice(&buffer.bytes);
                let mut appended = std::mem::replace(&mut buffer.bytes, data);
                buffer.start = start;
                let mut all_seq_nos = seq_nos;
                all_seq_nos.append(&mut buffer.seq_nos);
                buffer.seq_nos = all_seq_nos;
                drop(buffer);
                appended.clear();
                sync_state.spare = appended;
            }
            return Err(error);
        }
        // Keep the allocation for the next swap unless a huge batch grew it.
        if data.capacity() <= 16 << 20 {
            data.clear();
            sync_state.spare = data;
        }
        Ok(seq_nos)
    }

    /// Writes `data` at `start` of the current file, fdatasyncs, and records
    /// the new synced offset in the checkpoint (no fsync). Returns the new end.
    fn write_and_sync(
        &self,
        sync_state: &mut SyncState,
        generation: u64,
        start: u64,
        data: &[u8],
        records: usize,
    ) -> Result<u64> {
        if generation != sync_state.generation || start != sync_state.written_end {
            let message = format!(
                "internal error: buffer for generation {generation} at {start}, file is generation {} at {}",
                sync_state.generation, sync_state.written_end
            );
            let path = sync_state.path.clone();
            return Err(self.latch("sync", &path, io::Error::other(message)));
        }
        let end = start + data.len() as u64;
        sync_state.preallocate(end);
        let path = sync_state.path.clone();
        if let Err(error) = sync_state.file.write_all_at(data, start) {
            if error.kind() == io::ErrorKind::StorageFull {
                tracing::warn!(path = %path.display(), bytes = data.len(), "translog write refused: no space left on device");
                return Err(TranslogError::NoSpace {
                    path,
                    source: error,
                });
            }
            return Err(self.latch("write", &path, error));
        }
        #[cfg(test)]
        if self.fail_next_sync.swap(false, Ordering::AcqRel) {
            return Err(self.latch("fdatasync", &path, io::Error::other("injected failure")));
        }
        sync_state
            .file
            .sync_data(SyncSite::TranslogRecords)
            .map_err(|error| self.latch("fdatasync", &path, error))?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.records_synced
            .fetch_add(records as u64, Ordering::Relaxed);
        sync_state.written_end = end;
        let min_generation = sync_state.min_generation;
        let checkpoint_path = sync_state.checkpoint_file.path.clone();
        sync_state
            .checkpoint_file
            .write(generation, min_generation, end)
            .map_err(|error| self.latch("checkpoint write", &checkpoint_path, error))?;
        *self.durable.lock() = TranslogLocation {
            generation,
            end_offset: end,
        };
        self.durable_changed.notify_all();
        Ok(end)
    }

    /// Calls the durability listener (outside all translog locks).
    fn notify(&self, seq_nos: &[u64]) {
        if seq_nos.is_empty() {
            return;
        }
        let listener = self.listener.read().clone();
        if let Some(listener) = listener {
            listener(seq_nos);
        }
    }
}

/// Fuzz body: writes `data` as the single generation file (generation 1) of a translog on a
/// simulated disk, once with a valid checkpoint claiming 0 synced bytes and once with one
/// claiming the whole file, and opens it. When the open succeeds it also checks that reopening
/// is stable and that the recovered translog accepts and durably stores a new record (durably:
/// the check reopens the disk a power cut leaves). Never hangs, and allocates at most about the
/// input size (length fields are checked against the bytes actually present).
///
/// # Panics
/// When a guarantee breaks: that is what the fuzzer looks for.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_translog_replay(data: &[u8]) {
    if let Err(broken) = fuzz_check(data) {
        panic!("translog guarantee broken: {broken}");
    }
}

/// The fuzz body; `Err` describes a broken guarantee.
#[cfg(any(test, feature = "fuzzing"))]
fn fuzz_check(data: &[u8]) -> std::result::Result<(), String> {
    use crate::storage::{CutMode, SimStorage};
    let dir = Path::new("/translog");
    for synced in [0, data.len() as u64] {
        let disk = SimStorage::new();
        let write = |path: &Path, bytes: &[u8]| -> io::Result<()> {
            let file = disk.open(path, OpenMode::CreateNew)?;
            file.write_all_at(bytes, 0)?;
            file.sync_all(SyncSite::StateFileContent)
        };
        disk.create_dir(dir)
            .and_then(|()| write(&generation_path(dir, 1), data))
            .map_err(|error| error.to_string())?;
        let mut checkpoint_bytes = vec![0u8; CKP_FILE_BYTES as usize];
        for counter in [1u64, 2] {
            let checkpoint = Checkpoint {
                counter,
                generation: 1,
                min_generation: 1,
                synced_offset: synced,
            };
            let offset = (checkpoint.slot() * CKP_SLOT_STRIDE) as usize;
            let encoded = checkpoint.encode();
            checkpoint_bytes[offset..offset + encoded.len()].copy_from_slice(&encoded);
        }
        write(&dir.join(CHECKPOINT_FILE), &checkpoint_bytes)
            .and_then(|()| disk.sync_dir(Path::new("/"), SyncSite::CreateDir))
            .and_then(|()| disk.sync_dir(dir, SyncSite::CreateDir))
            .map_err(|error| error.to_string())?;

        let Ok((translog, records)) = Translog::open(disk.as_storage(), dir, 1) else {
            continue;
        };
        drop(translog);
        let disk = disk.restart(CutMode::Durable, 0);
        let (translog, again) = Translog::open(disk.as_storage(), dir, 1)
            .map_err(|error| format!("reopen after a power cut failed: {error}"))?;
        if again != records {
            return Err("reopen returned different records".into());
        }
        let location = translog.append(u64::MAX, b"fuzz");
        translog
            .sync_up_to(location)
            .map_err(|error| format!("sync after open failed: {error}"))?;
        drop(translog);
        let disk = disk.restart(CutMode::Durable, 0);
        let (_, after) = Translog::open(disk.as_storage(), dir, 1)
            .map_err(|error| format!("reopen after a power cut failed: {error}"))?;
        let mut expected = records;
        expected.push((u64::MAX, b"fuzz".to_vec()));
        if after != expected {
            return Err("record appended after recovery was not replayed".into());
        }
    }
    Ok(())
}

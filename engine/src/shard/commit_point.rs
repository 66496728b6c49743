//! Commit points for remote recovery: pinning a shard's latest commit on the leader
//! ([`ShardEngine::pin_latest_commit`]), checksums of commit files, and opening a follower shard
//! on a copied commit ([`ShardEngine::bootstrap_follower`]).
//!
//! A [`PinnedCommit`] keeps one commit readable for as long as it lives, whatever merges and
//! garbage collection do meanwhile, in two ways: it holds the commit's `IndexMeta` loaded from
//! the writer's own `tantivy::Index` (the writer never garbage-collects files of a segment meta
//! that is still referenced), and it memory-maps every file of the commit when it is pinned (a
//! mapping stays readable even if the file is unlinked). `meta.json` is overwritten by later
//! commits and merges, so the pinned `IndexMeta` is serialized here, in tantivy's own layout
//! (pretty JSON and a newline), with the payload's `min_retained_seq_no` raised to the shard's
//! retention floor at the time of pinning (see `pin_once`); `.managed.json` is generated as the list of the commit's segment
//! files, so a copy garbage-collects them normally once later merges replace them.
//!
//! Checksums (the `checksum` of a [`CommitFileInfo`]) are CRC-32 (IEEE polynomial, the one
//! `crc32fast` computes and tantivy stores):
//! - [`ChecksumKind::TantivyFooter`]: a segment file's footer holds the CRC-32 of the file's
//!   body; the source reads it from the footer without scanning the file, and a verifier
//!   recomputes it over the body and compares (tantivy's `Footer::extract_footer` parses the
//!   footer, from the file's last bytes only);
//! - [`ChecksumKind::WholeFile`]: `meta.json` and `.managed.json` have no footer; the checksum is
//!   the CRC-32 of the whole file, computed when the commit is pinned.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tantivy::directory::footer::Footer as TantivyFooter;
use tantivy::directory::{FileSlice, OwnedBytes};
use tantivy::indexer::NoMergePolicy;
use tantivy::{HasLen, IndexWriter};

use super::{
    commit_payload, commit_with_payload, open_last_commit, CommitPayload, ShardConfig, ShardEngine,
};
use super::{INDEX_DIR, TRANSLOG_DIR};
use crate::durable_file;
use crate::error::{EngineError, Result};
use crate::lease_log::LeaseLog;
use crate::leases::RetentionLeases;
use crate::mapping::DocumentMapper;
use crate::storage::{FileBytes, OpenMode, Storage, StorageFile, StorageRef};
use crate::translog::Translog;
use crate::types::SeqNo;

/// Name of tantivy's commit file.
pub const META_FILE: &str = "meta.json";
/// Name of tantivy's list of managed files.
pub const MANAGED_FILE: &str = ".managed.json";
/// Name of the marker file that makes an index re-open its shard as a follower.
pub const FOLLOWER_MARKER_FILE: &str = "follower";
/// How many times pinning retries when a file of the commit vanished before it was referenced
/// (a commit or merge that ended between reading `meta.json` and tracking its segments).
const PIN_ATTEMPTS: usize = 5;
/// Bytes at the very end of a tantivy footer: the length of its JSON and its magic number.
/// `Footer::extract_footer` checks a file for 4 bytes but reads these 8, so a shorter file is
/// refused before it is called.
const FOOTER_TRAILER_BYTES: u64 = 8;
/// A footer is parsed from at most this many bytes read from the end of a file: reading costs
/// the same whatever the file's size, and an I/O error reading them stays apart from a footer
/// that does not parse (tantivy reports both as one `io::Error`). tantivy writes footers of about
/// a hundred bytes; one that does not fit is corruption.
const FOOTER_MAX_BYTES: u64 = 10_000 + FOOTER_TRAILER_BYTES;
/// Buffer used when a checksum is computed by streaming a file.
const CHECKSUM_BUFFER_BYTES: usize = 1 << 20;

/// How a commit file's checksum is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumKind {
    /// CRC-32 of the body, as stored in tantivy's footer at the end of the file.
    TantivyFooter,
    /// CRC-32 of the whole file (files without a footer).
    WholeFile,
}

/// One file of a commit, as a recovery source announces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitFileInfo {
    /// File name, relative to the shard's index directory (no directory part).
    pub name: String,
    /// Length in bytes.
    pub length: u64,
    /// CRC-32 (see [`ChecksumKind`]).
    pub checksum: u32,
    /// How `checksum` is defined.
    pub checksum_kind: ChecksumKind,
    /// For [`ChecksumKind::TantivyFooter`] files: CRC-32 of the footer itself (the bytes after
    /// the body), which the footer's own CRC does not cover. `None` for whole-file checksums.
    pub footer_checksum: Option<u32>,
}

/// The checksums of a file as [`checksum_file`] computes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileChecksums {
    /// See [`CommitFileInfo::checksum`].
    pub checksum: u32,
    /// See [`CommitFileInfo::footer_checksum`].
    pub footer_checksum: Option<u32>,
}

impl CommitFileInfo {
    /// True when `computed` (of a copy of this file) matches what the source announced.
    pub fn matches(&self, computed: FileChecksums) -> bool {
        self.checksum == computed.checksum && self.footer_checksum == computed.footer_checksum
    }
}

/// One file of a pinned commit, readable for as long as the [`PinnedCommit`] lives.
pub struct PinnedFile {
    info: CommitFileInfo,
    bytes: FileBytes,
}

impl PinnedFile {
    /// Name, length and checksum.
    pub fn info(&self) -> &CommitFileInfo {
        &self.info
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `length` bytes from `offset` (fewer at the end of the file); an error if `offset` is past
    /// the end.
    pub fn read(&self, offset: u64, length: usize) -> Result<&[u8]> {
        let bytes = self.bytes();
        if offset > bytes.len() as u64 {
            return Err(EngineError::InvalidArgument(format!(
                "offset {offset} is past the end of [{}] ({} bytes)",
                self.info.name,
                bytes.len()
            )));
        }
        let start = offset as usize;
        let end = start.saturating_add(length).min(bytes.len());
        Ok(&bytes[start..end])
    }
}

/// The latest commit of a shard, held so that its files stay on disk and readable (see the
/// module documentation). Dropping it releases the pin; the writer deletes the files at its next
/// garbage collection if no newer commit uses them.
pub struct PinnedCommit {
    // Keeps the commit's segment metas tracked by the writer's inventory: garbage collection
    // leaves their files alone while this lives.
    _meta: tantivy::IndexMeta,
    payload: CommitPayload,
    files: Vec<PinnedFile>,
}

impl PinnedCommit {
    /// The commit's Tandem payload (checkpoints, history uuid, ...).
    pub fn payload(&self) -> &CommitPayload {
        &self.payload
    }

    /// The files of the commit: the segment files, then `.managed.json`, then `meta.json` (a
    /// copier that writes them in this order makes the commit visible last).
    pub fn files(&self) -> &[PinnedFile] {
        &self.files
    }

    /// The file called `name`, if it belongs to the commit.
    pub fn file(&self, name: &str) -> Option<&PinnedFile> {
        self.file_index(name).map(|index| &self.files[index])
    }

    /// The position in [`PinnedCommit::files`] of the file called `name`, if it belongs to the
    /// commit (to refer to it while holding the commit, as a recovery source's chunk does).
    pub fn file_index(&self, name: &str) -> Option<usize> {
        self.files.iter().position(|file| file.info.name == name)
    }

    /// Name, length and checksum of every file, in [`PinnedCommit::files`] order.
    pub fn file_infos(&self) -> Vec<CommitFileInfo> {
        self.files.iter().map(|file| file.info.clone()).collect()
    }

    /// Total bytes of the commit's files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|file| file.info.length).sum()
    }
}

impl ShardEngine {
    /// Pins the shard's latest commit: its files stay on disk and readable while the returned
    /// value lives, whatever later commits, merges and garbage collection do.
    pub fn pin_latest_commit(&self) -> Result<Arc<PinnedCommit>> {
        self.inner.check_failed()?;
        let index_dir = self.inner.dir.join(INDEX_DIR);
        let mut last_error = None;
        for attempt in 1..=PIN_ATTEMPTS {
            match pin_once(&*self.inner.storage, &self.inner.index, &index_dir, || {
                self.min_retained_seq_no()
            }) {
                Ok(pinned) => return Ok(Arc::new(pinned)),
                Err(PinError::Vanished(path)) => {
                    tracing::debug!(
                        ?path,
                        attempt,
                        "a file of the commit vanished; pinning again"
                    );
                    last_error = Some(path);
                }
                Err(PinError::Other(error)) => return Err(error),
            }
        }
        Err(EngineError::InvalidArgument(format!(
            "could not pin the latest commit of {}: files kept vanishing (last: {:?})",
            index_dir.display(),
            last_error
        )))
    }

    /// Opens a follower shard on a commit copied into `dir/index` (by remote recovery): gives it
    /// a new history uuid, a new empty translog (any translog in `dir` is discarded), no
    /// retention leases, and follower mode (direct writes are refused; the marker file makes an
    /// [`crate::index::Index`] re-open it as a follower). Its global checkpoint is the commit's
    /// local checkpoint, so replication resumes at checkpoint + 1; operations fetched again that
    /// the commit already holds are skipped by `apply_operations`.
    pub fn bootstrap_follower(
        dir: &Path,
        mapper: Arc<DocumentMapper>,
        config: ShardConfig,
    ) -> Result<ShardEngine> {
        let storage = config.storage.clone();
        let (index, _, copied) = open_last_commit(&storage, dir, "opening the copied commit")?;
        check_commit_files_present(&storage, &index, &dir.join(INDEX_DIR))?;
        let translog_dir = dir.join(TRANSLOG_DIR);
        match storage.remove_dir_all(&translog_dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(EngineError::io(&translog_dir, error)),
        }
        durable_file::create_dir_all(&*storage, &translog_dir)?;
        let translog_uuid = uuid::Uuid::new_v4().to_string();
        drop(Translog::create(
            storage.clone(),
            &translog_dir,
            &translog_uuid,
        )?);
        let payload = CommitPayload {
            history_uuid: uuid::Uuid::new_v4().to_string(),
            translog_uuid,
            translog_generation: 1,
            retention_leases: RetentionLeases::default(),
            // The leader's own promotion (if it was promoted once) is its history, not the
            // follower's: a failback to this copy must not find it.
            promotion: None,
            ..copied
        };
        let mut writer: IndexWriter = index
            .writer_with_num_threads(1, 15_000_000)
            .map_err(|e| EngineError::index("opening a writer on the copied commit", e))?;
        // tantivy's default merge policy would merge the copied segments after this commit and
        // drop their deleted documents, which are retained history (invariant 4): this writer
        // only commits the follower's payload, it never merges.
        writer.set_merge_policy(Box::new(NoMergePolicy));
        commit_with_payload(&mut writer, &payload)?;
        // Ended, not dropped: a dropped writer's merge threads may still end later, and the
        // shard opened below must find this commit exactly as written.
        writer
            .wait_merging_threads()
            .map_err(|e| EngineError::index("closing the writer on the copied commit", e))?;
        drop(index);
        // Leases of the leader (among them the follower's own recovery lease) must not come
        // back from a leases file either.
        LeaseLog::create(storage.clone(), dir, &RetentionLeases::default())?;
        durable_file::replace_atomically(&*storage, &dir.join(FOLLOWER_MARKER_FILE), b"1")?;
        tracing::info!(
            shard = ?dir,
            local_checkpoint = %payload.local_checkpoint,
            history_uuid = %payload.history_uuid,
            "bootstrapped a follower shard from a copied commit"
        );
        ShardEngine::open(
            dir,
            mapper,
            ShardConfig {
                follower: true,
                ..config
            },
        )
    }
}

enum PinError {
    Vanished(PathBuf),
    Other(EngineError),
}

impl From<EngineError> for PinError {
    fn from(error: EngineError) -> Self {
        PinError::Other(error)
    }
}

fn pin_once(
    storage: &dyn Storage,
    index: &tantivy::Index,
    index_dir: &Path,
    min_retained_seq_no: impl Fn() -> SeqNo,
) -> std::result::Result<PinnedCommit, PinError> {
    let mut meta = index
        .load_metas()
        .map_err(|e| EngineError::index("loading the commit to pin", e))?;
    let mut payload = commit_payload(&meta, index_dir, "the pinned commit")?;
    // A merge that ends after a commit rewrites meta.json with the merged segments and that
    // commit's payload. Merges select only with a floor a commit already persisted, so that
    // payload's floor is one the segments keep; the current floor, read after loading the
    // commit, is one too (every merge that ended before now selected with at most it), and the
    // higher of the two is what the copy claims (invariant 4).
    let floor = min_retained_seq_no();
    if floor > payload.min_retained_seq_no {
        payload.min_retained_seq_no = floor;
        meta.payload = Some(
            serde_json::to_string(&payload)
                .map_err(|e| EngineError::encode("the commit payload", e))?,
        );
    }
    let names = commit_segment_files(&meta);
    let mut files = Vec::with_capacity(names.len() + 2);
    for name in &names {
        files.push(pin_segment_file(storage, index_dir, name)?);
    }
    let managed: BTreeSet<&String> = names.iter().collect();
    let managed_json =
        serde_json::to_vec(&managed).map_err(|e| EngineError::encode(MANAGED_FILE, e))?;
    files.push(owned_file(MANAGED_FILE, managed_json));
    let mut meta_json =
        serde_json::to_vec_pretty(&meta).map_err(|e| EngineError::encode(META_FILE, e))?;
    meta_json.push(b'\n');
    files.push(owned_file(META_FILE, meta_json));
    Ok(PinnedCommit {
        _meta: meta,
        payload,
        files,
    })
}

/// Checks that every segment file the last commit of `index` names is in `index_dir`:
/// tantivy opens some components lazily, so a copy that lacks one (a leader's file list that
/// left it out) would open and fail only at the first query that reads it.
fn check_commit_files_present(
    storage: &StorageRef,
    index: &tantivy::Index,
    index_dir: &Path,
) -> Result<()> {
    let meta = index
        .load_metas()
        .map_err(|e| EngineError::index("loading the copied commit", e))?;
    for name in commit_segment_files(&meta) {
        let path = index_dir.join(&name);
        if !storage
            .exists(&path)
            .map_err(|e| EngineError::io(&path, e))?
        {
            return Err(EngineError::Corrupted {
                path,
                reason: "a segment file the commit names is missing".to_string(),
            });
        }
    }
    Ok(())
}

/// The segment files of a commit that exist on disk: every component file of every segment,
/// and a segment's delete file only when the segment has deletes.
fn commit_segment_files(meta: &tantivy::IndexMeta) -> BTreeSet<String> {
    let absent: BTreeSet<PathBuf> = meta
        .segments
        .iter()
        .filter(|segment| !segment.has_deletes())
        .map(|segment| segment.relative_path(tantivy::index::SegmentComponent::Delete))
        .collect();
    meta.list_segment_files()
        .into_iter()
        .filter(|path| !absent.contains(path))
        .filter_map(|path| path.to_str().map(str::to_string))
        .collect()
}

fn owned_file(name: &str, bytes: Vec<u8>) -> PinnedFile {
    PinnedFile {
        info: CommitFileInfo {
            name: name.to_string(),
            length: bytes.len() as u64,
            checksum: crc32fast::hash(&bytes),
            checksum_kind: ChecksumKind::WholeFile,
            footer_checksum: None,
        },
        bytes: FileBytes::Owned(bytes.into()),
    }
}

fn pin_segment_file(
    storage: &dyn Storage,
    index_dir: &Path,
    name: &str,
) -> std::result::Result<PinnedFile, PinError> {
    let path = index_dir.join(name);
    // Segment files are immutable once written (tantivy never rewrites a file in place), and a
    // mapping stays valid if the file is unlinked.
    let bytes = match storage.map(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(PinError::Vanished(path));
        }
        Err(error) => return Err(EngineError::io(&path, error).into()),
    };
    let length = bytes.len() as u64;
    let footer = SegmentFooter::of_file(&bytes).map_err(|reason| {
        PinError::Other(EngineError::Corrupted {
            path: path.clone(),
            reason,
        })
    })?;
    Ok(PinnedFile {
        info: CommitFileInfo {
            name: name.to_string(),
            length,
            checksum: footer.body_checksum,
            checksum_kind: ChecksumKind::TantivyFooter,
            footer_checksum: Some(footer.footer_checksum),
        },
        bytes,
    })
}

/// Reads a tantivy footer from the end of a file: returns the stored CRC-32 of the body and
/// the body's length. Only the last bytes of `file` are read.
pub fn footer_checksum(file: &[u8]) -> std::result::Result<(u32, u64), String> {
    let footer = SegmentFooter::of_file(file)?;
    Ok((footer.body_checksum, footer.body_length))
}

/// What tantivy's footer at the end of a segment file says, and the CRC-32 of its own bytes.
struct SegmentFooter {
    /// The body's CRC-32 as the footer stores it.
    body_checksum: u32,
    /// Bytes before the footer.
    body_length: u64,
    /// CRC-32 of the footer's bytes (which the body's CRC-32 does not cover).
    footer_checksum: u32,
}

impl SegmentFooter {
    /// The footer of the whole file `file`, parsed from its last bytes only.
    fn of_file(file: &[u8]) -> std::result::Result<SegmentFooter, String> {
        let length = file.len() as u64;
        let tail_start = length.saturating_sub(FOOTER_MAX_BYTES) as usize;
        Self::of_tail(OwnedBytes::new(file[tail_start..].to_vec()), length)
    }

    /// The footer in `tail`, the last bytes (at most [`FOOTER_MAX_BYTES`]) of a file of
    /// `file_length` bytes; parsed by tantivy's own [`TantivyFooter::extract_footer`].
    fn of_tail(tail: OwnedBytes, file_length: u64) -> std::result::Result<SegmentFooter, String> {
        if (tail.len() as u64) < FOOTER_TRAILER_BYTES {
            return Err(format!(
                "file of {file_length} bytes is too short for a tantivy footer"
            ));
        }
        let (footer, body_in_tail) =
            TantivyFooter::extract_footer(FileSlice::new(Arc::new(tail.clone())))
                .map_err(|e| format!("unreadable tantivy footer: {e}"))?;
        let footer_bytes = &tail.as_slice()[body_in_tail.len()..];
        Ok(SegmentFooter {
            body_checksum: footer.crc,
            body_length: file_length - footer_bytes.len() as u64,
            footer_checksum: crc32fast::hash(footer_bytes),
        })
    }
}

/// Computes the checksums of the file at `path` as `kind` defines them, streaming it with a
/// bounded buffer. For [`ChecksumKind::TantivyFooter`] the CRC-32 of the body must also match
/// the one the footer stores (else [`EngineError::Corrupted`]), and the footer's own CRC-32 is
/// computed too.
pub fn checksum_file(
    storage: &dyn Storage,
    path: &Path,
    kind: ChecksumKind,
) -> Result<FileChecksums> {
    let file = storage
        .open(path, OpenMode::Read)
        .map_err(|e| EngineError::io(path, e))?;
    let length = file.len().map_err(|e| EngineError::io(path, e))?;
    let footer = read_footer(&*file, path, length, kind)?;
    let mut hasher = crc32fast::Hasher::new();
    hash_file_range(&*file, path, 0, footer.body_length, &mut hasher)?;
    footer.checked(path, hasher.finalize())
}

/// The CRC-32 of one range of a file's bytes, as a copier computed it while writing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeChecksum {
    /// First byte of the range.
    pub offset: u64,
    /// Bytes in the range.
    pub length: u64,
    /// CRC-32 (IEEE, as `crc32fast` computes it) of those bytes.
    pub crc32: u32,
}

/// [`checksum_file`] of a file whose bytes were checksummed as they were written, without
/// reading its body back: `ranges` (in offset order, from 0 to the file's end, without gaps or
/// overlaps, else [`EngineError::Corrupted`]) are combined (`crc32fast::Hasher::combine`). Only
/// a footer, and the part of the one range that holds both body and footer, are read back.
///
/// This is what a verifying copy needs (as Elasticsearch verifies a recovered file from the
/// bytes it writes): the checksums are of the exact bytes handed to the file, and reading them
/// back would only read the page cache, not the disk.
pub fn checksum_file_from_ranges(
    storage: &dyn Storage,
    path: &Path,
    kind: ChecksumKind,
    ranges: &[RangeChecksum],
) -> Result<FileChecksums> {
    let file = storage
        .open(path, OpenMode::Read)
        .map_err(|e| EngineError::io(path, e))?;
    let length = file.len().map_err(|e| EngineError::io(path, e))?;
    let mut covered = 0u64;
    for range in ranges {
        if range.offset != covered {
            return Err(EngineError::Corrupted {
                path: path.to_path_buf(),
                reason: format!(
                    "written ranges leave a gap or overlap at offset {covered} (next at {})",
                    range.offset
                ),
            });
        }
        covered += range.length;
    }
    if covered != length {
        return Err(EngineError::Corrupted {
            path: path.to_path_buf(),
            reason: format!("written ranges cover {covered} bytes of a {length}-byte file"),
        });
    }
    let footer = read_footer(&*file, path, length, kind)?;
    let mut hasher = crc32fast::Hasher::new();
    for range in ranges {
        let end = range.offset + range.length;
        if end <= footer.body_length {
            hasher.combine(&crc32fast::Hasher::new_with_initial_len(
                range.crc32,
                range.length,
            ));
        } else {
            hash_file_range(&*file, path, range.offset, footer.body_length, &mut hasher)?;
            break;
        }
    }
    footer.checked(path, hasher.finalize())
}

/// What a file's footer says (or, for a whole-file checksum, that the body is the whole file).
struct Footer {
    /// The body's CRC-32 as the footer stores it.
    stored: Option<u32>,
    /// CRC-32 of the footer's own bytes.
    footer_checksum: Option<u32>,
    /// Bytes before the footer.
    body_length: u64,
}

impl Footer {
    /// The checksums of a file whose body hashes to `computed`; a mismatch with the stored CRC is
    /// corruption.
    fn checked(&self, path: &Path, computed: u32) -> Result<FileChecksums> {
        match self.stored {
            Some(stored) if stored != computed => Err(EngineError::Corrupted {
                path: path.to_path_buf(),
                reason: format!(
                    "body checksum {computed:#010x} does not match the footer's {stored:#010x}"
                ),
            }),
            _ => Ok(FileChecksums {
                checksum: computed,
                footer_checksum: self.footer_checksum,
            }),
        }
    }
}

/// Reads the footer of `file` (`length` bytes long) as `kind` defines it.
fn read_footer(
    file: &dyn StorageFile,
    path: &Path,
    length: u64,
    kind: ChecksumKind,
) -> Result<Footer> {
    match kind {
        ChecksumKind::WholeFile => Ok(Footer {
            stored: None,
            footer_checksum: None,
            body_length: length,
        }),
        ChecksumKind::TantivyFooter => {
            let tail_start = length.saturating_sub(FOOTER_MAX_BYTES);
            let mut tail = vec![0u8; (length - tail_start) as usize];
            file.read_exact_at(&mut tail, tail_start)
                .map_err(|e| EngineError::io(path, e))?;
            let footer =
                SegmentFooter::of_tail(OwnedBytes::new(tail), length).map_err(|reason| {
                    EngineError::Corrupted {
                        path: path.to_path_buf(),
                        reason,
                    }
                })?;
            Ok(Footer {
                stored: Some(footer.body_checksum),
                footer_checksum: Some(footer.footer_checksum),
                body_length: footer.body_length,
            })
        }
    }
}

/// Adds the bytes `start..end` of `file` to `hasher`, reading with a bounded buffer.
fn hash_file_range(
    file: &dyn StorageFile,
    path: &Path,
    start: u64,
    end: u64,
    hasher: &mut crc32fast::Hasher,
) -> Result<()> {
    let mut buffer = vec![0u8; CHECKSUM_BUFFER_BYTES.min((end - start) as usize)];
    let mut offset = start;
    while offset < end {
        let want = (end - offset).min(buffer.len() as u64) as usize;
        let read = file
            .read_at(&mut buffer[..want], offset)
            .map_err(|e| EngineError::io(path, e))?;
        if read == 0 {
            return Err(EngineError::Corrupted {
                path: path.to_path_buf(),
                reason: "file shorter than its metadata says".to_string(),
            });
        }
        hasher.update(&buffer[..read]);
        offset += read as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` followed by the footer tantivy appends to every file it writes.
    fn with_footer(body: &[u8]) -> Vec<u8> {
        use std::io::Write;
        use tantivy::directory::{Directory, TerminatingWrite};
        let index = tantivy::Index::create_in_ram(tantivy::schema::Schema::builder().build());
        let path = Path::new("segment.idx");
        let mut writer = index.directory().open_write(path).unwrap();
        writer.write_all(body).unwrap();
        writer.terminate().unwrap();
        index.directory().atomic_read(path).unwrap()
    }

    /// The position of the first byte of the footer's JSON value of `field`.
    fn footer_field_value(file: &[u8], body_length: usize, field: &str) -> usize {
        let key = format!("\"{field}\":");
        let footer = &file[body_length..];
        let start = footer
            .windows(key.len())
            .position(|window| window == key.as_bytes())
            .unwrap();
        body_length + start + key.len()
    }

    #[test]
    fn footer_checksum_reads_the_stored_crc_and_body_length() {
        let file = with_footer(b"segment body");
        let (crc, body_length) = footer_checksum(&file).unwrap();
        assert_eq!(crc, crc32fast::hash(b"segment body"));
        assert_eq!(body_length, 12);
    }

    #[test]
    fn footer_checksum_rejects_a_bad_magic_number_and_short_files() {
        let mut file = with_footer(b"body");
        let last = file.len() - 1;
        file[last] ^= 1;
        assert!(footer_checksum(&file).is_err());
        assert!(footer_checksum(b"abc").is_err());
        assert!(footer_checksum(b"abcde").is_err());
        let mut file = with_footer(b"body");
        let crc = footer_field_value(&file, 4, "crc");
        file[crc] = b'x';
        assert!(footer_checksum(&file).is_err());
    }

    /// The ranges of `file` cut every `step` bytes, with their CRCs.
    fn ranges_of(file: &[u8], step: usize) -> Vec<RangeChecksum> {
        file.chunks(step)
            .enumerate()
            .map(|(index, piece)| RangeChecksum {
                offset: (index * step) as u64,
                length: piece.len() as u64,
                crc32: crc32fast::hash(piece),
            })
            .collect()
    }

    #[test]
    fn checksums_from_written_ranges_match_a_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.idx");
        let body: Vec<u8> = (0..3 * CHECKSUM_BUFFER_BYTES + 77)
            .map(|i| (i * 31) as u8)
            .collect();
        let file = with_footer(&body);
        std::fs::write(&path, &file).unwrap();
        for kind in [ChecksumKind::TantivyFooter, ChecksumKind::WholeFile] {
            let read_back = checksum_file(&crate::storage::RealStorage, &path, kind).unwrap();
            // Steps that end the body inside a range, on a range boundary, and in one range.
            for step in [
                1 << 20,
                4096,
                body.len(),
                body.len() + 3,
                file.len(),
                1 << 30,
            ] {
                let ranges = ranges_of(&file, step);
                assert_eq!(
                    checksum_file_from_ranges(&crate::storage::RealStorage, &path, kind, &ranges)
                        .unwrap(),
                    read_back,
                    "{kind:?}, ranges of {step}"
                );
            }
        }
        // A range whose bytes differ from the body's (as if a corrupted piece was written).
        let mut ranges = ranges_of(&file, 1 << 20);
        ranges[1].crc32 ^= 1;
        assert!(matches!(
            checksum_file_from_ranges(
                &crate::storage::RealStorage,
                &path,
                ChecksumKind::TantivyFooter,
                &ranges
            ),
            Err(EngineError::Corrupted { .. })
        ));
        let whole =
            checksum_file(&crate::storage::RealStorage, &path, ChecksumKind::WholeFile).unwrap();
        assert_ne!(
            checksum_file_from_ranges(
                &crate::storage::RealStorage,
                &path,
                ChecksumKind::WholeFile,
                &ranges
            )
            .unwrap(),
            whole
        );
        // Gaps, overlaps and short coverage are refused.
        let ranges = ranges_of(&file, 1 << 20);
        for broken in [
            ranges[1..].to_vec(),
            ranges[..ranges.len() - 1].to_vec(),
            [&ranges[..2], &ranges[1..]].concat(),
        ] {
            assert!(matches!(
                checksum_file_from_ranges(
                    &crate::storage::RealStorage,
                    &path,
                    ChecksumKind::WholeFile,
                    &broken
                ),
                Err(EngineError::Corrupted { .. })
            ));
        }
    }

    #[test]
    fn checksum_file_detects_a_corrupted_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.idx");
        let mut file = with_footer(&vec![7u8; 3 * CHECKSUM_BUFFER_BYTES + 5]);
        std::fs::write(&path, &file).unwrap();
        let expected = crc32fast::hash(&vec![7u8; 3 * CHECKSUM_BUFFER_BYTES + 5]);
        let body_length = 3 * CHECKSUM_BUFFER_BYTES + 5;
        assert_eq!(
            checksum_file(
                &crate::storage::RealStorage,
                &path,
                ChecksumKind::TantivyFooter
            )
            .unwrap(),
            FileChecksums {
                checksum: expected,
                footer_checksum: Some(crc32fast::hash(&file[body_length..])),
            }
        );
        assert_eq!(
            checksum_file(&crate::storage::RealStorage, &path, ChecksumKind::WholeFile).unwrap(),
            FileChecksums {
                checksum: crc32fast::hash(&file),
                footer_checksum: None,
            }
        );
        // A changed footer keeps the body CRC but not the footer's.
        let mut footer_changed = file.clone();
        let patch = footer_field_value(&file, body_length, "patch");
        footer_changed[patch] = if file[patch] == b'9' { b'8' } else { b'9' };
        std::fs::write(&path, &footer_changed).unwrap();
        let computed = checksum_file(
            &crate::storage::RealStorage,
            &path,
            ChecksumKind::TantivyFooter,
        )
        .unwrap();
        assert_eq!(computed.checksum, expected);
        assert_ne!(
            computed.footer_checksum,
            Some(crc32fast::hash(&file[body_length..]))
        );
        file[CHECKSUM_BUFFER_BYTES + 1] ^= 0x40;
        std::fs::write(&path, &file).unwrap();
        assert!(matches!(
            checksum_file(
                &crate::storage::RealStorage,
                &path,
                ChecksumKind::TantivyFooter
            ),
            Err(EngineError::Corrupted { .. })
        ));
    }
}

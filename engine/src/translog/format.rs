//! Byte-level encoding of the translog files: generation-file header, record
//! frames, checkpoint slots, and the sequential frame scanner used by `open`,
//! `read_from` and the fuzz body. See the parent module docs for the layout.

use std::io::{self, Read};
use std::path::Path;

use super::{Result, TranslogError, MAX_RECORD_BYTES};
use crate::storage::{FileReader, StorageFile};

/// Receives `(frame_start, frame_end, seq_no, payload)` for each valid frame.
pub(super) type FrameSink<'a> = dyn FnMut(u64, u64, u64, &[u8]) + 'a;

/// Magic at the start of every generation file.
pub(super) const FILE_MAGIC: &[u8; 8] = b"TNDMTLOG";
/// Format version written into generation-file headers.
pub(super) const FORMAT_VERSION: u32 = 1;
/// Longest translog uuid accepted (bytes).
pub(super) const MAX_UUID_BYTES: usize = 256;
/// Fixed part of the header: magic + version + generation + uuid length.
const HEADER_FIXED: usize = 8 + 4 + 8 + 4;
/// Frame prefix: len (u32) + crc32c (u32).
pub(super) const FRAME_PREFIX: usize = 8;
/// Bytes covered by `len` besides the payload: the seq_no.
pub(super) const SEQ_NO_BYTES: usize = 8;

/// Magic at the start of every checkpoint slot.
const CKP_MAGIC: &[u8; 8] = b"TNDMCKPT";
/// Offset distance between the two checkpoint slots (one page each).
pub(super) const CKP_SLOT_STRIDE: u64 = 4096;
/// Encoded size of one checkpoint slot.
pub(super) const CKP_SLOT_BYTES: usize = 8 + 8 + 8 + 8 + 8 + 4;
/// Total checkpoint file size.
pub(super) const CKP_FILE_BYTES: u64 = 2 * CKP_SLOT_STRIDE;

/// Length of the header for a translog with this uuid.
pub(super) fn header_len(uuid: &str) -> u64 {
    (HEADER_FIXED + uuid.len() + 4) as u64
}

/// Encodes a generation-file header.
pub(super) fn encode_header(generation: u64, uuid: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(header_len(uuid) as usize);
    h.extend_from_slice(FILE_MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(&generation.to_le_bytes());
    h.extend_from_slice(&(uuid.len() as u32).to_le_bytes());
    h.extend_from_slice(uuid.as_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

fn corrupted(path: &Path, offset: u64, reason: impl Into<String>) -> TranslogError {
    TranslogError::Corrupted {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

fn io_err(path: &Path, source: io::Error) -> TranslogError {
    TranslogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads exactly `buf.len()` bytes, returning `Ok(false)` on a short file.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads and validates the header of a generation file. Returns the uuid and
/// the header length. `expected_uuid`, when given, must match.
pub(super) fn read_header<R: Read>(
    r: &mut R,
    path: &Path,
    generation: u64,
    expected_uuid: Option<&str>,
) -> Result<(String, u64)> {
    let mut fixed = [0u8; HEADER_FIXED];
    if !read_full(r, &mut fixed).map_err(|e| io_err(path, e))? {
        return Err(corrupted(path, 0, "file shorter than its header"));
    }
    if &fixed[0..8] != FILE_MAGIC {
        return Err(corrupted(path, 0, "bad magic"));
    }
    let uuid_len = u32::from_le_bytes([fixed[20], fixed[21], fixed[22], fixed[23]]) as usize;
    if uuid_len > MAX_UUID_BYTES {
        return Err(corrupted(
            path,
            20,
            format!("uuid length {uuid_len} exceeds {MAX_UUID_BYTES}"),
        ));
    }
    let mut rest = vec![0u8; uuid_len + 4];
    if !read_full(r, &mut rest).map_err(|e| io_err(path, e))? {
        return Err(corrupted(path, 0, "file shorter than its header"));
    }
    let mut crc = crc32c::crc32c(&fixed);
    crc = crc32c::crc32c_append(crc, &rest[..uuid_len]);
    let stored = u32::from_le_bytes([
        rest[uuid_len],
        rest[uuid_len + 1],
        rest[uuid_len + 2],
        rest[uuid_len + 3],
    ]);
    let hlen = (HEADER_FIXED + uuid_len + 4) as u64;
    if crc != stored {
        return Err(corrupted(path, 0, "header checksum mismatch"));
    }
    let version = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    if version != FORMAT_VERSION {
        return Err(corrupted(
            path,
            8,
            format!("unsupported format version {version}"),
        ));
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&fixed[12..20]);
    let file_gen = u64::from_le_bytes(g);
    if file_gen != generation {
        return Err(corrupted(
            path,
            12,
            format!("header says generation {file_gen}, expected {generation}"),
        ));
    }
    let uuid = String::from_utf8(rest[..uuid_len].to_vec())
        .map_err(|_| corrupted(path, HEADER_FIXED as u64, "uuid is not UTF-8"))?;
    if let Some(expected) = expected_uuid {
        if expected != uuid {
            return Err(corrupted(
                path,
                HEADER_FIXED as u64,
                format!("translog uuid {uuid:?} does not match {expected:?}"),
            ));
        }
    }
    Ok((uuid, hlen))
}

/// The 16 bytes preceding the payload in a frame: len, crc32c, seq_no.
pub(super) fn frame_prefix(seq_no: u64, payload: &[u8]) -> [u8; FRAME_PREFIX + SEQ_NO_BYTES] {
    let seq = seq_no.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&seq), payload);
    let len = (SEQ_NO_BYTES + payload.len()) as u32;
    let mut p = [0u8; FRAME_PREFIX + SEQ_NO_BYTES];
    p[0..4].copy_from_slice(&len.to_le_bytes());
    p[4..8].copy_from_slice(&crc.to_le_bytes());
    p[8..16].copy_from_slice(&seq);
    p
}

/// Appends one encoded record frame to `buf`.
pub(super) fn encode_frame(buf: &mut Vec<u8>, seq_no: u64, payload: &[u8]) {
    push_frame(buf, &frame_prefix(seq_no, payload), payload);
}

/// Appends a frame whose prefix was computed with [`frame_prefix`].
pub(super) fn push_frame(buf: &mut Vec<u8>, prefix: &[u8], payload: &[u8]) {
    buf.reserve(prefix.len() + payload.len());
    buf.extend_from_slice(prefix);
    buf.extend_from_slice(payload);
}

/// Why a scan stopped before the end of its range.
#[derive(Debug)]
pub(super) enum StopKind {
    /// Reached the end of the range exactly at a frame boundary.
    End,
    /// A zero length field: clean end of log (e.g. preallocated zeros).
    ZeroLength,
    /// An invalid or incomplete frame.
    Invalid(String),
}

/// Result of scanning a run of frames.
#[derive(Debug)]
pub(super) struct ScanOutcome {
    /// Offset just past the last valid frame (where the scan stopped).
    pub(super) valid_end: u64,
    /// Why it stopped.
    pub(super) stop: StopKind,
}

/// Scans frames from `r`, positioned at absolute offset `start`, up to the
/// absolute offset `end`. Calls `sink(frame_start, frame_end, seq_no,
/// payload)` for every valid frame. Never allocates more than the bytes that
/// remain in the range (so a huge length field cannot blow up memory).
pub(super) fn scan_frames<R: Read>(
    r: &mut R,
    start: u64,
    end: u64,
    sink: &mut FrameSink<'_>,
) -> io::Result<ScanOutcome> {
    let mut pos = start;
    let mut body: Vec<u8> = Vec::new();
    loop {
        if pos >= end {
            return Ok(ScanOutcome {
                valid_end: pos,
                stop: StopKind::End,
            });
        }
        let remaining = end - pos;
        let stop = |reason: String| ScanOutcome {
            valid_end: pos,
            stop: StopKind::Invalid(reason),
        };
        if remaining < FRAME_PREFIX as u64 {
            // A short run of zeros at the very end is still a clean end.
            let mut tail = vec![0u8; remaining as usize];
            if read_full(r, &mut tail)? && tail.iter().all(|&b| b == 0) {
                return Ok(ScanOutcome {
                    valid_end: pos,
                    stop: StopKind::ZeroLength,
                });
            }
            return Ok(stop(format!("incomplete frame header ({remaining} bytes)")));
        }
        let mut prefix = [0u8; FRAME_PREFIX];
        if !read_full(r, &mut prefix)? {
            return Ok(stop("file ended inside a frame header".into()));
        }
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as u64;
        let crc = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        if len == 0 {
            return Ok(ScanOutcome {
                valid_end: pos,
                stop: StopKind::ZeroLength,
            });
        }
        if len < SEQ_NO_BYTES as u64 {
            return Ok(stop(format!("frame length {len} is too small")));
        }
        if len > (SEQ_NO_BYTES + MAX_RECORD_BYTES) as u64 {
            return Ok(stop(format!("frame length {len} exceeds the maximum")));
        }
        if len > remaining - FRAME_PREFIX as u64 {
            return Ok(stop(format!(
                "incomplete frame: length {len}, only {} bytes left",
                remaining - FRAME_PREFIX as u64
            )));
        }
        body.resize(len as usize, 0);
        if !read_full(r, &mut body)? {
            return Ok(stop("file ended inside a frame".into()));
        }
        if crc32c::crc32c(&body) != crc {
            return Ok(stop("frame checksum mismatch".into()));
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&body[..SEQ_NO_BYTES]);
        let frame_end = pos + FRAME_PREFIX as u64 + len;
        sink(pos, frame_end, u64::from_le_bytes(s), &body[SEQ_NO_BYTES..]);
        pos = frame_end;
    }
}

/// Scans the frames of a file between `start` and `end` (absolute offsets).
pub(super) fn scan_file(
    file: &dyn StorageFile,
    path: &Path,
    start: u64,
    end: u64,
    sink: &mut FrameSink<'_>,
) -> Result<ScanOutcome> {
    let mut reader = io::BufReader::with_capacity(256 * 1024, FileReader::new(file, start));
    scan_frames(&mut reader, start, end, sink).map_err(|e| io_err(path, e))
}

/// One checkpoint slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Checkpoint {
    /// Monotonic write counter; the valid slot with the highest wins.
    pub(super) counter: u64,
    /// Current (newest) generation.
    pub(super) generation: u64,
    /// Oldest generation still kept.
    pub(super) min_generation: u64,
    /// Bytes of the current generation known to be fsynced.
    pub(super) synced_offset: u64,
}

impl Checkpoint {
    /// Slot index this checkpoint is written to.
    pub(super) fn slot(&self) -> u64 {
        self.counter % 2
    }

    /// Encodes the slot bytes.
    pub(super) fn encode(&self) -> [u8; CKP_SLOT_BYTES] {
        let mut b = [0u8; CKP_SLOT_BYTES];
        b[0..8].copy_from_slice(CKP_MAGIC);
        b[8..16].copy_from_slice(&self.counter.to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.min_generation.to_le_bytes());
        b[32..40].copy_from_slice(&self.synced_offset.to_le_bytes());
        let crc = crc32c::crc32c(&b[..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a slot, or explains why it is invalid.
    pub(super) fn decode(b: &[u8]) -> std::result::Result<Checkpoint, String> {
        if b.len() < CKP_SLOT_BYTES {
            return Err("slot is truncated".into());
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let stored = u32::from_le_bytes([b[40], b[41], b[42], b[43]]);
        if crc32c::crc32c(&b[..40]) != stored {
            return Err("slot checksum mismatch".into());
        }
        if &b[0..8] != CKP_MAGIC {
            return Err("bad slot magic".into());
        }
        let ckp = Checkpoint {
            counter: u64_at(8),
            generation: u64_at(16),
            min_generation: u64_at(24),
            synced_offset: u64_at(32),
        };
        if ckp.generation == 0 || ckp.min_generation == 0 || ckp.min_generation > ckp.generation {
            return Err(format!(
                "slot has impossible generations (min {}, current {})",
                ckp.min_generation, ckp.generation
            ));
        }
        Ok(ckp)
    }
}

/// Reads both checkpoint slots and returns the valid one with the highest
/// counter; a slot with a bad checksum is ignored (and logged).
pub(super) fn read_checkpoint(file: &dyn StorageFile, path: &Path) -> Result<Checkpoint> {
    let mut buf = Vec::new();
    FileReader::new(file, 0)
        .take(CKP_FILE_BYTES)
        .read_to_end(&mut buf)
        .map_err(|e| io_err(path, e))?;
    let mut best: Option<Checkpoint> = None;
    let mut reasons = Vec::new();
    for slot in 0..2u64 {
        let off = (slot * CKP_SLOT_STRIDE) as usize;
        let bytes = buf.get(off..).unwrap_or(&[]);
        match Checkpoint::decode(bytes) {
            Ok(c) => {
                if best.is_none_or(|b| c.counter > b.counter) {
                    best = Some(c);
                }
            }
            Err(reason) => {
                tracing::debug!(path = %path.display(), slot, %reason, "ignoring invalid checkpoint slot");
                reasons.push(format!("slot {slot}: {reason}"));
            }
        }
    }
    best.ok_or_else(|| {
        corrupted(
            path,
            0,
            format!("no valid checkpoint slot ({})", reasons.join("; ")),
        )
    })
}

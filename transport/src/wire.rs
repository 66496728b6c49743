//! What travels between a follower's [`HttpLeaderClient`](crate::client::HttpLeaderClient) and
//! a leader's transport endpoints ([`crate::server`]).
//!
//! Requests are the leader API's own request types
//! ([`tandem_recovery::leader_api::types`]) as JSON; the wire defines no request of its own.
//! Answers:
//! - metadata, index lists, sessions, and acknowledgements: JSON;
//! - shard changes: a binary frame (see below), the hot path of replication;
//! - file chunks: the raw bytes (zstd-compressed when that pays), described by headers
//!   ([`ChunkHeader`]);
//! - errors: a non-2xx status, the header [`ERROR_HEADER`], and the [`LeaderError`] as JSON,
//!   rebuilt exactly on the follower;
//! - a long poll (shard changes with a poll timeout): a heartbeat stream, see below.
//!
//! ## Long-poll heartbeat stream
//!
//! A long poll legitimately stays silent for its whole poll timeout, so silence cannot tell a
//! waiting leader from a dead connection. Its answer therefore starts at once (status 200 and
//! the header [`HEARTBEAT_HEADER`], whose value is the interval in milliseconds) and its body
//! is:
//!
//! ```text
//! HEARTBEAT_BYTE*  (ANSWER_FRAME_TAG frame | ANSWER_ERROR_TAG json LeaderError)
//! ```
//!
//! The leader sends a [`HEARTBEAT_BYTE`] when the answer starts and every
//! [`HEARTBEAT_INTERVAL`] while it waits, so a follower that hears nothing for a few intervals
//! knows the connection is dead, however long the poll. The error travels in the body because
//! the status was sent before the outcome was known.
//!
//! ## Frame
//!
//! ```text
//! 0..4    magic            b"TDSC" (shard changes)
//! 4       version          1
//! 5       compression      0 = none, 1 = zstd, 2 = lz4 (block format)
//! 6..10   body_length      u32 LE, length of the body once decompressed
//! 10..14  payload_length   u32 LE, bytes after the header (exactly)
//! 14..18  crc32c           u32 LE, of bytes 0..14 followed by the payload
//! 18..    payload          the body, compressed as stated
//! ```
//!
//! The shard changes body, integers as LEB128 varints (`i` zigzag-encoded signed):
//! `global_checkpoint i, max_seq_no i, max_seq_no_of_updates i, mapping_version u,
//! settings_version u, aliases_version u, took_nanos u, operation_count u`, then per operation
//! `seq_no i, primary_term u, version u, kind u8 (0 index, 1 delete, 2 no-op)` and for an
//! index `id, source`, a delete `id`, a no-op `reason`, each as `length u` + bytes.
//!
//! Decoding trusts nothing: every length is checked against the bytes that remain, nothing is
//! allocated from a length before the bytes are there, and any inconsistency is
//! [`LeaderError::CorruptedResponse`] (retryable), never a panic.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_engine::shard::ChangesResponse;
use tandem_engine::{OpType, Operation, OperationKind, PrimaryTerm, SeqNo};
use tandem_recovery::chunk_bytes::ChunkBytes;
use tandem_recovery::leader_api::{FileChunk, ShardChangesResponse};
use tandem_recovery::LeaderError;

/// Magic of a shard changes frame.
pub const CHANGES_MAGIC: [u8; 4] = *b"TDSC";
/// The frame layout this code writes and reads.
pub const FRAME_VERSION: u8 = 1;
/// Bytes of a frame before its payload.
pub const FRAME_HEADER_BYTES: usize = 18;
/// Largest decoded frame body accepted (a batch is capped at
/// [`MAX_CHANGES_BATCH_BYTES`] plus one operation, itself under the REST body limit).
pub const MAX_FRAME_BODY_BYTES: usize = 512 * 1024 * 1024;
/// The leader caps a changes batch at this many bytes of operations, whatever the follower
/// asks, so that a frame stays well under [`MAX_FRAME_BODY_BYTES`].
pub const MAX_CHANGES_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// zstd level of frames and chunks: fast, as replication is latency-bound.
pub const ZSTD_LEVEL: i32 = 1;
/// Chunks shorter than this are sent as they are (compressing them gains nothing).
pub const CHUNK_COMPRESSION_MIN_BYTES: usize = 512;
/// The fewest bytes an encoded operation can take (four one-byte fields and one empty
/// string), used to refuse an operation count that the frame cannot hold.
const MIN_OPERATION_BYTES: u64 = 5;

/// Header present on every error answer of the transport: its body is a JSON [`LeaderError`].
pub const ERROR_HEADER: &str = "x-tandem-error";
/// Header of a long-poll answer sent as a heartbeat stream; its value is the heartbeat
/// interval in milliseconds.
pub const HEARTBEAT_HEADER: &str = "x-tandem-heartbeat-millis";
/// How often a leader sends a heartbeat while a long poll waits. Well under the follower's
/// idle timeout (`HttpTransportSettings::idle_timeout`, 4 s by default), so a heartbeat
/// delayed by a busy leader is not mistaken for a dead connection.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A heartbeat of a long-poll answer (a byte no answer tag equals).
pub const HEARTBEAT_BYTE: u8 = b' ';
/// Longest a verify step may take (opening a session digests a whole shard, about a second
/// per million documents); the heartbeats show the leader is alive meanwhile.
pub const VERIFY_STEP_DEADLINE: Duration = Duration::from_secs(600);
/// Tag of a long-poll answer followed by a shard changes frame.
pub const ANSWER_FRAME_TAG: u8 = b'F';
/// Tag of a long-poll answer followed by a [`LeaderError`] as JSON.
pub const ANSWER_ERROR_TAG: u8 = b'E';
/// Chunk header: the chunk's length in bytes once decoded.
pub const CHUNK_LENGTH_HEADER: &str = "x-tandem-chunk-length";
/// Chunk header: CRC-32 (IEEE) of the decoded chunk. The polynomial of tantivy's footers, so
/// one hardware-accelerated pass (`crc32fast`) serves both this check and the follower's.
pub const CHUNK_CRC_HEADER: &str = "x-tandem-chunk-crc32";
/// Chunk header: `identity` or `zstd`.
pub const CHUNK_ENCODING_HEADER: &str = "x-tandem-chunk-encoding";
/// Chunk header: nanoseconds the leader spent throttling the chunk.
pub const CHUNK_THROTTLE_HEADER: &str = "x-tandem-source-throttle-nanos";

fn corrupted(reason: impl Into<String>) -> LeaderError {
    LeaderError::CorruptedResponse(reason.into())
}

/// How a frame's payload is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// The body as it is.
    None = 0,
    /// zstd at [`ZSTD_LEVEL`].
    Zstd = 1,
    /// LZ4, block format (the decoded length is the frame's `body_length`).
    Lz4 = 2,
}

/// How a leader compresses its shard changes frames: LZ4, as Elasticsearch compresses
/// indexing data between clusters by default (`transport.compress: indexing_data`,
/// `transport.compression_scheme: lz4`). Measured by the `transport_frames` bench on
/// `server-metrics` batches, LZ4 encodes in 0.5 (700 operations) to 0.7 (5,120) of zstd level
/// 1's time, for frames 1.6 times as large (0.29 of the body against 0.19), and decodes in 0.6
/// of its time. Frames of every scheme are decoded.
pub const FRAME_COMPRESSION: Compression = Compression::Lz4;
/// LZ4 expands at most 255 times: a payload announcing more is refused before anything is
/// allocated for it.
const LZ4_MAX_EXPANSION: usize = 255;

/// Wraps `body` in a frame compressed with [`FRAME_COMPRESSION`] when that makes it smaller.
///
/// # Panics
/// If `body` is over [`MAX_FRAME_BODY_BYTES`] (callers bound what they encode).
fn encode_frame(magic: [u8; 4], body: &[u8]) -> Vec<u8> {
    encode_frame_with(magic, body, FRAME_COMPRESSION)
}

/// [`encode_frame`] with the given compression.
fn encode_frame_with(magic: [u8; 4], body: &[u8], compression: Compression) -> Vec<u8> {
    assert!(body.len() <= MAX_FRAME_BODY_BYTES, "frame body too large");
    // Compressed straight behind the header's room; kept only if smaller than the body.
    let bound = match compression {
        Compression::None => 0,
        Compression::Zstd => zstd::zstd_safe::compress_bound(body.len()),
        Compression::Lz4 => lz4_flex::block::get_maximum_output_size(body.len()),
    };
    let mut frame = vec![0u8; FRAME_HEADER_BYTES + bound];
    let out = &mut frame[FRAME_HEADER_BYTES..];
    let compressed = match compression {
        Compression::None => None,
        Compression::Zstd => compress_with_thread_compressor(body, out),
        Compression::Lz4 => lz4_flex::block::compress_into(body, out).ok(),
    }
    .filter(|&length| length < body.len());
    let compression = match compressed {
        Some(length) => {
            frame.truncate(FRAME_HEADER_BYTES + length);
            compression
        }
        None => {
            frame.truncate(FRAME_HEADER_BYTES);
            frame.extend_from_slice(body);
            Compression::None
        }
    };
    let payload_length = (frame.len() - FRAME_HEADER_BYTES) as u32;
    let mut header = [0u8; FRAME_HEADER_BYTES - 4];
    header[..4].copy_from_slice(&magic);
    header[4] = FRAME_VERSION;
    header[5] = compression as u8;
    header[6..10].copy_from_slice(&(body.len() as u32).to_le_bytes());
    header[10..14].copy_from_slice(&payload_length.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header), &frame[FRAME_HEADER_BYTES..]);
    frame[..FRAME_HEADER_BYTES - 4].copy_from_slice(&header);
    frame[FRAME_HEADER_BYTES - 4..FRAME_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    frame
}

/// zstd-compresses `body` into `out` with this thread's compressor (made once per thread: a
/// zstd context is costly to create, and a leader encodes a frame per changes request).
/// Returns the compressed length, or `None` if compression failed.
fn compress_with_thread_compressor(body: &[u8], out: &mut [u8]) -> Option<usize> {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        cell.as_mut()?.compress_to_buffer(body, out).ok()
    })
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Checks a frame (magic, version, lengths, checksum) and returns its decoded body.
pub(crate) fn decode_frame(magic: [u8; 4], frame: &[u8]) -> Result<Vec<u8>, LeaderError> {
    if frame.len() < FRAME_HEADER_BYTES {
        return Err(corrupted(format!(
            "frame of {} bytes is shorter than its header",
            frame.len()
        )));
    }
    if frame[0..4] != magic {
        return Err(corrupted(format!(
            "bad frame magic {:?}, expected {:?}",
            &frame[0..4],
            magic
        )));
    }
    if frame[4] != FRAME_VERSION {
        return Err(corrupted(format!(
            "unsupported frame version {} (this node reads {FRAME_VERSION})",
            frame[4]
        )));
    }
    let body_length = le_u32(frame, 6) as usize;
    let payload_length = le_u32(frame, 10) as usize;
    let stored_crc = le_u32(frame, 14);
    let payload = &frame[FRAME_HEADER_BYTES..];
    if payload.len() != payload_length {
        return Err(corrupted(format!(
            "frame announces a {payload_length}-byte payload but carries {} bytes",
            payload.len()
        )));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[..14]), payload);
    if crc != stored_crc {
        return Err(corrupted(format!(
            "frame checksum mismatch: computed {crc:#010x}, stored {stored_crc:#010x}"
        )));
    }
    if body_length > MAX_FRAME_BODY_BYTES {
        return Err(corrupted(format!(
            "frame body of {body_length} bytes is over the limit of {MAX_FRAME_BODY_BYTES}"
        )));
    }
    match frame[5] {
        code if code == Compression::None as u8 => {
            if payload.len() != body_length {
                return Err(corrupted("uncompressed frame body length mismatch"));
            }
            Ok(payload.to_vec())
        }
        code if code == Compression::Zstd as u8 => decompress_exact(payload, body_length),
        code if code == Compression::Lz4 as u8 => lz4_decompress_exact(payload, body_length),
        other => Err(corrupted(format!("unknown frame compression {other}"))),
    }
}

/// Decompresses LZ4 `payload` (block format), which must decode to exactly `length` bytes. The
/// output is allocated only for a length the payload can hold.
fn lz4_decompress_exact(payload: &[u8], length: usize) -> Result<Vec<u8>, LeaderError> {
    if length > payload.len().saturating_mul(LZ4_MAX_EXPANSION) {
        return Err(corrupted(format!(
            "an lz4 payload of {} bytes cannot decode to {length}",
            payload.len()
        )));
    }
    let mut body = vec![0u8; length];
    let decoded = lz4_flex::block::decompress_into(payload, &mut body)
        .map_err(|e| corrupted(format!("lz4: {e}")))?;
    if decoded != length {
        return Err(corrupted(format!(
            "compressed body decodes to {decoded} bytes, {length} announced"
        )));
    }
    Ok(body)
}

/// Decompresses zstd `payload`, which must decode to exactly `length` bytes. Memory grows
/// with the bytes actually decoded, never beyond `length + 1`.
fn decompress_exact(payload: &[u8], length: usize) -> Result<Vec<u8>, LeaderError> {
    let decoder = zstd::stream::read::Decoder::with_buffer(payload)
        .map_err(|e| corrupted(format!("zstd: {e}")))?;
    let mut body = Vec::new();
    decoder
        .take(length as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| corrupted(format!("zstd: {e}")))?;
    if body.len() != length {
        return Err(corrupted(format!(
            "compressed body decodes to {}{} bytes, {length} announced",
            body.len(),
            if body.len() > length { "+" } else { "" }
        )));
    }
    Ok(body)
}

fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_signed(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_unsigned(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads the fields of a body, refusing anything that does not fit.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn byte(&mut self, what: &str) -> Result<u8, LeaderError> {
        let (&first, rest) = self
            .bytes
            .split_first()
            .ok_or_else(|| corrupted(format!("body ends before {what}")))?;
        self.bytes = rest;
        Ok(first)
    }

    fn unsigned(&mut self, what: &str) -> Result<u64, LeaderError> {
        let mut value = 0u64;
        for position in 0..10 {
            let byte = self.byte(what)?;
            let bits = u64::from(byte & 0x7f);
            if position == 9 && bits > 1 {
                return Err(corrupted(format!("{what} overflows 64 bits")));
            }
            value |= bits << (7 * position);
            if byte & 0x80 == 0 {
                // One value, one encoding: a trailing zero group is a longer spelling of a
                // shorter varint, which the encoder never writes.
                if position > 0 && byte == 0 {
                    return Err(corrupted(format!(
                        "{what} is a varint with a trailing zero byte"
                    )));
                }
                return Ok(value);
            }
        }
        Err(corrupted(format!(
            "{what} is a varint of more than 10 bytes"
        )))
    }

    fn signed(&mut self, what: &str) -> Result<i64, LeaderError> {
        let zigzag = self.unsigned(what)?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], LeaderError> {
        let length = self.unsigned(what)?;
        if length > self.bytes.len() as u64 {
            return Err(corrupted(format!(
                "{what} of {length} bytes, only {} left",
                self.bytes.len()
            )));
        }
        let (taken, rest) = self.bytes.split_at(length as usize);
        self.bytes = rest;
        Ok(taken)
    }

    fn string(&mut self, what: &str) -> Result<String, LeaderError> {
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupted(format!("{what} is not UTF-8")))
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The body of a shard changes frame.
pub(crate) fn encode_changes_body(response: &ShardChangesResponse) -> Vec<u8> {
    let ShardChangesResponse {
        changes,
        mapping_version,
        settings_version,
        aliases_version,
    } = response;
    let mut body = Vec::with_capacity(64 + changes.operations_size_in_bytes());
    put_signed(&mut body, changes.global_checkpoint.0);
    put_signed(&mut body, changes.max_seq_no.0);
    put_signed(&mut body, changes.max_seq_no_of_updates.0);
    put_unsigned(&mut body, *mapping_version);
    put_unsigned(&mut body, *settings_version);
    put_unsigned(&mut body, *aliases_version);
    put_unsigned(&mut body, duration_nanos(changes.took));
    put_unsigned(&mut body, changes.operations.len() as u64);
    for operation in &changes.operations {
        put_signed(&mut body, operation.seq_no.0);
        put_unsigned(&mut body, operation.primary_term.0);
        put_unsigned(&mut body, operation.version);
        body.push(operation.op_type() as u8);
        match &operation.kind {
            OperationKind::Index { id, source } => {
                put_bytes(&mut body, id.as_bytes());
                put_bytes(&mut body, source);
            }
            OperationKind::Delete { id } => put_bytes(&mut body, id.as_bytes()),
            OperationKind::NoOp { reason } => put_bytes(&mut body, reason.as_bytes()),
        }
    }
    body
}

fn decode_changes_body(body: &[u8]) -> Result<ShardChangesResponse, LeaderError> {
    let mut reader = Reader { bytes: body };
    let global_checkpoint = SeqNo(reader.signed("global_checkpoint")?);
    let max_seq_no = SeqNo(reader.signed("max_seq_no")?);
    let max_seq_no_of_updates = SeqNo(reader.signed("max_seq_no_of_updates")?);
    let mapping_version = reader.unsigned("mapping_version")?;
    let settings_version = reader.unsigned("settings_version")?;
    let aliases_version = reader.unsigned("aliases_version")?;
    let took = Duration::from_nanos(reader.unsigned("took")?);
    let count = reader.unsigned("operation count")?;
    if count > reader.remaining() as u64 / MIN_OPERATION_BYTES {
        return Err(corrupted(format!(
            "{count} operations cannot fit in the {} bytes left",
            reader.remaining()
        )));
    }
    // `count` is now bounded by the bytes present, so reserving for it is safe.
    let mut operations = Vec::with_capacity(count as usize);
    for _ in 0..count {
        operations.push(Arc::new(decode_operation(&mut reader)?));
    }
    if reader.remaining() != 0 {
        return Err(corrupted(format!(
            "{} bytes after the last operation",
            reader.remaining()
        )));
    }
    Ok(ShardChangesResponse {
        changes: ChangesResponse {
            operations,
            global_checkpoint,
            max_seq_no,
            max_seq_no_of_updates,
            took,
        },
        mapping_version,
        settings_version,
        aliases_version,
    })
}

fn decode_operation(reader: &mut Reader<'_>) -> Result<Operation, LeaderError> {
    let seq_no = SeqNo(reader.signed("seq_no")?);
    let primary_term = PrimaryTerm(reader.unsigned("primary_term")?);
    let version = reader.unsigned("version")?;
    let code = reader.byte("operation kind")?;
    let kind = match OpType::from_code(u64::from(code)) {
        Some(OpType::Index) => OperationKind::Index {
            id: reader.string("document id")?,
            source: reader.bytes("source")?.to_vec(),
        },
        Some(OpType::Delete) => OperationKind::Delete {
            id: reader.string("document id")?,
        },
        Some(OpType::NoOp) => OperationKind::NoOp {
            reason: reader.string("no-op reason")?,
        },
        None => return Err(corrupted(format!("unknown operation kind {code}"))),
    };
    Ok(Operation {
        seq_no,
        primary_term,
        version,
        kind,
    })
}

/// Encodes a shard changes answer as a frame.
///
/// # Panics
/// If the encoded body is over [`MAX_FRAME_BODY_BYTES`]; the leader caps batches at
/// [`MAX_CHANGES_BATCH_BYTES`] so that it never is.
pub fn encode_shard_changes(response: &ShardChangesResponse) -> Vec<u8> {
    encode_frame(CHANGES_MAGIC, &encode_changes_body(response))
}

/// [`encode_shard_changes`] with the given compression (to compare schemes).
///
/// # Panics
/// As [`encode_shard_changes`].
pub fn encode_shard_changes_with(
    response: &ShardChangesResponse,
    compression: Compression,
) -> Vec<u8> {
    encode_frame_with(CHANGES_MAGIC, &encode_changes_body(response), compression)
}

/// Decodes a shard changes frame; any defect is [`LeaderError::CorruptedResponse`].
pub fn decode_shard_changes(frame: &[u8]) -> Result<ShardChangesResponse, LeaderError> {
    decode_changes_body(&decode_frame(CHANGES_MAGIC, frame)?)
}

/// The outcome that ends a long-poll answer: [`ANSWER_FRAME_TAG`] and the frame, or
/// [`ANSWER_ERROR_TAG`] and the error as JSON.
pub fn encode_long_poll_outcome(outcome: Result<Vec<u8>, LeaderError>) -> Vec<u8> {
    match outcome {
        Ok(frame) => {
            let mut out = Vec::with_capacity(1 + frame.len());
            out.push(ANSWER_FRAME_TAG);
            out.extend_from_slice(&frame);
            out
        }
        Err(error) => {
            let mut out = vec![ANSWER_ERROR_TAG];
            match serde_json::to_vec(&error) {
                Ok(json) => out.extend_from_slice(&json),
                Err(_) => out.extend_from_slice(
                    br#"{"Unavailable":"the leader could not encode its error"}"#,
                ),
            }
            out
        }
    }
}

/// Splits the outcome of a long-poll answer whose heartbeats were skipped: the shard changes
/// frame, or the leader's error. An answer that ends before its outcome, or with an unknown
/// tag, is a [`LeaderError::CorruptedResponse`].
pub fn split_long_poll_outcome(outcome: &[u8]) -> Result<&[u8], LeaderError> {
    match outcome.split_first() {
        Some((&ANSWER_FRAME_TAG, frame)) => Ok(frame),
        Some((&ANSWER_ERROR_TAG, json)) => Err(serde_json::from_slice::<LeaderError>(json)
            .unwrap_or_else(|e| corrupted(format!("malformed long-poll error: {e}")))),
        Some((tag, _)) => Err(corrupted(format!(
            "unknown long-poll answer tag {tag:#04x}"
        ))),
        None => Err(corrupted("the long-poll answer ended before its outcome")),
    }
}

/// How a chunk's body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkEncoding {
    /// The bytes as they are.
    Identity,
    /// zstd-compressed.
    Zstd,
}

impl ChunkEncoding {
    /// The header value.
    pub fn name(self) -> &'static str {
        match self {
            ChunkEncoding::Identity => "identity",
            ChunkEncoding::Zstd => "zstd",
        }
    }
}

/// What the headers of a chunk answer say about its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Length of the chunk once decoded.
    pub length: u64,
    /// CRC-32 (IEEE) of the decoded chunk.
    pub crc32: u32,
    /// How the body is encoded.
    pub encoding: ChunkEncoding,
    /// Time the leader spent throttling the chunk.
    pub source_throttle: Duration,
}

impl ChunkHeader {
    /// The headers as (name, value) pairs.
    pub fn to_pairs(&self) -> [(&'static str, String); 4] {
        [
            (CHUNK_LENGTH_HEADER, self.length.to_string()),
            (CHUNK_CRC_HEADER, self.crc32.to_string()),
            (CHUNK_ENCODING_HEADER, self.encoding.name().to_string()),
            (
                CHUNK_THROTTLE_HEADER,
                duration_nanos(self.source_throttle).to_string(),
            ),
        ]
    }

    /// Parses the headers, looked up by name with `header`.
    pub fn parse<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Result<ChunkHeader, LeaderError> {
        // Plain decimal, as `to_pairs` writes it: no sign, no leading zero, no blank.
        let number = |name: &str| -> Result<u64, LeaderError> {
            let value =
                header(name).ok_or_else(|| corrupted(format!("chunk answer without [{name}]")))?;
            let canonical = value.bytes().all(|byte| byte.is_ascii_digit())
                && (value == "0" || !value.starts_with('0'));
            value
                .parse::<u64>()
                .ok()
                .filter(|_| canonical)
                .ok_or_else(|| corrupted(format!("chunk header [{name}] is not a number")))
        };
        let encoding = match header(CHUNK_ENCODING_HEADER) {
            Some("identity") => ChunkEncoding::Identity,
            Some("zstd") => ChunkEncoding::Zstd,
            other => return Err(corrupted(format!("unknown chunk encoding {other:?}"))),
        };
        let crc32 = u32::try_from(number(CHUNK_CRC_HEADER)?)
            .map_err(|_| corrupted("chunk checksum over 32 bits"))?;
        Ok(ChunkHeader {
            length: number(CHUNK_LENGTH_HEADER)?,
            crc32,
            encoding,
            source_throttle: Duration::from_nanos(number(CHUNK_THROTTLE_HEADER)?),
        })
    }
}

/// Whether the leader compresses file chunks. Off, as Elasticsearch's default
/// `transport.compress: indexing_data` leaves recovery file chunks alone: segment files are
/// mostly compressed already, and zstd on every chunk was measured to cost a third of a
/// recovery's CPU on the leader (`node_http` bench) for little saved on a fast network.
/// Decoding accepts both encodings either way.
pub const COMPRESS_CHUNKS: bool = false;

/// Encodes a chunk: its header and body, zstd-compressed when `compress` is set and that
/// saves at least an eighth. Sent as it is, the body is the chunk's own bytes (a leader's chunk
/// is one piece of its memory map: nothing is copied).
pub fn encode_chunk(chunk: FileChunk, compress: bool) -> (ChunkHeader, Bytes) {
    let data = &chunk.data;
    let compressed = if compress && data.len() >= CHUNK_COMPRESSION_MIN_BYTES {
        zstd::bulk::compress(&data.to_vec(), ZSTD_LEVEL)
            .ok()
            .filter(|compressed| compressed.len() < data.len() - data.len() / 8)
    } else {
        None
    };
    let header = |encoding| ChunkHeader {
        length: data.len() as u64,
        crc32: data.crc32(),
        encoding,
        source_throttle: chunk.source_throttle,
    };
    match compressed {
        Some(compressed) => (header(ChunkEncoding::Zstd), Bytes::from(compressed)),
        None => (header(ChunkEncoding::Identity), chunk.data.to_bytes()),
    }
}

/// Decodes a chunk answer to a request for `requested_length` bytes: checks the announced
/// length (at most the requested one), the decoded length and the checksum. An identity body
/// stays in the pieces it arrived in.
pub fn decode_chunk(
    header: &ChunkHeader,
    body: ChunkBytes,
    requested_length: usize,
) -> Result<FileChunk, LeaderError> {
    if header.length > requested_length as u64 {
        return Err(corrupted(format!(
            "chunk of {} bytes for a request of {requested_length}",
            header.length
        )));
    }
    let length = header.length as usize;
    let data = match header.encoding {
        ChunkEncoding::Identity => body,
        ChunkEncoding::Zstd => ChunkBytes::from(decompress_exact(&body.to_vec(), length)?),
    };
    if data.len() != length {
        return Err(corrupted(format!(
            "chunk of {} bytes, {length} announced",
            data.len()
        )));
    }
    let crc = data.crc32();
    if crc != header.crc32 {
        return Err(corrupted(format!(
            "chunk checksum mismatch: computed {crc:#010x}, announced {:#010x}",
            header.crc32
        )));
    }
    Ok(FileChunk {
        data,
        source_throttle: header.source_throttle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn operation(seq_no: i64, kind: OperationKind) -> Arc<Operation> {
        Arc::new(Operation {
            seq_no: SeqNo(seq_no),
            primary_term: PrimaryTerm(3),
            version: seq_no as u64 + 1,
            kind,
        })
    }

    fn sample() -> ShardChangesResponse {
        ShardChangesResponse {
            changes: ChangesResponse {
                operations: vec![
                    operation(
                        7,
                        OperationKind::Index {
                            id: "doc-1".into(),
                            source: br#"{"body":"hello hello hello hello"}"#.to_vec(),
                        },
                    ),
                    operation(8, OperationKind::Delete { id: "doc-2".into() }),
                    operation(
                        9,
                        OperationKind::NoOp {
                            reason: "filled".into(),
                        },
                    ),
                ],
                global_checkpoint: SeqNo(9),
                max_seq_no: SeqNo(11),
                max_seq_no_of_updates: SeqNo(8),
                took: Duration::from_micros(1234),
            },
            mapping_version: 2,
            settings_version: 3,
            aliases_version: 4,
        }
    }

    #[test]
    fn long_poll_outcomes_round_trip_and_damaged_ones_are_errors() {
        let frame = vec![1u8, 2, 3];
        let answer = encode_long_poll_outcome(Ok(frame.clone()));
        assert_eq!(split_long_poll_outcome(&answer), Ok(&frame[..]));
        let error = LeaderError::IndexNotFound("gone".to_string());
        let answer = encode_long_poll_outcome(Err(error.clone()));
        assert_eq!(split_long_poll_outcome(&answer), Err(error));
        for damaged in [&b""[..], b"X123", b"E{not json"] {
            assert!(matches!(
                split_long_poll_outcome(damaged),
                Err(LeaderError::CorruptedResponse(_))
            ));
        }
        assert_ne!(HEARTBEAT_BYTE, ANSWER_FRAME_TAG);
        assert_ne!(HEARTBEAT_BYTE, ANSWER_ERROR_TAG);
    }

    #[test]
    fn a_frame_round_trips() {
        let response = sample();
        let frame = encode_shard_changes(&response);
        assert_eq!(&frame[..4], b"TDSC");
        assert_eq!(decode_shard_changes(&frame), Ok(response));
        let empty = ShardChangesResponse {
            changes: ChangesResponse {
                operations: Vec::new(),
                global_checkpoint: SeqNo::NO_OPS_PERFORMED,
                max_seq_no: SeqNo::NO_OPS_PERFORMED,
                max_seq_no_of_updates: SeqNo::UNASSIGNED,
                took: Duration::ZERO,
            },
            ..sample()
        };
        assert_eq!(
            decode_shard_changes(&encode_shard_changes(&empty)),
            Ok(empty)
        );
    }

    #[test]
    fn a_compressible_batch_is_compressed() {
        let mut response = sample();
        response.changes.operations = (0..200)
            .map(|n| {
                operation(
                    n,
                    OperationKind::Index {
                        id: format!("doc-{n}"),
                        source: br#"{"body":"the same words again and again"}"#.to_vec(),
                    },
                )
            })
            .collect();
        let frame = encode_shard_changes(&response);
        assert_eq!(frame[5], FRAME_COMPRESSION as u8);
        assert!(frame.len() < encode_changes_body(&response).len() / 2);
        assert_eq!(decode_shard_changes(&frame), Ok(response.clone()));
        // Frames of every scheme decode (a leader of another version may use another).
        let body = encode_changes_body(&response);
        for compression in [Compression::None, Compression::Zstd, Compression::Lz4] {
            let frame = encode_frame_with(CHANGES_MAGIC, &body, compression);
            assert_eq!(frame[5], compression as u8);
            assert_eq!(decode_shard_changes(&frame), Ok(response.clone()));
        }
    }

    #[test]
    fn an_lz4_frame_announcing_more_than_its_payload_can_hold_is_refused() {
        let body = vec![0u8; 100_000];
        let mut frame = encode_frame_with(CHANGES_MAGIC, &body, Compression::Lz4);
        assert_eq!(frame[5], Compression::Lz4 as u8);
        let payload_length = frame.len() - FRAME_HEADER_BYTES;
        let claimed = (payload_length * LZ4_MAX_EXPANSION + 1) as u32;
        frame[6..10].copy_from_slice(&claimed.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[..14]), &frame[18..]);
        frame[14..18].copy_from_slice(&crc.to_le_bytes());
        let error = decode_frame(CHANGES_MAGIC, &frame).unwrap_err();
        assert!(error.to_string().contains("cannot decode"), "{error}");
        // A length the payload could hold but does not: an error, not a panic.
        let wrong = (body.len() + 1) as u32;
        frame[6..10].copy_from_slice(&wrong.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[..14]), &frame[18..]);
        frame[14..18].copy_from_slice(&crc.to_le_bytes());
        assert!(decode_frame(CHANGES_MAGIC, &frame).is_err());
    }

    #[test]
    fn every_truncation_and_bit_flip_of_a_frame_is_refused() {
        let frame = encode_shard_changes(&sample());
        for length in 0..frame.len() {
            let error = decode_shard_changes(&frame[..length]).unwrap_err();
            assert!(error.is_retryable(), "{error}");
        }
        let mut longer = frame.clone();
        longer.push(0);
        assert!(decode_shard_changes(&longer).is_err());
        for bit in 0..frame.len() * 8 {
            let mut flipped = frame.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(
                    decode_shard_changes(&flipped),
                    Err(LeaderError::CorruptedResponse(_))
                ),
                "bit {bit}"
            );
        }
    }

    /// A frame whose checksum is right but whose body lies must still be refused.
    fn reframe(body: &[u8]) -> Vec<u8> {
        encode_frame(CHANGES_MAGIC, body)
    }

    #[test]
    fn well_framed_but_malformed_bodies_are_refused() {
        let body = encode_changes_body(&sample());
        // Truncated bodies, re-framed with a valid checksum.
        for length in 0..body.len() {
            assert!(decode_shard_changes(&reframe(&body[..length])).is_err());
        }
        // A huge operation count is refused before anything is allocated for it.
        let mut huge = Vec::new();
        for _ in 0..7 {
            put_signed(&mut huge, 0);
        }
        put_unsigned(&mut huge, u64::MAX);
        assert!(decode_shard_changes(&reframe(&huge)).is_err());
        // An over-long varint, an unknown kind, a non-UTF-8 id, trailing bytes.
        assert!(decode_shard_changes(&reframe(&[0xff; 11])).is_err());
        let mut trailing = body.clone();
        trailing.push(0);
        assert!(decode_shard_changes(&reframe(&trailing)).is_err());
        let mut header_only = Vec::new();
        for _ in 0..7 {
            put_signed(&mut header_only, 0);
        }
        put_unsigned(&mut header_only, 1);
        let mut bad_kind = header_only.clone();
        bad_kind.extend_from_slice(&[0, 1, 1, 9, 0]);
        assert!(decode_shard_changes(&reframe(&bad_kind)).is_err());
        let mut bad_id = header_only;
        bad_id.extend_from_slice(&[0, 1, 1, 1, 2, 0xc3, 0x28]);
        assert!(decode_shard_changes(&reframe(&bad_id)).is_err());
    }

    #[test]
    fn a_frame_announcing_a_huge_body_is_refused() {
        let mut frame = encode_shard_changes(&sample());
        let huge = (MAX_FRAME_BODY_BYTES as u32 + 1).to_le_bytes();
        frame[6..10].copy_from_slice(&huge);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[..14]), &frame[18..]);
        frame[14..18].copy_from_slice(&crc.to_le_bytes());
        assert!(decode_shard_changes(&frame).is_err());
    }

    #[test]
    fn chunks_round_trip_and_are_checked() {
        for data in [
            Vec::new(),
            b"short".to_vec(),
            vec![7u8; 10_000],
            (0..10_000u32).map(|n| (n * 7919 % 251) as u8).collect(),
        ] {
            let chunk = FileChunk {
                data: data.clone().into(),
                source_throttle: Duration::from_millis(3),
            };
            for compress in [false, true] {
                let (header, body) = encode_chunk(chunk.clone(), compress);
                if !compress {
                    assert_eq!(header.encoding, ChunkEncoding::Identity);
                }
                let pairs = header.to_pairs();
                let parsed = ChunkHeader::parse(|name| {
                    pairs
                        .iter()
                        .find(|(key, _)| *key == name)
                        .map(|(_, value)| value.as_str())
                })
                .unwrap();
                assert_eq!(parsed, header);
                assert_eq!(
                    decode_chunk(&parsed, body.clone().into(), data.len()),
                    Ok(chunk.clone())
                );
                // The same body cut into pieces, as a connection delivers it.
                let cut = body.len() / 3;
                let pieces = ChunkBytes::from_pieces(vec![body.slice(..cut), body.slice(cut..)]);
                assert_eq!(decode_chunk(&parsed, pieces, data.len()), Ok(chunk.clone()));
                if !data.is_empty() {
                    assert!(decode_chunk(&parsed, body.clone().into(), data.len() - 1).is_err());
                    let mut damaged = body.to_vec();
                    damaged[0] ^= 1;
                    assert!(decode_chunk(&parsed, damaged.into(), data.len()).is_err());
                    assert!(
                        decode_chunk(&parsed, body.slice(..body.len() - 1).into(), data.len())
                            .is_err()
                    );
                }
            }
        }
        assert_eq!(
            encode_chunk(
                FileChunk {
                    data: vec![0; 4096].into(),
                    source_throttle: Duration::ZERO
                },
                true
            )
            .0
            .encoding,
            ChunkEncoding::Zstd
        );
        assert!(ChunkHeader::parse(|_| None).is_err());
        assert!(ChunkHeader::parse(|_| Some("x")).is_err());
    }

    fn arbitrary_kind() -> impl Strategy<Value = OperationKind> {
        prop_oneof![
            (
                "[a-z0-9é-]{0,20}",
                proptest::collection::vec(any::<u8>(), 0..200)
            )
                .prop_map(|(id, source)| OperationKind::Index { id, source }),
            "[a-z0-9-]{0,20}".prop_map(|id| OperationKind::Delete { id }),
            ".{0,30}".prop_map(|reason| OperationKind::NoOp { reason }),
        ]
    }

    fn arbitrary_response() -> impl Strategy<Value = ShardChangesResponse> {
        (
            proptest::collection::vec(
                (any::<i64>(), any::<u64>(), any::<u64>(), arbitrary_kind()),
                0..20,
            ),
            (any::<i64>(), any::<i64>(), any::<i64>()),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(|(operations, checkpoints, versions)| ShardChangesResponse {
                changes: ChangesResponse {
                    operations: operations
                        .into_iter()
                        .map(|(seq_no, term, version, kind)| {
                            Arc::new(Operation {
                                seq_no: SeqNo(seq_no),
                                primary_term: PrimaryTerm(term),
                                version,
                                kind,
                            })
                        })
                        .collect(),
                    global_checkpoint: SeqNo(checkpoints.0),
                    max_seq_no: SeqNo(checkpoints.1),
                    max_seq_no_of_updates: SeqNo(checkpoints.2),
                    took: Duration::from_nanos(versions.3),
                },
                mapping_version: versions.0,
                settings_version: versions.1,
                aliases_version: versions.2,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_response_round_trips(response in arbitrary_response()) {
            let frame = encode_shard_changes(&response);
            prop_assert_eq!(decode_shard_changes(&frame), Ok(response));
        }

        #[test]
        fn damaged_frames_are_errors_never_panics(
            response in arbitrary_response(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let frame = encode_shard_changes(&response);
            let truncated = &frame[..cut.index(frame.len())];
            prop_assert!(decode_shard_changes(truncated).is_err());
            let mut flipped = frame.clone();
            let at = flip.index(flipped.len());
            flipped[at] ^= 1 << bit;
            prop_assert!(decode_shard_changes(&flipped).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_shard_changes(&bytes);
            let _ = decode_shard_changes(&reframe(&bytes));
        }
    }
}

//! Body of the `wire_frame` fuzz target (`fuzz/`), kept in the library so that the ordinary
//! test suite (`tests/fuzz_corpus.rs`) runs it over the checked-in corpus too.
//!
//! The target feeds arbitrary bytes to every decoder of the wire ([`crate::wire`]): shard
//! changes frames, long-poll answers and file chunk answers (headers and body). Each must
//! return a value or [`LeaderError::CorruptedResponse`], never panic, and a value must be the
//! only one its bytes can mean: it re-encodes to the bytes it was decoded from (the frame, the
//! body of a compressed frame, the header values), and decodes back to itself under every
//! compression. A violation is a panic, which is what a fuzzer reports.

use tandem_recovery::chunk_bytes::ChunkBytes;
use tandem_recovery::LeaderError;

use crate::wire::{self, ChunkHeader, Compression};

/// Fuzz body of the `wire_frame` target. The first byte picks the decoder:
/// - `0`: the rest is a shard changes frame;
/// - `1`: the same, with magic, version, payload length and checksum set right, so that the
///   input reaches the body decoder;
/// - `2`: the rest is a long-poll answer without its heartbeats;
/// - `3`: a chunk answer: a length byte `n`, `n` bytes of header values (length, CRC-32,
///   encoding, throttle nanos, one a line; a missing line is a missing header), two bytes of
///   requested length (LE), and the body.
pub fn wire_frame(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => changes_frame(rest),
        1 => changes_frame(&seal(rest)),
        2 => long_poll(rest),
        _ => chunk(rest),
    }
}

fn expect_corrupted(error: LeaderError, what: &str) {
    assert!(
        matches!(error, LeaderError::CorruptedResponse(_)),
        "{what} failed with {error:?}, not CorruptedResponse"
    );
}

/// `bytes` as a frame whose magic, version, payload length and checksum are right.
fn seal(bytes: &[u8]) -> Vec<u8> {
    let mut frame = bytes.to_vec();
    if frame.len() < wire::FRAME_HEADER_BYTES {
        frame.resize(wire::FRAME_HEADER_BYTES, 0);
    }
    frame[..4].copy_from_slice(&wire::CHANGES_MAGIC);
    frame[4] = wire::FRAME_VERSION;
    let payload_length = (frame.len() - wire::FRAME_HEADER_BYTES) as u32;
    frame[10..14].copy_from_slice(&payload_length.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&frame[..14]),
        &frame[wire::FRAME_HEADER_BYTES..],
    );
    frame[14..18].copy_from_slice(&crc.to_le_bytes());
    frame
}

fn changes_frame(frame: &[u8]) {
    let value = match wire::decode_shard_changes(frame) {
        Ok(value) => value,
        Err(error) => return expect_corrupted(error, "decoding a frame"),
    };
    let body = wire::decode_frame(wire::CHANGES_MAGIC, frame).expect("the frame decoded once");
    assert_eq!(
        wire::encode_changes_body(&value),
        body,
        "a decoded body does not re-encode to itself"
    );
    if frame[5] == Compression::None as u8 {
        assert_eq!(
            wire::encode_shard_changes_with(&value, Compression::None),
            frame,
            "an uncompressed frame does not re-encode to itself"
        );
    }
    for compression in [Compression::None, Compression::Zstd, Compression::Lz4] {
        let again =
            wire::decode_shard_changes(&wire::encode_shard_changes_with(&value, compression))
                .unwrap_or_else(|error| {
                    panic!("a re-encoded frame ({compression:?}) fails: {error}")
                });
        assert_eq!(
            again, value,
            "a frame re-encoded with {compression:?} differs"
        );
    }
}

fn long_poll(answer: &[u8]) {
    match wire::split_long_poll_outcome(answer) {
        Ok(frame) => {
            assert_eq!(answer.first(), Some(&wire::ANSWER_FRAME_TAG));
            assert_eq!(frame, &answer[1..]);
            changes_frame(frame);
        }
        Err(error) => {
            if answer.first() == Some(&wire::ANSWER_ERROR_TAG) {
                // Whatever the leader's error was, it travels again unchanged.
                let again = wire::encode_long_poll_outcome(Err(error.clone()));
                let error_again = wire::split_long_poll_outcome(&again)
                    .expect_err("an encoded error decodes to an error");
                assert_eq!(error_again, error, "a long-poll error does not round-trip");
            } else {
                expect_corrupted(error, "splitting a long-poll answer");
            }
        }
    }
}

fn chunk(bytes: &[u8]) {
    let Some((&head_length, rest)) = bytes.split_first() else {
        return;
    };
    let head_length = usize::from(head_length).min(rest.len());
    let (head, rest) = rest.split_at(head_length);
    let (requested, body) = match rest {
        [low, high, body @ ..] => (usize::from(u16::from_le_bytes([*low, *high])), body),
        _ => return,
    };
    let head = String::from_utf8_lossy(head);
    let values: Vec<&str> = head.split('\n').collect();
    let names = [
        wire::CHUNK_LENGTH_HEADER,
        wire::CHUNK_CRC_HEADER,
        wire::CHUNK_ENCODING_HEADER,
        wire::CHUNK_THROTTLE_HEADER,
    ];
    let lookup = |name: &str| {
        names
            .iter()
            .position(|known| *known == name)
            .and_then(|at| values.get(at).copied())
    };
    let header = match ChunkHeader::parse(lookup) {
        Ok(header) => header,
        Err(error) => return expect_corrupted(error, "parsing chunk headers"),
    };
    for (name, value) in header.to_pairs() {
        assert_eq!(
            Some(value.as_str()),
            lookup(name),
            "chunk header [{name}] does not re-encode to itself"
        );
    }
    let chunk = match wire::decode_chunk(&header, ChunkBytes::from(body.to_vec()), requested) {
        Ok(chunk) => chunk,
        Err(error) => return expect_corrupted(error, "decoding a chunk"),
    };
    assert!(
        chunk.data.len() <= requested,
        "a chunk longer than requested"
    );
    assert_eq!(chunk.data.len() as u64, header.length);
    assert_eq!(chunk.source_throttle, header.source_throttle);
    for compress in [false, true] {
        let (again, encoded) = wire::encode_chunk(chunk.clone(), compress);
        assert_eq!(
            (again.length, again.crc32, again.source_throttle),
            (header.length, header.crc32, header.source_throttle),
            "a re-encoded chunk's header differs"
        );
        let decoded = wire::decode_chunk(&again, ChunkBytes::from(encoded), requested)
            .expect("a re-encoded chunk decodes");
        assert_eq!(decoded.data.to_vec(), chunk.data.to_vec());
        assert_eq!(decoded.source_throttle, header.source_throttle);
    }
}

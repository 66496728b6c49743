//! Byte encodings of an operation: the translog record payload and the `_record` stored field.
//!
//! Translog payload (the sequence number travels in the translog frame):
//! `op_type: u8 | primary_term: u64 LE | version: u64 LE | id_len: u32 LE | id | body`, where the
//! body is the `_source` of an index operation, empty for a delete, the reason of a no-op.
//!
//! `_record` stored field (term, version, type and seq_no live in fast fields):
//! `id_len: u32 LE | id | body`.
//!
//! Decoding checks every length against the bytes present and returns `Corrupted` otherwise:
//! bytes from disk are never trusted.

use crate::types::{OpType, Operation, OperationKind, PrimaryTerm, SeqNo};

/// A decoding failure, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid operation record: {0}")]
pub struct RecordError(pub String);

pub(crate) const TRANSLOG_HEADER_BYTES: usize = 1 + 8 + 8 + 4;

fn body(operation: &Operation) -> (&str, &[u8]) {
    match &operation.kind {
        OperationKind::Index { id, source } => (id.as_str(), source.as_slice()),
        OperationKind::Delete { id } => (id.as_str(), &[]),
        OperationKind::NoOp { reason } => ("", reason.as_bytes()),
    }
}

/// The length of the body `operation` carries: its source, or its no-op reason.
pub(crate) fn body_len(operation: &Operation) -> usize {
    body(operation).1.len()
}

/// Appends the translog payload of `operation` to `out`.
pub fn encode_translog_payload(operation: &Operation, out: &mut Vec<u8>) {
    let (id, body) = body(operation);
    out.reserve(TRANSLOG_HEADER_BYTES + id.len() + body.len());
    out.push(operation.op_type() as u8);
    out.extend_from_slice(&operation.primary_term.0.to_le_bytes());
    out.extend_from_slice(&operation.version.to_le_bytes());
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(body);
}

/// Decodes a translog payload back into the operation with sequence number `seq_no`.
pub fn decode_translog_payload(seq_no: u64, bytes: &[u8]) -> Result<Operation, RecordError> {
    if bytes.len() < TRANSLOG_HEADER_BYTES {
        return Err(RecordError(format!(
            "payload of {} bytes is shorter than the {TRANSLOG_HEADER_BYTES}-byte header",
            bytes.len()
        )));
    }
    let op_type = OpType::from_code(u64::from(bytes[0]))
        .ok_or_else(|| RecordError(format!("unknown operation type {}", bytes[0])))?;
    let primary_term = read_u64(&bytes[1..9]);
    let version = read_u64(&bytes[9..17]);
    let (id, body) = split_id(&bytes[17..])?;
    let seq_no = i64::try_from(seq_no)
        .map_err(|_| RecordError(format!("sequence number {seq_no} out of range")))?;
    operation_from_parts(
        SeqNo(seq_no),
        PrimaryTerm(primary_term),
        version,
        op_type,
        id,
        body,
    )
}

/// Appends the `_record` stored bytes of `operation` to `out`.
pub fn encode_stored_record(operation: &Operation, out: &mut Vec<u8>) {
    let (id, body) = body(operation);
    out.reserve(4 + id.len() + body.len());
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(body);
}

/// Splits `_record` stored bytes into the id and the body.
pub fn split_id(bytes: &[u8]) -> Result<(&str, &[u8]), RecordError> {
    if bytes.len() < 4 {
        return Err(RecordError("record shorter than its id length".to_string()));
    }
    let id_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let rest = &bytes[4..];
    if id_len > rest.len() {
        return Err(RecordError(format!(
            "id length {id_len} exceeds the {} bytes left",
            rest.len()
        )));
    }
    let id = std::str::from_utf8(&rest[..id_len])
        .map_err(|_| RecordError("document id is not UTF-8".to_string()))?;
    Ok((id, &rest[id_len..]))
}

/// Rebuilds an operation from its parts (as read from fast fields and `_record`).
pub fn operation_from_parts(
    seq_no: SeqNo,
    primary_term: PrimaryTerm,
    version: u64,
    op_type: OpType,
    id: &str,
    body: &[u8],
) -> Result<Operation, RecordError> {
    let kind = match op_type {
        OpType::Index => OperationKind::Index {
            id: non_empty_id(id)?,
            source: body.to_vec(),
        },
        OpType::Delete => OperationKind::Delete {
            id: non_empty_id(id)?,
        },
        OpType::NoOp => OperationKind::NoOp {
            reason: String::from_utf8(body.to_vec())
                .map_err(|_| RecordError("no-op reason is not UTF-8".to_string()))?,
        },
    };
    Ok(Operation {
        seq_no,
        primary_term,
        version,
        kind,
    })
}

fn non_empty_id(id: &str) -> Result<String, RecordError> {
    if id.is_empty() {
        return Err(RecordError("document operation without an id".to_string()));
    }
    Ok(id.to_string())
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(bytes);
    u64::from_le_bytes(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Operation> {
        vec![
            Operation {
                seq_no: SeqNo(7),
                primary_term: PrimaryTerm(2),
                version: 3,
                kind: OperationKind::Index {
                    id: "doc-1".into(),
                    source: br#"{"a":1}"#.to_vec(),
                },
            },
            Operation {
                seq_no: SeqNo(8),
                primary_term: PrimaryTerm(2),
                version: 4,
                kind: OperationKind::Delete { id: "doc-1".into() },
            },
            Operation {
                seq_no: SeqNo(9),
                primary_term: PrimaryTerm(3),
                version: 1,
                kind: OperationKind::NoOp {
                    reason: "gap".into(),
                },
            },
        ]
    }

    #[test]
    fn translog_payload_round_trips() {
        for operation in samples() {
            let mut bytes = Vec::new();
            encode_translog_payload(&operation, &mut bytes);
            let decoded = decode_translog_payload(operation.seq_no.0 as u64, &bytes).unwrap();
            assert_eq!(decoded, operation);
        }
    }

    #[test]
    fn truncated_payloads_are_errors_not_panics() {
        let mut bytes = Vec::new();
        encode_translog_payload(&samples()[0], &mut bytes);
        for cut in 0..bytes.len() {
            let _ = decode_translog_payload(1, &bytes[..cut]);
        }
        assert!(decode_translog_payload(1, &bytes[..5]).is_err());
        bytes[0] = 9;
        assert!(decode_translog_payload(1, &bytes).is_err());
    }
}

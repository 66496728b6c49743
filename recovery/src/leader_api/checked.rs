//! [`CheckedLeaderClient`]: the one place where every number a leader answers is range-checked
//! before a follower uses it.
//!
//! A leader is another cluster: its answers are input. A follower sizes allocations, loops and
//! arithmetic by what a leader says (shards to recover, operations to apply, terms and versions
//! it stores and later increments), so each of those values is checked here, once, for every
//! implementation of [`LeaderClient`]: the follower's remote clusters wrap every client they hand
//! out (in process or over HTTP) in this type.
//!
//! Classes of failure:
//! - a value out of its range (a shard count of 4294967295, a primary term of 2^64-1, a
//!   checkpoint below -1) is [`LeaderError::InvalidResponse`]: not retryable, so the follow that
//!   asked fails with it as its fatal exception. A leader that sends it once sends it again.
//! - a batch of operations that is not what was asked (more operations than requested, not
//!   contiguous from the requested sequence number, above the leader's own global checkpoint) is
//!   [`LeaderError::CorruptedResponse`], retryable with backoff as damaged bytes are.

use std::sync::Arc;

use tandem_engine::index::{IndexMetadata, MAX_SHARDS};
use tandem_engine::{Operation, SeqNo};

use tandem_engine::shard::verify::{MAX_CHANGED_IDS_BYTES, MAX_ENTRIES_BYTES};

use super::types::{
    FailbackSourceRequest, FailbackSourceResponse, FileChunk, IndexMetadataRequest,
    ReadFileChunkRequest, RecoverySessionInfo, ShardChangesRequest, ShardChangesResponse,
    VerifyShardRequest, VerifyShardResponse, VerifyStep,
};
use super::{ForwardingLeaderClient, LeaderClient, LeaderError, LeaderFuture};

/// The most files a leader may announce in one recovery session. Tantivy commits hold a few
/// files per segment; 100,000 files is far beyond any real commit and keeps the per-file state
/// of a recovery bounded.
pub const MAX_SESSION_FILES: usize = 100_000;

/// The highest value Elasticsearch gives a term, a version or a sequence number (a Java `long`).
const MAX_LONG: u64 = i64::MAX as u64;

/// A [`LeaderClient`] that forwards every call to `inner` and checks the answer's numbers
/// before returning it (see the module documentation).
pub struct CheckedLeaderClient {
    inner: Arc<dyn LeaderClient>,
}

impl CheckedLeaderClient {
    /// Checks the answers of `inner`.
    pub fn new(inner: Arc<dyn LeaderClient>) -> CheckedLeaderClient {
        CheckedLeaderClient { inner }
    }

    /// `inner`, checked, as the shared client followers hold.
    pub fn wrap(inner: Arc<dyn LeaderClient>) -> Arc<dyn LeaderClient> {
        Arc::new(CheckedLeaderClient::new(inner))
    }
}

impl ForwardingLeaderClient for CheckedLeaderClient {
    fn inner(&self) -> &dyn LeaderClient {
        self.inner.as_ref()
    }

    fn index_metadata(&self, request: IndexMetadataRequest) -> LeaderFuture<'_, IndexMetadata> {
        Box::pin(async move {
            let metadata = self.inner.index_metadata(request).await?;
            check_index_metadata(&metadata)?;
            Ok(metadata)
        })
    }

    fn shard_changes(
        &self,
        request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        Box::pin(async move {
            let from = request.changes.from_seq_no;
            let max_operations = request.changes.max_operation_count;
            let response = self.inner.shard_changes(request).await?;
            check_shard_changes(&response, from, max_operations)?;
            Ok(response)
        })
    }

    fn open_recovery_session(
        &self,
        request: super::types::OpenRecoverySessionRequest,
    ) -> LeaderFuture<'_, RecoverySessionInfo> {
        Box::pin(async move {
            let session = self.inner.open_recovery_session(request).await?;
            check_recovery_session(&session)?;
            Ok(session)
        })
    }

    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        Box::pin(async move {
            let wanted = request.length;
            let chunk = self.inner.read_file_chunk(request).await?;
            if chunk.data.len() > wanted {
                return Err(LeaderError::CorruptedResponse(format!(
                    "a chunk of {} bytes for a request of {wanted}",
                    chunk.data.len()
                )));
            }
            Ok(chunk)
        })
    }

    fn verify_shard(&self, request: VerifyShardRequest) -> LeaderFuture<'_, VerifyShardResponse> {
        Box::pin(async move {
            let step = request.step.clone();
            let response = self.inner.verify_shard(request).await?;
            check_verify_answer(&step, &response)?;
            Ok(response)
        })
    }

    fn failback_source(
        &self,
        request: FailbackSourceRequest,
    ) -> LeaderFuture<'_, FailbackSourceResponse> {
        Box::pin(async move {
            let asked = request.clone();
            let response = self.inner.failback_source(request).await?;
            check_failback_answer(&asked, &response)?;
            Ok(response)
        })
    }
}

/// Checks a failback answer: the kind asked for; a promotion whose numbers are in range and
/// whose recovery point is within what the shard holds; documents that are among the ids
/// asked, at or below the point, and an `answered` that makes progress.
pub fn check_failback_answer(
    request: &FailbackSourceRequest,
    response: &FailbackSourceResponse,
) -> Result<(), LeaderError> {
    let invalid = |what: String| LeaderError::InvalidResponse(format!("failback answer: {what}"));
    match (request, response) {
        (FailbackSourceRequest::Promotion { .. }, FailbackSourceResponse::Promotion(info)) => {
            if info.shards.is_empty()
                || info.shards.len() > tandem_engine::index::MAX_SHARDS as usize
            {
                return Err(invalid(format!("{} shards", info.shards.len())));
            }
            for (number, shard) in info.shards.iter().enumerate() {
                if shard.max_seq_no.0 < -1 || shard.global_checkpoint > shard.max_seq_no {
                    return Err(invalid(format!(
                        "shard [{number}]: global checkpoint [{}] and max_seq_no [{}]",
                        shard.global_checkpoint, shard.max_seq_no
                    )));
                }
                if let Some(promotion) = &shard.promotion {
                    let point = promotion.local_checkpoint;
                    let in_range = point.0 >= -1
                        && point <= promotion.max_seq_no
                        && promotion.max_seq_no <= shard.max_seq_no
                        && promotion.boundary.len()
                            <= tandem_engine::shard::PROMOTION_BOUNDARY_OPERATIONS
                        && promotion
                            .boundary
                            .iter()
                            .all(|entry| entry.seq_no <= point.0);
                    if !in_range {
                        return Err(invalid(format!(
                            "shard [{number}]: a promotion at [{point}] that does not fit its \
                             history"
                        )));
                    }
                }
            }
            Ok(())
        }
        (
            FailbackSourceRequest::Documents {
                at_or_below, ids, ..
            },
            FailbackSourceResponse::Documents {
                answered,
                documents,
            },
        ) => {
            if *answered == 0 && !ids.is_empty() || *answered > ids.len() {
                return Err(invalid(format!(
                    "[{answered}] of [{}] ids answered",
                    ids.len()
                )));
            }
            let covered: std::collections::HashSet<&str> =
                ids[..*answered].iter().map(String::as_str).collect();
            for document in documents {
                if !covered.contains(document.id.as_str())
                    || document.seq_no > *at_or_below
                    || document.seq_no.0 < 0
                {
                    return Err(invalid(format!(
                        "a document [{}] at [{}] that was not asked for at or below [{at_or_below}]",
                        document.id, document.seq_no
                    )));
                }
            }
            Ok(())
        }
        _ => Err(invalid(
            "not the kind of answer the request asks for".to_string(),
        )),
    }
}

/// Checks a verify step's answer: the kind the step asks for, a history floor and ids within
/// bounds, one digest per range asked, entries inside the range asked and sorted.
pub fn check_verify_answer(
    step: &VerifyStep,
    response: &VerifyShardResponse,
) -> Result<(), LeaderError> {
    let mismatched = || {
        LeaderError::InvalidResponse(format!(
            "the leader answered a verify step with the wrong kind of answer: {response:?}"
        ))
    };
    match (step, response) {
        (VerifyStep::Open { up_to_seq_no, .. }, VerifyShardResponse::Opened(opened)) => {
            check_checkpoint("a history floor", opened.history_from)?;
            check_checkpoint("a max_seq_no", opened.max_seq_no)?;
            if opened.max_seq_no < *up_to_seq_no {
                return Err(LeaderError::InvalidResponse(format!(
                    "the leader verified at [{up_to_seq_no}] with a max_seq_no of [{}]",
                    opened.max_seq_no
                )));
            }
            let bytes: usize = opened.undetermined_ids.iter().map(|id| id.len() + 16).sum();
            if bytes > MAX_CHANGED_IDS_BYTES {
                return Err(out_of_range(
                    "undetermined ids of",
                    format!("{bytes} bytes"),
                    &format!("[0, {MAX_CHANGED_IDS_BYTES}] bytes"),
                ));
            }
            Ok(())
        }
        (VerifyStep::Digests { ranges, .. }, VerifyShardResponse::Digests { digests }) => {
            if digests.len() != ranges.len() {
                return Err(LeaderError::InvalidResponse(format!(
                    "the leader answered [{}] digests for [{}] ranges",
                    digests.len(),
                    ranges.len()
                )));
            }
            Ok(())
        }
        (VerifyStep::Entries { range, .. }, VerifyShardResponse::Entries { entries }) => {
            let bytes: usize = entries.iter().map(|entry| entry.size_in_bytes()).sum();
            if bytes > MAX_ENTRIES_BYTES || entries.len() as u64 > 2 * range.len() {
                return Err(LeaderError::InvalidResponse(format!(
                    "the leader answered [{}] entries ({bytes} bytes) for [{}] seq_nos",
                    entries.len(),
                    range.len()
                )));
            }
            if let Some(outside) = entries
                .iter()
                .find(|entry| entry.seq_no < range.from || entry.seq_no > range.to)
            {
                return Err(LeaderError::InvalidResponse(format!(
                    "the leader answered an entry at seq_no [{}] for the range [{}, {}]",
                    outside.seq_no, range.from, range.to
                )));
            }
            if entries.windows(2).any(|pair| pair[0] > pair[1]) {
                return Err(LeaderError::InvalidResponse(
                    "the leader answered verify entries out of order".to_string(),
                ));
            }
            Ok(())
        }
        (VerifyStep::Close { .. }, VerifyShardResponse::Closed) => Ok(()),
        _ => Err(mismatched()),
    }
}

fn out_of_range(what: &str, value: impl std::fmt::Display, range: &str) -> LeaderError {
    LeaderError::InvalidResponse(format!(
        "the leader answered {what} [{value}], outside of {range}"
    ))
}

/// Checks a leader index's metadata: its shard count is a valid `index.number_of_shards` and
/// its versions fit a `long`.
pub fn check_index_metadata(metadata: &IndexMetadata) -> Result<(), LeaderError> {
    let shards = metadata.settings.number_of_shards;
    if !(1..=MAX_SHARDS).contains(&shards) {
        return Err(out_of_range(
            "index.number_of_shards",
            shards,
            &format!("[1, {MAX_SHARDS}]"),
        ));
    }
    check_metadata_versions(
        metadata.mapping_version,
        metadata.settings_version,
        metadata.aliases_version,
    )
}

fn check_metadata_versions(mapping: u64, settings: u64, aliases: u64) -> Result<(), LeaderError> {
    for (what, version) in [
        ("a mapping version", mapping),
        ("a settings version", settings),
        ("an aliases version", aliases),
    ] {
        if version > MAX_LONG {
            return Err(out_of_range(what, version, "[0, 2^63-1]"));
        }
    }
    Ok(())
}

/// Checks a checkpoint-like sequence number: -1 (no operations) up to `i64::MAX`.
fn check_checkpoint(what: &str, seq_no: SeqNo) -> Result<(), LeaderError> {
    if seq_no < SeqNo::NO_OPS_PERFORMED {
        return Err(out_of_range(what, seq_no, "[-1, 2^63-1]"));
    }
    Ok(())
}

/// Checks one operation's numbers: a sequence number >= 0, a primary term and a version in
/// `1..=i64::MAX` (the follower stores both and increments the version on later writes).
pub fn check_operation(operation: &Operation) -> Result<(), LeaderError> {
    if operation.seq_no.0 < 0 {
        return Err(out_of_range(
            "an operation's seq_no",
            operation.seq_no,
            "[0, 2^63-1]",
        ));
    }
    for (what, value) in [
        ("primary term", operation.primary_term.0),
        ("version", operation.version),
    ] {
        if !(1..=MAX_LONG).contains(&value) {
            return Err(out_of_range(
                &format!("the {what} of operation [{}]", operation.seq_no),
                value,
                "[1, 2^63-1]",
            ));
        }
    }
    Ok(())
}

/// Checks an answer to a shard changes read from `from` for at most `max_operations`:
/// checkpoints in range and consistent (`global_checkpoint <= max_seq_no`), every operation's
/// numbers in range, and the batch what was asked: at most `max_operations`, contiguous from
/// `from`, none above the global checkpoint.
pub fn check_shard_changes(
    response: &ShardChangesResponse,
    from: SeqNo,
    max_operations: usize,
) -> Result<(), LeaderError> {
    let changes = &response.changes;
    check_checkpoint("a global checkpoint", changes.global_checkpoint)?;
    check_checkpoint("a max_seq_no", changes.max_seq_no)?;
    check_checkpoint("a max_seq_no_of_updates", changes.max_seq_no_of_updates)?;
    if changes.global_checkpoint > changes.max_seq_no {
        return Err(LeaderError::InvalidResponse(format!(
            "the leader answered a global checkpoint [{}] above its max_seq_no [{}]",
            changes.global_checkpoint, changes.max_seq_no
        )));
    }
    check_metadata_versions(
        response.mapping_version,
        response.settings_version,
        response.aliases_version,
    )?;
    let operations = &changes.operations;
    if operations.len() > max_operations {
        return Err(LeaderError::CorruptedResponse(format!(
            "{} operations for a request of at most {max_operations}",
            operations.len()
        )));
    }
    for (offset, operation) in operations.iter().enumerate() {
        check_operation(operation)?;
        let expected = from.0.checked_add(offset as i64);
        if expected != Some(operation.seq_no.0) {
            return Err(LeaderError::CorruptedResponse(format!(
                "operation {} where {} was due (the changes must be contiguous from {from})",
                operation.seq_no,
                expected.map_or_else(|| "nothing".to_string(), |seq_no| seq_no.to_string())
            )));
        }
        if operation.seq_no > changes.global_checkpoint {
            return Err(LeaderError::CorruptedResponse(format!(
                "operation {} above the global checkpoint {} of the same answer",
                operation.seq_no, changes.global_checkpoint
            )));
        }
    }
    Ok(())
}

/// Checks a recovery session: checkpoints in range and consistent, at most
/// [`MAX_SESSION_FILES`] files. File lengths are checked by the recovery target against the
/// disk and its size limits before any file is created.
pub fn check_recovery_session(session: &RecoverySessionInfo) -> Result<(), LeaderError> {
    check_checkpoint("a commit's local checkpoint", session.local_checkpoint)?;
    check_checkpoint("a commit's max_seq_no", session.max_seq_no)?;
    if session.local_checkpoint > session.max_seq_no {
        return Err(LeaderError::InvalidResponse(format!(
            "the leader answered a commit local checkpoint [{}] above its max_seq_no [{}]",
            session.local_checkpoint, session.max_seq_no
        )));
    }
    if session.mapping_version > MAX_LONG {
        return Err(out_of_range(
            "a mapping version",
            session.mapping_version,
            "[0, 2^63-1]",
        ));
    }
    if session.files.len() > MAX_SESSION_FILES {
        return Err(out_of_range(
            "a commit of files",
            session.files.len(),
            &format!("[0, {MAX_SESSION_FILES}]"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tandem_engine::shard::ChangesResponse;
    use tandem_engine::{OperationKind, PrimaryTerm};

    use super::*;

    fn operation(seq_no: i64, primary_term: u64, version: u64) -> Arc<Operation> {
        Arc::new(Operation {
            seq_no: SeqNo(seq_no),
            primary_term: PrimaryTerm(primary_term),
            version,
            kind: OperationKind::Delete { id: "d".into() },
        })
    }

    fn changes(operations: Vec<Arc<Operation>>, global_checkpoint: i64) -> ShardChangesResponse {
        ShardChangesResponse {
            changes: ChangesResponse {
                operations,
                global_checkpoint: SeqNo(global_checkpoint),
                max_seq_no: SeqNo(global_checkpoint),
                max_seq_no_of_updates: SeqNo(-1),
                took: Duration::ZERO,
            },
            mapping_version: 1,
            settings_version: 1,
            aliases_version: 1,
        }
    }

    #[test]
    fn values_out_of_range_are_fatal() {
        let fatal = |response: &ShardChangesResponse| {
            let result = check_shard_changes(response, SeqNo(0), 10);
            assert!(
                matches!(&result, Err(error @ LeaderError::InvalidResponse(_)) if !error.is_retryable()),
                "{result:?}"
            );
        };
        fatal(&changes(vec![operation(0, u64::MAX, 1)], 0));
        fatal(&changes(vec![operation(0, 0, 1)], 0));
        fatal(&changes(vec![operation(0, 1, u64::MAX)], 0));
        fatal(&changes(vec![operation(0, 1, 0)], 0));
        fatal(&changes(vec![], -2));
        let mut above = changes(vec![], 5);
        above.changes.max_seq_no = SeqNo(4);
        fatal(&above);
        let mut version = changes(vec![], 5);
        version.mapping_version = u64::MAX;
        fatal(&version);
        assert!(check_shard_changes(&changes(vec![operation(0, 1, 1)], 0), SeqNo(0), 10).is_ok());
        assert!(check_shard_changes(&changes(vec![], -1), SeqNo(0), 10).is_ok());
    }

    #[test]
    fn batches_not_as_asked_are_corrupted_and_retryable() {
        let corrupted = |response: &ShardChangesResponse, max: usize| {
            let result = check_shard_changes(response, SeqNo(3), max);
            assert!(
                matches!(&result, Err(error @ LeaderError::CorruptedResponse(_)) if error.is_retryable()),
                "{result:?}"
            );
        };
        corrupted(
            &changes(vec![operation(3, 1, 1), operation(5, 1, 1)], 9),
            10,
        );
        corrupted(&changes(vec![operation(4, 1, 1)], 9), 10);
        corrupted(&changes(vec![operation(3, 1, 1), operation(4, 1, 1)], 9), 1);
        corrupted(
            &changes(vec![operation(3, 1, 1), operation(4, 1, 1)], 3),
            10,
        );
        // Contiguity past the largest seq_no cannot overflow into a pass.
        let past_the_end = changes(
            vec![operation(i64::MAX, 1, 1), operation(0, 1, 1)],
            i64::MAX,
        );
        assert!(check_shard_changes(&past_the_end, SeqNo(i64::MAX), 2).is_err());
    }
}

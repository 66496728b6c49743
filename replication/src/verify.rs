//! Verify: proof that a follower shard holds what its leader shard holds, at a sequence number
//! both have processed, while the leader keeps indexing (the digests are the engine's,
//! [`tandem_engine::shard::verify`]).
//!
//! Per shard, [`verify_shard`]:
//! 1. snapshots the follower shard at `up_to_seq_no` (before the leader's, so that every
//!    operation the follower holds above it is in the leader's snapshot too);
//! 2. opens a verify session on the leader shard (which holds a lease and its own snapshot)
//!    while it digests its own side, both at once;
//! 3. adjusts its side to what both can tell (the larger history floor; the ids changed above
//!    `up_to_seq_no` whose state at it either side cannot tell are left out) and compares the
//!    roots;
//! 4. when they differ, descends the range tree: asks the leader for the digests of the
//!    children of the differing range, compares them with its own, goes into the first that
//!    differs, and compares the entries of the last range one by one: the first differing
//!    seq_no and `_id`, with what each side has there;
//! 5. closes the session, whatever happened.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tandem_engine::index::Index;
use tandem_engine::shard::verify::{
    first_difference, ChangedIds, RangeDigest, SeqRange, VerifyEntry, VerifyView, LEAF_SEQ_NOS,
};
use tandem_engine::{EngineError, SeqNo};
use tandem_recovery::leader_api::{
    LeaderClient, SessionId, ShardId, VerifyOpened, VerifyShardRequest, VerifyShardResponse,
    VerifyStep, MAX_FOLLOWER_UNDETERMINED_BYTES,
};
use tandem_recovery::LeaderError;

use crate::error::CcrError;

/// The verify of one shard.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShardVerification {
    /// The shard number.
    pub shard: u32,
    /// The seq_no both sides were compared at.
    pub up_to_seq_no: i64,
    /// Live documents compared (the follower's; equal to the leader's when `equal`).
    pub live_docs: u64,
    /// Operations of the history compared.
    pub history_ops: u64,
    /// First seq_no of the history compared (the larger retention floor of both sides).
    pub history_from_seq_no: i64,
    /// Ids changed above `up_to_seq_no` whose state at it a side could no longer tell (the
    /// operation that set it was merged away): left out of the live documents compared.
    pub live_docs_left_out: u64,
    /// True when both sides hold the same.
    pub equal: bool,
    /// The leader's counts, when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<SideCounts>,
    /// The first difference, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<VerifyDifference>,
    /// Round trips of the descent to the difference (0 when equal).
    pub round_trips: u32,
    /// Milliseconds the leader took to build its side.
    pub leader_took_millis: u64,
    /// Milliseconds the follower took to build its side.
    pub follower_took_millis: u64,
}

/// One side's counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SideCounts {
    /// Live documents.
    pub live_docs: u64,
    /// History operations.
    pub history_ops: u64,
}

/// The first seq_no where the sides differ, and what each has there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyDifference {
    /// The seq_no.
    pub seq_no: i64,
    /// The document id (from whichever side has an entry there).
    #[serde(rename = "_id")]
    pub id: String,
    /// What the leader has there (`None`: nothing).
    pub leader: Option<VerifyEntry>,
    /// What the follower has there (`None`: nothing).
    pub follower: Option<VerifyEntry>,
}

/// The verify of a follower index.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IndexVerification {
    /// Per shard.
    pub shards: Vec<ShardVerification>,
    /// True when every shard is equal.
    pub equal: bool,
}

/// The follower shard to verify and the leader shard it follows.
pub struct VerifyTarget {
    /// The follower index.
    pub follower: Arc<Index>,
    /// The shard number (the same on both sides).
    pub shard: u32,
    /// The leader shard.
    pub leader_shard: ShardId,
    /// The leader shard's history uuid the follower follows.
    pub leader_history_uuid: String,
}

fn engine_error(error: EngineError) -> CcrError {
    CcrError::Engine(error)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CcrError> + Send + 'static,
) -> Result<T, CcrError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        CcrError::Leader(LeaderError::Unavailable(format!(
            "verify task failed: {error}"
        )))
    })?
}

/// Verifies one follower shard against its leader shard at `up_to` (see the module
/// documentation; `None`: at the local checkpoint of the follower's snapshot commit).
pub async fn verify_shard(
    leader: Arc<dyn LeaderClient>,
    target: VerifyTarget,
    up_to: Option<SeqNo>,
) -> Result<ShardVerification, CcrError> {
    let follower = target.follower.clone();
    let shard = target.shard as usize;
    let snapshot = blocking(move || {
        let engine = follower.shards().get(shard).ok_or_else(|| {
            CcrError::InvalidArgument(format!("the follower has no shard [{shard}]"))
        })?;
        let snapshot = engine.verify_snapshot(up_to).map_err(engine_error)?;
        let changes = snapshot.changes_above().map_err(engine_error)?;
        Ok((snapshot, changes))
    })
    .await?;
    let (snapshot, changes) = snapshot;
    let up_to = snapshot.up_to();
    let follower_floor = snapshot.retained_from();
    let undetermined: Vec<String> = changes.undetermined.iter().map(str::to_string).collect();
    let bytes: usize = undetermined.iter().map(|id| id.len() + 16).sum();
    if bytes > MAX_FOLLOWER_UNDETERMINED_BYTES {
        return Err(CcrError::InvalidArgument(format!(
            "shard [{}] of the follower changed [{}] ids above up_to_seq_no [{up_to}] whose \
             state at it it can no longer tell, more than a verify carries \
             ([{MAX_FOLLOWER_UNDETERMINED_BYTES}] bytes): verify at a higher up_to_seq_no",
            target.shard,
            undetermined.len()
        )));
    }
    let open = VerifyShardRequest {
        shard: target.leader_shard.clone(),
        step: VerifyStep::Open {
            expected_history_uuid: target.leader_history_uuid.clone(),
            up_to_seq_no: up_to,
            history_from: follower_floor,
            undetermined_ids: undetermined,
        },
    };
    let started = Instant::now();
    let building = blocking(move || {
        let view = VerifyView::build(snapshot, changes, ChangedIds::default(), follower_floor)
            .map_err(engine_error)?;
        Ok((view, started.elapsed()))
    });
    let (opened, built) = tokio::join!(leader.verify_shard(open), building);
    let opened = match opened? {
        VerifyShardResponse::Opened(opened) => opened,
        other => return Err(unexpected(&other)),
    };
    let session = opened.session.clone();
    let outcome = compare(leader.as_ref(), &target, up_to, opened, built).await;
    let close = VerifyShardRequest {
        shard: target.leader_shard.clone(),
        step: VerifyStep::Close {
            session: session.clone(),
        },
    };
    if let Err(error) = leader.verify_shard(close).await {
        // The leader closes it after its activity timeout anyway.
        tracing::warn!(shard = %target.leader_shard, %session, %error, "cannot close a verify session");
    }
    outcome
}

async fn compare(
    leader: &dyn LeaderClient,
    target: &VerifyTarget,
    up_to: SeqNo,
    opened: VerifyOpened,
    built: Result<(VerifyView, std::time::Duration), CcrError>,
) -> Result<ShardVerification, CcrError> {
    let (view, follower_took) = built?;
    let leader_undetermined = opened.undetermined_ids;
    let history_from = opened.history_from;
    let view = blocking(move || {
        let mut view = view;
        view.raise_history_from(history_from)
            .map_err(engine_error)?;
        view.exclude_ids(leader_undetermined.iter().map(String::as_str))
            .map_err(engine_error)?;
        Ok(Arc::new(view))
    })
    .await?;
    let root = view.root();
    let mut verification = ShardVerification {
        shard: target.shard,
        up_to_seq_no: up_to.0,
        live_docs: root.live_docs,
        history_ops: root.history_ops,
        history_from_seq_no: view.history_from().0,
        live_docs_left_out: view.excluded().len() as u64,
        equal: root == opened.root,
        leader: None,
        first_difference: None,
        round_trips: 0,
        leader_took_millis: opened.took_millis,
        follower_took_millis: follower_took.as_millis() as u64,
    };
    if verification.equal {
        return Ok(verification);
    }
    verification.leader = Some(SideCounts {
        live_docs: opened.root.live_docs,
        history_ops: opened.root.history_ops,
    });
    let Some(mut range) = SeqRange::root(up_to) else {
        return Ok(verification);
    };
    let session = opened.session;
    loop {
        verification.round_trips += 1;
        if range.len() <= LEAF_SEQ_NOS {
            let theirs = match step(leader, target, Entries(&session, range)).await? {
                VerifyShardResponse::Entries { entries } => entries,
                other => return Err(unexpected(&other)),
            };
            let local = view.clone();
            let ours = blocking(move || local.entries(range).map_err(engine_error)).await?;
            verification.first_difference =
                first_difference(&theirs, &ours).map(|(leader, follower)| {
                    let at = leader.as_ref().or(follower.as_ref());
                    VerifyDifference {
                        seq_no: at.map_or(range.from, |entry| entry.seq_no),
                        id: at.map(|entry| entry.id.clone()).unwrap_or_default(),
                        leader,
                        follower,
                    }
                });
            return Ok(verification);
        }
        let children = range.children();
        let theirs = match step(leader, target, Digests(&session, children.clone())).await? {
            VerifyShardResponse::Digests { digests } => digests,
            other => return Err(unexpected(&other)),
        };
        let local = view.clone();
        let asked = children.clone();
        let ours: Vec<RangeDigest> = blocking(move || {
            asked
                .iter()
                .map(|child| local.digest(*child).map_err(engine_error))
                .collect()
        })
        .await?;
        let differing = children
            .iter()
            .zip(theirs.iter().zip(ours.iter()))
            .find(|(_, (theirs, ours))| theirs != ours)
            .map(|(child, _)| *child);
        match differing {
            Some(child) => range = child,
            None => {
                return Err(CcrError::Leader(LeaderError::InvalidResponse(format!(
                    "the leader's digests of the parts of [{}, {}] do not add up to its digest \
                     of the whole",
                    range.from, range.to
                ))))
            }
        }
    }
}

/// The two steps of a descent.
enum Step<'a> {
    Digests(&'a SessionId, Vec<SeqRange>),
    Entries(&'a SessionId, SeqRange),
}
use Step::{Digests, Entries};

async fn step(
    leader: &dyn LeaderClient,
    target: &VerifyTarget,
    asked: Step<'_>,
) -> Result<VerifyShardResponse, CcrError> {
    let step = match asked {
        Digests(session, ranges) => VerifyStep::Digests {
            session: session.clone(),
            ranges,
        },
        Entries(session, range) => VerifyStep::Entries {
            session: session.clone(),
            range,
        },
    };
    Ok(leader
        .verify_shard(VerifyShardRequest {
            shard: target.leader_shard.clone(),
            step,
        })
        .await?)
}

fn unexpected(answer: &VerifyShardResponse) -> CcrError {
    CcrError::Leader(LeaderError::InvalidResponse(format!(
        "unexpected verify answer: {answer:?}"
    )))
}

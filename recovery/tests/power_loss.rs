//! Remote recovery under power loss (DESIGN.md invariant 8), on the simulated disk.
//!
//! The follower side of a recovery runs on a recording [`SimStorage`]: first the copy alone
//! (`copy_commit`: every file in place, verified, its directory synced), then the whole recovery
//! (the copy again, which reuses every file, and the bootstrap of the follower shard). Then the
//! power is cut after each of its storage changes (with only what was synced, and every fourth
//! cut also with a torn subset of the rest), and on what survived:
//!
//! - once the recovery returned, the follower shard opens and holds the leader's documents and
//!   history up to the commit's checkpoint;
//! - once the copy returned, a new recovery resumes without copying any segment file again
//!   (only the commit point, which the bootstrap rewrites, may be), and yields the same shard;
//! - before that, a new recovery completes and yields the same shard.
//!
//! `TANDEM_POWERLOSS_DISABLE=<SyncSite>` switches one sync site off: the test must then fail
//! (`recovery_sync_sites_are_each_needed` does so for the recovery's own sites).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use tandem_engine::shard::{ShardConfig, MANAGED_FILE, META_FILE};
use tandem_engine::storage::{CutMode, SimStorage, SyncSite};
use tandem_engine::{SeqNo, ShardEngine};
use tandem_recovery::{RecoveryRequest, RecoveryTarget};

const FOLLOWER_SHARD: &str = "/follower/0";

struct Acks {
    /// Storage changes made when the copy returned.
    copied: u64,
    /// ... and when the whole recovery returned.
    recovered: u64,
    /// The leader's history up to the recovered commit's checkpoint.
    history: Vec<HistoryEntry>,
    checkpoint: SeqNo,
    doc_count: u64,
    /// Bytes of the commit's `meta.json` and `.managed.json`, which the bootstrap rewrites
    /// (its own commit): a recovery resumed after it copies them again, and nothing else.
    commit_point_bytes: u64,
}

fn config_on(disk: &SimStorage) -> ShardConfig {
    ShardConfig {
        storage: disk.as_storage(),
        ..follower_config()
    }
}

fn request_on(leader: &tandem_engine::Index, disk: &SimStorage) -> RecoveryRequest {
    RecoveryRequest {
        shard_config: config_on(disk),
        ..request(leader, Path::new(FOLLOWER_SHARD))
    }
}

fn target_on(
    leader: &Arc<tandem_engine::Index>,
    disk: &SimStorage,
) -> Result<RecoveryTarget, String> {
    Ok(
        RecoveryTarget::new(Arc::new(client_for(leader)), test_settings())
            .map_err(|error| error.to_string())?
            .on_storage(disk.as_storage()),
    )
}

/// Checks the follower shard on `disk` (the disk a cut after `cut` changes left).
fn check(
    runtime: &tokio::runtime::Runtime,
    leader: &Arc<tandem_engine::Index>,
    disk: &SimStorage,
    acks: &Acks,
    cut: u64,
) -> Result<(), String> {
    let compare = |engine: &ShardEngine| -> Result<(), String> {
        if engine.doc_count() != acks.doc_count {
            return Err(format!(
                "the follower holds {} documents, the leader {}",
                engine.doc_count(),
                acks.doc_count
            ));
        }
        // A damaged shard may fail the read: that is a failure to report, not a panic.
        let history = engine
            .changes(SeqNo(0), acks.checkpoint, usize::MAX, usize::MAX)
            .map_err(|error| format!("the follower's history does not read: {error}"))?;
        let history: Vec<HistoryEntry> = history
            .iter()
            .map(|op| {
                (
                    op.seq_no.0,
                    op.primary_term.0,
                    op.version,
                    op.op_type().name().to_string(),
                    op.id().map(str::to_string),
                    op.source().map(<[u8]>::to_vec),
                )
            })
            .collect();
        if history != acks.history {
            return Err("the follower's history differs from the leader's".into());
        }
        Ok(())
    };
    if cut >= acks.recovered {
        let engine = ShardEngine::open(
            Path::new(FOLLOWER_SHARD),
            follower_mapper(&leader.metadata()),
            ShardConfig {
                follower: true,
                ..config_on(disk)
            },
        )
        .map_err(|error| format!("the recovered follower shard does not open: {error}"))?;
        return compare(&engine);
    }
    let target = target_on(leader, disk)?;
    let recovered = runtime
        .block_on(target.recover(request_on(leader, disk)))
        .map_err(|error| format!("the resumed recovery failed: {error}"))?;
    let progress = target.progress().snapshot();
    let copied_again = progress.bytes_total - progress.bytes_reused;
    if cut >= acks.copied && copied_again > acks.commit_point_bytes {
        return Err(format!(
            "the resumed recovery copied {copied_again} of {} bytes again after a complete copy \
             (only the commit point's {} may differ)",
            progress.bytes_total, acks.commit_point_bytes
        ));
    }
    compare(&recovered.engine)
}

fn run(disabled: Option<SyncSite>) -> Result<u64, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let leader = create_leader(dir.path());
    write_history(&leader, 4, 60, 80, "power");
    settle(leader_shard(&leader));

    let fresh = || {
        let disk = SimStorage::new();
        if let Some(site) = disabled {
            disk.disable_sync(site);
        }
        disk
    };
    let recorded = fresh();
    recorded.record_journal();
    let target = target_on(&leader, &recorded)?;
    let index_dir = Path::new(FOLLOWER_SHARD).join("index");
    runtime
        .block_on(target.copy_commit(&shard_id(), &index_dir))
        .map_err(|error| format!("the copy failed: {error}"))?;
    let copied = recorded.stats().mutations;
    let recovered = runtime
        .block_on(target_on(&leader, &recorded)?.recover(request_on(&leader, &recorded)))
        .map_err(|error| format!("the recovery failed: {error}"))?;
    let acks = Acks {
        copied,
        recovered: recorded.stats().mutations,
        checkpoint: recovered.commit.session.local_checkpoint,
        history: history_up_to(&recovered.engine, recovered.commit.session.local_checkpoint),
        doc_count: recovered.engine.doc_count(),
        commit_point_bytes: recovered
            .commit
            .session
            .files
            .iter()
            .filter(|file| file.name == META_FILE || file.name == MANAGED_FILE)
            .map(|file| file.length)
            .sum(),
    };
    drop(recovered);
    let journal = recorded.take_journal();
    let total = journal.len();
    const MAX_CUTS: usize = 160;
    let cuts: Vec<usize> = if total < MAX_CUTS {
        (0..=total).collect()
    } else {
        (0..MAX_CUTS).map(|k| k * total / (MAX_CUTS - 1)).collect()
    };
    let replayed = fresh();
    let mut at = 0;
    for (k, &cut) in cuts.iter().enumerate() {
        replayed.replay(&journal, at..cut);
        at = cut;
        let modes: &[CutMode] = if k % 4 == 0 {
            &[CutMode::Durable, CutMode::Torn]
        } else {
            &[CutMode::Durable]
        };
        for &mode in modes {
            let disk = replayed.snapshot_after_cut(mode, cut as u64);
            check(&runtime, &leader, &disk, &acks, cut as u64).map_err(|failure| {
                format!(
                    "cut after {cut} of {total} storage changes (copy acknowledged at {}, \
                     recovery at {}), {mode:?}: {failure}",
                    acks.copied, acks.recovered
                )
            })?;
        }
    }
    Ok(cuts.len() as u64)
}

#[test]
fn a_recovery_survives_a_power_cut_at_any_storage_call() {
    let disabled = std::env::var("TANDEM_POWERLOSS_DISABLE").ok().map(|name| {
        SyncSite::from_name(&name).unwrap_or_else(|| panic!("no sync site named {name}"))
    });
    let checked = run(disabled).unwrap_or_else(|failure| panic!("{failure}"));
    println!("recovery power loss: {checked} cut points checked");
    assert!(
        disabled.is_none(),
        "with {disabled:?} switched off, nothing was lost"
    );
}

#[test]
fn recovery_sync_sites_are_each_needed() {
    for site in [SyncSite::RecoveryFile, SyncSite::RecoveryDir] {
        match run(Some(site)) {
            Ok(checked) => panic!("with {site:?} switched off, {checked} cut points lost nothing"),
            Err(failure) => println!("{site:?}: caught: {failure}"),
        }
    }
}

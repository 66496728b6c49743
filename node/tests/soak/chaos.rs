//! The soak's trouble maker: every few seconds a network fault between the follower and its
//! leader (each of the proxy's kinds first, in a seeded order, then at random), held for a
//! random 1-8 s and healed; now and then, instead, the follower process is killed (SIGKILL)
//! and started again on its address, where it must resume following without a new copy of
//! the leader's files.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use tandem_testkit::fault_proxy::Fault;

use crate::Cluster;

/// Pause between two faults.
const GAP: std::ops::RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(4);
/// How long a fault is held.
const HOLD: std::ops::RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(8);
/// How long a killed follower stays down.
const DOWN: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(200)..=Duration::from_secs(3);
/// Chance that a round kills and restarts the follower instead of faulting the network.
const RESTART_PROBABILITY: f64 = 0.12;

/// What the trouble maker did.
#[derive(Debug, Default)]
pub struct ChaosReport {
    /// Faults applied, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Total time faults were held.
    pub faulted: Duration,
    /// Follower kills and restarts.
    pub restarts: u64,
    /// Shards the follower copied from the leader again after a restart (must stay empty).
    pub copies_after_restart: Vec<String>,
}

/// Makes trouble until `until`; returns with the network healed and the follower running.
pub async fn run(cluster: &mut Cluster, rng: &mut StdRng, until: Instant) -> ChaosReport {
    let mut report = ChaosReport::default();
    let mut first = first_rounds(rng);
    loop {
        let gap = rng.random_range(GAP);
        if Instant::now() + gap >= until {
            break;
        }
        tokio::time::sleep(gap).await;
        let round = first.pop().unwrap_or_else(|| {
            if rng.random_bool(RESTART_PROBABILITY) {
                Round::Restart
            } else {
                Round::Fault(Fault::random(rng))
            }
        });
        let fault = match round {
            Round::Restart => {
                restart_follower(cluster, rng, &mut report).await;
                continue;
            }
            Round::Fault(fault) => fault,
        };
        let hold = rng.random_range(HOLD);
        println!(
            "soak: {:>6.1} s {fault:?} for {hold:.1?}",
            cluster.started.elapsed().as_secs_f64()
        );
        cluster.proxy.set(fault);
        tokio::time::sleep(hold).await;
        cluster.proxy.heal();
        *report.faults.entry(fault.kind()).or_default() += 1;
        report.faulted += hold;
    }
    cluster.proxy.heal();
    report
}

/// One round of trouble.
#[derive(Clone, Copy, Debug)]
enum Round {
    Fault(Fault),
    Restart,
}

/// The first rounds, to be popped from the end: every kind of fault and one restart, in a
/// seeded order, so that even a short run sees each of them.
fn first_rounds(rng: &mut StdRng) -> Vec<Round> {
    let mut faults: Vec<Fault> = Vec::new();
    for _ in 0..64 {
        let fault = Fault::random(rng);
        if !faults.iter().any(|known| known.kind() == fault.kind()) {
            faults.push(fault);
        }
    }
    assert_eq!(faults.len(), Fault::KINDS.len(), "64 draws missed a kind");
    let mut rounds: Vec<Round> = faults.into_iter().map(Round::Fault).collect();
    rounds.push(Round::Restart);
    rounds.shuffle(rng);
    rounds
}

/// Kills the follower, waits, starts it again on its address; before the kill, checks that the
/// process being killed (if it was itself a restart) made no new copy of the leader's files.
async fn restart_follower(cluster: &mut Cluster, rng: &mut StdRng, report: &mut ChaosReport) {
    if report.restarts > 0 {
        report
            .copies_after_restart
            .extend(cluster.follower_recoveries().await);
    }
    let down = rng.random_range(DOWN);
    println!(
        "soak: {:>6.1} s kill -9 the follower, down for {down:.1?}",
        cluster.started.elapsed().as_secs_f64()
    );
    cluster.kill_follower();
    tokio::time::sleep(down).await;
    cluster.start_follower();
    report.restarts += 1;
}

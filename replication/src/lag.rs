//! [`LagClock`]: how far a follower shard trails its leader shard, in operations and in
//! seconds, from what the follower has seen of the leader.
//!
//! Each time the follower learns the leader's max_seq_no (a read's answer, or a probe while
//! paused), the clock notes when it first saw it. The lag in seconds is the age of the oldest
//! such sighting the follower has not applied yet: how long the oldest operation the follower
//! lacks has been known to exist. It is measured on the follower's clock (no clock is compared
//! across clusters), and counts from when the follower could first see the operation, which a
//! long poll makes within a round trip of its arrival on the leader. Caught up, it is 0.
//!
//! Bounded: at most [`MAX_LAG_SAMPLES`] sightings are kept; past that, new ones are dropped
//! (the oldest ones are what the lag is measured from), until applied operations free room.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Most sightings one clock keeps.
pub const MAX_LAG_SAMPLES: usize = 4096;

/// A follower shard's lag.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lag {
    /// Operations the leader has (as last seen) above the follower's local checkpoint.
    pub operations: u64,
    /// Age of the oldest of them.
    pub seconds: f64,
}

/// The sightings of one follower shard (see the module documentation).
#[derive(Debug, Default)]
pub struct LagClock {
    state: Mutex<Sightings>,
}

#[derive(Debug)]
struct Sightings {
    /// (when first seen, leader max_seq_no), both increasing.
    samples: VecDeque<(Instant, i64)>,
    /// The highest leader max_seq_no seen.
    latest: i64,
}

impl Default for Sightings {
    fn default() -> Self {
        Sightings {
            samples: VecDeque::new(),
            latest: -1,
        }
    }
}

impl LagClock {
    /// Notes that the leader's max_seq_no was `leader_max_seq_no` at `at`.
    pub fn observe(&self, leader_max_seq_no: i64, at: Instant) {
        let mut state = self.state.lock();
        if leader_max_seq_no <= state.latest {
            return;
        }
        state.latest = leader_max_seq_no;
        if state.samples.len() < MAX_LAG_SAMPLES {
            state.samples.push_back((at, leader_max_seq_no));
        }
    }

    /// The highest leader max_seq_no seen (-1 when none was).
    pub fn latest(&self) -> i64 {
        self.state.lock().latest
    }

    /// The lag of a follower whose local checkpoint is `follower_checkpoint`, at `now`.
    pub fn lag(&self, follower_checkpoint: i64, now: Instant) -> Lag {
        let mut state = self.state.lock();
        while state
            .samples
            .front()
            .is_some_and(|(_, seen)| *seen <= follower_checkpoint)
        {
            state.samples.pop_front();
        }
        let operations = (state.latest - follower_checkpoint).max(0) as u64;
        let seconds = match state.samples.front() {
            Some((seen_at, _)) if operations > 0 => now
                .saturating_duration_since(*seen_at)
                .max(Duration::ZERO)
                .as_secs_f64(),
            _ => 0.0,
        };
        Lag {
            operations,
            seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_the_age_of_the_oldest_unapplied_sighting() {
        let clock = LagClock::default();
        let start = Instant::now();
        assert_eq!(clock.lag(-1, start), Lag::default());
        clock.observe(9, start);
        clock.observe(19, start + Duration::from_secs(2));
        clock.observe(19, start + Duration::from_secs(3));
        let at = start + Duration::from_secs(5);
        assert_eq!(
            clock.lag(4, at),
            Lag {
                operations: 15,
                seconds: 5.0
            }
        );
        assert_eq!(
            clock.lag(9, at),
            Lag {
                operations: 10,
                seconds: 3.0
            }
        );
        assert_eq!(clock.lag(19, at), Lag::default());
        // Caught up, then the leader moves on.
        clock.observe(25, at);
        assert_eq!(
            clock.lag(19, at + Duration::from_secs(1)),
            Lag {
                operations: 6,
                seconds: 1.0
            }
        );
    }

    #[test]
    fn sightings_are_bounded() {
        let clock = LagClock::default();
        let start = Instant::now();
        for seq_no in 0..(MAX_LAG_SAMPLES as i64 * 2) {
            clock.observe(seq_no, start + Duration::from_millis(seq_no as u64));
        }
        assert_eq!(clock.state.lock().samples.len(), MAX_LAG_SAMPLES);
        let lag = clock.lag(-1, start + Duration::from_secs(100));
        assert_eq!(lag.operations, MAX_LAG_SAMPLES as u64 * 2);
        assert_eq!(lag.seconds, 100.0, "measured from the oldest sighting");
    }
}

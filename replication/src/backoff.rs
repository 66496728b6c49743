//! The retry delay of recoverable errors: randomized exponential backoff in 50 ms steps, capped
//! by the follow parameter `max_retry_delay`.
//!
//! `delay(retry) = min(50ms * k, max_retry_delay)` with `k` uniform in `0..=2^(min(retry, 24) - 1)`
//! (`retry` counts from 1). Elasticsearch caps the delay the same way; DESIGN.md §4 names
//! `read_poll_timeout` as the cap, but `max_retry_delay` exists for exactly this and is what a
//! user tuning it expects to take effect.

use std::time::Duration;

use rand::Rng;

/// One backoff step.
pub const BACKOFF_STEP: Duration = Duration::from_millis(50);
/// Retries beyond this no longer grow the random range (keeps `2^n` in range).
const MAX_EXPONENT: u32 = 24;

/// The delay before retry number `retry` (1 for the first retry).
pub fn retry_delay(retry: u32, max_retry_delay: Duration, rng: &mut impl Rng) -> Duration {
    let exponent = retry.clamp(1, MAX_EXPONENT) - 1;
    let steps: u64 = rng.random_range(0..=(1u64 << exponent));
    // At most 2^23 steps of 50 ms: no overflow.
    let delay = BACKOFF_STEP * u32::try_from(steps).unwrap_or(u32::MAX);
    delay.min(max_retry_delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn delays_grow_in_50ms_steps_and_never_pass_the_cap() {
        let mut rng = StdRng::seed_from_u64(7);
        let cap = Duration::from_millis(500);
        for retry in 0..200 {
            let delay = retry_delay(retry, cap, &mut rng);
            assert!(delay <= cap, "retry {retry}: {delay:?}");
            assert_eq!(delay.as_millis() % 50, 0, "retry {retry}: {delay:?}");
        }
        // The first retry waits 0 or 50 ms; both happen.
        let first: std::collections::HashSet<_> = (0..100)
            .map(|_| retry_delay(1, cap, &mut rng).as_millis())
            .collect();
        assert_eq!(first, [0, 50].into_iter().collect());
        // Later retries reach the cap (the range is 0..=2^9 steps by retry 10).
        assert!((0..100).any(|_| retry_delay(10, cap, &mut rng) == cap));
        // Huge retry counts do not overflow.
        assert!(
            retry_delay(u32::MAX, Duration::from_secs(300), &mut rng) <= Duration::from_secs(300)
        );
    }
}

//! A token-bucket rate limiter for recovery traffic, with throttle-time accounting.
//!
//! Each caller reserves the time its bytes take at the configured rate, back to back after the
//! reservations before it, and sleeps until its reservation ends: the bucket holds no burst
//! credit (an idle limiter does not let the next bytes through faster than the rate), so the
//! achieved rate over a transfer is the configured rate, whatever the number of concurrent
//! callers. Time is tokio's, so tests can pause it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Limits bytes per second across every task that shares it.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    /// When the last reservation ends.
    next_free: Mutex<Option<Instant>>,
    throttled_nanos: AtomicU64,
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec`; 0 means unlimited.
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_sec,
            next_free: Mutex::new(None),
            throttled_nanos: AtomicU64::new(0),
        }
    }

    /// The configured rate; 0 is unlimited.
    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec
    }

    /// Waits until `bytes` may be sent; returns how long this call waited.
    pub async fn acquire(&self, bytes: u64) -> Duration {
        if self.bytes_per_sec == 0 || bytes == 0 {
            return Duration::ZERO;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let now = Instant::now();
        let until = {
            let mut next_free = self.next_free.lock();
            let start = next_free.map_or(now, |free| free.max(now));
            let end = start + cost;
            *next_free = Some(end);
            end
        };
        tokio::time::sleep_until(until).await;
        let waited = until.saturating_duration_since(now);
        self.throttled_nanos
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        waited
    }

    /// Total time callers spent waiting.
    pub fn throttle_time(&self) -> Duration {
        Duration::from_nanos(self.throttled_nanos.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn throttle_accounting_matches_the_rate() {
        let limiter = RateLimiter::new(1_000_000);
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire(100_000).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(limiter.throttle_time(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_rate() {
        let limiter = std::sync::Arc::new(RateLimiter::new(1_000_000));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..4 {
                    limiter.acquire(50_000).await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // 20 x 50 kB at 1 MB/s: one second, not a fifth of it.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0);
        let start = Instant::now();
        assert_eq!(limiter.acquire(1 << 30).await, Duration::ZERO);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(limiter.throttle_time(), Duration::ZERO);
    }

    /// Real time on a noisy machine: 10 MB at 20 MB/s takes between 0.45 and 0.6 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limiting_accuracy_in_real_time() {
        let limiter = std::sync::Arc::new(RateLimiter::new(20_000_000));
        let start = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..2 {
                    limiter.acquire(1_000_000).await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (0.45..0.6).contains(&elapsed),
            "10 MB at 20 MB/s took {elapsed}s"
        );
    }
}

//! Per-plugin counters and latency histograms, for `mailgate plugin list`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Latency buckets: bucket `i` counts calls under `2^i` µs (the last one
/// everything slower).
const BUCKETS: usize = 28;

/// Counters of one plugin, kept across reloads of the same file name.
#[derive(Debug, Default)]
pub struct PluginStats {
    calls: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    http_requests: AtomicU64,
    http_errors: AtomicU64,
    histogram: [AtomicU64; BUCKETS],
}

impl PluginStats {
    /// Records one call.
    pub(crate) fn record(&self, elapsed: Duration, error: bool, timeout: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let us = elapsed.as_micros().max(1) as u64;
        let bucket = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.histogram[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Records one request of capability `http` (`ok`: a response came).
    pub(crate) fn record_http(&self, ok: bool) {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.http_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A snapshot.
    pub fn snapshot(&self) -> StatsSnapshot {
        let counts: Vec<u64> = self
            .histogram
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let percentile = |p: f64| -> u64 {
            if total == 0 {
                return 0;
            }
            let rank = ((total as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return 1u64 << i;
                }
            }
            1u64 << (BUCKETS - 1)
        };
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            http_requests: self.http_requests.load(Ordering::Relaxed),
            http_errors: self.http_errors.load(Ordering::Relaxed),
            p50_us: percentile(0.50),
            p90_us: percentile(0.90),
            p99_us: percentile(0.99),
        }
    }
}

/// Counters at one moment. Percentiles are upper bounds (powers of two).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Hook calls, load-time calls included.
    pub calls: u64,
    /// Failed calls (traps, time-outs, limit hits, invalid answers).
    pub errors: u64,
    /// Of which time-outs.
    pub timeouts: u64,
    /// Requests made through capability `http`.
    #[serde(default)]
    pub http_requests: u64,
    /// Of which gave no response (refused, failed, timed out).
    #[serde(default)]
    pub http_errors: u64,
    /// Median latency bound, µs (instantiation included).
    pub p50_us: u64,
    /// 90th percentile bound, µs.
    pub p90_us: u64,
    /// 99th percentile bound, µs.
    pub p99_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds() {
        let s = PluginStats::default();
        for _ in 0..98 {
            s.record(Duration::from_micros(20), false, false);
        }
        s.record(Duration::from_millis(100), true, true);
        s.record(Duration::from_millis(100), true, true);
        let snap = s.snapshot();
        assert_eq!((snap.calls, snap.errors, snap.timeouts), (100, 2, 2));
        assert_eq!(snap.p50_us, 32);
        assert_eq!(snap.p90_us, 32);
        assert_eq!(snap.p99_us, 131_072);
    }
}

//! Counters of what the daemon did, and rate-limited warnings for bad input.
//!
//! Counters are plain atomics shared by `Arc`; the shutdown summary and (later)
//! the metrics endpoint read them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a source received and refused.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Datagrams or messages read.
    pub received: Counter,
    /// Samples accepted into batches.
    pub samples: Counter,
    /// Undecodable input (bad msgpack/JSON, not a map, wrong schema).
    pub malformed: Counter,
    /// Samples whose signature did not verify.
    pub bad_signature: Counter,
    /// Read but dropped before decoding because every decoder was saturated.
    pub dropped: Counter,
    /// Dicts in a message that are not valid samples (AMQP; dropped, the rest go on).
    pub invalid_samples: Counter,
    /// Messages acked after every dispatcher took their samples (AMQP).
    pub acked: Counter,
    /// Messages requeued after a dispatcher failed them (AMQP).
    pub requeued: Counter,
    /// Messages rejected without requeue after dispatch failures (AMQP).
    pub dead_lettered: Counter,
    /// Deliveries the broker flagged as redelivered (AMQP duplicates come from these).
    pub redelivered: Counter,
    /// Connections lost or refused (AMQP).
    pub reconnects: Counter,
    /// Connected to the broker now (AMQP).
    pub connected: std::sync::atomic::AtomicBool,
    /// Deliveries held, not yet acked or rejected (AMQP).
    pub unacked: std::sync::atomic::AtomicI64,
    /// Inode of the UDP socket, to find its kernel drop counter (0: none).
    pub udp_inode: std::sync::atomic::AtomicU64,
}

/// What happened to the batches of one dispatcher.
#[derive(Debug)]
pub struct DispatcherStats {
    pub batches_ok: Counter,
    pub batches_failed: Counter,
    pub samples_ok: Counter,
    pub samples_failed: Counter,
    /// Batches not queued because the dispatcher's queue was full.
    pub batches_dropped: Counter,
    pub retries: Counter,
    pub timeouts: Counter,
    pub traps: Counter,
    pub memory_refusals: Counter,
    /// The last reason a batch failed, for `collector status`.
    pub last_error: Mutex<Option<String>>,
    /// Batches waiting in its queue.
    pub queued: std::sync::atomic::AtomicI64,
    /// Seconds per batch, retries included.
    pub latency: prometheus_client::metrics::histogram::Histogram,
}

impl Default for DispatcherStats {
    fn default() -> Self {
        DispatcherStats {
            batches_ok: Counter::default(),
            batches_failed: Counter::default(),
            samples_ok: Counter::default(),
            samples_failed: Counter::default(),
            batches_dropped: Counter::default(),
            retries: Counter::default(),
            timeouts: Counter::default(),
            traps: Counter::default(),
            memory_refusals: Counter::default(),
            last_error: Mutex::default(),
            queued: std::sync::atomic::AtomicI64::new(0),
            // 100 µs to ~6.5 s.
            latency: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 17),
            ),
        }
    }
}

/// Config reload counters.
#[derive(Debug, Default)]
pub struct ConfigReloadStats {
    pub applied: Counter,
    pub refused: Counter,
}

/// Lets through at most `burst` events per `period`, then counts the rest.
#[derive(Debug)]
pub struct RateLimit {
    period: Duration,
    burst: u32,
    state: Mutex<(Instant, u32, u64)>,
}

impl RateLimit {
    pub fn new(burst: u32, period: Duration) -> Self {
        RateLimit {
            period,
            burst,
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// `Some(suppressed_since_last)` when this event may be logged.
    pub fn allow(&self) -> Option<u64> {
        let Ok(mut s) = self.state.lock() else {
            return None;
        };
        let now = Instant::now();
        if now.duration_since(s.0) >= self.period {
            *s = (now, 0, s.2);
        }
        if s.1 < self.burst {
            s.1 += 1;
            let suppressed = std::mem::take(&mut s.2);
            Some(suppressed)
        } else {
            s.2 += 1;
            None
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(10, Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_what_it_suppresses() {
        let r = RateLimit::new(2, Duration::from_secs(3600));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        let s = r.state.lock().map(|s| s.2).unwrap_or(0);
        assert_eq!(s, 2);
    }
}

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
#[derive(Debug)]
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
    /// Messages over `max_message_bytes` or `max_samples_per_message` (AMQP; also
    /// counted as malformed).
    pub oversized: Counter,
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
    /// Panics caught in its decoder threads or consumer tasks (each went on or was
    /// restarted).
    pub worker_panics: Counter,
    /// False from such a panic until the next input was handled without one.
    pub healthy: std::sync::atomic::AtomicBool,
}

impl Default for SourceStats {
    fn default() -> Self {
        SourceStats {
            received: Counter::default(),
            samples: Counter::default(),
            malformed: Counter::default(),
            bad_signature: Counter::default(),
            dropped: Counter::default(),
            invalid_samples: Counter::default(),
            oversized: Counter::default(),
            acked: Counter::default(),
            requeued: Counter::default(),
            dead_lettered: Counter::default(),
            redelivered: Counter::default(),
            reconnects: Counter::default(),
            connected: std::sync::atomic::AtomicBool::new(false),
            unacked: std::sync::atomic::AtomicI64::new(0),
            udp_inode: std::sync::atomic::AtomicU64::new(0),
            worker_panics: Counter::default(),
            healthy: std::sync::atomic::AtomicBool::new(true),
        }
    }
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
    /// Batches it rejected that were tried again in parts.
    pub batches_split: Counter,
    /// `collector_snapshot` calls that trapped, timed out or returned a bad buffer.
    pub snapshot_failures: Counter,
    /// New instances that could not take the saved state (`collector_restore`
    /// trapped, timed out or refused it).
    pub restore_failures: Counter,
    /// Panics caught in this dispatcher's workers; each worker was restarted.
    pub worker_panics: Counter,
    /// False from a worker panic until the restarted worker completes a batch.
    pub healthy: std::sync::atomic::AtomicBool,
    /// Plugin log lines over `log_lines_per_second`, not logged.
    pub log_suppressed: std::sync::Arc<Counter>,
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
            log_suppressed: std::sync::Arc::default(),
            worker_panics: Counter::default(),
            batches_split: Counter::default(),
            snapshot_failures: Counter::default(),
            restore_failures: Counter::default(),
            healthy: std::sync::atomic::AtomicBool::new(true),
            last_error: Mutex::default(),
            queued: std::sync::atomic::AtomicI64::new(0),
            // 100 µs to ~6.5 s.
            latency: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 17),
            ),
        }
    }
}

/// Panics caught anywhere in the daemon's workers since it started.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Counts a caught panic (the daemon then exits non-zero: see [`panics`]).
pub fn count_panic() {
    PANICS.fetch_add(1, Ordering::Relaxed);
}

/// Panics caught so far: a daemon that lost a worker does not exit 0.
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
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

/// Longest value from outside that a log line shows (bytes of its text before escaping).
pub const MAX_LOGGED_VALUE_BYTES: usize = 256;

/// A value that came from outside (a datagram, a message, a plugin) as logs show it:
/// control characters, line and paragraph separators and bidirectional overrides
/// escaped (`\n`, `\u{1b}`), so that it cannot forge a log line or a terminal
/// sequence; and cut after [`MAX_LOGGED_VALUE_BYTES`] (or the length
/// given to [`Untrusted::capped`]), saying how much was left out.
#[derive(Clone, Copy)]
pub struct Untrusted<'a> {
    text: &'a str,
    max_bytes: usize,
}

#[allow(non_snake_case, reason = "reads like the tuple struct it stands for")]
/// `Untrusted(text)`: the default cap.
pub fn Untrusted(text: &str) -> Untrusted<'_> {
    Untrusted::capped(text, MAX_LOGGED_VALUE_BYTES)
}

impl<'a> Untrusted<'a> {
    pub fn capped(text: &'a str, max_bytes: usize) -> Self {
        Untrusted { text, max_bytes }
    }
}

/// Characters a log line must not carry as they are.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl std::fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let mut used = 0;
        for (i, c) in self.text.char_indices() {
            if used >= self.max_bytes {
                return write!(f, "…(+{} bytes)", self.text.len() - i);
            }
            used += c.len_utf8();
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if needs_escape(c) => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_cannot_forge_lines() {
        let forged = "m1\n2026-12-01T00:00:00Z  INFO collector: all is well\r\u{1b}[2J\u{202e}";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "m1\\n2026-12-01T00:00:00Z  INFO collector: all is well\\r\\u{1b}[2J\\u{202e}"
        );
        assert_eq!(
            Untrusted(r#"{"k": "a\"b"}"#).to_string(),
            r#"{"k": "a\"b"}"#,
            "JSON text stays as it is"
        );
        assert_eq!(
            Untrusted("plain text, ünïcode").to_string(),
            "plain text, ünïcode"
        );
    }

    #[test]
    fn untrusted_text_is_cut() {
        let long = "x".repeat(10_000);
        let shown = Untrusted(&long).to_string();
        assert_eq!(shown, format!("{}…(+9744 bytes)", "x".repeat(256)));
        assert_eq!(Untrusted::capped("héllo", 2).to_string(), "hé…(+3 bytes)");
    }

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

//! Batching: samples are encoded (ABI v1) as they arrive, and a batch is sealed
//! when it reaches `max_samples`, `max_bytes`, or `max_delay_ms` after its first
//! sample, whichever comes first.
//!
//! A batcher reads the time from its [`Clock`]: tokio's on the async sources (so
//! that a test can pause and advance it), the system's on the UDP decoder
//! threads (std threads, outside tokio's clock), and a hand-moved one in tests.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::Add;
use std::time::Duration;

use collector_sdk::Sample;
use collector_sdk::codec::encode_sample;

use crate::batch_buffers::BatchBytes;
use crate::config::BatchConfig;

/// A finished batch: ABI v1 bytes, ready for every dispatcher.
#[derive(Debug)]
pub struct Sealed {
    /// Recycled when the last dispatcher drops it ([`crate::batch_buffers`]).
    pub bytes: BatchBytes,
    pub samples: u64,
    /// Where each sample starts in `bytes`, so that a batch a dispatcher rejects
    /// can be offered again in parts ([`Sealed::part`]).
    pub starts: Vec<usize>,
}

impl Sealed {
    /// A batch of its own holding samples `range` (ABI v1 bytes).
    pub fn part(bytes: &[u8], starts: &[usize], range: std::ops::Range<usize>) -> Vec<u8> {
        let from = starts.get(range.start).copied().unwrap_or(bytes.len());
        let to = starts.get(range.end).copied().unwrap_or(bytes.len());
        let body = bytes.get(from..to).unwrap_or_default();
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&(range.len() as u64).to_le_bytes());
        out.extend_from_slice(body);
        out
    }
}

/// Where a batcher reads the time.
pub trait Clock {
    type Instant: Copy + Debug + Add<Duration, Output = Self::Instant>;
    fn now() -> Self::Instant;
}

/// The system's monotonic clock, for std threads.
#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    type Instant = std::time::Instant;
    fn now() -> std::time::Instant {
        std::time::Instant::now()
    }
}

/// Tokio's clock, for tasks: paused and advanced by `tokio::time` in tests.
#[derive(Debug)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = tokio::time::Instant;
    fn now() -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

/// Accumulates samples into batches. Owned by one source task.
#[derive(Debug)]
pub struct Batcher<C: Clock = SystemClock> {
    max_samples: u64,
    max_bytes: usize,
    max_delay: Duration,
    bytes: BatchBytes,
    starts: Vec<usize>,
    count: u64,
    started: Option<C::Instant>,
    /// The size the last sealed batch reached: the next one starts with room
    /// for about as much, rather than growing to it by doubling (each step a
    /// copy and fresh pages to fault in).
    hint: usize,
    clock: PhantomData<C>,
}

impl<C: Clock> Batcher<C> {
    pub fn new(cfg: &BatchConfig) -> Self {
        let mut b = Batcher {
            max_samples: cfg.max_samples as u64,
            max_bytes: cfg.max_bytes,
            max_delay: cfg.max_delay,
            bytes: BatchBytes::default(),
            starts: Vec::new(),
            count: 0,
            started: None,
            hint: 64 << 10,
            clock: PhantomData,
        };
        b.reset();
        b
    }

    fn reset(&mut self) {
        // As large as the last batch: untouched capacity costs no page faults,
        // and a batch as large again needs no copy. A recycled buffer, when one
        // is free: its pages are already there.
        self.bytes = BatchBytes::with_capacity(self.hint.min(self.max_bytes.saturating_add(8)));
        self.bytes.extend_from_slice(&[0; 8]);
        self.starts = Vec::with_capacity(self.max_samples.min(1024) as usize);
        self.count = 0;
        self.started = None;
    }

    fn seal(&mut self) -> Sealed {
        let mut bytes = std::mem::take(&mut self.bytes);
        self.hint = (bytes.len() + bytes.len() / 8).max(64 << 10);
        bytes[..8].copy_from_slice(&self.count.to_le_bytes());
        let samples = self.count;
        let starts = std::mem::take(&mut self.starts);
        self.reset();
        Sealed {
            bytes,
            samples,
            starts,
        }
    }

    /// Adds a sample; returns the batch it completed, if any.
    ///
    /// When the sample would push the open batch past `max_bytes`, the open batch
    /// is sealed without it and the sample starts the next one (a sample larger
    /// than `max_bytes` travels alone).
    pub fn push(&mut self, s: &Sample) -> Option<Sealed> {
        let before = self.bytes.len();
        encode_sample(&mut self.bytes, s);
        self.added(before)
    }

    /// [`Batcher::push`] for a sample already in ABI layout.
    pub fn push_encoded(&mut self, sample: &[u8]) -> Option<Sealed> {
        let before = self.bytes.len();
        self.bytes.extend_from_slice(sample);
        self.added(before)
    }

    /// [`Batcher::push`] for a sample `encode` appends in ABI layout itself
    /// (the one-pass UDP path); when it fails, nothing is added (it must leave
    /// the buffer as it found it) and its error is returned.
    pub fn push_with<E>(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Option<Sealed>, E> {
        let before = self.bytes.len();
        encode(&mut self.bytes)?;
        Ok(self.added(before))
    }

    /// Accounts for the sample just appended at `before`.
    fn added(&mut self, before: usize) -> Option<Sealed> {
        if self.bytes.len() > self.max_bytes && self.count > 0 {
            let tail = self.bytes.split_off(before);
            let sealed = self.seal();
            self.starts.push(self.bytes.len());
            self.bytes.extend_from_slice(&tail);
            self.count = 1;
            self.started = Some(C::now());
            return Some(sealed);
        }
        self.starts.push(before);
        self.count += 1;
        if self.started.is_none() {
            self.started = Some(C::now());
        }
        if self.count >= self.max_samples || self.bytes.len() >= self.max_bytes {
            return Some(self.seal());
        }
        None
    }

    /// When the open batch must be flushed, if one is open.
    pub fn deadline(&self) -> Option<C::Instant> {
        self.started.map(|t| t + self.max_delay)
    }

    /// Seals the open batch, if it holds anything.
    pub fn flush(&mut self) -> Option<Sealed> {
        (self.count > 0).then(|| self.seal())
    }

    /// Drops the open batch (after a panic left it in doubt); returns its samples.
    pub fn discard(&mut self) -> u64 {
        let n = self.count;
        self.reset();
        n
    }

    /// Samples in the open batch.
    pub fn pending(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use collector_sdk::codec::{BatchView, decode_batch};
    use collector_sdk::{Field, Number};

    fn sample(i: usize, pad: usize) -> Sample {
        Sample {
            source: "openstack".into(),
            counter_name: "cpu".into(),
            counter_type: "cumulative".into(),
            counter_unit: "ns".into(),
            counter_volume: Some(Number::Int(i as i64)),
            user_id: Field::Null,
            user_name: Field::Absent,
            project_id: Field::Value("p".into()),
            project_name: Field::Absent,
            resource_id: "x".repeat(pad),
            timestamp: "2025-06-01T12:00:00".into(),
            resource_metadata: None,
            message_id: format!("m{i}"),
            monotonic_time: Field::Absent,
            message_signature: Some(String::new()),
            extra: vec![],
        }
    }

    fn cfg(max_samples: usize, max_bytes: usize) -> BatchConfig {
        BatchConfig {
            max_samples,
            max_bytes,
            max_delay: Duration::from_millis(50),
        }
    }

    #[test]
    fn seals_on_count() {
        let mut b = Batcher::<SystemClock>::new(&cfg(3, 1 << 20));
        assert!(b.push(&sample(0, 1)).is_none());
        assert!(b.push(&sample(1, 1)).is_none());
        let s = b.push(&sample(2, 1)).expect("full at 3");
        assert_eq!(s.samples, 3);
        let got = decode_batch(&s.bytes).expect("decodes");
        assert_eq!(got, vec![sample(0, 1), sample(1, 1), sample(2, 1)]);
        assert!(b.deadline().is_none());
    }

    #[test]
    fn seals_before_exceeding_bytes() {
        let one = {
            let mut v = Vec::new();
            encode_sample(&mut v, &sample(0, 1000));
            v.len()
        };
        let mut b = Batcher::<SystemClock>::new(&cfg(1000, 8 + 2 * one + 10));
        assert!(b.push(&sample(0, 1000)).is_none());
        assert!(b.push(&sample(1, 1000)).is_none());
        let s = b.push(&sample(2, 1000)).expect("third does not fit");
        assert_eq!(s.samples, 2);
        assert!(s.bytes.len() <= 8 + 2 * one + 10);
        assert_eq!(BatchView::new(&s.bytes).map(|v| v.len()).ok(), Some(2));
        let rest = b.flush().expect("third is open");
        assert_eq!(
            decode_batch(&rest.bytes).expect("decodes"),
            vec![sample(2, 1000)]
        );
    }

    #[test]
    fn parts_are_batches_of_their_own() {
        let mut b = Batcher::<SystemClock>::new(&cfg(5, 1 << 20));
        let all: Vec<Sample> = (0..5).map(|i| sample(i, i + 1)).collect();
        let mut sealed = None;
        for s in &all {
            sealed = b.push(s);
        }
        let sealed = sealed.expect("full at 5");
        assert_eq!(sealed.starts.len(), 5);
        assert_eq!(sealed.starts[0], 8);
        for (from, to) in [(0, 5), (0, 1), (1, 3), (4, 5), (2, 2)] {
            let part = Sealed::part(&sealed.bytes, &sealed.starts, from..to);
            assert_eq!(
                decode_batch(&part).expect("a part decodes"),
                all[from..to].to_vec(),
                "{from}..{to}"
            );
        }
    }

    /// A clock the test moves by hand (per thread): the UDP decoders' batchers
    /// run on std threads, outside tokio's clock.
    struct HandClock;

    thread_local! {
        static NOW: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }

    impl HandClock {
        fn advance(by: Duration) {
            NOW.with(|n| n.set(Some(Self::now() + by)));
        }
    }

    impl Clock for HandClock {
        type Instant = std::time::Instant;
        fn now() -> std::time::Instant {
            NOW.with(|n| {
                let t = n.get().unwrap_or_else(std::time::Instant::now);
                n.set(Some(t));
                t
            })
        }
    }

    #[test]
    fn deadline_counts_from_first_sample() {
        let mut b = Batcher::<HandClock>::new(&cfg(10, 1 << 20));
        assert!(b.deadline().is_none());
        let t0 = HandClock::now();
        b.push(&sample(0, 1));
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(50)));
        HandClock::advance(Duration::from_millis(30));
        b.push(&sample(1, 1));
        assert_eq!(
            b.deadline(),
            Some(t0 + Duration::from_millis(50)),
            "later samples do not move the deadline"
        );
        assert_eq!(b.flush().map(|s| s.samples), Some(2));
        assert!(b.flush().is_none());
        HandClock::advance(Duration::from_millis(100));
        b.push(&sample(2, 1));
        assert_eq!(
            b.deadline(),
            Some(t0 + Duration::from_millis(180)),
            "the next batch counts from its own first sample"
        );
    }

    /// On tokio's clock, as the AMQP consumer runs it: the open batch is due
    /// `max_delay` after its first sample, in virtual time.
    #[tokio::test(start_paused = true)]
    async fn on_tokio_time_the_deadline_follows_the_paused_clock() {
        let mut b = Batcher::<TokioClock>::new(&cfg(10, 1 << 20));
        let t0 = tokio::time::Instant::now();
        b.push(&sample(0, 1));
        let due = b.deadline().expect("open");
        assert_eq!(due, t0 + Duration::from_millis(50));
        tokio::time::sleep_until(due).await;
        assert_eq!(
            tokio::time::Instant::now(),
            due,
            "woken exactly at the deadline"
        );
        assert_eq!(b.flush().map(|s| s.samples), Some(1));
    }
}

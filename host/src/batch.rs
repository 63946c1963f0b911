//! Batching: samples are encoded (ABI v1) as they arrive, and a batch is sealed
//! when it reaches `max_samples`, `max_bytes`, or `max_delay_ms` after its first
//! sample, whichever comes first.

use std::time::{Duration, Instant};

use collector_sdk::Sample;
use collector_sdk::codec::encode_sample;

use crate::config::BatchConfig;

/// A finished batch: ABI v1 bytes, ready for every dispatcher.
#[derive(Debug)]
pub struct Sealed {
    pub bytes: Vec<u8>,
    pub samples: u64,
}

/// Accumulates samples into batches. Owned by one source task.
#[derive(Debug)]
pub struct Batcher {
    max_samples: u64,
    max_bytes: usize,
    max_delay: Duration,
    bytes: Vec<u8>,
    count: u64,
    started: Option<Instant>,
}

impl Batcher {
    pub fn new(cfg: &BatchConfig) -> Self {
        let mut b = Batcher {
            max_samples: cfg.max_samples as u64,
            max_bytes: cfg.max_bytes,
            max_delay: Duration::from_millis(cfg.max_delay_ms),
            bytes: Vec::new(),
            count: 0,
            started: None,
        };
        b.reset();
        b
    }

    fn reset(&mut self) {
        // Start small and let it grow: a large fresh buffer per batch costs page faults.
        self.bytes = Vec::with_capacity(self.max_bytes.min(64 << 10));
        self.bytes.extend_from_slice(&[0; 8]);
        self.count = 0;
        self.started = None;
    }

    fn seal(&mut self) -> Sealed {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes[..8].copy_from_slice(&self.count.to_le_bytes());
        let samples = self.count;
        self.reset();
        Sealed { bytes, samples }
    }

    /// Adds a sample; returns the batch it completed, if any.
    ///
    /// When the sample would push the open batch past `max_bytes`, the open batch
    /// is sealed without it and the sample starts the next one (a sample larger
    /// than `max_bytes` travels alone).
    pub fn push(&mut self, s: &Sample) -> Option<Sealed> {
        let before = self.bytes.len();
        encode_sample(&mut self.bytes, s);
        if self.bytes.len() > self.max_bytes && self.count > 0 {
            let tail = self.bytes.split_off(before);
            let sealed = self.seal();
            self.bytes.extend_from_slice(&tail);
            self.count = 1;
            self.started = Some(Instant::now());
            return Some(sealed);
        }
        self.count += 1;
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
        if self.count >= self.max_samples || self.bytes.len() >= self.max_bytes {
            return Some(self.seal());
        }
        None
    }

    /// When the open batch must be flushed, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.started.map(|t| t + self.max_delay)
    }

    /// Seals the open batch, if it holds anything.
    pub fn flush(&mut self) -> Option<Sealed> {
        (self.count > 0).then(|| self.seal())
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
            max_delay_ms: 50,
        }
    }

    #[test]
    fn seals_on_count() {
        let mut b = Batcher::new(&cfg(3, 1 << 20));
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
        let mut b = Batcher::new(&cfg(1000, 8 + 2 * one + 10));
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
    fn deadline_counts_from_first_sample() {
        let mut b = Batcher::new(&cfg(10, 1 << 20));
        assert!(b.deadline().is_none());
        let t0 = Instant::now();
        b.push(&sample(0, 1));
        let d = b.deadline().expect("open batch has a deadline");
        assert!(d >= t0 + Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(5));
        b.push(&sample(1, 1));
        assert_eq!(
            b.deadline(),
            Some(d),
            "later samples do not move the deadline"
        );
        assert_eq!(b.flush().map(|s| s.samples), Some(2));
        assert!(b.flush().is_none());
    }
}

//! What became of a batch: each dispatcher reports once, and when the last has,
//! the source that sent the batch learns which of its samples any dispatcher
//! failed (an AMQP source acks or requeues its messages by that).

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;

/// Samples one dispatcher did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchFailure {
    pub dispatcher: String,
    pub reason: String,
    /// Indexes of the samples it failed, in the batch: the whole batch, or (when it
    /// rejected the batch and the parts were tried on their own) the samples at fault.
    pub samples: Vec<Range<u64>>,
    /// The dispatcher could not take it now (its backend kept answering `retry`
    /// until the daemon stopped or the dispatcher was replaced, its queue was
    /// closed): this says nothing about the samples, and an AMQP message holding
    /// them is requeued without counting toward `max_deliveries`.
    pub transient: bool,
}

impl DispatchFailure {
    /// True when the failure covers any sample of `range`.
    pub fn covers(&self, range: &Range<u64>) -> bool {
        self.samples
            .iter()
            .any(|f| f.start < range.end && range.start < f.end)
    }

    /// Samples it failed.
    pub fn count(&self) -> u64 {
        self.samples.iter().map(|r| r.end - r.start).sum()
    }
}

/// How a batch fared across all dispatchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub samples: u64,
    /// One entry for each dispatcher that did not take every sample.
    pub failures: Vec<DispatchFailure>,
}

impl BatchReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The first failure that covers a sample of `range`, if any.
    pub fn failure_for(&self, range: &Range<u64>) -> Option<&DispatchFailure> {
        self.failures.iter().find(|f| f.covers(range))
    }
}

/// The samples one dispatcher failed, why, and whether it was the samples' doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub reason: String,
    pub samples: Vec<Range<u64>>,
    /// See [`DispatchFailure::transient`].
    pub transient: bool,
}

/// What one dispatcher made of a batch.
pub type Outcome = Result<(), Failed>;

/// All `n` samples of a batch, as a failure lists them.
pub fn whole(n: u64) -> Vec<Range<u64>> {
    std::iter::once(0..n).collect()
}

/// Collects the outcome of one batch from each dispatcher.
pub struct Tracker {
    remaining: AtomicUsize,
    samples: u64,
    failures: Mutex<Vec<DispatchFailure>>,
    done: Mutex<Option<oneshot::Sender<BatchReport>>>,
}

impl Tracker {
    /// A tracker waiting for `dispatchers` reports; with none, it reports at once.
    pub fn new(dispatchers: usize, samples: u64) -> (Tracker, oneshot::Receiver<BatchReport>) {
        let (tx, rx) = oneshot::channel();
        let t = Tracker {
            remaining: AtomicUsize::new(dispatchers),
            samples,
            failures: Mutex::new(Vec::new()),
            done: Mutex::new(Some(tx)),
        };
        if dispatchers == 0 {
            t.finish();
        }
        (t, rx)
    }

    /// The whole batch failed for `dispatcher`, though not by its samples' doing
    /// (a full or closed queue, the end of the grace period).
    pub fn fail_all(&self, dispatcher: &str, reason: impl Into<String>) {
        self.report(
            dispatcher,
            Err(Failed {
                reason: reason.into(),
                samples: whole(self.samples),
                transient: true,
            }),
        );
    }

    pub fn report(&self, dispatcher: &str, outcome: Outcome) {
        if let Err(Failed {
            reason,
            samples,
            transient,
        }) = outcome
        {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            f.push(DispatchFailure {
                dispatcher: dispatcher.to_owned(),
                reason,
                samples,
                transient,
            });
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    fn finish(&self) {
        let failures =
            std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        let tx = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = tx {
            let _ = tx.send(BatchReport {
                samples: self.samples,
                failures,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_once_every_dispatcher_answered() {
        let (t, mut rx) = Tracker::new(2, 10);
        t.report("a", Ok(()));
        assert!(rx.try_recv().is_err(), "one dispatcher is still working");
        t.report(
            "b",
            Err(Failed {
                reason: "rejected".into(),
                samples: vec![3..4, 7..9],
                transient: false,
            }),
        );
        let r = rx.try_recv().expect("reported");
        assert!(!r.ok());
        assert!(r.failure_for(&(0..3)).is_none());
        assert!(r.failure_for(&(3..5)).is_some());
        assert!(r.failure_for(&(5..7)).is_none());
        assert!(r.failure_for(&(8..10)).is_some());
        assert_eq!(r.failures[0].count(), 3);
    }

    #[test]
    fn no_dispatcher_reports_at_once() {
        let (_t, mut rx) = Tracker::new(0, 5);
        assert!(rx.try_recv().expect("reported").ok());
    }
}

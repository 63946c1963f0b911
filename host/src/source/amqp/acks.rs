//! Which deliveries of one channel may be acked, and how: the at-least-once
//! bookkeeping of the AMQP source, with no lapin inside, so that it is tested
//! by fast unit tests.
//!
//! In: deliveries (with their `max_deliveries` key), the samples each put into
//! the open batch, batches sealed, and each batch's outcome over all dispatchers.
//! Out: [`Action`]s for the consumer to perform. A delivery is finished when all
//! its samples are in batches and every batch holding some of them has been
//! reported; it is then ready for an ack if no dispatcher failed one of *its*
//! samples, else nacked on its own (requeued, or dead-lettered once it has failed
//! `max_deliveries` times). Acks go out as one `multiple` ack over the longest
//! prefix of finished deliveries, since a channel's delivery tags are in order.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;

use crate::dispatch::BatchReport;

/// What to do when a dispatcher failed a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckPolicy {
    /// Requeue (true) or dead-letter (false) a message a dispatcher failed.
    pub requeue_on_error: bool,
    /// Failed deliveries of one message after which it is dead-lettered (0: never).
    pub max_deliveries: u32,
}

/// Failed deliveries per message, shared by every consumer of a source (a
/// redelivery may arrive on another channel), keyed by `_unique_id` or body hash.
#[derive(Debug, Default)]
pub struct DeliveryCounts(Mutex<HashMap<String, u32>>);

impl DeliveryCounts {
    /// Bounds the table: past this many messages it starts afresh.
    const MAX_KEYS: usize = 100_000;

    /// Records one more failed delivery of `key`; returns how many it has failed,
    /// at least one more than the broker's own count (`x-delivery-count`).
    fn failed(&self, key: &str, broker_count: u32) -> u32 {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() > Self::MAX_KEYS {
            t.clear();
        }
        let n = t.entry(key.to_owned()).or_insert(0);
        *n += 1;
        (*n).max(broker_count + 1)
    }

    /// Failed deliveries of `key` so far, without counting one more.
    fn so_far(&self, key: &str, broker_count: u32) -> u32 {
        let t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.get(key).copied().unwrap_or(0).max(broker_count)
    }
}

/// What the consumer must do on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `basic.ack` with `multiple`, up to and including `tag`: `count` messages.
    AckUpTo { tag: u64, count: u64 },
    /// `basic.nack` of one message: requeued, or rejected for good (to the
    /// dead-letter exchange, if the queue has one).
    Nack {
        tag: u64,
        requeue: bool,
        /// Its failed deliveries so far, this one included.
        deliveries: u32,
        reason: String,
    },
}

/// Where a delivery stands.
#[derive(Debug)]
struct Pending {
    /// Batches (sealed or still open) holding some of its samples, not yet reported.
    parts: usize,
    /// All its samples are in batches.
    pushed: bool,
    /// The first failure of one of its samples.
    failure: Option<String>,
    /// Some failure of its samples was theirs to answer for (a reject, a trap),
    /// not only a dispatcher that could not take them now: it counts toward
    /// `max_deliveries`.
    poison: bool,
    done: Option<Done>,
    /// For `max_deliveries`.
    key: String,
    delivery_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// Ready for the `multiple` ack, once every earlier tag is done too.
    Ack,
    /// Nacked or rejected on its own already.
    Settled,
}

/// The bookkeeping of one channel.
#[derive(Debug)]
pub struct AckTracker {
    policy: AckPolicy,
    counts: std::sync::Arc<DeliveryCounts>,
    pending: BTreeMap<u64, Pending>,
    /// Deliveries with samples in the open batch, with the index there of the first.
    open: Vec<(u64, u64)>,
    /// Sealed batches not yet reported: id → the deliveries they hold, each with
    /// the indexes of its samples in the batch.
    batches: HashMap<u64, Vec<(u64, Range<u64>)>>,
    next_batch: u64,
}

impl AckTracker {
    pub fn new(policy: AckPolicy, counts: std::sync::Arc<DeliveryCounts>) -> Self {
        AckTracker {
            policy,
            counts,
            pending: BTreeMap::new(),
            open: Vec::new(),
            batches: HashMap::new(),
            next_batch: 0,
        }
    }

    /// Deliveries not yet acked or nacked.
    pub fn unsettled(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// A delivery that decoded; its samples follow ([`AckTracker::join_open`]),
    /// then [`AckTracker::pushed`]. `broker_count` is its `x-delivery-count`.
    pub fn delivered(&mut self, tag: u64, key: String, broker_count: u32) {
        self.pending.insert(
            tag,
            Pending {
                parts: 0,
                pushed: false,
                failure: None,
                poison: false,
                done: None,
                key,
                delivery_count: broker_count,
            },
        );
    }

    /// A delivery the consumer rejected on its own (undecodable).
    pub fn rejected(&mut self, tag: u64) {
        self.pending.insert(
            tag,
            Pending {
                parts: 0,
                pushed: true,
                failure: None,
                poison: false,
                done: Some(Done::Settled),
                key: String::new(),
                delivery_count: 0,
            },
        );
    }

    /// Delivery `tag` has a sample at `index` of the open batch.
    pub fn join_open(&mut self, tag: u64, index: u64) {
        if self.open.last().map(|(t, _)| *t) != Some(tag) {
            self.open.push((tag, index));
            if let Some(p) = self.pending.get_mut(&tag) {
                p.parts += 1;
            }
        }
    }

    /// The open batch was sealed holding `samples`; returns its id for
    /// [`AckTracker::reported`].
    pub fn seal(&mut self, samples: u64) -> u64 {
        let id = self.next_batch;
        self.next_batch += 1;
        let open = std::mem::take(&mut self.open);
        let ends = open
            .iter()
            .skip(1)
            .map(|(_, first)| *first)
            .chain([samples]);
        let held = open
            .iter()
            .zip(ends)
            .map(|((tag, first), end)| (*tag, *first..end))
            .collect();
        self.batches.insert(id, held);
        id
    }

    /// Every sample of `tag` is in a batch now.
    pub fn pushed(&mut self, tag: u64) -> Option<Action> {
        if let Some(p) = self.pending.get_mut(&tag) {
            p.pushed = true;
        }
        self.finish(tag)
    }

    /// The outcome of batch `id` over all dispatchers (`None`: lost without one,
    /// which fails all its samples).
    pub fn reported(&mut self, id: u64, report: Option<&BatchReport>) -> Vec<Action> {
        let Some(held) = self.batches.remove(&id) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        for (tag, samples) in held {
            if let Some(p) = self.pending.get_mut(&tag) {
                p.parts = p.parts.saturating_sub(1);
                // Only the messages holding samples a dispatcher failed pay for it.
                let (failure, poison) = match report {
                    None => (
                        Some("the batch was lost without an outcome".to_owned()),
                        true,
                    ),
                    Some(r) => (
                        r.failure_for(&samples)
                            .map(|f| format!("dispatcher {}: {}", f.dispatcher, f.reason)),
                        r.failures
                            .iter()
                            .any(|f| !f.transient && f.covers(&samples)),
                    ),
                };
                if p.failure.is_none() {
                    p.failure = failure;
                }
                p.poison |= poison;
            }
            actions.extend(self.finish(tag));
        }
        actions
    }

    /// A delivery whose samples have all been reported on: ready for the ack, or
    /// nacked now.
    fn finish(&mut self, tag: u64) -> Option<Action> {
        let p = self.pending.get_mut(&tag)?;
        if p.done.is_some() || !p.pushed || p.parts > 0 {
            return None;
        }
        let Some(reason) = p.failure.take() else {
            p.done = Some(Done::Ack);
            return None;
        };
        p.done = Some(Done::Settled);
        if !p.poison {
            // The dispatchers could not take it now: back to the queue, uncounted.
            return Some(Action::Nack {
                tag,
                requeue: true,
                deliveries: self.counts.so_far(&p.key, p.delivery_count),
                reason,
            });
        }
        let deliveries = self.counts.failed(&p.key, p.delivery_count);
        let give_up = self.policy.max_deliveries > 0 && deliveries >= self.policy.max_deliveries;
        Some(Action::Nack {
            tag,
            requeue: self.policy.requeue_on_error && !give_up,
            deliveries,
            reason,
        })
    }

    /// The `multiple` ack over the longest prefix of finished deliveries, if any
    /// of them is to be acked; settled ones leave the prefix either way.
    pub fn settle(&mut self) -> Option<Action> {
        let mut last = None;
        let mut count = 0;
        while let Some(entry) = self.pending.first_entry() {
            match entry.get().done {
                None => break,
                Some(Done::Ack) => {
                    last = Some(*entry.key());
                    count += 1;
                    entry.remove();
                }
                Some(Done::Settled) => {
                    entry.remove();
                }
            }
        }
        last.map(|tag| Action::AckUpTo { tag, count })
    }
}

#[cfg(test)]
#[allow(
    clippy::single_range_in_vec_init,
    reason = "lists of ranges of sample indexes, one range long"
)]
mod tests {
    use super::*;
    use crate::dispatch::DispatchFailure;
    use std::sync::Arc;

    fn tracker(requeue: bool, max_deliveries: u32) -> AckTracker {
        AckTracker::new(
            AckPolicy {
                requeue_on_error: requeue,
                max_deliveries,
            },
            Arc::default(),
        )
    }

    fn ok(samples: u64) -> BatchReport {
        BatchReport {
            samples,
            failures: vec![],
        }
    }

    fn failed(samples: u64, dispatcher: &str, ranges: &[Range<u64>]) -> BatchReport {
        BatchReport {
            samples,
            failures: vec![DispatchFailure {
                dispatcher: dispatcher.into(),
                reason: format!("{dispatcher} said no"),
                samples: ranges.to_vec(),
                transient: false,
            }],
        }
    }

    /// `dispatcher` could not take `ranges` now (its backend kept answering
    /// retry until the daemon stopped).
    fn held_back(samples: u64, dispatcher: &str, ranges: &[Range<u64>]) -> BatchReport {
        let mut r = failed(samples, dispatcher, ranges);
        r.failures[0].transient = true;
        r
    }

    /// Delivery `tag` with `n` samples, pushed into the open batch from `at` on.
    fn deliver(t: &mut AckTracker, tag: u64, n: u64, at: u64) {
        t.delivered(tag, format!("m{tag}"), 0);
        for i in 0..n {
            t.join_open(tag, at + i);
        }
    }

    #[test]
    fn a_message_spanning_batches_is_acked_when_both_are_reported() {
        let mut t = tracker(true, 5);
        deliver(&mut t, 1, 2, 0);
        let a = t.seal(2);
        t.join_open(1, 0);
        assert_eq!(t.pushed(1), None);
        let b = t.seal(1);
        assert!(t.reported(a, Some(&ok(2))).is_empty());
        assert_eq!(t.settle(), None, "its second batch is not reported yet");
        assert!(t.reported(b, Some(&ok(1))).is_empty());
        assert_eq!(t.settle(), Some(Action::AckUpTo { tag: 1, count: 1 }));
        assert!(t.is_empty());
    }

    #[test]
    fn a_message_spanning_batches_is_nacked_if_either_fails_and_the_first_failure_wins() {
        let mut t = tracker(true, 5);
        deliver(&mut t, 1, 1, 0);
        let a = t.seal(1);
        t.join_open(1, 0);
        t.pushed(1);
        let b = t.seal(1);
        assert!(t.reported(a, Some(&failed(1, "first", &[0..1]))).is_empty());
        let actions = t.reported(b, Some(&failed(1, "second", &[0..1])));
        assert_eq!(
            actions,
            vec![Action::Nack {
                tag: 1,
                requeue: true,
                deliveries: 1,
                reason: "dispatcher first: first said no".into()
            }]
        );
        assert_eq!(t.settle(), None, "nacked, not acked");
        assert!(t.is_empty());
    }

    #[test]
    fn only_the_messages_holding_failed_samples_are_nacked() {
        let mut t = tracker(true, 5);
        deliver(&mut t, 1, 3, 0);
        t.pushed(1);
        deliver(&mut t, 2, 3, 3);
        t.pushed(2);
        deliver(&mut t, 3, 3, 6);
        t.pushed(3);
        let id = t.seal(9);
        let actions = t.reported(id, Some(&failed(9, "picky", &[4..5])));
        assert!(
            matches!(&actions[..], [Action::Nack { tag: 2, .. }]),
            "{actions:?}"
        );
        assert_eq!(t.settle(), Some(Action::AckUpTo { tag: 3, count: 2 }));
    }

    #[test]
    fn acks_go_out_over_the_finished_prefix_only() {
        let mut t = tracker(true, 5);
        deliver(&mut t, 1, 1, 0);
        t.pushed(1);
        let a = t.seal(1);
        deliver(&mut t, 2, 1, 0);
        t.pushed(2);
        let b = t.seal(1);
        deliver(&mut t, 3, 1, 0);
        t.pushed(3);
        let c = t.seal(1);
        t.reported(b, Some(&ok(1)));
        assert_eq!(t.settle(), None, "1 is not finished: nothing can be acked");
        t.reported(a, Some(&ok(1)));
        assert_eq!(t.settle(), Some(Action::AckUpTo { tag: 2, count: 2 }));
        t.reported(c, Some(&ok(1)));
        assert_eq!(t.settle(), Some(Action::AckUpTo { tag: 3, count: 1 }));
    }

    #[test]
    fn rejected_and_empty_messages_do_not_block_the_prefix() {
        let mut t = tracker(true, 5);
        t.rejected(1);
        // A message whose samples were all invalid: nothing in any batch.
        t.delivered(2, "m2".into(), 0);
        assert_eq!(t.pushed(2), None);
        deliver(&mut t, 3, 1, 0);
        t.pushed(3);
        let id = t.seal(1);
        t.reported(id, Some(&ok(1)));
        assert_eq!(
            t.settle(),
            Some(Action::AckUpTo { tag: 3, count: 2 }),
            "2 and 3 are acked; 1 was rejected already"
        );
    }

    #[test]
    fn the_delivery_cap_dead_letters_and_counts_across_channels_and_the_broker() {
        let counts: Arc<DeliveryCounts> = Arc::default();
        let policy = AckPolicy {
            requeue_on_error: true,
            max_deliveries: 3,
        };
        let fail_once = |t: &mut AckTracker, tag: u64, broker: u32| {
            t.delivered(tag, "same-message".into(), broker);
            t.join_open(tag, 0);
            t.pushed(tag);
            let id = t.seal(1);
            t.reported(id, Some(&failed(1, "d", &[0..1])))
        };
        let mut one = AckTracker::new(policy, counts.clone());
        let mut two = AckTracker::new(policy, counts.clone());
        let requeued = |a: &[Action]| matches!(a, [Action::Nack { requeue: true, .. }]);
        assert!(requeued(&fail_once(&mut one, 1, 0)));
        // Redelivered on another channel.
        assert!(requeued(&fail_once(&mut two, 7, 0)));
        let third = fail_once(&mut one, 2, 0);
        assert!(
            matches!(
                &third[..],
                [Action::Nack {
                    requeue: false,
                    deliveries: 3,
                    ..
                }]
            ),
            "{third:?}"
        );
        // A quorum queue's x-delivery-count counts too.
        let fresh = AckTracker::new(policy, Arc::default());
        let mut q = fresh;
        let capped = fail_once(&mut q, 1, 5);
        assert!(
            matches!(
                &capped[..],
                [Action::Nack {
                    requeue: false,
                    deliveries: 6,
                    ..
                }]
            ),
            "{capped:?}"
        );
        // No requeue at all when so configured.
        let mut dl = tracker(false, 0);
        assert!(matches!(
            &fail_once(&mut dl, 1, 0)[..],
            [Action::Nack { requeue: false, .. }]
        ));
    }

    #[test]
    fn a_backend_that_held_a_message_back_never_dead_letters_it() {
        let counts: Arc<DeliveryCounts> = Arc::default();
        let policy = AckPolicy {
            requeue_on_error: false,
            max_deliveries: 2,
        };
        let mut t = AckTracker::new(policy, counts.clone());
        // Held back ten times in a row (shutdowns while the backend was down):
        // requeued each time, never counted, even with dead-lettering configured.
        for tag in 1..=10 {
            t.delivered(tag, "held".into(), 0);
            t.join_open(tag, 0);
            t.pushed(tag);
            let id = t.seal(1);
            let actions = t.reported(id, Some(&held_back(1, "vm", &[0..1])));
            assert!(
                matches!(
                    &actions[..],
                    [Action::Nack {
                        requeue: true,
                        deliveries: 0,
                        ..
                    }]
                ),
                "delivery {tag}: {actions:?}"
            );
        }
        // One real failure beside a held-back one counts (and here dead-letters,
        // as configured).
        t.delivered(11, "held".into(), 0);
        t.join_open(11, 0);
        t.pushed(11);
        let id = t.seal(1);
        let mut both = held_back(1, "vm", &[0..1]);
        both.failures.extend(failed(1, "picky", &[0..1]).failures);
        let actions = t.reported(id, Some(&both));
        assert!(
            matches!(
                &actions[..],
                [Action::Nack {
                    requeue: false,
                    deliveries: 1,
                    ..
                }]
            ),
            "{actions:?}"
        );
    }

    #[test]
    fn a_batch_lost_without_an_outcome_fails_its_messages() {
        let mut t = tracker(true, 5);
        deliver(&mut t, 1, 1, 0);
        t.pushed(1);
        let id = t.seal(1);
        let actions = t.reported(id, None);
        assert!(matches!(
            &actions[..],
            [Action::Nack {
                tag: 1,
                requeue: true,
                ..
            }]
        ));
    }
}

//! One channel consuming one queue: deliveries are decoded (on the decoder threads),
//! their samples batched and handed to the dispatchers, and the outcomes turned
//! into acks and nacks by the channel's [`AckTracker`]. The task owns all of the
//! channel's state, so a lost connection loses nothing but unacked deliveries,
//! which the broker redelivers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::Channel;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::AmqpSource;
use super::acks::{AckPolicy, AckTracker, Action};
use super::decode::{Verified, header_delivery_count};
use super::decode_pool::{DecoderLost, Outcome, Pending};
use crate::batch::{Batcher, Sealed, TokioClock};
use crate::dispatch::BatchReport;
use crate::signature::Signer;
use crate::telemetry::events::{
    MessageNacked, MessageUndecodable, Origin, SamplesInvalid, SignatureInvalid,
    SourceWorkerPanicked,
};
use crate::wire::oslo;

/// Messages decoded at once on the decoder threads, per consumer: the
/// consumer goes on receiving while they decode, and takes their results in
/// delivery order, so batching and acks are as if they were decoded one by one.
const DECODING_AT_ONCE: usize = 4;

/// A delivery whose body is being decoded.
struct Decoding {
    tag: u64,
    bytes: usize,
    broker_count: u32,
    decoded: Pending,
}

/// One channel consuming one queue.
pub struct Consumer {
    src: Arc<AmqpSource>,
    channel: Channel,
    queue: String,
    tag: String,
    signer: Signer,
    batcher: Batcher<TokioClock>,
    acks: AckTracker,
    /// The outcome of each batch in flight, by batch id.
    reports: JoinSet<(u64, Option<BatchReport>)>,
}

impl Consumer {
    pub fn new(src: Arc<AmqpSource>, channel: Channel, queue: String, tag: String) -> Consumer {
        let policy = AckPolicy {
            requeue_on_error: src.cfg.requeue_on_dispatcher_error,
            max_deliveries: src.cfg.max_deliveries,
        };
        Consumer {
            signer: Signer::new(&src.ctx.secret),
            batcher: Batcher::new(&src.ctx.batch),
            acks: AckTracker::new(policy, src.delivery_counts.clone()),
            reports: JoinSet::new(),
            src,
            channel,
            queue,
            tag,
        }
    }

    /// Sets the prefetch and starts consuming.
    pub async fn start(self) -> Result<(Consumer, lapin::Consumer), String> {
        self.channel
            .basic_qos(self.src.cfg.prefetch_count, BasicQosOptions::default())
            .await
            .map_err(|e| format!("basic.qos on {}: {e}", self.queue))?;
        let deliveries = self
            .channel
            .basic_consume(
                self.queue.as_str().into(),
                self.tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("basic.consume on {}: {e}", self.queue))?;
        Ok((self, deliveries))
    }

    /// Consumes until `stop` turns true and every delivery is settled, or the
    /// channel fails.
    pub async fn run(
        mut self,
        mut deliveries: lapin::Consumer,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let ch = self.channel.clone();
        let mut draining = false;
        let far = Duration::from_secs(3600);
        let mut decoding: VecDeque<Decoding> = VecDeque::with_capacity(DECODING_AT_ONCE);
        loop {
            if draining && self.acks.is_empty() && decoding.is_empty() {
                break;
            }
            let deadline = self.batcher.deadline();
            let sleep_until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + far);
            tokio::select! {
                biased;
                Some(done) = self.reports.join_next(), if !self.reports.is_empty() => {
                    let (id, report) = done.unwrap_or((u64::MAX, None));
                    let actions = self.acks.reported(id, report.as_ref());
                    self.perform(actions).await?;
                    self.settle().await?;
                }
                _ = stop.changed(), if !draining => {
                    draining = true;
                    let _ = ch.basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default()).await;
                    self.flush().await;
                    self.settle().await?;
                }
                decoded = async { (&mut decoding.front_mut().expect("guarded").decoded).await },
                    if !decoding.is_empty() =>
                {
                    let d = decoding.pop_front().expect("guarded");
                    self.decoded(d, decoded).await?;
                    if draining {
                        // Stopping: what was decoding goes out now.
                        self.flush().await;
                        self.settle().await?;
                    }
                }
                d = deliveries.next(), if !draining && decoding.len() < DECODING_AT_ONCE => match d {
                    Some(Ok(delivery)) => decoding.push_back(self.on_delivery(delivery)),
                    Some(Err(e)) => return Err(format!("consumer on {}: {e}", self.queue)),
                    None => return Err(format!("consumer on {} was cancelled", self.queue)),
                },
                _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => self.flush().await,
            }
        }
        let _ = ch.close(200, "collector stopping".into()).await;
        Ok(())
    }

    /// Counts a delivery and queues it for the decoder threads.
    fn on_delivery(&mut self, d: lapin::message::Delivery) -> Decoding {
        let stats = &self.src.ctx.stats;
        stats.counts.messages_received.inc();
        if let Ok(mut span) = self.src.span.lock() {
            let now = std::time::Instant::now();
            span.get_or_insert((now, now));
        }
        if d.redelivered {
            self.src.amqp.amqp_redelivered.inc();
        }
        // Decoding and verifying are CPU work on input from outside: they run on the
        // decoder threads, never on the async workers that serve the admin endpoint,
        // the other consumers and shutdown.
        let signer = self.signer.clone();
        let limits = oslo::Limits {
            max_bytes: self.src.cfg.max_message_bytes,
            max_samples: self.src.cfg.max_samples_per_message,
        };
        let (tag, bytes) = (d.delivery_tag, d.data.len());
        let broker_count = header_delivery_count(&d.properties).unwrap_or(0);
        let data = d.data;
        Decoding {
            tag,
            bytes,
            broker_count,
            decoded: self.src.decoders.decode(data, signer, limits),
        }
    }

    /// Takes a decoded delivery (in delivery order): its samples into batches,
    /// or its rejection.
    async fn decoded(
        &mut self,
        d: Decoding,
        decoded: Result<Outcome, DecoderLost>,
    ) -> Result<(), String> {
        let stats = self.src.ctx.stats.clone();
        let Decoding {
            tag,
            bytes,
            broker_count,
            ..
        } = d;
        let decoded = match decoded {
            Ok(r) => {
                stats.counts.source_healthy.set(true);
                r
            }
            // A decoder bug this message triggers: count it, and refuse the message
            // for good, or every redelivery would trigger it again.
            Err(DecoderLost) => {
                SourceWorkerPanicked {
                    detail: &format!(
                        "the message decoder failed on a message of {bytes} bytes from {}; \
                         it is rejected without requeue",
                        self.queue
                    ),
                }
                .emit(&stats);
                Err(oslo::OsloError::DecoderFailed)
            }
        };
        let msg = match decoded {
            Ok(m) => m,
            Err(e) => {
                MessageUndecodable {
                    queue: &self.queue,
                    bytes,
                    error: &e,
                    oversized: matches!(
                        e,
                        oslo::OsloError::TooLarge { .. } | oslo::OsloError::TooManySamples { .. }
                    ),
                }
                .emit(&stats, &self.src.amqp);
                self.track(|a| a.rejected(tag));
                self.channel
                    .basic_reject(tag, BasicRejectOptions { requeue: false })
                    .await
                    .map_err(|e| format!("basic.reject: {e}"))?;
                return self.settle().await;
            }
        };
        let key = msg.key.clone();
        self.track(|a| a.delivered(tag, key, broker_count));
        self.push_samples(tag, msg).await;
        let action = self.acks.pushed(tag);
        self.perform(action).await?;
        self.settle().await
    }

    /// Changes the tracker, following the `unacked` gauge.
    fn track(&mut self, f: impl FnOnce(&mut AckTracker)) {
        let before = self.acks.unsettled();
        f(&mut self.acks);
        let delta = self.acks.unsettled() as i64 - before as i64;
        self.src.amqp.amqp_unacked_deliveries.inc_by(delta);
    }

    async fn push_samples(&mut self, tag: u64, msg: Verified) {
        let stats = self.src.ctx.stats.clone();
        if let Some((i, e)) = msg.invalid.first() {
            SamplesInvalid {
                queue: &self.queue,
                count: msg.invalid.len() as u64,
                first: (*i, e),
            }
            .emit(&stats);
        }
        if let Some(first) = &msg.first_bad_signature {
            SignatureInvalid {
                origin: Origin::Queue(&self.queue),
                message_id: first,
                count: msg.bad_signatures,
            }
            .emit(&stats);
        }
        let mut start = 0;
        for &end in &msg.ends {
            let sample = msg.encoded.get(start..end).unwrap_or_default();
            start = end;
            stats.counts.samples_received.inc();
            match self.batcher.push_encoded(sample) {
                None => self.acks.join_open(tag, self.batcher.pending() - 1),
                // The sample did not fit: it starts the next batch.
                Some(b) if self.batcher.pending() == 1 => {
                    self.send(b).await;
                    self.acks.join_open(tag, 0);
                }
                // The sample completed the batch.
                Some(b) => {
                    self.acks.join_open(tag, b.samples - 1);
                    self.send(b).await;
                }
            }
        }
    }

    /// Seals and sends the open batch, if any.
    async fn flush(&mut self) {
        if let Some(b) = self.batcher.flush() {
            self.send(b).await;
        }
    }

    /// Hands a sealed batch to the dispatchers; its outcome comes back through
    /// `reports`.
    async fn send(&mut self, b: Sealed) {
        let id = self.acks.seal(b.samples);
        let rx = self.src.ctx.fanout.send_wait(b).await;
        self.reports.spawn(async move { (id, rx.await.ok()) });
    }

    async fn perform(&mut self, actions: impl IntoIterator<Item = Action>) -> Result<(), String> {
        for action in actions {
            match action {
                Action::AckUpTo { tag, count } => {
                    self.channel
                        .basic_ack(tag, BasicAckOptions { multiple: true })
                        .await
                        .map_err(|e| format!("basic.ack: {e}"))?;
                    self.src.amqp.amqp_acked.inc_by(count);
                    if let Ok(mut span) = self.src.span.lock()
                        && let Some((_, last)) = span.as_mut()
                    {
                        *last = std::time::Instant::now();
                    }
                }
                Action::Nack {
                    tag,
                    requeue,
                    deliveries,
                    reason,
                } => {
                    MessageNacked {
                        queue: &self.queue,
                        deliveries,
                        requeue,
                        reason: &reason,
                    }
                    .emit(&self.src.amqp);
                    self.channel
                        .basic_nack(
                            tag,
                            BasicNackOptions {
                                multiple: false,
                                requeue,
                            },
                        )
                        .await
                        .map_err(|e| format!("basic.nack: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// Acks the longest prefix of finished deliveries with one `multiple` ack.
    async fn settle(&mut self) -> Result<(), String> {
        let mut action = None;
        self.track(|a| action = a.settle());
        self.perform(action).await
    }
}

impl Drop for Consumer {
    /// A consumer that ends with deliveries unsettled (the connection was lost):
    /// the broker redelivers them, and they are no longer held here.
    fn drop(&mut self) {
        self.src
            .amqp
            .amqp_unacked_deliveries
            .dec_by(self.acks.unsettled() as i64);
    }
}

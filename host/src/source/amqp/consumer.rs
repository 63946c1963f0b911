//! One channel consuming one queue: deliveries are decoded (on the blocking pool),
//! their samples batched and handed to the dispatchers, and the outcomes turned
//! into acks and nacks by the channel's [`AckTracker`]. The task owns all of the
//! channel's state, so a lost connection loses nothing but unacked deliveries,
//! which the broker redelivers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
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
use super::decode::{Verified, decode_and_verify, fnv1a, header_delivery_count};
use crate::batch::{Batcher, Sealed};
use crate::dispatch::BatchReport;
use crate::signature::Signer;
use crate::telemetry::Untrusted;
use crate::wire::oslo;

/// One channel consuming one queue.
pub struct Consumer {
    src: Arc<AmqpSource>,
    channel: Channel,
    queue: String,
    tag: String,
    signer: Signer,
    batcher: Batcher,
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
        loop {
            if draining && self.acks.is_empty() {
                break;
            }
            let deadline = self.batcher.deadline();
            let sleep_until = deadline.unwrap_or_else(|| std::time::Instant::now() + far);
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
                d = deliveries.next(), if !draining => match d {
                    Some(Ok(delivery)) => self.on_delivery(delivery).await?,
                    Some(Err(e)) => return Err(format!("consumer on {}: {e}", self.queue)),
                    None => return Err(format!("consumer on {} was cancelled", self.queue)),
                },
                _ = tokio::time::sleep_until(sleep_until.into()), if deadline.is_some() => self.flush().await,
            }
        }
        let _ = ch.close(200, "collector stopping".into()).await;
        Ok(())
    }

    async fn on_delivery(&mut self, d: lapin::message::Delivery) -> Result<(), String> {
        let stats = self.src.ctx.stats.clone();
        stats.received.inc();
        if let Ok(mut span) = self.src.span.lock() {
            let now = std::time::Instant::now();
            span.get_or_insert((now, now));
        }
        if d.redelivered {
            stats.redelivered.inc();
        }
        let tag = d.delivery_tag;
        let bytes = d.data.len();
        let key_of_body = format!("body:{:016x}", fnv1a(&d.data));
        // Decoding and verifying are CPU work on input from outside: they run on the
        // blocking pool, never on the async workers that serve the admin endpoint,
        // the other consumers and shutdown.
        let signer = self.signer.clone();
        let limits = oslo::Limits {
            max_bytes: self.src.cfg.max_message_bytes,
            max_samples: self.src.cfg.max_samples_per_message,
        };
        let decoded =
            tokio::task::spawn_blocking(move || decode_and_verify(&d.data, &signer, &limits)).await;
        let decoded = match decoded {
            Ok(r) => {
                stats.healthy.store(true, Ordering::Relaxed);
                r
            }
            // A decoder bug this message triggers: count it, and refuse the message
            // for good, or every redelivery would trigger it again.
            Err(e) => {
                if e.is_panic() {
                    stats.worker_panics.inc();
                    stats.healthy.store(false, Ordering::Relaxed);
                    crate::telemetry::count_panic();
                }
                tracing::error!(
                    queue = %self.queue, bytes,
                    "AMQP: the message decoder failed ({e}); rejecting the message without requeue"
                );
                Err(oslo::OsloError::DecoderFailed)
            }
        };
        let msg = match decoded {
            Ok(m) => m,
            Err(e) => {
                stats.malformed.inc();
                if matches!(
                    e,
                    oslo::OsloError::TooLarge { .. } | oslo::OsloError::TooManySamples { .. }
                ) {
                    stats.oversized.inc();
                }
                if let Some(suppressed) = self.src.bad_input.allow() {
                    tracing::warn!(
                        queue = %self.queue, bytes, suppressed,
                        "AMQP: cannot decode message, rejecting it without requeue: {}",
                        Untrusted(&e.to_string())
                    );
                }
                self.track(|a| a.rejected(tag));
                self.channel
                    .basic_reject(tag, BasicRejectOptions { requeue: false })
                    .await
                    .map_err(|e| format!("basic.reject: {e}"))?;
                return self.settle().await;
            }
        };
        let key = msg.unique_id.clone().unwrap_or(key_of_body);
        let broker_count = header_delivery_count(&d.properties).unwrap_or(0);
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
        self.src
            .ctx
            .stats
            .unacked
            .fetch_add(delta, Ordering::Relaxed);
    }

    async fn push_samples(&mut self, tag: u64, msg: Verified) {
        let stats = self.src.ctx.stats.clone();
        if !msg.invalid.is_empty() {
            stats.invalid_samples.add(msg.invalid.len() as u64);
            if let Some(suppressed) = self.src.bad_input.allow() {
                let (i, e) = &msg.invalid[0];
                tracing::warn!(
                    queue = %self.queue, invalid = msg.invalid.len(), suppressed,
                    "AMQP: dropping samples that are not valid (payload[{i}]: {})",
                    Untrusted(&e.to_string())
                );
            }
        }
        if let Some(first) = &msg.first_bad_signature {
            stats.bad_signature.add(msg.bad_signatures);
            if let Some(suppressed) = self.src.bad_input.allow() {
                tracing::warn!(
                    queue = %self.queue, message_id = %Untrusted(first), count = msg.bad_signatures,
                    suppressed, "AMQP: sample signature invalid, discarding"
                );
            }
        }
        for sample in msg.samples {
            stats.samples.inc();
            match self.batcher.push(&sample) {
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
                    self.src.ctx.stats.acked.add(count);
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
                    if requeue {
                        self.src.ctx.stats.requeued.inc();
                        tracing::warn!(
                            queue = %self.queue, deliveries,
                            "AMQP: requeueing a message: {}", Untrusted(&reason)
                        );
                    } else {
                        self.src.ctx.stats.dead_lettered.inc();
                        tracing::error!(
                            queue = %self.queue, deliveries,
                            "AMQP: rejecting a message to the dead-letter exchange (if the queue has one): {}",
                            Untrusted(&reason)
                        );
                    }
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
            .ctx
            .stats
            .unacked
            .fetch_sub(self.acks.unsettled() as i64, Ordering::Relaxed);
    }
}

//! The AMQP source: an oslo.messaging consumer of Ceilometer's notifications
//! (`<topic>.sample`) and RPC casts (`<topic>`, `<topic>.<host>`, fanout), with
//! the topology oslo declares, so it can share a broker with real OpenStack services.
//!
//! Delivery is at-least-once: a message is acked only after every dispatcher took
//! every one of its samples (a message may span batches), with `multiple` acks
//! over the longest finished prefix. A message a dispatcher still fails after its
//! retries is requeued (or dead-lettered); undecodable ones are rejected at once.
//! One task per consumer channel owns all of that channel's state, so a lost
//! connection loses nothing but unacked deliveries, which the broker redelivers.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::batch::Batcher;
use crate::config::{AmqpConfig, BatchConfig, redact_url};
use crate::dispatch::{BatchReport, Fanout};
use crate::signature::Signer;
use crate::telemetry::Untrusted;
use crate::telemetry::{RateLimit, SourceStats};
use crate::wire::oslo::{self, OsloMessage};
use collector_sdk::model::{Sample, SchemaError};

/// Everything the consumers of one source share, across reconnects.
pub struct AmqpSource {
    cfg: AmqpConfig,
    url: String,
    batch: BatchConfig,
    secret: Arc<[u8]>,
    fanout: Fanout,
    stats: Arc<SourceStats>,
    /// Failed deliveries per message (by `_unique_id` or body hash), for `max_deliveries`.
    failures: Arc<Mutex<HashMap<String, u32>>>,
    bad_input: Arc<RateLimit>,
    fanout_queue: String,
    grace: Duration,
    /// First delivery and last ack: the active span, for throughput figures.
    span: Mutex<Option<(std::time::Instant, std::time::Instant)>>,
}

/// How a session (one connection) ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl AmqpSource {
    pub fn new(
        cfg: AmqpConfig,
        url: String,
        batch: BatchConfig,
        secret: Arc<[u8]>,
        fanout: Fanout,
        stats: Arc<SourceStats>,
        grace: Duration,
    ) -> AmqpSource {
        let fanout_queue = format!("{}_fanout_{}", cfg.topic, random_hex32());
        AmqpSource {
            cfg,
            url,
            batch,
            secret,
            fanout,
            stats,
            failures: Arc::default(),
            bad_input: Arc::default(),
            fanout_queue,
            grace,
            span: Mutex::new(None),
        }
    }

    /// The queues this source consumes from.
    pub fn queues(&self) -> Vec<String> {
        let mut q = Vec::new();
        if self.cfg.notifications {
            q.push(format!("{}.sample", self.cfg.topic));
        }
        if self.cfg.rpc {
            q.push(self.cfg.topic.clone());
            q.push(format!("{}.{}", self.cfg.topic, self.cfg.host_name()));
            q.push(self.fanout_queue.clone());
        }
        q
    }

    /// Connects, consumes, reconnects with backoff, until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let redacted = redact_url(&this.url);
        let mut backoff = Duration::from_millis(this.cfg.reconnect_backoff_ms);
        let max_backoff = Duration::from_millis(
            this.cfg
                .reconnect_backoff_max_ms
                .max(this.cfg.reconnect_backoff_ms),
        );
        let mut down_since: Option<std::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let end = match Connection::connect(&this.url, ConnectionProperties::default()).await {
                Ok(conn) => {
                    match down_since.take() {
                        Some(t) => tracing::info!(
                            broker = %redacted, down_ms = t.elapsed().as_millis() as u64,
                            "AMQP is back: connected again"
                        ),
                        None => {
                            tracing::info!(broker = %redacted, queues = ?this.queues(), "AMQP connected")
                        }
                    }
                    this.stats
                        .connected
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    backoff = Duration::from_millis(this.cfg.reconnect_backoff_ms);
                    let end = this.clone().session(&conn, shutdown.clone()).await;
                    this.stats
                        .connected
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    let _ = conn.close(200, "collector stopping".into()).await;
                    end
                }
                Err(e) => SessionEnd::Lost(format!("cannot connect: {e}")),
            };
            match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Lost(reason) => {
                    this.stats.reconnects.inc();
                    down_since.get_or_insert_with(std::time::Instant::now);
                    tracing::warn!(
                        broker = %redacted, retry_in_ms = backoff.as_millis() as u64,
                        "AMQP is down: {reason}; UDP and the dispatchers go on"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => break,
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
        let s = &this.stats;
        tracing::info!(
            received = s.received.get(),
            samples = s.samples.get(),
            malformed = s.malformed.get(),
            invalid_samples = s.invalid_samples.get(),
            bad_signature = s.bad_signature.get(),
            acked = s.acked.get(),
            requeued = s.requeued.get(),
            dead_lettered = s.dead_lettered.get(),
            redelivered = s.redelivered.get(),
            reconnects = s.reconnects.get(),
            active_ms = this
                .span
                .lock()
                .ok()
                .and_then(|g| *g)
                .map_or(0, |(a, b)| b.duration_since(a).as_millis() as u64),
            "AMQP source stopped"
        );
    }

    /// One connection: declare, consume on every queue, until shutdown or a failure.
    async fn session(
        self: Arc<Self>,
        conn: &Connection,
        mut shutdown: watch::Receiver<bool>,
    ) -> SessionEnd {
        if let Err(e) = self.declare(conn).await {
            return SessionEnd::Lost(format!("declaring the topology failed: {e}"));
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut consumers = JoinSet::new();
        for queue in self.queues() {
            for n in 0..self.cfg.channels {
                let channel = match conn.create_channel().await {
                    Ok(c) => c,
                    Err(e) => return SessionEnd::Lost(format!("cannot open a channel: {e}")),
                };
                let consumer = Consumer::new(
                    self.clone(),
                    channel,
                    queue.clone(),
                    format!("collector-{n}"),
                );
                match consumer.start().await {
                    Ok((consumer, deliveries)) => {
                        consumers.spawn(consumer.run(deliveries, stop_rx.clone()));
                    }
                    Err(e) => return SessionEnd::Lost(e),
                }
            }
        }
        tracing::info!(queues = ?self.queues(), channels = self.cfg.channels, "AMQP consuming");
        tokio::select! {
            _ = shutdown.changed() => {
                let _ = stop_tx.send(true);
                let drained = tokio::time::timeout(self.grace, async {
                    while consumers.join_next().await.is_some() {}
                })
                .await;
                if drained.is_err() {
                    tracing::error!(
                        unacked = self.stats.unacked.load(std::sync::atomic::Ordering::Relaxed),
                        "AMQP: dispatchers did not finish within the grace period; the unacked \
                         messages go back to the queue"
                    );
                }
                SessionEnd::Shutdown
            }
            Some(ended) = consumers.join_next() => {
                consumers.abort_all();
                let reason = match ended {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => "a consumer stopped".to_owned(),
                    Err(e) => {
                        if e.is_panic() {
                            self.stats.worker_panics.inc();
                            crate::telemetry::count_panic();
                        }
                        format!("a consumer task failed: {e}; the session starts again")
                    }
                };
                SessionEnd::Lost(reason)
            }
        }
    }

    /// Declares what oslo.messaging declares (or checks it exists, when passive).
    async fn declare(&self, conn: &Connection) -> Result<(), lapin::Error> {
        let ch = conn.create_channel().await?;
        let c = &self.cfg;
        let passive = c.passive;
        let ex = ExchangeDeclareOptions {
            passive,
            durable: c.durable,
            auto_delete: c.auto_delete,
            ..Default::default()
        };
        let q = QueueDeclareOptions {
            passive,
            durable: c.durable,
            auto_delete: c.auto_delete,
            ..Default::default()
        };
        ch.exchange_declare(
            c.exchange.as_str().into(),
            ExchangeKind::Topic,
            ex,
            FieldTable::default(),
        )
        .await?;
        let mut topic_queues = Vec::new();
        if c.notifications {
            topic_queues.push(format!("{}.sample", c.topic));
        }
        if c.rpc {
            topic_queues.push(c.topic.clone());
            topic_queues.push(format!("{}.{}", c.topic, c.host_name()));
        }
        for name in &topic_queues {
            ch.queue_declare(name.as_str().into(), q, FieldTable::default())
                .await?;
            if !passive {
                let (exch, key) = (c.exchange.as_str().into(), name.as_str().into());
                ch.queue_bind(
                    name.as_str().into(),
                    exch,
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            }
        }
        if c.rpc {
            // oslo: fanout exchange auto-deleted, queue non-durable with an expiry.
            let fanout_ex = format!("{}_fanout", c.topic);
            let exo = ExchangeDeclareOptions {
                passive,
                durable: false,
                auto_delete: true,
                ..Default::default()
            };
            ch.exchange_declare(
                fanout_ex.as_str().into(),
                ExchangeKind::Fanout,
                exo,
                FieldTable::default(),
            )
            .await?;
            let mut args = FieldTable::default();
            args.insert(
                "x-expires".into(),
                AMQPValue::LongInt(c.fanout_queue_expires_ms as i32),
            );
            let qo = QueueDeclareOptions {
                durable: false,
                auto_delete: false,
                ..Default::default()
            };
            ch.queue_declare(self.fanout_queue.as_str().into(), qo, args)
                .await?;
            ch.queue_bind(
                self.fanout_queue.as_str().into(),
                fanout_ex.as_str().into(),
                c.topic.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }
}

/// A 32-digit random hex string, like oslo's `uuid.uuid4().hex`.
fn random_hex32() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// Where a delivery stands.
#[derive(Debug)]
struct Pending {
    /// Batches (sealed or still open) holding some of its samples, not yet reported.
    parts: usize,
    /// All its samples are in batches.
    pushed: bool,
    /// A dispatcher failed one of its batches.
    failure: Option<String>,
    /// Finished (acked, nacked or rejected individually, or ready for a multiple ack).
    done: Option<Done>,
    /// For `max_deliveries`.
    key: String,
    delivery_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// Ready to be acked (with `multiple`, once every earlier tag is done too).
    Ack,
    /// Already nacked or rejected on its own.
    Settled,
}

/// One channel consuming one queue; owns that channel's delivery state.
struct Consumer {
    src: Arc<AmqpSource>,
    channel: Channel,
    queue: String,
    tag: String,
    signer: Signer,
    batcher: Batcher,
    /// Deliveries with samples in the open batch, with the index there of the first.
    open: Vec<(u64, u64)>,
    pending: BTreeMap<u64, Pending>,
    /// Sealed batches in flight: id → the deliveries they hold, each with the
    /// indexes of its samples in the batch.
    batches: HashMap<u64, Vec<(u64, Range<u64>)>>,
    next_batch: u64,
    /// Outcomes of sealed batches, by batch id (sent by one small task per batch).
    report_tx: mpsc::UnboundedSender<(u64, BatchReport)>,
    report_rx: mpsc::UnboundedReceiver<(u64, BatchReport)>,
}

impl Consumer {
    fn new(src: Arc<AmqpSource>, channel: Channel, queue: String, tag: String) -> Consumer {
        let signer = Signer::new(&src.secret);
        let batcher = Batcher::new(&src.batch);
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        Consumer {
            src,
            channel,
            queue,
            tag,
            signer,
            batcher,
            open: Vec::new(),
            pending: BTreeMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            report_tx,
            report_rx,
        }
    }

    /// Sets the prefetch and starts consuming.
    async fn start(self) -> Result<(Consumer, lapin::Consumer), String> {
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

    async fn run(
        mut self,
        mut deliveries: lapin::Consumer,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let ch = self.channel.clone();
        let mut draining = false;
        let far = Duration::from_secs(3600);
        loop {
            if draining && self.pending.is_empty() {
                break;
            }
            let deadline = self.batcher.deadline();
            let sleep_until = deadline.unwrap_or_else(|| std::time::Instant::now() + far);
            tokio::select! {
                biased;
                Some((id, report)) = self.report_rx.recv() => self.on_report(id, report).await?,
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
        let stats = &self.src.stats;
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
                stats
                    .healthy
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                r
            }
            // A decoder bug this message triggers: count it, and refuse the message
            // for good, or every redelivery would trigger it again.
            Err(e) => {
                if e.is_panic() {
                    stats.worker_panics.inc();
                    stats
                        .healthy
                        .store(false, std::sync::atomic::Ordering::Relaxed);
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
                self.insert(tag, Pending::settled());
                self.channel
                    .basic_reject(tag, BasicRejectOptions { requeue: false })
                    .await
                    .map_err(|e| format!("basic.reject: {e}"))?;
                return self.settle().await;
            }
        };
        let key = msg.unique_id.clone().unwrap_or(key_of_body);
        let delivery_count = header_delivery_count(&d.properties).unwrap_or(0);
        self.insert(
            tag,
            Pending {
                parts: 0,
                pushed: false,
                failure: None,
                done: None,
                key,
                delivery_count,
            },
        );
        self.push_samples(tag, msg).await;
        if let Some(p) = self.pending.get_mut(&tag) {
            p.pushed = true;
        }
        self.check(tag).await?;
        self.settle().await
    }

    async fn push_samples(&mut self, tag: u64, msg: Verified) {
        let stats = self.src.stats.clone();
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
                None => self.join_open(tag, self.batcher.pending() - 1),
                // The sample did not fit: it starts the next batch.
                Some(b) if self.batcher.pending() == 1 => {
                    self.send(b).await;
                    self.join_open(tag, 0);
                }
                // The sample completed the batch.
                Some(b) => {
                    self.join_open(tag, b.samples - 1);
                    self.send(b).await;
                }
            }
        }
    }

    fn insert(&mut self, tag: u64, p: Pending) {
        if self.pending.insert(tag, p).is_none() {
            self.src
                .stats
                .unacked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Records that `tag` has samples in the open batch, from index `first` on.
    fn join_open(&mut self, tag: u64, first: u64) {
        if self.open.last().map(|(t, _)| *t) != Some(tag) {
            self.open.push((tag, first));
            if let Some(p) = self.pending.get_mut(&tag) {
                p.parts += 1;
            }
        }
    }

    /// Seals and sends the open batch, if any.
    async fn flush(&mut self) {
        if let Some(b) = self.batcher.flush() {
            self.send(b).await;
        }
    }

    /// Hands a sealed batch (holding the `open` deliveries) to the dispatchers.
    async fn send(&mut self, b: crate::batch::Sealed) {
        let id = self.next_batch;
        self.next_batch += 1;
        let open = std::mem::take(&mut self.open);
        let ends = open
            .iter()
            .skip(1)
            .map(|(_, first)| *first)
            .chain([b.samples]);
        let held = open
            .iter()
            .zip(ends)
            .map(|((tag, first), end)| (*tag, *first..end))
            .collect();
        self.batches.insert(id, held);
        let rx = self.src.fanout.send_wait(b).await;
        let tx = self.report_tx.clone();
        tokio::spawn(async move {
            if let Ok(report) = rx.await {
                let _ = tx.send((id, report));
            }
        });
    }

    async fn on_report(&mut self, id: u64, report: BatchReport) -> Result<(), String> {
        let Some(held) = self.batches.remove(&id) else {
            return Ok(());
        };
        for (tag, samples) in held {
            if let Some(p) = self.pending.get_mut(&tag) {
                p.parts = p.parts.saturating_sub(1);
                // Only the messages holding samples a dispatcher failed pay for it.
                if let Some(f) = report.failure_for(&samples)
                    && p.failure.is_none()
                {
                    p.failure = Some(format!("dispatcher {}: {}", f.dispatcher, f.reason));
                }
            }
            self.check(tag).await?;
        }
        self.settle().await
    }

    /// Finishes a delivery whose samples have all been reported on.
    async fn check(&mut self, tag: u64) -> Result<(), String> {
        let Some(p) = self.pending.get_mut(&tag) else {
            return Ok(());
        };
        if p.done.is_some() || !p.pushed || p.parts > 0 {
            return Ok(());
        }
        let Some(reason) = p.failure.take() else {
            p.done = Some(Done::Ack);
            return Ok(());
        };
        p.done = Some(Done::Settled);
        let cfg = &self.src.cfg;
        let deliveries = {
            let mut f = self
                .src
                .failures
                .lock()
                .map_err(|_| "failure table poisoned".to_owned())?;
            if f.len() > 100_000 {
                f.clear();
            }
            let n = f.entry(p.key.clone()).or_insert(0);
            *n += 1;
            (*n).max(p.delivery_count + 1)
        };
        let give_up = cfg.max_deliveries > 0 && deliveries >= cfg.max_deliveries;
        let requeue = cfg.requeue_on_dispatcher_error && !give_up;
        if requeue {
            self.src.stats.requeued.inc();
            tracing::warn!(queue = %self.queue, deliveries, "AMQP: requeueing a message: {}", Untrusted(&reason));
        } else {
            self.src.stats.dead_lettered.inc();
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
            .map_err(|e| format!("basic.nack: {e}"))
    }

    /// Acks the longest prefix of finished deliveries with one `multiple` ack.
    async fn settle(&mut self) -> Result<(), String> {
        let mut last_ack = None;
        let mut acked = 0;
        let before = self.pending.len();
        while let Some(entry) = self.pending.first_entry() {
            match entry.get().done {
                None => break,
                Some(Done::Ack) => {
                    last_ack = Some(*entry.key());
                    acked += 1;
                    entry.remove();
                }
                Some(Done::Settled) => {
                    entry.remove();
                }
            }
        }
        let settled = (before - self.pending.len()) as i64;
        self.src
            .stats
            .unacked
            .fetch_sub(settled, std::sync::atomic::Ordering::Relaxed);
        if let Some(tag) = last_ack {
            self.channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .map_err(|e| format!("basic.ack: {e}"))?;
            self.src.stats.acked.add(acked);
            if let Ok(mut span) = self.src.span.lock()
                && let Some((_, last)) = span.as_mut()
            {
                *last = std::time::Instant::now();
            }
        }
        Ok(())
    }
}

impl Drop for Consumer {
    /// A consumer that ends with deliveries unsettled (the connection was lost):
    /// the broker redelivers them, and they are no longer held here.
    fn drop(&mut self) {
        self.src.stats.unacked.fetch_sub(
            self.pending.len() as i64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl Pending {
    fn settled() -> Pending {
        Pending {
            parts: 0,
            pushed: true,
            failure: None,
            done: Some(Done::Settled),
            key: String::new(),
            delivery_count: 0,
        }
    }
}

/// A decoded message whose samples passed their signature check.
struct Verified {
    unique_id: Option<String>,
    /// The samples with a valid signature, in payload order.
    samples: Vec<Sample>,
    invalid: Vec<(usize, SchemaError)>,
    /// Samples dropped for a bad signature, and the `message_id` of the first (for the log).
    bad_signatures: u64,
    first_bad_signature: Option<String>,
}

/// Decodes a message body and verifies its samples: CPU work, for the blocking pool.
fn decode_and_verify(
    body: &[u8],
    signer: &Signer,
    limits: &oslo::Limits,
) -> Result<Verified, oslo::OsloError> {
    let OsloMessage {
        unique_id,
        samples,
        invalid,
        ..
    } = oslo::decode_message_within(body, limits)?;
    let mut out = Verified {
        unique_id,
        samples: Vec::with_capacity(samples.len()),
        invalid,
        bad_signatures: 0,
        first_bad_signature: None,
    };
    for sample in samples {
        if signer.verify(&sample) {
            out.samples.push(sample);
        } else {
            out.bad_signatures += 1;
            out.first_bad_signature.get_or_insert(sample.message_id);
        }
    }
    Ok(out)
}

/// `x-delivery-count` (quorum queues count deliveries for us).
fn header_delivery_count(p: &lapin::BasicProperties) -> Option<u32> {
    let headers = p.headers().as_ref()?;
    let v = headers
        .inner()
        .iter()
        .find(|(k, _)| k.as_str() == "x-delivery-count")
        .map(|(_, v)| v)?;
    match v {
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(*n),
        _ => None,
    }
}

/// FNV-1a: a stable key for messages without `_unique_id`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

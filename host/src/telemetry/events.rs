//! What happens in the daemon that an operator must be able to see: each event
//! is a struct whose `emit` counts it and logs it, in one place, so that a log
//! line and its counter cannot drift apart. It logs under the target of the part
//! it is about (`collector::source::udp`, `collector::dispatch`, …), so that
//! `RUST_LOG` filters as it would without this module. Call sites say what happened;
//! warnings about input from outside go through the owner's rate limit, and
//! every value from outside is shown through [`Untrusted`].

use std::fmt::{Debug, Display};
use std::net::SocketAddr;
use std::time::Duration;

use super::{
    AmqpMetrics, DaemonMetrics, DispatcherStats, HttpMetrics, SourceStats, TcpMetrics, Untrusted,
};

/// Where a piece of input came from.
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    Peer(SocketAddr),
    Queue(&'a str),
    Tcp(SocketAddr),
}

impl Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Peer(p) => write!(f, "UDP from {p}"),
            Origin::Queue(q) => write!(f, "AMQP queue {q}"),
            Origin::Tcp(p) => write!(f, "TCP from {p}"),
        }
    }
}

/// A datagram that is not a Ceilometer sample.
pub struct DatagramUndecodable<'a> {
    pub peer: SocketAddr,
    pub bytes: usize,
    pub error: &'a dyn Display,
}

impl DatagramUndecodable<'_> {
    pub fn emit(self, s: &SourceStats) {
        s.counts.decode_errors.inc();
        if let Some(suppressed) = s.warn.allow() {
            tracing::warn!(
                target: "collector::source::udp",
                peer = %self.peer, bytes = self.bytes, suppressed,
                "UDP: cannot decode datagram: {}", Untrusted(&self.error.to_string())
            );
        }
    }
}

/// A TCP frame whose msgpack is not a Ceilometer sample: dropped, the
/// connection goes on (its framing is intact).
pub struct FrameUndecodable<'a> {
    pub peer: SocketAddr,
    pub bytes: usize,
    pub error: &'a dyn Display,
}

impl FrameUndecodable<'_> {
    pub fn emit(self, s: &SourceStats) {
        s.counts.decode_errors.inc();
        if let Some(suppressed) = s.warn.allow() {
            tracing::warn!(
                target: "collector::source::tcp",
                peer = %self.peer, bytes = self.bytes, suppressed,
                "TCP: cannot decode frame: {}", Untrusted(&self.error.to_string())
            );
        }
    }
}

/// A TCP connection closed for its framing: what it sent after is lost.
pub struct FrameRefused<'a> {
    pub peer: SocketAddr,
    pub why: &'a str,
}

impl FrameRefused<'_> {
    pub fn emit(self, s: &SourceStats, tcp: &TcpMetrics) {
        s.counts.decode_errors.inc();
        tcp.tcp_frames_refused.inc();
        if let Some(suppressed) = s.warn.allow() {
            tracing::warn!(
                target: "collector::source::tcp",
                peer = %self.peer, suppressed,
                "TCP: closing the connection: {}", self.why
            );
        }
    }
}

/// An HTTP request refused with a 4xx for what it is (its body, method, size
/// or credentials); nothing of it was dispatched.
pub struct RequestRefused<'a> {
    pub peer: SocketAddr,
    pub status: u16,
    pub why: &'a dyn Display,
    /// Its body could not be read as samples (counted as a decode error).
    pub undecodable: bool,
    /// It lacked the configured credentials.
    pub unauthorized: bool,
}

impl RequestRefused<'_> {
    pub fn emit(self, s: &SourceStats, http: &HttpMetrics) {
        http.http_requests_refused.inc();
        if self.undecodable {
            s.counts.decode_errors.inc();
        }
        if self.unauthorized {
            http.http_auth_failures.inc();
        }
        if let Some(suppressed) = s.warn.allow() {
            tracing::warn!(
                target: "collector::source::http",
                peer = %self.peer, status = self.status, suppressed,
                "HTTP: refusing a request: {}", Untrusted(&self.why.to_string())
            );
        }
    }
}

/// An HTTP request whose decoded samples were not taken: 422 (a dispatcher
/// rejected them), 503 (not taken within `hold_timeout_ms`), or never
/// answered because the client went away (499, as nginx logs it).
pub struct SamplesRefused<'a> {
    pub peer: SocketAddr,
    pub status: u16,
    pub samples: u64,
    pub why: &'a str,
}

impl SamplesRefused<'_> {
    pub fn emit(self, s: &SourceStats, http: &HttpMetrics) {
        http.http_samples_refused.inc_by(self.samples);
        match self.status {
            503 => http.http_requests_unavailable.inc(),
            499 => 0,
            _ => http.http_requests_refused.inc(),
        };
        if let Some(suppressed) = s.warn.allow() {
            tracing::warn!(
                target: "collector::source::http",
                peer = %self.peer, status = self.status, samples = self.samples, suppressed,
                "HTTP: samples not taken: {}", Untrusted(self.why)
            );
        }
    }
}

/// An AMQP message that is not an oslo.messaging envelope of samples, or is
/// over a size limit. It is rejected without requeue.
pub struct MessageUndecodable<'a> {
    pub queue: &'a str,
    pub bytes: usize,
    pub error: &'a dyn Display,
    /// Over `max_message_bytes` or `max_samples_per_message`.
    pub oversized: bool,
}

impl MessageUndecodable<'_> {
    pub fn emit(self, s: &SourceStats, amqp: &AmqpMetrics) {
        s.counts.decode_errors.inc();
        if self.oversized {
            amqp.amqp_oversized.inc();
        }
        if let Some(suppressed) = s.warn.allow() {
            tracing::warn!(
                target: "collector::source::amqp",
                queue = %self.queue, bytes = self.bytes, suppressed,
                "AMQP: cannot decode message, rejecting it without requeue: {}",
                Untrusted(&self.error.to_string())
            );
        }
    }
}

/// Samples whose signature does not verify: dropped.
pub struct SignatureInvalid<'a> {
    pub origin: Origin<'a>,
    /// The first one's `message_id`.
    pub message_id: &'a str,
    pub count: u64,
}

impl SignatureInvalid<'_> {
    pub fn emit(self, s: &SourceStats) {
        s.counts.bad_signatures.inc_by(self.count);
        if let Some(suppressed) = s.warn.allow() {
            tracing::warn!(
                target: "collector::source",
                origin = %self.origin, message_id = %Untrusted(self.message_id), count = self.count,
                suppressed, "Sample signature invalid, discarding"
            );
        }
    }
}

/// Dicts of a message that are not valid samples: dropped, the rest go on.
pub struct SamplesInvalid<'a> {
    pub queue: &'a str,
    pub count: u64,
    /// The first one: its index in the payload, and why.
    pub first: (usize, &'a dyn Display),
}

impl SamplesInvalid<'_> {
    pub fn emit(self, s: &SourceStats) {
        s.counts.invalid_samples.inc_by(self.count);
        if let Some(suppressed) = s.warn.allow() {
            let (i, e) = self.first;
            tracing::warn!(
                target: "collector::source::amqp",
                queue = %self.queue, invalid = self.count, suppressed,
                "AMQP: dropping samples that are not valid (payload[{i}]: {})",
                Untrusted(&e.to_string())
            );
        }
    }
}

/// Why datagrams were dropped after they were read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropCause {
    /// Every decoder's queue was full.
    Saturated,
    /// The shutdown deadline for decoding had passed.
    Shutdown,
    /// Skipped after a decoder panicked on their chunk (logged by the panic).
    Panic,
}

/// Datagrams read but never decoded.
pub struct DatagramsDropped {
    pub count: u64,
    pub cause: DropCause,
}

impl DatagramsDropped {
    pub fn emit(self, s: &SourceStats) {
        s.counts.input_dropped.inc_by(self.count);
        if self.cause == DropCause::Saturated
            && let Some(suppressed) = s.warn.allow()
        {
            tracing::warn!(
                target: "collector::source::udp",
                dropped = self.count,
                suppressed,
                "UDP decoders are saturated: datagrams dropped"
            );
        }
    }
}

/// A panic caught in a source's worker; the source goes on (or restarts it) and
/// shows unhealthy until it handles input again without one.
pub struct SourceWorkerPanicked<'a> {
    /// What was lost, and what happens next.
    pub detail: &'a str,
}

impl SourceWorkerPanicked<'_> {
    pub fn emit(self, s: &SourceStats) {
        // Unhealthy first: whoever sees the count sees the state too.
        s.counts.source_healthy.set(false);
        s.counts.source_worker_panics.inc();
        s.panics_total.inc();
        tracing::error!(
            target: "collector::source",
            source = s.name,
            panics = s.counts.source_worker_panics.get(),
            "A worker of the {} source panicked: {}",
            s.name,
            self.detail
        );
    }
}

/// Connected to the broker, first or again.
pub struct AmqpConnected<'a> {
    pub broker: &'a str,
    pub queues: &'a [String],
    /// How long it was down, when this is a reconnect.
    pub down_for: Option<Duration>,
}

impl AmqpConnected<'_> {
    pub fn emit(self, amqp: &AmqpMetrics) {
        amqp.amqp_connected.inc();
        match self.down_for {
            Some(d) => tracing::info!(
                target: "collector::source::amqp",
                broker = %self.broker, down_ms = d.as_millis() as u64,
                "AMQP is back: connected again"
            ),
            None => {
                tracing::info!(target: "collector::source::amqp", broker = %self.broker, queues = ?self.queues, "AMQP connected")
            }
        }
    }
}

/// The connection was lost or refused; the source tries again after `retry_in`.
pub struct AmqpDown<'a> {
    pub broker: &'a str,
    pub reason: &'a str,
    pub retry_in: Duration,
}

impl AmqpDown<'_> {
    pub fn emit(self, amqp: &AmqpMetrics) {
        amqp.amqp_reconnects.inc();
        tracing::warn!(
            target: "collector::source::amqp",
            broker = %self.broker, retry_in_ms = self.retry_in.as_millis() as u64,
            "AMQP is down: {}; UDP and the dispatchers go on", self.reason
        );
    }
}

/// A message a dispatcher failed, sent back to its queue (or, past
/// `max_deliveries`, to the dead-letter exchange).
pub struct MessageNacked<'a> {
    pub queue: &'a str,
    pub deliveries: u32,
    pub requeue: bool,
    pub reason: &'a str,
}

impl MessageNacked<'_> {
    pub fn emit(self, amqp: &AmqpMetrics) {
        if self.requeue {
            amqp.amqp_requeued.inc();
            tracing::warn!(
                target: "collector::source::amqp",
                queue = %self.queue, deliveries = self.deliveries,
                "AMQP: requeueing a message: {}", Untrusted(self.reason)
            );
        } else {
            amqp.amqp_dead_lettered.inc();
            tracing::error!(
                target: "collector::source::amqp",
                queue = %self.queue, deliveries = self.deliveries,
                "AMQP: rejecting a message to the dead-letter exchange (if the queue has one): {}",
                Untrusted(self.reason)
            );
        }
    }
}

/// A batch a dispatcher's plugin took.
pub struct BatchDispatched {
    pub samples: u64,
    pub elapsed: Duration,
}

impl BatchDispatched {
    pub fn emit(self, d: &DispatcherStats) {
        d.counts.batches_ok.inc();
        d.counts.samples_ok.inc_by(self.samples);
        d.dispatch_duration_seconds
            .observe(self.elapsed.as_secs_f64());
    }
}

/// A batch that failed for one dispatcher, in whole or in part.
pub struct DispatchFailed<'a> {
    pub samples: u64,
    /// Of which failed (the others were taken).
    pub failed: u64,
    pub reason: &'a str,
    /// Time the plugin spent on it, when it was served at all.
    pub elapsed: Option<Duration>,
}

impl DispatchFailed<'_> {
    pub fn emit(self, d: &DispatcherStats) {
        // The reason first: whoever sees the failure counted (/status) sees why.
        let shown = Untrusted(self.reason).to_string();
        if let Ok(mut last) = d.last_error.lock() {
            *last = Some(shown.clone());
        }
        d.counts.batches_failed.inc();
        d.counts.samples_failed.inc_by(self.failed);
        d.counts
            .samples_ok
            .inc_by(self.samples.saturating_sub(self.failed));
        if let Some(t) = self.elapsed {
            d.dispatch_duration_seconds.observe(t.as_secs_f64());
        }
        if let Some(suppressed) = d.warn.allow() {
            tracing::error!(
                target: "collector::dispatch",
                dispatcher = %d.name, samples = self.samples, failed = self.failed, suppressed,
                "Batch failed for this dispatcher: {shown}"
            );
        }
    }
}

/// A batch not queued because the dispatcher's queue was full: it fails for
/// this dispatcher (UDP cannot wait).
pub struct BatchDropped {
    pub samples: u64,
}

impl BatchDropped {
    pub fn emit(self, d: &DispatcherStats) {
        d.counts.batches_dropped.inc();
        d.counts.samples_failed.inc_by(self.samples);
        if let Some(suppressed) = d.warn.allow() {
            tracing::warn!(
                target: "collector::dispatch",
                dispatcher = %d.name, samples = self.samples, suppressed,
                "Dispatcher queue full: batch dropped for this dispatcher"
            );
        }
    }
}

/// The plugin answered `retry`; the worker waits and calls again.
pub struct PluginRetried<'a> {
    pub retries: u32,
    pub message: &'a str,
}

impl PluginRetried<'_> {
    pub fn emit(self, d: &DispatcherStats) {
        d.counts.plugin_retries.inc();
        tracing::debug!(
            target: "collector::dispatch",
            dispatcher = %d.name, retries = self.retries,
            "Plugin asked to retry: {}", Untrusted(self.message)
        );
    }
}

/// A rejected batch tried again in parts.
pub struct BatchSplit {
    pub samples: u64,
    pub failed: u64,
    pub calls: u32,
}

impl BatchSplit {
    pub fn emit(self, d: &DispatcherStats) {
        d.counts.batches_split.inc();
        tracing::debug!(
            target: "collector::dispatch",
            dispatcher = %d.name, samples = self.samples, failed = self.failed, calls = self.calls,
            "Rejected batch tried in parts"
        );
    }
}

/// `collector_snapshot` failed: the instance is replaced, and resumes from the
/// previous state.
pub struct SnapshotFailed<'a> {
    pub version: &'a str,
    pub error: &'a dyn Display,
    pub in_a_row: u32,
    /// This failure made the version's snapshots stop.
    pub gave_up: bool,
}

impl SnapshotFailed<'_> {
    pub fn emit(self, d: &DispatcherStats) {
        d.counts.snapshot_failures.inc();
        let error = Untrusted(&self.error.to_string()).to_string();
        if self.gave_up {
            tracing::error!(
                target: "collector::plugin::handoff",
                dispatcher = %d.name, version = %self.version, failures = self.in_a_row,
                "collector_snapshot {error}; it failed {} times in a row, so the state of this \
                 version is no longer saved (a new version starts saving again)",
                self.in_a_row
            );
        } else if let Some(suppressed) = d.warn.allow() {
            tracing::error!(
                target: "collector::plugin::handoff",
                dispatcher = %d.name, version = %self.version, suppressed,
                "collector_snapshot {error}: the instance is replaced and resumes from the previous state"
            );
        }
    }
}

/// What became of an instance whose `collector_restore` failed.
#[derive(Clone, Copy, Debug)]
pub enum RestoreFallback {
    /// The new version does not start on this thread; the old one keeps serving.
    KeptOldVersion,
    /// The plugin starts without the saved state.
    StartedWithoutState,
}

/// A new instance that could not take the saved state.
pub struct RestoreFailed<'a> {
    pub version: &'a str,
    pub error: &'a dyn Display,
    pub fallback: RestoreFallback,
}

impl RestoreFailed<'_> {
    pub fn emit(self, d: &DispatcherStats) {
        d.counts.restore_failures.inc();
        let error = Untrusted(&self.error.to_string()).to_string();
        match self.fallback {
            RestoreFallback::KeptOldVersion => tracing::error!(
                target: "collector::plugin::handoff",
                dispatcher = %d.name, version = %self.version,
                "The new plugin version could not take the saved state on this thread; it keeps \
                 serving the old one: {error}"
            ),
            RestoreFallback::StartedWithoutState => tracing::warn!(
                target: "collector::plugin::handoff",
                dispatcher = %d.name, version = %self.version,
                "The saved state was not restored, the plugin starts without it: {error}"
            ),
        }
    }
}

/// A panic caught in a dispatcher's worker: the batch failed, the worker starts
/// again with a new instance, and shows unhealthy until it completes a batch.
pub struct DispatcherWorkerPanicked<'a> {
    pub thread: usize,
    pub what: &'a str,
}

impl DispatcherWorkerPanicked<'_> {
    /// Returns the reason the batch failed.
    pub fn emit(self, d: &DispatcherStats) -> String {
        d.counts.dispatcher_healthy.set(false);
        d.counts.dispatcher_worker_panics.inc();
        d.panics_total.inc();
        let why = format!("dispatcher worker panicked: {}", Untrusted(self.what));
        if let Ok(mut last) = d.last_error.lock() {
            *last = Some(why.clone());
        }
        tracing::error!(
            target: "collector::dispatch",
            dispatcher = %d.name, thread = self.thread, panics = d.counts.dispatcher_worker_panics.get(),
            "{why}; the batch failed, the worker starts again with a new instance"
        );
        why
    }
}

/// An HTTP request of a plugin that the host refused to send.
pub struct EgressRefused<'a> {
    pub dispatcher: &'a str,
    /// The endpoint name the plugin gave (from the plugin: shown escaped).
    pub endpoint: &'a str,
    pub why: &'a str,
}

impl EgressRefused<'_> {
    pub fn emit(self, refused: &super::Counter, warn: &super::RateLimit) {
        refused.inc();
        if let Some(suppressed) = warn.allow() {
            tracing::warn!(
                target: "collector::egress",
                dispatcher = %self.dispatcher, endpoint = %Untrusted(self.endpoint), suppressed,
                "Plugin HTTP request refused: {}", Untrusted(self.why)
            );
        }
    }
}

/// A new plugin version passed its trial and is published.
pub struct PluginReloaded<'a> {
    pub dispatcher: &'a str,
    pub file: &'a dyn Display,
    pub version: &'a str,
    pub previous: &'a str,
    pub load: Duration,
}

impl PluginReloaded<'_> {
    pub fn emit(self, m: &DaemonMetrics) {
        m.plugin_reloads.inc();
        tracing::info!(
            target: "collector::plugin::reload",
            dispatcher = %self.dispatcher, file = %self.file, version = %self.version,
            previous = %self.previous, load_ms = self.load.as_millis() as u64,
            "Plugin reloaded: the next batch goes to the new version"
        );
    }
}

/// A plugin file that could not be loaded: the old version keeps serving.
pub struct PluginReloadFailed<'a> {
    pub dispatcher: &'a str,
    pub file: &'a dyn Display,
    pub kept: &'a str,
    pub error: &'a dyn Display,
}

impl PluginReloadFailed<'_> {
    pub fn emit(self, m: &DaemonMetrics) {
        m.plugin_reload_failures.inc();
        tracing::error!(
            target: "collector::plugin::reload",
            dispatcher = %self.dispatcher, file = %self.file, kept = %self.kept,
            "Plugin reload failed, the old version keeps serving: {}",
            Untrusted::capped(&self.error.to_string(), 1024)
        );
    }
}

/// A new configuration took over.
pub struct ConfigReloaded<'a> {
    pub why: &'a dyn Debug,
    pub dispatchers: &'a [String],
    pub removed: &'a [String],
    pub sources_restarted: bool,
}

impl ConfigReloaded<'_> {
    pub fn emit(self, m: &DaemonMetrics) {
        m.config_reloads_applied.inc();
        if self.sources_restarted {
            m.source_restarts.inc();
        }
        tracing::info!(
            target: "collector::daemon",
            why = ?self.why, dispatchers = ?self.dispatchers, removed = ?self.removed,
            sources_restarted = self.sources_restarted, "Config reloaded"
        );
    }
}

/// A configuration that could not be applied: the running one stays.
pub struct ConfigReloadRefused<'a> {
    pub why: &'a dyn Debug,
    pub error: &'a dyn Display,
}

impl ConfigReloadRefused<'_> {
    pub fn emit(self, m: &DaemonMetrics) {
        m.config_reloads_refused.inc();
        tracing::error!(
            target: "collector::daemon",
            why = ?self.why,
            "Config reload refused, the running configuration stays: {}", self.error
        );
    }
}

/// `accept` failed on the admin endpoint; it pauses before the next one.
pub struct AdminAcceptFailed<'a> {
    pub error: &'a std::io::Error,
    pub retry_in: Duration,
    pub suppressed: Option<u64>,
}

impl AdminAcceptFailed<'_> {
    pub fn emit(self, m: &DaemonMetrics) {
        m.admin_accept_errors.inc();
        if let Some(suppressed) = self.suppressed {
            tracing::warn!(
                target: "collector::admin",
                error = %self.error, suppressed, retry_in_ms = self.retry_in.as_millis() as u64,
                "Admin endpoint cannot accept a connection"
            );
        }
    }
}

//! Every counter and gauge the daemon keeps, declared once with its name and help.
//!
//! A field's name is the metric's name after `collector_` (and before `_total`,
//! for a counter), the key in `/status` and the key in the shutdown summary: one
//! name everywhere. Each set is a group of prometheus-client `Family`s registered
//! once, when the daemon starts; an owner (a source, a dispatcher) takes its
//! handles from them, and whoever counts holds those handles: `/metrics`,
//! `/status` and the summary read the very same atomics.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use serde_json::Value;

/// A monotonically increasing count.
pub type Counter = prometheus_client::metrics::counter::Counter<u64, AtomicU64>;
/// A value that goes up and down.
pub type Gauge = prometheus_client::metrics::gauge::Gauge<i64, AtomicI64>;

/// A yes/no gauge: 1 or 0 in `/metrics`, `true` or `false` in `/status`.
#[derive(Clone, Debug, Default)]
pub struct Flag(Gauge);

impl Flag {
    pub fn set(&self, on: bool) {
        self.0.set(i64::from(on));
    }
    pub fn get(&self) -> bool {
        self.0.get() != 0
    }
}

impl TypedMetric for Flag {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for Flag {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// How a metric reads in `/status` and in the shutdown summary.
pub trait Reading {
    fn reading(&self) -> Value;
}

impl Reading for Counter {
    fn reading(&self) -> Value {
        self.get().into()
    }
}

impl Reading for Gauge {
    fn reading(&self) -> Value {
        self.get().into()
    }
}

impl Reading for Flag {
    fn reading(&self) -> Value {
        self.get().into()
    }
}

/// The label that tells owners apart in a family.
pub trait Owner: EncodeLabelSet + Clone + Hash + Eq + Debug + Send + Sync + 'static {
    fn of(name: &str) -> Self;
}

/// `source="udp"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct SourceLabel {
    source: String,
}

impl Owner for SourceLabel {
    fn of(name: &str) -> Self {
        SourceLabel {
            source: name.to_owned(),
        }
    }
}

/// `dispatcher="file"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct DispatcherLabel {
    dispatcher: String,
}

impl Owner for DispatcherLabel {
    fn of(name: &str) -> Self {
        DispatcherLabel {
            dispatcher: name.to_owned(),
        }
    }
}

/// `dispatcher="gnocchi", endpoint="api"`; its owner name is `dispatcher:endpoint`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct EndpointLabel {
    dispatcher: String,
    endpoint: String,
}

impl Owner for EndpointLabel {
    fn of(name: &str) -> Self {
        let (dispatcher, endpoint) = name.split_once(':').unwrap_or((name, ""));
        EndpointLabel {
            dispatcher: dispatcher.to_owned(),
            endpoint: endpoint.to_owned(),
        }
    }
}

/// No label: the daemon's own figures, one series each.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct Whole {}

impl Owner for Whole {
    fn of(_: &str) -> Self {
        Whole {}
    }
}

/// Declares a set: the handles one owner counts with, and the families they
/// belong to (`register` once, `handles` per owner, `remove` when it goes).
macro_rules! metric_set {
    (
        $(#[$meta:meta])*
        $handles:ident in $families:ident by $label:ty {
            $($field:ident: $kind:ty = $help:literal,)*
        }
    ) => {
        #[doc = concat!("The families of [`", stringify!($handles), "`], registered once.")]
        #[derive(Debug)]
        pub struct $families {
            $($field: Family<$label, $kind>,)*
        }

        impl $families {
            pub(super) fn register(registry: &mut Registry) -> Self {
                let families = $families { $($field: Family::default(),)* };
                $(registry.register(stringify!($field), $help, families.$field.clone());)*
                families
            }

            /// Owner `name`'s handles: they count into these families from where
            /// the owner's series stand (an owner of the same name before it, a
            /// source restarted by a config reload, goes on counting).
            pub fn handles(&self, name: &str) -> $handles {
                let label = <$label as Owner>::of(name);
                $handles { $($field: self.$field.get_or_create_owned(&label),)* }
            }

            /// Takes owner `name`'s series out of `/metrics`.
            pub fn remove(&self, name: &str) {
                let label = <$label as Owner>::of(name);
                $(self.$field.remove(&label);)*
            }
        }

        $(#[$meta])*
        #[derive(Clone, Debug, Default)]
        pub struct $handles {
            $(#[doc = $help] pub $field: $kind,)*
        }

        impl $handles {
            /// Every value by its name, for `/status` and the shutdown summary.
            pub fn readings(&self) -> Vec<(&'static str, Value)> {
                vec![$((stringify!($field), self.$field.reading()),)*]
            }
        }
    };
}

metric_set! {
    /// What a source received and refused.
    SourceMetrics in SourceFamilies by SourceLabel {
        messages_received: Counter = "Datagrams or AMQP messages read",
        samples_received: Counter = "Samples accepted (decoded, signature verified) into batches",
        decode_errors: Counter = "Datagrams or messages that could not be decoded (bad msgpack or JSON, not a map, wrong schema, over a size limit)",
        bad_signatures: Counter = "Samples dropped because their signature did not verify",
        invalid_samples: Counter = "Dicts in an AMQP message that are not valid samples (dropped; the rest of the message goes on)",
        input_dropped: Counter = "Datagrams read but dropped: every decoder was saturated, or the shutdown deadline had passed",
        source_worker_panics: Counter = "Panics caught in a source's decoder threads or consumer tasks (each went on or was restarted)",
        source_healthy: Flag = "0 from a worker panic until the source handles input again without one",
    }
}

metric_set! {
    /// What the AMQP source did with its deliveries and its connection.
    AmqpMetrics in AmqpFamilies by SourceLabel {
        amqp_oversized: Counter = "AMQP messages refused for max_message_bytes or max_samples_per_message (also decode errors)",
        amqp_acked: Counter = "AMQP messages acked after every dispatcher took their samples",
        amqp_requeued: Counter = "AMQP messages requeued after a dispatcher failed them",
        amqp_dead_lettered: Counter = "AMQP messages rejected without requeue after max_deliveries failures",
        amqp_redelivered: Counter = "AMQP deliveries the broker flagged as redelivered (duplicates come from these)",
        amqp_reconnects: Counter = "AMQP connections lost or refused",
        amqp_connected: Gauge = "AMQP connections up: 1 while connected (2 for a moment while a config reload replaces the source)",
        amqp_unacked_deliveries: Gauge = "AMQP deliveries held, not yet acked or rejected",
    }
}

metric_set! {
    /// A TCP source's connections and frames.
    TcpMetrics in TcpFamilies by SourceLabel {
        tcp_connections: Counter = "TCP connections accepted",
        tcp_connections_open: Gauge = "TCP connections open now",
        tcp_frames_refused: Counter = "TCP frames that closed their connection: a length over max_frame_bytes, cut short by the peer, or stalled past frame_timeout_ms",
        tcp_idle_closed: Counter = "TCP connections closed after idle_timeout_ms without a byte",
        tcp_backpressure_ms: Counter = "Milliseconds the TCP source stopped reading to wait for room in the dispatchers' queues",
    }
}

metric_set! {
    /// What an HTTP source answered.
    HttpMetrics in HttpFamilies by SourceLabel {
        http_requests_ok: Counter = "HTTP requests answered 2xx: every dispatcher took their samples",
        http_requests_refused: Counter = "HTTP requests answered 4xx: a bad body, method, size or credentials, or (422) a dispatcher rejected their samples",
        http_requests_unavailable: Counter = "HTTP requests answered 503 with Retry-After: the dispatchers did not take their samples within hold_timeout_ms",
        http_samples_refused: Counter = "Samples of HTTP requests answered 422 or 503, or whose client went away unanswered (decoded, not taken; the publisher drops them)",
        http_auth_failures: Counter = "HTTP requests without the configured basic credentials (answered 401)",
        http_requests_held: Gauge = "HTTP requests waiting for the dispatchers now",
    }
}

metric_set! {
    /// What the kernel says about a UDP source's socket, read at each scrape.
    UdpMetrics in UdpFamilies by SourceLabel {
        udp_kernel_drops: Gauge = "Datagrams the kernel dropped on the UDP socket (the drops column of /proc/net/udp)",
    }
}

metric_set! {
    /// What happened to the batches of one dispatcher.
    DispatcherCounters in DispatcherFamilies by DispatcherLabel {
        batches_ok: Counter = "Batches a dispatcher's plugin took",
        batches_failed: Counter = "Batches that failed for a dispatcher (rejected, trapped, timed out, out of retries)",
        batches_dropped: Counter = "Batches not queued for a dispatcher because its queue was full (UDP)",
        samples_ok: Counter = "Samples a dispatcher's plugin took",
        samples_failed: Counter = "Samples that failed for a dispatcher, dropped batches included",
        plugin_retries: Counter = "Plugin calls answered retry",
        plugin_timeouts: Counter = "Plugin calls interrupted at timeout_ms",
        plugin_traps: Counter = "Plugin calls that trapped",
        plugin_memory_refusals: Counter = "Plugin calls that failed because memory_limit_bytes refused a growth",
        batches_split: Counter = "Rejected batches tried again in parts to isolate the samples at fault",
        snapshot_failures: Counter = "collector_snapshot calls that trapped, timed out or returned a bad buffer",
        restore_failures: Counter = "New instances that could not take the saved state (collector_restore trapped, timed out or refused it)",
        dispatcher_worker_panics: Counter = "Panics caught in a dispatcher's workers (each worker was restarted)",
        plugin_log_lines_suppressed: Counter = "Plugin log lines beyond log_lines_per_second, counted instead of logged",
        dispatcher_healthy: Flag = "0 from a worker panic until the restarted worker completes a batch",
        dispatcher_queued_batches: Gauge = "Batches waiting in a dispatcher's queue",
        egress_refused: Counter = "HTTP requests of a plugin the host refused: an undeclared endpoint, a target outside it, over max_request_bytes or max_in_flight, a forbidden header",
    }
}

metric_set! {
    /// What one endpoint of a dispatcher was asked, and answered.
    EgressMetrics in EgressFamilies by EndpointLabel {
        egress_responses: Counter = "HTTP requests to an endpoint that got a whole response, whatever its status",
        egress_failures: Counter = "HTTP requests to an endpoint that got no whole response: connection refused or lost, TLS, response_timeout_ms, max_response_bytes",
        egress_bytes_sent: Counter = "Request body bytes sent to an endpoint",
        egress_bytes_received: Counter = "Response body bytes received from an endpoint",
        egress_in_flight: Gauge = "HTTP requests to an endpoint running now",
    }
}

metric_set! {
    /// The daemon's own figures: reloads and its admin endpoint.
    DaemonMetrics in DaemonFamilies by Whole {
        plugin_reloads: Counter = "Plugin versions loaded while running",
        plugin_reload_failures: Counter = "Plugin files that failed to load (the old version kept serving)",
        config_reloads_applied: Counter = "Configuration reloads applied",
        config_reloads_refused: Counter = "Configuration reloads refused (the running configuration stayed)",
        source_restarts: Counter = "Sources replaced by a configuration reload that changed their settings",
        admin_accept_errors: Counter = "Failed accepts on the admin endpoint (each followed by a pause)",
        admin_timeouts: Counter = "Admin connections closed at request_timeout_ms",
        worker_panics: Counter = "Panics caught in any worker of the daemon (each was restarted; the daemon exits with status 70)",
    }
}

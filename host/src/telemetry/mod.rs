//! One model for what the daemon tells operators: the metric sets ([`sets`]),
//! registered once in a [`Telemetry`]; the events that log and count in one place
//! ([`events`], Vector's habit: a call site says what happened, the event knows
//! the log line and the counters); and what a log line may show of input from
//! outside ([`log`]). `/metrics` encodes the registry, `/status` and the shutdown
//! summary read the same handles ([`Telemetry::summary`]), under the same names.

pub mod events;
pub mod log;
pub mod sets;

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;

pub use log::{MAX_LOGGED_VALUE_BYTES, RateLimit, Untrusted};
pub use sets::{
    AmqpMetrics, Counter, DaemonMetrics, DispatcherCounters, EgressMetrics, Flag, Gauge,
    HttpMetrics, SourceMetrics, TcpMetrics, UdpMetrics,
};

/// A source's handles, and the rate limit of its warnings about bad input.
#[derive(Debug)]
pub struct SourceStats {
    pub name: &'static str,
    pub counts: SourceMetrics,
    /// The daemon's `worker_panics`, which a panic here counts too.
    pub panics_total: Counter,
    /// Warnings about input from outside: at most 10 per 10 s, the rest counted.
    pub warn: RateLimit,
}

/// A dispatcher's handles, its latency histogram and its last error.
#[derive(Debug)]
pub struct DispatcherStats {
    pub name: Arc<str>,
    pub counts: DispatcherCounters,
    /// The daemon's `worker_panics`, which a panic here counts too.
    pub panics_total: Counter,
    /// Seconds a plugin took for a batch, retries included.
    pub dispatch_duration_seconds: Histogram,
    /// The last reason a batch failed, for `/status`.
    pub last_error: Mutex<Option<String>>,
    /// Warnings about failing batches: at most 10 per 10 s, the rest counted.
    pub warn: RateLimit,
}

impl DispatcherStats {
    /// Handles that count into no registry: for `collector check` and tests.
    pub fn detached(name: &str) -> DispatcherStats {
        DispatcherStats {
            name: name.into(),
            counts: DispatcherCounters::default(),
            panics_total: Counter::default(),
            dispatch_duration_seconds: latency_histogram(),
            last_error: Mutex::default(),
            warn: RateLimit::default(),
        }
    }
}

/// `dispatcher="file", version="…"`: what `collector_plugin_info` is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct VersionLabel {
    dispatcher: String,
    version: String,
}

type HistogramFamily = Family<sets::DispatcherLabel, Histogram, fn() -> Histogram>;
type EgressHistogramFamily = Family<sets::EndpointLabel, Histogram, fn() -> Histogram>;

/// One endpoint's handles and its latency histogram.
#[derive(Clone, Debug)]
pub struct EndpointStats {
    pub counts: EgressMetrics,
    /// Seconds from sending a request to the last byte of its response.
    pub duration_seconds: Histogram,
}

impl EndpointStats {
    /// Handles that count into no registry: for `collector check` and tests.
    pub fn detached() -> EndpointStats {
        EndpointStats {
            counts: EgressMetrics::default(),
            duration_seconds: latency_histogram(),
        }
    }
}

/// 100 µs to ~6.5 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// Every metric family of one daemon, registered once.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    pub sources: sets::SourceFamilies,
    pub amqp: sets::AmqpFamilies,
    pub udp: sets::UdpFamilies,
    pub tcp: sets::TcpFamilies,
    pub http: sets::HttpFamilies,
    pub dispatchers: sets::DispatcherFamilies,
    dispatch_duration: HistogramFamily,
    pub egress: sets::EgressFamilies,
    egress_duration: EgressHistogramFamily,
    plugin_info: Family<VersionLabel, Gauge>,
    /// The daemon's own figures.
    pub daemon: DaemonMetrics,
}

impl Telemetry {
    pub fn new() -> Arc<Telemetry> {
        let mut registry = Registry::with_prefix("collector");
        let sources = sets::SourceFamilies::register(&mut registry);
        let amqp = sets::AmqpFamilies::register(&mut registry);
        let udp = sets::UdpFamilies::register(&mut registry);
        let tcp = sets::TcpFamilies::register(&mut registry);
        let http = sets::HttpFamilies::register(&mut registry);
        let dispatchers = sets::DispatcherFamilies::register(&mut registry);
        let dispatch_duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "dispatch_duration_seconds",
            "Time a plugin took for a batch, retries included",
            dispatch_duration.clone(),
        );
        let egress = sets::EgressFamilies::register(&mut registry);
        let egress_duration: EgressHistogramFamily =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "egress_duration_seconds",
            "Time from sending an HTTP request to an endpoint to the last byte of its response",
            egress_duration.clone(),
        );
        let plugin_info = Family::<VersionLabel, Gauge>::default();
        registry.register(
            "plugin_info",
            "Threads of each dispatcher serving each plugin version (SHA-256 prefix)",
            plugin_info.clone(),
        );
        let daemon = sets::DaemonFamilies::register(&mut registry).handles("");
        Arc::new(Telemetry {
            registry,
            sources,
            amqp,
            udp,
            tcp,
            http,
            dispatchers,
            dispatch_duration,
            egress,
            egress_duration,
            plugin_info,
            daemon,
        })
    }

    /// The handles of endpoint `endpoint` of dispatcher `dispatcher`.
    pub fn endpoint(&self, dispatcher: &str, endpoint: &str) -> EndpointStats {
        let owner = format!("{dispatcher}:{endpoint}");
        EndpointStats {
            counts: self.egress.handles(&owner),
            duration_seconds: self
                .egress_duration
                .get_or_create_owned(&<sets::EndpointLabel as sets::Owner>::of(&owner)),
        }
    }

    /// The handles of source `name` (`udp`, `amqp`), healthy to begin with.
    pub fn source(&self, name: &'static str) -> Arc<SourceStats> {
        let counts = self.sources.handles(name);
        counts.source_healthy.set(true);
        Arc::new(SourceStats {
            name,
            counts,
            panics_total: self.daemon.worker_panics.clone(),
            warn: RateLimit::default(),
        })
    }

    /// The handles of dispatcher `name`, healthy to begin with.
    pub fn dispatcher(&self, name: &str) -> Arc<DispatcherStats> {
        let counts = self.dispatchers.handles(name);
        counts.dispatcher_healthy.set(true);
        let label = <sets::DispatcherLabel as sets::Owner>::of(name);
        Arc::new(DispatcherStats {
            name: name.into(),
            counts,
            panics_total: self.daemon.worker_panics.clone(),
            dispatch_duration_seconds: self.dispatch_duration.get_or_create_owned(&label),
            last_error: Mutex::default(),
            warn: RateLimit::default(),
        })
    }

    /// Takes a dispatcher that a config reload removed out of `/metrics`.
    pub fn remove_dispatcher(&self, name: &str) {
        self.dispatchers.remove(name);
        self.dispatch_duration
            .remove(&<sets::DispatcherLabel as sets::Owner>::of(name));
    }

    /// Sets `collector_plugin_info` to the versions serving now: one series per
    /// (dispatcher, version), valued by how many threads serve it.
    pub fn set_plugin_versions<'a>(&self, serving: impl IntoIterator<Item = (&'a str, String)>) {
        self.plugin_info.clear();
        for (dispatcher, version) in serving {
            self.plugin_info
                .get_or_create(&VersionLabel {
                    dispatcher: dispatcher.to_owned(),
                    version,
                })
                .inc();
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.push_str("# encoding failed\n");
        }
        out
    }

    /// Logs the shutdown summary: one line for the daemon, one per source and per
    /// dispatcher, each value under its `/status` and `/metrics` name.
    pub fn summary(&self, sections: &[Section<'_>]) {
        tracing::info!(
            target: "collector::summary",
            "Shutdown summary daemon {}",
            pairs(&self.daemon.readings())
        );
        for s in sections {
            tracing::info!(
                target: "collector::summary",
                "Shutdown summary {}={} {}",
                s.kind,
                s.name,
                pairs(&s.readings)
            );
        }
    }
}

/// One part of the shutdown summary: `source=udp`, `dispatcher=file`.
pub struct Section<'a> {
    pub kind: &'static str,
    pub name: &'a str,
    pub readings: Vec<(&'static str, Value)>,
}

/// `key=value key=value`, as the summary shows them.
fn pairs(readings: &[(&'static str, Value)]) -> String {
    readings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every figure `/status` and the summary show is a series of `/metrics` under
    /// the same name, and counts from the same handle.
    #[test]
    fn one_name_everywhere() {
        let t = Telemetry::new();
        let udp = t.source("udp");
        udp.counts.samples_received.inc_by(7);
        let amqp = t.amqp.handles("amqp");
        amqp.amqp_acked.inc_by(3);
        let d = t.dispatcher("file");
        d.counts.batches_ok.inc();
        t.daemon.plugin_reloads.inc();
        let text = t.encode();
        let mut readings = udp.counts.readings();
        readings.extend(amqp.readings());
        readings.extend(d.counts.readings());
        readings.extend(t.daemon.readings());
        for (name, value) in readings {
            let value = match value {
                Value::Bool(b) => i64::from(b).to_string(),
                v => v.to_string(),
            };
            let found = text.lines().any(|l| {
                let Some((series, v)) = l.rsplit_once(' ') else {
                    return false;
                };
                let metric = series.split('{').next().unwrap_or("");
                (metric == format!("collector_{name}_total")
                    || metric == format!("collector_{name}"))
                    && v == value
            });
            assert!(found, "{name}={value} is not in /metrics:\n{text}");
        }
        assert!(text.contains("collector_samples_received_total{source=\"udp\"} 7"));
        assert!(text.contains("collector_plugin_reloads_total 1"), "{text}");
    }

    /// The table of docs/telemetry.md, from the registry itself.
    fn doc_table() -> String {
        let t = Telemetry::new();
        let _ = (
            t.source("udp"),
            t.amqp.handles("amqp"),
            t.udp.handles("udp"),
        );
        let _ = t.dispatcher("d");
        let _ = t.endpoint("d", "e");
        t.set_plugin_versions([("d", "0123456789abcdef".to_owned())]);
        let text = t.encode();
        let mut out = String::from("| metric | type | what |\n| --- | --- | --- |\n");
        let mut help = "";
        for line in text.lines() {
            if let Some(h) = line.strip_prefix("# HELP ") {
                help = h;
            } else if let Some(ty) = line.strip_prefix("# TYPE ") {
                let (name, kind) = ty.split_once(' ').unwrap_or((ty, ""));
                let text = help.strip_prefix(name).unwrap_or(help).trim();
                let text = text.trim_end_matches('.');
                let shown = if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                };
                out.push_str(&format!("| `{shown}` | {kind} | {text} |\n"));
            }
        }
        out
    }

    #[test]
    fn the_documented_metrics_are_the_registered_ones() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/telemetry.md");
        let doc = std::fs::read_to_string(path).expect("docs/telemetry.md");
        let (begin, end) = ("<!-- metrics:begin -->\n", "<!-- metrics:end -->");
        let (Some(a), Some(b)) = (doc.find(begin), doc.find(end)) else {
            panic!("docs/telemetry.md has no metrics markers");
        };
        let want = doc_table();
        let have = &doc[a + begin.len()..b];
        if have != want {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                let updated = format!("{}{want}{}", &doc[..a + begin.len()], &doc[b..]);
                std::fs::write(path, updated).expect("write docs/telemetry.md");
                return;
            }
            panic!(
                "docs/telemetry.md is out of date; run UPDATE_DOCS=1 cargo test -p collector \
                 --lib telemetry. It should list:\n{want}"
            );
        }
    }

    #[test]
    fn removed_dispatchers_leave_metrics() {
        let t = Telemetry::new();
        t.dispatcher("gone").counts.batches_ok.inc();
        assert!(t.encode().contains("dispatcher=\"gone\""));
        t.remove_dispatcher("gone");
        assert!(!t.encode().contains("dispatcher=\"gone\""));
    }

    #[test]
    fn plugin_versions_follow_the_threads() {
        let t = Telemetry::new();
        t.set_plugin_versions([
            ("file", "aa".into()),
            ("file", "aa".into()),
            ("file", "bb".into()),
        ]);
        let text = t.encode();
        assert!(
            text.contains("collector_plugin_info{dispatcher=\"file\",version=\"aa\"} 2"),
            "{text}"
        );
        t.set_plugin_versions([("file", "bb".into())]);
        assert!(!t.encode().contains("version=\"aa\""));
    }
}

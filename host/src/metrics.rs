//! Prometheus metrics, rendered at each scrape of `GET /metrics` from the
//! daemon's own counters (prometheus-client's text format; counters end in
//! `_total`, durations are in seconds).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::admin::State;

struct StateCollector(Arc<State>);

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

type Row<'a> = (Vec<(&'static str, String)>, u64);

/// A dispatcher counter, named by an outcome label.
type Outcome<'a> = (
    &'a str,
    &'a dyn Fn(&crate::telemetry::DispatcherStats) -> u64,
);

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<Row<'_>>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(Vec<(&'static str, String)>, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = &self.0;
        let src_of = |only: Option<&str>,
                      f: &dyn Fn(&crate::telemetry::SourceStats) -> u64|
         -> Vec<Row<'_>> {
            st.sources
                .iter()
                .filter(|(n, _)| only.is_none_or(|o| o == *n))
                .map(|(n, s)| (vec![("source", (*n).to_owned())], f(s)))
                .collect()
        };
        let src = |f: &dyn Fn(&crate::telemetry::SourceStats) -> u64| src_of(None, f);
        let amqp_src = |f: &dyn Fn(&crate::telemetry::SourceStats) -> u64| src_of(Some("amqp"), f);
        counter(
            &mut enc,
            "collector_messages_received",
            "Datagrams or AMQP messages read",
            src(&|s| s.received.get()),
        )?;
        counter(
            &mut enc,
            "collector_samples_received",
            "Samples accepted (decoded and signature verified)",
            src(&|s| s.samples.get()),
        )?;
        counter(
            &mut enc,
            "collector_decode_errors",
            "Datagrams or messages that could not be decoded",
            src(&|s| s.malformed.get()),
        )?;
        counter(
            &mut enc,
            "collector_bad_signatures",
            "Samples dropped for a bad signature",
            src(&|s| s.bad_signature.get()),
        )?;
        counter(
            &mut enc,
            "collector_invalid_samples",
            "Dicts in a message that are not valid samples",
            src(&|s| s.invalid_samples.get()),
        )?;
        counter(
            &mut enc,
            "collector_input_dropped",
            "Datagrams read but dropped because the decoders were saturated",
            src(&|s| s.dropped.get()),
        )?;
        counter(
            &mut enc,
            "collector_source_worker_panics",
            "Panics caught in a source's decoder threads or consumer tasks",
            src(&|s| s.worker_panics.get()),
        )?;
        counter(
            &mut enc,
            "collector_amqp_oversized",
            "AMQP messages rejected for max_message_bytes or max_samples_per_message",
            amqp_src(&|s| s.oversized.get()),
        )?;
        counter(
            &mut enc,
            "collector_amqp_acked",
            "AMQP messages acked after every dispatcher took them",
            amqp_src(&|s| s.acked.get()),
        )?;
        counter(
            &mut enc,
            "collector_amqp_requeued",
            "AMQP messages requeued after a dispatcher failed them",
            amqp_src(&|s| s.requeued.get()),
        )?;
        counter(
            &mut enc,
            "collector_amqp_dead_lettered",
            "AMQP messages rejected without requeue after failures",
            amqp_src(&|s| s.dead_lettered.get()),
        )?;
        counter(
            &mut enc,
            "collector_amqp_redelivered",
            "AMQP deliveries flagged redelivered by the broker",
            amqp_src(&|s| s.redelivered.get()),
        )?;
        counter(
            &mut enc,
            "collector_amqp_reconnects",
            "AMQP connections lost or refused",
            amqp_src(&|s| s.reconnects.get()),
        )?;
        let amqp: Vec<_> = st.sources.iter().filter(|(n, _)| *n == "amqp").collect();
        gauge(
            &mut enc,
            "collector_amqp_connected",
            "1 while connected to the broker",
            amqp.iter()
                .map(|(n, s)| {
                    (
                        vec![("source", (*n).to_owned())],
                        i64::from(s.connected.load(Ordering::Relaxed)),
                    )
                })
                .collect(),
        )?;
        gauge(
            &mut enc,
            "collector_amqp_unacked_deliveries",
            "AMQP deliveries held, not yet acked or rejected",
            amqp.iter()
                .map(|(n, s)| {
                    (
                        vec![("source", (*n).to_owned())],
                        s.unacked.load(Ordering::Relaxed),
                    )
                })
                .collect(),
        )?;
        let udp: Vec<_> = st.sources.iter().filter(|(n, _)| *n == "udp").collect();
        gauge(
            &mut enc,
            "collector_udp_kernel_drops",
            "Datagrams the kernel dropped on the UDP socket (from /proc/net/udp)",
            udp.iter()
                .filter_map(|(n, s)| {
                    Some((
                        vec![("source", (*n).to_owned())],
                        crate::source::udp::kernel_drops(s)?,
                    ))
                })
                .collect(),
        )?;
        let disp = |f: &dyn Fn(&crate::telemetry::DispatcherStats) -> u64| -> Vec<Row<'_>> {
            st.dispatchers
                .iter()
                .map(|(l, s)| (vec![("dispatcher", l.dispatcher.to_string())], f(s)))
                .collect()
        };
        let outcome = |pairs: &[Outcome<'_>]| -> Vec<Row<'_>> {
            st.dispatchers
                .iter()
                .flat_map(|(l, s)| {
                    pairs.iter().map(move |(o, f)| {
                        (
                            vec![
                                ("dispatcher", l.dispatcher.to_string()),
                                ("outcome", (*o).to_owned()),
                            ],
                            f(s),
                        )
                    })
                })
                .collect()
        };
        counter(
            &mut enc,
            "collector_batches",
            "Batches per dispatcher and outcome (dropped: its queue was full)",
            outcome(&[
                ("ok", &|s| s.batches_ok.get()),
                ("failed", &|s| s.batches_failed.get()),
                ("dropped", &|s| s.batches_dropped.get()),
            ]),
        )?;
        counter(
            &mut enc,
            "collector_dispatched_samples",
            "Samples per dispatcher and outcome",
            outcome(&[
                ("ok", &|s| s.samples_ok.get()),
                ("failed", &|s| s.samples_failed.get()),
            ]),
        )?;
        counter(
            &mut enc,
            "collector_plugin_retries",
            "Batches a plugin answered retry to",
            disp(&|s| s.retries.get()),
        )?;
        counter(
            &mut enc,
            "collector_plugin_failures",
            "Plugin calls that trapped, timed out or were refused memory",
            outcome(&[
                ("trap", &|s| s.traps.get()),
                ("timeout", &|s| s.timeouts.get()),
                ("memory", &|s| s.memory_refusals.get()),
            ])
            .into_iter()
            .map(|(mut l, v)| {
                l[1].0 = "kind";
                (l, v)
            })
            .collect(),
        )?;
        counter(
            &mut enc,
            "collector_batches_split",
            "Rejected batches tried again in parts to isolate the samples at fault",
            disp(&|s| s.batches_split.get()),
        )?;
        counter(
            &mut enc,
            "collector_state_handoff_failures",
            "collector_snapshot or collector_restore calls that failed",
            outcome(&[
                ("snapshot", &|s| s.snapshot_failures.get()),
                ("restore", &|s| s.restore_failures.get()),
            ])
            .into_iter()
            .map(|(mut l, v)| {
                l[1].0 = "stage";
                (l, v)
            })
            .collect(),
        )?;
        counter(
            &mut enc,
            "collector_worker_panics",
            "Panics caught in a dispatcher's workers (each worker was restarted)",
            disp(&|s| s.worker_panics.get()),
        )?;
        gauge(
            &mut enc,
            "collector_dispatcher_healthy",
            "0 from a worker panic until the restarted worker completes a batch",
            st.dispatchers
                .iter()
                .map(|(l, s)| {
                    (
                        vec![("dispatcher", l.dispatcher.to_string())],
                        i64::from(s.healthy.load(Ordering::Relaxed)),
                    )
                })
                .collect(),
        )?;
        counter(
            &mut enc,
            "collector_admin_accept_errors",
            "Failed accepts on the admin endpoint (each followed by a pause)",
            vec![(vec![], st.admin.accept_errors.get())],
        )?;
        counter(
            &mut enc,
            "collector_admin_timeouts",
            "Admin connections closed at request_timeout_ms",
            vec![(vec![], st.admin.timeouts.get())],
        )?;
        counter(
            &mut enc,
            "collector_plugin_log_lines_suppressed",
            "Plugin log lines beyond log_lines_per_second, counted instead of logged",
            disp(&|s| s.log_suppressed.get()),
        )?;
        gauge(
            &mut enc,
            "collector_dispatcher_queued_batches",
            "Batches waiting in a dispatcher's queue",
            st.dispatchers
                .iter()
                .map(|(l, s)| {
                    (
                        vec![("dispatcher", l.dispatcher.to_string())],
                        s.queued.load(Ordering::Relaxed),
                    )
                })
                .collect(),
        )?;
        gauge(
            &mut enc,
            "collector_plugin_info",
            "Threads of each dispatcher serving each plugin version (SHA-256 prefix)",
            st.dispatchers
                .iter()
                .flat_map(|(l, _)| {
                    // One series per version serving, valued by how many threads serve it.
                    let mut versions: Vec<(String, i64)> = Vec::new();
                    for v in l.slot.serving() {
                        match versions.iter_mut().find(|(h, _)| *h == v) {
                            Some((_, n)) => *n += 1,
                            None => versions.push((v, 1)),
                        }
                    }
                    versions.into_iter().map(|(v, n)| {
                        (
                            vec![("dispatcher", l.dispatcher.to_string()), ("version", v)],
                            n,
                        )
                    })
                })
                .collect(),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "collector_dispatch_duration_seconds",
                "Time a plugin took for a batch, retries included",
                None,
                MetricType::Histogram,
            )?;
            for (l, s) in &st.dispatchers {
                let labels = vec![("dispatcher", l.dispatcher.to_string())];
                s.latency.encode(m.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut enc,
            "collector_plugin_reloads",
            "Plugin versions loaded while running",
            vec![(vec![], st.reload.reloads.get())],
        )?;
        counter(
            &mut enc,
            "collector_plugin_reload_failures",
            "Plugin files that failed to load",
            vec![(vec![], st.reload.failures.get())],
        )?;
        counter(
            &mut enc,
            "collector_config_reloads",
            "Configuration reloads by result",
            vec![
                (
                    vec![("result", "applied".to_owned())],
                    st.config.applied.get(),
                ),
                (
                    vec![("result", "refused".to_owned())],
                    st.config.refused.get(),
                ),
            ],
        )?;
        Ok(())
    }
}

/// The text exposition of every metric.
pub fn render(state: &Arc<State>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StateCollector(state.clone())));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.push_str("# encoding failed\n");
    }
    out
}

//! The `prometheus` dispatcher: samples by Prometheus remote write 1.0 (a
//! protobuf `WriteRequest`, snappy block compression, the version header), one
//! request per batch, to Prometheus (`--web.enable-remote-write-receiver`,
//! `/api/v1/write`), VictoriaMetrics (`/api/v1/write`) or any receiver.
//!
//! Each sample is one point of the series
//!
//! ```text
//! ceilometer_cpu{resource_id="R", project_id="P", user_id="U", unit="ns", type="cumulative", source="openstack"}
//! ```
//!
//! named `prefix` + the meter's name with every character Prometheus does not
//! allow in a name made `_`; identities and chosen `resource_metadata` keys as
//! labels (empty ones left out); the volume as the value; the timestamp in
//! milliseconds (remote write's resolution). Series are sent sorted by labels,
//! each with its points in time order, as the protocol asks. A sample without a
//! volume, or whose timestamp is not ISO 8601, is left out (and logged).

use std::collections::BTreeMap;
use std::time::Duration;

use collector_sdk::http::{self, Request};
use collector_sdk::{Batch, Config, Dispatcher, Outcome, SampleView};
use serde::Deserialize;

/// Remote write 1.0's messages (prometheus/prompb/types.proto, remote.proto).
mod prompb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The endpoint (`[[dispatchers.endpoints]] name`) to write to.
    #[serde(default = "default_endpoint")]
    endpoint: String,
    /// Path under the endpoint's URL.
    #[serde(default = "default_path")]
    path: String,
    /// Put before every metric name.
    #[serde(default = "default_prefix")]
    prefix: String,
    /// `resource_metadata` keys to add as labels (dotted paths into nested
    /// dicts); the label is the path with `.` made `_`.
    #[serde(default)]
    metadata_labels: Vec<String>,
    /// How long to wait for the write (the call's own deadline bounds it too).
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_endpoint() -> String {
    "prometheus".into()
}
fn default_path() -> String {
    "/api/v1/write".into()
}
fn default_prefix() -> String {
    "ceilometer_".into()
}
fn default_timeout_ms() -> u64 {
    10_000
}

/// `s` with every character outside `[a-zA-Z0-9_:]` (or `:` too, for a label)
/// made `_`, and a `_` before a leading digit.
fn sanitized(s: &str, colon: bool) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

struct RemoteWrite {
    s: Settings,
    skipped: u64,
}

impl RemoteWrite {
    /// The labels of `s`'s series, sorted by name as the protocol asks.
    fn labels(&self, s: &SampleView<'_>) -> Vec<prompb::Label> {
        let mut labels = vec![prompb::Label {
            name: "__name__".into(),
            value: sanitized(&format!("{}{}", self.s.prefix, s.counter_name), true),
        }];
        let mut add = |name: &str, value: &str| {
            if !value.is_empty() {
                labels.push(prompb::Label {
                    name: name.to_owned(),
                    value: value.to_owned(),
                });
            }
        };
        add("resource_id", s.resource_id);
        add("project_id", s.project_id.unwrap_or(""));
        add("user_id", s.user_id.unwrap_or(""));
        add("unit", s.counter_unit);
        add("type", s.counter_type);
        add("source", s.source);
        for path in &self.s.metadata_labels {
            if let Some(text) = s.metadata_at(path).and_then(|v| v.scalar_text()) {
                add(&sanitized(path, false), &text);
            }
        }
        labels.sort();
        labels.dedup_by(|a, b| a.name == b.name);
        labels
    }
}

impl Dispatcher for RemoteWrite {
    fn init(config: Config<'_>) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        collector_sdk::info!("remote write to endpoint `{}` at {}", s.endpoint, s.path);
        Ok(RemoteWrite { s, skipped: 0 })
    }

    fn dispatch(&mut self, batch: Batch<'_>) -> Outcome {
        let mut series: BTreeMap<Vec<prompb::Label>, Vec<prompb::Sample>> = BTreeMap::new();
        for sample in batch.samples() {
            let sample = match sample {
                Ok(s) => s,
                Err(e) => return Outcome::Reject(e.to_string()),
            };
            let point = sample
                .counter_volume
                .map(|v| v.as_f64())
                .zip(collector_sdk::time::unix_nanos(sample.timestamp));
            let Some((value, ns)) = point else {
                self.skipped += 1;
                collector_sdk::warn!(
                    "left out ({} so far): sample {} has no volume or an unreadable timestamp {:?}",
                    self.skipped,
                    sample.message_id,
                    sample.timestamp
                );
                continue;
            };
            series
                .entry(self.labels(&sample))
                .or_default()
                .push(prompb::Sample {
                    value,
                    timestamp: ns.div_euclid(1_000_000),
                });
        }
        if series.is_empty() {
            return Outcome::Ok;
        }
        let request = prompb::WriteRequest {
            timeseries: series
                .into_iter()
                .map(|(labels, mut samples)| {
                    samples.sort_by_key(|s| s.timestamp);
                    prompb::TimeSeries { labels, samples }
                })
                .collect(),
        };
        let body = match snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(&request))
        {
            Ok(b) => b,
            Err(e) => return Outcome::Reject(format!("snappy: {e}")),
        };
        let result = Request::post(&self.s.endpoint, &self.s.path)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .fetch(Duration::from_millis(self.s.timeout_ms));
        http::outcome(&result).unwrap_or(Outcome::Ok)
    }
}

collector_sdk::export_dispatcher!(RemoteWrite);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_prometheus_names() {
        assert_eq!(
            sanitized("ceilometer_memory.usage", true),
            "ceilometer_memory_usage"
        );
        assert_eq!(
            sanitized("network.incoming.bytes.rate", true),
            "network_incoming_bytes_rate"
        );
        assert_eq!(sanitized("9lives:x", true), "_9lives:x");
        assert_eq!(sanitized("flavor.name", false), "flavor_name");
        assert_eq!(sanitized("a:b", false), "a_b");
    }

    #[test]
    fn the_write_request_is_remote_write_protobuf() {
        let req = prompb::WriteRequest {
            timeseries: vec![prompb::TimeSeries {
                labels: vec![prompb::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![prompb::Sample {
                    value: 1.0,
                    timestamp: 5,
                }],
            }],
        };
        let bytes = prost::Message::encode_to_vec(&req);
        // timeseries (1, len) { labels (1, len) { name (1) "__name__", value (2) "up" }, samples (2, len) { value (1, fixed64), timestamp (2, varint) } }
        assert_eq!(
            bytes,
            [
                0x0a, 0x1d, 0x0a, 0x0e, 0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_',
                0x12, 0x02, b'u', b'p', 0x12, 0x0b, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x05
            ]
        );
    }
}

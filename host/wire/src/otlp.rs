//! The bodies Ceilometer's `opentelemetryhttp://` publisher
//! (`OpentelemetryHttpPublisher`) posts: OTLP/HTTP JSON, one POST per sample,
//! with keys in snake case (`resource_metrics`, `scope_metrics`, `data_points`,
//! `time_unix_nano`, `as_double`, `string_value`). The OTLP spec's camel-case
//! JSON (`resourceMetrics`, `timeUnixNano` as a string, ...) is read too, so
//! that any OTLP JSON sender of gauges and sums works. Unsigned.
//!
//! What the publisher sends of a sample, and how it is mapped back:
//!
//! | sample model | from |
//! |---|---|
//! | `counter_name` | `description` up to its `" unit:<unit>"` suffix (the publisher writes `name + " unit:" + unit` there, and replaces `.` by `_` in `name`); `name` when the description is not of that form |
//! | `counter_type` | `cumulative` for a `counter` (or OTLP `sum`), `gauge` for a `gauge`: a `delta` sample arrives as `gauge` (the publisher loses it) |
//! | `counter_unit` | `unit` |
//! | `counter_volume` | `as_double` (or `as_int`): the volume as the agent had it, integer or float |
//! | `resource_id`, `user_id`, `project_id` | the attributes of those names (`null` kept as `null`) |
//! | `timestamp` | `time_unix_nano`, read as seconds when below 10^12 (the publisher writes `int(time.mktime(...))`, seconds of the sample's UTC time read as the agent's local time), plus the agents' UTC offset ([`Options::agent_utc_offset_seconds`]); written `YYYY-MM-DDTHH:MM:SS+00:00`: sub-seconds are lost |
//! | `source` | [`Options::source`] (the publisher sends none; Ceilometer's default is `openstack`) |
//! | `message_id` | a UUID (version 8) derived from the sample's identity: name, type, unit, resource, user, project, timestamp and volume. The publisher sends no id; the same sample posted twice gets the same id, and two samples that agree on all of these within one second are the same sample |
//! | `resource_metadata` | `{}` (the publisher sends none) |
//!
//! `user_name`, `project_name` and `monotonic_time` are absent. Each data point
//! is one sample.

use collector_sdk::model::{Sample, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::http_body::BodyError;
use crate::json::{SampleJsonError, json_kind as kind, value_from_json};

/// What the OTLP body does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The samples' `source`.
    pub source: String,
    /// The agents' offset from UTC, east positive: what `time.mktime` took off.
    pub agent_utc_offset_seconds: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            source: "openstack".into(),
            agent_utc_offset_seconds: 0,
        }
    }
}

/// `v[snake]`, or `v[camel]`.
fn field<'a>(v: &'a Json, snake: &str, camel: &str) -> Option<&'a Json> {
    v.get(snake).or_else(|| v.get(camel))
}

fn list<'a>(v: &'a Json, snake: &str, camel: &str, what: &str) -> Result<&'a [Json], String> {
    match field(v, snake, camel) {
        Some(Json::Array(items)) => Ok(items),
        None | Some(Json::Null) => Ok(&[]),
        Some(other) => Err(format!(
            "`{snake}` of a {what} must be a list, not {}",
            kind(other)
        )),
    }
}

/// Every data point of an OTLP JSON body as a sample.
///
/// # Errors
/// [`BodyError`]: not JSON, not of the OTLP shape, more than `max_samples`, or
/// a data point that is not a sample (naming its index among the body's points).
pub fn decode(body: &[u8], max_samples: usize, opts: &Options) -> Result<Vec<Sample>, BodyError> {
    let v: Json = serde_json::from_slice(body).map_err(BodyError::NotJson)?;
    if !v.is_object() {
        return Err(BodyError::WrongShape(kind(&v)));
    }
    let shape = |why: String| BodyError::Invalid {
        index: 0,
        error: SampleJsonError::Shape(why),
    };
    if field(&v, "resource_metrics", "resourceMetrics").is_none() {
        return Err(shape("the body has no `resource_metrics`".into()));
    }
    let mut out = Vec::new();
    for rm in list(&v, "resource_metrics", "resourceMetrics", "request").map_err(shape)? {
        for sm in list(rm, "scope_metrics", "scopeMetrics", "resource_metrics").map_err(shape)? {
            for m in list(sm, "metrics", "metrics", "scope_metrics").map_err(shape)? {
                let (points, counter_type) = if let Some(g) = m.get("gauge") {
                    (g, "gauge")
                } else if let Some(c) = m.get("counter").or_else(|| m.get("sum")) {
                    (c, "cumulative")
                } else {
                    return Err(shape(
                        "a metric has none of `gauge`, `counter` or `sum`".into(),
                    ));
                };
                for p in list(points, "data_points", "dataPoints", "metric").map_err(shape)? {
                    if out.len() == max_samples {
                        return Err(BodyError::TooMany { limit: max_samples });
                    }
                    let index = out.len();
                    let s = point(m, counter_type, p, opts).map_err(|why| BodyError::Invalid {
                        index,
                        error: SampleJsonError::Shape(why),
                    })?;
                    out.push(s);
                }
            }
        }
    }
    Ok(out)
}

fn text<'a>(v: &'a Json, key: &str) -> Result<&'a str, String> {
    match v.get(key) {
        Some(Json::String(s)) => Ok(s),
        Some(other) => Err(format!("`{key}` must be a string, not {}", kind(other))),
        None => Err(format!("`{key}` is missing")),
    }
}

/// The sample of one data point of metric `m`.
fn point(m: &Json, counter_type: &str, p: &Json, opts: &Options) -> Result<Sample, String> {
    let name = text(m, "name")?;
    let unit = m.get("unit").and_then(Json::as_str).unwrap_or_default();
    let suffix = format!(" unit:{unit}");
    let counter_name = m
        .get("description")
        .and_then(Json::as_str)
        .and_then(|d| d.strip_suffix(&suffix))
        .filter(|n| n.replace('.', "_") == name)
        .unwrap_or(name);
    let volume = match field(p, "as_double", "asDouble").or_else(|| field(p, "as_int", "asInt")) {
        Some(Json::String(s)) => s
            .parse::<i64>()
            .map(Value::Int)
            .or_else(|_| s.parse::<f64>().map(Value::Float))
            .map_err(|_| format!("the data point's value {s:?} is not a number"))?,
        Some(n @ (Json::Number(_) | Json::Null)) => value_from_json(n.clone()),
        Some(other) => return Err(format!("the data point's value is {}", kind(other))),
        None => return Err("the data point has no `as_double`".into()),
    };
    let mut attrs: Vec<(&str, Value)> = Vec::new();
    for a in list(p, "attributes", "attributes", "data point")? {
        let (Some(key), Some(value)) = (a.get("key").and_then(Json::as_str), a.get("value")) else {
            return Err("an attribute needs a `key` and a `value`".into());
        };
        let v = match field(value, "string_value", "stringValue") {
            Some(Json::String(s)) => Value::Str(s.clone()),
            Some(Json::Null) | None => Value::Null,
            Some(other) => return Err(format!("attribute `{key}` is {}", kind(other))),
        };
        attrs.push((key, v));
    }
    let attr = |k: &str| attrs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let resource_id = match attr("resource_id") {
        Some(Value::Str(s)) => s,
        _ => return Err("the data point has no `resource_id` attribute".into()),
    };
    let stamp = match field(p, "time_unix_nano", "timeUnixNano") {
        Some(Json::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Json::String(s)) => s.parse::<i64>().ok(),
        _ => None,
    }
    .ok_or("the data point has no `time_unix_nano`")?;
    let seconds = if stamp.unsigned_abs() < 1_000_000_000_000 {
        stamp.saturating_add(opts.agent_utc_offset_seconds)
    } else {
        stamp.div_euclid(1_000_000_000)
    };
    let timestamp = iso_utc(seconds).ok_or("the data point's time is out of range")?;
    let mut entries: Vec<(String, Value)> = vec![
        ("source".into(), Value::Str(opts.source.clone())),
        ("counter_name".into(), Value::Str(counter_name.to_owned())),
        ("counter_type".into(), Value::Str(counter_type.to_owned())),
        ("counter_unit".into(), Value::Str(unit.to_owned())),
        ("counter_volume".into(), volume.clone()),
    ];
    for k in ["user_id", "project_id"] {
        if let Some(v) = attr(k) {
            entries.push((k.into(), v));
        }
    }
    let id = identity(&[
        counter_name,
        counter_type,
        unit,
        &resource_id,
        &attr("user_id")
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        &attr("project_id")
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        &timestamp,
        &format!("{volume:?}"),
    ]);
    entries.extend([
        ("resource_id".into(), Value::Str(resource_id)),
        ("timestamp".into(), Value::Str(timestamp)),
        ("resource_metadata".into(), Value::Map(Vec::new())),
        ("message_id".into(), Value::Str(id)),
    ]);
    Sample::from_entries(entries).map_err(|e| e.to_string())
}

/// A sample as the publisher posts it (for `collector send otlp` and tests),
/// for an agent in UTC: its timestamp's seconds (a naive timestamp read as
/// UTC, sub-seconds dropped), its name with `.` replaced by `_`.
pub fn encode(s: &Sample) -> Json {
    let attr = |k: &str, v: Json| serde_json::json!({"key": k, "value": {"string_value": v}});
    let text = |f: &collector_sdk::model::Field<String>| match f {
        collector_sdk::model::Field::Value(v) => Json::from(v.as_str()),
        _ => Json::Null,
    };
    let seconds = unix_seconds(&s.timestamp).unwrap_or(0);
    let kind = if s.counter_type == "cumulative" {
        "counter"
    } else {
        "gauge"
    };
    let volume = s
        .counter_volume
        .map_or(Json::Null, |n| crate::json::value_to_json(&Value::from(n)));
    serde_json::json!({"resource_metrics": [{"scope_metrics": [{
        "scope": {"name": "ceilometer", "version": "v1"},
        "metrics": [{
            "name": s.counter_name.replace('.', "_"),
            "description": format!("{} unit:{}", s.counter_name, s.counter_unit),
            "unit": s.counter_unit,
            kind: {"data_points": [{
                "attributes": [
                    attr("resource_id", Json::from(s.resource_id.as_str())),
                    attr("user_id", text(&s.user_id)),
                    attr("project_id", text(&s.project_id)),
                ],
                "start_time_unix_nano": seconds,
                "time_unix_nano": seconds,
                "as_double": volume,
                "flags": 0,
            }]},
        }],
    }]}]})
}

/// Seconds since the epoch of an ISO 8601 timestamp as Ceilometer's agents
/// write them (naive means UTC).
pub fn unix_seconds(ts: &str) -> Option<i64> {
    collector_sdk::time::unix_nanos(ts).map(|n| n.div_euclid(1_000_000_000))
}

/// A version-8 UUID from the SHA-256 of `parts`, each length-prefixed.
pub fn identity(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let mut b: [u8; 16] = h.finalize()[..16].try_into().unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS+00:00`, if chrono can represent them.
pub fn iso_utc(seconds: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the publisher posts for `disk.device.read.bytes`, as its code builds it.
    const POSTED: &str = r#"{"resource_metrics": [{"scope_metrics": [{"scope": {"name": "ceilometer", "version": "v1"},
        "metrics": [{"name": "disk_device_read_bytes", "description": "disk.device.read.bytes unit:B", "unit": "B",
        "counter": {"data_points": [{"attributes": [{"key": "resource_id", "value": {"string_value": "r-1"}},
        {"key": "user_id", "value": {"string_value": "u"}}, {"key": "project_id", "value": {"string_value": null}}],
        "start_time_unix_nano": 1764644400, "time_unix_nano": 1764644400, "as_double": 4096, "flags": 0}]}}]}]}]}"#;

    #[test]
    fn the_publishers_body_maps_back_onto_the_sample() {
        let s = decode(POSTED.as_bytes(), 10, &Options::default()).expect("decoded");
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(s.counter_name, "disk.device.read.bytes");
        assert_eq!(s.counter_type, "cumulative");
        assert_eq!(s.counter_unit, "B");
        assert_eq!(
            s.counter_volume,
            Some(collector_sdk::model::Number::Int(4096))
        );
        assert_eq!(s.resource_id, "r-1");
        assert_eq!(s.project_id, collector_sdk::model::Field::Null);
        assert_eq!(s.timestamp, "2025-12-02T03:00:00+00:00");
        assert_eq!(s.source, "openstack");
        let again = decode(POSTED.as_bytes(), 10, &Options::default()).expect("decoded");
        assert_eq!(
            again[0].message_id, s.message_id,
            "the same sample, the same id"
        );
        let shifted = Options {
            agent_utc_offset_seconds: 7200,
            ..Options::default()
        };
        let later = decode(POSTED.as_bytes(), 10, &shifted).expect("decoded");
        assert_eq!(later[0].timestamp, "2025-12-02T05:00:00+00:00");
        assert_ne!(later[0].message_id, s.message_id);
    }

    #[test]
    fn what_encode_posts_decodes_to_the_same_sample_at_second_precision() {
        let body = encode(&decode(POSTED.as_bytes(), 1, &Options::default()).expect("decoded")[0]);
        let again = decode(body.to_string().as_bytes(), 1, &Options::default()).expect("decoded");
        let first = decode(POSTED.as_bytes(), 1, &Options::default()).expect("decoded");
        assert_eq!(again, first);
        assert_eq!(unix_seconds("2025-12-02T03:00:00.999"), Some(1_764_644_400));
        assert_eq!(
            unix_seconds("2025-12-02T05:00:00+02:00"),
            Some(1_764_644_400)
        );
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("nope"), None);
    }

    #[test]
    fn the_specs_camel_case_json_is_read_too() {
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","unit":"1",
            "sum":{"dataPoints":[{"attributes":[{"key":"resource_id","value":{"stringValue":"r"}}],
            "timeUnixNano":"1764644400123456789","asInt":"5"}]}}]}]}]}"#;
        let s = decode(body.as_bytes(), 1, &Options::default()).expect("decoded");
        assert_eq!(s[0].counter_name, "m");
        assert_eq!(s[0].counter_type, "cumulative");
        assert_eq!(
            s[0].counter_volume,
            Some(collector_sdk::model::Number::Int(5))
        );
        assert_eq!(s[0].timestamp, "2025-12-02T03:00:00+00:00");
        assert!(
            decode(body.as_bytes(), 0, &Options::default()).is_err(),
            "over max_samples"
        );
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(iso_utc(0).as_deref(), Some("1970-01-01T00:00:00+00:00"));
        assert_eq!(
            iso_utc(951_782_400).as_deref(),
            Some("2000-02-29T00:00:00+00:00")
        );
        assert_eq!(iso_utc(-1).as_deref(), Some("1969-12-31T23:59:59+00:00"));
        assert_eq!(iso_utc(i64::MAX), None);
    }

    #[test]
    fn wrong_shapes_are_named() {
        let e = |b: &str| {
            decode(b.as_bytes(), 10, &Options::default())
                .expect_err(b)
                .to_string()
        };
        assert!(e("[]").contains("not an array"));
        assert!(e("{}").contains("no `resource_metrics`"));
        assert!(e(r#"{"resource_metrics": 3}"#).contains("must be a list"));
        assert!(
            e(r#"{"resource_metrics": [{"scope_metrics": [{"metrics": [{"name": "x"}]}]}]}"#)
                .contains("none of `gauge`")
        );
        let no_resource = POSTED.replace("\"resource_id\"", "\"other\"");
        assert!(e(&no_resource).contains("resource_id"));
    }
}

//! The `influx` dispatcher: samples as InfluxDB line protocol, one POST per
//! batch, to InfluxDB 1.x (`/write`), InfluxDB 2.x (`/api/v2/write`) or anything
//! that speaks either (VictoriaMetrics takes both), with nanosecond timestamps.
//!
//! Each sample is one point:
//!
//! ```text
//! cpu,resource_id=R,project_id=P,user_id=U,unit=ns,type=cumulative,source=openstack value=1234 1748779200123456000
//! ```
//!
//! the measurement the meter's name (or a fixed `measurement`, with the meter
//! as tag `meter`), the identities as tags (empty ones left out), chosen
//! `resource_metadata` keys as more tags, and the volume as the float field
//! `value`. Escaping follows the line protocol reference: commas and spaces in
//! measurements; commas, equals signs and spaces in tag keys and values; line
//! breaks, which the protocol cannot carry, become spaces. A sample without a
//! volume, or whose timestamp is not ISO 8601, is left out (and logged).

use collector_sdk::http::{self, Request, query_value};
use collector_sdk::{Batch, Config, Dispatcher, Outcome, SampleView, ValueView};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The endpoint (`[[dispatchers.endpoints]] name`) to write to.
    #[serde(default = "default_endpoint")]
    endpoint: String,
    /// `v1` (`/write?db=`) or `v2` (`/api/v2/write?org=&bucket=`).
    #[serde(default = "default_api")]
    api: String,
    /// v1: the database; v2: unused.
    #[serde(default = "default_database")]
    database: String,
    /// v1: the retention policy (the database's default when empty).
    #[serde(default)]
    retention_policy: String,
    /// v2: the organisation and bucket.
    #[serde(default)]
    org: String,
    #[serde(default)]
    bucket: String,
    /// Empty: the meter's name is the measurement. Otherwise this fixed
    /// measurement, with the meter's name as tag `meter`.
    #[serde(default)]
    measurement: String,
    /// `resource_metadata` keys to add as tags (dotted paths into nested dicts:
    /// `flavor.name`); the tag is named after the path.
    #[serde(default)]
    metadata_tags: Vec<String>,
    /// `resource_metadata` keys to add as fields beside `value` (numbers as
    /// floats, booleans, strings; the field is named after the path).
    #[serde(default)]
    metadata_fields: Vec<String>,
    /// How long to wait for the write (the call's own deadline bounds it too).
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_endpoint() -> String {
    "influx".into()
}
fn default_api() -> String {
    "v1".into()
}
fn default_database() -> String {
    "ceilometer".into()
}
fn default_timeout_ms() -> u64 {
    10_000
}

struct Influx {
    s: Settings,
    target: String,
    skipped: u64,
}

/// Appends `s`, backslash-escaping the characters in `special`, and turning
/// line breaks into spaces (escaped too when spaces are special).
fn escaped(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        let c = if c == '\n' || c == '\r' { ' ' } else { c };
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

const MEASUREMENT: &[char] = &[',', ' '];
const TAG: &[char] = &[',', '=', ' '];

fn tag(out: &mut String, key: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    out.push(',');
    escaped(out, key, TAG);
    out.push('=');
    escaped(out, value, TAG);
}

impl Influx {
    /// One line of line protocol for `s`, or why it is left out.
    fn line(&self, out: &mut String, s: &SampleView<'_>) -> Result<(), String> {
        let volume = s
            .counter_volume
            .ok_or_else(|| format!("sample {} has no volume", s.message_id))?
            .as_f64();
        let ts = collector_sdk::time::unix_nanos(s.timestamp).ok_or_else(|| {
            format!(
                "sample {}: timestamp {:?} is not ISO 8601",
                s.message_id, s.timestamp
            )
        })?;
        if self.s.measurement.is_empty() {
            escaped(out, s.counter_name, MEASUREMENT);
        } else {
            escaped(out, &self.s.measurement, MEASUREMENT);
            tag(out, "meter", s.counter_name);
        }
        tag(out, "resource_id", s.resource_id);
        tag(out, "project_id", s.project_id.unwrap_or(""));
        tag(out, "user_id", s.user_id.unwrap_or(""));
        tag(out, "unit", s.counter_unit);
        tag(out, "type", s.counter_type);
        tag(out, "source", s.source);
        for path in &self.s.metadata_tags {
            if let Some(text) = s.metadata_at(path).and_then(|v| v.scalar_text()) {
                tag(out, path, &text);
            }
        }
        out.push_str(" value=");
        if volume.is_finite() {
            out.push_str(&format!("{volume:?}"));
        } else {
            return Err(format!("sample {} has a volume of {volume}", s.message_id));
        }
        for path in &self.s.metadata_fields {
            let Some(v) = s.metadata_at(path) else {
                continue;
            };
            let value = match v {
                ValueView::Bool(b) => b.to_string(),
                ValueView::Str(text) => {
                    let mut q = String::from("\"");
                    for c in text.chars() {
                        if c == '"' || c == '\\' {
                            q.push('\\');
                        }
                        q.push(c);
                    }
                    q.push('"');
                    q
                }
                v => match v.as_f64() {
                    Some(f) if f.is_finite() => format!("{f:?}"),
                    _ => continue,
                },
            };
            out.push(',');
            escaped(out, path, TAG);
            out.push('=');
            out.push_str(&value);
        }
        out.push(' ');
        out.push_str(&ts.to_string());
        out.push('\n');
        Ok(())
    }
}

impl Dispatcher for Influx {
    fn init(config: Config<'_>) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        let target = match s.api.as_str() {
            "v1" => {
                let mut t = format!("/write?db={}&precision=ns", query_value(&s.database));
                if !s.retention_policy.is_empty() {
                    t.push_str(&format!("&rp={}", query_value(&s.retention_policy)));
                }
                t
            }
            "v2" => {
                if s.bucket.is_empty() {
                    return Err("api = \"v2\" needs `bucket` (and `org`)".into());
                }
                format!(
                    "/api/v2/write?org={}&bucket={}&precision=ns",
                    query_value(&s.org),
                    query_value(&s.bucket)
                )
            }
            other => return Err(format!("api must be \"v1\" or \"v2\", not {other:?}")),
        };
        collector_sdk::info!(
            "writing line protocol to endpoint `{}` at {target}",
            s.endpoint
        );
        Ok(Influx {
            s,
            target,
            skipped: 0,
        })
    }

    fn dispatch(&mut self, batch: Batch<'_>) -> Outcome {
        let mut body = String::with_capacity(batch.bytes().len());
        for sample in batch.samples() {
            let sample = match sample {
                Ok(s) => s,
                Err(e) => return Outcome::Reject(e.to_string()),
            };
            let mark = body.len();
            if let Err(why) = self.line(&mut body, &sample) {
                body.truncate(mark);
                self.skipped += 1;
                collector_sdk::warn!("left out ({} so far): {why}", self.skipped);
            }
        }
        if body.is_empty() {
            return Outcome::Ok;
        }
        let result = Request::post(&self.s.endpoint, &self.target)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into_bytes())
            .fetch(Duration::from_millis(self.s.timeout_ms));
        http::outcome(&result).unwrap_or(Outcome::Ok)
    }
}

collector_sdk::export_dispatcher!(Influx);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_the_line_protocol() {
        let mut out = String::new();
        escaped(&mut out, "a,b c", MEASUREMENT);
        assert_eq!(out, r"a\,b\ c");
        out.clear();
        tag(&mut out, "display name", "x=1, y\nz");
        assert_eq!(out, r",display\ name=x\=1\,\ y\ z");
        out.clear();
        tag(&mut out, "empty", "");
        assert_eq!(out, "", "empty tags are left out");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("my db&x=1"), "my%20db%26x%3D1");
    }
}

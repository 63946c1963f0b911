//! Conversions between `serde_json` values and the sample model.
//!
//! Integers and floats stay apart (`512` vs `512.0`) so that signatures survive the trip.

use collector_sdk::model::{Field, Number, Sample, SchemaError, Value};
use serde_json::Value as Json;

/// Why a JSON value is not a sample.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleJsonError {
    /// The top level is not a JSON object.
    #[error("a sample must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    /// The object does not have the sample schema.
    #[error("invalid sample: {0}")]
    Schema(#[from] SchemaError),
    /// The value does not have the shape its format gives a sample.
    #[error("{0}")]
    Shape(String),
}

/// Converts any JSON value, keeping integers and floats apart and object key order.
pub fn value_from_json(v: Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => number_from_json(&n),
        Json::String(s) => Value::Str(s),
        Json::Array(items) => Value::List(items.into_iter().map(value_from_json).collect()),
        Json::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (k, value_from_json(v)))
                .collect(),
        ),
    }
}

fn number_from_json(n: &serde_json::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::Int(i)
    } else if let Some(u) = n.as_u64() {
        Value::UInt(u)
    } else {
        // Without `arbitrary_precision` every other number is an f64, so the
        // NaN fallback is unreachable; it only avoids a panic path.
        Value::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Builds a sample from a JSON object (a `meter_message_from_counter` dict).
///
/// # Errors
/// [`SampleJsonError::NotAnObject`] when `v` is not an object, and
/// [`SampleJsonError::Schema`] when its keys do not form a sample.
pub fn sample_from_json(v: Json) -> Result<Sample, SampleJsonError> {
    sample_from_object(v, |k| k)
}

/// [`sample_from_json`] with each key first passed through `key` (the HTTP
/// input's `as_dict()` names).
pub(crate) fn sample_from_object(
    v: Json,
    key: impl Fn(String) -> String,
) -> Result<Sample, SampleJsonError> {
    let map = match v {
        Json::Object(map) => map,
        other => return Err(SampleJsonError::NotAnObject(json_kind(&other))),
    };
    let entries = map
        .into_iter()
        .map(|(k, v)| (key(k), value_from_json(v)))
        .collect();
    Ok(Sample::from_entries(entries)?)
}

/// What kind of JSON value `v` is, for an error message.
pub(crate) fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Writes a sample back as the JSON dict it came from: absent keys are left out,
/// `null`s are kept, typed keys come first, then the extra keys.
pub fn sample_to_json(s: &Sample) -> Json {
    let mut map = serde_json::Map::new();
    let mut put = |key: &str, value: Json| {
        map.insert(key.to_owned(), value);
    };
    put("source", Json::from(s.source.as_str()));
    put("counter_name", Json::from(s.counter_name.as_str()));
    put("counter_type", Json::from(s.counter_type.as_str()));
    put("counter_unit", Json::from(s.counter_unit.as_str()));
    put(
        "counter_volume",
        s.counter_volume.map_or(Json::Null, number_to_json),
    );
    let optional_str = |f: &Field<String>| field_to_json(f.as_ref(), |v| Json::from(v.as_str()));
    for (key, field) in [
        ("user_id", &s.user_id),
        ("user_name", &s.user_name),
        ("project_id", &s.project_id),
        ("project_name", &s.project_name),
    ] {
        if let Some(v) = optional_str(field) {
            put(key, v);
        }
    }
    put("resource_id", Json::from(s.resource_id.as_str()));
    put("timestamp", Json::from(s.timestamp.as_str()));
    if let Some(md) = &s.resource_metadata {
        put("resource_metadata", value_to_json(md));
    }
    put("message_id", Json::from(s.message_id.as_str()));
    if let Some(v) = field_to_json(s.monotonic_time.as_ref(), |n| number_to_json(*n)) {
        put("monotonic_time", v);
    }
    if let Some(sig) = &s.message_signature {
        put("message_signature", Json::from(sig.as_str()));
    }
    for (k, v) in &s.extra {
        put(k, value_to_json(v));
    }
    Json::Object(map)
}

/// `None` for an absent field, JSON `null` for [`Field::Null`].
fn field_to_json<T>(f: Field<T>, conv: impl FnOnce(T) -> Json) -> Option<Json> {
    match f {
        Field::Absent => None,
        Field::Null => Some(Json::Null),
        Field::Value(v) => Some(conv(v)),
    }
}

fn number_to_json(n: Number) -> Json {
    value_to_json(&Value::from(n))
}

/// Converts a model value to JSON. Bytes become (lossy UTF-8) text and
/// non-finite floats become `null`, which JSON cannot express otherwise.
pub fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::from(s.as_str()),
        Value::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Value::List(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), value_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    /// Ceilometer's captured fixtures, kept in the repository (tests/fixtures/ceilometer).
    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ceilometer")
    }

    fn expected_lines(set: &str) -> Vec<Json> {
        let path = fixtures().join(set).join("expected.jsonl");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        text.lines()
            .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
            .collect()
    }

    #[test]
    fn expected_lines_round_trip() {
        for set in ["udp", "udp-unsigned", "notification", "rpc"] {
            let lines = expected_lines(set);
            assert!(!lines.is_empty(), "{set}: no lines");
            for (i, line) in lines.into_iter().enumerate() {
                let sample = sample_from_json(line.clone())
                    .unwrap_or_else(|e| panic!("{set} line {}: {e}", i + 1));
                // serde_json::Value equality compares maps by content, not order.
                assert_eq!(sample_to_json(&sample), line, "{set} line {}", i + 1);
            }
        }
    }

    #[test]
    fn udp_expected_has_40_lines_with_both_number_kinds() {
        let lines = expected_lines("udp");
        assert_eq!(lines.len(), 40);
        let samples: Vec<Sample> = lines
            .into_iter()
            .map(|l| sample_from_json(l).expect("sample"))
            .collect();
        let floats = samples
            .iter()
            .filter(|s| matches!(s.counter_volume, Some(Number::Float(_))))
            .count();
        assert_eq!(
            floats, 8,
            "README: 32 volumes are integers and 8 are floats"
        );
    }

    #[test]
    fn int_and_float_stay_apart() {
        let v = value_from_json(json!({"a": 512, "b": 512.0, "c": -3, "d": 1e-05}));
        assert_eq!(
            v,
            Value::Map(vec![
                ("a".into(), Value::Int(512)),
                ("b".into(), Value::Float(512.0)),
                ("c".into(), Value::Int(-3)),
                ("d".into(), Value::Float(1e-05)),
            ])
        );
        let back = value_to_json(&v);
        assert!(back["a"].is_i64());
        assert!(back["b"].is_f64());
        assert_eq!(
            back.to_string(),
            r#"{"a":512,"b":512.0,"c":-3,"d":0.00001}"#
        );
    }

    #[test]
    fn large_integers_stay_exact() {
        let v: Json = serde_json::from_str("[18446744073709551615, 9223372036854775807, 9223372036854775808, -9223372036854775808, 9007199254740993]")
            .expect("json");
        assert_eq!(
            value_from_json(v.clone()),
            Value::List(vec![
                Value::UInt(u64::MAX),
                Value::Int(i64::MAX),
                Value::UInt(1 << 63),
                Value::Int(i64::MIN),
                Value::Int(9_007_199_254_740_993),
            ])
        );
        assert_eq!(value_to_json(&value_from_json(v.clone())), v);
    }

    fn minimal() -> Json {
        json!({
            "source": "openstack", "counter_name": "cpu", "counter_type": "cumulative",
            "counter_unit": "ns", "counter_volume": 512, "resource_id": "r",
            "timestamp": "2025-06-01T12:00:00", "message_id": "m",
        })
    }

    #[test]
    fn absent_and_null_stay_apart() {
        let mut j = minimal();
        j["user_name"] = Json::Null;
        j["monotonic_time"] = Json::Null;
        j["counter_volume"] = Json::Null;
        let s = sample_from_json(j.clone()).expect("sample");
        assert_eq!(s.user_name, Field::Null);
        assert_eq!(s.user_id, Field::Absent);
        assert_eq!(s.monotonic_time, Field::Null);
        assert_eq!(s.counter_volume, None);
        assert_eq!(s.resource_metadata, None);
        assert_eq!(s.message_signature, None);
        let back = sample_to_json(&s);
        assert_eq!(back, j);
        let obj = back.as_object().expect("object");
        assert!(obj.contains_key("user_name"));
        assert!(!obj.contains_key("user_id"));
        assert!(!obj.contains_key("resource_metadata"));
        assert!(!obj.contains_key("message_signature"));
    }

    #[test]
    fn extra_keys_are_kept() {
        let mut j = minimal();
        j["publisher_id"] = json!("vm");
        j["resource_metadata"] = json!({});
        let s = sample_from_json(j.clone()).expect("sample");
        assert_eq!(
            s.extra,
            vec![("publisher_id".to_owned(), Value::Str("vm".into()))]
        );
        assert_eq!(s.resource_metadata, Some(Value::Map(vec![])));
        assert_eq!(sample_to_json(&s), j);
    }

    #[test]
    fn errors() {
        assert_eq!(
            sample_from_json(json!([1])),
            Err(SampleJsonError::NotAnObject("an array"))
        );
        let mut j = minimal();
        j.as_object_mut().expect("object").remove("counter_name");
        assert_eq!(
            sample_from_json(j),
            Err(SampleJsonError::Schema(SchemaError::Missing(
                "counter_name"
            )))
        );
        let mut j = minimal();
        j["counter_volume"] = json!("12");
        assert!(matches!(
            sample_from_json(j),
            Err(SampleJsonError::Schema(SchemaError::WrongType { .. }))
        ));
    }

    #[test]
    fn bytes_and_non_finite_floats() {
        assert_eq!(
            value_to_json(&Value::Bytes(b"ab\xff".to_vec())),
            json!("ab\u{fffd}")
        );
        assert_eq!(value_to_json(&Value::Float(f64::NAN)), Json::Null);
        assert_eq!(value_to_json(&Value::Float(f64::INFINITY)), Json::Null);
    }
}

//! The bodies Ceilometer's `http://` publisher (`HttpPublisher`) posts: a JSON
//! list of `Sample.as_dict()` (one request per batch), or one bare object per
//! request with `batch=False`. Unsigned.
//!
//! `as_dict()` is the sample's `__dict__`; its keys become the meter message's
//! (what `meter_message_from_counter` would have built, and what the UDP and
//! AMQP inputs carry), so that every dispatcher sees one sample model:
//!
//! | `as_dict()` | sample model |
//! |---|---|
//! | `name`, `type`, `unit`, `volume` | `counter_name`, `counter_type`, `counter_unit`, `counter_volume` |
//! | `id` | `message_id` |
//! | `user_id`, `user_name`, `project_id`, `project_name`, `resource_id`, `timestamp`, `resource_metadata`, `source`, `monotonic_time` | the same names |
//! | any other key | kept as an extra key, under its own name |
//!
//! No `message_signature` is added (there is none to carry).

use collector_sdk::model::Sample;
use serde_json::Value as Json;

use crate::json::{SampleJsonError, sample_from_object};

/// Why a body was refused as a whole (nothing of it is dispatched).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the body must be a JSON list of samples or one sample object, not {0}")]
    WrongShape(&'static str),
    #[error("sample {index} of the body: {error}")]
    Invalid {
        index: usize,
        #[source]
        error: SampleJsonError,
    },
    #[error("the body holds more than {limit} samples")]
    TooMany { limit: usize },
}

/// The key of the sample model an `as_dict()` key maps to.
pub fn model_key(as_dict_key: &str) -> &str {
    match as_dict_key {
        "name" => "counter_name",
        "type" => "counter_type",
        "unit" => "counter_unit",
        "volume" => "counter_volume",
        "id" => "message_id",
        other => other,
    }
}

/// One `as_dict()` object as a sample.
///
/// # Errors
/// When it is not an object, or lacks what a sample needs.
pub fn sample_from_as_dict(v: Json) -> Result<Sample, SampleJsonError> {
    sample_from_object(v, |k| {
        let key = model_key(&k);
        if key.len() == k.len() {
            k
        } else {
            key.to_owned()
        }
    })
}

/// Every sample of a body, or why the body is refused.
///
/// A list is read one item at a time, each item into a sample before the
/// next is parsed, and reading stops at the first item past `max_samples`:
/// what a body costs beyond its own bytes is its samples plus one item's JSON
/// tree, however many values it holds (`[0,0,0,…]` is refused at its first item).
///
/// # Errors
/// [`BodyError`]: not JSON, not a list or object, more than `max_samples`, or
/// an item that is not a sample (naming its index).
pub fn decode(body: &[u8], max_samples: usize) -> Result<Vec<Sample>, BodyError> {
    use serde::Deserializer as _;
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut failure = None;
    let visitor = Items {
        max: max_samples,
        failure: &mut failure,
    };
    let parsed = de
        .deserialize_any(visitor)
        .and_then(|v| de.end().map(|()| v));
    match (parsed, failure) {
        (_, Some(f)) => Err(f),
        (Ok(samples), None) => Ok(samples),
        (Err(e), None) => Err(BodyError::NotJson(e)),
    }
}

/// Reads a body's top level: a list of sample objects, or one.
struct Items<'f> {
    max: usize,
    /// Why the body was refused when it was JSON (serde's error only stops it).
    failure: &'f mut Option<BodyError>,
}

impl Items<'_> {
    fn refuse<E: serde::de::Error>(self, f: BodyError) -> E {
        let e = E::custom(f.to_string());
        *self.failure = Some(f);
        e
    }
}

impl<'de> serde::de::Visitor<'de> for Items<'_> {
    type Value = Vec<Sample>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of samples or one sample")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Sample>, A::Error> {
        let mut out = Vec::new();
        let failed = loop {
            let Some(item) = seq.next_element::<Json>()? else {
                return Ok(out);
            };
            if out.len() == self.max {
                break BodyError::TooMany { limit: self.max };
            }
            match sample_from_as_dict(item) {
                Ok(s) => out.push(s),
                Err(error) => {
                    break BodyError::Invalid {
                        index: out.len(),
                        error,
                    };
                }
            }
        };
        Err(self.refuse(failed))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Vec<Sample>, A::Error> {
        use serde::Deserialize as _;
        let obj = Json::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        if self.max == 0 {
            return Err(self.refuse(BodyError::TooMany { limit: 0 }));
        }
        sample_from_as_dict(obj)
            .map(|s| vec![s])
            .map_err(|error| self.refuse(BodyError::Invalid { index: 0, error }))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Vec<Sample>, E> {
        Err(self.refuse(BodyError::WrongShape("a boolean")))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Vec<Sample>, E> {
        Err(self.refuse(BodyError::WrongShape("a number")))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Vec<Sample>, E> {
        Err(self.refuse(BodyError::WrongShape("a number")))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Vec<Sample>, E> {
        Err(self.refuse(BodyError::WrongShape("a number")))
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Vec<Sample>, E> {
        Err(self.refuse(BodyError::WrongShape("a string")))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<Sample>, E> {
        Err(self.refuse(BodyError::WrongShape("null")))
    }
}

/// The `as_dict()` key of a sample model key (the inverse of [`model_key`]).
fn as_dict_key(model_key: &str) -> &str {
    match model_key {
        "counter_name" => "name",
        "counter_type" => "type",
        "counter_unit" => "unit",
        "counter_volume" => "volume",
        "message_id" => "id",
        other => other,
    }
}

/// A sample as the publisher's `as_dict()` would give it (for `collector send
/// http` and tests): the meter message's keys renamed, without a signature.
pub fn as_dict(s: &Sample) -> Json {
    let Json::Object(map) = crate::json::sample_to_json(s) else {
        return Json::Null;
    };
    Json::Object(
        map.into_iter()
            .filter(|(k, _)| k != "message_signature")
            .map(|(k, v)| (as_dict_key(&k).to_owned(), v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS_DICT: &str = r#"{"name": "cpu", "type": "cumulative", "unit": "ns", "volume": 12,
        "user_id": "u", "user_name": null, "project_id": "p", "project_name": null,
        "resource_id": "r", "timestamp": "2026-12-02T03:00:00.123456",
        "resource_metadata": {"flavor": {"name": "m1"}}, "source": "openstack",
        "id": "7f3c", "monotonic_time": null, "x-extra": [1, 2.5]}"#;

    #[test]
    fn as_dict_keys_become_the_meter_message_and_keep_the_rest() {
        let one = decode(AS_DICT.as_bytes(), 10).expect("one object");
        let list = decode(format!("[{AS_DICT}, {AS_DICT}]").as_bytes(), 10).expect("a list");
        assert_eq!(one.len(), 1);
        assert_eq!(list.len(), 2);
        let s = &one[0];
        assert_eq!(
            (
                s.counter_name.as_str(),
                s.counter_type.as_str(),
                s.counter_unit.as_str()
            ),
            ("cpu", "cumulative", "ns")
        );
        assert_eq!(s.message_id, "7f3c");
        assert_eq!(s.user_name, collector_sdk::model::Field::Null);
        assert_eq!(s.message_signature, None);
        assert_eq!(s.extra.len(), 1, "{:?}", s.extra);
        assert_eq!(s.extra[0].0, "x-extra");
    }

    #[test]
    fn as_dict_is_the_inverse() {
        let s = decode(AS_DICT.as_bytes(), 1).expect("decoded").remove(0);
        let back = as_dict(&s);
        let again = sample_from_as_dict(back).expect("a sample");
        assert_eq!(again, s);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let e = |b: &str| decode(b.as_bytes(), 2).expect_err(b).to_string();
        assert!(e("{not json").contains("not JSON"));
        assert!(e("42").contains("not a number"));
        assert!(e(r#"[{"name": "x"}]"#).contains("sample 0"));
        assert!(e(&format!("[{AS_DICT}, 3]")).contains("sample 1"));
        assert!(e(&format!("[{AS_DICT}, {AS_DICT}, {AS_DICT}]")).contains("more than 2"));
        assert!(e(&format!("[{AS_DICT}] trailing")).contains("not JSON"));
        assert!(e("null").contains("not null"));
        // A list of millions of values is refused at its first item, not parsed whole.
        let many = format!("[{}0]", "0,".repeat(1_000_000));
        assert!(e(&many).contains("sample 0"));
    }
}

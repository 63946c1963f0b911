//! The owned sample model: everything a Ceilometer sample dict carries, losslessly.
//!
//! A sample keeps the int/float distinction of every number, `null`s, absent keys
//! (a key that was not sent is not written back), nested metadata and unknown extra
//! keys, so that a dispatcher can write out exactly the dict the agent sent and
//! Ceilometer's own `verify_signature` still accepts it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number as it was on the wire: integers and floats are never mixed up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Number {
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer above `i64::MAX` (msgpack uint64), up to `u64::MAX`.
    UInt(u64),
    /// A float (IEEE-754 binary64).
    Float(f64),
}

impl Number {
    /// The value as `f64` (large integers lose precision, as in any float conversion).
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::UInt(u) => u as f64,
            Number::Float(f) => f,
        }
    }
}

/// Any value of a sample's `resource_metadata` or extra keys.
///
/// Maps keep the order of their keys as received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Str(String),
    /// msgpack `bin`: raw bytes (rare; written out as text when they are UTF-8).
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
}

impl From<Number> for Value {
    fn from(n: Number) -> Self {
        match n {
            Number::Int(i) => Value::Int(i),
            Number::UInt(u) => Value::UInt(u),
            Number::Float(f) => Value::Float(f),
        }
    }
}

/// A top-level key that may be absent, `null`, or carry a value.
///
/// On the wire (bincode) it is `Option<Option<T>>`: `00` = absent,
/// `01 00` = null, `01 01 <T>` = value.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Field<T> {
    /// The key was not in the sample dict.
    #[default]
    Absent,
    /// The key was present with the value `null`.
    Null,
    /// The key was present with a value.
    Value(T),
}

impl<T> Field<T> {
    /// The value, if any (absent and null both give `None`).
    pub fn value(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value, or `default` when absent or null.
    pub fn unwrap_or(self, default: T) -> T {
        match self {
            Field::Value(v) => v,
            _ => default,
        }
    }

    /// True when the key was present (with a value or `null`).
    pub fn is_present(&self) -> bool {
        !matches!(self, Field::Absent)
    }

    pub fn as_ref(&self) -> Field<&T> {
        match self {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Value(v) => Field::Value(v),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Field<U> {
        match self {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Value(v) => Field::Value(f(v)),
        }
    }
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let nested: Option<Option<&T>> = match self {
            Field::Absent => None,
            Field::Null => Some(None),
            Field::Value(v) => Some(Some(v)),
        };
        nested.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<Option<T>>::deserialize(d)? {
            None => Field::Absent,
            Some(None) => Field::Null,
            Some(Some(v)) => Field::Value(v),
        })
    }
}

/// One Ceilometer sample (`meter_message_from_counter`), field for field.
///
/// The field order is the ABI's byte order (docs/ABI.md): do not reorder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub source: String,
    pub counter_name: String,
    /// `gauge`, `delta` or `cumulative`.
    pub counter_type: String,
    pub counter_unit: String,
    /// `None` when the agent sent `null`.
    pub counter_volume: Option<Number>,
    pub user_id: Field<String>,
    pub user_name: Field<String>,
    pub project_id: Field<String>,
    pub project_name: Field<String>,
    pub resource_id: String,
    /// ISO 8601 text exactly as sent (naive for polled samples, `+00:00` for others).
    pub timestamp: String,
    /// `None` when the key was absent; normally a [`Value::Map`].
    pub resource_metadata: Option<Value>,
    pub message_id: String,
    pub monotonic_time: Field<Number>,
    /// `None` when the key was absent.
    pub message_signature: Option<String>,
    /// Every other top-level key, in the order received (e.g. `publisher_id`).
    pub extra: Vec<(String, Value)>,
}

/// Why a dict is not a valid sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchemaError {
    /// A required key is absent.
    Missing(&'static str),
    /// A key has a value of the wrong type.
    WrongType { key: String, expected: &'static str },
    /// The same top-level key appears twice.
    Duplicate(String),
    /// The value of a key nests more than `limit` levels deep, the sample counting as
    /// one ([`MAX_NESTING`](crate::abi::MAX_NESTING)).
    TooDeep { key: String, limit: u32 },
}

impl core::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SchemaError::Missing(k) => write!(f, "required key `{k}` is missing"),
            SchemaError::WrongType { key, expected } => write!(f, "key `{key}` must be {expected}"),
            SchemaError::Duplicate(k) => write!(f, "key `{k}` appears twice"),
            SchemaError::TooDeep { key, limit } => write!(
                f,
                "key `{key}` nests more than {limit} levels deep (the sample counting as one)"
            ),
        }
    }
}

impl std::error::Error for SchemaError {}

/// The top-level keys with a typed field, in ABI order.
pub const KNOWN_KEYS: [&str; 15] = [
    "source",
    "counter_name",
    "counter_type",
    "counter_unit",
    "counter_volume",
    "user_id",
    "user_name",
    "project_id",
    "project_name",
    "resource_id",
    "timestamp",
    "resource_metadata",
    "message_id",
    "monotonic_time",
    "message_signature",
];

impl Sample {
    /// Builds a sample from the entries of a sample dict, checking its schema.
    ///
    /// Required: `source`, `counter_name`, `counter_type`, `counter_unit`,
    /// `resource_id`, `timestamp`, `message_id` (strings) and `counter_volume`
    /// (a number or `null`). The optional keys keep their presence.
    ///
    /// # Errors
    /// A [`SchemaError`] naming the first key that is missing or of the wrong type.
    pub fn from_entries(entries: Vec<(String, Value)>) -> Result<Sample, SchemaError> {
        let mut slots: [Option<Value>; 15] = Default::default();
        let mut extra = Vec::new();
        for (key, value) in entries {
            match KNOWN_KEYS.iter().position(|k| *k == key) {
                Some(i) if slots[i].is_some() => return Err(SchemaError::Duplicate(key)),
                Some(i) => slots[i] = Some(value),
                None => extra.push((key, value)),
            }
        }
        if let Some(key) = first_repeated_key(&extra) {
            return Err(SchemaError::Duplicate(key.to_owned()));
        }
        let [
            source,
            counter_name,
            counter_type,
            counter_unit,
            counter_volume,
            user_id,
            user_name,
            project_id,
            project_name,
            resource_id,
            timestamp,
            resource_metadata,
            message_id,
            monotonic_time,
            message_signature,
        ] = slots;
        Ok(Sample {
            source: required_str("source", source)?,
            counter_name: required_str("counter_name", counter_name)?,
            counter_type: required_str("counter_type", counter_type)?,
            counter_unit: required_str("counter_unit", counter_unit)?,
            counter_volume: match counter_volume {
                None => return Err(SchemaError::Missing("counter_volume")),
                Some(Value::Null) => None,
                Some(v) => Some(number("counter_volume", v)?),
            },
            user_id: optional_str("user_id", user_id)?,
            user_name: optional_str("user_name", user_name)?,
            project_id: optional_str("project_id", project_id)?,
            project_name: optional_str("project_name", project_name)?,
            resource_id: required_str("resource_id", resource_id)?,
            timestamp: required_str("timestamp", timestamp)?,
            resource_metadata,
            message_id: required_str("message_id", message_id)?,
            monotonic_time: match monotonic_time {
                None => Field::Absent,
                Some(Value::Null) => Field::Null,
                Some(v) => Field::Value(number("monotonic_time", v)?),
            },
            message_signature: match message_signature {
                None => None,
                Some(Value::Str(s)) => Some(s),
                Some(_) => return Err(wrong("message_signature", "a string")),
            },
            extra,
        })
    }
}

/// Up to this many extra keys, comparing each with the earlier ones beats hashing.
const LINEAR_EXTRA_KEYS: usize = 16;

/// The first key (in input order) that an earlier entry already has.
///
/// Linear in the number of keys: a hostile sample with many thousands of distinct
/// extra keys costs one hash each (SipHash, keyed per process, so the keys cannot
/// be chosen to collide), never a comparison with every earlier key.
fn first_repeated_key(entries: &[(String, Value)]) -> Option<&str> {
    if entries.len() <= LINEAR_EXTRA_KEYS {
        return entries
            .iter()
            .enumerate()
            .find(|(i, (k, _))| entries[..*i].iter().any(|(e, _)| e == k))
            .map(|(_, (k, _))| k.as_str());
    }
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    entries
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !seen.insert(*k))
}

fn wrong(key: &str, expected: &'static str) -> SchemaError {
    SchemaError::WrongType {
        key: key.to_owned(),
        expected,
    }
}

fn required_str(key: &'static str, v: Option<Value>) -> Result<String, SchemaError> {
    match v {
        None => Err(SchemaError::Missing(key)),
        Some(Value::Str(s)) => Ok(s),
        Some(_) => Err(wrong(key, "a string")),
    }
}

fn optional_str(key: &'static str, v: Option<Value>) -> Result<Field<String>, SchemaError> {
    match v {
        None => Ok(Field::Absent),
        Some(Value::Null) => Ok(Field::Null),
        Some(Value::Str(s)) => Ok(Field::Value(s)),
        Some(_) => Err(wrong(key, "a string or null")),
    }
}

fn number(key: &'static str, v: Value) -> Result<Number, SchemaError> {
    match v {
        Value::Int(i) => Ok(Number::Int(i)),
        Value::UInt(u) => Ok(Number::UInt(u)),
        Value::Float(f) => Ok(Number::Float(f)),
        _ => Err(wrong(key, "a number or null")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(extra: &[&str]) -> Vec<(String, Value)> {
        let mut e: Vec<(String, Value)> = [
            "source",
            "counter_name",
            "counter_type",
            "counter_unit",
            "resource_id",
            "timestamp",
            "message_id",
        ]
        .iter()
        .map(|k| ((*k).to_owned(), Value::Str("x".into())))
        .collect();
        e.push(("counter_volume".into(), Value::Int(1)));
        e.extend(extra.iter().map(|k| ((*k).to_owned(), Value::Null)));
        e
    }

    #[test]
    fn repeated_extra_keys_are_refused_few_or_many() {
        let few = dict(&["a", "b", "a"]);
        assert_eq!(
            Sample::from_entries(few),
            Err(SchemaError::Duplicate("a".into()))
        );
        let names: Vec<String> = (0..5000).map(|i| format!("k{i}")).collect();
        let mut keys: Vec<&str> = names.iter().map(String::as_str).collect();
        keys.push("k4321");
        keys.push("k17");
        assert_eq!(
            Sample::from_entries(dict(&keys)),
            Err(SchemaError::Duplicate("k4321".into())),
            "the first repeat in input order is named"
        );
        keys.truncate(5000);
        let s = Sample::from_entries(dict(&keys)).expect("distinct keys");
        assert_eq!(s.extra.len(), 5000);
        assert_eq!(s.extra[4999].0, "k4999", "extras keep their order");
    }

    #[test]
    fn repeated_known_keys_are_refused() {
        let mut d = dict(&[]);
        d.push(("source".into(), Value::Str("y".into())));
        assert_eq!(
            Sample::from_entries(d),
            Err(SchemaError::Duplicate("source".into()))
        );
    }
}

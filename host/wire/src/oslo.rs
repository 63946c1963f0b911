//! oslo.messaging AMQP bodies (notifications and `record_metering_data` casts) decoded into
//! samples the way `deserialize_msg` and Ceilometer's endpoints read them, streaming through
//! serde visitors so that no intermediate JSON tree is built.
//!
//! Hand-written where a crate would do less well: objects keep Python's `json.loads`
//! semantics (first-seen key order, the last value of a repeated key) in [`Entries`],
//! which builds each object's vector once at its final size from a stack shared by
//! the whole text, skips the search for a repeat with a 128-bit fingerprint for
//! small objects and hashes only large ones; an `IndexMap` per object would hash
//! every key and allocate twice. Integers beyond 64 bits are found in the text
//! ([`long_integer_literals`]), because serde_json turns them into floats.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use collector_sdk::abi::MAX_NESTING;
use collector_sdk::model::{Sample, SchemaError, Value};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

mod transcode;

pub use transcode::{Transcoded, Transcoder, verify_owned};

/// The only RPC method that carries samples.
pub const RECORD_METERING_DATA: &str = "record_metering_data";

/// How the samples travelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// A notification from `SampleNotifierPublisher` (driver `messagingv2`, or `messaging`
    /// without the envelope).
    Notification {
        event_type: String,
        /// As on the wire, normally upper-case `SAMPLE` (oslo.messaging lower-cases it only
        /// to pick the endpoint method); empty when the key is absent.
        priority: String,
        publisher_id: Option<String>,
        /// The notification's own id, not a sample's.
        message_id: Option<String>,
    },
    /// A Kilo/Liberty RPC cast; `method` is always [`RECORD_METERING_DATA`].
    RpcCast { method: String },
}

/// One decoded message body.
#[derive(Clone, Debug, PartialEq)]
pub struct OsloMessage {
    pub kind: MessageKind,
    /// oslo.messaging's duplicate-detection key (`_unique_id`).
    pub unique_id: Option<String>,
    /// The valid samples, in payload order.
    pub samples: Vec<Sample>,
    /// Dicts of the payload that are not valid samples: their index in the payload and why.
    /// The caller drops and counts them and still dispatches `samples`.
    pub invalid: Vec<(usize, SchemaError)>,
}

/// Why a message body cannot be decoded; the whole message is rejected.
#[derive(Debug, thiserror::Error)]
pub enum OsloError {
    #[error("message body is not UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    #[error("message body is not valid JSON: {0}")]
    BodyJson(#[source] serde_json::Error),
    #[error("message body is {found}, not a JSON object")]
    BodyNotAnObject { found: &'static str },
    /// oslo.messaging's `UnsupportedRpcEnvelopeVersion`.
    #[error("oslo envelope version {0:?} is not compatible with 2.0")]
    UnsupportedEnvelopeVersion(String),
    #[error("`oslo.version` is {found}, not a version string")]
    EnvelopeVersionNotString { found: &'static str },
    #[error("`oslo.message` is {found}, not a string holding JSON")]
    EnvelopeMessageNotString { found: &'static str },
    #[error("`oslo.message` is not valid JSON: {0}")]
    InnerJson(#[source] serde_json::Error),
    #[error("`oslo.message` holds {found}, not a JSON object")]
    InnerNotAnObject { found: &'static str },
    #[error(
        "message is neither a notification (`event_type`, `payload`) nor an RPC cast (`method`)"
    )]
    UnknownShape,
    #[error("notification has no `{0}`")]
    MissingField(&'static str),
    #[error("`{field}` is {found}, not a string")]
    FieldNotString {
        field: &'static str,
        found: &'static str,
    },
    #[error("notification payload is {found}, not a list of sample dicts")]
    PayloadNotList { found: &'static str },
    #[error("RPC method `{0}` is not supported (only `record_metering_data` carries samples)")]
    UnsupportedMethod(String),
    #[error("RPC `args` is {found}, not a dict")]
    ArgsNotObject { found: &'static str },
    #[error("RPC cast has no `args.data`")]
    MissingData,
    #[error("RPC `args.data` is {found}, not a sample dict or a list of them")]
    DataNotSamples { found: &'static str },
    /// Ceilometer would fail on the whole batch, so the whole message is refused.
    #[error("payload item {index} is {found}, not a sample dict")]
    SampleNotObject { index: usize, found: &'static str },
    #[error(
        "message body of {bytes} bytes exceeds the limit of {limit} (sources.amqp.max_message_bytes)"
    )]
    TooLarge { bytes: usize, limit: usize },
    #[error("payload holds more than {limit} samples (sources.amqp.max_samples_per_message)")]
    TooManySamples { limit: usize },
    /// The decoder itself failed on this body (a bug it triggers); never produced
    /// by [`decode_message`], used by callers that run it on another thread.
    #[error("the message decoder failed on this body")]
    DecoderFailed,
}

/// Decodes one AMQP message body: the oslo 2.0 envelope or a bare (v1) message, holding a
/// sample notification or a `record_metering_data` cast.
///
/// # Errors
/// An [`OsloError`] when the body, the envelope or the message shape is wrong. Dicts that
/// are not valid samples do not fail the message; they are listed in
/// [`OsloMessage::invalid`].
pub fn decode_message(body: &[u8]) -> Result<OsloMessage, OsloError> {
    decode_message_within(body, &Limits::default())
}

/// What one message may hold: the memory a message takes is bounded by these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the body (checked before anything is parsed).
    pub max_bytes: usize,
    /// Samples (dicts) in its payload; decoding stops at the next one.
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 16 << 20,
            max_samples: 20_000,
        }
    }
}

/// [`decode_message`] within `limits`: a bigger body is refused before it is
/// parsed, and a payload with more samples as soon as the first one too many
/// is met, so that a message costs memory in proportion to the limits only.
///
/// # Errors
/// As [`decode_message`], and [`OsloError::TooLarge`] / [`OsloError::TooManySamples`].
pub fn decode_message_within(body: &[u8], limits: &Limits) -> Result<OsloMessage, OsloError> {
    read_within(body, limits, &mut None, |f, text, _| {
        let (kind, unique_id, items) = shape(f)?;
        let (samples, invalid) = split_items(items, text)?;
        Ok(OsloMessage {
            kind,
            unique_id,
            samples,
            invalid,
        })
    })
}

/// Reads a body down to the fields of its message (unwrapping the envelope)
/// and hands them to `finish` with the text they were read from. With a
/// [`transcode::Sink`], payload dicts are transcoded into it as they are read.
fn read_within<R>(
    body: &[u8],
    limits: &Limits,
    sink: &mut Option<transcode::Sink>,
    finish: impl FnOnce(Fields<'_>, &str, &mut Option<transcode::Sink>) -> Result<R, OsloError>,
) -> Result<R, OsloError> {
    if body.len() > limits.max_bytes {
        return Err(OsloError::TooLarge {
            bytes: body.len(),
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(body).map_err(|e| OsloError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let mut fields = match parse(text, limits, sink).map_err(OsloError::body)? {
        Top::Object(fields) => fields,
        Top::Other(found) => return Err(OsloError::BodyNotAnObject { found }),
    };
    // Like `deserialize_msg`: only a dict with both keys is an envelope, and it is unwrapped
    // once; anything else is the message itself.
    let (Some(version), Some(message)) = (fields.version.take(), fields.message.take()) else {
        return finish(fields, text, sink);
    };
    match version {
        Loose::Str(v) if version_compatible(&v) => {}
        Loose::Str(v) => return Err(OsloError::UnsupportedEnvelopeVersion(v.into_owned())),
        Loose::Other(found) => return Err(OsloError::EnvelopeVersionNotString { found }),
    }
    let inner = match message {
        Loose::Str(s) => s,
        Loose::Other(found) => return Err(OsloError::EnvelopeMessageNotString { found }),
    };
    if let Some(sink) = sink {
        // Samples of the envelope itself are not the message's.
        sink.envelope_unwrapped();
    }
    match parse(&inner, limits, sink).map_err(OsloError::inner)? {
        Top::Object(fields) => finish(fields, &inner, sink),
        Top::Other(found) => Err(OsloError::InnerNotAnObject { found }),
    }
}

/// oslo.messaging's `version_is_compatible('2.0', v)`: same major, minor not above 0, and
/// with minor 0 no revision above 0. `int()` there also takes `_` and non-ASCII digits,
/// which no sender uses; anything unparsable is refused, as the Python raises.
fn version_compatible(v: &str) -> bool {
    let int = |p: &str| p.trim().parse::<i64>().ok();
    let mut parts = v.split('.');
    let major = parts.next().and_then(int);
    let minor = parts.next().and_then(int);
    let rev = parts.next().map_or(Some(0), int);
    match (major, minor, rev) {
        (Some(2), Some(minor), Some(rev)) => minor < 0 || (minor == 0 && rev <= 0),
        _ => false,
    }
}

/// Why one JSON text could not be parsed.
enum ParseError {
    Json(serde_json::Error),
    TooManySamples(usize),
}

impl OsloError {
    fn body(e: ParseError) -> OsloError {
        match e {
            ParseError::Json(e) => OsloError::BodyJson(e),
            ParseError::TooManySamples(limit) => OsloError::TooManySamples { limit },
        }
    }

    fn inner(e: ParseError) -> OsloError {
        match e {
            ParseError::Json(e) => OsloError::InnerJson(e),
            ParseError::TooManySamples(limit) => OsloError::TooManySamples { limit },
        }
    }
}

/// Parses one JSON text (the body or the inner message) down to the message's fields.
fn parse<'t>(
    text: &'t str,
    limits: &Limits,
    sink: &mut Option<transcode::Sink>,
) -> Result<Top<'t>, ParseError> {
    let mut ctx = Ctx {
        max_samples: limits.max_samples,
        sink: sink.take(),
        ..Ctx::default()
    };
    // serde_json's recursion limit (128) turns deep nesting into an error, not a stack
    // overflow; every reader below recurses only through its `deserialize_any`.
    let mut de = serde_json::Deserializer::from_str(text);
    let top = MessageSeed { ctx: &mut ctx }.deserialize(&mut de);
    *sink = ctx.sink.take();
    if ctx.too_many_samples {
        return Err(ParseError::TooManySamples(limits.max_samples));
    }
    let top = top.map_err(ParseError::Json)?;
    de.end().map_err(ParseError::Json)?;
    Ok(top)
}

/// Chooses the message shape and checks its fields: its kind, `_unique_id` and payload items.
fn shape(f: Fields<'_>) -> Result<(MessageKind, Option<String>, Vec<Item>), OsloError> {
    let unique_id = optional_str("_unique_id", f.unique_id)?;
    let (kind, items) = if f.event_type.is_some() || f.payload.is_some() {
        let event_type = required_str("event_type", f.event_type)?;
        let items = match f.payload {
            None => return Err(OsloError::MissingField("payload")),
            Some(Samples::List(items)) => items,
            // Ceilometer chains the payloads together, so a dict would be iterated as its
            // keys and fail; a single sample is accepted only from RPC (below).
            Some(Samples::Object(_)) => {
                return Err(OsloError::PayloadNotList { found: "an object" });
            }
            Some(Samples::Other(found)) => return Err(OsloError::PayloadNotList { found }),
        };
        let kind = MessageKind::Notification {
            event_type,
            priority: optional_str("priority", f.priority)?.unwrap_or_default(),
            publisher_id: optional_str("publisher_id", f.publisher_id)?,
            message_id: optional_str("message_id", f.message_id)?,
        };
        (kind, items)
    } else if f.method.is_some() {
        let method = required_str("method", f.method)?;
        if method != RECORD_METERING_DATA {
            return Err(OsloError::UnsupportedMethod(method));
        }
        // Keys of `args` other than `data` are ignored rather than refused as Python's call
        // with unexpected keyword arguments would be: they cannot change the samples.
        let items = match f.args {
            None | Some(Args::Map { data: None }) => return Err(OsloError::MissingData),
            Some(Args::Other(found)) => return Err(OsloError::ArgsNotObject { found }),
            Some(Args::Map { data: Some(data) }) => match data {
                Samples::List(items) => items,
                // The dispatchers wrap a lone dict: `if not isinstance(data, list)`.
                Samples::Object(item) => vec![item],
                Samples::Other(found) => return Err(OsloError::DataNotSamples { found }),
            },
        };
        (MessageKind::RpcCast { method }, items)
    } else {
        return Err(OsloError::UnknownShape);
    };
    Ok((kind, unique_id, items))
}

fn required_str(field: &'static str, v: Option<Loose<'_>>) -> Result<String, OsloError> {
    match v {
        None => Err(OsloError::MissingField(field)),
        Some(Loose::Str(s)) => Ok(s.into_owned()),
        Some(Loose::Other(found)) => Err(OsloError::FieldNotString { field, found }),
    }
}

/// Absent and `null` both give `None`.
fn optional_str(field: &'static str, v: Option<Loose<'_>>) -> Result<Option<String>, OsloError> {
    match v {
        None | Some(Loose::Other("null")) => Ok(None),
        Some(Loose::Str(s)) => Ok(Some(s.into_owned())),
        Some(Loose::Other(found)) => Err(OsloError::FieldNotString { field, found }),
    }
}

/// Valid samples, and the index and error of each invalid dict.
type Split = (Vec<Sample>, Vec<(usize, SchemaError)>);

/// What [`SchemaError::WrongType`] says of a key whose value held an integer beyond 64 bits.
const TOO_BIG: &str = "free of integers beyond 64 bits";

/// Separates valid samples from invalid dicts; a non-dict item fails the whole message.
///
/// Integers beyond 64 bits: Python's are unbounded and the signature hashes their exact
/// decimal text, so read as a float such a sample could neither be verified nor passed on
/// unchanged (`1e+20` is not `100000000000000000000`). It is refused into `invalid` instead
/// of being rounded. serde_json hands such a literal to the visitor as an `f64` like any
/// float, so the readers only note floats beyond the 64-bit integer range, and only then is
/// the text scanned to tell `1e20` from `100000000000000000000`.
fn split_items(items: Vec<Item>, text: &str) -> Result<Split, OsloError> {
    let suspected = items
        .iter()
        .any(|i| matches!(i, Item::Sample { suspects, .. } if !suspects.is_empty()));
    let long_ints = if suspected {
        long_integer_literals(text)
    } else {
        Vec::new()
    };
    let mut samples = Vec::with_capacity(items.len());
    let mut invalid = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let (sample, suspects) = match item {
            Item::NotObject(found) => return Err(OsloError::SampleNotObject { index, found }),
            Item::Sample { sample, suspects } => (sample, suspects),
            // Only read with a sink, which never comes here.
            Item::Transcoded => continue,
        };
        let too_big = suspects
            .into_iter()
            .find(|(ordinal, _)| long_ints.binary_search(ordinal).is_ok());
        match (sample, too_big) {
            (Err(e), _) => invalid.push((index, e)),
            (Ok(_), Some((_, key))) => invalid.push((
                index,
                SchemaError::WrongType {
                    key,
                    expected: TOO_BIG,
                },
            )),
            (Ok(s), None) => samples.push(s),
        }
    }
    Ok((samples, invalid))
}

/// The ordinals, in document order among all number literals of `text` (valid JSON), of
/// those written as integers with at least 19 characters: every integer outside the 64-bit
/// range is one of them.
fn long_integer_literals(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut ordinal = 0;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                i += 1;
                while let Some(&c) = b.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                let mut integer = true;
                while let Some(&c) = b.get(i) {
                    match c {
                        b'0'..=b'9' | b'-' | b'+' => {}
                        b'.' | b'e' | b'E' => integer = false,
                        _ => break,
                    }
                    i += 1;
                }
                if integer && i - start >= 19 {
                    out.push(ordinal);
                }
                ordinal += 1;
            }
            _ => i += 1,
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Readers. None of them fails on a type it did not want: it names what it found, so the
// message can be judged as a whole afterwards (and say precisely what is wrong). Every
// value passes through one of them, which keeps the count of number literals exact.

/// State shared by the readers of one JSON text.
#[derive(Default)]
struct Ctx {
    /// Number literals read so far, in document order.
    numbers: usize,
    /// Ordinals of floats at or beyond the 64-bit integer range, which may have been
    /// written as integers (see [`split_items`]).
    suspicious: Vec<usize>,
    /// Entries of the objects being read, innermost last. Collecting them here and moving
    /// each object out at its end allocates its vector once, at its final size.
    entries: Vec<(String, Value)>,
    /// Likewise for the items of the arrays being read.
    items: Vec<Value>,
    /// A container of the value being read would nest deeper than [`MAX_NESTING`].
    too_deep: bool,
    /// Payload items allowed ([`Limits::max_samples`]).
    max_samples: usize,
    /// The payload had more: parsing stopped there.
    too_many_samples: bool,
    /// Where payload dicts go when they are transcoded rather than built.
    sink: Option<transcode::Sink>,
}

impl Ctx {
    fn int(&mut self) {
        self.numbers += 1;
    }

    fn float(&mut self, f: f64) {
        if may_be_a_long_integer(f) {
            self.suspicious.push(self.numbers);
        }
        self.numbers += 1;
    }
}

/// Whether serde_json may have read an integer beyond 64 bits as this float:
/// it is at or beyond the 64-bit integer range. -2^63 itself is suspect:
/// `-9223372036854775809` rounds to it, while i64::MIN written as an integer
/// arrives as an integer.
fn may_be_a_long_integer(f: f64) -> bool {
    f <= -9_223_372_036_854_775_808.0 || f >= 18_446_744_073_709_551_616.0
}

/// Visitor methods that hand types a reader has no use for to [`Skip`], which counts and
/// names them; `$wrap` turns the name into the reader's value.
macro_rules! skip_visits {
    ($de:lifetime, $wrap:expr; $($group:ident),+) => {
        $(skip_visits!(@$group $de, $wrap);)+
    };
    (@scalars $de:lifetime, $wrap:expr) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Skip(self.ctx).visit_bool(v).map($wrap)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Skip(self.ctx).visit_i64(v).map($wrap)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Skip(self.ctx).visit_u64(v).map($wrap)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Skip(self.ctx).visit_f64(v).map($wrap)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Skip(self.ctx).visit_unit().map($wrap)
        }
    };
    (@str $de:lifetime, $wrap:expr) => {
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Skip(self.ctx).visit_str(v).map($wrap)
        }
    };
    (@seq $de:lifetime, $wrap:expr) => {
        fn visit_seq<A: SeqAccess<$de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Skip(self.ctx).visit_seq(seq).map($wrap)
        }
    };
    (@map $de:lifetime, $wrap:expr) => {
        fn visit_map<A: MapAccess<$de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Skip(self.ctx).visit_map(map).map($wrap)
        }
    };
}

/// Consumes any value, counting its numbers, and names its type.
struct Skip<'c>(&'c mut Ctx);

impl<'de> DeserializeSeed<'de> for Skip<'_> {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_> {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok("a boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        self.0.int();
        Ok("a number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        self.0.int();
        Ok("a number")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.0.float(v);
        Ok("a number")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok("a string")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok("null")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Skip(&mut *self.0))?.is_some() {}
        Ok("an array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip(&mut *self.0))?;
        }
        Ok("an object")
    }
}

/// Builds a model [`Value`], keeping int and float apart.
struct ValueSeed<'c> {
    ctx: &'c mut Ctx,
    /// Dicts and lists this value sits in, its sample dict included (a field's value: 1).
    depth: u32,
}

impl ValueSeed<'_> {
    /// True (and noted in the context) when a container here would nest deeper than
    /// the ABI allows: its content is then skipped, and its sample refused.
    fn too_deep(&mut self) -> bool {
        if self.depth >= MAX_NESTING {
            self.ctx.too_deep = true;
            return true;
        }
        false
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.ctx.int();
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.ctx.int();
        // serde_json reports every non-negative integer as u64; the model wants Int
        // whenever it fits, as `value_from_json` does.
        Ok(i64::try_from(v).map_or(Value::UInt(v), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.ctx.float(v);
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        if self.too_deep() {
            return Skip(self.ctx).visit_seq(seq).map(|_| Value::Null);
        }
        let start = self.ctx.items.len();
        while let Some(v) = seq.next_element_seed(ValueSeed {
            ctx: &mut *self.ctx,
            depth: self.depth + 1,
        })? {
            self.ctx.items.push(v);
        }
        let start = start.min(self.ctx.items.len());
        Ok(Value::List(self.ctx.items.drain(start..).collect()))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        if self.too_deep() {
            return Skip(self.ctx).visit_map(map).map(|_| Value::Null);
        }
        let mut entries = Entries::start(self.ctx);
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed {
                ctx: &mut *self.ctx,
                depth: self.depth + 1,
            })?;
            entries.insert(self.ctx, key, value);
        }
        Ok(Value::Map(entries.finish(self.ctx)))
    }
}

/// One object being read: its entries sit on [`Ctx::entries`] from `start` on, in
/// first-seen key order, and a repeated key's last value wins, as in Python's `json.loads`
/// and serde_json's `preserve_order` map.
struct Entries {
    start: usize,
    /// One bit per key fingerprint: a key whose bit is clear cannot be a repeat, which
    /// spares the search for almost every key.
    seen: u128,
    /// Built once the object is large, so that many keys cannot make inserting quadratic.
    index: Option<HashMap<String, usize>>,
}

/// Up to this many keys a linear search for a repeat beats hashing.
const LINEAR_KEYS: usize = 32;

impl Entries {
    fn start(ctx: &Ctx) -> Self {
        Entries {
            start: ctx.entries.len(),
            seen: 0,
            index: None,
        }
    }

    fn insert(&mut self, ctx: &mut Ctx, key: String, value: Value) {
        let stack = &mut ctx.entries;
        let len = stack.len().saturating_sub(self.start);
        let repeat = match &mut self.index {
            Some(index) => match index.entry(key) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    stack.push((e.key().clone(), value));
                    e.insert(len);
                    return;
                }
            },
            None => {
                let bit = fingerprint(&key);
                let repeat = if self.seen & bit == 0 {
                    None
                } else {
                    let mine = stack.get(self.start..).unwrap_or_default();
                    mine.iter().position(|(k, _)| *k == key)
                };
                self.seen |= bit;
                let Some(repeat) = repeat else {
                    stack.push((key, value));
                    if len + 1 > LINEAR_KEYS {
                        let mine = stack.get(self.start..).unwrap_or_default();
                        let index = mine.iter().enumerate().map(|(i, (k, _))| (k.clone(), i));
                        self.index = Some(index.collect());
                    }
                    return;
                };
                repeat
            }
        };
        if let Some(slot) = stack.get_mut(self.start + repeat) {
            slot.1 = value;
        }
    }

    /// Moves the object's entries off the stack into a vector of exactly their number.
    fn finish(self, ctx: &mut Ctx) -> Vec<(String, Value)> {
        let start = self.start.min(ctx.entries.len());
        ctx.entries.drain(start..).collect()
    }
}

/// A bit chosen by a key's length and first, middle and last bytes.
fn fingerprint(key: &str) -> u128 {
    let b = key.as_bytes();
    let byte = |i: usize| u32::from(b.get(i).copied().unwrap_or(0));
    let h = (b.len() as u32).wrapping_mul(0x9E37_79B1)
        ^ byte(0).wrapping_mul(0x85EB_CA77)
        ^ byte(b.len() / 2).wrapping_mul(0xC2B2_AE3D)
        ^ byte(b.len().wrapping_sub(1)).wrapping_mul(0x27D4_EB2F);
    1 << (h >> 25)
}

/// One item of a payload (or of `args.data`).
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every item is a sample; boxing it would add an allocation per sample"
)]
enum Item {
    Sample {
        sample: Result<Sample, SchemaError>,
        /// Number ordinals (with the top-level key holding them) that may be integers
        /// beyond 64 bits.
        suspects: Vec<(usize, String)>,
    },
    /// A dict transcoded into the context's sink, which holds its outcome.
    Transcoded,
    NotObject(&'static str),
}

/// Reads a payload item: a dict becomes a sample (or its schema error), or
/// with a sink, its ABI bytes (see [`transcode`]).
struct ItemSeed<'c> {
    ctx: &'c mut Ctx,
    /// Its index in the payload.
    index: usize,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Item;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sample dict")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        if let Some(sink) = &mut self.ctx.sink {
            return sink.item(map, self.index).map(|()| Item::Transcoded);
        }
        let mut entries = Entries::start(self.ctx);
        let mut suspects = Vec::new();
        let mut too_deep = None;
        while let Some(key) = map.next_key::<String>()? {
            let before = self.ctx.suspicious.len();
            self.ctx.too_deep = false;
            let value = map.next_value_seed(ValueSeed {
                ctx: &mut *self.ctx,
                depth: 1,
            })?;
            if let Some(new) = self.ctx.suspicious.get(before..) {
                suspects.extend(new.iter().map(|&ordinal| (ordinal, key.clone())));
            }
            if self.ctx.too_deep && too_deep.is_none() {
                too_deep = Some(key.clone());
            }
            entries.insert(self.ctx, key, value);
        }
        let entries = entries.finish(self.ctx);
        let sample = match too_deep {
            // Refused alone, like a datagram nested this deep: the SDKs could not read it.
            Some(key) => Err(SchemaError::TooDeep {
                key,
                limit: MAX_NESTING,
            }),
            None => Sample::from_entries(entries),
        };
        Ok(Item::Sample { sample, suspects })
    }

    skip_visits!('de, Item::NotObject; scalars, str, seq);
}

/// `payload` or `args.data`, whatever its type.
#[allow(clippy::large_enum_variant, reason = "one per message, moved once")]
enum Samples {
    List(Vec<Item>),
    Object(Item),
    Other(&'static str),
}

struct SamplesSeed<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for SamplesSeed<'_> {
    type Value = Samples;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Samples, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SamplesSeed<'_> {
    type Value = Samples;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of sample dicts")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Samples, A::Error> {
        if let Some(sink) = &mut self.ctx.sink {
            sink.samples_value();
        }
        let mut items = Vec::new();
        let mut count = 0;
        while let Some(item) = seq.next_element_seed(ItemSeed {
            index: count,
            ctx: &mut *self.ctx,
        })? {
            if count >= self.ctx.max_samples {
                self.ctx.too_many_samples = true;
                return Err(de::Error::custom("too many samples"));
            }
            match &mut self.ctx.sink {
                // The sink holds what became of each dict; a vector of items
                // (each the size of a sample) would only be grown and copied.
                Some(sink) => sink.item_read(count, &item),
                None => items.push(item),
            }
            count += 1;
        }
        Ok(Samples::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Samples, A::Error> {
        if let Some(sink) = &mut self.ctx.sink {
            sink.samples_value();
        }
        ItemSeed {
            ctx: self.ctx,
            index: 0,
        }
        .visit_map(map)
        .map(Samples::Object)
    }

    skip_visits!('de, Samples::Other; scalars, str);
}

/// RPC `args`.
#[allow(clippy::large_enum_variant, reason = "one per message, moved once")]
enum Args {
    Map { data: Option<Samples> },
    Other(&'static str),
}

struct ArgsSeed<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for ArgsSeed<'_> {
    type Value = Args;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Args, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ArgsSeed<'_> {
    type Value = Args;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RPC arguments")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Args, A::Error> {
        let mut data = None;
        while let Some(is_data) = map.next_key_seed(IsKey("data"))? {
            if is_data {
                data = Some(map.next_value_seed(SamplesSeed {
                    ctx: &mut *self.ctx,
                })?);
            } else {
                map.next_value_seed(Skip(&mut *self.ctx))?;
            }
        }
        Ok(Args::Map { data })
    }

    skip_visits!('de, Args::Other; scalars, str, seq);
}

/// Reads an object key and says whether it is the given one, without allocating.
struct IsKey(&'static str);

impl<'de> DeserializeSeed<'de> for IsKey {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for IsKey {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

/// A field that should hold a string.
enum Loose<'de> {
    /// Borrowed from the text when it had no escapes.
    Str(Cow<'de, str>),
    /// What it was instead (`null`, a number, ...).
    Other(&'static str),
}

struct LooseSeed<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for LooseSeed<'_> {
    type Value = Loose<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Loose<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LooseSeed<'_> {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }

    skip_visits!('de, Loose::Other; scalars, seq, map);
}

/// The keys of a message (and of the envelope) that matter.
enum Key {
    Version,
    Message,
    EventType,
    Priority,
    PublisherId,
    MessageId,
    UniqueId,
    Payload,
    Method,
    Args,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "oslo.version" => Key::Version,
                    "oslo.message" => Key::Message,
                    "event_type" => Key::EventType,
                    "priority" => Key::Priority,
                    "publisher_id" => Key::PublisherId,
                    "message_id" => Key::MessageId,
                    "_unique_id" => Key::UniqueId,
                    "payload" => Key::Payload,
                    "method" => Key::Method,
                    "args" => Key::Args,
                    _ => Key::Other,
                })
            }
        }

        d.deserialize_identifier(KeyVisitor)
    }
}

/// The top level of a JSON text: the envelope, the message, or neither.
#[allow(clippy::large_enum_variant, reason = "one per message, moved once")]
enum Top<'de> {
    Object(Fields<'de>),
    Other(&'static str),
}

/// Everything read from one top-level object, envelope keys and message keys alike, since
/// a bare (v1) message is only recognised as such once all keys are seen. For a repeated
/// key the last value wins, as in Python.
#[derive(Default)]
struct Fields<'de> {
    version: Option<Loose<'de>>,
    message: Option<Loose<'de>>,
    event_type: Option<Loose<'de>>,
    priority: Option<Loose<'de>>,
    publisher_id: Option<Loose<'de>>,
    message_id: Option<Loose<'de>>,
    unique_id: Option<Loose<'de>>,
    method: Option<Loose<'de>>,
    payload: Option<Samples>,
    args: Option<Args>,
}

struct MessageSeed<'c> {
    ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = Top<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an oslo.messaging message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let ctx = &mut *self.ctx;
            let slot = match key {
                Key::Payload => {
                    f.payload = Some(map.next_value_seed(SamplesSeed { ctx })?);
                    continue;
                }
                Key::Args => {
                    f.args = Some(map.next_value_seed(ArgsSeed { ctx })?);
                    continue;
                }
                Key::Other => {
                    map.next_value_seed(Skip(ctx))?;
                    continue;
                }
                Key::Version => &mut f.version,
                Key::Message => &mut f.message,
                Key::EventType => &mut f.event_type,
                Key::Priority => &mut f.priority,
                Key::PublisherId => &mut f.publisher_id,
                Key::MessageId => &mut f.message_id,
                Key::UniqueId => &mut f.unique_id,
                Key::Method => &mut f.method,
            };
            *slot = Some(map.next_value_seed(LooseSeed { ctx })?);
        }
        Ok(Top::Object(f))
    }

    skip_visits!('de, Top::Other; scalars, str, seq);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{sample_from_json, sample_to_json};
    use collector_sdk::model::Number;
    use serde_json::Value as Json;
    use std::path::{Path, PathBuf};

    /// Ceilometer's captured fixtures, kept in the repository (tests/fixtures/ceilometer).
    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ceilometer")
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// The `NNN.json` bodies of a fixture set, in order.
    fn bodies(set: &str) -> Vec<(String, Vec<u8>)> {
        let dir = fixtures().join(set);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.len() == 8 && n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let body = read(&dir.join(&n));
                (n, body)
            })
            .collect()
    }

    fn expected_lines(set: &str) -> Vec<Json> {
        let text = String::from_utf8(read(&fixtures().join(set).join("expected.jsonl")))
            .expect("expected.jsonl is UTF-8");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
            .collect()
    }

    /// The inner message text of an enveloped body.
    fn inner_text(body: &[u8]) -> String {
        let outer: Json = serde_json::from_slice(body).expect("envelope is JSON");
        outer["oslo.message"]
            .as_str()
            .expect("oslo.message")
            .to_owned()
    }

    fn decode(text: &str) -> Result<OsloMessage, OsloError> {
        decode_message(text.as_bytes())
    }

    /// A valid sample dict with `counter_volume` written as `volume` and `more` appended.
    fn sample(volume: &str, more: &str) -> String {
        format!(
            r#"{{"source": "openstack", "counter_name": "cpu", "counter_type": "cumulative",
            "counter_unit": "ns", "counter_volume": {volume}, "user_id": "u", "user_name": null,
            "resource_id": "r", "timestamp": "2025-06-01T12:00:00", "message_id": "m"{more}}}"#
        )
    }

    fn notification(payload: &str) -> String {
        format!(
            r#"{{"message_id": "n", "publisher_id": "telemetry.publisher.vm",
            "event_type": "metering", "priority": "SAMPLE", "payload": {payload},
            "timestamp": "2026-01-02 03:04:05", "_unique_id": "abc"}}"#
        )
    }

    /// `inner` wrapped in the 2.0 envelope, escaped as oslo.messaging does.
    fn envelope(version: &str, inner: &str) -> String {
        let message = serde_json::to_string(inner).expect("string");
        format!(r#"{{"oslo.version": {version}, "oslo.message": {message}}}"#)
    }

    fn kind_of(m: &OsloMessage) -> (&str, &str) {
        match &m.kind {
            MessageKind::Notification { event_type, .. } => ("notification", event_type),
            MessageKind::RpcCast { method } => ("rpc", method),
        }
    }

    #[test]
    fn fixtures_decode_to_the_expected_samples() {
        for (set, files, count) in [("notification", 6, 30), ("rpc", 3, 15)] {
            let bodies = bodies(set);
            assert_eq!(bodies.len(), files, "{set}: message files");
            let mut got = Vec::new();
            for (name, body) in &bodies {
                let m = decode_message(body).unwrap_or_else(|e| panic!("{set}/{name}: {e}"));
                assert!(m.invalid.is_empty(), "{set}/{name}: {:?}", m.invalid);
                assert_eq!(m.samples.len(), 5, "{set}/{name}: 5 samples per message");
                got.extend(m.samples);
            }
            let expected = expected_lines(set);
            assert_eq!(got.len(), count, "{set}: samples");
            assert_eq!(expected.len(), count, "{set}: expected lines");
            for (i, (s, line)) in got.iter().zip(&expected).enumerate() {
                // Value equality keeps int and float apart and compares maps by content.
                assert_eq!(&sample_to_json(s), line, "{set} line {}", i + 1);
                let want = sample_from_json(line.clone()).expect("expected line is a sample");
                assert_eq!(
                    s.counter_volume,
                    want.counter_volume,
                    "{set} line {}",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn fixtures_match_the_json_tree_route_including_key_order() {
        for set in ["notification", "rpc"] {
            for (name, body) in bodies(set) {
                let inner: Json = serde_json::from_str(&inner_text(&body)).expect("inner JSON");
                let list = match set {
                    "rpc" => inner["args"]["data"].clone(),
                    _ => inner["payload"].clone(),
                };
                let want: Vec<Sample> = list
                    .as_array()
                    .expect("a list")
                    .iter()
                    .map(|j| sample_from_json(j.clone()).expect("sample"))
                    .collect();
                // `Sample` equality compares metadata maps and extras as ordered lists.
                let got = decode_message(&body).expect("decodes").samples;
                assert_eq!(got, want, "{set}/{name}");
            }
        }
    }

    #[test]
    fn fixture_kinds_and_unique_ids() {
        let is_hex32 = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let mut seen = std::collections::HashSet::new();
        for (name, body) in bodies("notification") {
            let m = decode_message(&body).expect("decodes");
            let MessageKind::Notification {
                event_type,
                priority,
                publisher_id,
                message_id,
            } = &m.kind
            else {
                panic!("notification/{name}: {:?}", m.kind);
            };
            assert_eq!(event_type, "metering");
            assert_eq!(priority, "SAMPLE");
            assert_eq!(publisher_id.as_deref(), Some("telemetry.publisher.vm"));
            let id = message_id.as_deref().expect("message_id");
            assert_eq!((id.len(), id.matches('-').count()), (36, 4), "a UUID: {id}");
            let unique = m.unique_id.clone().expect("_unique_id");
            assert!(is_hex32(&unique), "{unique}");
            assert!(
                seen.insert(unique),
                "notification/{name}: repeated _unique_id"
            );
            if name == "001.json" {
                assert_eq!(id, "edfad49c-1383-4a2f-8a5f-0690ad615bf0");
                assert_eq!(
                    m.unique_id.as_deref(),
                    Some("5b8d58608d8142bbbc0cddc80a7c7aec")
                );
            }
        }
        for (name, body) in bodies("rpc") {
            let m = decode_message(&body).expect("decodes");
            assert_eq!(
                m.kind,
                MessageKind::RpcCast {
                    method: "record_metering_data".into()
                }
            );
            let unique = m.unique_id.clone().expect("_unique_id");
            assert!(is_hex32(&unique), "{unique}");
            assert!(seen.insert(unique), "rpc/{name}: repeated _unique_id");
            if name == "001.json" {
                assert_eq!(
                    m.unique_id.as_deref(),
                    Some("928fdb4be4d84730909621ccb4f245d7")
                );
            }
        }
    }

    #[test]
    fn bad_amqp_files_are_rejected() {
        let dir = fixtures().join("bad");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("bad/") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if !name.starts_with("amqp-") {
                continue;
            }
            let err = decode_message(&read(&dir.join(&name))).expect_err(&name);
            let ok = match name.as_str() {
                "amqp-body-not-json.bin" => matches!(err, OsloError::BodyJson(_)),
                "amqp-oslo-message-not-json.json" => matches!(err, OsloError::InnerJson(_)),
                "amqp-payload-not-list.json" => {
                    matches!(err, OsloError::PayloadNotList { found: "an object" })
                }
                "amqp-oslo-version-3.0.json" => {
                    matches!(&err, OsloError::UnsupportedEnvelopeVersion(v) if v == "3.0")
                }
                other => panic!("unknown bad file {other}: add it here"),
            };
            assert!(ok, "{name}: {err:?}");
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    #[test]
    fn every_bad_file_is_an_error() {
        // The UDP cases are not AMQP bodies at all, but must fail cleanly all the same.
        let dir = fixtures().join("bad");
        for entry in std::fs::read_dir(&dir).expect("bad/") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "manifest.jsonl") {
                continue;
            }
            assert!(decode_message(&read(&path)).is_err(), "{}", path.display());
        }
    }

    #[test]
    fn v1_notification_without_envelope() {
        let body = read(&fixtures().join("notification/001.json"));
        let bare = decode(&inner_text(&body)).expect("v1 decodes");
        assert_eq!(bare, decode_message(&body).expect("v2 decodes"));

        let m = decode(&notification(&format!("[{}]", sample("1", "")))).expect("decodes");
        assert_eq!(kind_of(&m), ("notification", "metering"));
        assert_eq!(m.unique_id.as_deref(), Some("abc"));
        assert_eq!(m.samples.len(), 1);

        // Only a dict with both envelope keys is an envelope.
        let half = notification("[]").replacen('{', r#"{"oslo.version": "9.9", "#, 1);
        assert_eq!(decode(&half).expect("v1").samples, vec![]);
    }

    #[test]
    fn rpc_cast_with_one_dict_or_a_list() {
        let one = format!(
            r#"{{"method": "record_metering_data", "args": {{"data": {}}},
            "version": "1.0", "_context_roles": [], "_context_is_admin": true}}"#,
            sample("2.5", "")
        );
        let m = decode(&envelope(r#""2.0""#, &one)).expect("decodes");
        assert_eq!(kind_of(&m), ("rpc", "record_metering_data"));
        assert_eq!(m.unique_id, None);
        assert_eq!(m.samples.len(), 1);
        assert_eq!(m.samples[0].counter_volume, Some(Number::Float(2.5)));

        let bad_one = one.replace(r#""counter_name": "cpu", "#, "");
        let m = decode(&bad_one).expect("decodes");
        assert_eq!(m.samples, vec![]);
        assert_eq!(m.invalid, vec![(0, SchemaError::Missing("counter_name"))]);

        let list = format!(
            r#"{{"method": "record_metering_data", "args": {{"x": 1, "data": [{0}, {0}]}}}}"#,
            sample("3", "")
        );
        assert_eq!(decode(&list).expect("decodes").samples.len(), 2);
    }

    #[test]
    fn invalid_dicts_are_listed_and_the_others_kept() {
        let payload = format!(
            "[{}, {}, {}, {{}}]",
            sample("1", ""),
            sample("\"12\"", ""),
            sample("3", "")
        );
        let m = decode(&notification(&payload)).expect("decodes");
        let volumes: Vec<_> = m.samples.iter().map(|s| s.counter_volume).collect();
        assert_eq!(volumes, vec![Some(Number::Int(1)), Some(Number::Int(3))]);
        assert_eq!(
            m.invalid,
            vec![
                (
                    1,
                    SchemaError::WrongType {
                        key: "counter_volume".into(),
                        expected: "a number or null"
                    }
                ),
                (3, SchemaError::Missing("source")),
            ]
        );
    }

    #[test]
    fn a_non_dict_item_fails_the_whole_message() {
        for (item, found) in [("5", "a number"), ("[]", "an array"), ("null", "null")] {
            let payload = format!("[{}, {item}]", sample("1", ""));
            let err = decode(&notification(&payload)).expect_err(item);
            assert!(
                matches!(err, OsloError::SampleNotObject { index: 1, found: f } if f == found),
                "{item}: {err:?}"
            );
        }
        let rpc = r#"{"method": "record_metering_data", "args": {"data": ["x"]}}"#;
        assert!(matches!(
            decode(rpc),
            Err(OsloError::SampleNotObject {
                index: 0,
                found: "a string"
            })
        ));
    }

    #[test]
    fn envelope_versions() {
        let inner = notification("[]");
        for v in [
            r#""2.0""#,
            r#""2.0.0""#,
            r#"" 2.0""#,
            r#""2.0.0.7""#,
            r#""2.-1""#,
        ] {
            assert!(decode(&envelope(v, &inner)).is_ok(), "{v}");
        }
        for v in ["3.0", "1.0", "2.1", "2.0.1", "2", "", "x.y", "2.0.x"] {
            let err = decode(&envelope(&format!("{v:?}"), &inner)).expect_err(v);
            assert!(
                matches!(&err, OsloError::UnsupportedEnvelopeVersion(got) if got == v),
                "{v}: {err:?}"
            );
        }
        for (v, found) in [
            ("null", "null"),
            ("2.0", "a number"),
            ("[2, 0]", "an array"),
        ] {
            let err = decode(&envelope(v, &inner)).expect_err(v);
            assert!(
                matches!(err, OsloError::EnvelopeVersionNotString { found: f } if f == found),
                "{v}: {err:?}"
            );
        }
        let not_str = r#"{"oslo.version": "2.0", "oslo.message": {"event_type": "x"}}"#;
        assert!(matches!(
            decode(not_str),
            Err(OsloError::EnvelopeMessageNotString { found: "an object" })
        ));
        assert!(matches!(
            decode(&envelope(r#""2.0""#, "[1, 2]")),
            Err(OsloError::InnerNotAnObject { found: "an array" })
        ));
        assert!(matches!(
            decode(&envelope(r#""2.0""#, "{} x")),
            Err(OsloError::InnerJson(_))
        ));
        // Unwrapped once only: an envelope inside is a message without a known shape.
        let twice = envelope(r#""2.0""#, &envelope(r#""2.0""#, &inner));
        assert!(matches!(decode(&twice), Err(OsloError::UnknownShape)));
    }

    #[test]
    fn message_shapes() {
        let s = sample("1", "");
        type Check = fn(&OsloError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            ("{}".into(), |e| matches!(e, OsloError::UnknownShape)),
            (r#"{"_unique_id": "x", "priority": "SAMPLE"}"#.into(), |e| {
                matches!(e, OsloError::UnknownShape)
            }),
            ("[]".into(), |e| {
                matches!(e, OsloError::BodyNotAnObject { found: "an array" })
            }),
            ("\"x\"".into(), |e| {
                matches!(e, OsloError::BodyNotAnObject { found: "a string" })
            }),
            ("{} {}".into(), |e| matches!(e, OsloError::BodyJson(_))),
            ("".into(), |e| matches!(e, OsloError::BodyJson(_))),
            (r#"{"event_type": "metering"}"#.into(), |e| {
                matches!(e, OsloError::MissingField("payload"))
            }),
            (r#"{"payload": []}"#.into(), |e| {
                matches!(e, OsloError::MissingField("event_type"))
            }),
            (r#"{"event_type": 5, "payload": []}"#.into(), |e| {
                matches!(
                    e,
                    OsloError::FieldNotString {
                        field: "event_type",
                        found: "a number"
                    }
                )
            }),
            (
                r#"{"event_type": "m", "payload": [], "priority": []}"#.into(),
                |e| {
                    matches!(
                        e,
                        OsloError::FieldNotString {
                            field: "priority",
                            found: "an array"
                        }
                    )
                },
            ),
            (
                r#"{"event_type": "m", "payload": [], "_unique_id": 7}"#.into(),
                |e| {
                    matches!(
                        e,
                        OsloError::FieldNotString {
                            field: "_unique_id",
                            ..
                        }
                    )
                },
            ),
            (r#"{"event_type": "m", "payload": null}"#.into(), |e| {
                matches!(e, OsloError::PayloadNotList { found: "null" })
            }),
            (r#"{"event_type": "m", "payload": "[]"}"#.into(), |e| {
                matches!(e, OsloError::PayloadNotList { found: "a string" })
            }),
            (format!(r#"{{"event_type": "m", "payload": {s}}}"#), |e| {
                matches!(e, OsloError::PayloadNotList { found: "an object" })
            }),
            (
                r#"{"method": "ping", "args": {"data": []}}"#.into(),
                |e| matches!(e, OsloError::UnsupportedMethod(m) if m == "ping"),
            ),
            (r#"{"method": null}"#.into(), |e| {
                matches!(
                    e,
                    OsloError::FieldNotString {
                        field: "method",
                        found: "null"
                    }
                )
            }),
            (r#"{"method": "record_metering_data"}"#.into(), |e| {
                matches!(e, OsloError::MissingData)
            }),
            (
                r#"{"method": "record_metering_data", "args": {}}"#.into(),
                |e| matches!(e, OsloError::MissingData),
            ),
            (
                r#"{"method": "record_metering_data", "args": [1]}"#.into(),
                |e| matches!(e, OsloError::ArgsNotObject { found: "an array" }),
            ),
            (
                r#"{"method": "record_metering_data", "args": {"data": 1}}"#.into(),
                |e| matches!(e, OsloError::DataNotSamples { found: "a number" }),
            ),
        ];
        for (text, ok) in cases {
            match decode(&text) {
                Err(e) => assert!(ok(&e), "{text}: {e:?}"),
                Ok(m) => panic!("{text}: decoded as {m:?}"),
            }
        }
        assert!(matches!(
            decode_message(b"{\"event_type\": \"\xff\"}"),
            Err(OsloError::NotUtf8 { valid_up_to: 16 })
        ));
        // Absent and null metadata fields are simply absent.
        let m =
            decode(r#"{"event_type": "m", "payload": [], "publisher_id": null}"#).expect("decodes");
        assert_eq!(
            m.kind,
            MessageKind::Notification {
                event_type: "m".into(),
                priority: String::new(),
                publisher_id: None,
                message_id: None
            }
        );
    }

    #[test]
    fn numbers_keep_their_kind_and_exact_value() {
        let more = r#", "resource_metadata": {"a": 512, "b": 512.0, "c": 18446744073709551615,
            "d": 9223372036854775808, "e": -9223372036854775808, "f": 0.30000000000000004,
            "g": 5e-324, "h": 1.5e300, "i": 1e20, "j": -0.0, "k": 1.7976931348623157e308,
            "l": 9007199254740993, "m": [1, 1.0, -1]}"#;
        let m = decode(&notification(&format!(
            "[{}]",
            sample("9007199254740993", more)
        )))
        .expect("decodes");
        assert_eq!(m.invalid, vec![]);
        let s = &m.samples[0];
        assert_eq!(s.counter_volume, Some(Number::Int(9_007_199_254_740_993)));
        let Some(Value::Map(md)) = &s.resource_metadata else {
            panic!("metadata: {:?}", s.resource_metadata);
        };
        let want = [
            Value::Int(512),
            Value::Float(512.0),
            Value::UInt(u64::MAX),
            Value::UInt(1 << 63),
            Value::Int(i64::MIN),
            Value::Float(0.1 + 0.2),
            Value::Float(5e-324),
            Value::Float(1.5e300),
            Value::Float(1e20),
            Value::Float(-0.0),
            Value::Float(f64::MAX),
            Value::Int(9_007_199_254_740_993),
            Value::List(vec![Value::Int(1), Value::Float(1.0), Value::Int(-1)]),
        ];
        let got: Vec<&Value> = md.iter().map(|(_, v)| v).collect();
        assert_eq!(got, want.iter().collect::<Vec<_>>());
        assert!(matches!(md[9].1, Value::Float(f) if f.is_sign_negative()));
    }

    #[test]
    fn integers_beyond_64_bits_make_their_sample_invalid() {
        let payload = [
            sample("18446744073709551616", ""),
            sample(
                "1",
                r#", "resource_metadata": {"x": [-9223372036854775809]}"#,
            ),
            // Genuine floats of that size, and long digits inside strings, are fine.
            sample(
                "1e20",
                r#", "x": 18446744073709551616.0, "y": "123456789012345678901""#,
            ),
            sample("-9223372036854775808", r#", "z": -9.3e18"#),
            sample("1", r#", "w": 100000000000000000000000, "v": 1e30"#),
            // A big integer and a schema error: the schema error is reported.
            sample("\"1\"", r#", "w": 100000000000000000000000"#),
        ];
        // Numbers before the payload and in ignored keys must not shift the count.
        let text = format!(
            r#"{{"_context_n": [1e30, 100000000000000000000, 2.5], "event_type": "metering",
            "payload": [{}], "_context_m": 100000000000000000000}}"#,
            payload.join(", ")
        );
        for body in [text.clone(), envelope(r#""2.0""#, &text)] {
            let m = decode(&body).expect("decodes");
            let wrong = |key: &str| SchemaError::WrongType {
                key: key.into(),
                expected: TOO_BIG,
            };
            assert_eq!(
                m.invalid,
                vec![
                    (0, wrong("counter_volume")),
                    (1, wrong("resource_metadata")),
                    (4, wrong("w")),
                    (
                        5,
                        SchemaError::WrongType {
                            key: "counter_volume".into(),
                            expected: "a number or null"
                        }
                    ),
                ]
            );
            let volumes: Vec<_> = m.samples.iter().map(|s| s.counter_volume).collect();
            assert_eq!(
                volumes,
                vec![Some(Number::Float(1e20)), Some(Number::Int(i64::MIN))]
            );
        }
        let err = SchemaError::WrongType {
            key: "w".into(),
            expected: TOO_BIG,
        };
        assert_eq!(
            err.to_string(),
            "key `w` must be free of integers beyond 64 bits"
        );
    }

    #[test]
    fn repeated_keys_keep_the_first_position_and_the_last_value() {
        let many: String = (0..80)
            .map(|i| format!(r#""k{}": {i}, "#, i % 50))
            .collect();
        let more = format!(
            r#", "resource_metadata": {{"a": 1, "b": 2, "a": 3}}, "big": {{{many}"end": 0}},
            "counter_volume": 7"#
        );
        let text = sample("1", &more);
        let m = decode(&notification(&format!("[{text}]"))).expect("decodes");
        assert_eq!(m.invalid, vec![]);
        let s = &m.samples[0];
        assert_eq!(s.counter_volume, Some(Number::Int(7)));
        assert_eq!(
            s.resource_metadata,
            Some(Value::Map(vec![
                ("a".into(), Value::Int(3)),
                ("b".into(), Value::Int(2))
            ]))
        );
        let Some((_, Value::Map(big))) = s.extra.iter().find(|(k, _)| k == "big") else {
            panic!("extra: {:?}", s.extra);
        };
        assert_eq!(big.len(), 51);
        assert_eq!(big[0], ("k0".into(), Value::Int(50)));
        assert_eq!(big[29], ("k29".into(), Value::Int(79)));
        assert_eq!(big[30], ("k30".into(), Value::Int(30)));
        assert_eq!(big[50], ("end".into(), Value::Int(0)));
        // Same as the JSON tree route (serde_json's ordered map).
        let tree = sample_from_json(serde_json::from_str(&text).expect("json")).expect("sample");
        assert_eq!(s, &tree);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(matches!(
            decode(&deep(100_000)),
            Err(OsloError::BodyJson(_))
        ));
        let open_only = "{\"a\":".repeat(100_000);
        assert!(matches!(decode(&open_only), Err(OsloError::BodyJson(_))));
        for (levels, ok) in [(100, true), (200, false), (50_000, false)] {
            let more = format!(r#", "resource_metadata": {}"#, deep(levels));
            let inner = notification(&format!("[{}]", sample("1", &more)));
            let r = decode(&envelope(r#""2.0""#, &inner));
            assert_eq!(r.is_ok(), ok, "{levels}: {r:?}");
            if !ok {
                assert!(matches!(r, Err(OsloError::InnerJson(_))));
            }
            let ignored = format!(r#"{{"_context_x": {}, "method": "x"}}"#, deep(levels));
            let r = decode(&ignored);
            assert!(
                matches!(
                    r,
                    Err(OsloError::UnsupportedMethod(_) | OsloError::BodyJson(_))
                ),
                "{r:?}"
            );
        }
    }

    #[test]
    fn a_sample_nested_beyond_the_abi_limit_is_refused_alone() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        // The sample dict is level 1: 63 lists below a field make 64 levels.
        for (levels, ok) in [(63, true), (64, false), (100, false)] {
            let more = format!(r#", "resource_metadata": {}"#, deep(levels));
            let payload = format!("[{}, {}]", sample("1", &more), sample("2", ""));
            let m = decode(&envelope(r#""2.0""#, &notification(&payload))).expect("decodes");
            if ok {
                assert_eq!(m.samples.len(), 2, "{levels}");
                assert!(m.invalid.is_empty(), "{levels}: {:?}", m.invalid);
            } else {
                assert_eq!(m.samples.len(), 1, "{levels}: the shallow sample stays");
                assert_eq!(
                    m.invalid,
                    vec![(
                        0,
                        SchemaError::TooDeep {
                            key: "resource_metadata".into(),
                            limit: MAX_NESTING
                        }
                    )],
                    "{levels}"
                );
            }
        }
        // The same limit through an extra key and through maps.
        let maps = |n: usize| format!("{}1{}", r#"{"k":"#.repeat(n), "}".repeat(n));
        let more = format!(r#", "x_extra": {}"#, maps(64));
        let m = decode(&notification(&format!("[{}]", sample("1", &more)))).expect("decodes");
        assert!(
            matches!(&m.invalid[..], [(0, SchemaError::TooDeep { key, .. })] if key == "x_extra"),
            "{:?}",
            m.invalid
        );
        let more = format!(r#", "x_extra": {}"#, maps(63));
        let m = decode(&notification(&format!("[{}]", sample("1", &more)))).expect("decodes");
        assert_eq!(m.samples.len(), 1);
    }

    #[test]
    fn limits_refuse_a_big_body_unparsed_and_stop_at_the_first_sample_too_many() {
        let payload = |n: usize| {
            let items: Vec<String> = (0..n).map(|i| sample(&i.to_string(), "")).collect();
            format!("[{}]", items.join(","))
        };
        let limits = Limits {
            max_bytes: 1 << 20,
            max_samples: 10,
        };
        let ok = envelope(r#""2.0""#, &notification(&payload(10)));
        let m = decode_message_within(ok.as_bytes(), &limits).expect("10 samples pass");
        assert_eq!(m.samples.len(), 10);
        let over = envelope(r#""2.0""#, &notification(&payload(11)));
        assert!(matches!(
            decode_message_within(over.as_bytes(), &limits),
            Err(OsloError::TooManySamples { limit: 10 })
        ));
        let bare = notification(&payload(11));
        assert!(matches!(
            decode_message_within(bare.as_bytes(), &limits),
            Err(OsloError::TooManySamples { limit: 10 })
        ));
        let small = Limits {
            max_bytes: 100,
            max_samples: 10,
        };
        let err = decode_message_within(ok.as_bytes(), &small).unwrap_err();
        assert!(
            matches!(err, OsloError::TooLarge { limit: 100, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("max_message_bytes"), "{err}");
    }

    #[test]
    fn truncated_and_mutated_bodies_never_panic() {
        let body = read(&fixtures().join("notification/001.json"));
        let inner = inner_text(&body);
        for cut in 0..body.len() {
            assert!(decode_message(&body[..cut]).is_err(), "cut at {cut}");
        }
        for cut in 0..inner.len() {
            let _ = decode_message(&inner.as_bytes()[..cut]);
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let symbols = b"{}[]\",:\\0123456789.eE-+ntfx";
        for source in [body.clone(), inner.clone().into_bytes()] {
            for _ in 0..3000 {
                let mut b = source.clone();
                for _ in 0..(1 + next() % 4) {
                    let at = (next() % b.len() as u64) as usize;
                    b[at] = symbols[(next() % symbols.len() as u64) as usize];
                }
                let _ = decode_message(&b);
            }
        }
    }

    #[test]
    fn fingerprints_spread_the_sample_keys() {
        let bits: std::collections::HashSet<u128> = collector_sdk::model::KNOWN_KEYS
            .iter()
            .map(|k| fingerprint(k))
            .collect();
        assert!(bits.len() >= 13, "{} distinct bits for 15 keys", bits.len());
    }

    #[test]
    fn long_integer_literals_are_found_outside_strings_only() {
        let text = r#"{"a\"12345678901234567890": [1, 12345678901234567890, 1.2345678901234567890,
            -1234567890123456789, "x\\", 123456789012345678, 1e1234567890123456789]}"#;
        assert_eq!(long_integer_literals(text), vec![1, 3]);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let show = |text: &str| decode(text).expect_err(text).to_string();
        assert_eq!(
            show(&envelope(r#""3.0""#, "{}")),
            r#"oslo envelope version "3.0" is not compatible with 2.0"#
        );
        assert_eq!(
            show(r#"{"event_type": "m", "payload": {}}"#),
            "notification payload is an object, not a list of sample dicts"
        );
        assert_eq!(
            show(r#"{"method": "ping"}"#),
            "RPC method `ping` is not supported (only `record_metering_data` carries samples)"
        );
        assert!(show("{").starts_with("message body is not valid JSON: EOF"));
    }
}

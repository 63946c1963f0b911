//! An AMQP message body to the ABI v1 bytes of its samples, each checked
//! against its signature, without building a [`Sample`](collector_sdk::Sample):
//! what [`decode_message_within`], [`Signer::verify`] and
//! [`encode_sample`] do in three steps, with no allocation per sample once
//! the buffers have grown.
//!
//! The envelope and the message are read by the same serde visitors as the
//! owned decoder (so `oslo.message` is unescaped once, and every message-level
//! check and error is the owned decoder's). Only each payload dict is read
//! differently: its JSON tokens are written as one msgpack map into a reused
//! buffer, indexed as they are written (the byte ranges of every entry, as
//! the one pass's own index pass would find them), and the datagram path's
//! one pass ([`crate::transcode`]) checks, verifies and appends it to the
//! batch buffer from that index, without reading the map to find its
//! entries. (Measured with callgrind, instructions per realistic sample
//! outside SHA-256: owned 62.6k, this 49.6k.) A dict's msgpack holds
//! exactly the values the owned decoder would give it (integers as `i64`
//! when they fit, floats as serde_json reads them), so the schema errors,
//! the signature and the bytes are the ones the owned path gives.
//!
//! What JSON allows and msgpack maps do not say alike sends the whole message
//! to the owned decoder instead ([`Transcoder::transcode`]'s fallback): a
//! repeated key (Python keeps the last value in the first position), a number
//! that may be an integer beyond 64 bits, nesting at the ABI's limit, an
//! object of more than [`LINEAR_KEYS`] keys, samples outside the message
//! proper (in the envelope, or in a second `payload`), and any error at all,
//! so that errors are always the owned decoder's. Real traffic has none of
//! these; `tests/it/oslo_transcode.rs` checks that, and that both paths give
//! the same outcome and bytes for every fixture, the fuzz corpus and
//! mutations of them.

use std::fmt;

use collector_sdk::abi::MAX_NESTING;
use collector_sdk::codec::encode_sample;
use collector_sdk::model::SchemaError;
// What is skipped goes to `IgnoredAny` (serde_json's iterative `ignore_value`:
// no recursion, linear); any outcome there is the owned decoder's to decide.
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Item, Limits, MessageKind, OsloError, decode_message_within, fingerprint};
use super::{may_be_a_long_integer, read_within, shape};
use crate::msgpack::{self, MsgpackError};
use crate::signature::Signer;
use crate::transcode::{NOT_A_MAP, Refusal, Span, Top, Transcoder as OnePass};

/// Keys an object may have for a repeat to be found by comparing with the
/// earlier ones; an object with more (no real one) goes to the owned decoder.
pub const LINEAR_KEYS: usize = 64;

/// A message's verified samples, as ABI bytes appended to the caller's buffer.
#[derive(Debug, PartialEq)]
pub struct Transcoded {
    pub kind: MessageKind,
    /// oslo.messaging's duplicate-detection key (`_unique_id`).
    pub unique_id: Option<String>,
    /// Where each verified sample ends in the buffer, in payload order; the
    /// first starts where the buffer ended before the call.
    pub ends: Vec<usize>,
    /// Dicts that are not valid samples: their index in the payload and why.
    pub invalid: Vec<(usize, SchemaError)>,
    /// Samples dropped for a bad signature, and the `message_id` of the first.
    pub bad_signatures: u64,
    pub first_bad_signature: Option<String>,
}

/// Transcodes message bodies, reusing its buffers: one per decoding thread.
pub struct Transcoder {
    signer: Signer,
    /// Between calls; taken while a body is read.
    sink: Option<Sink>,
    fallbacks: u64,
}

impl Transcoder {
    /// A transcoder verifying with `signer` (disabled: no verification).
    pub fn new(signer: Signer) -> Self {
        Transcoder {
            sink: Some(Sink::new(signer.clone())),
            signer,
            fallbacks: 0,
        }
    }

    /// Verifies with `signer` from now on.
    pub fn set_signer(&mut self, signer: Signer) {
        if let Some(sink) = &mut self.sink {
            sink.one_pass.set_signer(signer.clone());
        }
        self.signer = signer;
    }

    /// Messages given to the owned decoder so far (see the module's doc).
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks
    }

    /// Appends the ABI bytes of the body's verified samples to `out`; on an
    /// error `out` is as it was.
    ///
    /// # Errors
    /// The [`OsloError`] [`decode_message_within`] gives for the body.
    pub fn transcode(
        &mut self,
        body: &[u8],
        limits: &Limits,
        out: &mut Vec<u8>,
    ) -> Result<Transcoded, OsloError> {
        let start = out.len();
        let mut sink = self
            .sink
            .take()
            .unwrap_or_else(|| Sink::new(self.signer.clone()));
        sink.reset(std::mem::take(out));
        let mut slot = Some(sink);
        let read = read_within(body, limits, &mut slot, |f, _, sink| {
            let (kind, unique_id, _) = shape(f)?;
            if let Some((index, found)) = sink.as_ref().and_then(|s| s.not_object) {
                return Err(OsloError::SampleNotObject { index, found });
            }
            Ok((kind, unique_id))
        });
        let mut sink = slot.unwrap_or_else(|| Sink::new(self.signer.clone()));
        *out = std::mem::take(&mut sink.out);
        let r = match read {
            Ok((kind, unique_id)) if !sink.fallback => Ok(Transcoded {
                kind,
                unique_id,
                ends: std::mem::take(&mut sink.ends),
                invalid: std::mem::take(&mut sink.invalid),
                bad_signatures: sink.bad_signatures,
                first_bad_signature: sink.first_bad_signature.take(),
            }),
            _ => {
                self.fallbacks += 1;
                out.truncate(start);
                verify_owned(body, limits, &self.signer, out)
            }
        };
        self.sink = Some(sink);
        r
    }
}

/// What [`Transcoder::transcode`] does, by the owned model: decode the body,
/// verify each sample, encode those that pass. Its fallback, and the reference
/// the tests compare it with.
///
/// # Errors
/// The [`OsloError`] [`decode_message_within`] gives for the body.
pub fn verify_owned(
    body: &[u8],
    limits: &Limits,
    signer: &Signer,
    out: &mut Vec<u8>,
) -> Result<Transcoded, OsloError> {
    let m = decode_message_within(body, limits)?;
    let mut t = Transcoded {
        kind: m.kind,
        unique_id: m.unique_id,
        ends: Vec::with_capacity(m.samples.len()),
        invalid: m.invalid,
        bad_signatures: 0,
        first_bad_signature: None,
    };
    for s in m.samples {
        if signer.verify(&s) {
            encode_sample(out, &s);
            t.ends.push(out.len());
        } else {
            t.bad_signatures += 1;
            t.first_bad_signature.get_or_insert(s.message_id);
        }
    }
    Ok(t)
}

/// Where the payload dicts of the body being read go.
pub(super) struct Sink {
    one_pass: OnePass,
    /// The msgpack map of the dict being read.
    dict: Vec<u8>,
    /// The keys (ranges of `dict`) of the objects being written, innermost last.
    keys: Vec<(u32, u32)>,
    out: Vec<u8>,
    ends: Vec<usize>,
    invalid: Vec<(usize, SchemaError)>,
    bad_signatures: u64,
    first_bad_signature: Option<String>,
    /// `payload` and `args.data` values met.
    samples_values: u32,
    /// The first item of the payload that is not a dict: its index and type.
    not_object: Option<(usize, &'static str)>,
    /// The owned decoder must read this body.
    fallback: bool,
}

impl Sink {
    fn new(signer: Signer) -> Self {
        Sink {
            one_pass: OnePass::with_signer(signer),
            dict: Vec::new(),
            keys: Vec::new(),
            out: Vec::new(),
            ends: Vec::new(),
            invalid: Vec::new(),
            bad_signatures: 0,
            first_bad_signature: None,
            samples_values: 0,
            not_object: None,
            fallback: false,
        }
    }

    fn reset(&mut self, out: Vec<u8>) {
        self.out = out;
        self.ends.clear();
        self.invalid.clear();
        self.bad_signatures = 0;
        self.first_bad_signature = None;
        self.samples_values = 0;
        self.not_object = None;
        self.fallback = false;
        if self.dict.capacity() > 1 << 20 {
            self.dict = Vec::new();
        }
    }

    /// The body was an envelope: any samples read so far were not the message's.
    pub(super) fn envelope_unwrapped(&mut self) {
        if self.samples_values > 0 {
            self.fallback = true;
        }
    }

    /// A `payload` or `args.data` value is being read: only one may be.
    pub(super) fn samples_value(&mut self) {
        self.samples_values += 1;
        if self.samples_values > 1 {
            self.fallback = true;
        }
    }

    /// Item `index` of the payload list was read (transcoded, if a dict).
    pub(super) fn item_read(&mut self, index: usize, item: &Item) {
        if let Item::NotObject(found) = item {
            self.not_object.get_or_insert((index, *found));
        }
    }

    /// Reads one payload dict (item `index`) and transcodes it.
    pub(super) fn item<'de, A: MapAccess<'de>>(
        &mut self,
        map: A,
        index: usize,
    ) -> Result<(), A::Error> {
        if self.fallback {
            return IgnoredAny.visit_map(map).map(|_| ());
        }
        self.dict.clear();
        self.one_pass.index_begin();
        Write {
            sink: &mut *self,
            depth: 0,
            index: true,
        }
        .visit_map(map)?;
        if self.fallback {
            return Ok(());
        }
        // Indexed as it was written: the one pass does not read it to find its entries.
        match self.one_pass.transcode_indexed(&self.dict, &mut self.out) {
            Ok(()) => self.ends.push(self.out.len()),
            Err(Refusal::SignatureInvalid { message_id }) => {
                self.bad_signatures += 1;
                if self.first_bad_signature.is_none() {
                    self.first_bad_signature = Some(message_id.to_owned());
                }
            }
            Err(Refusal::Undecodable(MsgpackError::Schema(e))) => self.invalid.push((index, e)),
            // Nothing the writer writes gets here; if it did, the owned decoder decides.
            Err(Refusal::Undecodable(_)) => self.fallback = true,
        }
        Ok(())
    }
}

/// Writes the JSON value it reads as msgpack into the sink's `dict`, with the
/// values the owned decoder's `ValueSeed` gives, and indexes it for the one
/// pass as its index pass would (the sample's entries, and the entries of
/// every map inside it but those inside lists).
struct Write<'s> {
    sink: &'s mut Sink,
    /// Dicts and lists around the value, its sample dict included.
    depth: u32,
    /// Not inside a list: a map here is indexed.
    index: bool,
}

/// What was written: the value's header, and its entries' range if it is an
/// indexed map.
struct Written {
    top: Top,
    children: (u32, u32),
}

const fn written(top: Top) -> Written {
    Written {
        top,
        children: NOT_A_MAP,
    }
}

impl Write<'_> {
    /// A container here would nest as deep as the owned decoder refuses.
    fn too_deep(&mut self) -> bool {
        if self.depth >= MAX_NESTING {
            self.sink.fallback = true;
            return true;
        }
        false
    }

    /// A container header with room for a 32-bit count, filled in by [`Write::count`].
    fn open(&mut self, marker: u8) -> usize {
        let at = self.sink.dict.len();
        self.sink.dict.extend_from_slice(&[marker, 0, 0, 0, 0]);
        at
    }

    fn count(&mut self, at: usize, n: u32) {
        if let Some(c) = self.sink.dict.get_mut(at + 1..at + 5) {
            c.copy_from_slice(&n.to_be_bytes());
        }
    }

    fn inner(&mut self, index: bool) -> Write<'_> {
        Write {
            sink: &mut *self.sink,
            depth: self.depth + 1,
            index,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Write<'_> {
    type Value = Written;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Written, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Write<'_> {
    type Value = Written;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Written, E> {
        self.sink.dict.push(if v { 0xc3 } else { 0xc2 });
        Ok(written(Top::Other))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Written, E> {
        msgpack::put_int(&mut self.sink.dict, v);
        Ok(written(Top::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Written, E> {
        // As `ValueSeed`: Int whenever it fits (msgpack reads it back so).
        msgpack::put_uint(&mut self.sink.dict, v);
        Ok(written(i64::try_from(v).map_or(Top::UInt(v), Top::Int)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Written, E> {
        // Maybe an integer beyond 64 bits that serde_json read as a float: the
        // owned decoder tells which from the text.
        if may_be_a_long_integer(v) {
            self.sink.fallback = true;
        }
        msgpack::put_f64(&mut self.sink.dict, v);
        Ok(written(Top::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Written, E> {
        msgpack::put_str(&mut self.sink.dict, v);
        let end = self.sink.dict.len();
        Ok(written(Top::Str(Span::new(end - v.len(), end))))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Written, E> {
        self.sink.dict.push(0xc0);
        Ok(written(Top::Nil))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Written, A::Error> {
        if self.too_deep() {
            return IgnoredAny.visit_seq(seq).map(|_| written(Top::Other));
        }
        let at = self.open(0xdd);
        let mut n = 0u32;
        // The index pass keeps no map inside a list.
        while seq.next_element_seed(self.inner(false))?.is_some() {
            n += 1;
        }
        self.count(at, n);
        Ok(written(Top::Other))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Written, A::Error> {
        if self.too_deep() {
            return IgnoredAny.visit_map(map).map(|_| written(Top::Other));
        }
        let at = self.open(0xdf);
        let nested = self.depth > 0 && self.index;
        let entries = self.sink.one_pass.index_map_start();
        let base = self.sink.keys.len();
        let mut seen = 0u128;
        let mut n = 0u32;
        while let Some((span, bit)) = map.next_key_seed(Key(&mut self.sink.dict))? {
            let sink = &mut *self.sink;
            if n as usize >= LINEAR_KEYS {
                sink.fallback = true;
                map.next_value::<IgnoredAny>()?;
                return IgnoredAny.visit_map(map).map(|_| written(Top::Other));
            }
            if seen & bit != 0 {
                let key = |(s, e): (u32, u32)| &sink.dict[s as usize..e as usize];
                let mine = sink.keys.get(base..).unwrap_or_default();
                if mine.iter().any(|&k| key(k) == key(span)) {
                    sink.fallback = true;
                }
            }
            seen |= bit;
            sink.keys.push(span);
            let start = sink.dict.len();
            let value = map.next_value_seed(self.inner(self.index))?;
            let sink = &mut *self.sink;
            let key = Span::new(span.0 as usize, span.1 as usize);
            let range = Span::new(start, sink.dict.len());
            if self.depth == 0 {
                sink.one_pass
                    .index_top(&sink.dict, key, range, value.top, value.children);
            } else if nested {
                sink.one_pass.index_node(key, range, value.children);
            }
            n += 1;
        }
        self.sink.keys.truncate(base);
        self.count(at, n);
        let children = if nested {
            self.sink.one_pass.index_map_end(entries)
        } else {
            NOT_A_MAP
        };
        Ok(Written {
            top: Top::Other,
            children,
        })
    }
}

/// Writes a key as a msgpack string; gives its range and fingerprint bit.
struct Key<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ((u32, u32), u128);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ((u32, u32), u128);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        msgpack::put_str(self.0, v);
        let end = self.0.len();
        // A body is at most Limits::max_bytes, far below 4 GiB.
        let span = ((end - v.len()) as u32, end as u32);
        Ok((span, fingerprint(v)))
    }
}

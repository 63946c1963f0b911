//! One pass from a UDP datagram to the ABI v1 bytes of its sample, with its
//! signature checked on the way: no [`Sample`](collector_sdk::Sample), no
//! `String` per field, no allocation once the scratch buffers have grown.
//!
//! What [`msgpack::decode_sample`], [`Signer::verify`] and
//! [`codec::encode_sample`](collector_sdk::codec::encode_sample) do in three
//! steps, done on the datagram's bytes in place:
//!
//! 1. **index**: the top-level map is walked once with the same [`Reader`] the
//!    owned decoder uses (every hardening rule holds: the allocation budget, the
//!    depth limit, UTF-8, byte offsets in errors); each entry is kept as two byte
//!    ranges, its key and its value, and so are the entries of every map inside
//!    (not those inside lists), so no map is parsed twice;
//! 2. **schema**: the 15 known keys are found and type-checked in the order
//!    [`Sample::from_entries`](collector_sdk::Sample::from_entries) checks them,
//!    so a bad datagram fails with the same error;
//! 3. **signature**: Ceilometer's `recursive_keypairs` order (keys sorted per
//!    level, flattened) over the ranges, each value's `str()` rendered into a
//!    reused buffer and fed to the keyed HMAC; lists and `bin` values (rare in
//!    metering) are decoded alone and rendered by the owned code;
//! 4. **encode**: the ABI layout appended to the batch's buffer straight from
//!    the ranges (strings copied once, containers transcoded value by value).
//!
//! The signature is checked before a byte is written, so a forged sample never
//! touches the batch. `tests` compares every outcome and every byte with the
//! owned path on the fixtures, the fuzz corpus and mutated datagrams.

use collector_sdk::codec::{put_bytes as put_str, put_number, put_u64, tag};
use collector_sdk::model::{KNOWN_KEYS, Number, SchemaError};
use hmac::Mac;

use crate::msgpack::{Bad, Head, MsgpackError, Reader, bad, enter};
use crate::signature::{self, HmacSha256, Path, Signer};

/// Why a datagram gives no sample.
#[derive(Debug)]
pub enum Refusal<'d> {
    /// Not a sample: the same error [`msgpack::decode_sample`](crate::msgpack::decode_sample) gives.
    Undecodable(MsgpackError),
    /// A sample whose `message_signature` does not verify.
    SignatureInvalid { message_id: &'d str },
}

impl From<MsgpackError> for Refusal<'_> {
    fn from(e: MsgpackError) -> Self {
        Refusal::Undecodable(e)
    }
}

impl From<Bad> for Refusal<'_> {
    fn from(b: Bad) -> Self {
        Refusal::Undecodable(b.into())
    }
}

impl From<SchemaError> for Refusal<'_> {
    fn from(e: SchemaError) -> Self {
        Refusal::Undecodable(MsgpackError::Schema(e))
    }
}

/// A map entry as byte ranges of the datagram.
#[derive(Clone, Copy)]
struct Entry {
    key: (usize, usize),
    value: (usize, usize),
    /// Index in [`KNOWN_KEYS`], or [`EXTRA`].
    slot: u8,
    /// When the value is a map (not inside a list): its entries, a range of
    /// `Transcoder::nodes`; else [`NOT_A_MAP`].
    children: (u32, u32),
}

const NOT_A_MAP: (u32, u32) = (u32::MAX, u32::MAX);

const EXTRA: u8 = u8::MAX;
/// `message_signature`'s slot.
const SIGNATURE: u8 = 14;
const ABSENT: usize = usize::MAX;

/// Up to this many extra keys, comparing each with the earlier ones beats
/// hashing (as in the owned model).
const LINEAR_EXTRA_KEYS: usize = 16;

/// Text gathered for the HMAC before it is hashed (a realistic sample's
/// pairs fit many times over).
const TEXT_BYTES: usize = 16 << 10;

/// Scratch kept above this many entries is given back after the datagram.
const KEEP_ENTRIES: usize = 1024;

/// Decodes, verifies and encodes datagrams, reusing its buffers: one per
/// decoder thread.
pub struct Transcoder {
    signer: Signer,
    entries: Vec<Entry>,
    order: Vec<u32>,
    /// The entries of every map the index pass met, each map's contiguous.
    nodes: Vec<Entry>,
    /// Entries of the maps being indexed, before they move to `nodes`.
    stack: Vec<Entry>,
    /// The text the HMAC hashes.
    text: Vec<u8>,
    scratch: String,
}

/// A string field: absent, null, or its UTF-8 bytes.
#[derive(Clone, Copy)]
enum Text<'d> {
    Absent,
    Null,
    Value(&'d [u8]),
}

/// A number field: absent, null, or a number.
#[derive(Clone, Copy)]
enum Num {
    Absent,
    Null,
    Value(Number),
}

/// The known keys, checked.
struct Fields<'d> {
    source: &'d [u8],
    counter_name: &'d [u8],
    counter_type: &'d [u8],
    counter_unit: &'d [u8],
    counter_volume: Num,
    user_id: Text<'d>,
    user_name: Text<'d>,
    project_id: Text<'d>,
    project_name: Text<'d>,
    resource_id: &'d [u8],
    timestamp: &'d [u8],
    resource_metadata: Option<(usize, usize)>,
    message_id: &'d [u8],
    monotonic_time: Num,
    message_signature: Option<&'d [u8]>,
}

impl Transcoder {
    /// A transcoder verifying with `secret` (empty: no verification, as
    /// [`Signer::verify`]).
    pub fn new(secret: &[u8]) -> Self {
        Transcoder {
            signer: Signer::new(secret),
            entries: Vec::new(),
            order: Vec::new(),
            nodes: Vec::new(),
            stack: Vec::new(),
            text: Vec::new(),
            scratch: String::new(),
        }
    }

    /// Appends the ABI v1 encoding of the datagram's sample to `out`, after
    /// checking its signature; on a refusal `out` is as it was.
    ///
    /// # Errors
    /// [`Refusal::Undecodable`] with the error the owned decoder gives;
    /// [`Refusal::SignatureInvalid`] when a secret is set and the signature
    /// does not match.
    pub fn transcode<'d>(&mut self, d: &'d [u8], out: &mut Vec<u8>) -> Result<(), Refusal<'d>> {
        let r = self.run(d, out);
        if self.entries.capacity() > KEEP_ENTRIES {
            self.entries = Vec::new();
            self.order = Vec::new();
        }
        if self.nodes.capacity() > KEEP_ENTRIES {
            self.nodes = Vec::new();
            self.stack = Vec::new();
        }
        r
    }

    fn run<'d>(&mut self, d: &'d [u8], out: &mut Vec<u8>) -> Result<(), Refusal<'d>> {
        self.index(d)?;
        let f = self.fields(d)?;
        if self.signer.is_enabled() && !self.verify(d, &f)? {
            return Err(Refusal::SignatureInvalid {
                // Checked as UTF-8 by the index pass.
                message_id: std::str::from_utf8(f.message_id).unwrap_or_default(),
            });
        }
        let before = out.len();
        if let Err(e) = self.encode(d, &f, out) {
            out.truncate(before);
            return Err(e.into());
        }
        Ok(())
    }

    /// Step 1: the top-level entries, the whole datagram validated.
    fn index(&mut self, d: &[u8]) -> Result<(), MsgpackError> {
        self.entries.clear();
        self.nodes.clear();
        self.stack.clear();
        let mut r = Reader::new(d);
        let start = r.offset();
        match r.head()? {
            Head::Map(n) => {
                for _ in 0..n {
                    let key = r.key_bytes()?;
                    let k = offset_of(d, key);
                    let v = r.offset();
                    let head = r.head()?;
                    let children = self.index_value(d, &mut r, head, v, 1)?;
                    let slot = known_slot(key);
                    self.entries.push(Entry {
                        key: (k, k + key.len()),
                        value: (v, r.offset()),
                        slot,
                        children,
                    });
                }
            }
            other => return Err(r.not_a_map(other, start)),
        }
        r.finish()?;
        Ok(())
    }

    /// Checks the value `head` begins (at `start`, inside `depth` containers)
    /// exactly as `Reader::skip_body` does; when it is a map, keeps its entries
    /// (and their maps' entries) in `nodes`, so that the signature walk does
    /// not parse it again. Returns the map's range, or [`NOT_A_MAP`].
    fn index_value<'d>(
        &mut self,
        d: &'d [u8],
        r: &mut Reader<'d>,
        head: Head<'d>,
        start: usize,
        depth: usize,
    ) -> Result<(u32, u32), Bad> {
        let Head::Map(n) = head else {
            r.skip_body(head, start, depth)?;
            return Ok(NOT_A_MAP);
        };
        enter(depth, start)?;
        let base = self.stack.len();
        for _ in 0..n {
            let key = r.key_bytes()?;
            let k = offset_of(d, key);
            let v = r.offset();
            let head = r.head()?;
            let children = self.index_value(d, r, head, v, depth + 1)?;
            self.stack.push(Entry {
                key: (k, k + key.len()),
                value: (v, r.offset()),
                slot: EXTRA,
                children,
            });
        }
        let from = self.nodes.len() as u32;
        self.nodes.extend(self.stack.drain(base..));
        Ok((from, self.nodes.len() as u32))
    }

    /// Step 2: the known keys, in `Sample::from_entries`' order of checks.
    fn fields<'d>(&self, d: &'d [u8]) -> Result<Fields<'d>, Refusal<'d>> {
        let mut slots = [ABSENT; KNOWN_KEYS.len()];
        for (i, e) in self.entries.iter().enumerate() {
            if e.slot == EXTRA {
                continue;
            }
            let s = &mut slots[usize::from(e.slot)];
            if *s != ABSENT {
                return Err(SchemaError::Duplicate(key_string(d, e)).into());
            }
            *s = i;
        }
        if let Some(key) = self.first_repeated_extra(d) {
            return Err(SchemaError::Duplicate(String::from_utf8_lossy(key).into_owned()).into());
        }
        let head = |slot: usize| -> Result<Option<Head<'d>>, Bad> {
            match slots[slot] {
                ABSENT => Ok(None),
                i => head_at(d, self.entries[i].value).map(Some),
            }
        };
        let required = |slot: usize| -> Result<&'d [u8], Refusal<'d>> {
            match head(slot)? {
                None => Err(SchemaError::Missing(KNOWN_KEYS[slot]).into()),
                Some(Head::Str(b)) => Ok(b),
                Some(_) => Err(wrong(KNOWN_KEYS[slot], "a string")),
            }
        };
        let optional = |slot: usize| -> Result<Text<'d>, Refusal<'d>> {
            match head(slot)? {
                None => Ok(Text::Absent),
                Some(Head::Nil) => Ok(Text::Null),
                Some(Head::Str(b)) => Ok(Text::Value(b)),
                Some(_) => Err(wrong(KNOWN_KEYS[slot], "a string or null")),
            }
        };
        let number = |slot: usize| -> Result<Num, Refusal<'d>> {
            match head(slot)? {
                None => Ok(Num::Absent),
                Some(Head::Nil) => Ok(Num::Null),
                Some(Head::Int(i)) => Ok(Num::Value(Number::Int(i))),
                Some(Head::UInt(u)) => Ok(Num::Value(Number::UInt(u))),
                Some(Head::Float(f)) => Ok(Num::Value(Number::Float(f))),
                Some(_) => Err(wrong(KNOWN_KEYS[slot], "a number or null")),
            }
        };
        // The slots are KNOWN_KEYS' order; the checks run in the struct's.
        let source = required(0)?;
        let counter_name = required(1)?;
        let counter_type = required(2)?;
        let counter_unit = required(3)?;
        let counter_volume = match number(4)? {
            Num::Absent => return Err(SchemaError::Missing(KNOWN_KEYS[4]).into()),
            n => n,
        };
        let user_id = optional(5)?;
        let user_name = optional(6)?;
        let project_id = optional(7)?;
        let project_name = optional(8)?;
        let resource_id = required(9)?;
        let timestamp = required(10)?;
        let resource_metadata = match slots[11] {
            ABSENT => None,
            i => Some(self.entries[i].value),
        };
        let message_id = required(12)?;
        let monotonic_time = number(13)?;
        let message_signature = match head(14)? {
            None => None,
            Some(Head::Str(b)) => Some(b),
            Some(_) => return Err(wrong(KNOWN_KEYS[14], "a string")),
        };
        Ok(Fields {
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
        })
    }

    /// The first extra key (in input order) an earlier extra key already has.
    fn first_repeated_extra<'d>(&self, d: &'d [u8]) -> Option<&'d [u8]> {
        let extras = || {
            self.entries
                .iter()
                .filter(|e| e.slot == EXTRA)
                .map(|e| key_of(d, e))
        };
        let count = extras().count();
        if count < 2 {
            return None;
        }
        if count <= LINEAR_EXTRA_KEYS {
            return extras()
                .enumerate()
                .find(|(i, k)| extras().take(*i).any(|e| e == *k))
                .map(|(_, k)| k);
        }
        // Hostile samples only (no real one has this many extra keys).
        let mut seen = std::collections::HashSet::with_capacity(count);
        extras().find(|k| !seen.insert(*k))
    }

    /// Step 3: whether `message_signature` is Ceilometer's HMAC of the sample.
    /// The pairs' text is gathered in one buffer and hashed at once: fewer,
    /// larger HMAC updates.
    fn verify(&mut self, d: &[u8], f: &Fields<'_>) -> Result<bool, Bad> {
        let Some(mut mac) = self.signer.keyed() else {
            // A secret that could not key the HMAC: fail closed.
            return Ok(false);
        };
        self.order.clear();
        self.order.extend(0..self.entries.len() as u32);
        let entries = &self.entries;
        // Top-level keys are unique (the schema step refused repeats).
        self.order
            .sort_unstable_by(|&a, &b| by_key(d, &entries[a as usize], &entries[b as usize]));
        self.text.clear();
        let mut exact = true;
        for k in 0..self.order.len() {
            let e = self.entries[self.order[k] as usize];
            if e.slot == SIGNATURE {
                continue; // message_signature is never hashed
            }
            let path = Path {
                parent: None,
                name: key_of(d, &e),
            };
            self.pair(&mut mac, d, &path, e, 0, &mut exact)?;
        }
        mac.update(&self.text);
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        let expected = f.message_signature.unwrap_or_default();
        Ok(exact && signature::constant_time_eq(&signature::hex(&digest), expected))
    }

    /// Appends the pairs of one value at `path`, inside `depth` levels, to the
    /// text to hash, as `signature::Walker` feeds them for the owned sample.
    fn pair(
        &mut self,
        mac: &mut HmacSha256,
        d: &[u8],
        path: &Path<'_>,
        e: Entry,
        depth: usize,
        exact: &mut bool,
    ) -> Result<(), Bad> {
        let value = e.value;
        let head = Reader::checked_before(&d[value.0..value.1]).head()?;
        if let Head::Map(_) = head {
            if depth >= signature::MAX_DEPTH {
                *exact = false;
                return Ok(());
            }
            if e.children == NOT_A_MAP {
                return Err(bad(value.0, "a map the index pass did not keep"));
            }
            let (from, to) = (e.children.0 as usize, e.children.1 as usize);
            // By key, then by position: stable, without a sort buffer.
            self.nodes[from..to]
                .sort_unstable_by(|a, b| by_key(d, a, b).then(a.key.0.cmp(&b.key.0)));
            for i in from..to {
                let c = self.nodes[i];
                // Of two equal keys a Python dict keeps the last value.
                if i + 1 < to && key_of(d, &self.nodes[i + 1]) == key_of(d, &c) {
                    continue;
                }
                let child = Path {
                    parent: Some(path),
                    name: key_of(d, &c),
                };
                self.pair(mac, d, &child, c, depth + 1, exact)?;
            }
            return Ok(());
        }
        path.write(&mut self.text);
        let s = &mut self.scratch;
        s.clear();
        match head {
            Head::Str(b) => self.text.extend_from_slice(b),
            Head::Nil => self.text.extend_from_slice(b"None"),
            Head::Bool(true) => self.text.extend_from_slice(b"True"),
            Head::Bool(false) => self.text.extend_from_slice(b"False"),
            Head::Int(i) => signature::push_i64(s, i),
            Head::UInt(u) => signature::push_u64(s, u),
            Head::Float(x) => signature::python_float_repr(x, s),
            Head::Array(_) | Head::Bin(_) | Head::Map(_) => {
                // Python's str() of a list (after decode_unicode) or of bytes:
                // rare in metering, so decoded alone and rendered by the owned code.
                let v = Reader::new(&d[value.0..value.1]).value(0)?;
                *exact &= signature::push_repr(s, &mut Vec::new(), &v, false, depth);
            }
        }
        self.text.extend_from_slice(s.as_bytes());
        // Deep metadata repeats its outer names in every pair: hash as it
        // goes past a bound rather than hold it all.
        if self.text.len() >= TEXT_BYTES {
            mac.update(&self.text);
            self.text.clear();
        }
        Ok(())
    }

    /// Step 4: the ABI v1 layout (`codec::encode_sample`'s bytes).
    fn encode(&self, d: &[u8], f: &Fields<'_>, out: &mut Vec<u8>) -> Result<(), Bad> {
        put_str(out, f.source);
        put_str(out, f.counter_name);
        put_str(out, f.counter_type);
        put_str(out, f.counter_unit);
        match f.counter_volume {
            Num::Absent | Num::Null => out.push(0),
            Num::Value(n) => {
                out.push(1);
                put_number(out, n);
            }
        }
        for t in [f.user_id, f.user_name, f.project_id, f.project_name] {
            match t {
                Text::Absent => out.push(0),
                Text::Null => out.extend_from_slice(&[1, 0]),
                Text::Value(s) => {
                    out.extend_from_slice(&[1, 1]);
                    put_str(out, s);
                }
            }
        }
        put_str(out, f.resource_id);
        put_str(out, f.timestamp);
        match f.resource_metadata {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                value(&mut Reader::checked_before(&d[v.0..v.1]), out)?;
            }
        }
        put_str(out, f.message_id);
        match f.monotonic_time {
            Num::Absent => out.push(0),
            Num::Null => out.extend_from_slice(&[1, 0]),
            Num::Value(n) => {
                out.extend_from_slice(&[1, 1]);
                put_number(out, n);
            }
        }
        match f.message_signature {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                put_str(out, s);
            }
        }
        let extras = self.entries.iter().filter(|e| e.slot == EXTRA);
        put_u64(out, extras.clone().count() as u64);
        for e in extras {
            put_str(out, key_of(d, e));
            value(&mut Reader::checked_before(&d[e.value.0..e.value.1]), out)?;
        }
        Ok(())
    }
}

/// Transcodes the msgpack value `r` is at into its ABI layout.
fn value(r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Bad> {
    let t = |out: &mut Vec<u8>, t: u32| out.extend_from_slice(&t.to_le_bytes());
    match r.head()? {
        Head::Nil => t(out, tag::NULL),
        Head::Bool(b) => {
            t(out, tag::BOOL);
            out.push(u8::from(b));
        }
        Head::Int(i) => {
            t(out, tag::INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Head::UInt(u) => {
            t(out, tag::UINT);
            put_u64(out, u);
        }
        Head::Float(f) => {
            t(out, tag::FLOAT);
            put_u64(out, f.to_bits());
        }
        Head::Str(s) => {
            t(out, tag::STR);
            put_str(out, s);
        }
        Head::Bin(b) => {
            t(out, tag::BYTES);
            put_str(out, b);
        }
        Head::Array(n) => {
            t(out, tag::LIST);
            put_u64(out, n as u64);
            for _ in 0..n {
                value(r, out)?;
            }
        }
        Head::Map(n) => {
            t(out, tag::MAP);
            put_u64(out, n as u64);
            for _ in 0..n {
                put_str(out, r.key_bytes()?);
                value(r, out)?;
            }
        }
    }
    Ok(())
}

fn wrong(key: &str, expected: &'static str) -> Refusal<'static> {
    SchemaError::WrongType {
        key: key.to_owned(),
        expected,
    }
    .into()
}

/// Where `part` (a sub-slice of `whole`) starts in it.
fn offset_of(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// Byte order of two keys.
fn by_key(d: &[u8], a: &Entry, b: &Entry) -> std::cmp::Ordering {
    key_of(d, a).cmp(key_of(d, b))
}

fn key_of<'d>(d: &'d [u8], e: &Entry) -> &'d [u8] {
    &d[e.key.0..e.key.1]
}

/// A key as text (checked as UTF-8 by the index pass), for an error.
fn key_string(d: &[u8], e: &Entry) -> String {
    String::from_utf8_lossy(key_of(d, e)).into_owned()
}

/// The index of `key` in [`KNOWN_KEYS`], or [`EXTRA`].
fn known_slot(key: &[u8]) -> u8 {
    match key {
        b"source" => 0,
        b"counter_name" => 1,
        b"counter_type" => 2,
        b"counter_unit" => 3,
        b"counter_volume" => 4,
        b"user_id" => 5,
        b"user_name" => 6,
        b"project_id" => 7,
        b"project_name" => 8,
        b"resource_id" => 9,
        b"timestamp" => 10,
        b"resource_metadata" => 11,
        b"message_id" => 12,
        b"monotonic_time" => 13,
        b"message_signature" => SIGNATURE,
        _ => EXTRA,
    }
}

fn head_at(d: &[u8], v: (usize, usize)) -> Result<Head<'_>, Bad> {
    Reader::checked_before(&d[v.0..v.1]).head()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_slots_follow_known_keys() {
        for (i, k) in KNOWN_KEYS.iter().enumerate() {
            assert_eq!(usize::from(known_slot(k.as_bytes())), i, "{k}");
        }
        assert_eq!(KNOWN_KEYS[usize::from(SIGNATURE)], "message_signature");
        assert_eq!(known_slot(b"publisher_id"), EXTRA);
    }
}

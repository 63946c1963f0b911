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
use crate::signature::{self, HmacSha256, Signer};

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

/// A byte range of the datagram (at most 4 GiB: [`Transcoder::transcode`]
/// refuses more), kept small so entries sort and copy cheaply.
#[derive(Clone, Copy)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Self {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    fn of(self, d: &[u8]) -> &[u8] {
        &d[self.start as usize..self.end as usize]
    }
}

/// A map entry as byte ranges of the datagram.
#[derive(Clone, Copy)]
struct Entry {
    /// The key's first 8 bytes, big-endian, zero-padded: most comparisons of
    /// two keys end here, without a `memcmp` call ([`by_key`]). Set by the
    /// signature step (for the entries it sorts), 0 until then.
    prefix: u64,
    key: Span,
    value: Span,
    /// Index in [`KNOWN_KEYS`], or [`EXTRA`].
    slot: u8,
    /// When the value is a map (not inside a list): its entries, a range of
    /// `Transcoder::nodes`; else [`NOT_A_MAP`].
    children: (u32, u32),
}

pub(crate) const NOT_A_MAP: (u32, u32) = (u32::MAX, u32::MAX);

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
    /// The names of the maps around the value being hashed (see [`Transcoder::pair`]).
    path: Vec<u8>,
    scratch: String,
    /// Where each known key's entry is ([`ABSENT`] if not there), and its
    /// value's header, as the index pass read them.
    slots: [usize; KNOWN_KEYS.len()],
    tops: [Top; KNOWN_KEYS.len()],
    /// The first entry whose known key an earlier entry has.
    repeated: Option<usize>,
}

/// A known key's value header, kept by the index pass so that the schema step
/// does not read it again.
#[derive(Clone, Copy)]
pub(crate) enum Top {
    Str(Span),
    Nil,
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Any other kind: the wrong type for every known key.
    Other,
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
    resource_metadata: Option<Span>,
    message_id: &'d [u8],
    monotonic_time: Num,
    message_signature: Option<&'d [u8]>,
}

/// The known keys' slots in byte order of their names: Ceilometer's order of
/// the top-level pairs, without sorting them per datagram.
const SORTED_KNOWN: [u8; KNOWN_KEYS.len()] = [1, 2, 3, 4, 12, 14, 13, 7, 8, 9, 11, 0, 10, 5, 6];

impl Transcoder {
    /// A transcoder verifying with `secret` (empty: no verification, as
    /// [`Signer::verify`]).
    pub fn new(secret: &[u8]) -> Self {
        Transcoder::with_signer(Signer::new(secret))
    }

    /// A transcoder verifying with `signer`.
    pub fn with_signer(signer: Signer) -> Self {
        Transcoder {
            signer,
            entries: Vec::new(),
            order: Vec::new(),
            nodes: Vec::new(),
            stack: Vec::new(),
            text: Vec::new(),
            path: Vec::new(),
            scratch: String::new(),
            slots: [ABSENT; KNOWN_KEYS.len()],
            tops: [Top::Other; KNOWN_KEYS.len()],
            repeated: None,
        }
    }

    /// Verifies with `signer` from now on.
    pub fn set_signer(&mut self, signer: Signer) {
        self.signer = signer;
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
        self.shrink();
        r
    }

    fn run<'d>(&mut self, d: &'d [u8], out: &mut Vec<u8>) -> Result<(), Refusal<'d>> {
        if u32::try_from(d.len()).is_err() {
            // Spans are u32; no source lets a datagram or frame near this.
            return Err(bad(u32::MAX as usize, "larger than 4 GiB").into());
        }
        self.index(d)?;
        self.indexed(d, out)
    }

    /// Steps 2 to 4, on entries the index pass (or the writer of `d`) found.
    fn indexed<'d>(&mut self, d: &'d [u8], out: &mut Vec<u8>) -> Result<(), Refusal<'d>> {
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

    /// [`Transcoder::transcode`] for msgpack its writer indexed as it wrote it
    /// (the oslo path), through the `index_*` calls, in the order the index
    /// pass would make them: `d` is then not read a second time to find its
    /// entries. The writer vouches that `d` is one well-formed msgpack map
    /// within the depth limit and that the entries are those of `d`.
    ///
    /// # Errors
    /// As [`Transcoder::transcode`].
    pub(crate) fn transcode_indexed<'d>(
        &mut self,
        d: &'d [u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal<'d>> {
        if u32::try_from(d.len()).is_err() {
            return Err(bad(u32::MAX as usize, "larger than 4 GiB").into());
        }
        let r = self.indexed(d, out);
        self.shrink();
        r
    }

    /// Starts the index of a map its writer gives.
    pub(crate) fn index_begin(&mut self) {
        self.entries.clear();
        self.nodes.clear();
        self.stack.clear();
        self.slots = [ABSENT; KNOWN_KEYS.len()];
        self.repeated = None;
    }

    /// Where the entries of a map inside the sample begin (for [`Transcoder::index_map_end`]).
    #[inline]
    pub(crate) fn index_map_start(&self) -> usize {
        self.stack.len()
    }

    /// An entry of a map inside the sample (not inside a list), after the
    /// entries of the maps in its value.
    #[inline]
    pub(crate) fn index_node(&mut self, key: Span, value: Span, children: (u32, u32)) {
        self.stack.push(Entry {
            prefix: 0,
            key,
            value,
            slot: EXTRA,
            children,
        });
    }

    /// The map whose entries began at `start` is complete: its children range.
    #[inline]
    pub(crate) fn index_map_end(&mut self, start: usize) -> (u32, u32) {
        let from = self.nodes.len() as u32;
        let start = start.min(self.stack.len());
        self.nodes.extend(self.stack.drain(start..));
        (from, self.nodes.len() as u32)
    }

    /// An entry of the sample map itself, its value's header `top`.
    #[inline]
    pub(crate) fn index_top(
        &mut self,
        d: &[u8],
        key: Span,
        value: Span,
        top: Top,
        children: (u32, u32),
    ) {
        let slot = known_slot(key.of(d));
        if slot != EXTRA {
            let i = usize::from(slot);
            if self.slots[i] == ABSENT {
                self.slots[i] = self.entries.len();
                self.tops[i] = top;
            } else if self.repeated.is_none() {
                self.repeated = Some(self.entries.len());
            }
        }
        self.entries.push(Entry {
            prefix: 0,
            key,
            value,
            slot,
            children,
        });
    }

    /// Gives back scratch kept above [`KEEP_ENTRIES`].
    fn shrink(&mut self) {
        if self.entries.capacity() > KEEP_ENTRIES {
            self.entries = Vec::new();
            self.order = Vec::new();
        }
        if self.nodes.capacity() > KEEP_ENTRIES {
            self.nodes = Vec::new();
            self.stack = Vec::new();
        }
    }

    /// Step 1: the top-level entries, the whole datagram validated.
    fn index(&mut self, d: &[u8]) -> Result<(), MsgpackError> {
        self.index_begin();
        let mut r = Reader::new(d);
        let start = r.offset();
        match r.head()? {
            Head::Map(n) => {
                for _ in 0..n {
                    let key = r.key_bytes()?;
                    let k = offset_of(d, key);
                    let v = r.offset();
                    let head = r.head()?;
                    let top = match head {
                        Head::Str(b) => {
                            let at = offset_of(d, b);
                            Top::Str(Span::new(at, at + b.len()))
                        }
                        Head::Nil => Top::Nil,
                        Head::Int(i) => Top::Int(i),
                        Head::UInt(u) => Top::UInt(u),
                        Head::Float(f) => Top::Float(f),
                        _ => Top::Other,
                    };
                    let children = self.index_value(d, &mut r, head, v, 1)?;
                    let (key, value) = (Span::new(k, k + key.len()), Span::new(v, r.offset()));
                    self.index_top(d, key, value, top, children);
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
        let base = self.index_map_start();
        for _ in 0..n {
            let key = r.key_bytes()?;
            let k = offset_of(d, key);
            let v = r.offset();
            let head = r.head()?;
            let children = self.index_value(d, r, head, v, depth + 1)?;
            self.index_node(
                Span::new(k, k + key.len()),
                Span::new(v, r.offset()),
                children,
            );
        }
        Ok(self.index_map_end(base))
    }

    /// Step 2: the known keys, in `Sample::from_entries`' order of checks.
    fn fields<'d>(&self, d: &'d [u8]) -> Result<Fields<'d>, Refusal<'d>> {
        let slots = self.slots;
        if let Some(i) = self.repeated {
            return Err(SchemaError::Duplicate(key_string(d, &self.entries[i])).into());
        }
        if let Some(key) = self.first_repeated_extra(d) {
            return Err(SchemaError::Duplicate(String::from_utf8_lossy(key).into_owned()).into());
        }
        let head = |slot: usize| -> Option<Top> {
            match slots[slot] {
                ABSENT => None,
                _ => Some(self.tops[slot]),
            }
        };
        let required = |slot: usize| -> Result<&'d [u8], Refusal<'d>> {
            match head(slot) {
                None => Err(SchemaError::Missing(KNOWN_KEYS[slot]).into()),
                Some(Top::Str(b)) => Ok(b.of(d)),
                Some(_) => Err(wrong(KNOWN_KEYS[slot], "a string")),
            }
        };
        let optional = |slot: usize| -> Result<Text<'d>, Refusal<'d>> {
            match head(slot) {
                None => Ok(Text::Absent),
                Some(Top::Nil) => Ok(Text::Null),
                Some(Top::Str(b)) => Ok(Text::Value(b.of(d))),
                Some(_) => Err(wrong(KNOWN_KEYS[slot], "a string or null")),
            }
        };
        let number = |slot: usize| -> Result<Num, Refusal<'d>> {
            match head(slot) {
                None => Ok(Num::Absent),
                Some(Top::Nil) => Ok(Num::Null),
                Some(Top::Int(i)) => Ok(Num::Value(Number::Int(i))),
                Some(Top::UInt(u)) => Ok(Num::Value(Number::UInt(u))),
                Some(Top::Float(f)) => Ok(Num::Value(Number::Float(f))),
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
        let message_signature = match head(14) {
            None => None,
            Some(Top::Str(b)) => Some(b.of(d)),
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
        // Top-level keys are unique (the schema step refused repeats): the
        // known ones in their fixed order, merged with the extras, sorted.
        set_prefixes(d, &mut self.entries);
        self.order.clear();
        self.order.extend(
            (0..self.entries.len() as u32).filter(|&i| self.entries[i as usize].slot == EXTRA),
        );
        let entries = &self.entries;
        self.order
            .sort_unstable_by(|&a, &b| by_key(d, &entries[a as usize], &entries[b as usize]));
        self.text.clear();
        let mut exact = true;
        // A copy (15 indices): the walk below borrows `self` mutably.
        let slots = self.slots;
        let mut known = SORTED_KNOWN
            .iter()
            .map(|&slot| slots[usize::from(slot)])
            .filter(|&i| i != ABSENT)
            .peekable();
        let mut extra = 0;
        // The names of the maps around a value, joined by ':' (and ending in one).
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        let walked = loop {
            let next_extra = self.order.get(extra).map(|&i| i as usize);
            let i = match (known.peek(), next_extra) {
                (None, None) => break Ok(()),
                (Some(&k), Some(x)) if by_key(d, &self.entries[x], &self.entries[k]).is_lt() => {
                    extra += 1;
                    x
                }
                (None, Some(x)) => {
                    extra += 1;
                    x
                }
                (Some(&k), _) => {
                    known.next();
                    k
                }
            };
            // Fields, not the whole entry: copying it costs a store-forwarding stall.
            let e = &self.entries[i];
            if e.slot == SIGNATURE {
                continue; // message_signature is never hashed
            }
            let (key, value, children) = (e.key, e.value, e.children);
            if let Err(e) = self.pair(&mut mac, d, &mut path, key, value, children, 0, &mut exact) {
                break Err(e);
            }
        };
        self.path = path;
        walked?;
        mac.update(&self.text);
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        let expected = f.message_signature.unwrap_or_default();
        Ok(exact && signature::constant_time_eq(&signature::hex(&digest), expected))
    }

    /// Appends the pairs of one value named `key` under `path` (its parents'
    /// names, each followed by ':'), inside `depth` levels, to the text to
    /// hash, as `signature::Walker` feeds them for the owned sample.
    #[allow(clippy::too_many_arguments)]
    fn pair(
        &mut self,
        mac: &mut HmacSha256,
        d: &[u8],
        path: &mut Vec<u8>,
        key: Span,
        value: Span,
        children: (u32, u32),
        depth: usize,
        exact: &mut bool,
    ) -> Result<(), Bad> {
        // Most values are short strings: their text is the rest of the range.
        if let [0xa0..=0xbf, body @ ..] = value.of(d) {
            self.text.extend_from_slice(path);
            self.text.extend_from_slice(key.of(d));
            self.text.extend_from_slice(body);
            self.flush_past_bound(mac);
            return Ok(());
        }
        let head = Reader::checked_before(value.of(d)).head()?;
        if let Head::Map(_) = head {
            if depth >= signature::MAX_DEPTH {
                *exact = false;
                return Ok(());
            }
            if children == NOT_A_MAP {
                return Err(bad(
                    value.start as usize,
                    "a map the index pass did not keep",
                ));
            }
            let (from, to) = (children.0 as usize, children.1 as usize);
            // By key, then by position: stable, without a sort buffer.
            set_prefixes(d, &mut self.nodes[from..to]);
            self.nodes[from..to]
                .sort_unstable_by(|a, b| by_key(d, a, b).then(a.key.start.cmp(&b.key.start)));
            let outer = path.len();
            path.extend_from_slice(key.of(d));
            path.push(b':');
            for i in from..to {
                let c = &self.nodes[i];
                // Of two equal keys a Python dict keeps the last value.
                if i + 1 < to && by_key(d, c, &self.nodes[i + 1]).is_eq() {
                    continue;
                }
                let (key, value, children) = (c.key, c.value, c.children);
                if let Err(e) = self.pair(mac, d, path, key, value, children, depth + 1, exact) {
                    path.truncate(outer);
                    return Err(e);
                }
            }
            path.truncate(outer);
            return Ok(());
        }
        self.text.extend_from_slice(path);
        self.text.extend_from_slice(key.of(d));
        let s = &mut self.scratch;
        match head {
            Head::Str(b) => self.text.extend_from_slice(b),
            Head::Nil => self.text.extend_from_slice(b"None"),
            Head::Bool(true) => self.text.extend_from_slice(b"True"),
            Head::Bool(false) => self.text.extend_from_slice(b"False"),
            Head::Int(i) => self
                .text
                .extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            Head::UInt(u) => self
                .text
                .extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
            Head::Float(x) => {
                s.clear();
                signature::python_float_repr(x, s);
                self.text.extend_from_slice(s.as_bytes());
            }
            Head::Array(_) | Head::Bin(_) | Head::Map(_) => {
                // Python's str() of a list (after decode_unicode) or of bytes:
                // rare in metering, so decoded alone and rendered by the owned code.
                let v = Reader::new(value.of(d)).value(0)?;
                s.clear();
                *exact &= signature::push_repr(s, &mut Vec::new(), &v, false, depth);
                self.text.extend_from_slice(s.as_bytes());
            }
        }
        self.flush_past_bound(mac);
        Ok(())
    }

    /// Deep metadata repeats its outer names in every pair: the text is hashed
    /// as it goes past a bound rather than held whole.
    fn flush_past_bound(&mut self, mac: &mut HmacSha256) {
        if self.text.len() >= TEXT_BYTES {
            mac.update(&self.text);
            self.text.clear();
        }
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
                value(&mut Reader::checked_before(v.of(d)), out)?;
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
            value(&mut Reader::checked_before(e.value.of(d)), out)?;
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

/// Byte order of two keys: their 8-byte prefixes, then (when those tie) the
/// whole keys.
fn by_key(d: &[u8], a: &Entry, b: &Entry) -> std::cmp::Ordering {
    a.prefix
        .cmp(&b.prefix)
        .then_with(|| key_of(d, a).cmp(key_of(d, b)))
}

/// Sets each entry's [`Entry::prefix`].
fn set_prefixes(d: &[u8], entries: &mut [Entry]) {
    for e in entries {
        e.prefix = key_prefix(d, e.key);
    }
}

/// A key's first 8 bytes as a big-endian number, zero-padded: keys in byte
/// order have prefixes in number order (equal prefixes tell nothing).
fn key_prefix(d: &[u8], key: Span) -> u64 {
    let (at, len) = (key.start as usize, (key.end - key.start) as usize);
    // A key is followed by its value, so 8 bytes from its start are nearly
    // always there: read them at once and clear what is past the key.
    if let Some(b) = d.get(at..).and_then(|r| r.first_chunk::<8>()) {
        let v = u64::from_be_bytes(*b);
        return if len >= 8 {
            v
        } else {
            v & !(u64::MAX >> (8 * len))
        };
    }
    let mut b = [0u8; 8];
    for (to, from) in b.iter_mut().zip(key.of(d)) {
        *to = *from;
    }
    u64::from_be_bytes(b)
}

fn key_of<'d>(d: &'d [u8], e: &Entry) -> &'d [u8] {
    e.key.of(d)
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

    #[test]
    fn sorted_known_is_the_known_keys_in_byte_order() {
        let mut want: Vec<u8> = (0..KNOWN_KEYS.len() as u8).collect();
        want.sort_by_key(|&slot| KNOWN_KEYS[usize::from(slot)].as_bytes());
        assert_eq!(SORTED_KNOWN.to_vec(), want);
    }
}

//! The batch codec of ABI v1: bincode 2 `config::legacy()` (fixed-width little-endian
//! integers, u64 lengths, u32 enum tags), byte for byte as in docs/ABI.md.
//!
//! Four ways in one module, so that they cannot drift apart:
//! - [`encode_sample`] / [`encode_batch`]: a hand-written encoder (the host's batcher
//!   appends with `encode_sample`);
//! - [`decode_batch`]: owned [`Sample`]s in one hand-written walk (each string
//!   checked and copied once);
//! - [`decode_batch_serde`]: the same through serde + bincode, the reference the
//!   other two are checked against (tests and the `batch_differential` fuzz target);
//! - [`BatchView`]: a zero-copy borrowed view that allocates nothing.
//!
//! The two hand-written decoders share one `Cursor`, whose reads record the
//! first fault instead of returning `Result`s (its doc says why).
//!
//! Hand-written rather than bincode for the hot paths: bincode cannot borrow the
//! view's strings, and its owned decode needed the view's walk first (to bound
//! nesting and refuse what the view refuses), so decoding twice.

use crate::model::{Field, Number, Sample, Value};

/// Value tags (u32, as bincode writes enum variant indexes).
pub mod tag {
    pub const NULL: u32 = 0;
    pub const BOOL: u32 = 1;
    pub const INT: u32 = 2;
    pub const UINT: u32 = 3;
    pub const FLOAT: u32 = 4;
    pub const STR: u32 = 5;
    pub const BYTES: u32 = 6;
    pub const LIST: u32 = 7;
    pub const MAP: u32 = 8;
    /// Number tags (`counter_volume`, `monotonic_time`).
    pub const NUM_INT: u32 = 0;
    pub const NUM_UINT: u32 = 1;
    pub const NUM_FLOAT: u32 = 2;
}

/// Why a batch could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset in the batch (its 8-byte count included) of the first fault:
    /// where a read ran short or a tag was wrong, or where a string that is not
    /// UTF-8 starts (its length). The owned decoder and the view agree on it.
    pub offset: usize,
    pub reason: &'static str,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "batch decode error at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------- encoding

/// Appends a `u64` in ABI layout (little-endian).
#[inline]
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a length-prefixed string or byte string in ABI layout.
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Appends a [`Number`] in ABI layout (its tag, then its 8 bytes).
#[inline]
pub fn put_number(out: &mut Vec<u8>, n: Number) {
    let (t, bits) = match n {
        Number::Int(i) => (tag::NUM_INT, i as u64),
        Number::UInt(u) => (tag::NUM_UINT, u),
        Number::Float(f) => (tag::NUM_FLOAT, f.to_bits()),
    };
    out.extend_from_slice(&t.to_le_bytes());
    put_u64(out, bits);
}

fn put_field_str(out: &mut Vec<u8>, f: &Field<String>) {
    match f {
        Field::Absent => out.push(0),
        Field::Null => out.extend_from_slice(&[1, 0]),
        Field::Value(s) => {
            out.extend_from_slice(&[1, 1]);
            put_str(out, s);
        }
    }
}

/// Appends one [`Value`] in ABI layout.
pub fn encode_value(out: &mut Vec<u8>, v: &Value) {
    let t = |out: &mut Vec<u8>, t: u32| out.extend_from_slice(&t.to_le_bytes());
    match v {
        Value::Null => t(out, tag::NULL),
        Value::Bool(b) => {
            t(out, tag::BOOL);
            out.push(u8::from(*b));
        }
        Value::Int(i) => {
            t(out, tag::INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::UInt(u) => {
            t(out, tag::UINT);
            put_u64(out, *u);
        }
        Value::Float(f) => {
            t(out, tag::FLOAT);
            put_u64(out, f.to_bits());
        }
        Value::Str(s) => {
            t(out, tag::STR);
            put_str(out, s);
        }
        Value::Bytes(b) => {
            t(out, tag::BYTES);
            put_u64(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::List(items) => {
            t(out, tag::LIST);
            put_u64(out, items.len() as u64);
            for item in items {
                encode_value(out, item);
            }
        }
        Value::Map(entries) => {
            t(out, tag::MAP);
            encode_entries(out, entries);
        }
    }
}

fn encode_entries(out: &mut Vec<u8>, entries: &[(String, Value)]) {
    put_u64(out, entries.len() as u64);
    for (k, v) in entries {
        put_str(out, k);
        encode_value(out, v);
    }
}

/// Appends one [`Sample`] in ABI layout (the same bytes as bincode `legacy()`).
pub fn encode_sample(out: &mut Vec<u8>, s: &Sample) {
    put_str(out, &s.source);
    put_str(out, &s.counter_name);
    put_str(out, &s.counter_type);
    put_str(out, &s.counter_unit);
    match s.counter_volume {
        None => out.push(0),
        Some(n) => {
            out.push(1);
            put_number(out, n);
        }
    }
    put_field_str(out, &s.user_id);
    put_field_str(out, &s.user_name);
    put_field_str(out, &s.project_id);
    put_field_str(out, &s.project_name);
    put_str(out, &s.resource_id);
    put_str(out, &s.timestamp);
    match &s.resource_metadata {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            encode_value(out, v);
        }
    }
    put_str(out, &s.message_id);
    match s.monotonic_time {
        Field::Absent => out.push(0),
        Field::Null => out.extend_from_slice(&[1, 0]),
        Field::Value(n) => {
            out.extend_from_slice(&[1, 1]);
            put_number(out, n);
        }
    }
    match &s.message_signature {
        None => out.push(0),
        Some(sig) => {
            out.push(1);
            put_str(out, sig);
        }
    }
    encode_entries(out, &s.extra);
}

/// Encodes a whole batch: a u64 sample count followed by the samples.
pub fn encode_batch(samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + samples.len() * 512);
    put_u64(&mut out, samples.len() as u64);
    for s in samples {
        encode_sample(&mut out, s);
    }
    out
}

/// Decodes a batch into owned samples, in one walk of the bytes: each string
/// is checked and copied once, straight into its `String`.
///
/// It refuses exactly what the zero-copy view refuses (structure, UTF-8,
/// nesting), and gives what [`decode_batch_serde`] gives; the
/// `batch_differential` fuzz target holds the three to that.
///
/// # Errors
/// When the bytes are not a valid batch, or bytes are left over.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Sample>, DecodeError> {
    let mut c = Cursor::new(bytes);
    let count = c.u64();
    c.check()?;
    // Each sample takes at least 40 bytes: no capacity beyond what the bytes hold.
    let mut out = Vec::with_capacity((count as usize).min(bytes.len() / 40));
    for _ in 0..count {
        out.push(owned_sample(&mut c)?);
    }
    if !c.rest.is_empty() {
        return Err(c.err("trailing bytes after the batch"));
    }
    Ok(out)
}

/// Decodes a batch into owned samples with serde + bincode `legacy()`: the
/// reference [`decode_batch`] is checked against (slower: the view checks
/// the batch first, so that serde never recurses deeper than [`MAX_DEPTH`]).
///
/// # Errors
/// When the bytes are not a valid batch, or bytes are left over.
#[doc(hidden)]
pub fn decode_batch_serde(bytes: &[u8]) -> Result<Vec<Sample>, DecodeError> {
    let view = BatchView::new(bytes)?;
    let mut it = view.iter();
    for s in &mut it {
        check_sample_strings(&s?)?;
    }
    it.finish()?;
    let (samples, used): (Vec<Sample>, usize) =
        bincode::serde::decode_from_slice(bytes, bincode::config::legacy()).map_err(|_| {
            DecodeError {
                offset: 0,
                reason: "not a valid ABI v1 batch",
            }
        })?;
    if used != bytes.len() {
        return Err(DecodeError {
            offset: used,
            reason: "trailing bytes after the batch",
        });
    }
    Ok(samples)
}

/// One sample, owned: the fields in ABI order.
fn owned_sample(c: &mut Cursor<'_>) -> Result<Sample, DecodeError> {
    let text = |c: &mut Cursor<'_>| c.str().to_owned();
    let field = |c: &mut Cursor<'_>| c.field_str().map(str::to_owned);
    let s = Sample {
        source: text(c),
        counter_name: text(c),
        counter_type: text(c),
        counter_unit: text(c),
        counter_volume: if c.option() { Some(c.number()) } else { None },
        user_id: field(c),
        user_name: field(c),
        project_id: field(c),
        project_name: field(c),
        resource_id: text(c),
        timestamp: text(c),
        resource_metadata: if c.option() {
            Some(c.owned_value(0))
        } else {
            None
        },
        message_id: text(c),
        monotonic_time: c.field_number(),
        message_signature: if c.option() { Some(text(c)) } else { None },
        extra: c.owned_entries(0),
    };
    c.check()?;
    Ok(s)
}

/// Reads every nested string of a sample (they are checked as they are read), so
/// that one that is not UTF-8 fails the sample instead of ending an iteration early.
fn check_sample_strings(s: &SampleView<'_>) -> Result<(), DecodeError> {
    if let Some(md) = &s.resource_metadata {
        check_strings(md)?;
    }
    check_strings(&ValueView::Map(s.extra))
}

/// Reads every string below `v`, so that one that is not UTF-8 is found.
fn check_strings(v: &ValueView<'_>) -> Result<(), DecodeError> {
    let bad = DecodeError {
        offset: 0,
        reason: "a nested string is not UTF-8",
    };
    match v {
        ValueView::List(l) => {
            let mut n = 0;
            for item in l.iter() {
                check_strings(&item)?;
                n += 1;
            }
            if n != l.len() {
                return Err(bad);
            }
        }
        ValueView::Map(m) => {
            let mut n = 0;
            for (_, item) in m.iter() {
                check_strings(&item)?;
                n += 1;
            }
            if n != m.len() {
                return Err(bad);
            }
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------- borrowed view

/// A cursor over ABI bytes. Every read is bounds-checked: the unread bytes are
/// a slice, so a read is one length comparison and a split.
///
/// Reads do not return `Result`: the first fault (a short read, a bad tag, a
/// string that is not UTF-8) is recorded with its offset, the unread bytes are
/// dropped so that every later read comes back empty at once, and the caller
/// asks [`Cursor::check`] once per sample. Loops over a count read from the
/// bytes stop at a fault ([`Cursor::ok`]), so a huge count costs nothing once
/// the bytes have run out.
///
/// Why: in a plugin, a `Result` per read (about a hundred reads per realistic
/// sample) was most of the borrowed view's cost. Counted with callgrind in the
/// noop plugin, the guest's walk of a realistic sample took about 4,800
/// instructions with them and 2,700 with this cursor, its small reads and
/// `str` inlined, scalars skipped inline and [`is_ascii`] by 8-byte words.
#[derive(Clone, Copy, Debug)]
struct Cursor<'a> {
    buf: &'a [u8],
    rest: &'a [u8],
    /// The first fault: its offset and reason.
    fault: Option<(usize, &'static str)>,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            rest: buf,
            fault: None,
        }
    }

    /// Bytes read so far.
    #[inline]
    fn pos(&self) -> usize {
        self.buf.len() - self.rest.len()
    }

    /// The bytes read since `start` (a [`Cursor::pos`]).
    #[inline]
    fn since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos()).unwrap_or_default()
    }

    /// No fault so far.
    #[inline(always)]
    fn ok(&self) -> bool {
        self.fault.is_none()
    }

    /// The first fault, as an error.
    #[inline]
    fn check(&self) -> Result<(), DecodeError> {
        match self.fault {
            None => Ok(()),
            Some((offset, reason)) => Err(DecodeError { offset, reason }),
        }
    }

    /// Records a fault at `offset` (the first one wins) and stops reading.
    #[cold]
    #[inline(never)]
    fn fail_at(&mut self, offset: usize, reason: &'static str) {
        if self.fault.is_none() {
            self.fault = Some((offset, reason));
        }
        self.rest = &[];
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self, reason: &'static str) {
        self.fail_at(self.pos(), reason);
    }

    /// An error at the current offset, or at the fault's if there was one.
    fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            offset: self.fault.map_or_else(|| self.pos(), |(offset, _)| offset),
            reason,
        }
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> &'a [u8] {
        match self.rest.split_at_checked(n) {
            Some((s, rest)) => {
                self.rest = rest;
                s
            }
            None => {
                self.fail("unexpected end of batch");
                &[]
            }
        }
    }

    #[inline(always)]
    fn fixed<const N: usize>(&mut self) -> [u8; N] {
        match self.rest.split_first_chunk::<N>() {
            Some((s, rest)) => {
                self.rest = rest;
                *s
            }
            None => {
                self.fail("unexpected end of batch");
                [0; N]
            }
        }
    }

    #[inline(always)]
    fn u8(&mut self) -> u8 {
        self.fixed::<1>()[0]
    }

    #[inline(always)]
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.fixed())
    }

    #[inline(always)]
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.fixed())
    }

    #[inline(always)]
    fn len(&mut self) -> usize {
        let n = self.u64();
        usize::try_from(n).unwrap_or_else(|_| {
            self.fail("length too large");
            0
        })
    }

    #[inline(always)]
    fn bytes(&mut self) -> &'a [u8] {
        let n = self.len();
        self.take(n)
    }

    #[inline(always)]
    fn str(&mut self) -> &'a str {
        let start = self.pos();
        let b = self.bytes();
        // Most strings are ASCII; checking that word by word is cheaper than from_utf8.
        if is_ascii(b) {
            // SAFETY: every byte is ASCII, which is valid UTF-8.
            return unsafe { core::str::from_utf8_unchecked(b) };
        }
        core::str::from_utf8(b).unwrap_or_else(|_| {
            self.fail_at(start, "string is not UTF-8");
            ""
        })
    }

    #[inline(always)]
    fn option(&mut self) -> bool {
        match self.u8() {
            0 => false,
            1 => true,
            _ => {
                self.fail("option tag is not 0 or 1");
                false
            }
        }
    }

    #[inline]
    fn number(&mut self) -> Number {
        let t = self.u32();
        let bits = self.u64();
        match t {
            tag::NUM_INT => Number::Int(bits as i64),
            tag::NUM_UINT => Number::UInt(bits),
            tag::NUM_FLOAT => Number::Float(f64::from_bits(bits)),
            _ => {
                self.fail("unknown number tag");
                Number::Int(0)
            }
        }
    }

    // `field_number` and `field_str` are written out: one generic `field(read)`
    // cost 150 more guest instructions per sample (callgrind, noop plugin).
    #[inline(always)]
    fn field_number(&mut self) -> Field<Number> {
        if !self.option() {
            return Field::Absent;
        }
        if !self.option() {
            return Field::Null;
        }
        Field::Value(self.number())
    }

    #[inline(always)]
    fn field_str(&mut self) -> Field<&'a str> {
        if !self.option() {
            return Field::Absent;
        }
        if !self.option() {
            return Field::Null;
        }
        Field::Value(self.str())
    }

    /// A container at `depth` (0: a sample field's own value) is level `depth + 1`
    /// below the field: false (and a fault) past [`MAX_DEPTH`].
    #[inline(always)]
    fn enter(&mut self, depth: u32) -> bool {
        if depth >= MAX_DEPTH {
            self.fail("values nested too deeply");
            return false;
        }
        true
    }

    /// The body of a value that is not a list or a map, after its tag `t`.
    fn scalar(&mut self, t: u32) -> ValueView<'a> {
        match t {
            tag::NULL => ValueView::Null,
            tag::BOOL => match self.u8() {
                0 => ValueView::Bool(false),
                1 => ValueView::Bool(true),
                _ => {
                    self.fail("bool is not 0 or 1");
                    ValueView::Null
                }
            },
            tag::INT => ValueView::Int(self.u64() as i64),
            tag::UINT => ValueView::UInt(self.u64()),
            tag::FLOAT => ValueView::Float(f64::from_bits(self.u64())),
            tag::STR => ValueView::Str(self.str()),
            tag::BYTES => ValueView::Bytes(self.bytes()),
            _ => {
                self.fail("unknown value tag");
                ValueView::Null
            }
        }
    }

    fn value(&mut self, depth: u32) -> ValueView<'a> {
        match self.u32() {
            tag::LIST => {
                if !self.enter(depth) {
                    return ValueView::Null;
                }
                let count = self.len();
                let start = self.pos();
                for _ in 0..count {
                    if !self.ok() {
                        break;
                    }
                    self.skip(depth + 1);
                }
                ValueView::List(ListView {
                    count,
                    bytes: self.since(start),
                    item_depth: depth + 1,
                })
            }
            tag::MAP => {
                if !self.enter(depth) {
                    return ValueView::Null;
                }
                ValueView::Map(self.entries(depth + 1))
            }
            t => self.scalar(t),
        }
    }

    /// The entries of a map whose values sit at `item_depth`: a metadata map at depth
    /// `d` has them at `d + 1`; the sample's extra keys, like its fields, at 0.
    fn entries(&mut self, item_depth: u32) -> MapView<'a> {
        let count = self.len();
        let start = self.pos();
        for _ in 0..count {
            if !self.ok() {
                break;
            }
            self.bytes();
            self.skip(item_depth);
        }
        MapView {
            count,
            bytes: self.since(start),
            item_depth,
        }
    }

    /// One value at `depth`, owned (what `value` then `to_owned_value` give).
    fn owned_value(&mut self, depth: u32) -> Value {
        match self.u32() {
            tag::LIST => {
                if !self.enter(depth) {
                    return Value::Null;
                }
                let count = self.len();
                // Each item takes at least its 4-byte tag.
                let mut items = Vec::with_capacity(count.min(self.remaining() / 4));
                for _ in 0..count {
                    if !self.ok() {
                        break;
                    }
                    items.push(self.owned_value(depth + 1));
                }
                Value::List(items)
            }
            tag::MAP => {
                if !self.enter(depth) {
                    return Value::Null;
                }
                Value::Map(self.owned_entries(depth + 1))
            }
            t => self.scalar(t).to_owned_value(),
        }
    }

    /// The entries of a map whose values sit at `item_depth`, owned.
    fn owned_entries(&mut self, item_depth: u32) -> Vec<(String, Value)> {
        let count = self.len();
        // Each entry takes at least an 8-byte key length and a 4-byte tag.
        let mut entries = Vec::with_capacity(count.min(self.remaining() / 12));
        for _ in 0..count {
            if !self.ok() {
                break;
            }
            let key = self.str().to_owned();
            entries.push((key, self.owned_value(item_depth)));
        }
        entries
    }

    fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Steps over one value, checking its structure and bounds but not the UTF-8
    /// of its strings (checked when they are read): nested metadata costs
    /// nothing until a plugin looks at it. Scalars are stepped over inline (most
    /// metadata values are strings); lists and maps in [`Cursor::skip_container`].
    #[inline(always)]
    fn skip(&mut self, depth: u32) {
        match self.u32() {
            tag::STR | tag::BYTES => {
                self.bytes();
            }
            tag::INT | tag::UINT | tag::FLOAT => {
                self.take(8);
            }
            tag::NULL => {}
            tag::BOOL => {
                if self.u8() > 1 {
                    self.fail("bool is not 0 or 1");
                }
            }
            t => self.skip_container(t, depth),
        }
    }

    /// Steps over a list or a map (tag `t`, already read) at `depth`.
    #[inline(never)]
    fn skip_container(&mut self, t: u32, depth: u32) {
        match t {
            tag::LIST => {
                if self.enter(depth) {
                    for _ in 0..self.len() {
                        if !self.ok() {
                            break;
                        }
                        self.skip(depth + 1);
                    }
                }
            }
            tag::MAP => {
                if self.enter(depth) {
                    for _ in 0..self.len() {
                        if !self.ok() {
                            break;
                        }
                        self.bytes();
                        self.skip(depth + 1);
                    }
                }
            }
            _ => self.fail("unknown value tag"),
        }
    }
}

/// Whether every byte is ASCII: `<[u8]>::is_ascii` with 8-byte words and one
/// test at the end. core's steps by `usize`, 4 bytes in a 32-bit plugin, and
/// tests each word; wasm has 64-bit integers, and this check is a third of the
/// borrowed view's time. A short string is read as (overlapping) halves.
#[inline(always)]
fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([0xff; 8]));
    let n = b.len();
    if n < 8 {
        if n >= 4 {
            let half = |c: &[u8]| u32::from_le_bytes(c.try_into().unwrap_or([0xff; 4]));
            return (half(&b[..4]) | half(&b[n - 4..])) & 0x8080_8080 == 0;
        }
        return b.iter().fold(0, |acc, &x| acc | x) < 0x80;
    }
    let mut acc = word(&b[n - 8..]);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        acc |= word(c);
    }
    acc & HIGH == 0
}

/// Levels of lists and maps a sample field's value may hold: the ABI's
/// [`MAX_NESTING`](crate::abi::MAX_NESTING) less the sample dict itself (63).
pub const MAX_DEPTH: u32 = crate::abi::MAX_NESTING - 1;

/// A borrowed metadata or extra value. Lists and maps are iterated lazily.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueView<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    List(ListView<'a>),
    Map(MapView<'a>),
}

impl<'a> ValueView<'a> {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            ValueView::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar as Python's `str()` shows it (`True`, `42`, `0.5`, the string
    /// itself); `None` for null, bytes, lists and dicts.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            ValueView::Str(s) => Some((*s).to_owned()),
            ValueView::Int(i) => Some(i.to_string()),
            ValueView::UInt(u) => Some(u.to_string()),
            ValueView::Float(f) => {
                let mut out = Vec::new();
                crate::json::write_f64(&mut out, *f);
                Some(String::from_utf8_lossy(&out).into_owned())
            }
            ValueView::Bool(b) => Some(if *b { "True" } else { "False" }.to_owned()),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            ValueView::Int(i) => Some(i as f64),
            ValueView::UInt(u) => Some(u as f64),
            ValueView::Float(f) => Some(f),
            _ => None,
        }
    }

    /// Looks a key up when this is a map.
    pub fn get(&self, key: &str) -> Option<ValueView<'a>> {
        match self {
            ValueView::Map(m) => m.get(key),
            _ => None,
        }
    }

    /// Converts to an owned [`Value`].
    pub fn to_owned_value(&self) -> Value {
        match *self {
            ValueView::Null => Value::Null,
            ValueView::Bool(b) => Value::Bool(b),
            ValueView::Int(i) => Value::Int(i),
            ValueView::UInt(u) => Value::UInt(u),
            ValueView::Float(f) => Value::Float(f),
            ValueView::Str(s) => Value::Str(s.to_owned()),
            ValueView::Bytes(b) => Value::Bytes(b.to_vec()),
            ValueView::List(l) => Value::List(l.iter().map(|v| v.to_owned_value()).collect()),
            ValueView::Map(m) => Value::Map(m.to_owned_entries()),
        }
    }
}

/// A borrowed list, already checked when its sample was decoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ListView<'a> {
    count: usize,
    bytes: &'a [u8],
    /// Depth of the items (0: a sample field's own value).
    item_depth: u32,
}

impl<'a> ListView<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = ValueView<'a>> + 'a {
        let mut c = Cursor::new(self.bytes);
        let depth = self.item_depth;
        (0..self.count).map_while(move |_| {
            let v = c.value(depth);
            c.ok().then_some(v)
        })
    }
}

/// A borrowed map (keys in the order received). Its structure was checked when its
/// sample was decoded; the UTF-8 of its strings is checked as they are read, and
/// iteration stops at the first that is not (the host never sends one).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapView<'a> {
    count: usize,
    bytes: &'a [u8],
    /// Depth of the values (0: a sample field's own value).
    item_depth: u32,
}

impl<'a> MapView<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a str, ValueView<'a>)> + 'a {
        let mut c = Cursor::new(self.bytes);
        let depth = self.item_depth;
        (0..self.count).map_while(move |_| {
            let entry = (c.str(), c.value(depth));
            c.ok().then_some(entry)
        })
    }

    pub fn get(&self, key: &str) -> Option<ValueView<'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn to_owned_entries(&self) -> Vec<(String, Value)> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned_value()))
            .collect()
    }
}

/// One sample, borrowed from the batch bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleView<'a> {
    pub source: &'a str,
    pub counter_name: &'a str,
    pub counter_type: &'a str,
    pub counter_unit: &'a str,
    pub counter_volume: Option<Number>,
    pub user_id: Field<&'a str>,
    pub user_name: Field<&'a str>,
    pub project_id: Field<&'a str>,
    pub project_name: Field<&'a str>,
    pub resource_id: &'a str,
    pub timestamp: &'a str,
    pub resource_metadata: Option<ValueView<'a>>,
    pub message_id: &'a str,
    pub monotonic_time: Field<Number>,
    pub message_signature: Option<&'a str>,
    pub extra: MapView<'a>,
}

impl<'a> SampleView<'a> {
    /// The `resource_metadata` value at a dotted path into nested dicts
    /// (`flavor.name`), if there is one.
    pub fn metadata_at(&self, path: &str) -> Option<ValueView<'a>> {
        let mut v = self.resource_metadata;
        for key in path.split('.') {
            v = v.and_then(|m| m.get(key));
        }
        v
    }

    /// Copies the view into an owned [`Sample`].
    pub fn to_owned_sample(&self) -> Sample {
        let s = |f: Field<&str>| f.map(str::to_owned);
        Sample {
            source: self.source.to_owned(),
            counter_name: self.counter_name.to_owned(),
            counter_type: self.counter_type.to_owned(),
            counter_unit: self.counter_unit.to_owned(),
            counter_volume: self.counter_volume,
            user_id: s(self.user_id),
            user_name: s(self.user_name),
            project_id: s(self.project_id),
            project_name: s(self.project_name),
            resource_id: self.resource_id.to_owned(),
            timestamp: self.timestamp.to_owned(),
            resource_metadata: self.resource_metadata.map(|v| v.to_owned_value()),
            message_id: self.message_id.to_owned(),
            monotonic_time: self.monotonic_time,
            message_signature: self.message_signature.map(str::to_owned),
            extra: self.extra.to_owned_entries(),
        }
    }
}

fn sample_view<'a>(c: &mut Cursor<'a>) -> Result<SampleView<'a>, DecodeError> {
    let s = SampleView {
        source: c.str(),
        counter_name: c.str(),
        counter_type: c.str(),
        counter_unit: c.str(),
        counter_volume: if c.option() { Some(c.number()) } else { None },
        user_id: c.field_str(),
        user_name: c.field_str(),
        project_id: c.field_str(),
        project_name: c.field_str(),
        resource_id: c.str(),
        timestamp: c.str(),
        resource_metadata: if c.option() { Some(c.value(0)) } else { None },
        message_id: c.str(),
        monotonic_time: c.field_number(),
        message_signature: if c.option() { Some(c.str()) } else { None },
        extra: c.entries(0),
    };
    c.check()?;
    Ok(s)
}

/// A zero-copy view of a batch: iterating it decodes each sample in place.
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    count: u64,
    /// The whole batch, count included, so that error offsets are the batch's
    /// (as [`decode_batch`] gives them).
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Reads the batch header.
    ///
    /// # Errors
    /// When the bytes are shorter than the 8-byte count.
    pub fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(bytes);
        let count = c.u64();
        c.check()?;
        Ok(BatchView { count, bytes })
    }

    /// Number of samples the header announces.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The samples, each decoded as it is reached. After an error the iterator ends.
    pub fn iter(&self) -> SampleIter<'a> {
        SampleIter {
            cursor: Cursor {
                buf: self.bytes,
                rest: self.bytes.get(8..).unwrap_or_default(),
                fault: None,
            },
            left: self.count,
            failed: false,
        }
    }

    /// Decodes every sample, checking that no byte is left over.
    ///
    /// # Errors
    /// The first [`DecodeError`] met.
    pub fn to_owned_samples(&self) -> Result<Vec<Sample>, DecodeError> {
        let mut it = self.iter();
        let mut out = Vec::with_capacity(self.count.min(1 << 16) as usize);
        for s in &mut it {
            let s = s?;
            check_sample_strings(&s)?;
            out.push(s.to_owned_sample());
        }
        it.finish()?;
        Ok(out)
    }
}

/// Iterator over the samples of a [`BatchView`].
#[derive(Clone, Debug)]
pub struct SampleIter<'a> {
    cursor: Cursor<'a>,
    left: u64,
    failed: bool,
}

impl SampleIter<'_> {
    /// After the last sample: checks that the batch has no trailing bytes.
    ///
    /// # Errors
    /// When bytes are left over or samples were missing.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.left != 0 || self.failed {
            return Err(self.cursor.err("batch ended early"));
        }
        if !self.cursor.rest.is_empty() {
            return Err(self.cursor.err("trailing bytes after the batch"));
        }
        Ok(())
    }
}

impl<'a> Iterator for SampleIter<'a> {
    type Item = Result<SampleView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.failed {
            return None;
        }
        self.left -= 1;
        let r = sample_view(&mut self.cursor);
        self.failed = r.is_err();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    /// The word-wise check agrees with core's on every length up to 40 with a
    /// non-ASCII byte at each position (and none): `str` trusts it for
    /// `from_utf8_unchecked`.
    #[test]
    fn is_ascii_agrees_with_core_at_every_length_and_position() {
        for n in 0..=40 {
            let clean = vec![b'a'; n];
            assert!(super::is_ascii(&clean), "{n} ASCII bytes");
            for at in 0..n {
                for high in [0x80u8, 0xc3, 0xff] {
                    let mut b = clean.clone();
                    b[at] = high;
                    assert_eq!(
                        super::is_ascii(&b),
                        b.is_ascii(),
                        "length {n}, {high:#x} at {at}"
                    );
                }
            }
        }
    }
}

//! Ceilometer's UDP wire format: one msgpack map per datagram. Hand-written because only a
//! strict subset of msgpack is valid here and decoding must work straight from the received
//! slice; encoding matches `msgpack.dumps(meter_dict, use_bin_type=True)` byte for byte.

use collector_sdk::model::{Field, Number, Sample, SchemaError, Value};

/// How many containers may nest, the top-level map included: the ABI's one limit.
pub const MAX_DEPTH: usize = collector_sdk::abi::MAX_NESTING as usize;

/// Why a datagram is not a sample.
#[derive(Debug, thiserror::Error)]
pub enum MsgpackError {
    /// Not well-formed msgpack, or msgpack that no sample dict can hold (an ext type,
    /// a non-string map key, invalid UTF-8, nesting deeper than [`MAX_DEPTH`]).
    #[error("malformed msgpack at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    /// Well-formed msgpack whose top-level value is not a map.
    #[error("top-level msgpack value is {found}, not a map")]
    NotAMap { found: &'static str },
    /// A map, but not a valid sample dict.
    #[error("not a Ceilometer sample: {0}")]
    Schema(#[from] SchemaError),
}

/// Decodes one datagram: exactly one msgpack map with string keys, and nothing after it.
///
/// Allocates only the strings, vectors and maps of the resulting sample; declared lengths
/// are checked against the bytes that remain before anything is reserved for them.
///
/// # Errors
/// [`MsgpackError::Malformed`] with the byte offset of the first problem,
/// [`MsgpackError::NotAMap`] for another well-formed top-level value, and
/// [`MsgpackError::Schema`] when the map is not a valid sample dict.
pub fn decode_sample(bytes: &[u8]) -> Result<Sample, MsgpackError> {
    let mut r = Reader::new(bytes);
    let start = r.offset();
    let entries = match r.head()? {
        Head::Map(n) => r.entries(n, 1)?,
        other => return Err(r.not_a_map(other, start)),
    };
    r.finish()?;
    Ok(Sample::from_entries(entries)?)
}

/// Appends `s` exactly as Python's `msgpack.dumps(meter_dict, use_bin_type=True)` packs the
/// dict of `meter_message_from_counter`: Ceilometer's key order, then the extra keys as
/// received, absent keys left out, the smallest integer encodings and float64 floats.
pub fn encode_sample(s: &Sample, out: &mut Vec<u8>) {
    let optional = [
        s.user_id.is_present(),
        s.user_name.is_present(),
        s.project_id.is_present(),
        s.project_name.is_present(),
        s.resource_metadata.is_some(),
        s.monotonic_time.is_present(),
        s.message_signature.is_some(),
    ];
    let present = 8 + optional.iter().filter(|p| **p).count() + s.extra.len();
    // msgpack cannot declare more than u32::MAX entries; extras past that are dropped
    // rather than writing a map that lies about its length.
    let extra_len = put_map_header(out, present).saturating_sub(present - s.extra.len());

    put_str(out, "source");
    put_str(out, &s.source);
    put_str(out, "counter_name");
    put_str(out, &s.counter_name);
    put_str(out, "counter_type");
    put_str(out, &s.counter_type);
    put_str(out, "counter_unit");
    put_str(out, &s.counter_unit);
    put_str(out, "counter_volume");
    match s.counter_volume {
        None => out.push(NIL),
        Some(n) => put_number(out, n),
    }
    put_str_field(out, "user_id", &s.user_id);
    put_str_field(out, "user_name", &s.user_name);
    put_str_field(out, "project_id", &s.project_id);
    put_str_field(out, "project_name", &s.project_name);
    put_str(out, "resource_id");
    put_str(out, &s.resource_id);
    put_str(out, "timestamp");
    put_str(out, &s.timestamp);
    if let Some(v) = &s.resource_metadata {
        put_str(out, "resource_metadata");
        put_value(out, v);
    }
    put_str(out, "message_id");
    put_str(out, &s.message_id);
    match s.monotonic_time {
        Field::Absent => {}
        Field::Null => {
            put_str(out, "monotonic_time");
            out.push(NIL);
        }
        Field::Value(n) => {
            put_str(out, "monotonic_time");
            put_number(out, n);
        }
    }
    if let Some(sig) = &s.message_signature {
        put_str(out, "message_signature");
        put_str(out, sig);
    }
    for (k, v) in s.extra.iter().take(extra_len) {
        put_str(out, k);
        put_value(out, v);
    }
}

const NIL: u8 = 0xc0;

/// A decoding failure, kept small so that the hot path's `Result`s stay small too.
#[derive(Debug)]
pub(crate) struct Bad {
    offset: usize,
    reason: &'static str,
}

impl From<Bad> for MsgpackError {
    #[cold]
    fn from(b: Bad) -> Self {
        MsgpackError::Malformed {
            offset: b.offset,
            reason: b.reason,
        }
    }
}

#[cold]
pub(crate) fn bad(offset: usize, reason: &'static str) -> Bad {
    Bad { offset, reason }
}

/// One value's header; str and bin bodies are already sliced out.
pub(crate) enum Head<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(usize),
    Map(usize),
}

impl Head<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Head::Nil => "nil",
            Head::Bool(_) => "a bool",
            Head::Int(_) | Head::UInt(_) => "an integer",
            Head::Float(_) => "a float",
            Head::Str(_) => "a str",
            Head::Bin(_) => "a bin",
            Head::Array(_) => "an array",
            Head::Map(_) => "a map",
        }
    }
}

pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    total: usize,
    /// Bytes that the containers still open are sure to need: one per array element and
    /// per map key or value not yet started. Checking a new container's length against
    /// what remains after this keeps everything reserved at once within the input's size,
    /// even for nested containers that each claim the rest of the datagram.
    owed: usize,
    /// Whether str bodies are checked as UTF-8 ([`Reader::checked_before`] does not).
    check_utf8: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader {
            rest: bytes,
            total: bytes.len(),
            owed: 0,
            check_utf8: true,
        }
    }

    /// A reader of bytes a checking reader already walked whole (a value's
    /// range, walked again): the same structure checks, no UTF-8 check again.
    /// Only [`Reader::key_bytes`] and [`Reader::skip_body`] skip it; the
    /// methods that return `&str` still check.
    pub(crate) fn checked_before(bytes: &'a [u8]) -> Self {
        Reader {
            check_utf8: false,
            ..Reader::new(bytes)
        }
    }

    pub(crate) fn offset(&self) -> usize {
        self.total.saturating_sub(self.rest.len())
    }

    pub(crate) fn finish(&self) -> Result<(), Bad> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(bad(self.offset(), "trailing bytes after the first value"))
        }
    }

    fn byte(&mut self) -> Result<u8, Bad> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or_else(|| bad(self.offset(), "unexpected end of data"))?;
        self.rest = rest;
        Ok(b)
    }

    fn fixed<const N: usize>(&mut self, start: usize) -> Result<[u8; N], Bad> {
        let (a, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| bad(start, "value runs past the end of data"))?;
        self.rest = rest;
        Ok(*a)
    }

    fn take(&mut self, n: usize, start: usize) -> Result<&'a [u8], Bad> {
        let (a, rest) = self
            .rest
            .split_at_checked(n)
            .ok_or_else(|| bad(start, "str or bin runs past the end of data"))?;
        self.rest = rest;
        Ok(a)
    }

    fn len8(&mut self, start: usize) -> Result<usize, Bad> {
        Ok(usize::from(u8::from_be_bytes(self.fixed(start)?)))
    }

    fn len16(&mut self, start: usize) -> Result<usize, Bad> {
        Ok(usize::from(u16::from_be_bytes(self.fixed(start)?)))
    }

    fn len32(&mut self, start: usize) -> Result<usize, Bad> {
        // Too large for usize (16-bit targets) is as impossible as too long for the data.
        Ok(usize::try_from(u32::from_be_bytes(self.fixed(start)?)).unwrap_or(usize::MAX))
    }

    fn array(&mut self, n: usize, start: usize) -> Result<Head<'a>, Bad> {
        if n > self.rest.len().saturating_sub(self.owed) {
            return Err(bad(start, "array declares more elements than bytes remain"));
        }
        self.owed += n;
        Ok(Head::Array(n))
    }

    fn map(&mut self, n: usize, start: usize) -> Result<Head<'a>, Bad> {
        if n > self.rest.len().saturating_sub(self.owed) / 2 {
            return Err(bad(start, "map declares more entries than bytes remain"));
        }
        self.owed += 2 * n;
        Ok(Head::Map(n))
    }

    /// Reads one value's header (and a str or bin body).
    // Inlined so that each caller's match on the header folds into this one: about 10%
    // faster per datagram.
    #[inline(always)]
    pub(crate) fn head(&mut self) -> Result<Head<'a>, Bad> {
        // Starting this value pays the byte its container owed for it.
        self.owed = self.owed.saturating_sub(1);
        let start = self.offset();
        let b = self.byte()?;
        Ok(match b {
            0x00..=0x7f => Head::Int(i64::from(b)),
            0x80..=0x8f => self.map(usize::from(b & 0x0f), start)?,
            0x90..=0x9f => self.array(usize::from(b & 0x0f), start)?,
            0xa0..=0xbf => Head::Str(self.take(usize::from(b & 0x1f), start)?),
            0xc0 => Head::Nil,
            0xc1 => return Err(bad(start, "0xc1 is not a msgpack type")),
            0xc2 => Head::Bool(false),
            0xc3 => Head::Bool(true),
            0xc4 => {
                let n = self.len8(start)?;
                Head::Bin(self.take(n, start)?)
            }
            0xc5 => {
                let n = self.len16(start)?;
                Head::Bin(self.take(n, start)?)
            }
            0xc6 => {
                let n = self.len32(start)?;
                Head::Bin(self.take(n, start)?)
            }
            0xc7..=0xc9 | 0xd4..=0xd8 => return Err(bad(start, "ext types are not accepted")),
            0xca => Head::Float(f64::from(f32::from_be_bytes(self.fixed(start)?))),
            0xcb => Head::Float(f64::from_be_bytes(self.fixed(start)?)),
            0xcc => Head::Int(i64::from(u8::from_be_bytes(self.fixed(start)?))),
            0xcd => Head::Int(i64::from(u16::from_be_bytes(self.fixed(start)?))),
            0xce => Head::Int(i64::from(u32::from_be_bytes(self.fixed(start)?))),
            0xcf => {
                let u = u64::from_be_bytes(self.fixed(start)?);
                i64::try_from(u).map_or(Head::UInt(u), Head::Int)
            }
            0xd0 => Head::Int(i64::from(i8::from_be_bytes(self.fixed(start)?))),
            0xd1 => Head::Int(i64::from(i16::from_be_bytes(self.fixed(start)?))),
            0xd2 => Head::Int(i64::from(i32::from_be_bytes(self.fixed(start)?))),
            0xd3 => Head::Int(i64::from_be_bytes(self.fixed(start)?)),
            0xd9 => {
                let n = self.len8(start)?;
                Head::Str(self.take(n, start)?)
            }
            0xda => {
                let n = self.len16(start)?;
                Head::Str(self.take(n, start)?)
            }
            0xdb => {
                let n = self.len32(start)?;
                Head::Str(self.take(n, start)?)
            }
            0xdc => {
                let n = self.len16(start)?;
                self.array(n, start)?
            }
            0xdd => {
                let n = self.len32(start)?;
                self.array(n, start)?
            }
            0xde => {
                let n = self.len16(start)?;
                self.map(n, start)?
            }
            0xdf => {
                let n = self.len32(start)?;
                self.map(n, start)?
            }
            0xe0..=0xff => Head::Int(i64::from(i8::from_be_bytes([b]))),
        })
    }

    /// Checks `body` (just read) as UTF-8, reporting the offset of the first bad byte.
    fn utf8(&self, body: &'a [u8]) -> Result<&'a str, Bad> {
        // Most strings are ASCII: checking that word by word, inlined, is
        // cheaper than a call to from_utf8 for the short strings of a sample.
        if body.is_ascii() {
            // SAFETY: every byte is ASCII, which is valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(body) });
        }
        std::str::from_utf8(body).map_err(|e| {
            let body_start = self.offset().saturating_sub(body.len());
            bad(
                body_start.saturating_add(e.valid_up_to()),
                "str is not valid UTF-8",
            )
        })
    }

    /// A map key: str, or bin holding UTF-8 (what some old packers emit for text).
    pub(crate) fn key(&mut self) -> Result<&'a str, Bad> {
        let start = self.offset();
        match self.head()? {
            Head::Str(b) | Head::Bin(b) => self.utf8(b),
            _ => Err(bad(start, "map key is not a string")),
        }
    }

    /// A map key's bytes, checked as UTF-8 unless [`Reader::checked_before`].
    pub(crate) fn key_bytes(&mut self) -> Result<&'a [u8], Bad> {
        // Nearly every key is a fixstr: read it without the general header match.
        if let Some((&b, rest)) = self.rest.split_first()
            && (0xa0..=0xbf).contains(&b)
            && let Some((key, rest)) = rest.split_at_checked(usize::from(b & 0x1f))
        {
            if self.check_utf8 && !key.is_ascii() {
                return self.key_bytes_slow();
            }
            self.owed = self.owed.saturating_sub(1);
            self.rest = rest;
            return Ok(key);
        }
        self.key_bytes_slow()
    }

    /// [`Reader::key_bytes`] for any header (and non-ASCII keys), with its errors.
    #[inline(never)]
    fn key_bytes_slow(&mut self) -> Result<&'a [u8], Bad> {
        let start = self.offset();
        match self.head()? {
            Head::Str(b) | Head::Bin(b) => {
                if self.check_utf8 {
                    self.utf8(b)?;
                }
                Ok(b)
            }
            _ => Err(bad(start, "map key is not a string")),
        }
    }

    fn entries(&mut self, n: usize, depth: usize) -> Result<Vec<(String, Value)>, Bad> {
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self.key()?.to_owned();
            entries.push((key, self.value(depth)?));
        }
        Ok(entries)
    }

    /// Decodes one value that sits inside `depth` containers.
    pub(crate) fn value(&mut self, depth: usize) -> Result<Value, Bad> {
        let start = self.offset();
        Ok(match self.head()? {
            Head::Nil => Value::Null,
            Head::Bool(b) => Value::Bool(b),
            Head::Int(i) => Value::Int(i),
            Head::UInt(u) => Value::UInt(u),
            Head::Float(f) => Value::Float(f),
            Head::Str(b) => Value::Str(self.utf8(b)?.to_owned()),
            Head::Bin(b) => Value::Bytes(b.to_vec()),
            Head::Array(n) => {
                enter(depth, start)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(items)
            }
            Head::Map(n) => {
                enter(depth, start)?;
                Value::Map(self.entries(n, depth + 1)?)
            }
        })
    }

    /// The error for a datagram whose top-level value (`head`, at `start`) is
    /// not a map. Malformed input is reported as such even then, so the whole
    /// value is still checked (without building it).
    #[cold]
    pub(crate) fn not_a_map(&mut self, head: Head<'a>, start: usize) -> MsgpackError {
        let found = head.kind();
        if let Err(e) = self.skip_body(head, start, 0).and_then(|()| self.finish()) {
            return e.into();
        }
        MsgpackError::NotAMap { found }
    }

    /// Validates the rest of a value whose header is `head`, building nothing.
    pub(crate) fn skip_body(
        &mut self,
        head: Head<'a>,
        start: usize,
        depth: usize,
    ) -> Result<(), Bad> {
        match head {
            Head::Str(b) => {
                if self.check_utf8 {
                    self.utf8(b)?;
                }
            }
            Head::Array(n) => {
                enter(depth, start)?;
                for _ in 0..n {
                    let start = self.offset();
                    let head = self.head()?;
                    self.skip_body(head, start, depth + 1)?;
                }
            }
            Head::Map(n) => {
                enter(depth, start)?;
                for _ in 0..n {
                    self.key_bytes()?;
                    let start = self.offset();
                    let head = self.head()?;
                    self.skip_body(head, start, depth + 1)?;
                }
            }
            Head::Nil
            | Head::Bool(_)
            | Head::Int(_)
            | Head::UInt(_)
            | Head::Float(_)
            | Head::Bin(_) => {}
        }
        Ok(())
    }
}

/// Refuses a container inside `depth` others when that makes more than [`MAX_DEPTH`] levels.
pub(crate) fn enter(depth: usize, start: usize) -> Result<(), Bad> {
    if depth >= MAX_DEPTH {
        return Err(bad(start, "containers nest too deeply"));
    }
    Ok(())
}

fn put_str_field(out: &mut Vec<u8>, key: &str, f: &Field<String>) {
    match f {
        Field::Absent => {}
        Field::Null => {
            put_str(out, key);
            out.push(NIL);
        }
        Field::Value(v) => {
            put_str(out, key);
            put_str(out, v);
        }
    }
}

fn put_number(out: &mut Vec<u8>, n: Number) {
    match n {
        Number::Int(i) => put_int(out, i),
        Number::UInt(u) => put_uint(out, u),
        Number::Float(f) => put_f64(out, f),
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(NIL),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => put_int(out, *i),
        Value::UInt(u) => put_uint(out, *u),
        Value::Float(f) => put_f64(out, *f),
        Value::Str(s) => put_str(out, s),
        Value::Bytes(b) => {
            let n = put_len(out, b.len(), &BIN);
            out.extend_from_slice(b.get(..n).unwrap_or(b));
        }
        Value::List(items) => {
            let n = put_len(out, items.len(), &ARRAY);
            for item in items.iter().take(n) {
                put_value(out, item);
            }
        }
        Value::Map(entries) => {
            let n = put_map_header(out, entries.len());
            for (k, v) in entries.iter().take(n) {
                put_str(out, k);
                put_value(out, v);
            }
        }
    }
}

pub(crate) fn put_f64(out: &mut Vec<u8>, f: f64) {
    out.push(0xcb);
    out.extend_from_slice(&f.to_be_bytes());
}

/// msgpack-python's choice: positive fixint, then the narrowest of uint8..uint64.
pub(crate) fn put_uint(out: &mut Vec<u8>, u: u64) {
    if let Ok(b) = u8::try_from(u) {
        if b <= 0x7f {
            out.push(b);
        } else {
            out.extend_from_slice(&[0xcc, b]);
        }
    } else if let Ok(v) = u16::try_from(u) {
        out.push(0xcd);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(u) {
        out.push(0xce);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&u.to_be_bytes());
    }
}

/// msgpack-python packs non-negative ints as unsigned and negative ones as negative fixint
/// or the narrowest of int8..int64.
pub(crate) fn put_int(out: &mut Vec<u8>, i: i64) {
    if let Ok(u) = u64::try_from(i) {
        put_uint(out, u);
    } else if let Ok(v) = i8::try_from(i) {
        if v < -32 {
            out.push(0xd0);
        }
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = i16::try_from(i) {
        out.push(0xd1);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = i32::try_from(i) {
        out.push(0xd2);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    let n = put_len(out, s.len(), &STR);
    let Some(head) = s.as_bytes().get(..n) else {
        return;
    };
    out.extend_from_slice(head);
    // Only a text over 4 GiB gets here. msgpack cannot declare more, so it is cut, and
    // bytes of a cut character are replaced by spaces to keep the output valid UTF-8.
    if !s.is_char_boundary(n) {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(out.len() - (n - end));
        out.resize(out.len() + (n - end), b' ');
    }
}

fn put_map_header(out: &mut Vec<u8>, len: usize) -> usize {
    put_len(out, len, &MAP)
}

/// The length headers of one msgpack family.
struct LenFormat {
    /// Base marker and largest length of the fix form, if the family has one.
    fix: Option<(u8, u8)>,
    /// The 8-bit form, if the family has one.
    w8: Option<u8>,
    w16: u8,
    w32: u8,
}

const STR: LenFormat = LenFormat {
    fix: Some((0xa0, 31)),
    w8: Some(0xd9),
    w16: 0xda,
    w32: 0xdb,
};
const BIN: LenFormat = LenFormat {
    fix: None,
    w8: Some(0xc4),
    w16: 0xc5,
    w32: 0xc6,
};
const ARRAY: LenFormat = LenFormat {
    fix: Some((0x90, 15)),
    w8: None,
    w16: 0xdc,
    w32: 0xdd,
};
const MAP: LenFormat = LenFormat {
    fix: Some((0x80, 15)),
    w8: None,
    w16: 0xde,
    w32: 0xdf,
};

/// Writes the narrowest length header and returns the length it declares: `len`, unless
/// that exceeds what msgpack can express (`u32::MAX`).
fn put_len(out: &mut Vec<u8>, len: usize, f: &LenFormat) -> usize {
    match (
        f.fix,
        f.w8,
        u8::try_from(len),
        u16::try_from(len),
        u32::try_from(len),
    ) {
        (Some((base, max)), _, Ok(b), _, _) if b <= max => out.push(base | b),
        (_, Some(w8), Ok(b), _, _) => out.extend_from_slice(&[w8, b]),
        (_, _, _, Ok(v), _) => {
            out.push(f.w16);
            out.extend_from_slice(&v.to_be_bytes());
        }
        (_, _, _, _, Ok(v)) => {
            out.push(f.w32);
            out.extend_from_slice(&v.to_be_bytes());
        }
        (_, _, _, _, Err(_)) => {
            out.push(f.w32);
            out.extend_from_slice(&u32::MAX.to_be_bytes());
            return usize::try_from(u32::MAX).unwrap_or(len);
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use collector_sdk::codec::{BatchView, encode_batch};
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        match std::env::var_os("CEILOMETER_FIXTURES") {
            Some(dir) => PathBuf::from(dir),
            None => {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ceilometer")
            }
        }
    }

    fn read(rel: &str) -> Vec<u8> {
        let path = fixtures().join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every `NNN.msgpack` of a folder with its `expected.jsonl` line.
    fn datagrams(dir: &str) -> Vec<(String, Vec<u8>, serde_json::Value)> {
        let expected = String::from_utf8(read(&format!("{dir}/expected.jsonl"))).unwrap();
        let out: Vec<_> = expected
            .lines()
            .enumerate()
            .map(|(i, line)| {
                let name = format!("{dir}/{:03}.msgpack", i + 1);
                (
                    name.clone(),
                    read(&name),
                    serde_json::from_str(line).unwrap(),
                )
            })
            .collect();
        assert!(!out.is_empty(), "{dir} has no samples");
        out
    }

    fn to_json(s: &Sample) -> serde_json::Value {
        let batch = encode_batch(std::slice::from_ref(s));
        let view = BatchView::new(&batch).unwrap();
        let sample = view.iter().next().unwrap().unwrap();
        let mut json = Vec::new();
        collector_sdk::json::write_sample(&mut json, &sample);
        serde_json::from_slice(&json).unwrap()
    }

    fn encode(s: &Sample) -> Vec<u8> {
        let mut out = Vec::new();
        encode_sample(s, &mut out);
        out
    }

    fn sample_001() -> Sample {
        decode_sample(&read("udp/001.msgpack")).unwrap()
    }

    #[test]
    fn fixtures_decode_to_expected_dicts() {
        let mut count = 0;
        for dir in ["udp", "udp-unsigned"] {
            for (name, bytes, expected) in datagrams(dir) {
                let s = decode_sample(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(to_json(&s), expected, "{name}");
                count += 1;
            }
        }
        assert_eq!(count, 45);
    }

    #[test]
    fn fixtures_reencode_byte_for_byte() {
        for dir in ["udp", "udp-unsigned"] {
            for (name, bytes, _) in datagrams(dir) {
                let s = decode_sample(&bytes).unwrap();
                assert_eq!(encode(&s), bytes, "{name}");
            }
        }
    }

    #[test]
    fn bad_datagrams_are_rejected() {
        type Check = fn(&MsgpackError) -> bool;
        let cases: [(&str, Check); 7] = [
            ("udp-truncated.msgpack", |e| {
                matches!(e, MsgpackError::Malformed { .. })
            }),
            ("udp-not-map-array.msgpack", |e| {
                matches!(e, MsgpackError::NotAMap { found: "an array" })
            }),
            ("udp-not-map-int.msgpack", |e| {
                matches!(
                    e,
                    MsgpackError::NotAMap {
                        found: "an integer"
                    }
                )
            }),
            ("udp-missing-counter-name.msgpack", |e| {
                matches!(
                    e,
                    MsgpackError::Schema(SchemaError::Missing("counter_name"))
                )
            }),
            (
                "udp-counter-volume-string.msgpack",
                |e| matches!(e, MsgpackError::Schema(SchemaError::WrongType { key, .. }) if key == "counter_volume"),
            ),
            // Random bytes: whatever the first byte is, trailing bytes or bad structure.
            ("udp-random-70KiB.bin", |e| {
                matches!(e, MsgpackError::Malformed { .. })
            }),
            ("udp-random-65507.bin", |e| {
                matches!(e, MsgpackError::Malformed { .. })
            }),
        ];
        for (file, check) in cases {
            let err = decode_sample(&read(&format!("bad/{file}"))).expect_err(file);
            assert!(check(&err), "{file}: unexpected {err:?}");
        }
    }

    #[test]
    fn tampered_volume_is_well_formed() {
        // Only the signature check can catch this one: the decoder must hand it on intact.
        let s = decode_sample(&read("bad/udp-tampered-volume.msgpack")).unwrap();
        let good = sample_001();
        let Some(Number::Int(v)) = good.counter_volume else {
            panic!("001 has an int volume")
        };
        assert_eq!(s.counter_volume, Some(Number::Int(v + 1)));
        assert_eq!(s.message_signature, good.message_signature);
    }

    #[test]
    fn every_bad_udp_file_is_covered() {
        let mut names: Vec<String> = std::fs::read_dir(fixtures().join("bad"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("udp-"))
            .collect();
        names.sort();
        let mut rejected = 0;
        for name in &names {
            if decode_sample(&read(&format!("bad/{name}"))).is_err() {
                rejected += 1;
            }
        }
        // All but udp-tampered-volume, which is left to signature verification.
        assert_eq!((names.len(), rejected), (8, 7), "{names:?}");
    }

    #[test]
    fn every_truncation_fails() {
        let bytes = read("udp/001.msgpack");
        for len in 0..bytes.len() {
            let err = decode_sample(&bytes[..len]).expect_err("truncated datagram decoded");
            assert!(
                matches!(err, MsgpackError::Malformed { offset, .. } if offset <= len),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn byte_flips_never_panic() {
        let good = read("udp/007.msgpack");
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut decoded = 0;
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                let r = next();
                let i = (r >> 8) as usize % bytes.len();
                bytes[i] = match r % 3 {
                    0 => bytes[i] ^ (1 << ((r >> 40) % 8)),
                    1 => (r >> 16) as u8,
                    // Length and type markers are where decoders break.
                    _ => [
                        0xc1, 0xc7, 0xca, 0xcf, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff,
                    ][(r >> 24) as usize % 11],
                };
            }
            if let Ok(s) = decode_sample(&bytes) {
                decoded += 1;
                // A decodable mutant re-encodes and decodes to the same sample.
                assert_eq!(decode_sample(&encode(&s)).unwrap(), s);
            }
        }
        assert!(
            decoded > 0,
            "no mutant was decodable: the loop tests only errors"
        );
    }

    #[test]
    fn huge_declared_lengths_fail_fast() {
        for bytes in [
            &[0xdf, 0xff, 0xff, 0xff, 0xff][..],
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0],
            &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
            &[0xc6, 0xff, 0xff, 0xff, 0xff, 0],
            &[0x81, 0xa1, b'a', 0xdd, 0, 0, 0, 2, 0xc0],
        ] {
            assert!(
                matches!(decode_sample(bytes), Err(MsgpackError::Malformed { .. })),
                "{bytes:02x?}"
            );
        }
        // Nested arrays each claiming the rest of the datagram: the second one does not fit
        // beside the elements the first still owes.
        let mut bytes = vec![0x81, 0xa1, b'a', 0xdd, 0, 0, 0xff, 0, 0xdd, 0, 0, 0xff, 0];
        bytes.resize(0xff00 + 12, 0xc0);
        let err = decode_sample(&bytes).unwrap_err();
        assert!(
            matches!(err, MsgpackError::Malformed { offset: 8, .. }),
            "{err}"
        );
    }

    #[test]
    fn trailing_bytes_fail() {
        let mut bytes = read("udp/001.msgpack");
        bytes.push(0xc0);
        let err = decode_sample(&bytes).unwrap_err();
        assert!(
            matches!(err, MsgpackError::Malformed { offset: 1110, .. }),
            "{err}"
        );
        // A leading fixint followed by garbage is malformed, not merely "not a map".
        assert!(matches!(
            decode_sample(&[0x09, 0x01]),
            Err(MsgpackError::Malformed { offset: 1, .. })
        ));
        assert!(matches!(
            decode_sample(&[0x09]),
            Err(MsgpackError::NotAMap {
                found: "an integer"
            })
        ));
        assert!(matches!(
            decode_sample(&[]),
            Err(MsgpackError::Malformed { offset: 0, .. })
        ));
    }

    /// udp/001 with `(key, value bytes)` appended as an extra top-level key.
    fn with_extra(key: &[u8], value: &[u8]) -> Vec<u8> {
        let good = read("udp/001.msgpack");
        assert_eq!(good[0], 0x8f);
        let mut bytes = vec![0xde, 0, 16];
        bytes.extend_from_slice(&good[1..]);
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        bytes
    }

    fn extra_value(bytes: &[u8]) -> Result<Value, MsgpackError> {
        let s = decode_sample(bytes)?;
        assert_eq!(s.extra.len(), 1);
        Ok(s.extra.into_iter().next().unwrap().1)
    }

    #[test]
    fn every_scalar_width_decodes() {
        let cases: Vec<(Vec<u8>, Value)> = vec![
            (vec![0xc0], Value::Null),
            (vec![0xc2], Value::Bool(false)),
            (vec![0xc3], Value::Bool(true)),
            (vec![0x7f], Value::Int(127)),
            (vec![0xe0], Value::Int(-32)),
            (vec![0xff], Value::Int(-1)),
            (vec![0xcc, 0xff], Value::Int(255)),
            (vec![0xcd, 0xff, 0xff], Value::Int(65535)),
            (
                vec![0xce, 0xff, 0xff, 0xff, 0xff],
                Value::Int(4_294_967_295),
            ),
            (
                vec![0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                Value::Int(i64::MAX),
            ),
            (vec![0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0], Value::UInt(1 << 63)),
            (
                vec![0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                Value::UInt(u64::MAX),
            ),
            (vec![0xd0, 0x80], Value::Int(-128)),
            (vec![0xd0, 0x05], Value::Int(5)),
            (vec![0xd1, 0x80, 0x00], Value::Int(-32768)),
            (vec![0xd2, 0x80, 0, 0, 0], Value::Int(i64::from(i32::MIN))),
            (vec![0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], Value::Int(i64::MIN)),
            (
                vec![0xca, 0x3d, 0xcc, 0xcc, 0xcd],
                Value::Float(f64::from(0.1_f32)),
            ),
            (
                vec![0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a],
                Value::Float(0.1),
            ),
            (vec![0xa0], Value::Str(String::new())),
            (vec![0xd9, 2, 0xc3, 0xa9], Value::Str("é".into())),
            (vec![0xda, 0, 1, b'x'], Value::Str("x".into())),
            (vec![0xdb, 0, 0, 0, 1, b'x'], Value::Str("x".into())),
            (vec![0xc4, 2, 0xff, 0x00], Value::Bytes(vec![0xff, 0])),
            (vec![0xc5, 0, 0], Value::Bytes(vec![])),
            (vec![0xc6, 0, 0, 0, 1, 7], Value::Bytes(vec![7])),
            (vec![0x90], Value::List(vec![])),
            (
                vec![0xdc, 0, 2, 0x01, 0xc0],
                Value::List(vec![Value::Int(1), Value::Null]),
            ),
            (
                vec![0xdd, 0, 0, 0, 1, 0xc3],
                Value::List(vec![Value::Bool(true)]),
            ),
            (vec![0x80], Value::Map(vec![])),
            (
                vec![0xde, 0, 1, 0xa1, b'k', 0x01],
                Value::Map(vec![("k".into(), Value::Int(1))]),
            ),
            (
                vec![0xdf, 0, 0, 0, 1, 0xc4, 1, b'k', 0x02],
                Value::Map(vec![("k".into(), Value::Int(2))]),
            ),
        ];
        for (value, expected) in cases {
            let got = extra_value(&with_extra(b"\xa1x", &value))
                .unwrap_or_else(|e| panic!("{value:02x?}: {e}"));
            assert_eq!(got, expected, "{value:02x?}");
        }
    }

    #[test]
    fn key_types() {
        // Old packers' raw strings (str16/str32) and UTF-8 bin keys are accepted.
        for key in [
            &b"\xda\x00\x01x"[..],
            b"\xdb\x00\x00\x00\x01x",
            b"\xc4\x01x",
        ] {
            let s = decode_sample(&with_extra(key, b"\x01")).unwrap();
            assert_eq!(s.extra, vec![("x".to_owned(), Value::Int(1))]);
        }
        for key in [&b"\x01"[..], b"\xc0", b"\x90", b"\xc4\x01\xff", b"\xa1\xff"] {
            assert!(matches!(
                decode_sample(&with_extra(key, b"\x01")),
                Err(MsgpackError::Malformed { .. })
            ));
        }
        // Nested maps need string keys too.
        let err = decode_sample(&with_extra(b"\xa1x", b"\x81\x01\x01")).unwrap_err();
        assert!(
            matches!(
                err,
                MsgpackError::Malformed {
                    reason: "map key is not a string",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rejected_values() {
        for value in [
            &b"\xd4\x01\x00"[..],
            b"\xc7\x01\x01\x00",
            b"\xd8\x01",
            b"\xc1",
            b"\xa2\xc3\x28",
            b"\x91\xa1\x80",
        ] {
            let err = decode_sample(&with_extra(b"\xa1x", value)).unwrap_err();
            assert!(
                matches!(err, MsgpackError::Malformed { .. }),
                "{value:02x?}: {err}"
            );
        }
        // The offset names the first byte that is not UTF-8.
        let bytes = with_extra(b"\xa1x", b"\xa3ab\xff");
        let err = decode_sample(&bytes).unwrap_err();
        assert!(
            matches!(err, MsgpackError::Malformed { offset, .. } if offset == bytes.len() - 1),
            "{err}"
        );
    }

    #[test]
    fn depth_limit() {
        // The top-level map and 63 arrays make 64 levels; one more is refused.
        let nest = |levels: usize| {
            let mut v = vec![0x91; levels];
            v.push(0xc0);
            v
        };
        let v = extra_value(&with_extra(b"\xa1x", &nest(MAX_DEPTH - 1))).unwrap();
        assert!(matches!(v, Value::List(_)));
        let err = decode_sample(&with_extra(b"\xa1x", &nest(MAX_DEPTH))).unwrap_err();
        assert!(
            matches!(
                err,
                MsgpackError::Malformed {
                    reason: "containers nest too deeply",
                    ..
                }
            ),
            "{err}"
        );
        // The same limit holds while validating a top level that is not a map.
        let mut bytes = vec![0x91; MAX_DEPTH + 1];
        bytes.push(0xc0);
        assert!(matches!(
            decode_sample(&bytes),
            Err(MsgpackError::Malformed { .. })
        ));
        assert!(matches!(
            decode_sample(&bytes[1..]),
            Err(MsgpackError::NotAMap { .. })
        ));
    }

    #[test]
    fn encodes_like_msgpack_python() {
        let cases: Vec<(Value, Vec<u8>)> = vec![
            (Value::Int(0), vec![0x00]),
            (Value::Int(127), vec![0x7f]),
            (Value::Int(128), vec![0xcc, 0x80]),
            (Value::Int(255), vec![0xcc, 0xff]),
            (Value::Int(256), vec![0xcd, 0x01, 0x00]),
            (Value::Int(65536), vec![0xce, 0, 1, 0, 0]),
            (Value::Int(1 << 32), vec![0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
            (Value::Int(-1), vec![0xff]),
            (Value::Int(-32), vec![0xe0]),
            (Value::Int(-33), vec![0xd0, 0xdf]),
            (Value::Int(-128), vec![0xd0, 0x80]),
            (Value::Int(-129), vec![0xd1, 0xff, 0x7f]),
            (Value::Int(-32769), vec![0xd2, 0xff, 0xff, 0x7f, 0xff]),
            (Value::Int(i64::MIN), vec![0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            (
                Value::UInt(u64::MAX),
                vec![0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (Value::UInt(5), vec![0x05]),
            (Value::Float(1.0), vec![0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
            (
                Value::Str("a".repeat(31)),
                [&[0xbf][..], &[b'a'; 31]].concat(),
            ),
            (
                Value::Str("a".repeat(32)),
                [&[0xd9, 32][..], &[b'a'; 32]].concat(),
            ),
            (
                Value::Str("a".repeat(256)),
                [&[0xda, 1, 0][..], &[b'a'; 256]].concat(),
            ),
            (
                Value::Str("a".repeat(65536)),
                [&[0xdb, 0, 1, 0, 0][..], &[b'a'; 65536]].concat(),
            ),
            (Value::Bytes(vec![]), vec![0xc4, 0]),
            (
                Value::Bytes(vec![0; 256]),
                [&[0xc5, 1, 0][..], &[0; 256]].concat(),
            ),
            (
                Value::List(vec![Value::Null; 15]),
                [&[0x9f][..], &[0xc0; 15]].concat(),
            ),
            (
                Value::List(vec![Value::Null; 16]),
                [&[0xdc, 0, 16][..], &[0xc0; 16]].concat(),
            ),
            (
                Value::List(vec![Value::Null; 65536]),
                [&[0xdd, 0, 1, 0, 0][..], &[0xc0; 65536]].concat(),
            ),
            (
                Value::Map(vec![("k".into(), Value::Bool(true))]),
                vec![0x81, 0xa1, b'k', 0xc3],
            ),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            put_value(&mut out, &value);
            assert_eq!(out, expected, "{value:?}");
        }
        let mut map = Vec::new();
        put_value(&mut map, &Value::Map(vec![("k".into(), Value::Null); 16]));
        assert_eq!(map[..3], [0xde, 0, 16]);
    }

    #[test]
    fn absent_fields_and_extras_round_trip() {
        let mut s = sample_001();
        s.user_name = Field::Absent;
        s.project_id = Field::Null;
        s.resource_metadata = None;
        s.monotonic_time = Field::Null;
        s.message_signature = None;
        s.counter_volume = None;
        s.extra = vec![
            ("publisher_id".into(), Value::Str("vm".into())),
            ("z".into(), Value::Bytes(vec![0xff])),
        ];
        let bytes = encode(&s);
        // 8 required keys, user_id, project_id, project_name, monotonic_time, 2 extras.
        assert_eq!(bytes[0], 0x80 | 14);
        assert_eq!(decode_sample(&bytes).unwrap(), s);
    }
}

//! Ceilometer-compatible sample signatures (`ceilometer.publisher.utils.compute_signature`).
//!
//! HMAC-SHA256 over the per-level sorted, flattened `(name, str(value))` pairs, byte-exact with Python 3.

use collector_sdk::model::{Field, Number, Sample, Value};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt::Write as _;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Nesting (maps and lists) beyond which a sample is not verified. Python would
/// hit its recursion limit somewhat deeper; no real metadata comes close, and the
/// limit keeps a hostile datagram from overflowing the stack here.
pub(crate) const MAX_DEPTH: usize = 128;

/// A secret prepared once, for signing or verifying many samples.
///
/// Keying HMAC costs two SHA-256 blocks; cloning the keyed state per sample avoids that.
#[derive(Clone)]
pub struct Signer {
    /// `None` when the secret is empty (no signing, no verification).
    mac: Option<HmacSha256>,
    /// The secret was not empty: fail closed even if keying failed.
    enabled: bool,
}

impl Signer {
    /// Prepares `secret` (the UTF-8 bytes of `[publisher] telemetry_secret`).
    pub fn new(secret: &[u8]) -> Self {
        let enabled = !secret.is_empty();
        // HMAC takes keys of any length, so this never fails in practice.
        let mac = if enabled {
            HmacSha256::new_from_slice(secret).ok()
        } else {
            None
        };
        Signer { mac, enabled }
    }

    /// True when a secret is set, i.e. when [`Signer::verify`] checks anything.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The signature Ceilometer would put in `message_signature` (64 lower-case hex
    /// digits), or `""` when the secret is empty.
    ///
    /// A `bin` value inside a list that is not UTF-8 makes Python raise; here it is
    /// hashed as lossy text instead, and [`Signer::verify`] rejects such a sample.
    pub fn compute(&self, sample: &Sample) -> String {
        match self.digest(sample) {
            Some((digest, _)) => {
                let hex = hex(&digest);
                hex.iter().map(|&b| char::from(b)).collect()
            }
            None => String::new(),
        }
    }

    /// Ceilometer's `verify_signature`: true when the secret is empty, else a
    /// constant-time comparison with `message_signature` (absent counts as `""`).
    pub fn verify(&self, sample: &Sample) -> bool {
        if !self.enabled {
            return true;
        }
        let Some((digest, exact)) = self.digest(sample) else {
            return false;
        };
        let expected = sample.message_signature.as_deref().unwrap_or("");
        exact && constant_time_eq(&hex(&digest), expected.as_bytes())
    }

    /// The keyed HMAC state to clone per sample; `None` when the secret is
    /// empty or keying failed (check [`Signer::is_enabled`] to tell them apart).
    pub(crate) fn keyed(&self) -> Option<HmacSha256> {
        self.mac.clone()
    }

    /// The raw digest and whether Python could have computed it (no undecodable bytes).
    fn digest(&self, sample: &Sample) -> Option<([u8; 32], bool)> {
        let mut mac = self.mac.clone()?;
        let mut walker = Walker::new(MacSink(&mut mac));
        walker.sample(sample);
        let exact = walker.exact;
        Some((mac.finalize().into_bytes().into(), exact))
    }
}

/// `compute_signature(sample, secret)`: lower-case hex, `""` for an empty secret.
pub fn compute(sample: &Sample, secret: &[u8]) -> String {
    Signer::new(secret).compute(sample)
}

/// `verify_signature(sample, secret)`: true for an empty secret, else whether
/// `message_signature` matches (constant time).
pub fn verify(sample: &Sample, secret: &[u8]) -> bool {
    Signer::new(secret).verify(sample)
}

pub(crate) fn hex(digest: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

/// Compares without an early exit (`subtle`), so the time does not tell how many
/// leading bytes of a forged signature were right. Lengths are public (always 64).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    // Every byte's difference folded into one, then one constant-time test:
    // `subtle`'s slice comparison hides each byte from the optimiser (a
    // barrier per byte), which costs more than the HMAC's last block.
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    a.len() == b.len() && bool::from(diff.ct_eq(&0))
}

/// Receives the flattened pairs in hashing order.
trait Sink {
    fn pair(&mut self, name: &Path<'_>, value: &[u8]);
}

struct MacSink<'m>(&'m mut HmacSha256);

impl Sink for MacSink<'_> {
    fn pair(&mut self, name: &Path<'_>, value: &[u8]) {
        // `update("a:b")` equals `update("a"); update(":"); update("b")`, so the
        // joined name never has to be built.
        name.feed(self.0);
        self.0.update(value);
    }
}

/// A flattened name (`outer:inner`) as a chain of stack frames, not a String.
pub(crate) struct Path<'p> {
    pub(crate) parent: Option<&'p Path<'p>>,
    /// A key: UTF-8 (checked by the decoder that found it).
    pub(crate) name: &'p [u8],
}

impl Path<'_> {
    pub(crate) fn feed(&self, mac: &mut HmacSha256) {
        if let Some(parent) = self.parent {
            parent.feed(mac);
            mac.update(b":");
        }
        mac.update(self.name);
    }

    fn is_top(&self, name: &str) -> bool {
        self.parent.is_none() && self.name == name.as_bytes()
    }
}

/// A top-level or nested value before rendering.
#[derive(Clone, Copy)]
pub(crate) enum Item<'a> {
    Str(&'a str),
    Null,
    Num(Number),
    Value(&'a Value),
}

/// Walks a sample the way `recursive_keypairs` does.
struct Walker<'a, S> {
    sink: S,
    /// Every level's `(key, item)` pairs, deeper levels pushed after (and popped
    /// before) their parent's, so one allocation serves the whole sample.
    stack: Vec<(&'a str, Item<'a>)>,
    /// Reused for number, bytes and list text.
    scratch: String,
    /// False once a value was met that Python would raise on (undecodable bytes
    /// in a list) or that is nested deeper than [`MAX_DEPTH`].
    exact: bool,
}

impl<'a, S: Sink> Walker<'a, S> {
    fn new(sink: S) -> Self {
        Walker {
            sink,
            stack: Vec::with_capacity(32),
            scratch: String::new(),
            exact: true,
        }
    }

    fn sample(&mut self, s: &'a Sample) {
        let st = &mut self.stack;
        let text = |key, field: &'a Field<String>| match field {
            Field::Absent => None,
            Field::Null => Some((key, Item::Null)),
            Field::Value(v) => Some((key, Item::Str(v))),
        };
        // The known keys in byte order, so that the sort below finds them in
        // place (checked in debug builds). The extras come after them, as
        // before: an extra that repeats a known key (only a sample built by
        // hand has one) is still the value kept.
        st.push(("counter_name", Item::Str(&s.counter_name)));
        st.push(("counter_type", Item::Str(&s.counter_type)));
        st.push(("counter_unit", Item::Str(&s.counter_unit)));
        st.push((
            "counter_volume",
            s.counter_volume.map_or(Item::Null, Item::Num),
        ));
        st.push(("message_id", Item::Str(&s.message_id)));
        // message_signature is never hashed, so it is not even pushed.
        match s.monotonic_time {
            Field::Absent => {}
            Field::Null => st.push(("monotonic_time", Item::Null)),
            Field::Value(n) => st.push(("monotonic_time", Item::Num(n))),
        }
        st.extend(text("project_id", &s.project_id));
        st.extend(text("project_name", &s.project_name));
        st.push(("resource_id", Item::Str(&s.resource_id)));
        if let Some(md) = &s.resource_metadata {
            st.push(("resource_metadata", Item::Value(md)));
        }
        st.push(("source", Item::Str(&s.source)));
        st.push(("timestamp", Item::Str(&s.timestamp)));
        st.extend(text("user_id", &s.user_id));
        st.extend(text("user_name", &s.user_name));
        debug_assert!(st.is_sorted_by(|a, b| a.0 < b.0));
        for (k, v) in &s.extra {
            st.push((k, Item::Value(v)));
        }
        self.level(None, 0, 0);
    }

    /// Emits the pairs of the level `stack[start..]` in sorted order, then pops it.
    fn level(&mut self, parent: Option<&Path<'_>>, start: usize, depth: usize) {
        // Stable, so that of two equal keys the later one is last: a Python dict
        // built from the same entries keeps only the last value.
        self.stack[start..].sort_by(|a, b| a.0.cmp(b.0));
        let end = self.stack.len();
        for i in start..end {
            let (name, item) = self.stack[i];
            if i + 1 < end && self.stack[i + 1].0 == name {
                continue;
            }
            let path = Path {
                parent,
                name: name.as_bytes(),
            };
            if path.is_top("message_signature") {
                continue;
            }
            match item {
                Item::Value(Value::Map(_)) if depth >= MAX_DEPTH => self.exact = false,
                Item::Value(Value::Map(entries)) => {
                    let child = self.stack.len();
                    self.stack
                        .extend(entries.iter().map(|(k, v)| (k.as_str(), Item::Value(v))));
                    self.level(Some(&path), child, depth + 1);
                }
                Item::Str(s) => self.sink.pair(&path, s.as_bytes()),
                Item::Value(Value::Str(s)) => self.sink.pair(&path, s.as_bytes()),
                Item::Null | Item::Value(Value::Null) => self.sink.pair(&path, b"None"),
                Item::Value(Value::Bool(true)) => self.sink.pair(&path, b"True"),
                Item::Value(Value::Bool(false)) => self.sink.pair(&path, b"False"),
                Item::Num(n) => {
                    self.scratch.clear();
                    push_number(&mut self.scratch, n);
                    self.sink.pair(&path, self.scratch.as_bytes());
                }
                Item::Value(v) => {
                    self.scratch.clear();
                    if !push_repr(&mut self.scratch, &mut self.stack, v, false, depth) {
                        self.exact = false;
                    }
                    self.sink.pair(&path, self.scratch.as_bytes());
                }
            }
        }
        self.stack.truncate(start);
    }
}

pub(crate) fn push_number(out: &mut String, n: Number) {
    match n {
        Number::Int(i) => push_i64(out, i),
        Number::UInt(u) => push_u64(out, u),
        Number::Float(f) => python_float_repr(f, out),
    }
}

/// Appends Python 3 `str(v)` of a value as `recursive_keypairs` yields it: lists
/// after `decode_unicode` (text becomes `bytes`, `bytes` becomes text, dict keys
/// sorted). `in_list` tells whether `decode_unicode` has been applied.
///
/// Returns false when Python would have raised (undecodable `bytes` in a list).
pub(crate) fn push_repr<'a>(
    out: &mut String,
    stack: &mut Vec<(&'a str, Item<'a>)>,
    v: &'a Value,
    in_list: bool,
    depth: usize,
) -> bool {
    match v {
        Value::List(_) | Value::Map(_) if depth >= MAX_DEPTH => {
            out.push_str("...");
            return false;
        }
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(i) => push_i64(out, *i),
        Value::UInt(u) => push_u64(out, *u),
        Value::Float(f) => python_float_repr(*f, out),
        Value::Str(s) if in_list => push_bytes_repr(out, s.as_bytes()),
        Value::Str(s) => out.push_str(s),
        Value::Bytes(b) if in_list => match std::str::from_utf8(b) {
            Ok(s) => push_str_repr(out, s),
            Err(_) => {
                push_str_repr(out, &String::from_utf8_lossy(b));
                return false;
            }
        },
        Value::Bytes(b) => push_bytes_repr(out, b),
        Value::List(items) => {
            let mut ok = true;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                ok &= push_repr(out, stack, item, true, depth + 1);
            }
            out.push(']');
            return ok;
        }
        Value::Map(entries) => {
            // Only reached inside a list (the walker descends into other maps).
            let start = stack.len();
            stack.extend(entries.iter().map(|(k, v)| (k.as_str(), Item::Value(v))));
            stack[start..].sort_by(|a, b| a.0.cmp(b.0));
            let end = stack.len();
            let mut ok = true;
            let mut first = true;
            out.push('{');
            for i in start..end {
                let (key, item) = stack[i];
                if i + 1 < end && stack[i + 1].0 == key {
                    continue;
                }
                if !first {
                    out.push_str(", ");
                }
                first = false;
                push_bytes_repr(out, key.as_bytes());
                out.push_str(": ");
                if let Item::Value(v) = item {
                    ok &= push_repr(out, stack, v, true, depth + 1);
                }
            }
            out.push('}');
            stack.truncate(start);
            return ok;
        }
    }
    true
}

pub(crate) fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Python's `str(n)`.
pub(crate) fn push_i64(out: &mut String, n: i64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Python's quote choice: `'` unless the text has a `'` and no `"`.
fn quote_for(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double { '"' } else { '\'' }
}

/// Appends Python 3 `repr(bytes)`: `b'...'` with `\\`, `\'`, `\t`, `\n`, `\r`
/// and `\xNN` for every other byte outside printable ASCII.
fn push_bytes_repr(out: &mut String, b: &[u8]) {
    let quote = quote_for(b.contains(&b'\''), b.contains(&b'"'));
    out.push('b');
    out.push(quote);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => {
                if char::from(c) == quote {
                    out.push('\\');
                }
                out.push(char::from(c));
            }
            _ => push_hex_escape(out, 'x', u32::from(c), 2),
        }
    }
    out.push(quote);
}

/// Appends Python 3 `repr(str)`: like bytes, without the `b`, and with
/// non-ASCII characters kept unless Python deems them unprintable.
fn push_str_repr(out: &mut String, s: &str) {
    let quote = quote_for(s.contains('\''), s.contains('"'));
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => {
                if c == quote {
                    out.push('\\');
                }
                out.push(c);
            }
            _ if !c.is_ascii() && py_printable(c) => out.push(c),
            _ => {
                let cp = u32::from(c);
                match cp {
                    0..=0xff => push_hex_escape(out, 'x', cp, 2),
                    0x100..=0xffff => push_hex_escape(out, 'u', cp, 4),
                    _ => push_hex_escape(out, 'U', cp, 8),
                }
            }
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable` for non-ASCII characters, from the separator, control,
/// format and private-use ranges; unassigned code points count as printable, since
/// the full Unicode tables are not worth carrying for `bin` values inside lists.
/// Agrees with Python 3.11 (Unicode 14) on every assigned code point.
fn py_printable(c: char) -> bool {
    !matches!(
        u32::from(c),
        0x80..=0xa0
            | 0xad
            | 0x600..=0x605
            | 0x61c
            | 0x6dd
            | 0x70f
            | 0x890..=0x891
            | 0x8e2
            | 0x1680
            | 0x180e
            | 0x2000..=0x200f
            | 0x2028..=0x202f
            | 0x205f..=0x2064
            | 0x2066..=0x206f
            | 0x3000
            | 0xe000..=0xf8ff
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0xfffe..=0xffff
            | 0x110bd
            | 0x110cd
            | 0x13430..=0x1343f
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0001
            | 0xe0020..=0xe007f
            | 0xf0000..
    )
}

fn push_hex_escape(out: &mut String, kind: char, cp: u32, width: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push(kind);
    for shift in (0..width).rev() {
        out.push(char::from(DIGITS[((cp >> (4 * shift)) & 0xf) as usize]));
    }
}

/// Appends Python's `repr(f)` (equal to `str(f)` in Python 3): the shortest
/// round-trip digits, fixed notation when `1e-4 <= |f| < 1e16`, else `1.5e+300`.
pub fn python_float_repr(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f < 0.0 { "-inf" } else { "inf" });
        return;
    }
    let (negative, mut buf, n, exp) = shortest_digits(f);
    let n = round_half_even(f, &mut buf[..n], exp);
    let digits = &buf[..n];

    if negative {
        out.push('-');
    }
    // The digits are ASCII.
    let push =
        |out: &mut String, ds: &[u8]| out.push_str(std::str::from_utf8(ds).unwrap_or_default());
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            push(out, digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() > int_len {
                push(out, &digits[..int_len]);
                out.push('.');
                push(out, &digits[int_len..]);
            } else {
                push(out, digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            }
        }
    } else {
        push(out, &digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            push(out, &digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        push_u64(out, u64::from(abs));
    }
}

/// The shortest digits that read back as `f` (finite), without leading or
/// trailing zeros, and the scientific exponent of the first: `(negative,
/// digits, how many, exponent)`. zmij (Schubfach, what serde_json uses) writes
/// them about three times faster than `{:e}`; only its layout (`12.5`,
/// `0.001`, `1.5e+20`) is undone here. Zero is the digit `0` at exponent 0.
fn shortest_digits(f: f64) -> (bool, [u8; 24], usize, i32) {
    let mut text = zmij::Buffer::new();
    let text = text.format_finite(f).as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let e_at = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    let (mantissa, exp_text) = text.split_at(e_at);
    let point = mantissa
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(mantissa.len());
    let mut buf = [0u8; 24];
    let mut n = 0;
    // The exponent of the first digit written, before leading zeros go.
    let mut exp = point as i32 - 1 + parse_exp(exp_text.get(1..).unwrap_or_default());
    for &b in mantissa.iter().filter(|b| b.is_ascii_digit()) {
        if n == 0 && b == b'0' {
            exp -= 1;
            continue;
        }
        if n < buf.len() {
            buf[n] = b;
            n += 1;
        }
    }
    while n > 1 && buf[n - 1] == b'0' {
        n -= 1;
    }
    if n == 0 {
        buf[0] = b'0';
        return (negative, buf, 1, 0);
    }
    (negative, buf, n, exp)
}

/// Python's repr (David Gay's dtoa) breaks an exact tie between two shortest
/// candidates towards the even last digit, while Rust's `{:e}` rounds it up:
/// 1690060720831323.25 is `...23.2` in Python and `...23.3` in Rust. Fixes
/// `digits` (the shortest digits, scientific exponent `exp`) in place and
/// returns how many digits remain.
fn round_half_even(f: f64, digits: &mut [u8], exp: i32) -> usize {
    let n = digits.len();
    if n > 17 {
        return n;
    }
    let d = digits
        .iter()
        .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
    // An even last digit is what Python picks in a tie too.
    if d % 2 == 0 {
        return n;
    }
    let Some((m, k)) = odd_mantissa(f) else {
        return n;
    };
    // The candidates are d·10^(q+1) and its neighbours; their midpoints are
    // (10d ± 5)·10^q.
    let q = exp - n as i32;
    let candidate = if is_exactly(m, k, 10 * d - 5, q) {
        d - 1
    } else if is_exactly(m, k, 10 * d + 5, q) {
        d + 1
    } else {
        return n;
    };
    // Same length, and a string that reads back as `f` (near a power of two the
    // lower neighbour can fall outside the rounding interval).
    if candidate < 10u64.pow(n as u32 - 1) || candidate >= 10u64.pow(n as u32) {
        return n;
    }
    let mut text = StackBuf::default();
    if write!(text, "{candidate}e{q}", q = q + 1).is_err()
        || std::str::from_utf8(text.as_bytes())
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            != Some(f.abs())
    {
        return n;
    }
    let mut rest = candidate;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // A trailing zero would mean a shorter string existed; drop it regardless.
    let mut len = n;
    while len > 1 && digits[len - 1] == b'0' {
        len -= 1;
    }
    len
}

/// `|f|` as `m·2^k` with `m` odd; `None` for zero.
fn odd_mantissa(f: f64) -> Option<(u64, i32)> {
    let bits = f.abs().to_bits();
    let biased = (bits >> 52) as i32;
    let frac = bits & ((1 << 52) - 1);
    let (m, k) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1 << 52), biased - 1075)
    };
    if m == 0 {
        return None;
    }
    let tz = m.trailing_zeros();
    Some((m >> tz, k + tz as i32))
}

/// Whether `m·2^k` (`m` odd) equals `t·10^q` (`t` odd) exactly: both sides must
/// have the same power of two, and the odd parts `m` and `t·5^q` must agree.
fn is_exactly(m: u64, k: i32, t: u64, q: i32) -> bool {
    if k != q {
        return false;
    }
    let five = |e: u32, x: u64| {
        5u128
            .checked_pow(e)
            .and_then(|p| p.checked_mul(u128::from(x)))
    };
    if q >= 0 {
        five(q.unsigned_abs(), t) == Some(u128::from(m))
    } else {
        five(q.unsigned_abs(), m) == Some(u128::from(t))
    }
}

fn parse_exp(text: &[u8]) -> i32 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let magnitude = digits.iter().fold(0i32, |acc, &b| {
        acc * 10 + i32::from(b.wrapping_sub(b'0') % 10)
    });
    if negative { -magnitude } else { magnitude }
}

/// A fixed buffer for `{:e}` output, so float rendering does not allocate.
#[derive(Default)]
struct StackBuf {
    buf: [u8; 32],
    len: usize,
}

impl StackBuf {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The `(name, value text)` pairs fed to the HMAC, for comparing with
/// `signature-inputs.jsonl`.
#[cfg(test)]
fn pairs(sample: &Sample) -> Vec<(String, String)> {
    struct Collect(Vec<(String, String)>);
    impl Sink for Collect {
        fn pair(&mut self, name: &Path<'_>, value: &[u8]) {
            fn join(p: &Path<'_>, out: &mut String) {
                if let Some(parent) = p.parent {
                    join(parent, out);
                    out.push(':');
                }
                out.push_str(&String::from_utf8_lossy(p.name));
            }
            let mut n = String::new();
            join(name, &mut n);
            self.0
                .push((n, String::from_utf8_lossy(value).into_owned()));
        }
    }
    let mut walker = Walker::new(Collect(Vec::new()));
    walker.sample(sample);
    walker.sink.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::sample_from_json;
    use serde_json::Value as Json;
    use std::path::PathBuf;

    /// Ceilometer's captured fixtures, kept in the repository (tests/fixtures/ceilometer).
    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ceilometer")
    }

    fn jsonl(rel: &str) -> Vec<Json> {
        let path = fixtures().join(rel);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        text.lines()
            .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
            .collect()
    }

    fn text<'j>(j: &'j Json, key: &str) -> &'j str {
        j[key]
            .as_str()
            .unwrap_or_else(|| panic!("`{key}` is not a string"))
    }

    struct Vector {
        name: String,
        sample: Sample,
        secret: String,
        signature: String,
    }

    fn vectors() -> Vec<Vector> {
        let vs: Vec<Vector> = jsonl("signature-vectors.jsonl")
            .into_iter()
            .map(|j| Vector {
                name: text(&j, "name").to_owned(),
                secret: text(&j, "secret").to_owned(),
                signature: text(&j, "signature").to_owned(),
                sample: sample_from_json(j["sample"].clone()).expect("vector sample"),
            })
            .collect();
        assert_eq!(vs.len(), 20);
        vs
    }

    fn repr(f: f64) -> String {
        let mut s = String::new();
        python_float_repr(f, &mut s);
        s
    }

    #[test]
    fn float_repr_matches_python() {
        let cases: &[(f64, &str)] = &[
            (1e-05, "1e-05"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (512.0, "512.0"),
            (-1.5, "-1.5"),
            (1.0 / 3.0, "0.3333333333333333"),
            (9007199254740992.0, "9007199254740992.0"),
            (1000.486141, "1000.486141"),
            (1234.5e10, "12345000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (0.00012345, "0.00012345"),
            (1.2345e-5, "1.2345e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1.25e100, "1.25e+100"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            // Exact ties between two shortest candidates go to the even digit
            // (written as sums: the literals are exactly the ties).
            (1_690_060_720_831_323.0 + 0.25, "1690060720831323.2"),
            (-1_006_567_402_717_677.0 - 0.25, "-1006567402717677.2"),
            (233_115_890_514_796.0 + 0.125, "233115890514796.12"),
            (-163_559_682_789_802.0 - 0.625, "-163559682789802.62"),
            (2.5, "2.5"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for &(f, want) in cases {
            assert_eq!(repr(f), want, "repr of {f:e}");
        }
    }

    /// The digits and exponent `{:e}` gives (shortest round trip, as zmij's;
    /// a tie rounded up), the way this module read them before zmij.
    fn digits_by_fmt(f: f64) -> (bool, String, i32) {
        let text = format!("{f:e}");
        let (negative, text) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        };
        let (mantissa, exp) = text.split_once('e').expect("{:e} has an exponent");
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        (negative, digits, exp.parse().expect("exponent"))
    }

    #[test]
    fn shortest_digits_agree_with_fmt_on_every_kind_of_float() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut floats: Vec<f64> = (0..200_000).map(|_| f64::from_bits(next())).collect();
        // Values as metering writes them: short decimals, integers, fractions.
        floats.extend((0..100_000).map(|i| f64::from(i) / 1000.0 + 1000.0));
        floats.extend((0..100_000).map(|i| (next() % 1_000_000) as f64 / 64.0 + f64::from(i)));
        floats.extend((-400..400).map(|e| 10f64.powi(e)));
        floats.extend([
            0.0,
            -0.0,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            1e16,
            1e15,
            0.0001,
        ]);
        floats.retain(|f| f.is_finite());
        // Python's ties to even are applied to both (where `{:e}` rounds a tie
        // up and zmij to even, that fix-up makes them agree).
        let tie_fixed = |f: f64, mut digits: Vec<u8>, exp: i32| {
            let n = round_half_even(f, &mut digits, exp);
            String::from_utf8(digits[..n].to_vec()).expect("digits are ASCII")
        };
        for f in floats {
            let (negative, buf, n, exp) = shortest_digits(f);
            let (fmt_negative, fmt_digits, fmt_exp) = digits_by_fmt(f);
            assert_eq!(
                (negative, tie_fixed(f, buf[..n].to_vec(), exp), exp),
                (
                    fmt_negative,
                    tie_fixed(f, fmt_digits.into_bytes(), fmt_exp),
                    fmt_exp
                ),
                "{f:e} ({:#x})",
                f.to_bits()
            );
        }
    }

    #[test]
    fn all_vectors_verify() {
        for v in vectors() {
            let secret = v.secret.as_bytes();
            assert_eq!(compute(&v.sample, secret), v.signature, "{}", v.name);
            assert_eq!(
                v.sample.message_signature.as_deref(),
                Some(v.signature.as_str()),
                "{}",
                v.name
            );
            assert!(verify(&v.sample, secret), "{}", v.name);
        }
    }

    #[test]
    fn pair_stream_matches_signature_inputs() {
        let inputs = jsonl("signature-inputs.jsonl");
        let vectors = vectors();
        assert_eq!(inputs.len(), vectors.len());
        for (input, v) in inputs.iter().zip(&vectors) {
            assert_eq!(text(input, "name"), v.name);
            let want: Vec<(String, String)> = input["pairs"]
                .as_array()
                .expect("pairs")
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().expect("name").to_owned(),
                        p[1].as_str().expect("value").to_owned(),
                    )
                })
                .collect();
            // The empty-secret vector (hmac_computed false) lists the pairs
            // that a secret would have hashed, so it is compared too.
            assert_eq!(
                input["hmac_computed"] == Json::Bool(false),
                v.secret.is_empty(),
                "{}",
                v.name
            );
            assert_eq!(pairs(&v.sample), want, "{}", v.name);
        }
    }

    #[test]
    fn tampering_fails() {
        let secret = b"fixture-secret";
        for v in vectors().into_iter().filter(|v| !v.secret.is_empty()) {
            let secret = v.secret.as_bytes();
            let mut s = v.sample.clone();
            s.counter_volume = match s.counter_volume {
                Some(Number::Int(i)) => Some(Number::Int(i.wrapping_add(1))),
                Some(Number::UInt(u)) => Some(Number::UInt(u.wrapping_add(1))),
                // `+ 1.0` would not change 1e16.
                Some(Number::Float(f)) => Some(Number::Float(f * 2.0 + 1.0)),
                None => Some(Number::Int(0)),
            };
            assert!(!verify(&s, secret), "{}: volume + 1", v.name);

            let mut s = v.sample.clone();
            s.resource_id.push('x');
            assert!(!verify(&s, secret), "{}: resource_id", v.name);

            let mut s = v.sample.clone();
            s.message_signature = None;
            assert!(!verify(&s, secret), "{}: no signature", v.name);
        }
        let mut s = vectors().swap_remove(0).sample;
        assert!(verify(&s, secret));
        if let Some(Value::Map(md)) = &mut s.resource_metadata
            && let Some((_, Value::Str(name))) = md.iter_mut().find(|(k, _)| k == "display_name")
        {
            name.push('!');
        } else {
            panic!("vector 1 has resource_metadata.display_name");
        }
        assert!(!verify(&s, secret));
        // Int and float with the same value hash differently.
        let mut s = vectors().swap_remove(0).sample;
        if let Some(Number::Int(i)) = s.counter_volume {
            s.counter_volume = Some(Number::Float(i as f64));
        }
        assert!(!verify(&s, secret));
    }

    #[test]
    fn empty_secret() {
        let mut s = vectors().swap_remove(0).sample;
        assert_eq!(compute(&s, b""), "");
        s.message_signature = Some("garbage".into());
        assert!(verify(&s, b""));
        s.message_signature = None;
        assert!(verify(&s, b""));
        assert!(!Signer::new(b"").is_enabled());
        assert!(Signer::new(b"x").is_enabled());
    }

    #[test]
    fn udp_expected_verifies() {
        let lines = jsonl("udp/expected.jsonl");
        assert_eq!(lines.len(), 40);
        let signer = Signer::new(b"fixture-secret");
        for (i, line) in lines.into_iter().enumerate() {
            let s = sample_from_json(line).expect("sample");
            assert!(signer.verify(&s), "udp line {}", i + 1);
        }
    }

    #[test]
    fn other_signed_sets_verify_and_unsigned_fails() {
        let signer = Signer::new(b"fixture-secret");
        for set in ["notification", "rpc"] {
            for (i, line) in jsonl(&format!("{set}/expected.jsonl"))
                .into_iter()
                .enumerate()
            {
                let s = sample_from_json(line).expect("sample");
                assert!(signer.verify(&s), "{set} line {}", i + 1);
            }
        }
        for line in jsonl("udp-unsigned/expected.jsonl") {
            let s = sample_from_json(line).expect("sample");
            assert_eq!(s.message_signature.as_deref(), Some(""));
            assert!(!signer.verify(&s));
            assert!(verify(&s, b""));
        }
    }

    #[test]
    fn readme_reference_example() {
        // REFERENCE.md 1.8: a plain dict with a nested dict, default secret.
        let s = sample_from_json(serde_json::json!({
            "counter_name": "cpu", "counter_type": "cumulative", "counter_unit": "ns",
            "counter_volume": 1234567890u64,
            "message_id": "00000000-0000-0000-0000-000000000001",
            "monotonic_time": null, "project_id": "p1", "project_name": null,
            "resource_id": "r1",
            "resource_metadata": {"flavor": {"name": "m1.small", "vcpus": 1},
                "host": "compute1", "ok": true, "ratio": 0.5, "tags": ["a", "b"], "tiny": 1e-05},
            "source": "openstack", "timestamp": "2024-01-01T00:00:00.000000",
            "user_id": "u1", "user_name": null,
        }))
        .expect("sample");
        assert_eq!(
            compute(&s, b"change this for valid signing"),
            "52c6590bba163b3e80dadeb706d1458b26e2ddb43ac4fefcac0e206de75dd5fa"
        );
    }

    fn with_metadata(md: Value) -> Sample {
        let mut s = vectors().swap_remove(0).sample;
        s.resource_metadata = Some(md);
        s
    }

    fn metadata_pairs(md: Value) -> Vec<(String, String)> {
        pairs(&with_metadata(md))
            .into_iter()
            .filter(|(n, _)| n.starts_with("resource_metadata"))
            .collect()
    }

    fn p(n: &str, v: &str) -> (String, String) {
        (n.to_owned(), v.to_owned())
    }

    #[test]
    fn rendering_edge_cases() {
        let md = Value::Map(vec![
            ("raw".into(), Value::Bytes(b"it's\x00\xff".to_vec())),
            (
                "list".into(),
                Value::List(vec![
                    Value::Bytes("é'\u{a0}\u{1f680}\u{85}".as_bytes().to_vec()),
                    Value::UInt(u64::MAX),
                    Value::Int(i64::MIN),
                    Value::Float(f64::NAN),
                    Value::Map(vec![
                        ("b".into(), Value::Int(1)),
                        ("a".into(), Value::Str("x".into())),
                        ("b".into(), Value::Int(2)),
                    ]),
                ]),
            ),
            ("dup".into(), Value::Int(1)),
            ("dup".into(), Value::Int(2)),
            ("empty".into(), Value::Map(vec![])),
        ]);
        assert_eq!(
            metadata_pairs(md),
            vec![
                p("resource_metadata:dup", "2"),
                p(
                    "resource_metadata:list",
                    "[\"é'\\xa0\u{1f680}\\x85\", 18446744073709551615, -9223372036854775808, nan, {b'a': b'x', b'b': 2}]"
                ),
                p("resource_metadata:raw", "b\"it's\\x00\\xff\""),
            ]
        );
    }

    #[test]
    fn undecodable_bytes_in_list_never_verify() {
        let secret = b"fixture-secret";
        let mut s = with_metadata(Value::Map(vec![(
            "l".into(),
            Value::List(vec![Value::Bytes(vec![0xff])]),
        )]));
        s.message_signature = Some(compute(&s, secret));
        assert!(!verify(&s, secret));
        // The same bytes outside a list are fine (Python's str(bytes)).
        let mut s = with_metadata(Value::Map(vec![("b".into(), Value::Bytes(vec![0xff]))]));
        s.message_signature = Some(compute(&s, secret));
        assert!(verify(&s, secret));
    }

    #[test]
    fn non_map_metadata_and_extra_keys() {
        let secret = b"k";
        let mut s = with_metadata(Value::List(vec![Value::Str("a".into())]));
        s.extra
            .push(("publisher_id".into(), Value::Str("vm".into())));
        s.extra
            .push(("zz".into(), Value::Map(vec![("q".into(), Value::Null)])));
        let got = pairs(&s);
        assert!(got.contains(&p("resource_metadata", "[b'a']")));
        assert!(got.contains(&p("publisher_id", "vm")));
        assert_eq!(got.last(), Some(&p("zz:q", "None")));
        s.message_signature = Some(compute(&s, secret));
        assert!(verify(&s, secret));
    }

    #[test]
    fn too_deep_never_verifies() {
        let secret = b"fixture-secret";
        let nest = |levels: usize, wrap: fn(Value) -> Value| {
            (0..levels).fold(Value::Int(1), |v, _| wrap(v))
        };
        let as_map: fn(Value) -> Value = |v| Value::Map(vec![("k".into(), v)]);
        let as_list: fn(Value) -> Value = |v| Value::List(vec![v]);
        for (levels, ok) in [(MAX_DEPTH, true), (MAX_DEPTH + 1, false)] {
            for wrap in [as_map, as_list] {
                let mut s = with_metadata(nest(levels, wrap));
                s.message_signature = Some(compute(&s, secret));
                assert_eq!(verify(&s, secret), ok, "{levels} levels");
            }
        }
        // Far beyond the limit: no stack overflow.
        let mut s = with_metadata(nest(100_000, as_list));
        s.message_signature = Some(compute(&s, secret));
        assert!(!verify(&s, secret));
        // Dropping a deeply nested Value recurses too; leak it to keep the test
        // about this module.
        std::mem::forget(s);
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}

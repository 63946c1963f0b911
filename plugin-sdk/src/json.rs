//! Writes a sample as the JSON dict Ceilometer sent: its field names, absent keys
//! left out, integers without a decimal point and floats always with one (or an
//! exponent), so that parsing the line gives back exactly the agent's dict.
//!
//! Two [`Style`]s, differing only in non-finite floats: [`Style::Python`] writes
//! `NaN`, `Infinity` and `-Infinity`, as Python's `json` module (and so Ceilometer)
//! writes and reads them: for output that must match what Ceilometer writes (the
//! file plugin). [`Style::Standard`] writes them `null`, as JavaScript's
//! `JSON.stringify` does, so that every RFC 8259 parser reads the text: for the
//! JSON batches of `collector_batch_format_json` (ABI §5.9). Integers are exact in
//! both (a parser without big integers reads those beyond 2^53 to the nearest
//! double). `bin` values are written as text (lossy if they are not UTF-8): JSON
//! has no bytes type.

use crate::codec::{BatchView, DecodeError, SampleView, ValueView};
use crate::model::{Field, Number};

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// How non-finite floats are written (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Style {
    /// `NaN`, `Infinity`, `-Infinity`: what Ceilometer writes.
    #[default]
    Python,
    /// `null`: what every standard parser reads.
    Standard,
}

/// Appends a float so that it reads back as the same float (never as an integer).
pub fn write_f64(out: &mut Vec<u8>, f: f64) {
    write_f64_as(out, f, Style::Python);
}

/// [`write_f64`] in `style`.
pub fn write_f64_as(out: &mut Vec<u8>, f: f64, style: Style) {
    use std::io::Write;
    if !f.is_finite() && style == Style::Standard {
        out.extend_from_slice(b"null");
    } else if f.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        // `{:?}` is the shortest text that round-trips and always has a `.` or an `e`.
        let _ = write!(out, "{f:?}");
    }
}

pub fn write_number(out: &mut Vec<u8>, n: Number) {
    write_number_as(out, n, Style::Python);
}

/// [`write_number`] in `style`.
pub fn write_number_as(out: &mut Vec<u8>, n: Number, style: Style) {
    use std::io::Write;
    let _ = match n {
        Number::Int(i) => write!(out, "{i}"),
        Number::UInt(u) => write!(out, "{u}"),
        Number::Float(f) => {
            write_f64_as(out, f, style);
            Ok(())
        }
    };
}

/// Appends a metadata value.
pub fn write_value(out: &mut Vec<u8>, v: &ValueView<'_>) {
    write_value_as(out, v, Style::Python);
}

/// [`write_value`] in `style`.
pub fn write_value_as(out: &mut Vec<u8>, v: &ValueView<'_>, style: Style) {
    match v {
        ValueView::Null => out.extend_from_slice(b"null"),
        ValueView::Bool(true) => out.extend_from_slice(b"true"),
        ValueView::Bool(false) => out.extend_from_slice(b"false"),
        ValueView::Int(i) => write_number(out, Number::Int(*i)),
        ValueView::UInt(u) => write_number(out, Number::UInt(*u)),
        ValueView::Float(f) => write_f64_as(out, *f, style),
        ValueView::Str(s) => write_str(out, s),
        ValueView::Bytes(b) => write_str(out, &String::from_utf8_lossy(b)),
        ValueView::List(l) => {
            out.push(b'[');
            for (i, item) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value_as(out, &item, style);
            }
            out.push(b']');
        }
        ValueView::Map(m) => {
            out.push(b'{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value_as(out, &item, style);
            }
            out.push(b'}');
        }
    }
}

/// Writes keys of one JSON object, adding the commas.
struct Obj<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
    style: Style,
}

impl Obj<'_> {
    fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, k);
        self.out.push(b':');
        self.out
    }

    fn str(&mut self, k: &str, v: &str) {
        write_str(self.key(k), v);
    }

    fn field_str(&mut self, k: &str, v: Field<&str>) {
        match v {
            Field::Absent => {}
            Field::Null => self.key(k).extend_from_slice(b"null"),
            Field::Value(s) => self.str(k, s),
        }
    }

    fn opt_number(&mut self, k: &str, v: Option<Number>) {
        match v {
            None => self.key(k).extend_from_slice(b"null"),
            Some(n) => {
                let style = self.style;
                write_number_as(self.key(k), n, style);
            }
        }
    }
}

/// Appends one sample as a JSON object (no newline), keys in Ceilometer's order,
/// as Ceilometer writes it ([`Style::Python`]).
pub fn write_sample(out: &mut Vec<u8>, s: &SampleView<'_>) {
    write_sample_as(out, s, Style::Python);
}

/// [`write_sample`] in `style`.
pub fn write_sample_as(out: &mut Vec<u8>, s: &SampleView<'_>, style: Style) {
    out.push(b'{');
    let mut o = Obj {
        out,
        first: true,
        style,
    };
    o.str("source", s.source);
    o.str("counter_name", s.counter_name);
    o.str("counter_type", s.counter_type);
    o.str("counter_unit", s.counter_unit);
    o.opt_number("counter_volume", s.counter_volume);
    o.field_str("user_id", s.user_id);
    o.field_str("user_name", s.user_name);
    o.field_str("project_id", s.project_id);
    o.field_str("project_name", s.project_name);
    o.str("resource_id", s.resource_id);
    o.str("timestamp", s.timestamp);
    if let Some(m) = &s.resource_metadata {
        write_value_as(o.key("resource_metadata"), m, style);
    }
    o.str("message_id", s.message_id);
    match s.monotonic_time {
        Field::Absent => {}
        Field::Null => o.opt_number("monotonic_time", None),
        Field::Value(n) => o.opt_number("monotonic_time", Some(n)),
    }
    if let Some(sig) = s.message_signature {
        o.str("message_signature", sig);
    }
    for (k, v) in s.extra.iter() {
        write_value_as(o.key(k), &v, style);
    }
    o.out.push(b'}');
}

/// A whole batch (ABI v1 bytes) as a JSON array of sample dicts: the form
/// plugins that export `collector_batch_format_json` receive, in
/// [`Style::Standard`] so that any JSON parser reads it.
///
/// # Errors
/// When the batch bytes are malformed.
pub fn batch_to_json(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let view = BatchView::new(bytes)?;
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 2);
    out.push(b'[');
    let mut it = view.iter();
    for (i, s) in (&mut it).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_sample_as(&mut out, &s?, Style::Standard);
    }
    it.finish()?;
    out.push(b']');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_batch;
    use crate::model::{Field, Number, Sample, Value};

    fn sample() -> Sample {
        Sample {
            source: "s".into(),
            counter_name: "c".into(),
            counter_type: "gauge".into(),
            counter_unit: "u".into(),
            counter_volume: Some(Number::Float(f64::NAN)),
            user_id: Field::Absent,
            user_name: Field::Absent,
            project_id: Field::Absent,
            project_name: Field::Absent,
            resource_id: "r".into(),
            timestamp: "t".into(),
            resource_metadata: Some(Value::Map(vec![
                ("inf".into(), Value::Float(f64::INFINITY)),
                ("big".into(), Value::UInt(u64::MAX)),
            ])),
            message_id: "m".into(),
            monotonic_time: Field::Value(Number::Float(f64::NEG_INFINITY)),
            message_signature: None,
            extra: vec![],
        }
    }

    #[test]
    fn python_style_is_what_ceilometer_writes_and_standard_style_what_any_parser_reads() {
        let bytes = encode_batch(&[sample()]);
        let view = BatchView::new(&bytes).expect("header");
        let s = view.iter().next().expect("one").expect("valid");
        let mut py = Vec::new();
        write_sample(&mut py, &s);
        let py = String::from_utf8(py).expect("utf-8");
        assert!(py.contains(r#""counter_volume":NaN"#), "{py}");
        assert!(py.contains(r#""inf":Infinity"#) && py.contains(r#""monotonic_time":-Infinity"#));
        let json = batch_to_json(&bytes).expect("json");
        let v: serde_json::Value =
            serde_json::from_slice(&json).expect("a standard parser reads it");
        assert!(v[0]["counter_volume"].is_null());
        assert!(v[0]["resource_metadata"]["inf"].is_null());
        assert!(v[0]["monotonic_time"].is_null());
        assert_eq!(
            v[0]["resource_metadata"]["big"].as_u64(),
            Some(u64::MAX),
            "integers stay exact"
        );
    }
}

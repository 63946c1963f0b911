//! The AMQP body transcoder (`wire::oslo::Transcoder`) against the owned path
//! it replaces (`oslo::decode_message_within`, `Signer::verify`,
//! `codec::encode_sample`, as `oslo::verify_owned` runs them): the same
//! outcome, the same error text and the same bytes, on Ceilometer's captured
//! notifications and casts, the fuzz corpus, notifications of the `send`
//! generator's samples and of unusual ones, and mutations of all of them,
//! made to the body and to the message inside the envelope. Real traffic must
//! take the fast path, not the fallback.

use collector::cli::samples::{Rng, notification, notification_of, realistic};
use collector::signature::{self, Signer};
use collector::wire::json::sample_to_json;
use collector::wire::oslo::{Limits, Transcoder, verify_owned};
use collector_sdk::{Field, Number, Value};
use serde_json::{Value as Json, json};

use crate::common::repo_files;

const SECRET: &[u8] = b"fixture-secret";

/// The message bodies of a folder (not its properties, manifests or expectations).
fn bodies(dir: &str, only_amqp: bool) -> Vec<Vec<u8>> {
    repo_files(dir, |name| {
        !name.ends_with(".properties.json")
            && !name.ends_with(".md")
            && !name.ends_with(".jsonl")
            && (!only_amqp || name.starts_with("amqp-"))
    })
}

const LIMITS: Limits = Limits {
    max_bytes: 1 << 20,
    max_samples: 300,
};

/// The outcome as text: the message's fields, every sample's bytes, or the error.
type Outcome = Result<(String, Vec<Vec<u8>>), String>;

fn owned(body: &[u8], signer: &Signer) -> Outcome {
    let mut out = vec![0xAB; 3];
    let t = verify_owned(body, &LIMITS, signer, &mut out).map_err(|e| e.to_string())?;
    Ok(split(t, &out))
}

fn fast(body: &[u8], t: &mut Transcoder) -> Outcome {
    // A buffer that already holds something: an error must leave it as it was.
    let mut out = vec![0xAB; 3];
    match t.transcode(body, &LIMITS, &mut out) {
        Ok(m) => Ok(split(m, &out)),
        Err(e) => {
            assert_eq!(out, [0xAB; 3], "an error left bytes behind");
            Err(e.to_string())
        }
    }
}

fn split(mut t: collector::wire::oslo::Transcoded, out: &[u8]) -> (String, Vec<Vec<u8>>) {
    let mut start = 3;
    let samples = t
        .ends
        .iter()
        .map(|&end| {
            let s = out[start..end].to_vec();
            start = end;
            s
        })
        .collect();
    assert_eq!(start, out.len(), "bytes after the last sample");
    t.ends.clear();
    (format!("{t:?}"), samples)
}

/// Compares both paths with the secret and without; counts the outcomes
/// (verified samples, bad signatures, invalid dicts, refused messages).
fn agree(body: &[u8], ts: &mut [Transcoder; 2], seen: &mut [u64; 4]) {
    for (t, secret) in ts.iter_mut().zip([SECRET, b""]) {
        let want = owned(body, &Signer::new(secret));
        let got = fast(body, t);
        assert_eq!(
            got,
            want,
            "the paths differ on {:?}",
            String::from_utf8_lossy(body)
        );
        match &want {
            Ok((fields, samples)) => {
                seen[0] += samples.len() as u64;
                seen[1] += u64::from(!fields.contains("bad_signatures: 0"));
                seen[2] += u64::from(!fields.contains("invalid: []"));
            }
            Err(_) => seen[3] += 1,
        }
    }
}

fn transcoders() -> [Transcoder; 2] {
    [
        Transcoder::new(Signer::new(SECRET)),
        Transcoder::new(Signer::new(b"")),
    ]
}

/// Sample dicts with every kind of JSON value where Ceilometer puts one, and
/// the JSON that only the owned decoder reads (repeated keys, integers beyond
/// 64 bits, deep nesting, many keys), which must fall back to it.
fn unusual(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..30u64 {
        let mut s = realistic(i, rng, b"");
        s.resource_metadata = Some(Value::Map(vec![
            (
                "tags".into(),
                Value::List(vec![
                    Value::Str("a'b\"c\\é\u{1F600}".into()),
                    Value::Map(vec![
                        ("z".into(), Value::Int(-1)),
                        ("a".into(), Value::Null),
                    ]),
                    Value::List(vec![Value::Float(1e-7), Value::Bool(true)]),
                ]),
            ),
            ("ratio".into(), Value::Float(i as f64 * 0.1 + 1e16)),
            ("tiny".into(), Value::Float(-0.0)),
            ("big".into(), Value::UInt(u64::MAX - i)),
            ("neg".into(), Value::Int(i64::MIN + i as i64)),
            ("esc\"aped\n".into(), Value::Str("tab\there".into())),
        ]));
        s.extra.push(("zz_extra".into(), Value::List(vec![])));
        if i % 3 == 0 {
            s.user_id = Field::Null;
            s.counter_volume = None;
            s.monotonic_time = Field::Value(Number::Float(1.5));
        }
        s.message_signature = Some(signature::compute(&s, SECRET));
        let dict = sample_to_json(&s);
        out.push(notification_of(vec![dict.clone(), dict.clone()]));
        // What sends the message to the owned decoder, one case each.
        let text = dict.to_string();
        let odd = match i % 6 {
            0 => text.replacen("{", r#"{"source": "twice", "#, 1),
            1 => text.replacen(
                "\"big\":",
                "\"big\": 123456789012345678901234567890, \"big2\":",
                1,
            ),
            2 => text.replacen(
                "\"tiny\":",
                &format!("\"deep\": {}0{}, \"tiny\":", "[".repeat(70), "]".repeat(70)),
                1,
            ),
            3 => {
                let many: Vec<String> = (0..80).map(|k| format!("\"k{k}\": {k}")).collect();
                text.replacen(
                    "\"tiny\":",
                    &format!("\"many\": {{{}}}, \"tiny\":", many.join(", ")),
                    1,
                )
            }
            4 => text.replacen("\"tags\":", "\"ratio\": \"shadowed\", \"tags\":", 1),
            _ => text.replacen("\"ratio\":", "\"ratio\": 1e400, \"x\":", 1),
        };
        // By hand: a JSON value would drop the repeated keys.
        let inner = format!(r#"{{"event_type": "metering", "payload": [{odd}]}}"#);
        out.push(envelope(&inner));
    }
    // Samples outside the message proper: in the envelope, and in a second payload.
    let dict = sample_to_json(&realistic(99, rng, SECRET));
    let inner = json!({"event_type": "metering", "payload": [dict.clone()], "priority": "SAMPLE"});
    out.push(
        json!({"oslo.version": "2.0", "oslo.message": inner.to_string(), "payload": [dict.clone()]})
            .to_string()
            .into_bytes(),
    );
    let twice = format!(
        r#"{{"event_type": "metering", "payload": [{dict}], "payload": [{dict}, {dict}]}}"#
    );
    out.push(twice.into_bytes());
    let cast = json!({"method": "record_metering_data", "args": {"data": dict.clone()}});
    out.push(cast.to_string().into_bytes());
    let (valid, lone) = python_escaped(&dict);
    out.extend(valid);
    out.extend(lone);
    // A payload item that is not a dict fails the message (after the dicts before it).
    out.push(notification_of(vec![
        dict.clone(),
        json!(5),
        dict.clone(),
        json!("x"),
    ]));
    let cast = json!({"method": "record_metering_data", "args": {"data": [dict, [1]]}});
    out.push(cast.to_string().into_bytes());
    out
}

/// A JSON-aware mutation: bytes flipped, cut, repeated, or a token swapped
/// for another (where a decoder's reading of JSON differs).
fn mutate(d: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut m = d.to_vec();
    if m.is_empty() {
        return vec![b'{'];
    }
    let i = rng.below(m.len() as u64) as usize;
    match rng.below(5) {
        0 => m[i] ^= 1 << rng.below(7),
        1 => m.truncate(i),
        2 => {
            let j = (i + 1 + rng.below(24) as usize).min(m.len());
            let part = m[i..j].to_vec();
            m.splice(i..i, part);
        }
        3 => {
            let token: &[u8] = [
                &b"null"[..],
                b"true",
                b"1e3",
                b"-0",
                b"18446744073709551616",
                b"\"\\u00e9\"",
                b"[]",
                b"{}",
                b",",
                b":",
                b"\"",
                b"\\",
            ][rng.below(12) as usize];
            m.splice(i..i, token.iter().copied());
        }
        _ => {
            // A key's value replaced by another type.
            if let Some(at) = m[i..].iter().position(|&c| c == b':') {
                let at = i + at + 1;
                let token: &[u8] = [
                    &b" 1"[..],
                    b" null",
                    b" \"s\"",
                    b" 1.5",
                    b" {\"a\": 1}",
                    b" [1]",
                ][rng.below(6) as usize];
                m.splice(at..at, token.iter().copied());
            }
        }
    }
    m
}

/// The message inside an envelope mutated, and wrapped again.
fn mutate_inner(body: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let outer: Json = serde_json::from_slice(body).ok()?;
    let inner = outer.get("oslo.message")?.as_str()?;
    let m = mutate(inner.as_bytes(), rng);
    let m = String::from_utf8_lossy(&m).into_owned();
    Some(envelope(&m))
}

/// Notifications of `dict` in the envelope as Python's json.dumps writes it
/// (ensure_ascii: `\uXXXX`, with surrogate pairs), with every escape JSON
/// has; and the same with lone surrogates or a cut `\u` escape.
fn python_escaped(dict: &Json) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let inner = json!({"event_type": "metering", "payload": [dict]}).to_string();
    let inner = inner.replacen(
        "\"event_type\"",
        "\n\t\"x\": \"é😀\\u0001\\b\\f\\n\\r\\t\\/\\\\\\\"\",\r\n\"event_type\"",
        1,
    );
    let valid = ["", "\\/"].map(|e| python_envelope(&inner, e));
    let lone = ["\\ud800", "\\udc00", "\\ud800\\u0041", "\\ud800x", "\\u12"]
        .map(|e| python_envelope(&inner, e));
    (valid.to_vec(), lone.to_vec())
}

/// `inner` in the 2.0 envelope as Python writes it: every non-ASCII character
/// as `\uXXXX` (UTF-16), and `extra` (raw escapes) at the start of `x`'s value.
fn python_envelope(inner: &str, extra: &str) -> Vec<u8> {
    let mut text = String::new();
    for c in inner.chars() {
        match c {
            '"' => text.push_str("\\\""),
            '\\' => text.push_str("\\\\"),
            '\n' => text.push_str("\\n"),
            '\t' => text.push_str("\\t"),
            '\r' => text.push_str("\\r"),
            c if c.is_ascii() && !c.is_ascii_control() => text.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    text.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    let text = text.replacen("\\\"x\\\": \\\"", &format!("\\\"x\\\": \\\"{extra}"), 1);
    format!(r#"{{"oslo.version": "2.0", "oslo.message": "{text}"}}"#).into_bytes()
}

/// `inner` in the 2.0 envelope.
fn envelope(inner: &str) -> Vec<u8> {
    json!({"oslo.version": "2.0", "oslo.message": inner})
        .to_string()
        .into_bytes()
}

#[test]
fn oslo_transcoder_agrees_with_the_owned_path_byte_for_byte() {
    let mut rng = Rng::new(27);
    let mut ts = transcoders();
    let mut seen = [0u64; 4];
    // Real traffic takes the fast path.
    let mut real = Vec::new();
    for dir in [
        "tests/fixtures/ceilometer/notification",
        "tests/fixtures/ceilometer/rpc",
    ] {
        real.extend(bodies(dir, false));
    }
    assert_eq!(real.len(), 9);
    let generated: Vec<_> = (0..300u64)
        .map(|i| realistic(i, &mut rng, SECRET))
        .collect();
    real.extend(generated.chunks(30).map(notification));
    for b in &real {
        agree(b, &mut ts, &mut seen);
    }
    assert_eq!(
        seen,
        [2 * (30 + 15 + 300), 0, 0, 0],
        "real traffic verifies"
    );
    assert_eq!(
        ts.iter().map(Transcoder::fallbacks).collect::<Vec<_>>(),
        [0, 0],
        "real traffic fell back to the owned decoder"
    );
    let odd = unusual(&mut rng);
    for b in &odd {
        agree(b, &mut ts, &mut seen);
    }
    // The 30 odd dicts, the two misplaced samples (not the cast of one dict),
    // the five lone surrogates and the two refused messages (an error is always
    // the owned decoder's).
    assert_eq!(
        ts.iter().map(Transcoder::fallbacks).collect::<Vec<_>>(),
        [39, 39],
        "the odd messages fall back"
    );
    // Python's escapes take the fast path; lone surrogates are refused.
    let (valid, lone) = python_escaped(&sample_to_json(&generated[0]));
    let before = ts[0].fallbacks();
    for b in &valid {
        assert!(
            fast(b, &mut ts[0]).is_ok_and(|(_, s)| s.len() == 1),
            "Python's escapes"
        );
    }
    assert_eq!(ts[0].fallbacks(), before, "Python's escapes fell back");
    for b in &lone {
        assert!(fast(b, &mut ts[0]).is_err(), "a lone surrogate was taken");
    }
    let mut bases = real;
    bases.extend(odd);
    bases.extend(bodies("tests/fixtures/ceilometer/bad", true));
    bases.extend(bodies("fuzz/corpus/oslo_message", false));
    for b in &bases {
        agree(b, &mut ts, &mut seen);
    }
    for b in &bases {
        for _ in 0..8 {
            agree(&mutate(b, &mut rng), &mut ts, &mut seen);
            if let Some(m) = mutate_inner(b, &mut rng) {
                agree(&m, &mut ts, &mut seen);
            }
        }
    }
    // Every kind of outcome was compared, many times over.
    assert!(seen.iter().all(|&n| n > 200), "outcomes: {seen:?}");
}

//! Realistic Ceilometer samples, as the compute, disk and network pollsters
//! produce them, for `collector send` and the benchmarks.

use collector_sdk::{Field, Number, Sample, Value};

use crate::signature;

/// A small, fast, seedable generator (xorshift64*): no cryptographic use.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A random UUID v4 in its text form.
pub fn uuid(rng: &mut Rng) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

const METERS: [(&str, &str, &str, bool); 8] = [
    ("cpu", "cumulative", "ns", false),
    ("vcpus", "gauge", "vcpu", false),
    ("memory.usage", "gauge", "MB", true),
    ("disk.read.bytes", "cumulative", "B", false),
    ("disk.write.requests", "cumulative", "request", false),
    ("network.incoming.bytes", "cumulative", "B", false),
    ("network.outgoing.bytes.rate", "gauge", "B/s", true),
    ("disk.device.usage", "gauge", "B", false),
];

fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

/// Sample number `i`: a realistic instance meter, signed with `secret`.
pub fn realistic(i: u64, rng: &mut Rng, secret: &[u8]) -> Sample {
    let (name, kind, unit, float) = METERS[(i % METERS.len() as u64) as usize];
    let vm = rng.below(500);
    let volume = if float {
        Number::Float(rng.below(1_000_000) as f64 / 64.0)
    } else {
        Number::Int(rng.below(1 << 40) as i64)
    };
    let metadata = Value::Map(vec![
        ("display_name".into(), Value::Str(format!("web-{vm:03}"))),
        ("host".into(), Value::Str(format!("compute-{:02}", vm % 40))),
        ("instance_type".into(), s("m1.small")),
        (
            "flavor".into(),
            Value::Map(vec![
                ("name".into(), s("m1.small")),
                ("vcpus".into(), Value::Int(1)),
                ("ram".into(), Value::Int(2048)),
                ("disk".into(), Value::Int(20)),
            ]),
        ),
        (
            "image_ref".into(),
            s("8a3c1b9e-6c41-4f8e-9d9a-7b0f3f7c2a11"),
        ),
        ("status".into(), s("active")),
        ("state".into(), s("running")),
    ]);
    let mut sample = Sample {
        source: "openstack".into(),
        counter_name: name.into(),
        counter_type: kind.into(),
        counter_unit: unit.into(),
        counter_volume: Some(volume),
        user_id: Field::Value(format!("{:032x}", vm * 7919 + 1)),
        user_name: Field::Null,
        project_id: Field::Value(format!("{:032x}", vm % 17 + 1)),
        project_name: Field::Null,
        resource_id: format!("{:08x}-0000-4000-8000-{:012x}", vm, vm),
        timestamp: format!(
            "2025-06-01T12:{:02}:{:02}.{:06}",
            (i / 60) % 60,
            i % 60,
            i % 1_000_000
        ),
        resource_metadata: Some(metadata),
        message_id: uuid(rng),
        monotonic_time: Field::Value(Number::Float(1000.0 + i as f64 / 1000.0)),
        message_signature: None,
        extra: vec![],
    };
    sample.message_signature = Some(signature::compute(&sample, secret));
    sample
}

/// Hostile inputs, for the tests and benchmarks that check decoding stays linear
/// and bounded: the worst datagrams and messages we know how to build.
pub mod hostile {
    use super::{Rng, realistic};
    use crate::wire::msgpack;

    /// The `i`-th distinct short key (base 62, one to three characters, then more).
    fn key(mut i: usize) -> String {
        const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut out = String::from("x");
        loop {
            out.push(char::from(DIGITS[i % 62]));
            i /= 62;
            if i == 0 {
                return out;
            }
        }
    }

    /// A datagram of at most `max_bytes` (64 KiB is what UDP carries) holding a
    /// sample dict with as many distinct extra keys (`null` each) as fit: about
    /// 13,000 in 64 KiB. Unsigned: it fails its signature after decoding.
    pub fn many_keys_datagram(max_bytes: usize) -> Vec<u8> {
        let mut rng = Rng::new(1);
        let base = realistic(0, &mut rng, b"");
        let mut head = Vec::new();
        msgpack::encode_sample(&base, &mut head);
        // Re-encode with a map32 header, then append `key: nil` entries.
        let (known, header) = match head.as_slice() {
            [b, ..] if (0x80..=0x8f).contains(b) => (usize::from(b & 0x0f), 1),
            [0xde, hi, lo, ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), 3),
            _ => (0, head.len()),
        };
        let body = head.get(header..).unwrap_or_default().to_vec();
        let mut entries = Vec::new();
        let mut n = 0;
        while 5 + body.len() + entries.len() + 6 <= max_bytes {
            let k = key(n);
            entries.push(0xa0 | k.len() as u8);
            entries.extend_from_slice(k.as_bytes());
            entries.push(0xc0);
            n += 1;
        }
        let mut out = vec![0xdf];
        out.extend_from_slice(&((known + n) as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&entries);
        out
    }

    /// An oslo 2.0 notification whose one sample carries `keys` distinct extra keys
    /// (100,000 make about 1.4 MB); signed with a wrong secret.
    pub fn many_keys_notification(keys: usize) -> Vec<u8> {
        let mut rng = Rng::new(2);
        let mut sample = crate::wire::json::sample_to_json(&realistic(0, &mut rng, b"wrong"));
        if let Some(map) = sample.as_object_mut() {
            for i in 0..keys {
                map.insert(key(i), serde_json::Value::Null);
            }
        }
        super::notification_of(vec![sample])
    }
}

/// An oslo 2.0 notification (`SampleNotifierPublisher`'s envelope) of `samples`.
pub fn notification(samples: &[Sample]) -> Vec<u8> {
    notification_of(
        samples
            .iter()
            .map(crate::wire::json::sample_to_json)
            .collect(),
    )
}

/// An oslo 2.0 notification whose payload is `payload`, as given.
pub fn notification_of(payload: Vec<serde_json::Value>) -> Vec<u8> {
    let inner = serde_json::json!({
        "message_id": "m", "publisher_id": "telemetry.publisher.bench",
        "event_type": "metering", "priority": "SAMPLE", "payload": payload,
        "timestamp": "2026-12-01 00:00:00.000000", "_unique_id": "0123456789abcdef",
    });
    serde_json::json!({"oslo.version": "2.0", "oslo.message": inner.to_string()})
        .to_string()
        .into_bytes()
}

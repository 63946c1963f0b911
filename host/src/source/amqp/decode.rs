//! Decoding an AMQP message body and verifying its samples: CPU work on input from
//! outside, which the consumer runs on the blocking pool.

use collector_sdk::codec::encode_sample;
use collector_sdk::model::SchemaError;
use lapin::types::AMQPValue;

use crate::signature::Signer;
use crate::wire::oslo::{self, OsloMessage};

/// A decoded message whose samples passed their signature check.
pub struct Verified {
    /// The message's key for `max_deliveries`: its `_unique_id`, or a hash of
    /// the body when it has none (hashed here, off the async workers: a
    /// notification of 100 samples is some 100 KB).
    pub key: String,
    /// The samples with a valid signature, in payload order, already in ABI
    /// layout: sample `i` is `encoded[ends[i - 1]..ends[i]]`. Encoding them
    /// here, where they were decoded, frees each `Sample` on the thread that
    /// allocated it; one buffer crosses to the consumer instead of every string.
    pub encoded: Vec<u8>,
    pub ends: Vec<usize>,
    pub invalid: Vec<(usize, SchemaError)>,
    /// Samples dropped for a bad signature, and the `message_id` of the first (for the log).
    pub bad_signatures: u64,
    pub first_bad_signature: Option<String>,
}

/// Decodes a message body and verifies its samples: CPU work, for the blocking pool.
pub fn decode_and_verify(
    body: &[u8],
    signer: &Signer,
    limits: &oslo::Limits,
) -> Result<Verified, oslo::OsloError> {
    let OsloMessage {
        unique_id,
        samples,
        invalid,
        ..
    } = oslo::decode_message_within(body, limits)?;
    let mut out = Verified {
        key: unique_id.unwrap_or_else(|| format!("body:{:016x}", fnv1a(body))),
        encoded: Vec::with_capacity(samples.len() * 768),
        ends: Vec::with_capacity(samples.len()),
        invalid,
        bad_signatures: 0,
        first_bad_signature: None,
    };
    for sample in samples {
        if signer.verify(&sample) {
            encode_sample(&mut out.encoded, &sample);
            out.ends.push(out.encoded.len());
        } else {
            out.bad_signatures += 1;
            out.first_bad_signature.get_or_insert(sample.message_id);
        }
    }
    Ok(out)
}

/// `x-delivery-count` (quorum queues count deliveries for us).
pub fn header_delivery_count(p: &lapin::BasicProperties) -> Option<u32> {
    let headers = p.headers().as_ref()?;
    let v = headers
        .inner()
        .iter()
        .find(|(k, _)| k.as_str() == "x-delivery-count")
        .map(|(_, v)| v)?;
    match v {
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(*n),
        _ => None,
    }
}

/// FNV-1a: a stable key for messages without `_unique_id`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

//! Decoding an AMQP message body and verifying its samples (`oslo::Transcoder`):
//! CPU work on input from outside, which runs on the [`super::decode_pool`] threads.

use collector_sdk::model::SchemaError;
use lapin::types::AMQPValue;

use crate::wire::oslo;

/// A decoded message whose samples passed their signature check.
pub struct Verified {
    /// The message's key for `max_deliveries`: its `_unique_id`, or a hash of
    /// the body when it has none (hashed here, off the async workers: a
    /// notification of 100 samples is some 100 KB).
    pub key: String,
    /// The samples with a valid signature, in payload order, already in ABI
    /// layout: sample `i` is `encoded[ends[i - 1]..ends[i]]` (transcoded here
    /// by `oslo::Transcoder`, no `Sample` in between); one buffer crosses to
    /// the consumer.
    pub encoded: Vec<u8>,
    pub ends: Vec<usize>,
    pub invalid: Vec<(usize, SchemaError)>,
    /// Samples dropped for a bad signature, and the `message_id` of the first (for the log).
    pub bad_signatures: u64,
    pub first_bad_signature: Option<String>,
}

/// Decodes a message body and verifies its samples with `t` (a decoder
/// thread's own, so its buffers are reused from message to message).
pub fn decode_and_verify(
    t: &mut oslo::Transcoder,
    body: &[u8],
    limits: &oslo::Limits,
) -> Result<Verified, oslo::OsloError> {
    // Most samples take 600 to 900 bytes in ABI layout.
    let mut encoded = Vec::with_capacity((body.len() / 2).min(1 << 20));
    let m = t.transcode(body, limits, &mut encoded)?;
    Ok(Verified {
        key: m
            .unique_id
            .unwrap_or_else(|| format!("body:{:016x}", fnv1a(body))),
        encoded,
        ends: m.ends,
        invalid: m.invalid,
        bad_signatures: m.bad_signatures,
        first_bad_signature: m.first_bad_signature,
    })
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

//! The three batch decoders of the SDK agree on every input: the owned one
//! (one walk into owned values), serde + bincode (the reference, derived from
//! the types) and the zero-copy view either all refuse the bytes or all give
//! the same samples (compared re-encoded, so NaN equals NaN), and what they
//! give re-encodes to the very input.
#![no_main]

use collector_sdk::codec::{BatchView, decode_batch, decode_batch_serde, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let owned = decode_batch(data);
    let reference = decode_batch_serde(data);
    match (&owned, &reference) {
        (Ok(a), Ok(b)) => assert_eq!(encode_batch(a), encode_batch(b), "owned and serde disagree"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "one decoder accepts what the other refuses: owned {:?}, serde {:?}",
            a.as_ref().map(Vec::len),
            b.as_ref().map(Vec::len)
        ),
    }
    let viewed = BatchView::new(data).and_then(|v| v.to_owned_samples());
    match (owned, viewed) {
        (Ok(a), Ok(b)) => {
            assert_eq!(encode_batch(&a), encode_batch(&b), "the decoders disagree");
            assert_eq!(encode_batch(&a), data, "a decoded batch re-encodes to itself");
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "one decoder accepts what the other refuses: owned {:?}, view {:?}",
            a.map(|s| s.len()),
            b.map(|s| s.len())
        ),
    }
});

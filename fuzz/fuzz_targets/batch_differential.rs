//! The two batch decoders of the SDK agree on every input: the owned one
//! (serde + bincode, the reference) and the zero-copy view either both refuse
//! the bytes or both give the same samples (compared re-encoded, so NaN equals
//! NaN), and what they give re-encodes to the very input.
#![no_main]

use collector_sdk::codec::{BatchView, decode_batch, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let owned = decode_batch(data);
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

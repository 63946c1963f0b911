//! A UDP datagram: decoding never panics, a decoded sample verifies (or not)
//! without panicking, and what decodes re-encodes to bytes that decode to the
//! same sample (compared through their ABI encoding, so NaN equals NaN).
#![no_main]

use collector_sdk::codec::encode_sample;
use collector_wire::msgpack::{decode_sample, encode_sample as to_msgpack};
use collector_wire::signature::Signer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sample) = decode_sample(data) else {
        return;
    };
    let _ = Signer::new(b"fuzz").verify(&sample);
    let mut again = Vec::new();
    to_msgpack(&sample, &mut again);
    let back = decode_sample(&again).expect("a re-encoded sample decodes");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    encode_sample(&mut a, &sample);
    encode_sample(&mut b, &back);
    assert_eq!(a, b, "msgpack round trip changed the sample");
});

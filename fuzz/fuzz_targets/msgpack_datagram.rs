//! A UDP datagram: decoding never panics, a decoded sample verifies (or not)
//! without panicking, and what decodes re-encodes to bytes that decode to the
//! same sample (compared through their ABI encoding, so NaN equals NaN). The
//! one-pass transcoder (the UDP hot path) gives the owned path's outcome, error
//! text and ABI bytes, with a secret and without.
#![no_main]

use collector_sdk::codec::encode_sample;
use collector_wire::msgpack::{decode_sample, encode_sample as to_msgpack};
use collector_wire::signature::Signer;
use collector_wire::transcode::{Refusal, Transcoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = decode_sample(data);
    for secret in [&b"fuzz"[..], b""] {
        let signer = Signer::new(secret);
        let want = match &decoded {
            Err(e) => Err(e.to_string()),
            Ok(s) if !signer.verify(s) => Err(format!("signature {}", s.message_id)),
            Ok(s) => {
                let mut v = Vec::new();
                encode_sample(&mut v, s);
                Ok(v)
            }
        };
        let mut out = Vec::new();
        let got = match Transcoder::new(secret).transcode(data, &mut out) {
            Ok(()) => Ok(out),
            Err(Refusal::Undecodable(e)) => Err(e.to_string()),
            Err(Refusal::SignatureInvalid { message_id }) => Err(format!("signature {message_id}")),
        };
        assert_eq!(got, want, "the one-pass and owned paths differ");
    }
    let Ok(sample) = decoded else {
        return;
    };
    let mut again = Vec::new();
    to_msgpack(&sample, &mut again);
    let back = decode_sample(&again).expect("a re-encoded sample decodes");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    encode_sample(&mut a, &sample);
    encode_sample(&mut b, &back);
    assert_eq!(a, b, "msgpack round trip changed the sample");
});

//! An AMQP message body: decoding never panics and stays within its limits;
//! every sample it yields fits the ABI (nesting) and encodes into a batch the
//! SDK's decoder reads back.
#![no_main]

use collector_sdk::codec::{BatchView, encode_batch};
use collector_wire::oslo::{Limits, decode_message_within};
use collector_wire::signature::Signer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_samples: 1000,
    };
    let Ok(msg) = decode_message_within(data, &limits) else {
        return;
    };
    assert!(msg.samples.len() + msg.invalid.len() <= limits.max_samples);
    let signer = Signer::new(b"fuzz");
    for s in &msg.samples {
        let _ = signer.verify(s);
    }
    let batch = encode_batch(&msg.samples);
    let view = BatchView::new(&batch).expect("header");
    let owned = view
        .to_owned_samples()
        .expect("every decoded sample is a valid ABI sample");
    assert_eq!(owned.len(), msg.samples.len());
});

//! An HTTP input body, read as the `http://` publisher's JSON and as the
//! `opentelemetryhttp://` publisher's OTLP JSON: decoding never panics and
//! stays within its sample limit; every sample it yields encodes into a batch
//! the SDK's decoder reads back.
#![no_main]

use collector_sdk::codec::{BatchView, encode_batch};
use collector_wire::{http_body, otlp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let max = 1000;
    for samples in [
        http_body::decode(data, max),
        otlp::decode(data, max, &otlp::Options::default()),
    ]
    .into_iter()
    .flatten()
    {
        assert!(samples.len() <= max);
        let batch = encode_batch(&samples);
        let view = BatchView::new(&batch).expect("header");
        let owned = view
            .to_owned_samples()
            .expect("every decoded sample is a valid ABI sample");
        assert_eq!(owned.len(), samples.len());
    }
});

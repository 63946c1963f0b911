//! An AMQP message body: decoding never panics and stays within its limits;
//! every sample it yields fits the ABI (nesting) and encodes into a batch the
//! SDK's decoder reads back; and the transcoder the AMQP path runs gives the
//! same outcome and bytes as the owned decoder (one transcoder for every
//! input, as a decoding thread keeps one).
#![no_main]

use std::cell::RefCell;

use collector_sdk::codec::{BatchView, encode_batch};
use collector_wire::oslo::{Limits, Transcoder, decode_message_within, verify_owned};
use collector_wire::signature::Signer;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static TRANSCODER: RefCell<Transcoder> = RefCell::new(Transcoder::new(Signer::new(b"fuzz")));
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_samples: 1000,
    };
    let (mut fast, mut owned) = (vec![7u8], vec![7u8]);
    let got = TRANSCODER.with_borrow_mut(|t| t.transcode(data, &limits, &mut fast));
    let want = verify_owned(data, &limits, &Signer::new(b"fuzz"), &mut owned);
    match (got, want) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "transcoded and owned outcomes differ");
            assert_eq!(fast, owned, "transcoded and owned bytes differ");
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            assert_eq!(fast, [7], "an error left bytes behind");
        }
        (a, b) => panic!("transcoded {a:?}, owned {b:?}"),
    }
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

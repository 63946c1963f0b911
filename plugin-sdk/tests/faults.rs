//! How the decoders report a fault: the first one wins, with its offset, and a
//! count read from the bytes costs nothing once the bytes have run out (the
//! cursor's reads record a fault instead of returning `Result`s: codec.rs).

use std::time::Duration;

use collector_sdk::codec::{BatchView, DecodeError, decode_batch, encode_batch};
use collector_sdk::{Field, Number, Sample, Value};

fn sample(metadata: Option<Value>) -> Sample {
    Sample {
        source: "openstack".into(),
        counter_name: "cpu".into(),
        counter_type: "cumulative".into(),
        counter_unit: "ns".into(),
        counter_volume: Some(Number::Int(7)),
        user_id: Field::Value("u".into()),
        user_name: Field::Null,
        project_id: Field::Value("p".into()),
        project_name: Field::Absent,
        resource_id: "r".into(),
        timestamp: "2026-12-04T00:00:00".into(),
        resource_metadata: metadata,
        message_id: "m".into(),
        monotonic_time: Field::Absent,
        message_signature: Some("s".into()),
        extra: vec![],
    }
}

/// What the owned decoder and the view say of `bytes` (they must agree).
fn fault(bytes: &[u8]) -> DecodeError {
    let owned = decode_batch(bytes).expect_err("the owned decoder refuses it");
    let viewed = BatchView::new(bytes)
        .and_then(|v| v.iter().collect::<Result<Vec<_>, _>>().map(|_| ()))
        .expect_err("the view refuses it");
    assert_eq!(owned, viewed, "the two decoders report the same fault");
    owned
}

#[test]
fn the_first_fault_is_reported_with_its_offset_not_a_later_one() {
    let mut bytes = encode_batch(&[sample(None)]);
    // The batch count (8 bytes), then `source`: its length (8), its text.
    bytes[16] = 0xff;
    // Cut the batch short too: the later end of the bytes is not what is reported.
    bytes.truncate(bytes.len() - 3);
    let e = fault(&bytes);
    assert_eq!((e.offset, e.reason), (8, "string is not UTF-8"), "{e}");

    // A bad option tag (counter_volume's, after the four strings) before the cut.
    let mut bytes = encode_batch(&[sample(None)]);
    let at = 8 + [9usize, 3, 10, 2].iter().map(|n| 8 + n).sum::<usize>();
    assert_eq!(bytes[at], 1, "counter_volume's option tag");
    bytes[at] = 7;
    bytes.truncate(bytes.len() - 3);
    let e = fault(&bytes);
    assert_eq!(
        (e.offset, e.reason),
        (at + 1, "option tag is not 0 or 1"),
        "{e}"
    );
}

/// A list claiming 2^50 items, cut right after its count: refused at once as
/// short, in both decoders (each loop over a count stops at the first fault).
#[test]
fn a_huge_count_over_too_few_bytes_is_refused_at_once() {
    let good = encode_batch(&[sample(Some(Value::List(vec![])))]);
    // The metadata list's count is the 8 bytes after its tag (LIST = 7), right
    // after resource_metadata's option tag.
    let tag = [1u8, 7, 0, 0, 0];
    let at = good
        .windows(tag.len())
        .position(|w| w == tag)
        .expect("the metadata's option and list tags")
        + tag.len();
    for nested in [false, true] {
        let mut bytes = good[..at].to_vec();
        bytes.extend_from_slice(&(1u64 << 50).to_le_bytes());
        if nested {
            // One item: a map claiming 2^50 entries, then nothing.
            bytes.extend_from_slice(&8u32.to_le_bytes());
            bytes.extend_from_slice(&(1u64 << 50).to_le_bytes());
        }
        let (done, finished) = std::sync::mpsc::channel();
        let expected_at = bytes.len();
        std::thread::spawn(move || done.send(fault(&bytes)).expect("receiver"));
        let e = finished
            .recv_timeout(Duration::from_secs(20))
            .expect("the decoders stop at the end of the bytes, not after 2^50 steps");
        assert_eq!(
            (e.offset, e.reason),
            (expected_at, "unexpected end of batch"),
            "nested: {nested}: {e}"
        );
    }
}

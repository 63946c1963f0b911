//! The golden vectors (golden/NNN.bin + NNN.json, written by golden/make_golden.py,
//! an independent encoder): both decoders give back the JSON, and re-encoding
//! gives back the bytes.

use std::path::Path;

use collector_sdk::codec::{BatchView, decode_batch, decode_batch_serde, encode_batch};
use collector_sdk::json::write_sample;

fn golden() -> Vec<(String, Vec<u8>, serde_json::Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("golden dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let bin = std::fs::read(&path).expect("bin");
        let json_text = std::fs::read_to_string(path.with_extension("json")).expect("json twin");
        let json: serde_json::Value = serde_json::from_str(&json_text).expect("valid json");
        out.push((path.display().to_string(), bin, json));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 4,
        "expected the golden vectors in {}",
        dir.display()
    );
    out
}

#[test]
fn borrowed_view_gives_back_the_json() {
    for (name, bin, json) in golden() {
        let view = BatchView::new(&bin).expect("header");
        let expected = json.as_array().expect("array");
        assert_eq!(view.len() as usize, expected.len(), "{name}");
        let mut it = view.iter();
        for (i, s) in (&mut it).enumerate() {
            let s = s.unwrap_or_else(|e| panic!("{name} sample {i}: {e}"));
            let mut line = Vec::new();
            write_sample(&mut line, &s);
            let got: serde_json::Value =
                serde_json::from_slice(&line).expect("writer makes valid JSON");
            assert_eq!(&got, &expected[i], "{name} sample {i}");
        }
        it.finish().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn owned_decoder_agrees_and_reencodes_byte_for_byte() {
    for (name, bin, _) in golden() {
        let owned = decode_batch(&bin).unwrap_or_else(|e| panic!("{name}: {e}"));
        let via_view = BatchView::new(&bin)
            .and_then(|v| v.to_owned_samples())
            .expect("view");
        assert_eq!(owned, via_view, "{name}");
        let via_serde = decode_batch_serde(&bin).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(encode_batch(&owned), encode_batch(&via_serde), "{name}");
        assert_eq!(encode_batch(&owned), bin, "{name}");
    }
}

#[test]
fn truncated_batches_fail_cleanly() {
    for (name, bin, _) in golden() {
        for cut in 0..bin.len() {
            let part = &bin[..cut];
            assert!(decode_batch(part).is_err(), "{name} cut at {cut}");
            assert!(decode_batch_serde(part).is_err(), "{name} cut at {cut}");
            let view_ok = BatchView::new(part).is_ok_and(|v| {
                let mut it = v.iter();
                it.by_ref().all(|s| s.is_ok()) && it.finish().is_ok()
            });
            assert!(!view_ok, "{name} cut at {cut} decoded by the view");
        }
    }
}

/// Inputs the fuzzers found (fuzz/, docs/fuzzing.md), each refused without a panic
/// by both decoders.
#[test]
fn fuzzer_findings_are_refused_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("regressions dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("regression input");
        // A string claiming 2^64 - 1 bytes made bincode allocate before checking.
        assert!(decode_batch(&bytes).is_err(), "{}", path.display());
        assert!(decode_batch_serde(&bytes).is_err(), "{}", path.display());
        assert!(
            BatchView::new(&bytes)
                .and_then(|v| v.to_owned_samples())
                .is_err(),
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 1);
}

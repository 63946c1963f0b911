//! The golden batches of docs/ABI.md (plugin-sdk/golden/), embedded so that
//! `collector check` can dry-run any plugin with them.

/// (name, ABI v1 bytes, the same batch as JSON)
pub const GOLDEN: [(&str, &[u8], &str); 5] = [
    (
        "001-empty",
        include_bytes!("../../../plugin-sdk/golden/001-empty.bin"),
        include_str!("../../../plugin-sdk/golden/001-empty.json"),
    ),
    (
        "002-minimal",
        include_bytes!("../../../plugin-sdk/golden/002-minimal.bin"),
        include_str!("../../../plugin-sdk/golden/002-minimal.json"),
    ),
    (
        "003-ceilometer-udp",
        include_bytes!("../../../plugin-sdk/golden/003-ceilometer-udp.bin"),
        include_str!("../../../plugin-sdk/golden/003-ceilometer-udp.json"),
    ),
    (
        "004-edge-values",
        include_bytes!("../../../plugin-sdk/golden/004-edge-values.bin"),
        include_str!("../../../plugin-sdk/golden/004-edge-values.json"),
    ),
    (
        "005-deepest",
        include_bytes!("../../../plugin-sdk/golden/005-deepest.bin"),
        include_str!("../../../plugin-sdk/golden/005-deepest.json"),
    ),
];

#[cfg(test)]
mod tests {
    use super::GOLDEN;
    use crate::wire::json::sample_from_json;
    use collector_sdk::codec::encode_batch;

    /// The host's encoder produces the golden bytes (written by an independent encoder).
    #[test]
    fn host_encoder_matches_golden_bytes() {
        for (name, bin, json) in GOLDEN {
            let v: serde_json::Value = serde_json::from_str(json).expect("golden json");
            let samples: Vec<_> = v
                .as_array()
                .expect("array")
                .iter()
                .map(|s| sample_from_json(s.clone()).expect("valid sample"))
                .collect();
            assert_eq!(encode_batch(&samples), bin, "{name}");
        }
    }
}

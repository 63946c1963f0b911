//! Ceilometer's UDP datagrams in, JSON lines out, equal to what the agent sent.

use std::time::Duration;

use collector::signature;
use collector::wire::json::sample_from_json;
use collector_e2e::{Daemon, collector, fixtures, udp_to_file_config};

/// Sorted by message_id (decoder threads do not keep arrival order).
fn by_id(mut v: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    v.sort_by_key(|s| s["message_id"].as_str().unwrap_or_default().to_owned());
    v
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn fixtures_come_out_equal_and_bad_datagrams_are_dropped_and_counted() {
    let fx = fixtures();
    let d = Daemon::start(&udp_to_file_config(
        "fixture-secret",
        "max_samples = 7\nmax_delay_ms = 100",
    ));
    let bad_names = [
        "udp-truncated.msgpack",
        "udp-not-map-array.msgpack",
        "udp-not-map-int.msgpack",
        "udp-missing-counter-name.msgpack",
        "udp-counter-volume-string.msgpack",
        "udp-random-65507.bin",
        "udp-tampered-volume.msgpack",
    ];
    let bad: Vec<Vec<u8>> = bad_names
        .iter()
        .map(|n| std::fs::read(fx.join("bad").join(n)).expect("bad fixture"))
        .collect();
    let mut grams = Vec::new();
    let (mut malformed, mut bad_sig) = (0, 0);
    for i in 1..=40 {
        // A bad datagram before every good one: the good one must still arrive.
        let b = (i - 1) % bad.len();
        grams.push(bad[b].clone());
        if bad_names[b] == "udp-tampered-volume.msgpack" {
            bad_sig += 1
        } else {
            malformed += 1
        }
        grams.push(std::fs::read(fx.join(format!("udp/{i:03}.msgpack"))).expect("udp fixture"));
    }
    for i in 1..=5 {
        // Unsigned samples, while a secret is set: dropped as bad signatures.
        grams.push(
            std::fs::read(fx.join(format!("udp-unsigned/{i:03}.msgpack")))
                .expect("unsigned fixture"),
        );
        bad_sig += 1;
    }
    d.send_udp(&grams);
    let lines = d.wait_lines("out/samples.jsonl", 40, Duration::from_secs(30));
    assert_eq!(lines.len(), 40, "{}", d.log());
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);

    // Datagrams are decoded on several threads: compare by message_id, not by line order.
    let expected = by_id(json_lines(
        &std::fs::read_to_string(fx.join("udp/expected.jsonl")).expect("expected"),
    ));
    let got = by_id(json_lines(&lines.join("\n")));
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "sample {} differs", e["message_id"]);
        // What we wrote still carries a valid Ceilometer signature.
        let s = sample_from_json(g.clone()).expect("a sample");
        assert!(
            signature::verify(&s, b"fixture-secret"),
            "{} no longer verifies",
            e["message_id"]
        );
    }
    assert_eq!(
        stopped.source("udp", "messages_received"),
        grams.len() as u64
    );
    assert_eq!(stopped.source("udp", "samples_received"), 40);
    assert_eq!(stopped.source("udp", "decode_errors"), malformed);
    assert_eq!(stopped.source("udp", "bad_signatures"), bad_sig);
}

#[test]
fn empty_secret_accepts_unsigned_samples() {
    let fx = fixtures();
    let d = Daemon::start(&udp_to_file_config("", "max_delay_ms = 50"));
    let grams: Vec<Vec<u8>> = (1..=5)
        .map(|i| std::fs::read(fx.join(format!("udp-unsigned/{i:03}.msgpack"))).expect("fixture"))
        .collect();
    d.send_udp(&grams);
    let lines = d.wait_lines("out/samples.jsonl", 5, Duration::from_secs(30));
    let expected = by_id(json_lines(
        &std::fs::read_to_string(fx.join("udp-unsigned/expected.jsonl")).expect("expected"),
    ));
    assert_eq!(by_id(json_lines(&lines.join("\n"))), expected);
    assert!(d.stop().status.success());
}

#[test]
fn sigterm_flushes_the_open_batch_and_exits_zero() {
    let d = Daemon::start(&udp_to_file_config(
        "s3cret",
        "max_samples = 1000\nmax_delay_ms = 600000",
    ));
    let (status, out, err) = collector(
        &[
            "send",
            "udp",
            "--to",
            &d.udp_addr().to_string(),
            "--count",
            "37",
            "--secret",
            "s3cret",
        ],
        d.dir.path(),
    );
    assert!(status.success(), "{out}{err}");
    // Loopback delivery is immediate; the batch stays open (600 s delay) until SIGTERM.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        collector_e2e::read_lines(&d.path("out/samples.jsonl")).len(),
        0,
        "flushed before shutdown"
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert_eq!(
        collector_e2e::read_lines(&stopped.dir.path().join("out/samples.jsonl")).len(),
        37,
        "{}",
        stopped.log
    );
}

#[test]
fn default_config_listens_on_4952_and_writes_collector_data() {
    let d = Daemon::start_default();
    assert_eq!(d.udp_addr().to_string(), "127.0.0.1:4952");
    let (status, out, err) = collector(&["send", "udp", "--count", "1000"], d.dir.path());
    assert!(status.success(), "{out}{err}");
    let lines = d.wait_lines(
        "collector-data/samples.jsonl",
        1000,
        Duration::from_secs(30),
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert_eq!(lines.len(), 1000, "{}", stopped.log);
    assert!(
        stopped.log.contains("collector-data/samples.jsonl"),
        "the default output is printed at start-up"
    );
    let ids: std::collections::HashSet<String> = json_lines(&lines.join("\n"))
        .iter()
        .map(|v| v["message_id"].as_str().expect("message_id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1000, "every sample once");
}

//! State handoff that goes wrong (ABI §5.7–5.8): snapshots that trap, loop or
//! return a buffer outside memory are counted and stop costing time; a version
//! whose restore traps on the running state is not installed, and `/status`
//! shows the version that really serves.

use std::time::{Duration, Instant};

use collector::cli::samples::{Rng, realistic};
use collector::wire::msgpack;
use collector_e2e::{ConfigBuilder, Daemon, free_port, http_get, plugin};

const SECRET: &str = "handoff-secret";

fn datagrams(n: u64, seed: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut rng = Rng::new(seed + i);
            let mut out = Vec::new();
            msgpack::encode_sample(&realistic(i, &mut rng, SECRET.as_bytes()), &mut out);
            out
        })
        .collect()
}

fn status(admin: &str) -> serde_json::Value {
    let (code, body) = http_get(admin, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

fn dispatcher(st: &serde_json::Value, name: &str) -> serde_json::Value {
    st["dispatchers"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no dispatcher {name} in {st}"))
}

/// Waits until dispatcher `name` counts `n` samples ok; returns its status.
fn wait_ok(admin: &str, name: &str, n: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = dispatcher(&status(admin), name);
        if d["samples_ok"].as_u64() >= Some(n) {
            return d;
        }
        assert!(Instant::now() < deadline, "{d}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon with one dispatcher `d` running `plugin` (one sample per batch).
fn start(plugin_path: &str, extra: &str, config: &str) -> (Daemon, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let toml = ConfigBuilder::udp_to_file(SECRET, "max_samples = 1\nmax_delay_ms = 20")
        .admin(&admin, "")
        .section("reload", "debounce_ms = 100")
        .dispatcher("d", plugin_path, extra, config)
        .build();
    (Daemon::start(&toml), admin)
}

#[test]
fn failing_snapshots_are_counted_and_stop_after_three_in_a_row() {
    for (what, plugin_file, config) in [
        ("trap", "misbehave.wasm", "snapshot = 'trap'"),
        ("loop", "misbehave.wasm", "snapshot = 'loop'"),
        ("garbage", "snapshot-garbage.wat", ""),
    ] {
        let (d, admin) = start(&plugin(plugin_file), "timeout_ms = 300", config);
        // One at a time, so that each batch is a call of its own.
        for g in datagrams(12, 1) {
            d.send_udp(&[g]);
            std::thread::sleep(Duration::from_millis(30));
        }
        let st = wait_ok(&admin, "d", 12);
        assert_eq!(
            st["samples_failed"], 0,
            "{what}: the batches were taken: {st}"
        );
        assert_eq!(
            st["snapshot_failures"], 3,
            "{what}: counted, then no longer tried: {st}"
        );
        let metrics = http_get(&admin, "/metrics").1;
        assert!(
            metrics.contains("collector_snapshot_failures_total{dispatcher=\"d\"} 3"),
            "{what}: {metrics}"
        );
        let stopped = d.stop();
        assert!(stopped.status.success(), "{}", stopped.log);
        assert!(
            stopped.log.contains(
                "failed 3 times in a row, so the state of this version is no longer saved"
            ),
            "{what}: {}",
            stopped.log
        );
    }
}

#[test]
fn a_version_whose_restore_traps_is_not_installed_and_status_shows_what_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d.wasm");
    std::fs::copy(plugin("misbehave.wasm"), &path).expect("first version");
    let (d, admin) = start(&path.display().to_string(), "", "snapshot = 'some'");
    d.send_udp(&datagrams(3, 2));
    let before = wait_ok(&admin, "d", 3);
    let serving = before["version"].as_str().expect("version").to_owned();
    // The new version traps in collector_restore on the state the old one saved.
    let tmp = dir.path().join("d.wasm.tmp");
    std::fs::copy(plugin("restore-trap.wat"), &tmp).expect("new version");
    std::fs::rename(&tmp, &path).expect("deploy");
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&admin)["daemon"]["plugin_reload_failures"] != 1 {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = status(&admin);
    assert_eq!(st["daemon"]["plugin_reloads"], 0, "{st}");
    let after = dispatcher(&st, "d");
    assert_eq!(after["version"], serving.as_str(), "{after}");
    assert_eq!(after["published"], serving.as_str(), "{after}");
    assert_eq!(after["instances"], serde_json::json!([serving]), "{after}");
    // And the old version goes on serving, with its state.
    d.send_udp(&datagrams(2, 3));
    let st = wait_ok(&admin, "d", 5);
    assert_eq!(st["samples_failed"], 0, "{st}");
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert!(
        stopped.log.contains("collector_restore trapped"),
        "{}",
        stopped.log
    );
}

//! Plugins written in C (wasi-libc and freestanding), Zig, AssemblyScript and WAT
//! run side by side in the daemon on real UDP traffic; each one's output is
//! checked against what the file dispatcher wrote for the same samples.

use std::collections::HashMap;
use std::time::Duration;

use collector::cli::send::datagrams;
use collector_e2e::{ConfigBuilder, Daemon, collector, plugin, read_lines, root};

const SECRET: &str = "lang-secret";
const CPU_LIMIT: f64 = 300_000_000_000.0;
const MEMORY_LIMIT: f64 = 7000.0;

/// Adds a dispatcher of `file` with the output directory granted.
fn dispatcher(b: ConfigBuilder, name: &str, file: &str, config: &str) -> ConfigBuilder {
    b.dispatcher(
        name,
        &plugin(file),
        "dirs = [{ host = \"out\", guest = \"/data\", writable = true }]",
        config,
    )
}

fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    read_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Sums the numbers after `key=` over the log lines containing `marker`.
fn sum_field(log: &str, marker: &str, key: &str) -> f64 {
    log.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            let at = l.find(&format!("{key}="))? + key.len() + 1;
            l[at..]
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

#[test]
fn every_language_runs_in_the_daemon_on_udp_traffic() {
    let limits =
        format!("limits = {{ cpu = {CPU_LIMIT:.1}, \"memory.usage\" = {MEMORY_LIMIT:.1} }}");
    let mut b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 50\nmax_delay_ms = 100")
        .udp("");
    for (name, file, config) in [
        (
            "file",
            "file.wasm",
            "path = \"/data/samples.jsonl\"".to_owned(),
        ),
        (
            "c",
            "c-threshold.wasm",
            format!("path = \"/data/alerts.jsonl\"\n{limits}"),
        ),
        ("c-free", "c-threshold-freestanding.wasm", limits.clone()),
        (
            "zig",
            "zig-forwarder.wasm",
            "path = \"/data/zig.jsonl\"".to_owned(),
        ),
        ("as", "as-summary.wasm", "meter = \"cpu\"".to_owned()),
        ("wat", "wat-counter.wasm", String::new()),
        ("wat-json", "wat-json-echo.wasm", String::new()),
    ] {
        b = dispatcher(b, name, file, &config);
    }
    let toml = b.build();
    let d = Daemon::start(&toml);
    let n = 200;
    d.send_udp(&datagrams(n, 71, SECRET.as_bytes()));
    let _ = d.wait_lines("out/samples.jsonl", n as usize, Duration::from_secs(30));
    let _ = d.wait_lines("out/zig.jsonl", n as usize, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = d.stop();
    let log = &stopped.log;
    assert!(stopped.status.success(), "{log}");
    let out = stopped.dir.path().join("out");
    let samples = json_lines(&out.join("samples.jsonl"));
    assert_eq!(samples.len(), n as usize, "{log}");
    let by_id: HashMap<&str, &serde_json::Value> = samples
        .iter()
        .map(|s| (s["message_id"].as_str().expect("id"), s))
        .collect();

    // Zig: one line per sample with its id, meter and volume (same number type).
    let zig = json_lines(&out.join("zig.jsonl"));
    assert_eq!(zig.len(), samples.len());
    for z in &zig {
        let s = by_id[z["message_id"].as_str().expect("zig id")];
        assert_eq!(z["counter_name"], s["counter_name"]);
        assert_eq!(z["counter_volume"], s["counter_volume"]);
    }

    // C: an alert for every sample over its meter's limit, and for no other.
    let over = |s: &serde_json::Value| {
        let v = s["counter_volume"].as_f64().unwrap_or(0.0);
        match s["counter_name"].as_str() {
            Some("cpu") => v > CPU_LIMIT,
            Some("memory.usage") => v > MEMORY_LIMIT,
            _ => false,
        }
    };
    let mut expected: Vec<&str> = samples
        .iter()
        .filter(|s| over(s))
        .map(|s| s["message_id"].as_str().expect("id"))
        .collect();
    expected.sort_unstable();
    assert!(
        !expected.is_empty() && expected.len() < samples.len(),
        "the limits split the traffic"
    );
    let alerts = json_lines(&out.join("alerts.jsonl"));
    let mut got: Vec<&str> = alerts
        .iter()
        .map(|a| a["message_id"].as_str().expect("alert id"))
        .collect();
    got.sort_unstable();
    assert_eq!(got, expected, "C (wasi-libc) alerts");
    for a in &alerts {
        assert_eq!(
            a["counter_volume"],
            by_id[a["message_id"].as_str().expect("id")]["counter_volume"]
        );
    }
    let free = log.lines().filter(|l| l.contains("ALERT ")).count();
    assert_eq!(free, expected.len(), "C (freestanding) alerts in the log");

    // AssemblyScript: per-batch summaries add up to the traffic.
    assert_eq!(sum_field(log, "as-summary samples=", "samples"), n as f64);
    let cpu = samples
        .iter()
        .filter(|s| s["counter_name"] == "cpu")
        .count();
    assert_eq!(sum_field(log, "as-summary meter=cpu", "count"), cpu as f64);

    // WAT: the batch counts add up; the JSON-mode plugin saw JSON.
    let wat: u64 = log
        .lines()
        .filter_map(|l| {
            l.split("wat-counter: ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(wat, n);
    assert!(
        log.contains("wat-json: [{\"source\":\"openstack\""),
        "{log}"
    );
}

#[test]
fn every_example_plugin_passes_check_and_a_broken_one_fails_it() {
    let cases = [
        (
            "c-threshold.wasm",
            r#"{"path":"/data/alerts.jsonl","limits":{"cpu":1}}"#,
        ),
        ("c-threshold-freestanding.wasm", r#"{"limits":{"cpu":1}}"#),
        ("zig-forwarder.wasm", r#"{"path":"/data/zig.jsonl"}"#),
        ("as-summary.wasm", r#"{"meter":"cpu"}"#),
        ("wat-counter.wasm", "{}"),
        ("wat-json-echo.wasm", "{}"),
    ];
    for (file, config) in cases {
        let (status, out, err) = collector(&["check", &plugin(file), "--config", config], &root());
        assert!(status.success(), "{file}:\n{out}{err}");
        assert!(out.contains("PASS"), "{out}");
    }
    // The C plugin with its dispatch export renamed away: check names it.
    let mut wasm = std::fs::read(plugin("c-threshold-freestanding.wasm")).expect("wasm");
    let name = b"collector_dispatch";
    let at = wasm
        .windows(name.len())
        .position(|w| w == name)
        .expect("export name");
    wasm[at + name.len() - 1] = b'X';
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, wasm).expect("write");
    let (status, out, _) = collector(&["check", &broken.display().to_string()], &root());
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("does not export `collector_dispatch`"),
        "{out}"
    );
}

/// One line of the Go example's output.
struct GoLine {
    id: String,
    n: u64,
    version: u32,
    line: serde_json::Value,
}

fn go_lines(path: &std::path::Path) -> Vec<GoLine> {
    json_lines(path)
        .into_iter()
        .map(|v| GoLine {
            id: v["message_id"].as_str().expect("id").to_owned(),
            n: v["n"].as_u64().expect("n"),
            version: v["version"]
                .as_str()
                .and_then(|t| t.strip_prefix("go-version:"))
                .and_then(|t| t.parse().ok())
                .expect("version"),
            line: v,
        })
        .collect()
}

#[test]
fn a_go_plugin_runs_beside_the_file_dispatcher_on_the_same_samples() {
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 50\nmax_delay_ms = 100")
        .udp("")
        .file_dispatcher();
    let b = dispatcher(b, "go", "go-meter-totals.wasm", "path = \"/data/go.jsonl\"");
    let d = Daemon::start(&b.build());
    let n = 500;
    d.send_udp(&datagrams(n, 72, SECRET.as_bytes()));
    let _ = d.wait_lines("out/samples.jsonl", n as usize, Duration::from_secs(30));
    let _ = d.wait_lines("out/go.jsonl", n as usize, Duration::from_secs(30));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let out = stopped.dir.path().join("out");
    let samples = json_lines(&out.join("samples.jsonl"));
    let by_id: HashMap<&str, &serde_json::Value> = samples
        .iter()
        .map(|s| (s["message_id"].as_str().expect("id"), s))
        .collect();
    let go = go_lines(&out.join("go.jsonl"));
    assert_eq!(go.len(), samples.len());
    let mut per_meter: HashMap<String, u64> = HashMap::new();
    for (i, g) in go.iter().enumerate() {
        let s = by_id[g.id.as_str()];
        assert_eq!(g.line["counter_name"], s["counter_name"]);
        assert_eq!(
            g.line["counter_volume"], s["counter_volume"],
            "the same number, of the same type"
        );
        assert_eq!(g.n, i as u64 + 1, "a running count");
        let m = per_meter
            .entry(s["counter_name"].as_str().expect("meter").to_owned())
            .or_default();
        *m += 1;
        assert_eq!(g.line["meter_count"], *m);
    }
}

const GO_MARKER: &[u8] = b"go-version:000000000";

/// The Go example with its version tag set to `v`.
fn go_version(v: u32) -> Vec<u8> {
    let mut wasm = std::fs::read(plugin("go-meter-totals.wasm")).expect("go-meter-totals.wasm");
    let at = wasm
        .windows(GO_MARKER.len())
        .position(|w| w == GO_MARKER)
        .expect("version marker in go-meter-totals.wasm");
    wasm[at..at + GO_MARKER.len()].copy_from_slice(format!("go-version:{v:09}").as_bytes());
    wasm
}

#[test]
fn a_go_plugin_replaced_5_times_under_load_keeps_its_state_and_loses_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let pdir = tempfile::tempdir().expect("tempdir");
    let path = pdir.path().join("go.wasm");
    std::fs::write(&path, go_version(0)).expect("first version");
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 100\nmax_delay_ms = 50")
        .section("reload", "debounce_ms = 100")
        .udp("");
    let b = b.dispatcher(
        "go",
        &path.display().to_string(),
        "dirs = [{ host = \"out\", guest = \"/data\", writable = true }]",
        "path = \"/data/go.jsonl\"",
    );
    let d = Daemon::start(&b.build());
    let grams = datagrams(100_000, 73, SECRET.as_bytes());
    let ids: Vec<String> = grams
        .iter()
        .map(|g| {
            collector::wire::msgpack::decode_sample(g)
                .expect("own datagram")
                .message_id
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    // ~1,000 samples/s
    let load = collector_e2e::udp_load(d.udp_addr(), grams, done.clone());
    for v in 1..=5 {
        std::thread::sleep(Duration::from_millis(300));
        let tmp = path.with_extension("wasm.tmp");
        std::fs::write(&tmp, go_version(v)).expect("new version");
        std::fs::rename(&tmp, &path).expect("deploy");
        d.wait_daemon_count("plugin_reloads", u64::from(v), Duration::from_secs(120));
    }
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let sent = load.join().expect("load");
    let _ = d.wait_lines("out/go.jsonl", sent, Duration::from_secs(60));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let lines = go_lines(&stopped.dir.path().join("out/go.jsonl"));
    let handed: Vec<_> = lines
        .iter()
        .map(|l| (l.id.as_str(), l.n, l.version))
        .collect();
    collector_e2e::assert_handed_off(&handed, &ids[..sent], 5);
    assert_eq!(stopped.daemon("plugin_reloads"), 5);
}

#[test]
fn go_output_compiles_under_the_sandbox_and_its_memory_cap_holds() {
    let go = plugin("go-meter-totals.wasm");
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |limit: &str| {
        collector(
            &[
                "check",
                &go,
                "--config",
                r#"{"path":"/data/go.jsonl"}"#,
                "--memory-limit-bytes",
                limit,
            ],
            dir.path(),
        )
    };
    let (status, out, err) = check("16777216");
    assert!(
        status.success(),
        "Go's wasm features are accepted: {out}{err}"
    );
    let (status, out, _) = check("4194304");
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("memory refused") && out.contains("memory_limit_bytes is 4194304"),
        "the Go runtime and heap count against the cap: {out}"
    );
}

//! Running it as a service: metrics that count exactly, readiness that follows
//! the broker, a SIGTERM drain under AMQP load, and the systemd unit.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use collector::cli::samples::{Rng, realistic};
use collector::signature;
use collector::wire::msgpack;
use collector_e2e::amqp::{Publisher, notifications};
use collector_e2e::rabbit::Broker;
use collector_e2e::{
    ConfigBuilder, Daemon, fixtures, free_port, http_get, message_ids, metric, plugin, read_lines,
    root,
};

const SECRET: &[u8] = b"service-secret";

fn datagram(i: u64, meter: Option<&str>) -> Vec<u8> {
    let mut rng = Rng::new(1000 + i);
    let mut s = realistic(i, &mut rng, SECRET);
    if let Some(m) = meter {
        s.counter_name = m.to_owned();
        s.message_signature = Some(signature::compute(&s, SECRET));
    }
    let mut out = Vec::new();
    msgpack::encode_sample(&s, &mut out);
    out
}

#[test]
fn metrics_move_by_exactly_what_was_sent() {
    let admin = format!("127.0.0.1:{}", free_port());
    let toml = format!(
        r#"
telemetry_secret = "service-secret"
[admin]
address = "{admin}"
[batch]
max_delay_ms = 50
[sources.udp]
address = "127.0.0.1:0"
[[dispatchers]]
name = "file"
plugin = "{file}"
dirs = [{{ host = "out", guest = "/data", writable = true }}]
[[dispatchers]]
name = "picky"
plugin = "{misbehave}"
[dispatchers.config]
mode = "reject"
"#,
        file = plugin("file.wasm"),
        misbehave = plugin("misbehave.wasm")
    );
    let d = Daemon::start(&toml);
    let scrape = || http_get(&admin, "/metrics").1;
    let before = scrape();
    // 100 good samples, then one batch the `picky` dispatcher rejects, and bad input.
    let good: Vec<Vec<u8>> = (0..100).map(|i| datagram(i, None)).collect();
    d.send_udp(&good);
    let _ = d.wait_lines("out/samples.jsonl", 100, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(200));
    d.send_udp(&[datagram(100, Some("poison"))]);
    let _ = d.wait_lines("out/samples.jsonl", 101, Duration::from_secs(30));
    let fx = fixtures().join("bad");
    let bad: Vec<Vec<u8>> = [
        "udp-truncated.msgpack",
        "udp-not-map-int.msgpack",
        "udp-tampered-volume.msgpack",
    ]
    .iter()
    .map(|f| std::fs::read(fx.join(f)).expect("bad fixture"))
    .collect();
    d.send_udp(&bad);
    std::thread::sleep(Duration::from_millis(500));
    let after = scrape();
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(
        delta("collector_messages_received_total{source=\"udp\"}"),
        104.0
    );
    assert_eq!(
        delta("collector_samples_received_total{source=\"udp\"}"),
        101.0
    );
    assert_eq!(delta("collector_decode_errors_total{source=\"udp\"}"), 2.0);
    assert_eq!(delta("collector_bad_signatures_total{source=\"udp\"}"), 1.0);
    assert_eq!(
        delta("collector_samples_ok_total{dispatcher=\"file\"}"),
        101.0
    );
    assert_eq!(
        delta("collector_samples_ok_total{dispatcher=\"picky\"}"),
        100.0
    );
    assert_eq!(
        delta("collector_samples_failed_total{dispatcher=\"picky\"}"),
        1.0
    );
    assert_eq!(
        delta("collector_batches_failed_total{dispatcher=\"picky\"}"),
        1.0
    );
    assert!(
        after.contains("collector_plugin_info{dispatcher=\"file\",version=\""),
        "{after}"
    );
    assert!(
        after.contains("collector_dispatch_duration_seconds_count{dispatcher=\"file\"}"),
        "{after}"
    );
    assert_eq!(http_get(&admin, "/healthz").0, 200);
    assert_eq!(http_get(&admin, "/readyz").0, 200);
    assert!(d.stop().status.success());
}

/// `THP_enabled` in `/proc/PID/status`: 0 when `PR_SET_THP_DISABLE` is set.
fn thp_enabled(d: &Daemon) -> String {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_owned())
        .expect("a THP_enabled line (Linux 5.0 or later)")
}

#[test]
fn the_daemon_runs_without_transparent_huge_pages_unless_mimalloc_is_told_otherwise() {
    // Port 0: `udp::default_config_listens_on_4952...` holds the default port.
    let toml = "[sources.udp]\naddress = \"127.0.0.1:0\"\n\
                [[dispatchers]]\nname = \"noop\"\nplugin = \"builtin:noop\"\n";
    let d = Daemon::start(toml);
    assert_eq!(thp_enabled(&d), "0", "huge pages should be off by default");
    d.stop();
    let opts = collector_e2e::Options {
        env: vec![("MIMALLOC_ALLOW_THP".into(), "1".into())],
        ..collector_e2e::Options::default()
    };
    let d = Daemon::start_with(toml, &opts);
    assert_eq!(
        thp_enabled(&d),
        "1",
        "MIMALLOC_ALLOW_THP=1 leaves huge pages on"
    );
    d.stop();
}

#[test]
fn readyz_is_not_ready_while_the_broker_is_down() {
    let broker = Broker::start();
    let admin = format!("127.0.0.1:{}", free_port());
    let toml = format!(
        "[admin]\naddress = \"{admin}\"\n[sources.amqp]\nurl = \"{}\"\nreconnect_backoff_ms = 200\nreconnect_backoff_max_ms = 1000\n[[dispatchers]]\nname = \"noop\"\nplugin = \"builtin:noop\"\n",
        broker.url()
    );
    let d = Daemon::start(&toml);
    d.wait_readyz(Duration::from_secs(60));
    assert_eq!(http_get(&admin, "/readyz").0, 200);
    let restart = std::thread::scope(|scope| {
        let t = scope.spawn(|| broker.restart());
        let mut saw_down = false;
        while !t.is_finished() {
            let (code, body) = http_get(&admin, "/readyz");
            if code == 503 {
                assert!(body.contains("AMQP"), "{body}");
                saw_down = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        saw_down
    });
    assert!(
        restart,
        "/readyz never said not ready while the broker was down"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(&admin, "/readyz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again after the broker came back:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.stop().status.success());
}

#[test]
fn sigterm_under_amqp_load_loses_nothing_and_exits_within_the_grace_period() {
    let broker = Broker::start();
    let (bodies, ids) = notifications(60, 100, SECRET, 61);
    let toml = |out: &str| {
        ConfigBuilder::new("service-secret")
            .section("shutdown", "grace_period_ms = 10000")
            .batch("max_samples = 300\nmax_delay_ms = 100")
            .amqp(&broker.url(), "rpc = false\nprefetch_count = 5")
            .file_to("file", out)
            .build()
    };
    let d = Daemon::start(&toml("first.jsonl"));
    d.wait_readyz(Duration::from_secs(60));
    let publisher = Publisher::connect(&broker.url());
    for b in &bodies {
        publisher.publish("ceilometer", "metering.sample", b);
    }
    let _ = d.wait_lines("out/first.jsonl", 1000, Duration::from_secs(60));
    let t = Instant::now();
    let stopped = d.stop();
    let took = t.elapsed();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert!(took < Duration::from_secs(12), "shutdown took {took:?}");
    let first: HashSet<String> =
        message_ids(&read_lines(&stopped.dir.path().join("out/first.jsonl")))
            .into_iter()
            .collect();
    let acked = stopped.source("amqp", "amqp_acked") as usize;
    assert!(acked < 60, "the load was still running at SIGTERM");
    // What was not acked is still in the queue: a second collector takes it.
    let d2 = Daemon::start(&toml("second.jsonl"));
    let remaining = (60 - acked) * 100;
    let lines = d2.wait_lines("out/second.jsonl", remaining, Duration::from_secs(60));
    let second: HashSet<String> = message_ids(&lines).into_iter().collect();
    let stopped2 = d2.stop();
    assert_eq!(
        stopped2.source("amqp", "amqp_acked") as usize,
        60 - acked,
        "every message was acked exactly once in all"
    );
    let missing = ids
        .iter()
        .filter(|id| !first.contains(*id) && !second.contains(*id))
        .count();
    assert_eq!(missing, 0, "samples lost across the SIGTERM");
    // Acked means dispatched: the first collector wrote every sample of the messages it acked.
    assert!(
        first.len() >= acked * 100,
        "acked {acked} messages but wrote {} samples",
        first.len()
    );
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    assert!(
        std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok(),
        "systemd-analyze is missing: run scripts/install-test-deps.sh (make test does)"
    );
    let unit =
        std::fs::read_to_string(root().join("contrib/systemd/collector.service")).expect("unit");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("collector.service");
    // The unit names the installed binary; point it at the one just built.
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/collector",
            &collector_e2e::binary().display().to_string(),
        ),
    )
    .expect("write unit");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{text}"
    );
    assert!(
        !text.contains("collector.service:"),
        "warnings about the unit:\n{text}"
    );
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}

//! The bundled dispatchers against the real stores they write to, started on
//! private ports by the test (tests/src/backends.rs): samples from the real
//! Ceilometer publisher go through the daemon, are read back through the store's
//! own query API, and compared with what was sent, at the store's resolution.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use collector_e2e::backends::{Backend, influxdb, victoria_metrics};
use collector_e2e::{ConfigBuilder, Daemon, ceilometer_udp, dispatcher_of, plugin};

const SECRET: &str = "backend-secret";

/// Nanoseconds since the epoch of a Ceilometer timestamp (naive = UTC).
fn nanos(ts: &str) -> i64 {
    let ts = ts.trim_end_matches("+00:00");
    let (date, time) = ts.split_once('T').expect("ISO 8601");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().expect("date")).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().expect("time")).collect();
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac_ns: i64 = format!("{frac:0<9}")[..9].parse().expect("fraction");
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000_000) + frac_ns
}

/// What a store should hold of a sample: (meter, resource_id, time in ns, volume).
type Point = (String, String, i64, f64);

fn expected(published: &[serde_json::Value]) -> Vec<Point> {
    let mut v: Vec<Point> = published
        .iter()
        .map(|s| {
            (
                s["counter_name"].as_str().expect("name").to_owned(),
                s["resource_id"].as_str().expect("resource").to_owned(),
                nanos(s["timestamp"].as_str().expect("timestamp")),
                s["counter_volume"].as_f64().expect("volume"),
            )
        })
        .collect();
    v.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    v
}

/// An `influx` dispatcher writing to `store` with `config`.
fn influx(b: ConfigBuilder, name: &str, store: &Backend, config: &str) -> ConfigBuilder {
    b.dispatcher(
        name,
        &plugin("influx.wasm"),
        &format!(
            "retry_backoff_ms = 100\nretry_backoff_max_ms = 1000\n\
             [[dispatchers.endpoints]]\nname = \"influx\"\nurl = \"{}\"\n",
            store.url()
        ),
        config,
    )
}

/// Polls `read` until it returns `n` points (or 60 s pass); returns the last read.
fn wait_points(n: usize, read: impl Fn() -> Vec<Point>) -> Vec<Point> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = read();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every point of InfluxDB's database, with its identity tags checked.
fn influx_points(store: &Backend, published: &BTreeMap<String, serde_json::Value>) -> Vec<Point> {
    let mut out = Vec::new();
    for series in store.influx_query("SELECT * FROM /.*/") {
        let name = series["name"].as_str().expect("measurement").to_owned();
        let cols: Vec<&str> = series["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().expect("column"))
            .collect();
        for row in series["values"].as_array().expect("values") {
            let col = |c: &str| &row[cols.iter().position(|x| *x == c).expect("column")];
            let resource = col("resource_id").as_str().expect("resource_id").to_owned();
            let key = format!("{name}|{resource}");
            let sent = published
                .get(&key)
                .unwrap_or_else(|| panic!("{key} was never sent"));
            for (tag, field) in [
                ("project_id", "project_id"),
                ("user_id", "user_id"),
                ("unit", "counter_unit"),
                ("type", "counter_type"),
                ("source", "source"),
            ] {
                assert_eq!(col(tag).as_str(), sent[field].as_str(), "{key}: tag {tag}");
            }
            assert_eq!(
                col("host").as_str(),
                sent["resource_metadata"]["host"].as_str(),
                "{key}: metadata tag"
            );
            if let Some(ratio) = sent["resource_metadata"]["ratio"].as_f64() {
                assert_eq!(col("ratio").as_f64(), Some(ratio), "{key}: metadata field");
            }
            out.push((
                name.clone(),
                resource,
                col("time").as_i64().expect("time"),
                col("value").as_f64().expect("value"),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    out
}

/// The points of every series VictoriaMetrics holds that match `selector`,
/// named by `meter` from the metric name; ms timestamps (VictoriaMetrics keeps
/// milliseconds).
fn vm_series(store: &Backend, selector: &str, meter: impl Fn(&str) -> String) -> Vec<Point> {
    let mut out = Vec::new();
    for s in store.vm_export(selector) {
        let name = meter(s["metric"]["__name__"].as_str().expect("name"));
        let resource = s["metric"]["resource_id"]
            .as_str()
            .expect("resource")
            .to_owned();
        let values = s["values"].as_array().expect("values");
        let stamps = s["timestamps"].as_array().expect("timestamps");
        for (v, t) in values.iter().zip(stamps) {
            out.push((
                name.clone(),
                resource.clone(),
                t.as_i64().expect("timestamp"),
                v.as_f64().expect("value"),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    out
}

/// Every `*_value` series VictoriaMetrics holds with label `db` (its `/write`
/// adds the `db` of the query; its `/api/v2/write` ignores the bucket: `""`).
fn vm_points(store: &Backend, db: &str) -> Vec<Point> {
    vm_series(
        store,
        &format!("{{__name__=~\".+_value\",db=\"{db}\"}}"),
        |name| name.strip_suffix("_value").unwrap_or(name).to_owned(),
    )
}

/// VictoriaMetrics keeps milliseconds, and values as decimals of about 12
/// significant digits whose exponent a block of a series shares: a value is
/// exact to about 1e-12 of the largest value of its series (`512` comes back
/// as `510` from a series that also holds 2^64 - 1). Identities and times must
/// match exactly; values to that resolution.
fn assert_vm_equal(got: &[Point], want: &[Point], db: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "VictoriaMetrics ({db}) holds every sample"
    );
    let mut series_max: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for (m, r, _, v) in want {
        let e = series_max.entry((m.as_str(), r.as_str())).or_insert(0.0);
        *e = e.max(v.abs());
    }
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (&g.0, &g.1, g.2),
            (&w.0, &w.1, w.2),
            "VictoriaMetrics ({db}): identity and time"
        );
        let largest = series_max[&(w.0.as_str(), w.1.as_str())];
        let tolerance = 1e-12 * largest.max(w.3.abs());
        assert!(
            (g.3 - w.3).abs() <= tolerance,
            "VictoriaMetrics ({db}): {} of {} at {}: {} stored for {} sent",
            w.0,
            w.1,
            w.2,
            g.3,
            w.3
        );
    }
}

#[test]
fn the_influx_dispatcher_writes_every_sample_to_influxdb_and_victoriametrics() {
    let idb = influxdb();
    let vm = victoria_metrics();
    let b = ConfigBuilder::udp_to_file(SECRET, "max_samples = 40\nmax_delay_ms = 100");
    let b = influx(
        b,
        "influxdb",
        &idb,
        "metadata_tags = [\"host\"]\nmetadata_fields = [\"ratio\"]",
    );
    let b = influx(b, "vm-v1", &vm, "database = \"v1\"");
    let b = influx(
        b,
        "vm-v2",
        &vm,
        "api = \"v2\"\norg = \"ops\"\nbucket = \"v2\"",
    );
    let d = Daemon::start(&b.build());
    let published = ceilometer_udp(d.udp_addr(), SECRET, 200, "2025-06-01T12:00:00", 7);
    let n = published.len();
    let by_key: BTreeMap<String, serde_json::Value> = published
        .iter()
        .map(|s| {
            (
                format!(
                    "{}|{}",
                    s["counter_name"].as_str().unwrap_or(""),
                    s["resource_id"].as_str().unwrap_or("")
                ),
                s.clone(),
            )
        })
        .collect();
    let _ = d.wait_lines("out/samples.jsonl", n, Duration::from_secs(60));
    let want = expected(&published);

    let got = wait_points(n, || influx_points(&idb, &by_key));
    assert_eq!(got, want, "InfluxDB holds every sample, to the nanosecond");

    let ms = |v: &[Point]| -> Vec<Point> {
        v.iter()
            .map(|(m, r, t, x)| (m.clone(), r.clone(), t.div_euclid(1_000_000), *x))
            .collect()
    };
    for (api, db) in [("v1", "v1"), ("v2", "")] {
        let got = wait_points(n, || vm_points(&vm, db));
        assert_vm_equal(&got, &ms(&want), api);
    }
    let st = d.status();
    for name in ["influxdb", "vm-v1", "vm-v2"] {
        let x = dispatcher_of(&st, name);
        assert_eq!(x["samples_ok"].as_u64(), Some(n as u64), "{x}");
        assert_eq!(x["egress_refused"], 0, "{x}");
    }
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

/// A `prometheus` dispatcher writing to `store`'s remote-write path.
fn remote_write(b: ConfigBuilder, name: &str, store: &Backend) -> ConfigBuilder {
    b.dispatcher(
        name,
        &plugin("prometheus.wasm"),
        &format!(
            "retry_backoff_ms = 100\nretry_backoff_max_ms = 1000\n\
             [[dispatchers.endpoints]]\nname = \"prometheus\"\nurl = \"{}\"\n",
            store.url()
        ),
        "metadata_labels = [\"host\", \"flavor.name\"]",
    )
}

/// The meter of a remote-write metric name (`ceilometer_memory_usage`), as the
/// dispatcher made it from the meter's name.
fn prom_name(meter: &str) -> String {
    format!("ceilometer_{}", meter.replace('.', "_"))
}

#[test]
fn the_prometheus_dispatcher_remote_writes_every_sample_to_prometheus_and_victoriametrics() {
    let prom = collector_e2e::backends::prometheus();
    let vm = victoria_metrics();
    // One decoder thread: a series' points reach the stores in time order, as
    // remote write wants them.
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 40\nmax_delay_ms = 100")
        .udp("decode_threads = 1")
        .file_dispatcher();
    let b = remote_write(b, "prometheus", &prom);
    let b = remote_write(b, "vm", &vm);
    let d = Daemon::start(&b.build());
    // Prometheus takes samples inside its head block only: recent ones.
    let published = ceilometer_udp(d.udp_addr(), SECRET, 200, "now", 9);
    let n = published.len();
    let _ = d.wait_lines("out/samples.jsonl", n, Duration::from_secs(60));
    let want: Vec<Point> = expected(&published)
        .into_iter()
        .map(|(m, r, t, v)| (prom_name(&m), r, t.div_euclid(1_000_000), v))
        .collect::<Vec<_>>();
    let mut want = want;
    want.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    let sent_by_resource: BTreeMap<(String, String), &serde_json::Value> = published
        .iter()
        .map(|s| {
            (
                (
                    prom_name(s["counter_name"].as_str().unwrap_or("")),
                    s["resource_id"].as_str().unwrap_or("").to_owned(),
                ),
                s,
            )
        })
        .collect();

    let got = wait_points(n, || {
        let mut out = Vec::new();
        for (labels, points) in prom.prom_samples("{__name__=~\"ceilometer_.+\"}", 3) {
            let name = labels["__name__"].as_str().expect("name").to_owned();
            let resource = labels["resource_id"]
                .as_str()
                .expect("resource_id")
                .to_owned();
            let sent = sent_by_resource[&(name.clone(), resource.clone())];
            for (label, field) in [
                ("project_id", &sent["project_id"]),
                ("user_id", &sent["user_id"]),
                ("unit", &sent["counter_unit"]),
                ("type", &sent["counter_type"]),
                ("source", &sent["source"]),
                ("host", &sent["resource_metadata"]["host"]),
                ("flavor_name", &sent["resource_metadata"]["flavor"]["name"]),
            ] {
                assert_eq!(
                    labels[label].as_str(),
                    field.as_str(),
                    "{name}: label {label}"
                );
            }
            for (t, v) in points {
                out.push((name.clone(), resource.clone(), t, v));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
        out
    });
    assert_eq!(
        got, want,
        "Prometheus holds every sample, to the millisecond"
    );

    let got = wait_points(n, || {
        vm_series(&vm, "{__name__=~\"ceilometer_.+\"}", str::to_owned)
    });
    assert_vm_equal(&got, &want, "remote write");
    let st = d.status();
    for name in ["prometheus", "vm"] {
        let x = dispatcher_of(&st, name);
        assert_eq!(x["samples_ok"].as_u64(), Some(n as u64), "{x}");
    }
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

/// VictoriaMetrics is killed (SIGKILL) under AMQP load and stays down 30 s:
/// every sample arrives once it is back, no message was acked while it was
/// down, none was dead-lettered (`max_deliveries = 2`), and `/metrics` shows
/// the retries.
#[test]
fn victoriametrics_killed_for_30_s_under_amqp_load_loses_nothing() {
    use collector_e2e::amqp::{Publisher, notifications};
    use collector_e2e::rabbit::Broker;
    let broker = Broker::start();
    let mut vm = victoria_metrics();
    let (bodies, ids) = notifications(60, 20, SECRET.as_bytes(), 31);
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 100\nmax_delay_ms = 50")
        .amqp(
            &broker.url(),
            "rpc = false\nprefetch_count = 4\nmax_deliveries = 2",
        )
        .dispatcher(
            "vm",
            &plugin("influx.wasm"),
            &format!(
                "timeout_ms = 3000\nretry_backoff_ms = 200\nretry_backoff_max_ms = 2000\n\
                 [[dispatchers.endpoints]]\nname = \"influx\"\nurl = \"{}\"\n\
                 connect_timeout_ms = 300\nresponse_timeout_ms = 2000\n",
                vm.url()
            ),
            "database = \"outage\"",
        );
    let d = Daemon::start(&b.build());
    d.wait_readyz(Duration::from_secs(60));
    let publisher = Publisher::connect(&broker.url());
    let acked = |st: &serde_json::Value| st["sources"]["amqp"]["amqp_acked"].as_u64();
    for body in &bodies[..30] {
        publisher.publish("ceilometer", "metering.sample", body);
    }
    d.wait_status("the first half acked", Duration::from_secs(60), |st| {
        acked(st) == Some(30)
    });
    // VictoriaMetrics keeps its last seconds of writes in memory and a SIGKILL
    // loses them (its docs say so; here about 5 s): what it acknowledged is
    // its to keep, so the kill waits until it has written them to disk, and
    // tests what the collector does.
    assert_eq!(
        wait_points(600, || vm_points(&vm, "outage")).len(),
        600,
        "the first half is in VictoriaMetrics before the kill"
    );
    std::thread::sleep(Duration::from_secs(10));
    vm.kill();
    for body in &bodies[30..] {
        publisher.publish("ceilometer", "metering.sample", body);
    }
    std::thread::sleep(Duration::from_secs(30));
    let during = d.status();
    assert_eq!(
        acked(&during),
        Some(30),
        "acked while the backend was down: {during}"
    );
    assert_eq!(
        during["sources"]["amqp"]["amqp_dead_lettered"], 0,
        "{during}"
    );
    let retries = collector_e2e::metric(
        &d.metrics(),
        "collector_plugin_retries_total{dispatcher=\"vm\"}",
    );
    assert!(retries >= 10.0, "{retries} retries in 30 s of outage");
    vm.restart();
    d.wait_status("every message acked", Duration::from_secs(120), |st| {
        acked(st) == Some(60)
    });
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert_eq!(stopped.source("amqp", "amqp_dead_lettered"), 0);
    // Every sample in VictoriaMetrics: each has a point of its own (the
    // generated samples' timestamps are distinct within a series).
    let points = wait_points(ids.len(), || vm_points(&vm, "outage"));
    let log = vm.log();
    assert_eq!(
        points.len(),
        ids.len(),
        "every sample reached VictoriaMetrics; dispatcher: samples_ok {} batches_failed {}; \
         VictoriaMetrics log:\n{}",
        stopped.dispatcher("vm", "samples_ok"),
        stopped.dispatcher("vm", "batches_failed"),
        &log[log.len().saturating_sub(3000)..]
    );
}

/// Whole seconds since the epoch of a timestamp.
fn seconds(ts: &str) -> i64 {
    nanos(ts).div_euclid(1_000_000_000)
}

/// The resource type of each meter of the publisher: the bundled mapping's, or
/// `generic` (the dispatcher's `default_resource_type` in these tests).
fn gnocchi_type(meter: &str) -> Option<&'static str> {
    Some(match meter {
        "cpu" | "vcpus" | "memory" | "memory.usage" | "compute.instance.booting.time" => "instance",
        "disk.device.read.bytes" | "disk.device.usage" => "instance_disk",
        "network.incoming.bytes" => "instance_network_interface",
        "image.size" => "image",
        "volume.size" => "volume",
        "storage.objects" | "storage.objects.outgoing.bytes" => "swift_account",
        _ => "generic",
    })
}

/// Gnocchi, with the archive policy the tests read from: count and sum each second.
fn gnocchi_with_test_policy() -> collector_e2e::backends::Gnocchi {
    let g = collector_e2e::backends::gnocchi();
    let (code, body) = g.post(
        "/v1/archive_policy",
        &serde_json::json!({
            "name": "test-1s",
            "aggregation_methods": ["count", "sum"],
            "back_window": 0,
            "definition": [{"granularity": "1s", "timespan": "3650 days"}]
        }),
    );
    assert_eq!(code, 201, "archive policy: {body}");
    g
}

/// A `gnocchi` dispatcher writing to `g` with the test policy, its credential
/// from the environment (start the daemon with [`gnocchi_env`]).
fn gnocchi_dispatcher(b: ConfigBuilder, g: &collector_e2e::backends::Gnocchi) -> ConfigBuilder {
    b.dispatcher(
        "gnocchi",
        &plugin("gnocchi.wasm"),
        &format!(
            "timeout_ms = 20000\nretry_backoff_ms = 100\nretry_backoff_max_ms = 1000\n\
             [[dispatchers.endpoints]]\nname = \"gnocchi\"\nurl = \"{}\"\n\
             headers_env = {{ Authorization = \"GNOCCHI_AUTH\" }}\n\
             connect_timeout_ms = 300\nresponse_timeout_ms = 15000\n",
            g.api.url()
        ),
        "archive_policy = \"test-1s\"\ntimeout_ms = 15000\ndefault_resource_type = \"generic\"",
    )
}

/// The environment of a daemon with [`gnocchi_dispatcher`]: user `admin`, basic auth.
fn gnocchi_env() -> collector_e2e::Options {
    collector_e2e::Options {
        env: vec![("GNOCCHI_AUTH".into(), "Basic YWRtaW46".into())],
        ..collector_e2e::Options::default()
    }
}

/// Per (resource, meter), per second: (count, sum).
type Aggregates = BTreeMap<(String, String), BTreeMap<i64, (f64, f64)>>;

/// The count and sum of the volumes sent, for the meters the bundled mapping
/// sends to Gnocchi.
fn gnocchi_expected(published: &[serde_json::Value]) -> Aggregates {
    let mut want = Aggregates::new();
    for s in published {
        let meter = s["counter_name"].as_str().expect("name");
        if gnocchi_type(meter).is_none() {
            continue;
        }
        let rid = s["resource_id"].as_str().expect("resource").to_owned();
        let e = want
            .entry((rid, meter.to_owned()))
            .or_default()
            .entry(seconds(s["timestamp"].as_str().expect("timestamp")))
            .or_insert((0.0, 0.0));
        e.0 += 1.0;
        e.1 += s["counter_volume"].as_f64().expect("volume");
    }
    want
}

/// Reads every metric of `want` back as count and sum per second, and compares.
fn assert_gnocchi_holds(g: &collector_e2e::backends::Gnocchi, want: &Aggregates) {
    for ((rid, meter), per_second) in want {
        let mut got: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
        for (k, agg) in [(0, "count"), (1, "sum")] {
            let (code, body) = g.get(&format!(
                "/v1/resource/generic/{rid}/metric/{meter}/measures?aggregation={agg}&granularity=1&refresh=true"
            ));
            assert_eq!(code, 200, "{rid} {meter}: {body}");
            for m in body.as_array().expect("measures") {
                let t = seconds(m[0].as_str().expect("timestamp"));
                let v = m[2].as_f64().expect("value");
                let e = got.entry(t).or_insert((0.0, 0.0));
                if k == 0 {
                    e.0 = v;
                } else {
                    e.1 = v;
                }
            }
        }
        assert_eq!(
            &got, per_second,
            "{meter} of {rid}: count and sum per second"
        );
    }
}

#[test]
fn the_gnocchi_dispatcher_creates_resources_and_every_measure_aggregates_as_sent() {
    let g = gnocchi_with_test_policy();
    let b = gnocchi_dispatcher(
        ConfigBuilder::udp_to_file(SECRET, "max_samples = 50\nmax_delay_ms = 100"),
        &g,
    );
    let d = Daemon::start_with(&b.build(), &gnocchi_env());
    let published = ceilometer_udp(d.udp_addr(), SECRET, 100, "2025-06-01T12:00:00", 11);
    let n = published.len() as u64;
    d.wait_status(
        "every sample dispatched to Gnocchi",
        Duration::from_secs(120),
        |st| {
            let x = dispatcher_of(st, "gnocchi");
            x["samples_ok"].as_u64().unwrap_or(0) + x["samples_failed"].as_u64().unwrap_or(0) >= n
        },
    );
    let st = d.status();
    let x = dispatcher_of(&st, "gnocchi");
    assert_eq!(x["samples_ok"].as_u64(), Some(n), "{x}");

    let want = gnocchi_expected(&published);
    assert!(want.len() > 50, "{} metrics", want.len());
    assert_gnocchi_holds(&g, &want);
    // Resources were created with their attributes from the samples.
    for s in published.iter().filter(|s| s["counter_name"] == "cpu") {
        let rid = s["resource_id"].as_str().expect("resource");
        let (code, r) = g.get(&format!("/v1/resource/instance/{rid}"));
        assert_eq!(code, 200, "{r}");
        let md = &s["resource_metadata"];
        assert_eq!(r["host"], md["host"], "{r}");
        assert_eq!(r["display_name"], md["display_name"], "{r}");
        assert_eq!(r["flavor_name"], md["instance_type"], "{r}");
        assert_eq!(r["flavor_id"], md["flavor"]["id"], "{r}");
        assert_eq!(r["project_id"], s["project_id"], "{r}");
        assert_eq!(r["user_id"], s["user_id"], "{r}");
    }
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert!(
        !stopped.log.contains("YWRtaW46"),
        "the credential was logged"
    );
}

/// Gnocchi's API is killed (SIGKILL) under AMQP load from the real Ceilometer
/// notifier publisher and stays down 30 s: every measure arrives once it is
/// back, no message was acked while it was down, and none was dead-lettered.
#[test]
fn gnocchi_killed_for_30_s_under_amqp_load_loses_nothing() {
    use collector_e2e::rabbit::Broker;
    let broker = Broker::start();
    let mut g = gnocchi_with_test_policy();
    let b = gnocchi_dispatcher(
        ConfigBuilder::new(SECRET)
            .batch("max_samples = 50\nmax_delay_ms = 100")
            .amqp(
                &broker.url(),
                "rpc = false\nprefetch_count = 4\nmax_deliveries = 2",
            ),
        &g,
    );
    let d = Daemon::start_with(&b.build(), &gnocchi_env());
    d.wait_readyz(Duration::from_secs(60));
    let acked = |st: &serde_json::Value| st["sources"]["amqp"]["amqp_acked"].as_u64();
    let mut published = collector_e2e::ceilometer_notifier(
        &broker.oslo_url(),
        SECRET,
        100,
        "2025-06-01T12:00:00",
        21,
    );
    d.wait_status(
        "the first 10 notifications acked",
        Duration::from_secs(120),
        |st| acked(st) == Some(10),
    );
    g.api.kill();
    published.extend(collector_e2e::ceilometer_notifier(
        &broker.oslo_url(),
        SECRET,
        100,
        "2025-06-01T13:00:00",
        22,
    ));
    std::thread::sleep(Duration::from_secs(30));
    let during = d.status();
    assert_eq!(
        acked(&during),
        Some(10),
        "acked while Gnocchi was down: {during}"
    );
    assert_eq!(
        during["sources"]["amqp"]["amqp_dead_lettered"], 0,
        "{during}"
    );
    let retries = collector_e2e::metric(
        &d.metrics(),
        "collector_plugin_retries_total{dispatcher=\"gnocchi\"}",
    );
    assert!(retries >= 10.0, "{retries} retries in 30 s of outage");
    g.api.restart();
    d.wait_status("every notification acked", Duration::from_secs(180), |st| {
        acked(st) == Some(20)
    });
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert_eq!(stopped.source("amqp", "amqp_dead_lettered"), 0);
    assert_eq!(
        stopped.source("amqp", "amqp_requeued"),
        0,
        "held, not requeued"
    );
    assert_gnocchi_holds(&g, &gnocchi_expected(&published));
}

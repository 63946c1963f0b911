//! Reload benchmark: latency from the rename of a new plugin file to the first
//! batch it serves (20 new versions with a cold cache, then the same 20 again,
//! warm), under steady UDP load; then RSS before and after 200 reloads; then
//! 20 reloads under load on UDP and AMQP; then the Python example (a
//! componentize-py component) replaced 10 times under AMQP load, each version
//! compiled cold: latency, every sample once, the count carried.
//!
//! `COLLECTOR_BIN=$PWD/target/release/collector cargo bench -p collector-e2e --bench reload`

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use collector::cli::send::datagrams;
use collector::wire::msgpack;
use collector_e2e::amqp::{Publisher, notifications};
use collector_e2e::rabbit::Broker;
use collector_e2e::{Daemon, plugin};

const MARKER: &[u8] = b"tagger-version:000000000";

fn tagger(base: &[u8], v: u32) -> Vec<u8> {
    let mut wasm = base.to_vec();
    let at = wasm
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .expect("marker");
    wasm[at..at + MARKER.len()].copy_from_slice(format!("tagger-version:{v:09}").as_bytes());
    wasm
}

fn deploy(path: &Path, bytes: &[u8]) -> Instant {
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).expect("write");
    let t = Instant::now();
    std::fs::rename(&tmp, path).expect("rename");
    t
}

/// Reads new lines of the output until one carries version `v`.
fn wait_version(reader: &mut BufReader<std::fs::File>, v: u32) -> Instant {
    wait_tag(reader, &format!("tagger-version:{v:09}"))
}

/// Reads new lines of the output until one contains `tag`.
fn wait_tag(reader: &mut BufReader<std::fs::File>, tag: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => {
                if line.contains(tag) {
                    return Instant::now();
                }
            }
            Ok(n) => {
                // Partial line: rewind to its start and wait for the rest.
                let _ = reader.seek(SeekFrom::Current(-(n as i64)));
                assert!(Instant::now() < deadline, "{tag} never served");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let base = std::fs::read(plugin("tagger.wasm")).expect("tagger.wasm");
    let pdir = tempfile::tempdir().expect("tempdir");
    let path = pdir.path().join("tagger.wasm");
    std::fs::write(&path, tagger(&base, 0)).expect("v0");
    let cache = pdir.path().join("cache");
    let cfg = format!(
        r#"
telemetry_secret = "s"
[log]
level = "info"
[batch]
max_samples = 100
max_delay_ms = 5
[reload]
cache_dir = "{cache}"
[sources.udp]
address = "127.0.0.1:0"
[[dispatchers]]
name = "tagger"
plugin = "{plugin}"
dirs = [{{ host = "out", guest = "/data", writable = true }}]
"#,
        cache = cache.display(),
        plugin = path.display()
    );
    let d = Daemon::start(&cfg);
    let pid = d.pid();
    // Steady load: 2,000 samples/s.
    let stop = Arc::new(AtomicBool::new(false));
    let (to, s) = (d.udp_addr(), stop.clone());
    let grams = datagrams(1000, 9, b"s");
    let load = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut i = 0;
        while !s.load(Ordering::Relaxed) {
            for _ in 0..2 {
                let _ = sock.send_to(&grams[i % grams.len()], to);
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let out = d.path("out/tagged.jsonl");
    while !out.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut reader = BufReader::new(std::fs::File::open(&out).expect("output"));
    let mut measure = |versions: std::ops::RangeInclusive<u32>| -> Vec<f64> {
        versions
            .map(|v| {
                let t0 = deploy(&path, &tagger(&base, v));
                (wait_version(&mut reader, v) - t0).as_secs_f64() * 1000.0
            })
            .collect()
    };
    let cold = measure(1..=20);
    let warm = measure(1..=20);
    println!(
        "reload latency, rename → first batch served by the new version (20 reloads each, under 2,000 samples/s):"
    );
    for (name, v) in [("cold cache", cold), ("warm cache", warm)] {
        println!(
            "  {name}: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(v.clone(), 0.5),
            percentile(v.clone(), 0.99),
            percentile(v, 1.0)
        );
    }
    let before = rss_kib(pid);
    let bar = collector_e2e::progress(200, "reloads");
    for i in 0..200u32 {
        bar.inc(1);
        let v = 1 + i % 20;
        let t0 = deploy(&path, &tagger(&base, v));
        let _ = t0;
        wait_version(&mut reader, v);
    }
    bar.finish_and_clear();
    let after = rss_kib(pid);
    println!(
        "RSS: {before} KiB before 200 reloads, {after} KiB after ({:+.1} %)",
        (after as f64 - before as f64) * 100.0 / before as f64
    );
    stop.store(true, Ordering::Relaxed);
    let _ = load.join();
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    under_load(&base);
    python_reloads();
}

/// The Python example, py-file, replaced 10 times under AMQP load (1,000
/// samples/s, 50 a message), each version new to the cache (a cold compile).
fn python_reloads() {
    let version = collector_e2e::py_file_version;
    let broker = Broker::start();
    let pdir = tempfile::tempdir().expect("tempdir");
    let path = pdir.path().join("py-file.wasm");
    std::fs::write(&path, version(0)).expect("v0");
    let cfg = collector_e2e::ConfigBuilder::new("s")
        .batch("max_samples = 100\nmax_delay_ms = 50")
        .section(
            "reload",
            &format!(
                "debounce_ms = 100\ncache_dir = \"{}\"",
                pdir.path().join("cache").display()
            ),
        )
        .amqp(&broker.url(), "rpc = false\nprefetch_count = 20")
        .dispatcher(
            "py",
            &path.display().to_string(),
            "dirs = [{ host = \"out\", guest = \"/data\", writable = true }]",
            "path = \"/data/py.jsonl\"",
        )
        .build();
    let d = Daemon::start(&cfg);
    d.wait_readyz(Duration::from_secs(120));
    let (bodies, ids) = notifications(4_000, 50, b"s", 300);
    let done = Arc::new(AtomicBool::new(false));
    let load = collector_e2e::amqp::amqp_load(broker.url(), bodies, done.clone());
    let out = d.path("out/py.jsonl");
    while !out.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut reader = BufReader::new(std::fs::File::open(&out).expect("output"));
    let bar = collector_e2e::progress(10, "Python reloads under AMQP load");
    let latencies: Vec<f64> = (1..=10)
        .map(|v| {
            std::thread::sleep(Duration::from_millis(500));
            let t0 = deploy(&path, &version(v));
            let ms =
                (wait_tag(&mut reader, &format!("py-version:{v:09}")) - t0).as_secs_f64() * 1e3;
            bar.inc(1);
            ms
        })
        .collect();
    bar.finish_and_clear();
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let sent = load.join().expect("load") * 50;
    let _ = d.wait_lines("out/py.jsonl", sent, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut carried = true;
    let lines = collector_e2e::read_lines(&stopped.dir.path().join("out/py.jsonl"));
    for (i, l) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).expect("line");
        *seen
            .entry(v["message_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
        carried &= v["n"].as_u64() == Some(i as u64 + 1);
    }
    let once = ids[..sent]
        .iter()
        .filter(|id| seen.get(*id) == Some(&1))
        .count();
    println!(
        "Python example (componentize-py) replaced 10 times under AMQP load (1,000 samples/s), \
         each version compiled cold:"
    );
    println!(
        "  rename → first batch of the new version: median {:.0} ms, max {:.0} ms",
        percentile(latencies.clone(), 0.5),
        percentile(latencies, 1.0)
    );
    println!(
        "  {once}/{sent} samples dispatched exactly once, {} lines; count carried across versions: {carried}",
        lines.len()
    );
}

/// One run of `secs` seconds at `rate` samples/s on each of UDP and AMQP, with
/// `reloads` plugin replacements spread over it; returns (AMQP ids seen exactly
/// once / sent, UDP received / sent, versions in order?).
fn run_load(
    base: &[u8],
    broker: &Broker,
    secs: u64,
    rate: usize,
    reloads: u32,
    seed: u64,
) -> (usize, usize, usize, usize, bool) {
    let pdir = tempfile::tempdir().expect("tempdir");
    let path = pdir.path().join("tagger.wasm");
    std::fs::write(&path, tagger(base, 0)).expect("v0");
    let cfg = format!(
        r#"
telemetry_secret = "s"
[batch]
max_samples = 1000
max_delay_ms = 50
[reload]
cache = false
[sources.udp]
address = "127.0.0.1:0"
[sources.amqp]
url = "{url}"
rpc = false
[admin]
address = "127.0.0.1:0"
[[dispatchers]]
name = "tagger"
plugin = "{plugin}"
queue_batches = 256
dirs = [{{ host = "out", guest = "/data", writable = true }}]
"#,
        url = broker.url(),
        plugin = path.display()
    );
    let d = Daemon::start(&cfg);
    d.wait_readyz(Duration::from_secs(60));
    let per_msg = 100;
    let messages = rate * secs as usize / per_msg;
    let (bodies, amqp_ids) = notifications(messages, per_msg, b"s", seed);
    let grams = datagrams((rate * secs as usize) as u64, seed + 1, b"s");
    let udp_ids: Vec<String> = grams
        .iter()
        .map(|g| msgpack::decode_sample(g).expect("datagram").message_id)
        .collect();
    let url = broker.url();
    let amqp = std::thread::spawn(move || {
        let p = Publisher::connect(&url);
        let start = Instant::now();
        for (i, b) in bodies.iter().enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 * per_msg as f64 / rate as f64);
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            p.publish("ceilometer", "metering.sample", b);
        }
    });
    let to = d.udp_addr();
    let udp = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let start = Instant::now();
        for (i, chunk) in grams.chunks(50).enumerate() {
            let due = start + Duration::from_secs_f64((i * 50) as f64 / rate as f64);
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            for g in chunk {
                let _ = sock.send_to(g, to);
            }
        }
    });
    let bar = collector_e2e::progress(u64::from(reloads.max(1)), "reloads under load");
    for v in 1..=reloads {
        std::thread::sleep(Duration::from_millis(secs * 1000 / u64::from(reloads + 1)));
        deploy(&path, &tagger(base, v));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = amqp.join();
    let _ = udp.join();
    let total = amqp_ids.len() + udp_ids.len();
    let _ = d.wait_lines("out/tagged.jsonl", total, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let stopped = d.stop();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut versions = Vec::new();
    for l in collector_e2e::read_lines(&stopped.dir.path().join("out/tagged.jsonl")) {
        let v: serde_json::Value = serde_json::from_str(&l).expect("line");
        *seen
            .entry(v["message_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
        versions.push(v["version"].as_str().unwrap_or_default().to_owned());
    }
    let once = amqp_ids
        .iter()
        .filter(|id| seen.get(*id) == Some(&1))
        .count();
    let udp_got = udp_ids.iter().filter(|id| seen.contains_key(*id)).count();
    let contiguous = versions.windows(2).all(|w| w[0] <= w[1]);
    (once, amqp_ids.len(), udp_got, udp_ids.len(), contiguous)
}

/// 20 reloads under steady load on both sources, next to the same load without reloads.
fn under_load(base: &[u8]) {
    let broker = Broker::start();
    let (secs, rate) = (10, 12_000);
    println!(
        "under load: {rate} samples/s on UDP and {rate} on AMQP (100 per message) for {secs} s, tagger plugin"
    );
    for (label, reloads, seed) in [("no reloads", 0, 100), ("20 reloads", 20, 200)] {
        let (once, amqp, udp_got, udp, contiguous) =
            run_load(base, &broker, secs, rate, reloads, seed);
        println!(
            "  {label}: AMQP {once}/{amqp} samples dispatched exactly once; UDP {udp_got}/{udp} received ({} lost); \
             versions contiguous: {contiguous}",
            udp - udp_got
        );
    }
}

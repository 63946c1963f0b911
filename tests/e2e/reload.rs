//! Hot reload: a plugin replaced while samples flow on UDP and AMQP loses and
//! duplicates nothing, each version's output is contiguous, its state carries
//! over; broken files leave the old version serving.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use collector::cli::send::datagrams;
use collector::wire::msgpack;
use collector_e2e::amqp::notifications;
use collector_e2e::rabbit::Broker;
use collector_e2e::{ConfigBuilder, Daemon, plugin, read_lines};

const SECRET: &str = "reload-secret";
const MARKER: &[u8] = b"tagger-version:000000000";

/// The tagger plugin with its version tag set to `v`.
fn tagger(v: u32) -> Vec<u8> {
    let mut wasm = std::fs::read(plugin("tagger.wasm")).expect("tagger.wasm");
    let at = wasm
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .expect("version marker in tagger.wasm");
    wasm[at..at + MARKER.len()].copy_from_slice(format!("tagger-version:{v:09}").as_bytes());
    wasm
}

/// Replaces the plugin file the way deployment tools should: write aside, rename over.
fn deploy(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).expect("write new version");
    std::fs::rename(&tmp, path).expect("rename over the plugin");
}

fn config(plugin_path: &Path, broker: Option<&Broker>) -> String {
    let mut b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 200\nmax_delay_ms = 50")
        .section("reload", "debounce_ms = 100")
        .udp("");
    if let Some(broker) = broker {
        b = b.amqp(&broker.url(), "rpc = false\nprefetch_count = 20");
    }
    b.dispatcher(
        "tagger",
        &plugin_path.display().to_string(),
        "dirs = [{ host = \"out\", guest = \"/data\", writable = true }]",
        "",
    )
    .build()
}

struct Line {
    version: u32,
    id: String,
    n: u64,
}

fn tagged(path: &Path) -> Vec<Line> {
    read_lines(path)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            let tag = v["version"].as_str().expect("version");
            Line {
                version: tag
                    .trim_start_matches("tagger-version:")
                    .parse()
                    .expect("version number"),
                id: v["message_id"].as_str().expect("id").to_owned(),
                n: v["n"].as_u64().expect("n"),
            }
        })
        .collect()
}

/// Signed datagrams sent one by one, each checked to come out of the version expected.
struct Probe {
    sock: UdpSocket,
    grams: Vec<Vec<u8>>,
}

impl Probe {
    fn new(n: u64, seed: u64) -> Probe {
        Probe {
            sock: UdpSocket::bind("127.0.0.1:0").expect("bind"),
            grams: datagrams(n, seed, SECRET.as_bytes()),
        }
    }

    /// Sends datagram `i` (the `i`-th sent) and waits for its line, tagged `expect_version`.
    fn send(&self, d: &Daemon, i: usize, expect_version: u32) {
        self.sock
            .send_to(&self.grams[i], d.udp_addr())
            .expect("send");
        let lines = d.wait_lines("out/tagged.jsonl", i + 1, Duration::from_secs(30));
        assert_eq!(lines.len(), i + 1, "{}", d.log());
        assert_eq!(
            tagged(&d.path("out/tagged.jsonl"))[i].version,
            expect_version,
            "{}",
            d.log()
        );
    }
}

fn plugin_dir(first: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tagger.wasm");
    std::fs::write(&path, first).expect("first version");
    (dir, path)
}

#[test]
fn plugin_replaced_20_times_under_udp_and_amqp_load_loses_and_duplicates_nothing() {
    let broker = Broker::start();
    let (_pdir, path) = plugin_dir(&tagger(0));
    let d = Daemon::start(&config(&path, Some(&broker)));
    d.wait_readyz(Duration::from_secs(60));

    // Load on both sources until the 20 reloads are done.
    let (bodies, all_amqp_ids) = notifications(400, 50, SECRET.as_bytes(), 41);
    let grams = datagrams(40_000, 42, SECRET.as_bytes());
    let all_udp_ids: Vec<String> = grams
        .iter()
        .map(|g| msgpack::decode_sample(g).expect("own datagram").message_id)
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let amqp_load = collector_e2e::amqp::amqp_load(broker.url(), bodies, done.clone());
    // ~1,000 samples/s
    let udp_load = collector_e2e::udp_load(d.udp_addr(), grams, done.clone());
    for v in 1..=20 {
        std::thread::sleep(Duration::from_millis(100));
        deploy(&path, &tagger(v));
        d.wait_daemon_count("plugin_reloads", u64::from(v), Duration::from_secs(60));
    }
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let amqp_ids = &all_amqp_ids[..amqp_load.join().expect("amqp load") * 50];
    let udp_ids = &all_udp_ids[..udp_load.join().expect("udp load")];
    let total = amqp_ids.len() + udp_ids.len();
    let _ = d.wait_lines("out/tagged.jsonl", total, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let lines = tagged(&stopped.dir.path().join("out/tagged.jsonl"));

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for l in &lines {
        *seen.entry(l.id.as_str()).or_default() += 1;
    }
    for id in amqp_ids {
        assert_eq!(
            seen.get(id.as_str()),
            Some(&1),
            "AMQP sample {id} not dispatched exactly once"
        );
    }
    let udp_lost = udp_ids
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .count();
    assert_eq!(
        udp_lost, 0,
        "UDP samples lost at 1,000/s (none are lost at this rate without reloads)"
    );
    assert_eq!(lines.len(), total, "no duplicates");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            l.n,
            i as u64 + 1,
            "the count was not carried across versions at line {}",
            i + 1
        );
    }
    assert!(
        lines.windows(2).all(|w| w[0].version <= w[1].version),
        "a version's output is not contiguous"
    );
    let versions: std::collections::BTreeSet<u32> = lines.iter().map(|l| l.version).collect();
    assert_eq!(stopped.daemon("plugin_reloads"), 20, "{}", stopped.log);
    assert!(
        versions.len() >= 10,
        "only versions {versions:?} served batches"
    );
    assert_eq!(versions.last(), Some(&20));
}

#[test]
fn broken_files_leave_the_old_version_serving_until_a_good_one_comes() {
    let (_pdir, path) = plugin_dir(&tagger(1));
    let d = Daemon::start(&config(&path, None));
    let probe = Probe::new(4, 43);
    let send = |i: usize, expect_version: u32| probe.send(&d, i, expect_version);
    send(0, 1);
    let good = tagger(2);
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "corrupt",
            (0..20_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
        ),
        ("half-written", good[..good.len() / 2].to_vec()),
        (
            "missing export",
            std::fs::read(plugin("missing-export.wat")).expect("fixture"),
        ),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        // Written in place, not renamed: the watcher sees the file as it is.
        std::fs::write(&path, bytes).expect("write broken file");
        d.wait_daemon_count(
            "plugin_reload_failures",
            i as u64 + 1,
            Duration::from_secs(60),
        );
        // The failure is counted, and its log line names the file and the reason.
        let log = d.log();
        let failure = log
            .lines()
            .filter(|l| l.contains("Plugin reload failed"))
            .nth(i)
            .unwrap_or_default();
        assert!(
            failure.contains("tagger.wasm"),
            "{what}: the file is not named: {failure}"
        );
        if *what == "missing export" {
            assert!(failure.contains("collector_dispatch"), "{failure}");
        }
    }
    send(1, 1);
    deploy(&path, &good);
    d.wait_daemon_count("plugin_reloads", 1, Duration::from_secs(60));
    send(2, 2);
    let stopped = d.stop();
    assert_eq!(stopped.daemon("plugin_reload_failures"), 3);
    assert_eq!(stopped.daemon("plugin_reloads"), 1);
}

/// Where the data section (id 11) of a module starts: what comes before it is a
/// valid module of its own, without its data.
fn data_section_start(wasm: &[u8]) -> usize {
    let mut i = 8;
    while i < wasm.len() {
        let id = wasm[i];
        let (mut len, mut shift, mut j) = (0usize, 0, i + 1);
        loop {
            let b = wasm[j];
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            j += 1;
            if b < 0x80 {
                break;
            }
        }
        if id == 11 {
            return i;
        }
        i = j + len;
    }
    panic!("no data section")
}

#[test]
fn a_file_written_in_place_with_a_pause_is_only_loaded_whole() {
    use std::io::Write;
    let (_pdir, path) = plugin_dir(&tagger(1));
    let d = Daemon::start(&config(&path, None));
    let probe = Probe::new(3, 44);
    let send = |i: usize, expect_version: u32| probe.send(&d, i, expect_version);
    send(0, 1);
    let next = tagger(2);
    let cut = data_section_start(&next);
    assert!(
        loads_as_a_plugin(&next[..cut]),
        "the first part alone must be a valid module for this test to mean anything"
    );
    // One writer: the first part, a pause of ten debounce periods, then the rest.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("open in place");
    f.write_all(&next[..cut]).expect("first part");
    f.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(1000));
    send(1, 1);
    f.write_all(&next[cut..]).expect("the rest");
    drop(f);
    d.wait_daemon_count("plugin_reloads", 1, Duration::from_secs(60));
    send(2, 2);
    let stopped = d.stop();
    assert_eq!(
        stopped.daemon("plugin_reloads"),
        1,
        "only the whole file was loaded:\n{}",
        stopped.log
    );
    assert_eq!(stopped.daemon("plugin_reload_failures"), 0);
}

/// Compiles `wasm` and checks it against the ABI, as the daemon would.
fn loads_as_a_plugin(wasm: &[u8]) -> bool {
    let rt = collector::plugin::Runtime::new(None).expect("runtime");
    rt.compile("prefix", wasm).is_ok()
}

#[test]
fn a_symlinked_plugin_follows_its_target_and_a_repointed_link() {
    let links = tempfile::tempdir().expect("tempdir");
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let target = first.path().join("real.wasm");
    std::fs::write(&target, tagger(1)).expect("first version");
    let link = links.path().join("tagger.wasm");
    std::os::unix::fs::symlink(&target, &link).expect("link");
    let d = Daemon::start(&config(&link, None));
    let probe = Probe::new(4, 45);
    let send = |i: usize, expect_version: u32| probe.send(&d, i, expect_version);
    send(0, 1);
    // The target changes (renamed over, in its own directory).
    deploy(&target, &tagger(2));
    d.wait_daemon_count("plugin_reloads", 1, Duration::from_secs(60));
    send(1, 2);
    // The link is pointed elsewhere, atomically (as `ln -sfn` through a rename).
    let other = second.path().join("other.wasm");
    std::fs::write(&other, tagger(3)).expect("third version");
    let tmp_link = links.path().join("tagger.wasm.new");
    std::os::unix::fs::symlink(&other, &tmp_link).expect("new link");
    std::fs::rename(&tmp_link, &link).expect("swap link");
    d.wait_daemon_count("plugin_reloads", 2, Duration::from_secs(60));
    send(2, 3);
    // And the new target is watched in turn, here written in place.
    std::fs::write(&other, tagger(4)).expect("fourth version");
    d.wait_daemon_count("plugin_reloads", 3, Duration::from_secs(60));
    send(3, 4);
    let stopped = d.stop();
    assert_eq!(stopped.daemon("plugin_reloads"), 3);
}

//! The AMQP source against a private 3-node RabbitMQ cluster with quorum
//! queues, fed by real Ceilometer through a three-host `transport_url`: a node
//! SIGKILLed under load (three times, a different node each time), and two
//! collectors competing for the same queues.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use collector_e2e::rabbit::Cluster;
use collector_e2e::{ConfigBuilder, Daemon, http_get, message_ids, read_lines, root};

use crate::amqp::{SECRET, by_id, ceilometer_python, json_file, start, wait_ids};

/// Ceilometer's notifier publisher, with `rabbit_quorum_queue = true`, sending
/// `count` samples in notifications of 10 to `url`, in the background. oslo's
/// errors while it fails over to another node and publishes again are not
/// failures (`--tolerate-reconnects`); giving up on a message still is.
fn ceilometer_notifier(url: &str, count: usize, seed: usize, out: &Path) -> Child {
    Command::new(ceilometer_python())
        .arg(root().join("scripts/ceilometer-publish.py"))
        .args([
            "--publisher",
            "notifier",
            "--rabbit-quorum-queue",
            "--tolerate-reconnects",
        ])
        .args(["--secret", SECRET, "--batch", "10", "--timeout", "240"])
        .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
        .args(["--transport-url", url])
        .arg("--out")
        .arg(out)
        .spawn()
        .expect("run ceilometer-publish.py")
}

fn wait_success(mut child: Child, what: &str) {
    let status = child.wait().expect("wait for ceilometer-publish.py");
    assert!(
        status.success(),
        "{what}: ceilometer-publish.py failed ({status})"
    );
}

/// The AMQP port of the broker `/status` says the collector consumes from.
fn consuming_from(status: &serde_json::Value) -> Option<u16> {
    let broker = status["sources"]["amqp"]["broker"].as_str()?;
    let hostport = broker.split('@').next_back()?.split('/').next()?;
    hostport.rsplit(':').next()?.parse().ok()
}

fn received(status: &serde_json::Value) -> u64 {
    status["sources"]["amqp"]["samples_received"]
        .as_u64()
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Real Ceilometer publishes through a three-host `transport_url` to quorum
/// queues of a 3-node cluster while the collector (same `transport_url`)
/// consumes; the node the collector consumes from is SIGKILLed under that load,
/// three times (each node once, restarted in between). Every sample arrives;
/// duplicates only from redeliveries and republished messages, bounded by
/// what was in flight; `/status` shows the node it failed over to, `/readyz`
/// stays ready on the surviving nodes, and the log names both sides.
#[test]
fn a_cluster_node_killed_under_load_loses_nothing_and_fails_over() {
    let cluster = Cluster::start(3, None);
    let url = cluster.oslo_url(&[0, 1, 2]);
    const PREFETCH: u64 = 4;
    const PER_MESSAGE: u64 = 10;
    // Enough that the publisher still sends when the node dies (asserted).
    const PER_ROUND: usize = 3000;
    // Slower than the publisher (4 messages in flight, a batch each 200 ms), so
    // a backlog waits in the queue when the node dies: "consumed again" then
    // measures the collector's failover, not the publisher's.
    let cfg = ConfigBuilder::new(SECRET)
        .batch("max_samples = 1000\nmax_delay_ms = 200")
        .amqp(
            &url,
            &format!(
                "rabbit_quorum_queue = true\nprefetch_count = {PREFETCH}\n\
                 reconnect_backoff_ms = 100\nheartbeat_timeout_threshold = 10"
            ),
        )
        .file_dispatcher()
        .build();
    let d = start(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let mut published = Vec::new();
    let (mut failovers, mut reconnects) = (Vec::new(), Vec::new());
    let mut victims = Vec::new();
    let mut not_ready_polls = Vec::new();
    for round in 0..3 {
        let out = dir.path().join(format!("round-{round}.jsonl"));
        let before = received(&d.status());
        let mut publisher = ceilometer_notifier(&url, PER_ROUND, round + 1, &out);
        // Under load: the collector takes this round's samples, the publisher runs.
        let deadline = Instant::now() + Duration::from_secs(120);
        while received(&d.status()) < before + 50 {
            assert!(
                Instant::now() < deadline,
                "round {round}: nothing consumed:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = d.status();
        let port = consuming_from(&status).expect("/status names the broker it consumes from");
        let victim = cluster.index_of_port(port).expect("a node of the cluster");
        assert!(
            publisher.try_wait().unwrap().is_none(),
            "round {round}: the publisher finished before the kill; not under load"
        );
        cluster.node(victim).kill();
        let killed = Instant::now();
        // Failed over: /status names another node; then samples come again.
        let deadline = killed + Duration::from_secs(60);
        let mut not_ready = 0;
        let (reconnected, new_port, received_then) = loop {
            let st = d.status();
            if http_get(&d.admin_addr(), "/readyz").0 != 200 {
                not_ready += 1;
            }
            if let Some(p) = consuming_from(&st).filter(|&p| p != port) {
                break (killed.elapsed(), p, received(&st));
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no failover in 60 s:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let consumed = loop {
            if received(&d.status()) > received_then {
                break killed.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: nothing consumed after the failover:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // Not ready from the kill until it consumes again (about half a second
        // here, polled every 10 ms); then ready on the two surviving nodes.
        assert!(
            not_ready > 0,
            "round {round}: /readyz never showed the failover"
        );
        let (code, body) = http_get(&d.admin_addr(), "/readyz");
        assert_eq!(code, 200, "ready on the two surviving nodes: {body}");
        not_ready_polls.push(not_ready);
        eprintln!(
            "round {round}: killed node {victim} ({}, :{port}); consuming from :{} after \
             {reconnected:?}, first sample after {consumed:?}",
            cluster.node(victim).node(),
            new_port
        );
        wait_success(publisher, &format!("round {round}"));
        published.extend(json_file(&out));
        cluster.node(victim).restart();
        cluster.wait_running(3, Duration::from_secs(60));
        failovers.push(consumed);
        reconnects.push(reconnected);
        victims.push((victim, port));
    }
    assert_eq!(published.len(), 3 * PER_ROUND);
    let want: HashSet<String> = published
        .iter()
        .map(|s| s["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(want.len(), 3 * PER_ROUND);
    let got = wait_ids(
        &d.path("out/samples.jsonl"),
        &want,
        Duration::from_secs(180),
    );
    std::thread::sleep(Duration::from_millis(500));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let lines = json_file(&stopped.dir.path().join("out/samples.jsonl"));
    let mut seen: HashMap<String, serde_json::Value> = HashMap::new();
    for l in lines {
        seen.entry(l["message_id"].as_str().unwrap().to_owned())
            .or_insert(l);
    }
    let missing = want.iter().filter(|w| !seen.contains_key(*w)).count();
    assert_eq!(missing, 0, "{missing} samples lost:\n{}", stopped.log);
    assert_eq!(
        seen.len(),
        want.len(),
        "nothing but what Ceilometer published"
    );
    // Each sample as Ceilometer built it, duplicates or not.
    assert_eq!(by_id(seen.into_values().collect()), by_id(published));
    let duplicates = got.len() - want.len();
    // At-least-once: per kill, the deliveries in flight (prefetch) redelivered,
    // and one notification the publisher sent again when its confirm was lost.
    let bound = 3 * (PREFETCH + 1) * PER_MESSAGE;
    assert!(
        duplicates as u64 <= bound,
        "{duplicates} duplicates, more than the {bound} in flight:\n{}",
        stopped.log
    );
    let redelivered = stopped.source("amqp", "amqp_redelivered");
    assert!(
        stopped.source("amqp", "amqp_reconnects") >= 3,
        "{}",
        stopped.log
    );
    for (victim, port) in &victims {
        assert!(
            stopped
                .log
                .lines()
                .any(|l| l.contains("AMQP is down") && l.contains(&format!("127.0.0.1:{port}"))),
            "the log names node {victim} as lost:\n{}",
            stopped.log
        );
    }
    // At least one per kill (a session that fails while the quorum queues
    // elect a new leader would add one).
    assert!(
        stopped.log.matches("AMQP is back").count() >= 3,
        "a reconnection per kill:\n{}",
        stopped.log
    );
    assert!(
        !stopped.log.contains("PRECONDITION_FAILED"),
        "{}",
        stopped.log
    );
    assert!(
        !stopped.log.contains("guest:guest"),
        "a password of the transport_url in the log:\n{}",
        stopped.log
    );
    eprintln!(
        "cluster failover: consuming again after {:?} (median; runs {failovers:?}), reconnected \
         after {:?} (median; runs {reconnects:?}); {duplicates} duplicate samples, {redelivered} \
         redelivered messages; /readyz not ready at {not_ready_polls:?} polls",
        median(failovers.clone()),
        median(reconnects.clone())
    );
}

/// Two collectors on the cluster, each listing the nodes in its own order (so
/// they sit on different nodes), one over TLS with a client certificate, the
/// other plain, compete for the same quorum queues: both get samples, and
/// together exactly what Ceilometer published.
#[test]
fn two_collectors_on_a_cluster_share_the_load_exactly() {
    let tls = collector_e2e::http::Tls::make();
    let cluster = Cluster::start(3, Some(&tls));
    let config = |url: &str, extra: &str| {
        ConfigBuilder::new(SECRET)
            .batch("max_samples = 1000\nmax_delay_ms = 100")
            .amqp(
                url,
                &format!("rabbit_quorum_queue = true\nprefetch_count = 2\n{extra}"),
            )
            .file_dispatcher()
            .build()
    };
    let ssl = format!(
        "ssl = true\nssl_ca_file = \"{}\"\nssl_cert_file = \"{}\"\nssl_key_file = \"{}\"",
        tls.path("ca.pem"),
        tls.path("client.pem"),
        tls.path("client.key")
    );
    let a = start(&config(&cluster.oslo_tls_url(&[0, 1, 2]), &ssl));
    let b = start(&config(&cluster.oslo_url(&[1, 2, 0]), ""));
    let node_of = |d: &Daemon| {
        consuming_from(&d.status())
            .and_then(|p| cluster.index_of_port(p))
            .expect("consuming from a node of the cluster")
    };
    assert_eq!(
        consuming_from(&a.status()),
        cluster.node(0).tls_port(),
        "the first collector is on node 0's TLS listener"
    );
    assert_eq!((node_of(&a), node_of(&b)), (0, 1), "on different nodes");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("published.jsonl");
    wait_success(
        ceilometer_notifier(&cluster.oslo_url(&[2, 0, 1]), 2000, 7, &out),
        "publish",
    );
    let published = json_file(&out);
    let want: HashSet<String> = message_ids(&read_lines(&out)).into_iter().collect();
    assert_eq!(want.len(), 2000);
    let deadline = Instant::now() + Duration::from_secs(120);
    let count = |d: &Daemon| message_ids(&read_lines(&d.path("out/samples.jsonl"))).len();
    while count(&a) + count(&b) < 2000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (sa, sb) = (a.stop(), b.stop());
    assert!(sa.status.success(), "{}", sa.log);
    assert!(sb.status.success(), "{}", sb.log);
    let la = json_file(&sa.dir.path().join("out/samples.jsonl"));
    let lb = json_file(&sb.dir.path().join("out/samples.jsonl"));
    assert!(
        !la.is_empty() && !lb.is_empty(),
        "both took part: {} and {}",
        la.len(),
        lb.len()
    );
    eprintln!(
        "two collectors on the cluster: {} + {} samples",
        la.len(),
        lb.len()
    );
    let mut all = la;
    all.extend(lb);
    assert_eq!(all.len(), 2000, "exactly once between them");
    assert_eq!(by_id(all), by_id(published));
}

//! The AMQP source against a private RabbitMQ: Ceilometer's captured messages,
//! at-least-once delivery through dispatcher failures, broker restarts and a
//! killed collector, poison messages, and real Ceilometer as the client.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use collector_e2e::amqp::{Publisher, notifications};
use collector_e2e::rabbit::{Broker, NodeOptions};
use collector_e2e::{ConfigBuilder, Daemon, fixtures, message_ids, plugin, read_lines, root};

pub(crate) const SECRET: &str = "fixture-secret";

/// The daemon on `broker` with the file dispatcher (and `extra` TOML appended).
fn amqp_config(broker: &Broker, amqp_extra: &str, batch: &str, extra: &str) -> String {
    ConfigBuilder::new(SECRET)
        .batch(batch)
        .amqp(&broker.url(), amqp_extra)
        .file_dispatcher()
        .raw(extra)
        .build()
}

/// Starts the daemon and waits until it consumes.
pub(crate) fn start(cfg: &str) -> Daemon {
    let d = Daemon::start(cfg);
    d.wait_readyz(Duration::from_secs(60));
    d
}

/// Waits until the file holds every id in `want` (duplicates allowed).
pub(crate) fn wait_ids(path: &Path, want: &HashSet<String>, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let ids = message_ids(&read_lines(path));
        let have: HashSet<&String> = ids.iter().collect();
        if want.iter().all(|w| have.contains(w)) || Instant::now() > deadline {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn queue_depth(broker: &Broker, name: &str) -> (u64, u64) {
    broker
        .queues()
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map_or((0, 0), |(_, r, u)| (r, u))
}

pub(crate) fn json_file(path: &Path) -> Vec<serde_json::Value> {
    read_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

pub(crate) fn by_id(mut v: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    v.sort_by_key(|s| s["message_id"].as_str().unwrap_or_default().to_owned());
    v
}

#[test]
fn captured_notifications_and_casts_come_out_equal_and_poison_is_rejected() {
    let broker = Broker::start();
    let d = start(&amqp_config(
        &broker,
        "host = \"vm\"",
        "max_samples = 7\nmax_delay_ms = 100",
        "",
    ));
    let fx = fixtures();
    let publisher = Publisher::connect(&broker.url());
    let mut expected = Vec::new();
    for (dir, count) in [("notification", 6), ("rpc", 3)] {
        for i in 1..=count {
            let props: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(fx.join(format!("{dir}/{i:03}.properties.json")))
                    .expect("properties"),
            )
            .expect("properties JSON");
            let body = std::fs::read(fx.join(format!("{dir}/{i:03}.json"))).expect("body");
            let (exchange, key) = (
                props["exchange"].as_str().expect("exchange"),
                props["routing_key"].as_str().expect("key"),
            );
            publisher.publish(exchange, key, &body);
        }
        expected.extend(json_file(&fx.join(format!("{dir}/expected.jsonl"))));
    }
    let bad = [
        "amqp-body-not-json.bin",
        "amqp-oslo-message-not-json.json",
        "amqp-payload-not-list.json",
        "amqp-oslo-version-3.0.json",
    ];
    for b in bad {
        publisher.publish(
            "ceilometer",
            "metering.sample",
            &std::fs::read(fx.join("bad").join(b)).expect("bad fixture"),
        );
    }
    let lines = d.wait_lines("out/samples.jsonl", expected.len(), Duration::from_secs(60));
    assert_eq!(lines.len(), expected.len(), "{}", d.log());
    // Everything was acked or rejected: nothing is left for redelivery.
    let deadline = Instant::now() + Duration::from_secs(20);
    while (queue_depth(&broker, "metering.sample") != (0, 0)
        || queue_depth(&broker, "metering") != (0, 0))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(queue_depth(&broker, "metering.sample"), (0, 0));
    assert_eq!(queue_depth(&broker, "metering"), (0, 0));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let got = by_id(json_file(&stopped.dir.path().join("out/samples.jsonl")));
    assert_eq!(got, by_id(expected));
    assert_eq!(stopped.source("amqp", "decode_errors"), bad.len() as u64);
    assert_eq!(
        stopped.source("amqp", "messages_received"),
        9 + bad.len() as u64
    );
    assert_eq!(stopped.source("amqp", "amqp_acked"), 9);
    assert!(
        !stopped.log.contains("guest:guest"),
        "the broker password was logged"
    );
    // The topology oslo.messaging declares, flags included.
    let queues = broker.rabbitmqctl(&[
        "list_queues",
        "--no-table-headers",
        "name",
        "durable",
        "auto_delete",
        "arguments",
    ]);
    for q in [
        "metering.sample\tfalse\tfalse\t[]",
        "metering\tfalse\tfalse\t[]",
        "metering.vm\tfalse\tfalse\t[]",
    ] {
        assert!(queues.contains(q), "{q} not in:\n{queues}");
    }
    assert!(
        queues
            .lines()
            .any(|l| l.starts_with("metering_fanout_") && l.contains("x-expires")),
        "{queues}"
    );
}

#[test]
fn failing_dispatcher_loses_nothing_and_dead_letters_when_requeue_is_off() {
    let broker = Broker::start();
    let (bodies, ids) = notifications(20, 5, SECRET.as_bytes(), 11);
    // Requeue on: the first 3 batches fail (no retries: they are held back), their
    // messages come back.
    let flaky = format!(
        "[[dispatchers]]\nname = \"flaky\"\nplugin = \"{}\"\nmax_retries = 0\n[dispatchers.config]\nfail_first = 3\n",
        plugin("misbehave.wasm")
    );
    let d = start(&amqp_config(
        &broker,
        "",
        "max_samples = 5\nmax_delay_ms = 100",
        &flaky,
    ));
    let publisher = Publisher::connect(&broker.url());
    for b in &bodies {
        publisher.publish("ceilometer", "metering.sample", b);
    }
    let want: HashSet<String> = ids.iter().cloned().collect();
    let got = wait_ids(&d.path("out/samples.jsonl"), &want, Duration::from_secs(60));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let have: HashSet<String> = got.into_iter().collect();
    assert!(want.is_subset(&have), "samples lost:\n{}", stopped.log);
    assert_eq!(stopped.source("amqp", "amqp_requeued"), 3);
    assert_eq!(
        stopped.dispatcher("flaky", "samples_ok"),
        100,
        "every sample reached flaky too"
    );
    assert_eq!(queue_depth(&broker, "metering.sample"), (0, 0));

    // Requeue off: the failed messages go to the queue's dead-letter exchange.
    broker.rabbitmqctl(&[
        "set_policy",
        "dlx",
        "^metering\\.sample$",
        r#"{"dead-letter-exchange":"dlx"}"#,
        "--apply-to",
        "queues",
    ]);
    publisher.with_channel(|ch| async move {
        use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        ch.exchange_declare(
            "dlx".into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("dlx");
        ch.queue_declare(
            "dead".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("dead");
        ch.queue_bind(
            "dead".into(),
            "dlx".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    });
    let d = start(&amqp_config(
        &broker,
        "requeue_on_dispatcher_error = false",
        "max_samples = 5\nmax_delay_ms = 100",
        // Rejects are the messages' doing (retries, held back, are not: those are
        // requeued whatever this setting says).
        &flaky.replace(
            "max_retries = 0\n[dispatchers.config]\nfail_first = 3",
            "isolation_max_calls = 0\n[dispatchers.config]\nreject_first = 2",
        ),
    ));
    let (bodies, _) = notifications(10, 5, SECRET.as_bytes(), 12);
    for b in &bodies {
        publisher.publish("ceilometer", "metering.sample", b);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while queue_depth(&broker, "dead").0 < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped = d.stop();
    assert_eq!(queue_depth(&broker, "dead"), (2, 0), "{}", stopped.log);
    assert_eq!(stopped.source("amqp", "amqp_dead_lettered"), 2);
    assert_eq!(stopped.source("amqp", "amqp_acked"), 8);
}

/// Declares the notification queue as the daemon will (durable or not) and
/// publishes every body, so that the messages wait for the consumer.
fn prefill(broker: &Broker, durable: bool, bodies: &[Vec<u8>]) -> Publisher {
    let publisher = Publisher::connect(&broker.url());
    publisher.declare_notification_queue(durable);
    for b in bodies {
        publisher.publish("ceilometer", "metering.sample", b);
    }
    publisher
}

#[test]
fn broker_restart_in_the_middle_loses_nothing() {
    let broker = Broker::start();
    let (bodies, ids) = notifications(100, 100, SECRET.as_bytes(), 21);
    // Durable queues and persistent messages survive the restart (amqp_durable_queues).
    prefill(&broker, true, &bodies);
    // Two messages in flight, flushed every 300 ms: slow enough to restart mid-stream.
    let cfg = amqp_config(
        &broker,
        "durable = true\nprefetch_count = 2\nreconnect_backoff_ms = 200",
        "max_samples = 10000\nmax_delay_ms = 300",
        "",
    );
    let d = start(&cfg);
    let _ = d.wait_lines("out/samples.jsonl", 1000, Duration::from_secs(60));
    broker.restart();
    let want: HashSet<String> = ids.iter().cloned().collect();
    let got = wait_ids(
        &d.path("out/samples.jsonl"),
        &want,
        Duration::from_secs(180),
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let have: HashSet<&String> = got.iter().collect();
    let missing = want.iter().filter(|w| !have.contains(w)).count();
    assert_eq!(missing, 0, "{missing} samples lost:\n{}", stopped.log);
    assert!(
        stopped.source("amqp", "amqp_reconnects") >= 1,
        "{}",
        stopped.log
    );
    eprintln!(
        "broker restart: {} samples, {} duplicates (redelivered unacked messages)",
        want.len(),
        got.len() - want.len()
    );
}

#[test]
fn two_collectors_share_a_queue_and_a_killed_one_loses_nothing() {
    let broker = Broker::start();
    let (bodies, ids) = notifications(100, 100, SECRET.as_bytes(), 31);
    prefill(&broker, false, &bodies);
    let cfg = amqp_config(
        &broker,
        "prefetch_count = 1",
        "max_samples = 10000\nmax_delay_ms = 300",
        "",
    );
    let mut a = start(&cfg);
    let b = start(&cfg);
    let _ = a.wait_lines("out/samples.jsonl", 1000, Duration::from_secs(60));
    a.kill();
    let want: HashSet<String> = ids.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut all: HashSet<String> = message_ids(&read_lines(&a.path("out/samples.jsonl")))
            .into_iter()
            .collect();
        let from_b = message_ids(&read_lines(&b.path("out/samples.jsonl")));
        let b_count = from_b.len();
        all.extend(from_b);
        if want.is_subset(&all) {
            assert!(b_count > 0, "the second collector took part");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} samples never arrived",
            want.difference(&all).count()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped = b.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

/// Publishes 3 notifications of 5 samples (sample seed `seed`) and waits until
/// the daemon's file holds every one; returns the publisher, still connected.
fn publish_and_wait(broker: &Broker, d: &Daemon, seed: u64) -> Publisher {
    let (bodies, ids) = notifications(3, 5, SECRET.as_bytes(), seed);
    let publisher = Publisher::connect(&broker.url());
    for b in &bodies {
        publisher.publish("ceilometer", "metering.sample", b);
    }
    let want: HashSet<String> = ids.into_iter().collect();
    let got = wait_ids(&d.path("out/samples.jsonl"), &want, Duration::from_secs(60));
    assert!(want.iter().all(|w| got.contains(w)), "{}", d.log());
    publisher
}

/// The interpreter of the venv with real Ceilometer (scripts/ceilometer-venv.sh).
pub(crate) fn ceilometer_python() -> std::path::PathBuf {
    let python = root().join(".venv-ceilometer/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make test-deps` (scripts/ceilometer-venv.sh)",
        python.display()
    );
    python
}

/// Real Ceilometer (27.0.0 from PyPI, in .venv-ceilometer) publishes with its own
/// `notifier://` and `udp://` publishers; every sample arrives exactly once.
#[test]
fn real_ceilometer_publishers_are_received_exactly_once() {
    let python = ceilometer_python();
    let broker = Broker::start();
    let udp = "[sources.udp]\naddress = \"127.0.0.1:0\"\n";
    let d = start(
        &amqp_config(&broker, "", "max_samples = 50\nmax_delay_ms = 100", "")
            .replace("[sources.amqp]", &format!("{udp}[sources.amqp]")),
    );
    let script = root().join("scripts/ceilometer-publish.py");
    let mut published = Vec::new();
    for (publisher, extra) in [
        (
            "notifier",
            vec!["--transport-url".to_owned(), broker.oslo_url()],
        ),
        (
            "udp",
            vec!["--udp-address".to_owned(), d.udp_addr().to_string()],
        ),
    ] {
        let out = d.path(&format!("{publisher}.jsonl"));
        let status = std::process::Command::new(&python)
            .arg(&script)
            .args([
                "--publisher",
                publisher,
                "--secret",
                SECRET,
                "--count",
                "200",
                "--batch",
                "10",
                "--out",
            ])
            .arg(&out)
            .args(&extra)
            .status()
            .expect("run ceilometer-publish.py");
        assert!(
            status.success(),
            "ceilometer-publish.py --publisher {publisher} failed"
        );
        published.extend(json_file(&out));
    }
    assert_eq!(published.len(), 400);
    let lines = d.wait_lines("out/samples.jsonl", 400, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let got = json_file(&stopped.dir.path().join("out/samples.jsonl"));
    assert_eq!(
        got.len(),
        400,
        "exactly once: {} lines\n{}",
        lines.len(),
        stopped.log
    );
    assert_eq!(
        by_id(got),
        by_id(published),
        "what Ceilometer sent is what the file dispatcher wrote"
    );
}

#[test]
fn a_password_holding_url_separators_is_never_logged() {
    let broker = Broker::start();
    // A raw `@`, `,` and `:`, as an operator may write them (the URL parser reads
    // the credentials up to the last `@`).
    let password = "s3cr@t,p:wrd";
    broker.rabbitmqctl(&["add_user", "collector", password]);
    broker.rabbitmqctl(&["set_permissions", "-p", "/", "collector", ".*", ".*", ".*"]);
    let url = format!(
        "amqp://collector:{password}@127.0.0.1:{}/%2f",
        broker.port()
    );
    let cfg = amqp_config(&broker, "", "max_delay_ms = 50", "")
        .replace(&broker.url(), &url)
        .replace(
            "[sources.amqp]",
            "[sources.amqp]\nreconnect_backoff_ms = 100",
        );
    let d = start(&cfg);
    let publisher = publish_and_wait(&broker, &d, 9);
    // Down and back: the URL is logged again, redacted, each time.
    drop(publisher);
    broker.restart();
    d.wait_status(
        "AMQP back after the restart",
        Duration::from_secs(60),
        |st| {
            let amqp = &st["sources"]["amqp"];
            amqp["amqp_reconnects"].as_u64() >= Some(1) && amqp["amqp_connected"] == 1
        },
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert!(
        stopped.log.contains("collector:***@127.0.0.1"),
        "{}",
        stopped.log
    );
    for piece in ["s3cr", "t,p", "p:w", password] {
        assert!(
            !stopped.log.contains(piece),
            "`{piece}` of the password was logged:\n{}",
            stopped.log
        );
    }
}

/// Real Ceilometer with `rabbit_quorum_queue = true` declares `metering.sample`
/// as a quorum queue; the collector, given a three-host `transport_url` whose
/// first two hosts are down, fails over to the live one, joins that queue
/// without `PRECONDITION_FAILED`, and gets every sample exactly once, both those
/// published before it came (the queue was Ceilometer's) and after (it was the
/// collector's, re-declared by Ceilometer).
#[test]
fn quorum_queues_are_joined_through_a_three_host_transport_url() {
    let python = ceilometer_python();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let publish = |seed: &str, out: &Path| {
        let status = std::process::Command::new(&python)
            .arg(root().join("scripts/ceilometer-publish.py"))
            .args(["--publisher", "notifier", "--rabbit-quorum-queue"])
            .args(["--secret", SECRET, "--count", "100", "--batch", "10"])
            .args(["--seed", seed, "--transport-url", &broker.oslo_url()])
            .arg("--out")
            .arg(out)
            .status()
            .expect("run ceilometer-publish.py");
        assert!(status.success(), "ceilometer-publish.py failed");
        json_file(out)
    };
    let mut published = publish("1", &dir.path().join("before.jsonl"));
    let types = broker.rabbitmqctl(&["list_queues", "--no-table-headers", "name", "type"]);
    assert!(
        types
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["metering.sample", "quorum"]),
        "Ceilometer declared a quorum queue:\n{types}"
    );
    let (dead1, dead2) = (collector_e2e::free_port(), collector_e2e::free_port());
    let url = format!(
        "rabbit://guest:guest@127.0.0.1:{dead1},guest:guest@127.0.0.1:{dead2},guest:guest@127.0.0.1:{}/",
        broker.port()
    );
    let cfg = ConfigBuilder::new(SECRET)
        .batch("max_samples = 50\nmax_delay_ms = 100")
        .amqp(
            &url,
            "rabbit_quorum_queue = true\nreconnect_backoff_ms = 100",
        )
        .file_dispatcher()
        .build();
    let d = start(&cfg);
    published.extend(publish("2", &dir.path().join("after.jsonl")));
    assert_eq!(published.len(), 200);
    d.wait_lines("out/samples.jsonl", 200, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let got = json_file(&stopped.dir.path().join("out/samples.jsonl"));
    assert_eq!(got.len(), 200, "exactly once\n{}", stopped.log);
    assert_eq!(by_id(got), by_id(published));
    for dead in [dead1, dead2] {
        assert!(
            stopped
                .log
                .lines()
                .any(|l| l.contains("AMQP is down") && l.contains(&format!("127.0.0.1:{dead}"))),
            "the log names the host that refused ({dead}):\n{}",
            stopped.log
        );
    }
    assert!(
        stopped.log.lines().any(|l| l.contains("connected")
            && l.contains(&format!("127.0.0.1:{} ", broker.port()).replace(' ', "/"))),
        "the log names the host it consumes from:\n{}",
        stopped.log
    );
    assert!(
        !stopped.log.contains("PRECONDITION_FAILED"),
        "{}",
        stopped.log
    );
    let types = broker.rabbitmqctl(&["list_queues", "--no-table-headers", "name", "type"]);
    for q in ["metering.sample", "metering"] {
        assert!(
            types
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [q, "quorum"]),
            "{q} is a quorum queue:\n{types}"
        );
    }
}

/// A broker that hangs with its sockets open (SIGSTOP) is noticed by the
/// heartbeat the source asks for (`heartbeat_timeout_threshold`), shown in
/// `/readyz`, and consumed from again once it wakes; nothing published is lost.
#[test]
fn a_hung_broker_is_noticed_by_the_heartbeat_and_consumed_from_again() {
    let broker = Broker::start();
    let cfg = amqp_config(
        &broker,
        "heartbeat_timeout_threshold = 2\nreconnect_backoff_ms = 200\nreconnect_backoff_max_ms = 1000",
        "max_delay_ms = 50",
        "",
    );
    let d = start(&cfg);
    let (bodies, ids) = notifications(4, 5, SECRET.as_bytes(), 21);
    let want: HashSet<String> = ids.into_iter().collect();
    let publisher = Publisher::connect(&broker.url());
    publisher.publish("ceilometer", "metering.sample", &bodies[0]);
    drop(publisher);
    broker.freeze(true);
    let frozen = Instant::now();
    let noticed = loop {
        if d.log().contains("AMQP is down") {
            break frozen.elapsed();
        }
        if frozen.elapsed() > Duration::from_secs(30) {
            broker.freeze(false);
            panic!("a hung broker went unnoticed for 30 s:\n{}", d.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let ready = collector_e2e::http_get(&d.admin_addr(), "/readyz");
    broker.freeze(false);
    assert!(
        noticed < Duration::from_secs(15),
        "noticed after {noticed:?}"
    );
    assert_ne!(ready.0, 200, "/readyz while the broker hangs: {ready:?}");
    d.wait_readyz(Duration::from_secs(60));
    let publisher = Publisher::connect(&broker.url());
    for b in &bodies[1..] {
        publisher.publish("ceilometer", "metering.sample", b);
    }
    let got = wait_ids(&d.path("out/samples.jsonl"), &want, Duration::from_secs(60));
    assert!(want.iter().all(|w| got.contains(w)), "{}", d.log());
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    eprintln!("hung broker noticed after {noticed:?}");
}

/// TLS as oslo configures it (`ssl`, `ssl_ca_file`, `ssl_cert_file`,
/// `ssl_key_file`) to a broker that requires a client certificate: consumed
/// over TLS; a wrong CA, a missing client certificate, an expired server
/// certificate and one for another host name are refused with a message naming
/// the cause; no password or key material reaches the log.
#[test]
fn amqp_over_tls_with_a_client_certificate_and_refusals_that_name_the_cause() {
    let tls = collector_e2e::http::Tls::make();
    let broker = Broker::start_with(NodeOptions {
        tls: Some(&tls),
        ..NodeOptions::default()
    });
    let port = broker.tls_port().expect("a TLS listener");
    let url = format!("rabbit://guest:guest@127.0.0.1:{port}/");
    let settings = |ca: &str, client: bool| {
        let mut s = format!("ssl = true\nssl_ca_file = \"{ca}\"\nreconnect_backoff_ms = 200\n");
        if client {
            s += &format!(
                "ssl_cert_file = \"{}\"\nssl_key_file = \"{}\"\n",
                tls.path("client.pem"),
                tls.path("client.key")
            );
        }
        s
    };
    let config = |amqp: &str| {
        ConfigBuilder::new(SECRET)
            .batch("max_delay_ms = 50")
            .amqp(&url, amqp)
            .file_dispatcher()
            .build()
    };
    let key_lines: Vec<String> = std::fs::read_to_string(tls.path("client.key"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_owned)
        .collect();
    let clean = |log: &str| {
        assert!(
            !log.contains("guest:guest"),
            "a password in the log:\n{log}"
        );
        for l in &key_lines {
            assert!(!log.contains(l.as_str()), "key material in the log:\n{log}");
        }
    };

    let d = start(&config(&settings(&tls.path("ca.pem"), true)));
    drop(publish_and_wait(&broker, &d, 31));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert!(
        stopped
            .log
            .contains(&format!("amqps://guest:***@127.0.0.1:{port}")),
        "{}",
        stopped.log
    );
    clean(&stopped.log);

    let refused = |amqp: &str, cause: &str| {
        let d = Daemon::start(&config(amqp));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.log().contains("AMQP is down") {
            assert!(Instant::now() < deadline, "never refused:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        let (code, _) = collector_e2e::http_get(&d.admin_addr(), "/readyz");
        assert_ne!(code, 200, "ready without a broker");
        let stopped = d.stop();
        assert!(
            stopped
                .log
                .lines()
                .any(|l| l.contains("AMQP is down") && l.contains(cause)),
            "the refusal names {cause}:\n{}",
            stopped.log
        );
        clean(&stopped.log);
    };
    let other = collector_e2e::http::Tls::make();
    refused(
        &settings(&other.path("ca.pem"), true),
        "invalid peer certificate",
    );
    // Without a client certificate the broker ends the handshake; under TLS 1.3
    // its alert may race the socket's close, so only the refusal is asserted
    // there, not its wording.
    refused(&settings(&tls.path("ca.pem"), false), "AMQP is down");
    // The broker's own certificate expired (its CA is right): rustls says so.
    assert_eq!(broker.enable_tls_cert(&tls, "server-expired.pem"), port);
    refused(
        &settings(&tls.path("ca.pem"), true),
        "invalid peer certificate: certificate expired",
    );
    // A certificate for another name than the host of the URL.
    assert_eq!(broker.enable_tls_cert(&tls, "server-other-name.pem"), port);
    refused(
        &settings(&tls.path("ca.pem"), true),
        "invalid peer certificate: certificate not valid for name",
    );
}

/// Runs scripts/oslo-listen.py: a real oslo.messaging notification listener
/// and RPC server declaring `metering.sample`, `metering`, `metering.vm` and a
/// fanout queue with quorum settings; fails the test on any warning it logs.
fn oslo_listen(url: &str) {
    let out = std::process::Command::new(ceilometer_python())
        .arg(root().join("scripts/oslo-listen.py"))
        .args(["--transport-url", url, "--rabbit-quorum-queue"])
        .args(["--seconds", "0.5"])
        .output()
        .expect("run oslo-listen.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "oslo-listen.py failed:\n{stderr}");
    assert!(!stderr.contains("PRECONDITION_FAILED"), "{stderr}");
}

/// Queues of `broker` with their type: (name, type).
fn queue_types(broker: &Broker) -> Vec<(String, String)> {
    broker
        .rabbitmqctl(&["list_queues", "--no-table-headers", "name", "type"])
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect()
}

/// A real oslo.messaging service (a notification listener and an RPC server,
/// `rabbit_quorum_queue = true`) and the collector declare the same quorum
/// queues, whichever comes first: no `PRECONDITION_FAILED` on either side, the
/// queues stay quorum queues, and the collector consumes from them.
#[test]
fn oslo_listeners_and_the_collector_declare_the_same_quorum_queues_either_way_round() {
    let broker = Broker::start();
    let cfg = ConfigBuilder::new(SECRET)
        .batch("max_delay_ms = 50")
        .amqp(
            &broker.oslo_url(),
            "rabbit_quorum_queue = true\nrpc = true\nhost = \"vm\"\nreconnect_backoff_ms = 100",
        )
        .file_dispatcher()
        .build();
    let topic_queues = ["metering.sample", "metering", "metering.vm"];
    let check_types = |when: &str| {
        let types = queue_types(&broker);
        for q in topic_queues {
            assert!(
                types.iter().any(|(n, t)| n == q && t == "quorum"),
                "{when}: {q} is a quorum queue: {types:?}"
            );
        }
    };

    // Consumes what is published now, then stops; never PRECONDITION_FAILED.
    let consumed_then_stopped = |d: Daemon, seed: u64| {
        drop(publish_and_wait(&broker, &d, seed));
        let stopped = d.stop();
        assert!(stopped.status.success(), "{}", stopped.log);
        assert!(
            !stopped.log.contains("PRECONDITION_FAILED"),
            "{}",
            stopped.log
        );
    };

    // The collector first, then oslo, while the collector consumes.
    let d = start(&cfg);
    oslo_listen(&broker.oslo_url());
    check_types("collector first");
    consumed_then_stopped(d, 41);

    // oslo first (on queues of its own), then the collector.
    for q in topic_queues {
        broker.rabbitmqctl(&["delete_queue", q]);
    }
    oslo_listen(&broker.oslo_url());
    check_types("oslo first");
    consumed_then_stopped(start(&cfg), 42);
    check_types("after both");
}

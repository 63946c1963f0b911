//! Hostile input and hostile plugins against the real daemon: decoding that stays
//! linear while the worst datagrams and messages arrive, descriptor exhaustion
//! through the admin endpoint, a worker that panics, a poison sample among
//! innocent ones, and log lines forged from outside.

use std::collections::HashMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use collector::cli::samples::hostile::{many_keys_datagram, many_keys_notification};
use collector::cli::samples::{Rng, realistic};
use collector::signature;
use collector::wire::msgpack;
use collector_e2e::amqp::{Publisher, notification_body, notifications};
use collector_e2e::rabbit::Broker;
use collector_e2e::{
    ConfigBuilder, Daemon, Options, free_port, http_get, message_ids, metric, plugin, read_lines,
};

const SECRET: &str = "hostile-secret";

fn signed(i: u64, seed: u64) -> collector_sdk::Sample {
    let mut rng = Rng::new(seed + i);
    realistic(i, &mut rng, SECRET.as_bytes())
}

fn datagram(s: &collector_sdk::Sample) -> Vec<u8> {
    let mut out = Vec::new();
    msgpack::encode_sample(s, &mut out);
    out
}

/// JSON of `GET /status`.
fn status(admin: &str) -> serde_json::Value {
    let (code, body) = http_get(admin, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

fn dispatcher<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["dispatchers"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .unwrap_or_else(|| panic!("no dispatcher {name} in {status}"))
}

/// UDP into the file dispatcher, batched by `batch`: add to it.
fn udp_to_file(batch: &str) -> ConfigBuilder {
    ConfigBuilder::udp_to_file(SECRET, batch)
}

/// UDP into the file dispatcher, with a shutdown grace period of `grace_ms`.
fn udp_daemon_with_grace(grace_ms: u64) -> Daemon {
    Daemon::start(
        &udp_to_file("max_delay_ms = 50")
            .section("shutdown", &format!("grace_period_ms = {grace_ms}"))
            .build(),
    )
}

#[test]
fn the_worst_datagrams_cost_the_good_ones_nothing_and_shutdown_stays_prompt() {
    let grace_ms = 3000;
    let d = udp_daemon_with_grace(grace_ms);
    let worst = many_keys_datagram(65_507);
    let addr = d.udp_addr();
    let hostile = std::thread::spawn(move || {
        // 20 a second for 6 s: before decoding was linear, each cost 0.35-0.7 s of CPU.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        for _ in 0..120 {
            sock.send_to(&worst, addr).expect("send");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let n = 3000;
    let good: Vec<Vec<u8>> = (0..n).map(|i| datagram(&signed(i, 10))).collect();
    for chunk in good.chunks(100) {
        d.send_udp(chunk);
        std::thread::sleep(Duration::from_millis(150));
    }
    let lines = d.wait_lines("out/samples.jsonl", n as usize, Duration::from_secs(60));
    hostile.join().expect("hostile sender");
    assert_eq!(lines.len(), n as usize, "good samples lost:\n{}", d.log());
    // A last burst of hostile datagrams, then SIGTERM: the drain must not wait on them.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for _ in 0..40 {
        let _ = sock.send_to(&many_keys_datagram(65_507), addr);
    }
    let t = Instant::now();
    let stopped = d.stop();
    let took = t.elapsed();
    eprintln!("shutdown with hostile datagrams arriving: {took:?}");
    assert!(stopped.status.success(), "{}", stopped.log);
    assert!(
        took < Duration::from_millis(grace_ms + 2000),
        "shutdown took {took:?}"
    );
    let log = &stopped.log;
    assert_eq!(stopped.source("udp", "samples_received"), n);
    assert_eq!(stopped.source("udp", "input_dropped"), 0, "{log}");
    assert!(stopped.source("udp", "bad_signatures") >= 100, "{log}");
}

#[test]
fn the_worst_messages_neither_freeze_the_admin_endpoint_nor_delay_shutdown() {
    let broker = Broker::start();
    let admin = format!("127.0.0.1:{}", free_port());
    let grace_ms = 5000;
    let toml = ConfigBuilder::new(SECRET)
        .admin(&admin, "")
        .section("shutdown", &format!("grace_period_ms = {grace_ms}"))
        .batch("max_delay_ms = 50")
        .amqp(&broker.url(), "rpc = false")
        .file_dispatcher()
        .build();
    let publisher = Publisher::connect(&broker.url());
    publisher.declare_notification_queue(false);
    // Four messages of 100,000 distinct keys (1.4 MB each) ahead of the good ones.
    let hostile = many_keys_notification(100_000);
    for _ in 0..4 {
        publisher.publish("ceilometer", "metering.sample", &hostile);
    }
    let (bodies, ids) = notifications(20, 10, SECRET.as_bytes(), 77);
    for b in &bodies {
        publisher.publish("ceilometer", "metering.sample", b);
    }
    let d = Daemon::start(&toml);
    // Until every good sample is in, /healthz must answer promptly all along.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut slowest = Duration::ZERO;
    loop {
        let t = Instant::now();
        let (code, _) = http_get(&admin, "/healthz");
        slowest = slowest.max(t.elapsed());
        assert_eq!(code, 200);
        if read_lines(&d.path("out/samples.jsonl")).len() >= ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "good samples missing:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("slowest /healthz while hostile messages were decoded: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "the admin endpoint froze for {slowest:?}"
    );
    let got = message_ids(&read_lines(&d.path("out/samples.jsonl")));
    assert_eq!(got.len(), ids.len());
    for _ in 0..4 {
        publisher.publish("ceilometer", "metering.sample", &hostile);
    }
    let t = Instant::now();
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert!(
        t.elapsed() < Duration::from_millis(grace_ms + 3000),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(stopped.source("amqp", "bad_signatures") >= 4);
}

/// Opens connections to `admin` until the daemon holds `limit - slack` descriptors.
fn exhaust(d: &Daemon, admin: &str, limit: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.open_files() + 1 < limit {
        assert!(Instant::now() < deadline, "could not exhaust descriptors");
        for _ in 0..16 {
            if let Ok(s) = TcpStream::connect(admin) {
                held.push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A few more that wait in the backlog, so that accept keeps failing.
    for _ in 0..16 {
        if let Ok(s) = TcpStream::connect(admin) {
            held.push(s);
        }
    }
    held
}

#[test]
fn running_out_of_descriptors_neither_kills_a_dispatcher_nor_spins_the_accept_loop() {
    raise_own_fd_limit();
    let admin = format!("127.0.0.1:{}", free_port());
    let limit = 160;
    let toml = udp_to_file("max_delay_ms = 50")
        .admin(&admin, "max_connections = 1000\nrequest_timeout_ms = 60000")
        .build();
    let d = Daemon::start_with(
        &toml,
        &Options {
            nofile: Some(limit as u64),
            ..Options::default()
        },
    );
    // No batch has reached the file dispatcher yet: its thread has not done any
    // WASI I/O, the point where wasmtime-wasi used to build its own runtime.
    let held = exhaust(&d, &admin, limit);
    let first: Vec<Vec<u8>> = (0..50).map(|i| datagram(&signed(i, 20))).collect();
    d.send_udp(&first);
    std::thread::sleep(Duration::from_secs(3));
    drop(held);
    // The endpoint serves again once the clients are gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        if let Ok(mut s) = TcpStream::connect(&admin) {
            drop(s.set_read_timeout(Some(Duration::from_secs(2))));
            use std::io::Write;
            if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .is_ok()
            {
                let mut text = String::new();
                use std::io::Read;
                if s.read_to_string(&mut text).is_ok() && text.contains("collector_") {
                    break text;
                }
            }
        }
        assert!(Instant::now() < deadline, "admin endpoint did not recover");
        std::thread::sleep(Duration::from_millis(200));
    };
    let accept_errors = metric(&metrics, "collector_admin_accept_errors_total");
    eprintln!("accept errors while descriptors were exhausted for 3 s: {accept_errors}");
    assert!(accept_errors >= 1.0, "descriptors were not exhausted");
    assert!(
        accept_errors < 40.0,
        "accept failed {accept_errors} times in about 3 s: it spins"
    );
    let second: Vec<Vec<u8>> = (50..100).map(|i| datagram(&signed(i, 20))).collect();
    d.send_udp(&second);
    let lines = d.wait_lines("out/samples.jsonl", 100, Duration::from_secs(30));
    assert_eq!(
        lines.len(),
        100,
        "the file dispatcher lost samples:\n{}",
        d.log()
    );
    let st = status(&admin);
    assert_eq!(
        dispatcher(&st, "file")["dispatcher_worker_panics"],
        0,
        "{st}"
    );
    assert_eq!(http_get(&admin, "/readyz").0, 200);
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

fn raise_own_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[test]
fn a_panicking_worker_is_restarted_counted_shown_and_the_exit_status_says_so() {
    let admin = format!("127.0.0.1:{}", free_port());
    // One decoder thread, so that the ten samples make exactly one batch.
    let toml = ConfigBuilder::new(SECRET)
        .batch("max_samples = 10\nmax_delay_ms = 2000")
        .udp("decode_threads = 1")
        .admin(&admin, "")
        .file_dispatcher()
        .build();
    let d = Daemon::start_with(
        &toml,
        &Options {
            env: vec![("COLLECTOR_FAULT_PANIC_DISPATCHER".into(), "file".into())],
            ..Options::default()
        },
    );
    assert_eq!(http_get(&admin, "/readyz").0, 200);
    // The first batch panics in the worker (injected); it is lost for UDP.
    let first: Vec<Vec<u8>> = (0..10).map(|i| datagram(&signed(i, 30))).collect();
    d.send_udp(&first);
    let deadline = Instant::now() + Duration::from_secs(30);
    while dispatcher(&status(&admin), "file")["dispatcher_worker_panics"] != 1 {
        assert!(Instant::now() < deadline, "panic not counted:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, why) = http_get(&admin, "/readyz");
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("file") && why.contains("panic"), "{why}");
    let st = status(&admin);
    assert_eq!(dispatcher(&st, "file")["dispatcher_healthy"], false, "{st}");
    // The restarted worker serves the next batch, and readiness comes back.
    let second: Vec<Vec<u8>> = (10..20).map(|i| datagram(&signed(i, 30))).collect();
    d.send_udp(&second);
    let lines = d.wait_lines("out/samples.jsonl", 10, Duration::from_secs(30));
    assert_eq!(lines.len(), 10);
    // Ready once the batch has returned (its lines are written a moment before).
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(&admin, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "not ready again:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = http_get(&admin, "/metrics").1;
    assert_eq!(
        metric(
            &metrics,
            "collector_dispatcher_worker_panics_total{dispatcher=\"file\"}"
        ),
        1.0
    );
    let stopped = d.stop();
    assert_eq!(
        stopped.status.code(),
        Some(70),
        "a daemon that lost a worker does not exit 0:\n{}",
        stopped.log
    );
}

#[test]
fn a_panicked_batch_of_amqp_messages_is_redelivered_not_lost() {
    let broker = Broker::start();
    let toml = ConfigBuilder::new(SECRET)
        .batch("max_samples = 20\nmax_delay_ms = 50")
        .amqp(&broker.url(), "rpc = false\nchannels = 1")
        .file_dispatcher()
        .build();
    let publisher = Publisher::connect(&broker.url());
    publisher.declare_notification_queue(false);
    let (bodies, ids) = notifications(10, 10, SECRET.as_bytes(), 31);
    for b in &bodies {
        publisher.publish("ceilometer", "metering.sample", b);
    }
    let d = Daemon::start_with(
        &toml,
        &Options {
            env: vec![("COLLECTOR_FAULT_PANIC_DISPATCHER".into(), "file".into())],
            ..Options::default()
        },
    );
    let want: std::collections::HashSet<String> = ids.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = message_ids(&read_lines(&d.path("out/samples.jsonl")));
        if want.iter().all(|w| got.contains(w)) {
            break;
        }
        assert!(Instant::now() < deadline, "samples lost:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = d.stop();
    assert_eq!(stopped.status.code(), Some(70), "{}", stopped.log);
    assert!(stopped.source("amqp", "amqp_requeued") >= 1);
}

#[test]
fn a_poison_sample_costs_only_its_own_message() {
    let broker = Broker::start();
    let admin = format!("127.0.0.1:{}", free_port());
    let toml = ConfigBuilder::new(SECRET)
        .admin(&admin, "")
        .batch("max_samples = 1000\nmax_delay_ms = 300")
        .amqp(
            &broker.url(),
            "rpc = false\nchannels = 1\nmax_deliveries = 2",
        )
        .file_dispatcher()
        .dispatcher("picky", &plugin("misbehave.wasm"), "", "mode = \"reject\"")
        .build();
    let publisher = Publisher::connect(&broker.url());
    publisher.declare_notification_queue(false);
    // 20 messages of 5 samples; message 7 holds one poison sample (signed, valid),
    // message 12 one nested 100 levels deep (signed: refused at decode, alone).
    let mut rng = Rng::new(4);
    let mut owner: HashMap<String, usize> = HashMap::new();
    for m in 0..20 {
        let samples: Vec<_> = (0..5)
            .map(|j| {
                let mut s = signed((m * 5 + j) as u64, 40);
                if m == 7 && j == 2 {
                    s.counter_name = "poison".into();
                }
                if m == 12 && j == 0 {
                    let mut v = collector_sdk::Value::Null;
                    for _ in 0..100 {
                        v = collector_sdk::Value::List(vec![v]);
                    }
                    s.resource_metadata = Some(v);
                }
                s.message_signature = Some(signature::compute(&s, SECRET.as_bytes()));
                owner.insert(s.message_id.clone(), m);
                s
            })
            .collect();
        publisher.publish(
            "ceilometer",
            "metering.sample",
            &notification_body(&samples, &mut rng),
        );
    }
    let d = Daemon::start(&toml);
    // 99 samples decode (one is too deep); message 7 is delivered twice.
    let lines = d.wait_lines("out/samples.jsonl", 99 + 5, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&admin)["sources"]["amqp"]["amqp_dead_lettered"] != 1 {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in message_ids(&lines) {
        *seen.entry(id).or_default() += 1;
    }
    for (id, m) in &owner {
        let n = seen.get(id).copied().unwrap_or(0);
        match m {
            7 => assert_eq!(n, 2, "the poison message is delivered twice"),
            12 if n == 0 => {}
            _ => assert_eq!(n, 1, "{id} of innocent message {m} came {n} times"),
        }
    }
    let st = status(&admin);
    let amqp = &st["sources"]["amqp"];
    assert_eq!(amqp["amqp_acked"], 19, "{st}");
    assert_eq!(amqp["amqp_requeued"], 1, "{st}");
    assert_eq!(amqp["amqp_dead_lettered"], 1, "{st}");
    assert_eq!(amqp["invalid_samples"], 1, "{st}");
    let picky = dispatcher(&st, "picky");
    assert_eq!(
        picky["samples_failed"], 2,
        "one poison sample per delivery: {st}"
    );
    assert!(picky["batches_split"].as_u64() >= Some(2), "{st}");
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

#[test]
fn a_rejected_udp_batch_spares_its_good_samples() {
    let admin = format!("127.0.0.1:{}", free_port());
    let toml = udp_to_file("max_samples = 40\nmax_delay_ms = 2000")
        .admin(&admin, "")
        .dispatcher("picky", &plugin("misbehave.wasm"), "", "mode = \"reject\"")
        .build();
    let d = Daemon::start(&toml);
    let grams: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            let mut s = signed(i, 50);
            if i == 13 {
                s.counter_name = "poison".into();
                s.message_signature = Some(signature::compute(&s, SECRET.as_bytes()));
            }
            datagram(&s)
        })
        .collect();
    d.send_udp(&grams);
    let _ = d.wait_lines("out/samples.jsonl", 40, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = status(&admin);
        if dispatcher(&st, "picky")["batches_failed"] == 1 {
            break st;
        }
        assert!(Instant::now() < deadline, "{st}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let picky = dispatcher(&st, "picky");
    assert_eq!(picky["samples_ok"], 39, "{st}");
    assert_eq!(picky["samples_failed"], 1, "{st}");
    assert_eq!(picky["batches_split"], 1, "{st}");
    let _ = d.stop();
}

#[test]
fn values_from_outside_cannot_forge_log_lines_and_plugin_logs_are_rate_limited() {
    let admin = format!("127.0.0.1:{}", free_port());
    let toml = udp_to_file("max_samples = 1\nmax_delay_ms = 50")
        .admin(&admin, "")
        .dispatcher(
            "flood",
            &plugin("misbehave.wasm"),
            "log_lines_per_second = 20",
            "log_lines = 1000",
        )
        .build();
    let d = Daemon::start(&toml);
    // A sample whose message_id carries a log line, with a bad signature.
    let mut s = signed(0, 60);
    s.message_id =
        "m0\n2026-12-01T00:00:00.000000Z  INFO collector: forged by a datagram\u{1b}[2J".into();
    d.send_udp(&[datagram(&s)]);
    // Ten batches of one good sample: 10,000 plugin log lines attempted.
    let good: Vec<Vec<u8>> = (1..=10).map(|i| datagram(&signed(i, 60))).collect();
    let t = Instant::now();
    d.send_udp(&good);
    let _ = d.wait_lines("out/samples.jsonl", 10, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let m = http_get(&admin, "/metrics").1;
        let ok = metric(&m, "collector_samples_ok_total{dispatcher=\"flood\"}");
        if ok >= 10.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "{m}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = t.elapsed().as_secs_f64();
    let stopped = d.stop();
    eprintln!(
        "plugin log lines: {} logged, the rest suppressed, in {elapsed:.1} s",
        stopped.log.matches("flood-line").count()
    );
    let log = &stopped.log;
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-12-01T00:00:00.000000Z"),
            "a forged line reached the log: {line:?}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "a terminal escape reached the log"
        );
    }
    assert!(
        log.contains(
            r"m0\n2026-12-01T00:00:00.000000Z  INFO collector: forged by a datagram\u{1b}[2J"
        ),
        "the message_id is shown escaped:\n{log}"
    );
    let logged = log.matches("flood-line").count() as f64;
    let suppressed = metric(
        &metrics,
        "collector_plugin_log_lines_suppressed_total{dispatcher=\"flood\"}",
    );
    assert!(
        logged <= 20.0 * (elapsed.ceil() + 2.0),
        "{logged} plugin lines in {elapsed:.1} s"
    );
    assert!(
        log.contains(r"flood-line 0\n2026-12-01T00:00:00.000000Z"),
        "{log}"
    );
    assert_eq!(
        logged + suppressed,
        10_000.0,
        "every line is logged or counted: {logged} + {suppressed}"
    );
}

/// Peak resident memory of a process, from /proc (kB).
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A notification of `n` small unsigned samples (about 140 bytes each).
fn small_samples_notification(n: usize) -> Vec<u8> {
    let item = r#"{"source":"s","counter_name":"c","counter_type":"gauge","counter_unit":"u","counter_volume":1,"resource_id":"r","timestamp":"2026-12-01T00:00:00","message_id":"m"}"#;
    let mut payload = String::with_capacity(n * (item.len() + 1) + 2);
    payload.push('[');
    for i in 0..n {
        if i > 0 {
            payload.push(',');
        }
        payload.push_str(item);
    }
    payload.push(']');
    let inner = format!(
        r#"{{"message_id":"huge","publisher_id":"p","event_type":"metering","priority":"SAMPLE","payload":{payload},"timestamp":"t","_unique_id":"u"}}"#
    );
    serde_json::json!({"oslo.version": "2.0", "oslo.message": inner})
        .to_string()
        .into_bytes()
}

#[test]
fn huge_messages_are_refused_within_their_bounds_and_udp_goes_on() {
    let broker = Broker::start();
    let admin = format!("127.0.0.1:{}", free_port());
    let toml = udp_to_file("max_delay_ms = 50")
        .admin(&admin, "")
        .amqp(
            &broker.url(),
            "rpc = false\nmax_message_bytes = 8388608\nmax_samples_per_message = 10000",
        )
        .build();
    let publisher = Publisher::connect(&broker.url());
    publisher.declare_notification_queue(false);
    // 300,000 samples in 50 MB: refused unparsed. 40,000 in 7 MB: refused at the
    // 10,001st. Decoded, they would take several hundred MB.
    let too_big = small_samples_notification(300_000);
    let too_many = small_samples_notification(40_000);
    assert!(too_many.len() < 8 << 20);
    let d = Daemon::start(&toml);
    let baseline = peak_rss_kb(d.pid());
    let sender = {
        let addr = d.udp_addr();
        std::thread::spawn(move || {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            for i in 0..2000u64 {
                sock.send_to(&datagram(&signed(i, 70)), addr).expect("send");
                if i % 50 == 49 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };
    publisher.publish("ceilometer", "metering.sample", &too_big);
    publisher.publish("ceilometer", "metering.sample", &too_many);
    let (bodies, ids) = notifications(5, 10, SECRET.as_bytes(), 71);
    for b in &bodies {
        publisher.publish("ceilometer", "metering.sample", b);
    }
    sender.join().expect("udp sender");
    let lines = d.wait_lines(
        "out/samples.jsonl",
        2000 + ids.len(),
        Duration::from_secs(60),
    );
    assert_eq!(lines.len(), 2000 + ids.len(), "{}", d.log());
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&admin)["sources"]["amqp"]["amqp_oversized"] != 2 {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let peak = peak_rss_kb(d.pid());
    eprintln!("peak RSS {peak} kB, {baseline} kB at start");
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    for why in [
        "exceeds the limit of 8388608 (sources.amqp.max_message_bytes)",
        "more than 10000 samples (sources.amqp.max_samples_per_message)",
    ] {
        assert!(stopped.log.contains(why), "{why}:\n{}", stopped.log);
    }
    assert_eq!(stopped.source("udp", "input_dropped"), 0);
    // The broker client holds the 50 MB body (more than once) while it arrives:
    // about 160 MB here. Decoded, as before the limits, the same messages took
    // the daemon to 390 MB above its start.
    assert!(
        peak < baseline + 256 * 1024,
        "peak RSS {peak} kB (at start {baseline} kB)"
    );
}

#[test]
fn sigterm_under_a_flood_and_a_decoder_backlog_exits_within_the_grace_period() {
    let grace_ms = 2000;
    let d = udp_daemon_with_grace(grace_ms);
    let worst = many_keys_datagram(65_507);
    let addr = d.udp_addr();
    // As fast as loopback takes them, for 2 s before SIGTERM and on until the
    // daemon has exited: far more than the decoders can do, and a drain that
    // would read "until the socket is empty" would never end.
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flood = {
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let mut sent = 0u64;
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..64 {
                    if sock.send_to(&worst, addr).is_ok() {
                        sent += 1;
                    }
                }
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let stopped = d.stop();
    let took = t.elapsed();
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().expect("flood");
    eprintln!("SIGTERM under a flood of hostile datagrams ({sent} sent): {took:?}");
    assert!(stopped.status.success(), "{}", stopped.log);
    assert!(
        took < Duration::from_millis(grace_ms + 1500),
        "SIGTERM took {took:?} under a flood of hostile datagrams ({sent} sent)"
    );
    let decoded = stopped.source("udp", "bad_signatures");
    let dropped = stopped.source("udp", "input_dropped");
    assert!(
        dropped > 0,
        "no backlog was built ({sent} sent, {decoded} decoded)"
    );
}

#[test]
fn sigterm_with_a_slow_dispatcher_and_a_full_queue_exits_within_the_grace_period() {
    let grace_ms = 2000;
    let toml = udp_to_file("max_samples = 1\nmax_delay_ms = 20")
        .section("shutdown", &format!("grace_period_ms = {grace_ms}"))
        .dispatcher(
            "slow",
            &plugin("misbehave.wasm"),
            "timeout_ms = 1000\nqueue_batches = 100",
            "mode = \"loop\"\ntrigger_meter = \"cpu\"",
        )
        .build();
    let d = Daemon::start(&toml);
    // Every `cpu` sample makes a batch that takes the slow dispatcher 1 s: 40 s of work.
    let grams: Vec<Vec<u8>> = (0..320).map(|i| datagram(&signed(i, 80))).collect();
    d.send_udp(&grams);
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    let stopped = d.stop();
    let took = t.elapsed();
    eprintln!("SIGTERM with 40 s of work queued for a dispatcher: {took:?}");
    assert!(stopped.status.success(), "{}", stopped.log);
    // The grace period, plus the one call in progress (timeout_ms), plus slack.
    assert!(
        took < Duration::from_millis(grace_ms + 1000 + 1500),
        "SIGTERM took {took:?}"
    );
    assert!(
        stopped
            .log
            .contains("the batches this dispatcher had not finished are failed"),
        "{}",
        stopped.log
    );
}

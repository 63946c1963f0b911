//! Outbound HTTP from plugins, against a real HTTP server on 127.0.0.1: the
//! `http` dispatcher posts what Ceilometer's `dispatcher_http` posted, the host
//! injects the endpoint's credentials (which no log shows), and refuses what the
//! operator did not declare.

use std::collections::BTreeSet;
use std::time::Duration;

use collector::cli::samples::{Rng, realistic};
use collector::wire::msgpack;
use collector_e2e::http::HttpServer;
use collector_e2e::{ConfigBuilder, Daemon, Options, dispatcher_of, endpoint, plugin};

const SECRET: &str = "egress-secret";
const TOKEN: &str = "Bearer s3cret-t0ken-never-logged";

fn datagrams(n: u64, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let s = realistic(i, &mut rng, SECRET.as_bytes());
            let mut out = Vec::new();
            msgpack::encode_sample(&s, &mut out);
            out
        })
        .collect()
}

/// An `http` dispatcher posting to `server` (endpoint `target`).
fn http_dispatcher(
    b: ConfigBuilder,
    name: &str,
    server: &HttpServer,
    endpoint_extra: &str,
    config: &str,
) -> ConfigBuilder {
    b.dispatcher(
        name,
        &plugin("http.wasm"),
        &format!(
            "max_retries = 1\nretry_backoff_ms = 10\n{}",
            endpoint("target", &server.url(), endpoint_extra)
        ),
        config,
    )
}

#[test]
fn the_http_dispatcher_posts_what_ceilometer_posted_with_the_injected_credential() {
    let each = HttpServer::start();
    let batched = HttpServer::start();
    let b = ConfigBuilder::udp_to_file(SECRET, "max_samples = 25\nmax_delay_ms = 50");
    let b = http_dispatcher(
        b,
        "each",
        &each,
        "headers_env = { Authorization = \"COLLECTOR_TEST_TOKEN\" }",
        "path = \"/ceilometer/meters\"",
    );
    let b = http_dispatcher(
        b,
        "batched",
        &batched,
        "headers = { X-Tenant = \"ops\" }",
        "batch_mode = true\npath = \"/bulk?source=collector\"",
    );
    let d = Daemon::start_with(
        &b.build(),
        &Options {
            env: vec![
                ("COLLECTOR_TEST_TOKEN".into(), TOKEN.into()),
                // Every level, from every crate but the compiler's.
                (
                    "RUST_LOG".into(),
                    "trace,cranelift_codegen=info,wasmtime=info,wasmtime_cranelift=info,regalloc2=info"
                        .into(),
                ),
            ],
            ..Options::default()
        },
    );
    let n = 200;
    d.send_udp(&datagrams(n, 1));
    let lines = d.wait_lines("out/samples.jsonl", n as usize, Duration::from_secs(60));
    assert_eq!(lines.len(), n as usize, "{}", d.log());
    let posted = each.wait_taken(n as usize, Duration::from_secs(60));
    d.wait_status(
        "every batch posted in batch mode",
        Duration::from_secs(60),
        |st| {
            st["dispatchers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["name"] == "batched" && x["samples_ok"].as_u64() == Some(n))
        },
    );
    let st = d.status();
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);

    // One POST per sample, each body the JSON dict the file dispatcher wrote.
    let file: BTreeSet<&str> = lines.iter().map(String::as_str).collect();
    let bodies: BTreeSet<String> = posted
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).expect("UTF-8 body"))
        .collect();
    assert_eq!(posted.len(), n as usize, "one request per sample");
    assert_eq!(
        bodies.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        file,
        "each body is the sample as Ceilometer wrote it"
    );
    for r in &posted {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/ceilometer/meters");
        assert_eq!(
            r.header("authorization"),
            Some(TOKEN),
            "the injected credential"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // Batch mode: JSON lists whose elements are the same dicts.
    let lists = batched.taken();
    let mut in_lists = BTreeSet::new();
    for r in &lists {
        assert_eq!(r.target, "/bulk?source=collector");
        assert_eq!(r.header("x-tenant"), Some("ops"));
        let list: Vec<serde_json::Value> =
            serde_json::from_slice(&r.body).expect("a JSON list per batch");
        in_lists.extend(list.into_iter().map(|v| v["message_id"].to_string()));
    }
    assert_eq!(in_lists.len(), n as usize, "every sample in some batch");
    assert!(
        lists.len() < n as usize,
        "batches, not samples: {}",
        lists.len()
    );
    // The credential is in no log line, at any level.
    assert!(
        !stopped.log.contains("s3cret-t0ken"),
        "the injected credential was logged"
    );
    let each_status = dispatcher_of(&st, "each");
    assert_eq!(each_status["samples_ok"], n, "{st}");
    assert_eq!(stopped.dispatcher("each", "egress_refused"), 0);
}

#[test]
fn undeclared_endpoints_escaping_targets_and_oversized_responses_are_refused_and_counted() {
    let server = HttpServer::start();
    let big = HttpServer::start();
    big.answer(200, &"x".repeat(4096));
    let b = ConfigBuilder::udp_to_file(SECRET, "max_samples = 10\nmax_delay_ms = 50");
    let b = http_dispatcher(b, "undeclared", &server, "", "endpoint = \"elsewhere\"");
    let b = http_dispatcher(b, "escape", &server, "", "path = \"/../admin\"");
    let b = http_dispatcher(
        b,
        "oversized",
        &big,
        "max_response_bytes = 64",
        "batch_mode = true",
    );
    let d = Daemon::start(&b.build());
    d.send_udp(&datagrams(20, 2));
    let lines = d.wait_lines("out/samples.jsonl", 20, Duration::from_secs(60));
    assert_eq!(lines.len(), 20, "the file dispatcher is not held up");
    let st = d.wait_status(
        "every dispatcher failed its batches",
        Duration::from_secs(60),
        |st| {
            ["undeclared", "escape", "oversized"].iter().all(|name| {
                st["dispatchers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["name"] == *name && x["samples_failed"].as_u64() == Some(20))
            })
        },
    );
    let of = |name: &str| dispatcher_of(&st, name);
    let undeclared = of("undeclared");
    assert!(
        undeclared["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no endpoint `elsewhere`")),
        "{undeclared}"
    );
    assert!(
        undeclared["egress_refused"].as_u64() >= Some(1),
        "{undeclared}"
    );
    let escape = of("escape");
    assert!(
        escape["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("`.` or `..`")),
        "{escape}"
    );
    assert!(escape["egress_refused"].as_u64() >= Some(1), "{escape}");
    let oversized = of("oversized");
    assert!(
        oversized["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("max_response_bytes")),
        "{oversized}"
    );
    let metrics = d.metrics();
    assert!(
        metrics.contains(
            "collector_egress_failures_total{dispatcher=\"oversized\",endpoint=\"target\"}"
        ),
        "{metrics}"
    );
    assert!(
        server.taken().is_empty() && server.refused() == 0,
        "nothing reached the server"
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

/// The backend goes down under AMQP load and comes back 10 s later: every
/// sample arrives, no message was acked before its samples were taken, none was
/// dead-lettered (though `max_deliveries = 2` would dead-letter a poison
/// message within two failures), and `/metrics` shows the retries.
#[test]
fn a_backend_outage_under_amqp_load_holds_the_messages_and_loses_nothing() {
    use collector_e2e::amqp::{Publisher, notifications};
    use collector_e2e::rabbit::Broker;
    let broker = Broker::start();
    let server = HttpServer::start();
    let (bodies, ids) = notifications(40, 25, SECRET.as_bytes(), 21);
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 50\nmax_delay_ms = 50")
        .amqp(
            &broker.url(),
            "rpc = false\nprefetch_count = 4\nmax_deliveries = 2",
        )
        .dispatcher(
            "backend",
            &plugin("http.wasm"),
            &format!(
                "timeout_ms = 2000\nretry_backoff_ms = 100\nretry_backoff_max_ms = 500\n{}",
                endpoint(
                    "target",
                    &server.url(),
                    "connect_timeout_ms = 200\nresponse_timeout_ms = 1000"
                )
            ),
            "batch_mode = true\npath = \"/ingest\"",
        );
    let d = Daemon::start(&b.build());
    d.wait_readyz(Duration::from_secs(60));
    let publisher = Publisher::connect(&broker.url());
    for body in &bodies[..20] {
        publisher.publish("ceilometer", "metering.sample", body);
    }
    let amqp_acked = |st: &serde_json::Value| st["sources"]["amqp"]["amqp_acked"].as_u64();
    d.wait_status("the first half acked", Duration::from_secs(60), |st| {
        amqp_acked(st) == Some(20)
    });
    // Down: nothing listens on its port any more; the second half is published.
    let (address, before) = server.stop();
    for body in &bodies[20..] {
        publisher.publish("ceilometer", "metering.sample", body);
    }
    std::thread::sleep(Duration::from_secs(10));
    let during = d.status();
    assert_eq!(
        amqp_acked(&during),
        Some(20),
        "a message was acked while its backend was down: {during}"
    );
    assert_eq!(
        during["sources"]["amqp"]["amqp_dead_lettered"], 0,
        "{during}"
    );
    let metrics = d.metrics();
    let retries = collector_e2e::metric(
        &metrics,
        "collector_plugin_retries_total{dispatcher=\"backend\"}",
    );
    assert!(retries >= 5.0, "{retries} retries in 10 s of outage");
    // Back on the same port: everything held arrives.
    let server = HttpServer::start_on(address);
    d.wait_status("every message acked", Duration::from_secs(120), |st| {
        amqp_acked(st) == Some(40)
    });
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let mut got = BTreeSet::new();
    for r in before.iter().chain(server.taken().iter()) {
        let list: Vec<serde_json::Value> = serde_json::from_slice(&r.body).expect("a JSON list");
        got.extend(
            list.iter()
                .filter_map(|v| v["message_id"].as_str().map(str::to_owned)),
        );
    }
    let want: BTreeSet<String> = ids.into_iter().collect();
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(missing.is_empty(), "{} samples lost", missing.len());
    assert_eq!(stopped.source("amqp", "amqp_dead_lettered"), 0);
    assert_eq!(
        stopped.source("amqp", "amqp_requeued"),
        0,
        "held, not requeued"
    );
}

/// The C SDK's binding of the same imports (plugins/c-http-post): each batch
/// posted as a JSON list, the same dicts the file dispatcher writes.
#[test]
fn a_c_plugin_posts_through_the_same_imports() {
    let server = HttpServer::start();
    let b = ConfigBuilder::udp_to_file(SECRET, "max_samples = 20\nmax_delay_ms = 50").dispatcher(
        "c-post",
        &plugin("c-http-post.wasm"),
        &endpoint("target", &server.url(), ""),
        "path = \"/from-c?x=1\"",
    );
    let d = Daemon::start(&b.build());
    d.send_udp(&datagrams(100, 3));
    let lines = d.wait_lines("out/samples.jsonl", 100, Duration::from_secs(60));
    d.wait_status("every sample posted", Duration::from_secs(60), |st| {
        dispatcher_of(st, "c-post")["samples_ok"].as_u64() == Some(100)
    });
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    // Compared as JSON text of each parsed dict (key order as written).
    let text = |v: &serde_json::Value| v.to_string();
    let file: BTreeSet<String> = lines
        .iter()
        .map(|l| text(&serde_json::from_str(l).expect("a line")))
        .collect();
    let mut posted = BTreeSet::new();
    for r in server.taken() {
        assert_eq!(r.target, "/from-c?x=1");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let list: Vec<serde_json::Value> = serde_json::from_slice(&r.body).expect("a JSON list");
        posted.extend(list.iter().map(text));
    }
    assert_eq!(posted, file, "the C plugin posted every sample as written");
}

/// A backend slower than the dispatcher's `timeout_ms`: the wait ends before
/// the deadline, the plugin answers retry, nothing is lost once the backend is
/// quick again, and no dispatcher thread is stuck (the daemon shuts down at once).
#[test]
fn a_backend_slower_than_timeout_ms_is_retried_and_holds_no_thread() {
    let server = HttpServer::start();
    server.delay(Duration::from_secs(3));
    let b = ConfigBuilder::udp_to_file(SECRET, "max_samples = 10\nmax_delay_ms = 50").dispatcher(
        "slow",
        &plugin("http.wasm"),
        &format!(
            "timeout_ms = 1000\nretry_backoff_ms = 100\nretry_backoff_max_ms = 200\nqueue_batches = 64\n{}",
            endpoint("target", &server.url(), "response_timeout_ms = 10000")
        ),
        "batch_mode = true",
    );
    let d = Daemon::start(&b.build());
    d.send_udp(&datagrams(50, 4));
    d.wait_status("the slow backend retried", Duration::from_secs(60), |st| {
        dispatcher_of(st, "slow")["plugin_retries"].as_u64() >= Some(3)
    });
    let st = d.status();
    let slow = dispatcher_of(&st, "slow");
    assert_eq!(
        slow["plugin_timeouts"], 0,
        "no call ran past its deadline: {slow}"
    );
    server.delay(Duration::ZERO);
    d.wait_status(
        "every sample taken once the backend is quick",
        Duration::from_secs(60),
        |st| dispatcher_of(st, "slow")["samples_ok"].as_u64() == Some(50),
    );
    let t = std::time::Instant::now();
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    let mut got = BTreeSet::new();
    for r in server.taken() {
        let list: Vec<serde_json::Value> = serde_json::from_slice(&r.body).expect("a JSON list");
        got.extend(list.iter().map(|v| v["message_id"].to_string()));
    }
    assert_eq!(got.len(), 50, "every sample reached the backend");
}

/// `http2_prior_knowledge`: the endpoint's pool speaks HTTP/2 (h2c) to the backend.
#[test]
fn an_endpoint_can_speak_http2() {
    let server = HttpServer::start();
    let b = ConfigBuilder::udp_to_file(SECRET, "max_samples = 10\nmax_delay_ms = 50").dispatcher(
        "h2",
        &plugin("http.wasm"),
        &endpoint("target", &server.url(), "http2_prior_knowledge = true"),
        "",
    );
    let d = Daemon::start(&b.build());
    d.send_udp(&datagrams(20, 5));
    let taken = server.wait_taken(20, Duration::from_secs(60));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert_eq!(taken.len(), 20);
    assert_eq!(
        server.http2_requests(),
        20,
        "every request came over HTTP/2"
    );
}

/// HTTPS endpoints: the server is verified against the endpoint's `ca_file`
/// (not the system's roots, which do not know the test CA), and the endpoint
/// presents its client certificate to a server that asks for one.
#[test]
fn tls_endpoints_verify_the_server_and_present_a_client_certificate() {
    use collector_e2e::http::Tls;
    let tls = Tls::make();
    let server = HttpServer::start_tls(&tls, true);
    let url = server.https_url();
    let b = ConfigBuilder::udp_to_file(SECRET, "max_samples = 10\nmax_delay_ms = 50");
    let with = |extra: &str| {
        format!(
            "max_retries = 1\nretry_backoff_ms = 10\n{}",
            endpoint("target", &url, extra)
        )
    };
    let b = b
        .dispatcher(
            "mutual",
            &plugin("http.wasm"),
            &with(&format!(
                "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
                tls.path("ca.pem"),
                tls.path("client.pem"),
                tls.path("client.key")
            )),
            "batch_mode = true",
        )
        .dispatcher(
            "system-roots",
            &plugin("http.wasm"),
            &with(""),
            "batch_mode = true",
        )
        .dispatcher(
            "no-client-cert",
            &plugin("http.wasm"),
            &with(&format!("ca_file = \"{}\"", tls.path("ca.pem"))),
            "batch_mode = true",
        );
    let d = Daemon::start(&b.build());
    d.send_udp(&datagrams(20, 6));
    let st = d.wait_status("every dispatcher done", Duration::from_secs(60), |st| {
        ["mutual", "system-roots", "no-client-cert"]
            .iter()
            .all(|n| {
                let x = dispatcher_of(st, n);
                x["samples_ok"].as_u64().unwrap_or(0) + x["samples_failed"].as_u64().unwrap_or(0)
                    >= 20
            })
    });
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert_eq!(dispatcher_of(&st, "mutual")["samples_ok"], 20, "{st}");
    let roots = dispatcher_of(&st, "system-roots");
    assert_eq!(roots["samples_ok"], 0, "{roots}");
    assert!(
        roots["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate") || e.contains("UnknownIssuer")),
        "the error says why: {roots}"
    );
    let anonymous = dispatcher_of(&st, "no-client-cert");
    assert_eq!(anonymous["samples_ok"], 0, "{anonymous}");
    let bodies: usize = server
        .taken()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Vec<serde_json::Value>>(&r.body)
                .expect("a JSON list")
                .len()
        })
        .sum();
    assert_eq!(bodies, 20, "only the mutual-TLS dispatcher got through");
}

/// The endpoint's pool belongs to the dispatcher, not to a plugin version: a
/// plugin replaced while it runs goes on over the same kept-alive connection.
#[test]
fn the_connection_pool_outlives_a_plugin_reload() {
    let server = HttpServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm_path = dir.path().join("http.wasm");
    let wasm = std::fs::read(plugin("http.wasm")).expect("http.wasm");
    std::fs::write(&wasm_path, &wasm).expect("copy");
    let b = ConfigBuilder::udp_to_file(SECRET, "max_samples = 5\nmax_delay_ms = 30")
        .section("reload", "debounce_ms = 100")
        .dispatcher(
            "pooled",
            &wasm_path.display().to_string(),
            &endpoint("target", &server.url(), "pool_max_idle = 1"),
            "batch_mode = true",
        );
    let d = Daemon::start(&b.build());
    d.send_udp(&datagrams(20, 7));
    let _ = server.wait_taken(4, Duration::from_secs(60));
    assert_eq!(server.connections(), 1, "one kept-alive connection");
    let first = dispatcher_of(&d.status(), "pooled")["version"].clone();
    // A new version: the same code with a custom section, so a new hash.
    let mut next = wasm.clone();
    next.extend_from_slice(&[0x00, 0x06, 0x05, b'v', b'e', b'r', b'-', b'2']);
    let tmp = dir.path().join("http.wasm.new");
    std::fs::write(&tmp, &next).expect("new version");
    std::fs::rename(&tmp, &wasm_path).expect("deploy");
    d.wait_daemon_count("plugin_reloads", 1, Duration::from_secs(60));
    d.send_udp(&datagrams(20, 8));
    d.wait_status("the new version posted", Duration::from_secs(60), |st| {
        dispatcher_of(st, "pooled")["samples_ok"].as_u64() == Some(40)
    });
    let st = d.status();
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let now = dispatcher_of(&st, "pooled");
    assert_ne!(now["version"], first, "a new version serves: {now}");
    assert_eq!(
        server.connections(),
        1,
        "the new version went on over the same connection"
    );
}

/// Response bodies the host holds for a plugin's open handles count against
/// its `memory_limit_bytes`: a plugin that keeps every handle open gets
/// `HTTP_FAIL_RESPONSE_TOO_LARGE` for the bodies past its cap instead of
/// parking memory in the host, and the other dispatchers are not affected.
#[test]
fn response_bodies_a_plugin_holds_count_against_its_memory_limit() {
    let server = HttpServer::start();
    server.answer(200, &"x".repeat(1 << 20));
    let b = ConfigBuilder::udp_to_file(SECRET, "max_samples = 10\nmax_delay_ms = 50").dispatcher(
        "hoarder",
        &plugin("misbehave.wasm"),
        &format!(
            "memory_limit_bytes = 4194304\nmax_retries = 0\n{}",
            endpoint("sink", &server.url(), "max_response_bytes = 2097152")
        ),
        "mode = \"hoard\"\ntrigger_meter = \"hoard\"\nhoard_requests = 16",
    );
    let d = Daemon::start(&b.build());
    let mut rng = Rng::new(9);
    let mut s = realistic(0, &mut rng, SECRET.as_bytes());
    s.counter_name = "hoard".into();
    s.message_signature = Some(collector::signature::compute(&s, SECRET.as_bytes()));
    let mut datagram = Vec::new();
    msgpack::encode_sample(&s, &mut datagram);
    d.send_udp(&[datagram]);
    let st = d.wait_status(
        "the hoarder failed its batch",
        Duration::from_secs(60),
        |st| {
            let h = dispatcher_of(st, "hoarder");
            h["samples_failed"].as_u64() == Some(1) && h["last_error"].is_string()
        },
    );
    let hoarder = dispatcher_of(&st, "hoarder");
    let why = hoarder["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("memory_limit_bytes (4194304)") && why.contains("responses held"),
        "{hoarder}"
    );
    // The plugin's own memory is over 1 MiB, so at most 2 of the 1 MiB bodies fit.
    let held: usize = why
        .split(" of ")
        .next()
        .and_then(|n| n.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert!((1..=3).contains(&held), "{held} bodies held: {why}");
    assert_eq!(server.taken().len(), 16, "every request was sent");
    let lines = d.wait_lines("out/samples.jsonl", 1, Duration::from_secs(30));
    assert_eq!(lines.len(), 1, "the file dispatcher took the sample");
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

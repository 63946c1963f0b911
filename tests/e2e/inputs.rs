//! The TCP and HTTP inputs against the real Ceilometer 27.0.0 publishers that
//! can point at a collector (`tcp://`, `http://` with `batch` on and off,
//! `https://` with a client certificate and basic auth, `opentelemetryhttp://`),
//! their bad input, and their backpressure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use collector_e2e::http::Tls;
use collector_e2e::{
    ConfigBuilder, Daemon, Published, ceilometer_url, ceilometer_verified, dispatcher_of, plugin,
};
use serde_json::Value;

const SECRET: &str = "inputs-secret";

/// The file dispatcher's lines by `message_id`, each seen once.
fn by_id(lines: &[String]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for l in lines {
        let v: Value = serde_json::from_str(l).expect("a JSON line");
        let id = v["message_id"].as_str().expect("message_id").to_owned();
        assert!(out.insert(id.clone(), v).is_none(), "{id} arrived twice");
    }
    out
}

/// An `as_dict()` object as the HTTP input maps it (the README's table).
fn mapped(as_dict: &Value) -> Value {
    let Value::Object(m) = as_dict else {
        panic!("not an object: {as_dict}")
    };
    Value::Object(
        m.iter()
            .map(|(k, v)| {
                let key = match k.as_str() {
                    "name" => "counter_name",
                    "type" => "counter_type",
                    "unit" => "counter_unit",
                    "volume" => "counter_volume",
                    "id" => "message_id",
                    other => other,
                };
                (key.to_owned(), v.clone())
            })
            .collect(),
    )
}

fn published_ok(p: &Published, what: &str) {
    assert!(p.ok, "the {what} publisher logged a failure");
}

#[test]
fn the_real_tcp_publisher_s_samples_arrive_once_json_equal_and_still_signed() {
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 50\nmax_delay_ms = 50")
        .tcp("")
        .file_dispatcher();
    let d = Daemon::start(&b.build());
    let p = ceilometer_url(&format!("tcp://{}", d.tcp_addr()), SECRET, 300, 10, 3, &[]);
    published_ok(&p, "tcp://");
    assert_eq!(p.messages.len(), 300);
    assert!(
        p.messages.iter().all(|m| m["publisher_id"].is_string()),
        "the agent adds publisher_id"
    );
    // An agent restarted: a new connection, the same input.
    let again = ceilometer_url(&format!("tcp://{}", d.tcp_addr()), SECRET, 50, 10, 4, &[]);
    published_ok(&again, "tcp:// (reconnected)");
    let lines = d.wait_lines("out/samples.jsonl", 350, Duration::from_secs(60));
    let got = by_id(&lines);
    assert_eq!(got.len(), 350);
    for m in p.messages.iter().chain(&again.messages) {
        let id = m["message_id"].as_str().expect("message_id");
        assert_eq!(got.get(id), Some(m), "sample {id} is JSON-equal");
    }
    assert_eq!(
        ceilometer_verified(&lines, SECRET),
        350,
        "Ceilometer's verify_signature accepts every sample written"
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert_eq!(stopped.source("tcp", "samples_received"), 350);
    assert_eq!(stopped.source("tcp", "tcp_connections"), 2);
    assert_eq!(stopped.source("tcp", "bad_signatures"), 0);
    assert_eq!(stopped.source("tcp", "tcp_frames_refused"), 0);
}

/// Runs the `http://` publisher at `url` and checks that every sample it
/// posted arrived once, mapped as documented; returns the bodies it posted.
fn check_http_publisher(d: &Daemon, url: &str, count: usize, seen: &mut usize) -> Vec<Value> {
    let p = ceilometer_url(url, "", count, 10, *seen as u64 + 1, &[]);
    published_ok(&p, url);
    *seen += count;
    let lines = d.wait_lines("out/samples.jsonl", *seen, Duration::from_secs(60));
    let got = by_id(&lines);
    let dicts: Vec<&Value> = p
        .posted
        .iter()
        .flat_map(|b| match b {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        })
        .collect();
    assert_eq!(dicts.len(), count, "{url}");
    for dict in dicts {
        let want = mapped(dict);
        let id = want["message_id"].as_str().expect("id");
        assert_eq!(got.get(id), Some(&want), "{url}: sample {id}");
        assert!(want.get("message_signature").is_none());
    }
    p.posted
}

#[test]
fn the_real_http_publisher_batched_and_one_by_one_arrives_once_mapped_as_documented() {
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 1000\nmax_delay_ms = 60000")
        .http("")
        .file_dispatcher();
    let d = Daemon::start(&b.build());
    let base = format!("http://{}", d.http_addr());
    let mut seen = 0;
    // max_delay_ms is a minute: each request's samples must be flushed at once.
    let started = Instant::now();
    let posted = check_http_publisher(&d, &format!("{base}/"), 50, &mut seen);
    assert_eq!(
        posted.len(),
        5,
        "one request per publish_samples call of 10"
    );
    assert!(posted.iter().all(Value::is_array));
    let posted = check_http_publisher(&d, &format!("{base}/ceilometer?batch=False"), 20, &mut seen);
    assert_eq!(posted.len(), 20, "batch=False posts each sample alone");
    assert!(posted.iter().all(Value::is_object), "bare objects");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "requests were answered without waiting for max_delay_ms"
    );
    let st = d.status();
    let http = &st["sources"]["http"];
    assert_eq!(http["http_requests_ok"], 25, "{http}");
    assert_eq!(http["samples_received"], 70, "{http}");
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

#[test]
fn the_real_https_publisher_with_a_client_certificate_and_basic_auth_arrives_once() {
    let tls = Tls::make();
    let b = ConfigBuilder::new(SECRET)
        .http(&format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\ntls_client_ca_file = \"{}\"\n\
             username = \"ceilometer\"\npassword_env = \"COLLECTOR_TEST_HTTP_PASSWORD\"",
            tls.path("server.pem"),
            tls.path("server.key"),
            tls.path("ca.pem"),
        ))
        .file_dispatcher();
    let opts = collector_e2e::Options {
        env: vec![("COLLECTOR_TEST_HTTP_PASSWORD".into(), "pa55-w0rd".into())],
        ..collector_e2e::Options::default()
    };
    let d = Daemon::start_with(&b.build(), &opts);
    let url = format!(
        "https://ceilometer:pa55-w0rd@{}/?verify_ssl={}&clientcert={}&clientkey={}",
        d.http_addr(),
        tls.path("ca.pem"),
        tls.path("client.pem"),
        tls.path("client.key"),
    );
    let mut seen = 0;
    check_http_publisher(&d, &url, 30, &mut seen);
    // Without the client certificate the handshake fails; with a wrong
    // password the request is refused: the publisher logs both.
    let no_cert = format!(
        "https://ceilometer:pa55-w0rd@{}/?verify_ssl={}",
        d.http_addr(),
        tls.path("ca.pem")
    );
    assert!(!ceilometer_url(&no_cert, "", 5, 5, 9, &[]).ok);
    let wrong = url.replace("pa55-w0rd", "guess");
    assert!(!ceilometer_url(&wrong, "", 5, 5, 10, &[]).ok);
    let st = d.status();
    assert_eq!(st["sources"]["http"]["http_auth_failures"], 1, "{st}");
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert!(
        !stopped.log.contains("pa55-w0rd"),
        "the password is in no log line"
    );
    assert_eq!(
        collector_e2e::read_lines(&stopped.dir.path().join("out/samples.jsonl")).len(),
        30
    );
}

#[test]
fn the_real_otlp_publisher_maps_back_with_the_agents_clock_corrected() {
    // The agent runs at UTC+2 (POSIX writes that Etc/GMT-2): its publisher's
    // time.mktime takes two hours off every timestamp, which the input's
    // otlp_agent_utc_offset_minutes gives back.
    let b = ConfigBuilder::new(SECRET)
        .http("otlp_agent_utc_offset_minutes = 120")
        .file_dispatcher();
    let d = Daemon::start(&b.build());
    let url = format!("opentelemetryhttp://{}/v1/metrics", d.http_addr());
    let p = ceilometer_url(&url, "", 30, 10, 5, &[("TZ", "Etc/GMT-2")]);
    published_ok(&p, "opentelemetryhttp://");
    assert_eq!(p.posted.len(), 30, "one request per sample");
    let lines = d.wait_lines("out/samples.jsonl", 30, Duration::from_secs(60));
    let got = by_id(&lines);
    assert_eq!(got.len(), 30, "every sample has an id of its own");
    let key = |v: &Value, name: &str| {
        (
            v[name].as_str().unwrap_or_default().to_owned(),
            v["resource_id"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let by_meter: BTreeMap<_, &Value> = got.values().map(|v| (key(v, "counter_name"), v)).collect();
    for s in &p.samples {
        let v = by_meter
            .get(&key(s, "name"))
            .unwrap_or_else(|| panic!("no sample for {s}"));
        let seconds = collector::wire::otlp::unix_seconds(s["timestamp"].as_str().expect("ts"))
            .expect("a timestamp");
        let kind = if s["type"] == "cumulative" {
            "cumulative"
        } else {
            "gauge"
        };
        let want = serde_json::json!({
            "source": "openstack",
            "counter_name": s["name"],
            "counter_type": kind,
            "counter_unit": s["unit"],
            "counter_volume": s["volume"],
            "user_id": s["user_id"],
            "project_id": s["project_id"],
            "resource_id": s["resource_id"],
            "timestamp": collector::wire::otlp::iso_utc(seconds),
            "resource_metadata": {},
            "message_id": v["message_id"],
        });
        assert_eq!(*v, &want, "{s}");
        assert_eq!(v["message_id"].as_str().map(str::len), Some(36), "a UUID");
    }
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

/// Signed frames as the `tcp://` publisher sends them.
fn frames(count: u64, seed: u64) -> Vec<Vec<u8>> {
    collector::cli::send::frames(count, seed, SECRET.as_bytes())
}

/// Sends `bytes` on a new connection and keeps it open.
fn connect_and_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.write_all(bytes).expect("send");
    c
}

/// Whether the peer closes `c` within `within` (a read returns 0 or is reset).
fn closed_by_peer(c: &mut TcpStream, within: Duration) -> bool {
    c.set_read_timeout(Some(within)).expect("timeout");
    let mut b = [0u8; 1];
    match c.read(&mut b) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn bad_tcp_frames_close_only_their_connection_and_cost_the_good_traffic_nothing() {
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 100\nmax_delay_ms = 50")
        .tcp("max_frame_bytes = 65536\nframe_timeout_ms = 500")
        .file_dispatcher();
    let d = Daemon::start(&b.build());
    let addr = d.tcp_addr();
    let good = frames(2000, 1);
    let sender = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connect");
        for f in &good {
            c.write_all(f).expect("send");
        }
    });
    // A length of 2^63.
    let mut huge = connect_and_send(addr, &(1u64 << 63).to_le_bytes());
    // Garbage msgpack in a well-formed frame, then a good frame on the same connection.
    let mut garbage = 9u64.to_le_bytes().to_vec();
    garbage.extend_from_slice(b"\xc1garbage!");
    garbage.extend_from_slice(&frames(1, 7)[0]);
    let kept = connect_and_send(addr, &garbage);
    // A truncated frame: 100 bytes announced, 50 sent, then the connection closes.
    let mut cut = 100u64.to_le_bytes().to_vec();
    cut.extend_from_slice(&[0x80; 50]);
    drop(connect_and_send(addr, &cut));
    // Half a frame, then nothing: closed at frame_timeout_ms.
    let half = &frames(1, 8)[0];
    let mut stalled = connect_and_send(addr, &half[..half.len() / 2]);
    sender.join().expect("the good sender");
    assert!(closed_by_peer(&mut huge, Duration::from_secs(10)), "2^63");
    assert!(
        closed_by_peer(&mut stalled, Duration::from_secs(10)),
        "stalled"
    );
    let lines = d.wait_lines("out/samples.jsonl", 2001, Duration::from_secs(60));
    assert_eq!(by_id(&lines).len(), 2001, "every good sample, once");
    drop(kept);
    let st = d.wait_status("three frames refused", Duration::from_secs(30), |st| {
        st["sources"]["tcp"]["tcp_frames_refused"] == 3
    });
    let tcp = &st["sources"]["tcp"];
    assert_eq!(
        tcp["decode_errors"], 4,
        "three refused frames and the garbage: {tcp}"
    );
    assert_eq!(tcp["samples_received"], 2001, "{tcp}");
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    for why in [
        "over max_frame_bytes",
        "stalled",
        "into a frame",
        "cannot decode frame",
    ] {
        assert!(stopped.log.contains(why), "logged: {why}");
    }
}

/// One HTTP/1.1 request on a new connection: its status and the whole
/// answer. The body is written while the answer is read, so that an answer
/// sent before the body was read (413) is seen.
fn raw_request(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    c.write_all(head.as_bytes()).expect("head");
    let mut w = c.try_clone().expect("clone");
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&body);
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let _ = c.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn post(addr: SocketAddr, path: &str, auth: Option<&str>, body: &[u8]) -> (u16, String) {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
    raw_request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        body,
    )
}

#[test]
fn bad_http_bodies_get_a_clear_answer_and_cost_the_good_traffic_nothing() {
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 100\nmax_delay_ms = 50")
        .http("max_body_bytes = 1048576\nusername = \"u\"\npassword = \"p\"")
        .file_dispatcher();
    let d = Daemon::start(&b.build());
    let addr = d.http_addr();
    // "u:p"
    let auth = Some("dTpw");
    let good = collector::cli::send_http::http_bodies(500, 3, 50);
    let sender = std::thread::spawn(move || {
        for (_, body) in &good {
            let (status, text) = post(addr, "/", auth, body);
            assert_eq!(status, 200, "{text}");
        }
    });
    let otlp_body = collector::cli::send_http::otlp_bodies(1, 4).remove(0).1;
    let wrong_otlp = String::from_utf8(otlp_body.clone())
        .expect("utf-8")
        .replace("resource_metrics", "metrics");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/", b"{not json".to_vec(), 400, "not JSON"),
        ("/", b"[1, 2]".to_vec(), 400, "sample 0"),
        ("/", b"\"a string\"".to_vec(), 400, "not a string"),
        ("/", br#"[{"name": "cpu"}]"#.to_vec(), 400, "required key"),
        ("/v1/metrics", b"[]".to_vec(), 400, "not an array"),
        (
            "/v1/metrics",
            wrong_otlp.into_bytes(),
            400,
            "no `resource_metrics`",
        ),
    ];
    for (path, body, want, why) in &cases {
        let (status, text) = post(addr, path, auth, body);
        assert_eq!(status, *want, "{path} {text}");
        assert!(text.contains(why), "{text}");
    }
    let (status, text) = post(addr, "/", Some("dTpx"), b"[]");
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("www-authenticate: Basic"), "{text}");
    let (status, text) = raw_request(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    );
    assert_eq!(status, 405, "{text}");
    // 100 MiB announced: refused before a byte of it is read.
    let (status, text) = raw_request(
        addr,
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dTpw\r\nContent-Length: 104857600\r\n\r\n",
        &[b'['; 4096],
    );
    assert_eq!(status, 413, "{text}");
    // 100 MiB chunked, without a length: cut at max_body_bytes.
    let chunk = vec![b' '; 1 << 20];
    let mut chunked = Vec::new();
    for _ in 0..100 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw_request(
        addr,
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dTpw\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunked,
    );
    assert_eq!(status, 413, "{text}");
    sender.join().expect("every good request was answered 200");
    let lines = d.wait_lines("out/samples.jsonl", 500, Duration::from_secs(60));
    assert_eq!(by_id(&lines).len(), 500, "every good sample, once");
    let st = d.status();
    let http = &st["sources"]["http"];
    assert_eq!(http["http_requests_ok"], 10, "{http}");
    assert_eq!(http["http_auth_failures"], 1, "{http}");
    assert_eq!(
        http["decode_errors"], 8,
        "six bodies and two oversized: {http}"
    );
    assert_eq!(http["http_requests_refused"], 10, "{http}");
    assert!(
        d.rss_bytes() < 200 << 20,
        "a 100 MiB body was not held: {} bytes resident",
        d.rss_bytes()
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

#[test]
fn a_dispatchers_rejection_is_answered_422_with_its_reason_and_the_rest_is_taken() {
    let b = ConfigBuilder::new(SECRET)
        .http("")
        .file_dispatcher()
        .dispatcher(
            "picky",
            &plugin("misbehave.wasm"),
            "",
            "mode = \"reject\"\ntrigger_meter = \"poison\"",
        );
    let d = Daemon::start(&b.build());
    let mut rng = collector::cli::samples::Rng::new(21);
    let dicts: Vec<Value> = (0..10)
        .map(|i| {
            let mut s = collector::cli::samples::realistic(i, &mut rng, b"");
            if i == 6 {
                s.counter_name = "poison".into();
            }
            collector::wire::http_body::as_dict(&s)
        })
        .collect();
    let body = serde_json::to_vec(&dicts).expect("JSON");
    let (status, text) = post(d.http_addr(), "/", None, &body);
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains("poison sample") && text.contains("`picky` did not take 1 of the samples"),
        "{text}"
    );
    let lines = d.wait_lines("out/samples.jsonl", 10, Duration::from_secs(30));
    assert_eq!(by_id(&lines).len(), 10, "the file dispatcher took them all");
    let st = d.status();
    assert_eq!(dispatcher_of(&st, "picky")["samples_ok"], 9, "{st}");
    let http = &st["sources"]["http"];
    assert_eq!(http["http_samples_refused"], 1, "{http}");
    assert_eq!(http["http_requests_refused"], 1, "{http}");
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

/// A dispatcher that answers `retry` to its first 100 calls, 100 ms apart:
/// about ten seconds of a backend that is down; `settings` besides.
fn down_for_ten_seconds(b: ConfigBuilder, settings: &str) -> ConfigBuilder {
    b.dispatcher(
        "down",
        &plugin("misbehave.wasm"),
        &format!(
            "retry_backoff_ms = 100\nretry_backoff_max_ms = 100\nqueue_batches = 2\n{settings}"
        ),
        "fail_first = 100",
    )
}

#[test]
fn tcp_holds_back_while_a_dispatcher_retries_and_loses_nothing() {
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 100\nmax_delay_ms = 50")
        .tcp("")
        .file_dispatcher();
    // max_retries = 1 would drop a UDP batch after one retry: TCP's are kept.
    let b = down_for_ten_seconds(b, "max_retries = 1");
    let d = Daemon::start(&b.build());
    let url = format!("tcp://{}", d.tcp_addr());
    let n = 20_000;
    let publisher = std::thread::spawn(move || ceilometer_url(&url, SECRET, n, 100, 11, &[]));
    std::thread::sleep(Duration::from_secs(5));
    let st = d.status();
    let tcp = &st["sources"]["tcp"];
    let received = tcp["samples_received"].as_u64().unwrap_or(0);
    assert!(
        received < n as u64 / 2,
        "the source stopped reading while the dispatcher retried: {tcp}"
    );
    assert!(
        !publisher.is_finished(),
        "the agent's send() waits meanwhile"
    );
    let mut peak_rss = d.rss_bytes();
    let p = publisher.join().expect("publisher");
    published_ok(&p, "tcp://");
    let deadline = Instant::now() + Duration::from_secs(120);
    while dispatcher_of(&d.status(), "down")["samples_ok"].as_u64() != Some(n as u64) {
        peak_rss = peak_rss.max(d.rss_bytes());
        assert!(Instant::now() < deadline, "{}", d.status());
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = d.wait_lines("out/samples.jsonl", n, Duration::from_secs(60));
    assert_eq!(by_id(&lines).len(), n, "every sample, once");
    let st = d.status();
    let down = dispatcher_of(&st, "down");
    assert_eq!(
        down["samples_failed"], 0,
        "retried beyond max_retries: {down}"
    );
    assert!(down["plugin_retries"].as_u64() >= Some(99), "{down}");
    assert!(
        st["sources"]["tcp"]["tcp_backpressure_ms"].as_u64() >= Some(4000),
        "{st}"
    );
    eprintln!(
        "peak resident memory under TCP backpressure: {} MiB",
        peak_rss >> 20
    );
    assert!(
        peak_rss < 300 << 20,
        "memory stayed bounded: {peak_rss} bytes"
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    assert_eq!(stopped.source("tcp", "input_dropped"), 0);
}

#[test]
fn http_holds_requests_up_to_its_bound_then_answers_503_and_counts_every_refused_sample() {
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 100\nmax_delay_ms = 50")
        .http("hold_timeout_ms = 1000")
        .file_dispatcher();
    let b = down_for_ten_seconds(b, "");
    let d = Daemon::start(&b.build());
    let addr = d.http_addr();
    let bodies = collector::cli::send_http::http_bodies(4000, 12, 20);
    let (mut ok, mut unavailable, mut refused_samples) = (Vec::new(), 0u64, 0u64);
    let mut longest = Duration::ZERO;
    let started = Instant::now();
    // Four clients at once, like agents' worker threads.
    let answers: Vec<Vec<(u16, usize, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .chunks(bodies.len() / 4)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(i, (_, body))| {
                            let t = Instant::now();
                            let (status, _) = post(addr, "/", None, body);
                            (status, i, t.elapsed())
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    for (part, answers) in bodies.chunks(bodies.len() / 4).zip(&answers) {
        for (status, i, took) in answers {
            longest = longest.max(*took);
            match status {
                200 => ok.push(&part[*i].1),
                503 => {
                    unavailable += 1;
                    refused_samples += part[*i].0;
                }
                other => panic!("answered {other}"),
            }
        }
    }
    assert!(unavailable > 0, "the dispatcher was down for ten seconds");
    assert!(!ok.is_empty(), "and back afterwards");
    assert!(
        longest < Duration::from_millis(2500),
        "no request was held much past hold_timeout_ms: {longest:?}"
    );
    assert!(started.elapsed() > Duration::from_secs(8));
    let st = d.wait_status("the counters settled", Duration::from_secs(30), |st| {
        st["sources"]["http"]["http_requests_held"] == 0
    });
    let http = &st["sources"]["http"];
    assert_eq!(http["http_requests_unavailable"], unavailable, "{http}");
    assert_eq!(http["http_samples_refused"], refused_samples, "{http}");
    assert_eq!(http["http_requests_ok"], ok.len() as u64, "{http}");
    // Every sample of a 200 answer reached both dispatchers, once.
    let taken: usize = ok
        .iter()
        .map(|b| {
            serde_json::from_slice::<Vec<Value>>(b)
                .expect("a list")
                .len()
        })
        .sum();
    let lines = d.wait_lines("out/samples.jsonl", taken, Duration::from_secs(30));
    let got = by_id(&lines);
    for body in &ok {
        for s in serde_json::from_slice::<Vec<Value>>(body).expect("a list") {
            assert!(got.contains_key(s["id"].as_str().expect("id")), "{s}");
        }
    }
    let down = dispatcher_of(&st, "down");
    assert!(
        down["samples_ok"].as_u64() >= Some(taken as u64),
        "the down dispatcher took every answered sample too: {down}"
    );
    assert!(
        d.rss_bytes() < 300 << 20,
        "{} bytes resident",
        d.rss_bytes()
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

#[test]
fn bodies_held_at_once_are_bounded_by_max_bytes_in_flight() {
    let b = ConfigBuilder::new(SECRET)
        .http("max_body_bytes = 1048576\nmax_bytes_in_flight = 1048576\nhold_timeout_ms = 1000")
        .file_dispatcher();
    let d = Daemon::start(&b.build());
    let addr = d.http_addr();
    let body = collector::cli::send_http::http_bodies(5, 1, 5).remove(0).1;
    // A client announces a whole max_body_bytes and sends none of it: every
    // byte of room is its.
    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n[")
        .expect("head");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let (status, text) = post(addr, "/", None, &body);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("max_bytes_in_flight"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "it waited hold_timeout_ms for room: {:?}",
        t.elapsed()
    );
    // The slow client goes away: its room is free again.
    drop(slow);
    let (status, text) = post(addr, "/", None, &body);
    assert_eq!(status, 200, "{text}");
    d.wait_lines("out/samples.jsonl", 5, Duration::from_secs(30));
    let st = d.status();
    assert_eq!(
        st["sources"]["http"]["http_requests_unavailable"], 1,
        "{st}"
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
}

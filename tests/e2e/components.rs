//! Component plugins (docs/components.md): the Python and JavaScript examples
//! and fixtures, built by componentize-py and componentize-js with the SDKs of
//! `plugin-sdk/python` and `plugin-sdk/js`, in the daemon on real traffic
//! beside the file dispatcher, under `collector check`, misbehaving, and (the
//! Python one) replaced under AMQP load.
//!
//! Each component takes seconds to compile: the daemon and `check` keep the
//! compiled code in the cache (`~/.cache/collector/modules`), so each version
//! compiles once per machine.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use collector::cli::send::datagrams;
use collector_e2e::amqp::{amqp_load, notifications};
use collector_e2e::http::HttpServer;
use collector_e2e::rabbit::Broker;
use collector_e2e::{ConfigBuilder, Daemon, collector, endpoint, plugin, read_lines};

const SECRET: &str = "component-secret";

/// One line of the Python example's output: the sample, and what it added.
struct PyLine {
    id: String,
    n: u64,
    version: u32,
    sample: serde_json::Value,
}

fn py_lines(path: &std::path::Path) -> Vec<PyLine> {
    read_lines(path)
        .iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            let obj = v.as_object_mut().expect("an object");
            let n = obj.remove("n").and_then(|n| n.as_u64()).expect("n");
            let version = obj
                .remove("version")
                .and_then(|t| t.as_str()?.strip_prefix("py-version:")?.parse().ok())
                .expect("version");
            PyLine {
                id: v["message_id"].as_str().expect("id").to_owned(),
                n,
                version,
                sample: v,
            }
        })
        .collect()
}

fn with_out_dir(
    b: ConfigBuilder,
    name: &str,
    path: &str,
    extra: &str,
    config: &str,
) -> ConfigBuilder {
    let dirs = "dirs = [{ host = \"out\", guest = \"/data\", writable = true }]";
    b.dispatcher(name, path, &format!("{dirs}\n{extra}"), config)
}

/// Equal as JavaScript sees JSON: one Number type, so 512 and 512.0 are the
/// same number (and -0 is 0); integers beyond 2^53 are exact (the SDK's BigInt).
fn same_as_javascript(js: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (js, want) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i128(), b.as_i128()) {
            (Some(x), Some(y)) => x == y,
            _ => a.as_f64() == b.as_f64(),
        },
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_as_javascript(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, x)| b.get(k).is_some_and(|y| same_as_javascript(x, y)))
        }
        _ => js == want,
    }
}

#[test]
fn python_and_javascript_plugins_run_beside_the_file_dispatcher_on_the_same_samples() {
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 50\nmax_delay_ms = 100")
        .udp("")
        .file_dispatcher();
    let b = with_out_dir(
        b,
        "py",
        &plugin("py-file.wasm"),
        "",
        "path = \"/data/py.jsonl\"",
    );
    let b = with_out_dir(
        b,
        "js",
        &plugin("js-file.wasm"),
        "",
        "path = \"/data/js.jsonl\"",
    );
    let d = Daemon::start(&b.build());
    let n = 500;
    d.send_udp(&datagrams(n, 74, SECRET.as_bytes()));
    for file in ["samples", "py", "js"] {
        let _ = d.wait_lines(
            &format!("out/{file}.jsonl"),
            n as usize,
            Duration::from_secs(60),
        );
    }
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let out = stopped.dir.path().join("out");
    let samples: Vec<serde_json::Value> = read_lines(&out.join("samples.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(samples.len(), n as usize, "{}", stopped.log);
    let by_id: HashMap<&str, &serde_json::Value> = samples
        .iter()
        .map(|s| (s["message_id"].as_str().expect("id"), s))
        .collect();
    let py = py_lines(&out.join("py.jsonl"));
    assert_eq!(py.len(), samples.len(), "{}", stopped.log);
    for (i, p) in py.iter().enumerate() {
        // serde_json keeps integers and floats apart: 512 is not 512.0 here.
        assert_eq!(
            &p.sample,
            by_id[p.id.as_str()],
            "the Python plugin saw the sample the file dispatcher wrote, key for key"
        );
        assert_eq!(p.n, i as u64 + 1, "a running count");
    }
    let js = read_lines(&out.join("js.jsonl"));
    assert_eq!(js.len(), samples.len(), "{}", stopped.log);
    let mut floats = 0;
    for (i, line) in js.iter().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let obj = v.as_object_mut().expect("an object");
        assert_eq!(
            obj.remove("n").and_then(|n| n.as_u64()),
            Some(i as u64 + 1),
            "a running count"
        );
        let want = by_id[v["message_id"].as_str().expect("id")];
        floats += usize::from(want["counter_volume"].is_f64());
        assert!(
            same_as_javascript(&v, want),
            "the JavaScript plugin saw the sample the file dispatcher wrote:\n{v}\n{want}"
        );
    }
    assert!(floats > 0, "the traffic holds floats as well as integers");
    assert_eq!(stopped.dispatcher("py", "samples_ok"), n);
    assert_eq!(stopped.dispatcher("js", "samples_ok"), n);
}

/// `collector check` passes each of `plugins` (file, config) and fails
/// `misbehave` given a config its constructor refuses, naming `fault`. The
/// HTTP examples' requests reach check's local endpoint.
fn check_passes_and_names_a_refused_config(
    plugins: [(&str, &str); 3],
    misbehave: &str,
    fault: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (file, config) in plugins {
        let (status, out, err) =
            collector(&["check", &plugin(file), "--config", config], dir.path());
        assert!(status.success(), "{file}:\n{out}{err}");
        assert!(
            out.contains("PASS: the component conforms to the world collector:dispatcher@1.0.0"),
            "{out}"
        );
        assert!(
            out.contains("state handoff") || !file.ends_with("-file.wasm"),
            "{out}"
        );
        assert!(
            out.contains("requests reached the local endpoint, each answered 204")
                || !file.ends_with("-http.wasm"),
            "{out}"
        );
    }
    let (status, out, _) = collector(
        &[
            "check",
            &plugin(misbehave),
            "--config",
            r#"{"mode":"explode"}"#,
        ],
        dir.path(),
    );
    assert!(!status.success(), "{out}");
    assert!(out.contains(fault), "{out}");
}

#[test]
fn collector_check_passes_the_python_plugins_and_fails_a_broken_one_naming_the_fault() {
    // A config its __init__ refuses: the Python exception is named.
    check_passes_and_names_a_refused_config(
        [
            ("py-file.wasm", r#"{"path":"/data/py.jsonl"}"#),
            ("py-misbehave.wasm", r#"{"mode":"loop"}"#),
            ("py-http.wasm", r#"{"endpoint":"sink","target":"/v1"}"#),
        ],
        "py-misbehave.wasm",
        "__init__ raised ValueError: unknown mode 'explode'",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // The component with its `dispatch` export renamed: check names the world.
    // A component export is `00 len name 01 (func) index`.
    let mut wasm = std::fs::read(plugin("py-file.wasm")).expect("wasm");
    let export = b"\x00\x08dispatch\x01";
    let at = wasm
        .windows(export.len())
        .rposition(|w| w == export)
        .expect("the component's export of dispatch")
        + 1;
    let export = &export[1..export.len() - 1];
    wasm[at + export.len() - 1] = b'x'; // still kebab-case: a valid name
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, wasm).expect("write");
    collector_e2e::assert_check_fails(
        &broken,
        "does not export the world collector:dispatcher@1.0.0",
    );
}

#[test]
fn collector_check_passes_the_javascript_plugins_and_fails_a_broken_one_naming_the_fault() {
    // A config its constructor refuses: the JavaScript error is named.
    check_passes_and_names_a_refused_config(
        [
            ("js-file.wasm", r#"{"path":"/data/js.jsonl"}"#),
            ("js-misbehave.wasm", r#"{"mode":"loop"}"#),
            ("js-http.wasm", r#"{"endpoint":"sink","target":"/v1"}"#),
        ],
        "js-misbehave.wasm",
        "the constructor threw RangeError: unknown mode 'explode'",
    );
}

#[test]
fn python_and_javascript_plugins_that_loop_sleep_or_hog_memory_are_contained_and_the_file_dispatcher_gets_everything()
 {
    let poison = [5u64, 70, 150];
    let n = 200u64;
    let grams = collector_e2e::poisoned_datagrams(n, 75, SECRET.as_bytes(), &poison);
    let mut b = ConfigBuilder::udp_to_file(SECRET, "max_samples = 20\nmax_delay_ms = 50");
    let fixture = plugin("py-misbehave.wasm");
    b = b.dispatcher(
        "looping",
        &fixture,
        "timeout_ms = 500\nqueue_batches = 64",
        "mode = 'loop'",
    );
    b = b.dispatcher(
        "hog",
        &fixture,
        "memory_limit_bytes = 50331648",
        "mode = 'hog'",
    );
    b = b.dispatcher(
        "raising",
        &fixture,
        "retry_backoff_ms = 10\nmax_retries = 2",
        "mode = 'raise'",
    );
    b = b.dispatcher(
        "sleeping",
        &fixture,
        "timeout_ms = 500\nqueue_batches = 64",
        "mode = 'sleep'",
    );
    let js = plugin("js-misbehave.wasm");
    b = b.dispatcher(
        "js-sleeping",
        &js,
        "timeout_ms = 500\nqueue_batches = 64",
        "mode = 'sleep'",
    );
    b = b.dispatcher(
        "js-looping",
        &js,
        "timeout_ms = 500\nqueue_batches = 64",
        "mode = 'loop'",
    );
    b = b.dispatcher(
        "js-hog",
        &js,
        "memory_limit_bytes = 50331648",
        "mode = 'hog'",
    );
    b = b.dispatcher(
        "js-throwing",
        &js,
        "retry_backoff_ms = 10\nmax_retries = 2",
        "mode = 'throw'",
    );
    let d = Daemon::start(&b.build());
    d.send_udp_in_groups_to_file(&grams);
    // Each looping batch takes 500 ms and a new instance; let them finish.
    std::thread::sleep(Duration::from_secs(5));
    let stopped = d.stop();
    let log = &stopped.log;
    assert!(stopped.status.success(), "{log}");
    for (name, counter) in [
        ("looping", "plugin_timeouts"),
        // Blocked in the host (an hour's sleep), where the epoch cannot interrupt.
        ("sleeping", "plugin_timeouts"),
        ("js-sleeping", "plugin_timeouts"),
        ("hog", "plugin_memory_refusals"),
        ("js-looping", "plugin_timeouts"),
        ("js-hog", "plugin_memory_refusals"),
    ] {
        assert_eq!(stopped.dispatcher(name, counter), 3, "{name}: {log}");
        assert_eq!(
            stopped.dispatcher(name, "batches_failed"),
            3,
            "{name}: {log}"
        );
        assert_eq!(
            stopped.dispatcher(name, "samples_ok") + stopped.dispatcher(name, "samples_failed"),
            n,
            "{name}: every batch was answered"
        );
        assert!(
            stopped.dispatcher(name, "batches_ok") >= 7,
            "{name} served the batches after the poisoned ones (a new instance)"
        );
        assert_eq!(
            stopped.dispatcher(name, "dispatcher_worker_panics"),
            0,
            "{name}: {log}"
        );
    }
    assert!(
        log.contains("memory_limit_bytes is 50331648"),
        "the refusal counts every memory of the component:\n{log}"
    );
    assert!(log.contains("timeout_ms (500 ms)"), "{log}");
    assert!(
        log.contains("the call waited in WASI past timeout_ms (500 ms)"),
        "{log}"
    );
    assert!(
        log.contains("dispatch raised RuntimeError: poisoned batch"),
        "an exception is answered retry with its name:\n{log}"
    );
    assert!(
        log.contains("dispatch threw Error: poisoned batch"),
        "a JavaScript error is answered retry with its name:\n{log}"
    );
    for name in ["raising", "js-throwing"] {
        assert_eq!(
            stopped.dispatcher(name, "samples_ok") + stopped.dispatcher(name, "samples_failed"),
            n,
            "{name}: every batch was answered"
        );
        assert!(
            stopped.dispatcher(name, "batches_failed") == 3,
            "{name}: {log}"
        );
    }
    assert_eq!(stopped.dispatcher("file", "samples_ok"), n);
}

#[test]
fn a_python_plugin_replaced_3_times_under_amqp_load_keeps_its_state_and_dispatches_every_sample_once()
 {
    let broker = Broker::start();
    let pdir = tempfile::tempdir().expect("tempdir");
    let path = pdir.path().join("py.wasm");
    std::fs::write(&path, collector_e2e::py_file_version(0)).expect("first version");
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 200\nmax_delay_ms = 50")
        .section("reload", "debounce_ms = 100")
        .amqp(&broker.url(), "rpc = false\nprefetch_count = 20");
    let b = with_out_dir(
        b,
        "py",
        &path.display().to_string(),
        "",
        "path = \"/data/py.jsonl\"",
    );
    let d = Daemon::start(&b.build());
    d.wait_readyz(Duration::from_secs(60));
    // Enough for 150 s of load: each new version compiles cold (seconds) the first time.
    let (bodies, ids) = notifications(3000, 50, SECRET.as_bytes(), 76);
    let done = Arc::new(AtomicBool::new(false));
    let load = amqp_load(broker.url(), bodies, done.clone());
    for v in 1..=3 {
        std::thread::sleep(Duration::from_millis(500));
        let tmp = path.with_extension("wasm.tmp");
        std::fs::write(&tmp, collector_e2e::py_file_version(v)).expect("new version");
        std::fs::rename(&tmp, &path).expect("deploy");
        d.wait_daemon_count("plugin_reloads", u64::from(v), Duration::from_secs(180));
    }
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let sent = load.join().expect("load") * 50;
    let _ = d.wait_lines("out/py.jsonl", sent, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let lines = py_lines(&stopped.dir.path().join("out/py.jsonl"));
    let handed: Vec<_> = lines
        .iter()
        .map(|l| (l.id.as_str(), l.n, l.version))
        .collect();
    collector_e2e::assert_handed_off(&handed, &ids[..sent], 3);
    assert_eq!(stopped.daemon("plugin_reloads"), 3);
    assert!(stopped.log.contains("restored, "), "{}", stopped.log);
}

/// `file` (an HTTP example: each batch POSTed as a JSON list) posts every
/// sample to its declared endpoint, with the operator's header; naming another
/// dispatcher's endpoint is refused, counted and logged; a slow endpoint's wait
/// ends before the call's deadline, so the plugin answers retry (its message
/// holding `slow_says`) and no call is interrupted.
fn posts_to_its_declared_endpoint_only_and_in_time(
    file: &str,
    seed: u64,
    slow_says: &str,
    same: fn(&serde_json::Value, &serde_json::Value) -> bool,
) {
    let sink = HttpServer::start();
    let slow = HttpServer::start();
    slow.delay(Duration::from_secs(30));
    let b = ConfigBuilder::new(SECRET)
        .batch("max_samples = 50\nmax_delay_ms = 100")
        .udp("")
        .file_dispatcher();
    let b = b.dispatcher(
        "posting",
        &plugin(file),
        &endpoint(
            "sink",
            &format!("{}/api", sink.url()),
            "headers = { X-Token = \"t0k-from-the-operator\" }",
        ),
        "endpoint = 'sink'\ntarget = '/v1/samples?src=py'\nheaders = { X-Plugin = 'an-example' }",
    );
    let bulky = HttpServer::start();
    bulky.answer(200, &"x".repeat(40 << 20));
    // Dispatchers whose batches all fail, each tried twice: (name, settings,
    // its endpoint's name, URL and settings, the endpoint the plugin names).
    let failing = [
        // Names an endpoint its dispatcher does not declare (another one's name).
        ("undeclared", "", ("mine", sink.url(), ""), "sink"),
        // An endpoint that answers after 30 s, to a call of 1.5 s.
        (
            "slow",
            "timeout_ms = 1500",
            ("slow", slow.url(), "response_timeout_ms = 60000"),
            "slow",
        ),
        // An endpoint whose 40 MiB answer would take the instance past its
        // cap while the host holds it for the plugin.
        (
            "bulky",
            "memory_limit_bytes = 50331648",
            ("bulky", bulky.url(), "max_response_bytes = 67108864"),
            "bulky",
        ),
    ];
    let mut b = b;
    for (name, settings, (ep, url, extra), names) in failing {
        b = b.dispatcher(
            name,
            &plugin(file),
            &format!(
                "{settings}\nmax_retries = 1\nretry_backoff_ms = 10\n{}",
                endpoint(ep, &url, extra)
            ),
            &format!("endpoint = '{names}'"),
        );
    }
    let d = Daemon::start(&b.build());
    let n = 300;
    d.send_udp(&datagrams(n, seed, SECRET.as_bytes()));
    let lines = d.wait_lines("out/samples.jsonl", n as usize, Duration::from_secs(60));
    assert_eq!(lines.len(), n as usize, "{}", d.log());
    d.wait_status(
        "the posting dispatcher took every sample, the others failed theirs",
        Duration::from_secs(120),
        |st| {
            let of = |name: &str, key: &str| {
                st["dispatchers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|x| x["name"] == name)
                    .and_then(|x| x[key].as_u64())
            };
            of("posting", "samples_ok") == Some(n)
                && of("undeclared", "samples_failed") == Some(n)
                && of("slow", "samples_failed") == Some(n)
                && of("bulky", "samples_failed") == Some(n)
        },
    );
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);

    // Every sample, in JSON lists, as the file dispatcher wrote it.
    let by_id: HashMap<String, serde_json::Value> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            (v["message_id"].as_str().expect("id").to_owned(), v)
        })
        .collect();
    let mut seen = 0;
    for r in sink.taken() {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.target, "/api/v1/samples?src=py",
            "under the endpoint's URL"
        );
        assert_eq!(r.header("x-token"), Some("t0k-from-the-operator"));
        assert_eq!(r.header("x-plugin"), Some("an-example"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let list: Vec<serde_json::Value> = serde_json::from_slice(&r.body).expect("a JSON list");
        for s in list {
            let id = s["message_id"].as_str().expect("id");
            assert!(
                same(&s, &by_id[id]),
                "the sample the file dispatcher wrote:\n{s}\n{}",
                by_id[id]
            );
            seen += 1;
        }
    }
    assert_eq!(seen, n, "every sample posted once, by `posting` alone");
    assert_eq!(slow.taken().len(), 0);

    // The undeclared endpoint was refused, counted, and the refusal named it.
    assert!(stopped.dispatcher("undeclared", "egress_refused") > 0);
    assert!(
        stopped
            .log
            .contains("no endpoint `sink` is declared for this dispatcher (declared: mine)"),
        "{}",
        stopped.log
    );
    // The slow endpoint's wait ended before the call's deadline: the plugin
    // answered retry, and no call was interrupted.
    assert!(stopped.dispatcher("slow", "plugin_retries") > 0);
    assert_eq!(stopped.dispatcher("slow", "plugin_timeouts"), 0);
    assert!(stopped.log.contains(slow_says), "{}", stopped.log);
    // The held body was refused against the cap: an HTTP error the plugin
    // answered retry to, not a memory refusal of the instance.
    assert!(
        stopped.dispatcher("bulky", "plugin_retries") > 0,
        "{}",
        stopped.log
    );
    assert_eq!(stopped.dispatcher("bulky", "plugin_memory_refusals"), 0);
    assert!(bulky.taken().len() >= 6, "every batch was answered");
}

#[test]
fn a_python_plugin_posts_over_wasi_http_to_its_declared_endpoint_only_and_in_time() {
    posts_to_its_declared_endpoint_only_and_in_time(
        "py-http.wasm",
        76,
        "slow: HttpResponseTimeout",
        // serde_json keeps integers and floats apart, and so does Python's json.
        |a, b| a == b,
    );
}

#[test]
fn a_javascript_plugin_posts_with_fetch_to_its_declared_endpoint_only_and_in_time() {
    posts_to_its_declared_endpoint_only_and_in_time(
        "js-http.wasm",
        77,
        "slow: NetworkError when attempting to fetch resource",
        same_as_javascript,
    );
}

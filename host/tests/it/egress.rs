//! Outbound HTTP from a real plugin (`plugins/http`) in the runtime: a wait
//! never outlives the call, whatever the plugin asks, and ends with the margin
//! that lets the plugin answer `retry` instead of being timed out.

use std::time::{Duration, Instant};

use collector::cli::golden::GOLDEN;
use collector::config::Config;
use collector::egress::Endpoints;
use collector::plugin::{CallOutcome, Instance};

use crate::common::{module, settings};

/// The endpoints of a dispatcher whose one endpoint `target` is `url`.
fn endpoints(url: &str, extra: &str) -> Endpoints {
    let toml = format!(
        "telemetry_secret = \"\"\n[[dispatchers]]\nname = \"d\"\nplugin = \"builtin:noop\"\n\
         [[dispatchers.endpoints]]\nname = \"target\"\nurl = \"{url}\"\n{extra}\n"
    );
    let cfg = Config::parse(&toml, "test", std::path::Path::new("/")).expect("config");
    Endpoints::build(
        "d",
        &cfg.dispatchers[0].endpoints,
        None,
        collector::telemetry::Counter::default(),
    )
    .expect("endpoints")
}

#[test]
fn a_wait_for_a_backend_that_never_answers_ends_before_the_call_deadline() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _in_rt = rt.enter();
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("address"));
    let mut s = settings(r#"{"endpoint": "target", "timeout_ms": 60000}"#, 2000);
    s.endpoints = endpoints(&url, "response_timeout_ms = 60000");
    let mut inst = Instance::new(&module("http.wasm"), &s).expect("instance");
    let (_, minimal, _) = GOLDEN[1];
    let t = Instant::now();
    let outcome = inst.dispatch(minimal, Duration::from_millis(2000));
    let took = t.elapsed();
    match outcome {
        CallOutcome::Retry(m) => assert!(m.contains("time left"), "{m}"),
        other => panic!("expected a retry, got {other:?} after {took:?}"),
    }
    // The margin: a tenth of 2 s before the deadline (and the wait's own 60 s
    // are ignored).
    assert!(
        took >= Duration::from_millis(1700) && took < Duration::from_millis(2000),
        "the wait ended after {took:?}"
    );
    drop(silent);
}

#[test]
fn a_refused_request_is_an_error_value_and_the_plugin_rejects() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _in_rt = rt.enter();
    let mut s = settings(r#"{"endpoint": "undeclared"}"#, 2000);
    s.endpoints = endpoints("http://127.0.0.1:9", "");
    let mut inst = Instance::new(&module("http.wasm"), &s).expect("instance");
    let (_, minimal, _) = GOLDEN[1];
    match inst.dispatch(minimal, Duration::from_secs(2)) {
        CallOutcome::Reject(m) => {
            assert!(m.contains("no endpoint `undeclared`"), "{m}");
            assert!(m.contains("declared: target"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // A backend that refuses connections: retry (it may come back).
    let mut s = settings(r#"{"endpoint": "target"}"#, 2000);
    s.endpoints = endpoints("http://127.0.0.1:9", "connect_timeout_ms = 500");
    let mut inst = Instance::new(&module("http.wasm"), &s).expect("instance");
    match inst.dispatch(minimal, Duration::from_secs(2)) {
        CallOutcome::Retry(m) => assert!(m.contains("failed (-10)"), "{m}"),
        other => panic!("{other:?}"),
    }
}

//! The admin endpoint: HTTP (axum on hyper) on a loopback address that tells what
//! the daemon is doing: `GET /status` (JSON, read by `collector status`),
//! `/metrics` (Prometheus), `/healthz` (alive) and `/readyz` (sources connected,
//! dispatchers loaded and healthy). Off unless `[admin] address` is set. It has no
//! authentication: bind it to loopback, or put a proxy that authenticates in front.
//!
//! Clients cannot take the daemon down with it ([`crate::http_server`]): at
//! most `max_connections` are served at a time (the others wait in the
//! kernel's backlog, holding no file descriptor of ours), each connection is
//! closed `request_timeout_ms` after it was accepted whatever it sends, and a
//! failing `accept` (out of descriptors) backs off instead of spinning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::plugin::Loaded;
use crate::source::SourceReport;
use crate::telemetry::events::AdminAcceptFailed;
use crate::telemetry::{DispatcherStats, RateLimit, Telemetry};

/// Why the daemon is not ready, if it is not.
fn not_ready(state: &State) -> Option<String> {
    if state.dispatchers.is_empty() {
        return Some("no dispatcher loaded".into());
    }
    if let Some(s) = state
        .sources
        .iter()
        .find(|s| !s.stats.counts.source_healthy.get())
    {
        return Some(format!(
            "source `{}` lost a worker to a panic ({} so far); it goes on and is ready \
             again once it handles input without one",
            s.stats.name,
            s.stats.counts.source_worker_panics.get()
        ));
    }
    if let Some((_, s)) = state
        .dispatchers
        .iter()
        .find(|(_, s)| !s.counts.dispatcher_healthy.get())
    {
        return Some(format!(
            "dispatcher `{}` lost a worker to a panic ({} so far); it was restarted and \
             is ready again once it completes a batch",
            s.name,
            s.counts.dispatcher_worker_panics.get()
        ));
    }
    state
        .sources
        .iter()
        .find(|s| s.amqp.as_ref().is_some_and(|a| a.amqp_connected.get() <= 0))
        .map(|_| "AMQP is not connected".to_owned())
}

/// What `/status` and `/metrics` report: the running sources and dispatchers,
/// whose handles count into `telemetry`. Replaced on each config reload.
pub struct State {
    pub started: Instant,
    pub telemetry: Arc<Telemetry>,
    pub sources: Vec<SourceReport>,
    pub dispatchers: Vec<(Loaded, Arc<DispatcherStats>)>,
}

/// A JSON object of `readings`, after `first`.
fn object(
    first: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
    readings: Vec<(&'static str, serde_json::Value)>,
) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = first
        .into_iter()
        .chain(readings)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    serde_json::Value::Object(map)
}

impl State {
    /// Brings the figures read at scrape time up to date: the kernel's UDP drops
    /// and the versions each dispatcher's threads serve.
    pub fn refresh(&self) {
        for s in &self.sources {
            s.refresh();
        }
        self.telemetry
            .set_plugin_versions(self.dispatchers.iter().flat_map(|(l, _)| {
                l.slot
                    .serving()
                    .into_iter()
                    .map(move |v| (&*l.dispatcher, v))
            }));
    }

    /// The JSON document of `/status`: every counter under its metric name
    /// (`collector_` and `_total` left out).
    pub fn status(&self) -> serde_json::Value {
        self.refresh();
        let sources: serde_json::Map<String, serde_json::Value> = self
            .sources
            .iter()
            .map(|s| {
                let address = s.address.map(|a| ("address", json!(a.to_string())));
                let broker = s.amqp_broker.as_ref().map(|b| ("broker", json!(b.get())));
                (
                    s.stats.name.to_owned(),
                    object(address.into_iter().chain(broker), s.readings()),
                )
            })
            .collect();
        let dispatchers: Vec<serde_json::Value> = self
            .dispatchers
            .iter()
            .map(|(l, s)| {
                object(
                    [
                        ("name", json!(&*l.dispatcher)),
                        ("plugin", json!(l.source.to_string())),
                        ("version", json!(l.slot.serving_summary())),
                        ("published", json!(l.slot.hash())),
                        ("instances", json!(l.slot.serving())),
                        (
                            "last_error",
                            json!(s.last_error.lock().ok().and_then(|e| e.clone())),
                        ),
                    ],
                    s.counts.readings(),
                )
            })
            .collect();
        json!({
            "collector": env!("CARGO_PKG_VERSION"),
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "sources": sources,
            "dispatchers": dispatchers,
            "daemon": object([], self.telemetry.daemon.readings()),
        })
    }

    /// The text exposition of `/metrics`.
    pub fn metrics(&self) -> String {
        self.refresh();
        self.telemetry.encode()
    }
}

/// How the endpoint protects itself from slow and numerous clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; the next waits in the kernel's backlog.
    pub max_connections: usize,
    /// From accept to the last byte of the response, whatever the client does.
    pub request_timeout: Duration,
}

/// The routes, on `state` (which follows config reloads).
fn router(state: watch::Receiver<Arc<State>>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "try /status, /metrics, /healthz or /readyz\n",
            )
        })
        .with_state(state)
}

type Current = axum::extract::State<watch::Receiver<Arc<State>>>;

async fn status(axum::extract::State(state): Current) -> Response {
    let current = state.borrow().clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        current.status().to_string(),
    )
        .into_response()
}

async fn readyz(axum::extract::State(state): Current) -> Response {
    let current = state.borrow().clone();
    match not_ready(&current) {
        None => "ready\n".into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(axum::extract::State(state): Current) -> Response {
    let current = state.borrow().clone();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        current.metrics(),
    )
        .into_response()
}

/// Counts and logs what the admin server reports.
struct AdminEvents {
    telemetry: Arc<Telemetry>,
    warn: RateLimit,
}

impl crate::http_server::Events for AdminEvents {
    fn accept_failed(&self, error: &std::io::Error, retry_in: Duration) {
        AdminAcceptFailed {
            error,
            retry_in,
            suppressed: self.warn.allow(),
        }
        .emit(&self.telemetry.daemon);
    }

    fn timed_out(&self) {
        self.telemetry.daemon.admin_timeouts.inc();
    }
}

/// Serves until `shutdown` turns true, at most `limits.max_connections` clients at
/// a time, each for at most `limits.request_timeout`; failed accepts back off.
pub async fn serve(
    listener: TcpListener,
    state: watch::Receiver<Arc<State>>,
    shutdown: watch::Receiver<bool>,
    limits: Limits,
    telemetry: Arc<Telemetry>,
) {
    let server = crate::http_server::Limits {
        max_connections: limits.max_connections,
        connection_timeout: Some(limits.request_timeout),
        header_timeout: limits.request_timeout,
        keep_alive: false,
        tls: None,
    };
    let events = Arc::new(AdminEvents {
        telemetry,
        warn: RateLimit::default(),
    });
    crate::http_server::serve(listener, router(state), shutdown, server, events).await;
}

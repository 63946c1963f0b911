//! The admin endpoint: HTTP (axum on hyper) on a loopback address that tells what
//! the daemon is doing: `GET /status` (JSON, read by `collector status`),
//! `/metrics` (Prometheus), `/healthz` (alive) and `/readyz` (sources connected,
//! dispatchers loaded and healthy). Off unless `[admin] address` is set. It has no
//! authentication: bind it to loopback, or put a proxy that authenticates in front.
//!
//! Clients cannot take the daemon down with it: at most `max_connections` are
//! served at a time (the others wait in the kernel's backlog, holding no file
//! descriptor of ours), each connection is closed `request_timeout_ms` after it
//! was accepted whatever it sends, and a failing `accept` (out of descriptors)
//! backs off instead of spinning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::dispatch::Loaded;
use crate::plugin::reload::ReloadStats;
use crate::telemetry::{Counter, DispatcherStats, RateLimit, SourceStats};

/// Why the daemon is not ready, if it is not.
fn not_ready(state: &State) -> Option<String> {
    if state.dispatchers.is_empty() {
        return Some("no dispatcher loaded".into());
    }
    if let Some((name, s)) = state
        .sources
        .iter()
        .find(|(_, s)| !s.healthy.load(std::sync::atomic::Ordering::Relaxed))
    {
        return Some(format!(
            "source `{name}` lost a worker to a panic ({} so far); it goes on and is ready \
             again once it handles input without one",
            s.worker_panics.get()
        ));
    }
    if let Some((l, s)) = state
        .dispatchers
        .iter()
        .find(|(_, s)| !s.healthy.load(std::sync::atomic::Ordering::Relaxed))
    {
        return Some(format!(
            "dispatcher `{}` lost a worker to a panic ({} so far); it was restarted and \
             is ready again once it completes a batch",
            l.dispatcher,
            s.worker_panics.get()
        ));
    }
    state
        .sources
        .iter()
        .find(|(n, s)| *n == "amqp" && !s.connected.load(std::sync::atomic::Ordering::Relaxed))
        .map(|_| "AMQP is not connected".to_owned())
}

/// Everything `/status` reports; shared with the parts that count.
pub struct State {
    pub started: Instant,
    pub sources: Vec<(&'static str, Arc<SourceStats>)>,
    pub dispatchers: Vec<(Loaded, Arc<DispatcherStats>)>,
    pub reload: Arc<ReloadStats>,
    pub config: Arc<crate::telemetry::ConfigReloadStats>,
    pub admin: Arc<AdminStats>,
}

impl State {
    /// The JSON document of `/status`.
    pub fn status(&self) -> serde_json::Value {
        let sources: serde_json::Map<String, serde_json::Value> = self
            .sources
            .iter()
            .map(|(name, s)| {
                let v = json!({
                    "received": s.received.get(),
                    "samples": s.samples.get(),
                    "malformed": s.malformed.get(),
                    "bad_signature": s.bad_signature.get(),
                    "dropped": s.dropped.get(),
                    "acked": s.acked.get(),
                    "requeued": s.requeued.get(),
                    "dead_lettered": s.dead_lettered.get(),
                    "connected": s.connected.load(std::sync::atomic::Ordering::Relaxed),
                    "invalid_samples": s.invalid_samples.get(),
                    "oversized": s.oversized.get(),
                    "worker_panics": s.worker_panics.get(),
                    "healthy": s.healthy.load(std::sync::atomic::Ordering::Relaxed),
                });
                ((*name).to_owned(), v)
            })
            .collect();
        let dispatchers: Vec<serde_json::Value> = self
            .dispatchers
            .iter()
            .map(|(l, s)| {
                json!({
                    "name": &*l.dispatcher,
                    "plugin": l.source.to_string(),
                    "version": l.slot.serving_summary(),
                    "published": l.slot.hash(),
                    "instances": l.slot.serving(),
                    "batches_ok": s.batches_ok.get(),
                    "batches_failed": s.batches_failed.get(),
                    "batches_dropped": s.batches_dropped.get(),
                    "samples_ok": s.samples_ok.get(),
                    "samples_failed": s.samples_failed.get(),
                    "retries": s.retries.get(),
                    "timeouts": s.timeouts.get(),
                    "traps": s.traps.get(),
                    "memory_refusals": s.memory_refusals.get(),
                    "log_lines_suppressed": s.log_suppressed.get(),
                    "worker_panics": s.worker_panics.get(),
                    "batches_split": s.batches_split.get(),
                    "snapshot_failures": s.snapshot_failures.get(),
                    "restore_failures": s.restore_failures.get(),
                    "healthy": s.healthy.load(std::sync::atomic::Ordering::Relaxed),
                    "last_error": s.last_error.lock().ok().and_then(|e| e.clone()),
                })
            })
            .collect();
        json!({
            "collector": env!("CARGO_PKG_VERSION"),
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "sources": sources,
            "dispatchers": dispatchers,
            "reloads": { "ok": self.reload.reloads.get(), "failed": self.reload.failures.get() },
        })
    }
}

/// Counters of the endpoint itself.
#[derive(Debug, Default)]
pub struct AdminStats {
    /// `accept` failures (out of file descriptors, for instance); each one is
    /// followed by a pause, so they cannot spin the CPU.
    pub accept_errors: Counter,
    /// Connections closed because their request did not complete within
    /// `request_timeout_ms`.
    pub timeouts: Counter,
}

/// How the endpoint protects itself from slow and numerous clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; the next waits in the kernel's backlog.
    pub max_connections: usize,
    /// From accept to the last byte of the response, whatever the client does.
    pub request_timeout: Duration,
}

/// Pause after a failed `accept`, doubling up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

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
        crate::metrics::render(&current),
    )
        .into_response()
}

/// Serves until `shutdown` turns true, at most `limits.max_connections` clients at
/// a time, each for at most `limits.request_timeout`; failed accepts back off.
pub async fn serve(
    listener: TcpListener,
    state: watch::Receiver<Arc<State>>,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
    stats: Arc<AdminStats>,
) {
    let app = router(state);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let warn = RateLimit::default();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        // A slot first: beyond the cap, clients wait in the backlog and cost no descriptor.
        let slot = tokio::select! {
            _ = shutdown.changed() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(e) => {
                stats.accept_errors.inc();
                if let Some(suppressed) = warn.allow() {
                    tracing::warn!(
                        error = %e, suppressed, retry_in_ms = backoff.as_millis() as u64,
                        "Admin endpoint cannot accept a connection"
                    );
                }
                drop(slot);
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let stats = stats.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.request_timeout)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            if tokio::time::timeout(limits.request_timeout, conn)
                .await
                .is_err()
            {
                stats.timeouts.inc();
            }
            drop(slot);
        });
    }
}

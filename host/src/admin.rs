//! The admin endpoint: a small HTTP server on a loopback address that tells what
//! the daemon is doing: `GET /status` (JSON, read by `collector status`),
//! `/metrics` (Prometheus), `/healthz` (alive) and `/readyz` (sources connected,
//! dispatchers loaded). Off unless `[admin] address` is set.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::dispatch::Loaded;
use crate::plugin::reload::ReloadStats;
use crate::telemetry::{DispatcherStats, SourceStats};

/// Why the daemon is not ready, if it is not.
fn not_ready(state: &State) -> Option<String> {
    if state.dispatchers.is_empty() {
        return Some("no dispatcher loaded".into());
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
                    "version": l.slot.hash(),
                    "batches_ok": s.batches_ok.get(),
                    "batches_failed": s.batches_failed.get(),
                    "batches_dropped": s.batches_dropped.get(),
                    "samples_ok": s.samples_ok.get(),
                    "samples_failed": s.samples_failed.get(),
                    "retries": s.retries.get(),
                    "timeouts": s.timeouts.get(),
                    "traps": s.traps.get(),
                    "memory_refusals": s.memory_refusals.get(),
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

/// Serves until `shutdown` turns true; `state` follows config reloads.
pub async fn serve(
    listener: TcpListener,
    state: watch::Receiver<Arc<State>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            conn = listener.accept() => {
                let Ok((stream, _)) = conn else { continue };
                let current = state.borrow().clone();
                tokio::spawn(answer(stream, current));
            }
        }
    }
}

async fn answer(mut stream: tokio::net::TcpStream, state: Arc<State>) {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // Read the request head (bounded); the body, if any, is ignored.
    while len < buf.len() {
        match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read(&mut buf[len..]),
        )
        .await
        {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                len += n;
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (code, kind, body) = match (head.starts_with("GET "), path) {
        (true, "/status") => ("200 OK", "application/json", state.status().to_string()),
        (true, "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
        (true, "/readyz") => match not_ready(&state) {
            None => ("200 OK", "text/plain", "ready\n".to_owned()),
            Some(why) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        (true, "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            crate::metrics::render(&state),
        ),
        (true, _) => (
            "404 Not Found",
            "text/plain",
            "try /status or /healthz\n".to_owned(),
        ),
        (false, _) => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

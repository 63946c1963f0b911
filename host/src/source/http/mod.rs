//! The HTTP source: Ceilometer's `http://` and `https://` publisher
//! (`HttpPublisher`) posts a JSON list of `Sample.as_dict()`, or one object per
//! request with `batch=False`; its `opentelemetryhttp://` publisher posts OTLP
//! JSON, one sample per request, to `otlp_path` (`/v1/metrics`). Both are
//! unsigned: `telemetry_secret` does not apply here; TLS and basic
//! authentication take its place.
//!
//! A request is answered once its samples are settled, because the publisher
//! does not retry on an error status (it logs it and drops the samples):
//!
//! - its samples are batched on their own (not held for `max_delay_ms`) and
//!   queued for every dispatcher, or for none ([`Fanout::send_by`]);
//! - **200** when every dispatcher took every sample;
//! - **422** with the reason when a dispatcher rejected some of them (the
//!   others were taken, as for any batch);
//! - **503** with `Retry-After` when they were not all taken within
//!   `hold_timeout_ms` (full queues, or a dispatcher answering `retry`): the
//!   batches are then withdrawn ([`Terms::withdrawn`]), so that no dispatcher
//!   starts them afterwards; one that had already taken them keeps them;
//! - **400** for a body that is not JSON or not of the format's shape, **413**
//!   over `max_body_bytes` or `max_samples_per_request`, **401** without the
//!   configured credentials, **405** for another method, **408** for a body that
//!   does not arrive within `request_timeout_ms`. Nothing of such a request is
//!   dispatched.
//!
//! Every sample of a 422 or 503 answer counts in `http_samples_refused`.

pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::SourceContext;
use crate::RunError;
use crate::batch::{Batcher, Sealed, TokioClock};
use crate::config::HttpInputConfig;
use crate::dispatch::{BatchReport, Terms};
use crate::http_server::Peer;
use crate::telemetry::HttpMetrics;
use crate::telemetry::events::{RequestRefused, SamplesRefused};
use crate::wire::{http_body, otlp};

/// A bound HTTP source, not yet serving.
pub struct HttpSource {
    listener: std::net::TcpListener,
    cfg: HttpInputConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// What every request needs.
struct Input {
    /// `max_bytes_in_flight`, one permit per byte of body held.
    bodies: Arc<tokio::sync::Semaphore>,
    ctx: SourceContext,
    http: HttpMetrics,
    cfg: HttpInputConfig,
    /// `Basic base64(user:password)`, when credentials are configured.
    authorization: Option<String>,
    otlp: otlp::Options,
}

impl HttpSource {
    /// Binds the address (with `SO_REUSEPORT`, for config reloads) and loads
    /// the TLS certificate.
    ///
    /// # Errors
    /// When the address cannot be bound or a TLS file cannot be used.
    pub fn bind(cfg: &HttpInputConfig) -> Result<HttpSource, RunError> {
        let tls = tls::acceptor(cfg).map_err(|why| RunError::Source { name: "http", why })?;
        let bind = || super::reusable_socket(cfg.address, socket2::Type::STREAM).map(Into::into);
        let listener = bind().map_err(|source| RunError::Bind {
            what: "HTTP",
            address: cfg.address,
            source,
        })?;
        Ok(HttpSource {
            listener,
            cfg: cfg.clone(),
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.cfg.address)
    }

    /// Serves until `shutdown` turns true, then waits (half the grace period
    /// at most) for the requests in hand to be answered.
    pub async fn run(self, ctx: SourceContext, http: HttpMetrics, shutdown: watch::Receiver<bool>) {
        let grace = ctx.grace;
        let listener = match TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "HTTP source cannot listen");
                return;
            }
        };
        let authorization = match (&self.cfg.username, &self.cfg.resolved_password) {
            (Some(u), Some(p)) => {
                use base64::Engine;
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                Some(format!("Basic {token}"))
            }
            _ => None,
        };
        let input = Arc::new(Input {
            bodies: Arc::new(tokio::sync::Semaphore::new(self.cfg.max_bytes_in_flight)),
            otlp: otlp::Options {
                source: self.cfg.otlp_source.clone(),
                agent_utc_offset_seconds: i64::from(self.cfg.otlp_agent_utc_offset_minutes) * 60,
            },
            ctx,
            http: http.clone(),
            cfg: self.cfg.clone(),
            authorization,
        });
        let app = Router::new().fallback(handle).with_state(input.clone());
        let limits = crate::http_server::Limits {
            max_connections: self.cfg.max_connections,
            connection_timeout: None,
            header_timeout: self.cfg.request_timeout,
            keep_alive: true,
            tls: self.tls,
        };
        let events = Arc::new(InputEvents);
        crate::http_server::serve(listener, app, shutdown, limits, events).await;
        let until = tokio::time::Instant::now() + grace / 2;
        while http.http_requests_held.get() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tracing::info!("HTTP source stopped");
    }
}

/// What the server reports about the HTTP input's connections.
struct InputEvents;

impl crate::http_server::Events for InputEvents {
    fn accept_failed(&self, error: &std::io::Error, retry_in: std::time::Duration) {
        tracing::warn!(target: "collector::source::http", error = %error, retry_in_ms = retry_in.as_millis() as u64, "HTTP: accept failed");
    }

    fn timed_out(&self) {
        tracing::debug!(target: "collector::source::http", "HTTP: a connection's headers did not come in time");
    }
}

/// A plain-text answer.
fn answer(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text + "\n",
    )
        .into_response()
}

/// Compares in time independent of where the two differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

async fn handle(
    State(input): State<Arc<Input>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let refuse = |status: StatusCode, why: &dyn std::fmt::Display, undecodable, unauthorized| {
        RequestRefused {
            peer,
            status: status.as_u16(),
            why,
            undecodable,
            unauthorized,
        }
        .emit(&input.ctx.stats, &input.http);
        answer(status, why.to_string())
    };
    if method != Method::POST {
        let mut r = refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            &"only POST carries samples",
            false,
            false,
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return r;
    }
    if let Some(expected) = &input.authorization {
        let given = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !same_secret(given, expected.as_bytes()) {
            let mut r = refuse(
                StatusCode::UNAUTHORIZED,
                &"missing or wrong credentials",
                false,
                true,
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"collector\""),
            );
            return r;
        }
    }
    let max = input.cfg.max_body_bytes;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        let why = format!("the body is over max_body_bytes ({max})");
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, &why, true, false);
    }
    // Room for the body among all the bodies held, before a byte of it is read.
    let want = announced.map_or(max, |n| n as usize).clamp(1, max);
    let room = tokio::time::timeout(
        input.cfg.hold_timeout,
        input.bodies.clone().acquire_many_owned(want as u32),
    )
    .await;
    let Ok(Ok(_room)) = room else {
        input.http.http_requests_unavailable.inc();
        let mut r = answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request bodies held (max_bytes_in_flight); send again later".into(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    };
    let read =
        tokio::time::timeout(input.cfg.request_timeout, Limited::new(body, max).collect()).await;
    let bytes = match read {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            let why = format!("the body is over max_body_bytes ({max})");
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, &why, true, false);
        }
        Ok(Err(e)) => {
            let why = format!("the body could not be read: {e}");
            return refuse(StatusCode::BAD_REQUEST, &why, true, false);
        }
        Err(_) => {
            let why = "the body did not arrive within request_timeout_ms";
            return refuse(StatusCode::REQUEST_TIMEOUT, &why, true, false);
        }
    };
    input.ctx.stats.counts.messages_received.inc();
    let is_otlp = uri.path() == input.cfg.otlp_path;
    let work = input.clone();
    // JSON decoding and encoding run on the blocking pool, never on the async workers.
    let decoded = tokio::task::spawn_blocking(move || {
        let max_samples = work.cfg.max_samples_per_request;
        let samples = if is_otlp {
            otlp::decode(&bytes, max_samples, &work.otlp)
        } else {
            http_body::decode(&bytes, max_samples)
        }?;
        let mut batcher = Batcher::<TokioClock>::new(&work.ctx.batch);
        let mut sealed: Vec<Sealed> = samples.iter().filter_map(|s| batcher.push(s)).collect();
        sealed.extend(batcher.flush());
        Ok::<_, http_body::BodyError>((samples.len() as u64, sealed))
    })
    .await;
    let (samples, sealed) = match decoded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let status = match e {
                http_body::BodyError::TooMany { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return refuse(status, &e, true, false);
        }
        Err(e) => {
            crate::telemetry::events::SourceWorkerPanicked {
                detail: &format!("decoding an HTTP request panicked: {e}"),
            }
            .emit(&input.ctx.stats);
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into());
        }
    };
    input.ctx.stats.counts.samples_received.inc_by(samples);
    let mut held = Held::new(&input, peer, samples);
    let settled = settle(&input, sealed, &held.withdrawn).await;
    held.answered = true;
    drop(held);
    let (status, why, refused) = match settled {
        Settled::Taken => {
            input.http.http_requests_ok.inc();
            return answer(StatusCode::OK, format!("{samples} samples taken"));
        }
        Settled::Rejected { why, refused } => (StatusCode::UNPROCESSABLE_ENTITY, why, refused),
        Settled::NotNow { why } => (StatusCode::SERVICE_UNAVAILABLE, why, samples),
    };
    SamplesRefused {
        peer,
        status: status.as_u16(),
        samples: refused,
        why: &why,
    }
    .emit(&input.ctx.stats, &input.http);
    let mut r = answer(status, why);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let secs = input.cfg.hold_timeout.as_secs().max(1);
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// A request waiting for the dispatchers, in `http_requests_held`. Dropped
/// unanswered (the client went away, and hyper dropped the handler), it
/// withdraws the request's batches and counts its samples as refused.
struct Held<'a> {
    input: &'a Input,
    peer: SocketAddr,
    samples: u64,
    withdrawn: Arc<AtomicBool>,
    answered: bool,
}

impl<'a> Held<'a> {
    fn new(input: &'a Input, peer: SocketAddr, samples: u64) -> Held<'a> {
        input.http.http_requests_held.inc();
        Held {
            input,
            peer,
            samples,
            withdrawn: Arc::default(),
            answered: false,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.input.http.http_requests_held.dec();
        if !self.answered {
            self.withdrawn
                .store(true, std::sync::atomic::Ordering::Relaxed);
            SamplesRefused {
                peer: self.peer,
                status: 499,
                samples: self.samples,
                why: "the client went away before its samples were taken",
            }
            .emit(&self.input.ctx.stats, &self.input.http);
        }
    }
}

/// What became of a request's samples.
enum Settled {
    Taken,
    /// A dispatcher rejected `refused` of them (the others were taken).
    Rejected {
        why: String,
        refused: u64,
    },
    /// Not taken within `hold_timeout_ms`, or not now (a transient failure).
    NotNow {
        why: String,
    },
}

/// Queues the request's batches and waits for their outcome, within `hold_timeout_ms`.
async fn settle(input: &Input, sealed: Vec<Sealed>, withdrawn: &Arc<AtomicBool>) -> Settled {
    let deadline = tokio::time::Instant::now() + input.cfg.hold_timeout;
    let terms = Terms {
        persistent: false,
        withdrawn: Some(withdrawn.clone()),
    };
    let withdraw = |why: String| {
        withdrawn.store(true, std::sync::atomic::Ordering::Relaxed);
        Settled::NotNow { why }
    };
    let hold_ms = input.cfg.hold_timeout.as_millis();
    let mut reports = Vec::with_capacity(sealed.len());
    for b in sealed {
        match input.ctx.fanout.send_by(b, &terms, deadline).await {
            Ok(rx) => reports.push(rx),
            Err(_) => {
                return withdraw(format!(
                    "the dispatchers' queues had no room within hold_timeout_ms ({hold_ms} ms); \
                     send again later"
                ));
            }
        }
    }
    let mut outcomes: Vec<BatchReport> = Vec::with_capacity(reports.len());
    for rx in reports {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => outcomes.push(r),
            Ok(Err(_)) => return withdraw("the daemon is stopping".into()),
            Err(_) => {
                return withdraw(format!(
                    "the dispatchers did not take the samples within hold_timeout_ms \
                     ({hold_ms} ms); send again later"
                ));
            }
        }
    }
    let failures: Vec<_> = outcomes.iter().flat_map(|o| &o.failures).collect();
    if failures.is_empty() {
        return Settled::Taken;
    }
    if let Some(f) = failures.iter().find(|f| f.transient) {
        return withdraw(format!(
            "dispatcher `{}` could not take the samples now: {}",
            f.dispatcher, f.reason
        ));
    }
    // Samples any dispatcher failed, each counted once, over the request's batches.
    let refused: u64 = outcomes
        .iter()
        .map(|o| {
            (0..o.samples)
                .filter(|i| o.failure_for(&(*i..*i + 1)).is_some())
                .count() as u64
        })
        .sum();
    let f = failures[0];
    Settled::Rejected {
        why: format!(
            "dispatcher `{}` did not take {refused} of the samples: {}",
            f.dispatcher, f.reason
        ),
        refused,
    }
}

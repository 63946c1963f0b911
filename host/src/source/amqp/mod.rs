//! The AMQP source: an oslo.messaging consumer of Ceilometer's notifications
//! (`<topic>.sample`) and RPC casts (`<topic>`, `<topic>.<host>`, fanout), with
//! the topology oslo declares, so it can share a broker with real OpenStack services.
//!
//! Delivery is at-least-once: a message is acked only after every dispatcher took
//! every one of its samples (a message may span batches), with `multiple` acks
//! over the longest finished prefix. A message a dispatcher still fails after its
//! retries is requeued (or dead-lettered); undecodable ones are rejected at once.
//!
//! - this module: the connection supervisor (connect, consume on every queue,
//!   reconnect with backoff, drain at shutdown);
//! - [`topology`]: queue names and their declaration;
//! - [`consumer`]: one channel on one queue;
//! - [`acks`]: which deliveries may be acked, without lapin (unit-tested);
//! - [`decode`]: message bodies into verified samples;
//! - [`decode_pool`]: the threads that do it, off the async runtime.

mod acks;
mod consumer;
mod decode;
mod decode_pool;
mod topology;

use std::sync::{Arc, Mutex};

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::SourceContext;
use crate::config::{AmqpConfig, redact_url};
use crate::telemetry::AmqpMetrics;
use crate::telemetry::events::{AmqpConnected, AmqpDown, SourceWorkerPanicked};
use acks::DeliveryCounts;
use consumer::Consumer;
use decode_pool::DecodePool;
use topology::Topology;

/// Connects to one broker host, asking for `heartbeat_timeout_threshold`
/// unless the URI's query sets `heartbeat` (lapin then fails the connection
/// when the broker stays silent that long). An `amqps://` host is reached over
/// TLS on rustls (with ring, as the HTTP egress and input): the broker's
/// certificate is checked against the system's roots and `ssl_ca_file`, and
/// `ssl_cert_file` / `ssl_key_file` are the client certificate.
async fn connect(uri: &str, cfg: &AmqpConfig) -> Result<Connection, String> {
    let mut parsed: AMQPUri = uri
        .parse()
        .map_err(|e: String| format!("bad AMQP URI: {}", e.replace(uri, &redact_url(uri))))?;
    if parsed.query.heartbeat.is_none() {
        parsed.query.heartbeat = Some(cfg.heartbeat_timeout_threshold);
    }
    let tls = tls_config(cfg)?;
    let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
    Connection::connect_uri_with_config(parsed, ConnectionProperties::default(), tls, runtime)
        .await
        .map_err(|e| format!("cannot connect: {e}"))
}

/// The TLS settings of `cfg`, the files read now (a renewed certificate is
/// taken at the next connection). Errors name the setting and the file, never
/// what is in it.
fn tls_config(cfg: &AmqpConfig) -> Result<OwnedTLSConfig, String> {
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {field} {}: {e}", path.display()))
    };
    let cert_chain = match &cfg.ssl_ca_file {
        Some(p) => Some(
            String::from_utf8(read("ssl_ca_file", p)?)
                .map_err(|_| format!("ssl_ca_file {} is not PEM text", p.display()))?,
        ),
        None => None,
    };
    let identity = match (&cfg.ssl_cert_file, &cfg.ssl_key_file) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read("ssl_cert_file", cert)?,
            key: read("ssl_key_file", key)?,
        }),
        _ => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

/// The broker host a source consumes from now (redacted), for `/status`:
/// None while it is down. Shows which node of a cluster it failed over to.
#[derive(Debug, Clone, Default)]
pub struct ConnectedTo(Arc<Mutex<Option<String>>>);

impl ConnectedTo {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, broker: Option<&str>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = broker.map(str::to_owned);
    }
}

/// Everything the consumers of one source share, across reconnects.
pub struct AmqpSource {
    cfg: AmqpConfig,
    ctx: SourceContext,
    /// Failed deliveries per message (by `_unique_id` or body hash), for `max_deliveries`.
    delivery_counts: Arc<DeliveryCounts>,
    /// Its AMQP figures, beside the common ones in `ctx.stats`.
    amqp: AmqpMetrics,
    topology: Topology,
    /// First delivery and last ack: the active span, for throughput figures.
    span: Mutex<Option<(std::time::Instant, std::time::Instant)>>,
    connected_to: ConnectedTo,
    /// The threads that decode bodies for every consumer of this source.
    decoders: DecodePool,
}

/// How a session (one connection) ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl AmqpSource {
    /// The source, with its decoder threads started (the error is the OS's,
    /// when it cannot start a thread).
    pub fn new(
        cfg: AmqpConfig,
        ctx: SourceContext,
        amqp: AmqpMetrics,
    ) -> std::io::Result<AmqpSource> {
        let topology = Topology::new(&cfg);
        let decoders = DecodePool::start(cfg.decode_threads)?;
        Ok(AmqpSource {
            cfg,
            ctx,
            delivery_counts: Arc::default(),
            amqp,
            topology,
            span: Mutex::new(None),
            connected_to: ConnectedTo::default(),
            decoders,
        })
    }

    /// The host it consumes from now, as `/status` shows it.
    pub fn connected_to(&self) -> ConnectedTo {
        self.connected_to.clone()
    }

    /// The queues this source consumes from.
    pub fn queues(&self) -> Vec<String> {
        self.topology.queues()
    }

    /// Connects, consumes, reconnects with backoff, until `shutdown` turns true.
    ///
    /// With several broker hosts (a `transport_url` listing a cluster), a lost
    /// session goes on at once with the next host, and a refused connection
    /// tries the next one; only when every host was tried in a row does the
    /// source wait (`reconnect_backoff_ms`, doubling up to `reconnect_backoff_max_ms`).
    /// That is oslo's round-robin failover.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let hosts: Vec<String> = match this.cfg.broker_uris() {
            // A config built without validation (tests) has no list yet.
            [] => vec![this.cfg.broker_url().to_owned()],
            uris => uris.to_vec(),
        };
        let mut backoff = this.cfg.reconnect_backoff;
        let max_backoff = this
            .cfg
            .reconnect_backoff_max
            .max(this.cfg.reconnect_backoff);
        let mut down_since: Option<std::time::Instant> = None;
        let mut next = 0usize;
        let mut failed_in_row = 0usize;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let uri = &hosts[next % hosts.len()];
            next = next.wrapping_add(1);
            let redacted = redact_url(uri);
            let started = std::time::Instant::now();
            let end = match connect(uri, &this.cfg).await {
                Ok(conn) => {
                    let end = this
                        .clone()
                        .session(&conn, &redacted, &mut down_since, shutdown.clone())
                        .await;
                    let _ = conn.close(200, "collector stopping".into()).await;
                    end
                }
                Err(e) => SessionEnd::Lost(e),
            };
            match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Lost(reason) => {
                    // `down_since` is cleared once a session consumes: then the
                    // next host is tried at once (unless the session died as soon
                    // as it began, which counts as a failure, so as not to spin).
                    if down_since.is_none() && started.elapsed() >= this.cfg.reconnect_backoff {
                        backoff = this.cfg.reconnect_backoff;
                        failed_in_row = 0;
                    } else {
                        failed_in_row += 1;
                    }
                    down_since.get_or_insert_with(std::time::Instant::now);
                    let wait = if failed_in_row == 0 || !failed_in_row.is_multiple_of(hosts.len()) {
                        std::time::Duration::ZERO
                    } else {
                        backoff
                    };
                    AmqpDown {
                        broker: &redacted,
                        reason: &reason,
                        retry_in: wait,
                    }
                    .emit(&this.amqp);
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.changed() => break,
                        }
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
        }
        tracing::info!(
            active_ms = this
                .span
                .lock()
                .ok()
                .and_then(|g| *g)
                .map_or(0, |(a, b)| b.duration_since(a).as_millis() as u64),
            "AMQP source stopped"
        );
    }

    /// One connection: declare, consume on every queue, until shutdown or a
    /// failure. Connected (`amqp_connected`, `/readyz`) from when every consumer
    /// runs until the session ends; that clears `down_since`.
    async fn session(
        self: Arc<Self>,
        conn: &Connection,
        broker: &str,
        down_since: &mut Option<std::time::Instant>,
        mut shutdown: watch::Receiver<bool>,
    ) -> SessionEnd {
        if let Err(e) = self.topology.declare(conn).await {
            return SessionEnd::Lost(format!("declaring the topology failed: {e}"));
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut consumers = JoinSet::new();
        for queue in self.queues() {
            for n in 0..self.cfg.channels {
                let channel = match conn.create_channel().await {
                    Ok(c) => c,
                    Err(e) => return SessionEnd::Lost(format!("cannot open a channel: {e}")),
                };
                let consumer = Consumer::new(
                    self.clone(),
                    channel,
                    queue.clone(),
                    format!("collector-{n}"),
                );
                match consumer.start().await {
                    Ok((consumer, deliveries)) => {
                        consumers.spawn(consumer.run(deliveries, stop_rx.clone()));
                    }
                    Err(e) => return SessionEnd::Lost(e),
                }
            }
        }
        tracing::info!(queues = ?self.queues(), channels = self.cfg.channels, "AMQP consuming");
        AmqpConnected {
            broker,
            queues: &self.queues(),
            down_for: down_since.take().map(|t| t.elapsed()),
        }
        .emit(&self.amqp);
        self.connected_to.set(Some(broker));
        let end = tokio::select! {
            _ = shutdown.changed() => {
                let _ = stop_tx.send(true);
                let drained = tokio::time::timeout(self.ctx.grace, async {
                    while consumers.join_next().await.is_some() {}
                })
                .await;
                if drained.is_err() {
                    tracing::error!(
                        unacked = self.amqp.amqp_unacked_deliveries.get(),
                        "AMQP: dispatchers did not finish within the grace period; the unacked \
                         messages go back to the queue"
                    );
                }
                SessionEnd::Shutdown
            }
            Some(ended) = consumers.join_next() => {
                consumers.abort_all();
                let reason = match ended {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => "a consumer stopped".to_owned(),
                    Err(e) => {
                        if e.is_panic() {
                            SourceWorkerPanicked {
                                detail: "a consumer task died; the session starts again",
                            }
                            .emit(&self.ctx.stats);
                        }
                        format!("a consumer task failed: {e}; the session starts again")
                    }
                };
                SessionEnd::Lost(reason)
            }
        };
        self.amqp.amqp_connected.dec();
        self.connected_to.set(None);
        end
    }
}

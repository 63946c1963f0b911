//! # collector
//!
//! Receives OpenStack Ceilometer metering samples, verifies their signatures,
//! batches them and hands each batch to every configured WebAssembly dispatcher.
//!
//! Module map, in the order a sample travels (a test, `tests/it/layout.rs`,
//! checks that it names every module and that no two modules import each other
//! in a cycle):
//! - [`source`]: where samples come from, and what `/status` shows of them;
//!   - [`source::udp`]: Ceilometer's `udp://` publisher, decoded on threads of its own;
//!   - [`source::tcp`]: Ceilometer's `tcp://` publisher, held back when the dispatchers are slow;
//!   - [`source::http`]: Ceilometer's `http://` and `opentelemetryhttp://` publishers, answered once taken;
//!   - [`source::http::tls`]: the HTTP input's rustls server configuration;
//!   - [`source::amqp`]: the oslo.messaging consumer and its connection supervisor;
//!   - [`source::amqp::topology`]: queue names and their declaration, as oslo does them;
//!   - [`source::amqp::consumer`]: one channel on one queue: deliveries to batches, outcomes to acks;
//!   - [`source::amqp::acks`]: which deliveries may be acked or must be nacked (no lapin inside);
//!   - [`source::amqp::decode`]: message bodies into verified samples;
//!   - [`source::amqp::decode_pool`]: the threads that decode them, off the async workers;
//! - [`wire`]: Ceilometer's wire formats (msgpack, oslo.messaging JSON) into the sample
//!   model, and [`signature`]: Ceilometer-compatible HMAC verification (the
//!   `collector-wire` crate, `host/wire/`);
//! - [`batch`]: samples into ABI batches, sealed on count, bytes or age;
//!   - [`batch_buffers`]: their buffers, recycled once every dispatcher is done;
//! - [`dispatch`]: fan-out to every dispatcher, one bounded queue each;
//!   - [`dispatch::worker`]: one dispatcher thread: retries, isolation of rejected samples, panics;
//!   - [`dispatch::report`]: a batch's outcome over all dispatchers, back to its source;
//! - [`egress`]: outbound HTTP for plugins, to the endpoints the operator declared;
//!   - [`egress::tls`]: an endpoint's rustls client configuration;
//! - [`plugin`]: everything about plugins;
//!   - [`plugin::runtime`]: wasmtime, the sandbox (deadline, WASI grants) and the host imports;
//!   - [`plugin::component`]: component plugins (Python, JavaScript) of the world `collector:dispatcher`;
//!   - [`plugin::memory_cap`]: the limiter that counts every memory and table against the cap;
//!   - [`plugin::guest_log`]: a plugin's log lines, rate-limited and escaped;
//!   - [`plugin::settings`]: what an instance may do, built once per dispatcher (or `check`);
//!   - [`plugin::conformance`]: a module's imports and exports against ABI v1;
//!   - [`plugin::handoff`]: the instance a thread serves with, version switches, snapshot and restore;
//!   - [`plugin::http`]: the `collector.http_*` imports: a plugin's requests, by handle;
//!   - [`plugin::memory_budget`]: an instance's `memory_limit_bytes`, shared by its memories and held responses;
//!   - [`plugin::guest_memory`]: the buffers a plugin passes to the host's imports;
//!   - [`plugin::registry`]: where a reload publishes a new version;
//!   - [`plugin::reload`]: watching plugin files and trying new versions;
//!   - [`plugin::cache`]: compiled modules on disk;
//!   - [`plugin::builtin`]: the plugins inside the binary;
//! - [`daemon`]: runs all of it, and replaces it on a config reload;
//! - [`huge_pages`]: transparent huge pages off for the daemon (mimalloc's purges made them costly);
//! - [`watch`]: the one file watcher of the config and plugin files;
//! - [`telemetry`]: every figure under one name, registered once;
//!   - [`telemetry::sets`]: the metric sets: names, help, handles;
//!   - [`telemetry::events`]: what happened, logged and counted in one place;
//!   - [`telemetry::log`]: what a log line may show of input from outside, and how often;
//! - [`admin`]: `/status`, `/metrics`, `/healthz` and `/readyz`;
//! - [`http_server`]: the HTTP server stack under the admin endpoint and the HTTP input;
//! - [`config`] (the `collector-config` crate, `host/config/`): the configuration;
//! - [`cli`]: the commands besides `run`;
//!   - [`cli::check`]: a plugin against the ABI and the golden batches;
//!   - [`cli::golden`]: the golden batches `check` dispatches;
//!   - [`cli::samples`]: sample generators for `send`, tests and benchmarks;
//!   - [`cli::send`]: signed samples to a collector, over UDP or TCP;
//!   - [`cli::send_http`]: samples posted to a collector as the HTTP and OTLP publishers post them;
//!   - [`cli::status`]: `/status` of a running daemon, in words.

pub mod admin;
pub mod batch;
pub mod batch_buffers;
pub mod cli;
pub mod daemon;
pub mod dispatch;
pub mod egress;
pub mod http_server;
pub mod huge_pages;
pub mod plugin;
pub mod source;
pub mod telemetry;
pub mod watch;

pub use collector_config as config;
pub use collector_wire as wire;
pub use collector_wire::signature;

use std::future::Future;

use crate::config::Config;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plugin(#[from] plugin::PluginError),
    #[error(transparent)]
    Dispatcher(#[from] dispatch::StartError),
    #[error("cannot bind {what} {address}: {source}")]
    Bind {
        /// What wanted the address: `UDP` or `the admin endpoint`.
        what: &'static str,
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("source `{name}`: {why}")]
    Source { name: &'static str, why: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a run did, for the caller's report.
#[derive(Debug, Default)]
pub struct Summary {
    /// True when every dispatcher finished its queue within the grace period.
    pub drained: bool,
    /// Panics caught in workers during the run (each was restarted): a daemon
    /// that had any exits non-zero.
    pub worker_panics: u64,
}

/// Runs the daemon until `shutdown` completes, then drains within the grace period.
/// With `config_path`, SIGHUP and changes of that file reload the configuration.
///
/// # Errors
/// [`RunError`] when a plugin or a source cannot start; nothing is received then.
pub async fn run(
    cfg: Config,
    config_path: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, RunError> {
    daemon::run(cfg, config_path, shutdown, None).await
}

/// A daemon that is ready, for whoever runs it in-process (tests): where it
/// listens, and its figures.
#[derive(Clone)]
pub struct Started {
    /// The admin endpoint's address, if it has one.
    pub admin: Option<std::net::SocketAddr>,
    /// The UDP source's address, if it has one.
    pub udp: Option<std::net::SocketAddr>,
    /// The TCP source's address, if it has one.
    pub tcp: Option<std::net::SocketAddr>,
    /// The HTTP source's address, if it has one.
    pub http: Option<std::net::SocketAddr>,
    /// The figures `/metrics` and `/status` show.
    pub telemetry: std::sync::Arc<telemetry::Telemetry>,
}

/// [`run`], calling `ready` once the daemon is ready (where `collector run`
/// tells systemd).
///
/// # Errors
/// As [`run`].
pub async fn run_notifying(
    cfg: Config,
    config_path: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(Started) + Send + 'static,
) -> Result<Summary, RunError> {
    daemon::run(cfg, config_path, shutdown, Some(Box::new(ready))).await
}

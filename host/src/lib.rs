//! # collector
//!
//! Receives OpenStack Ceilometer metering samples, verifies their signatures,
//! batches them and hands each batch to every configured WebAssembly dispatcher.
//!
//! Module map, in the order a sample travels:
//! - [`source`]: where samples come from (UDP, AMQP);
//! - [`wire`]: Ceilometer's wire formats (msgpack, oslo.messaging JSON) into the sample
//!   model, and [`signature`]: Ceilometer-compatible HMAC verification (the
//!   `collector-wire` crate, `host/wire/`);
//! - [`batch`]: flush on count, bytes or age;
//! - [`dispatch`]: fan-out to every dispatcher, one bounded queue and thread each;
//! - [`plugin`]: loading, checking and sandboxing the wasm plugins;
//! - [`daemon`]: runs all of it, and replaces it on a config reload;
//! - [`config`] (the `collector-config` crate, `host/config/`), [`telemetry`], [`admin`]:
//!   configuration, counters, `/status`;
//! - [`cli`]: the `check` and `send` commands.

pub mod admin;
pub mod batch;
pub mod cli;
pub mod daemon;
pub mod dispatch;
pub mod metrics;
pub mod plugin;
pub mod source;
pub mod telemetry;

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
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a run did, for the caller's report.
#[derive(Debug, Default)]
pub struct Summary {
    /// True when every dispatcher finished its queue within the grace period.
    pub drained: bool,
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
    daemon::run(cfg, config_path, shutdown).await
}

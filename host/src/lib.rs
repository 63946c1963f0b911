//! # collector
//!
//! Receives OpenStack Ceilometer metering samples, verifies their signatures,
//! batches them and hands each batch to every configured WebAssembly dispatcher.
//!
//! Module map, in the order a sample travels:
//! - [`source`]: where samples come from (UDP, AMQP);
//! - [`wire`]: Ceilometer's wire formats (msgpack, oslo.messaging JSON) into the sample model;
//! - [`signature`]: Ceilometer-compatible HMAC verification;
//! - [`batch`]: flush on count, bytes or age;
//! - [`dispatch`]: fan-out to every dispatcher, one bounded queue and thread each;
//! - [`plugin`]: loading, checking and sandboxing the wasm plugins;
//! - [`config`], [`telemetry`]: configuration and counters;
//! - [`cli`]: the `check` and `send` commands.

pub mod batch;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod plugin;
pub mod signature;
pub mod source;
pub mod telemetry;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::source::amqp::AmqpSource;
use crate::source::udp::UdpSource;
use crate::telemetry::SourceStats;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plugin(#[from] plugin::PluginError),
    #[error(transparent)]
    Dispatcher(#[from] dispatch::StartError),
    #[error("cannot bind UDP {address}: {source}")]
    Bind {
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
///
/// # Errors
/// [`RunError`] when a plugin or a source cannot start; nothing is received then.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<Summary, RunError> {
    let cache_dir = match (&cfg.reload.cache, &cfg.reload.cache_dir) {
        (false, _) => None,
        (true, Some(dir)) => Some(dir.clone()),
        (true, None) => plugin::cache::default_dir(),
    };
    let runtime = plugin::Runtime::new(cache_dir.as_deref())?;
    let dispatchers = cfg.dispatchers.clone();
    let rt = runtime.clone();
    let (fanout, workers) = tokio::task::spawn_blocking(move || dispatch::start(&rt, &dispatchers))
        .await
        .map_err(|e| RunError::Internal(e.to_string()))??;

    let secret: Arc<[u8]> = cfg.telemetry_secret.as_bytes().into();
    if secret.is_empty() {
        tracing::warn!("telemetry_secret is empty: sample signatures are not verified");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let reload_stats = Arc::new(plugin::reload::ReloadStats::default());
    let mut watcher = None;
    if cfg.reload.watch_plugins {
        let debounce = Duration::from_millis(cfg.reload.debounce_ms);
        match plugin::reload::spawn(
            runtime.clone(),
            &workers.plugins,
            debounce,
            reload_stats.clone(),
            stop_rx.clone(),
        ) {
            Ok(w) => watcher = w,
            Err(e) => tracing::error!(error = %e, "Cannot watch plugin files: hot reload is off"),
        }
    }
    let mut sources = Vec::new();
    if let Some(u) = &cfg.sources.udp {
        let src = UdpSource::bind(u).map_err(|source| RunError::Bind {
            address: u.address,
            source,
        })?;
        let addr = src
            .local_addr()
            .map_err(|e| RunError::Internal(e.to_string()))?;
        tracing::info!(address = %addr, "UDP source listening");
        let stats = Arc::new(SourceStats::default());
        sources.push(tokio::spawn(src.run(
            cfg.batch,
            secret.clone(),
            fanout.clone(),
            stats,
            stop_rx.clone(),
        )));
    }
    if let Some(a) = &cfg.sources.amqp {
        let url = a.resolve_url().map_err(RunError::Internal)?;
        let stats = Arc::new(SourceStats::default());
        let grace = Duration::from_millis(cfg.shutdown.grace_period_ms);
        let src = AmqpSource::new(
            a.clone(),
            url,
            cfg.batch,
            secret.clone(),
            fanout.clone(),
            stats,
            grace,
        );
        sources.push(tokio::spawn(src.run(stop_rx.clone())));
    }
    tracing::info!(dispatchers = cfg.dispatchers.len(), "collector ready");

    shutdown.await;
    tracing::info!("Shutting down: stop receiving, flush open batches");
    let _ = stop_tx.send(true);
    for s in sources {
        let _ = s.await;
    }
    if let Some(w) = watcher {
        let _ = w.await;
    }
    tracing::info!(
        reloads = reload_stats.reloads.get(),
        failures = reload_stats.failures.get(),
        "Plugin reload summary"
    );
    let stats = fanout.stats();
    drop(fanout);

    let grace = Duration::from_millis(cfg.shutdown.grace_period_ms);
    let join = tokio::task::spawn_blocking(move || workers.join());
    let drained = tokio::time::timeout(grace, join).await.is_ok();
    for (name, s) in &stats {
        tracing::info!(
            dispatcher = %name,
            batches_ok = s.batches_ok.get(),
            batches_failed = s.batches_failed.get(),
            batches_dropped = s.batches_dropped.get(),
            samples_ok = s.samples_ok.get(),
            samples_failed = s.samples_failed.get(),
            retries = s.retries.get(),
            timeouts = s.timeouts.get(),
            traps = s.traps.get(),
            memory_refusals = s.memory_refusals.get(),
            "Dispatcher summary"
        );
    }
    if !drained {
        tracing::error!(
            grace_period_ms = cfg.shutdown.grace_period_ms,
            "Dispatchers did not finish their queued batches within the grace period; exiting anyway"
        );
    }
    drop(runtime);
    Ok(Summary { drained })
}

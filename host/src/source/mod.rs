//! Where samples come from. Each source owns its batcher and hands sealed batches
//! to the [`Fanout`](crate::dispatch::Fanout).

pub mod amqp;
pub mod udp;

use std::sync::Arc;
use std::time::Duration;

use crate::config::BatchConfig;
use crate::dispatch::Fanout;
use crate::telemetry::SourceStats;

/// What every source gets from the daemon, besides its own settings.
#[derive(Clone)]
pub struct SourceContext {
    /// How its samples are cut into batches.
    pub batch: BatchConfig,
    /// `telemetry_secret`, as bytes (empty: signatures are not checked).
    pub secret: Arc<[u8]>,
    /// Where its sealed batches go.
    pub fanout: Fanout,
    /// Its counters (`/status`, `/metrics`, the shutdown summary).
    pub stats: Arc<SourceStats>,
    /// `shutdown.grace_period_ms`: how long it may take to stop.
    pub grace: Duration,
}

//! Where samples come from. Each source owns its batcher and hands sealed batches
//! to the [`Fanout`](crate::dispatch::Fanout).

pub mod amqp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::BatchConfig;
use crate::dispatch::Fanout;
use crate::telemetry::{AmqpMetrics, SourceStats, UdpMetrics};

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

/// A running source as `/status`, `/metrics` and the shutdown summary show it.
#[derive(Clone)]
pub struct SourceReport {
    pub stats: Arc<SourceStats>,
    /// The address it listens on (UDP).
    pub address: Option<SocketAddr>,
    /// Its AMQP figures (AMQP).
    pub amqp: Option<AmqpMetrics>,
    /// Its socket's kernel figures, and the socket's inode to find them (UDP).
    pub udp: Option<(UdpMetrics, u64)>,
}

impl SourceReport {
    /// Reads what the kernel counted on a UDP socket.
    pub fn refresh(&self) {
        if let Some((m, inode)) = &self.udp {
            m.udp_kernel_drops
                .set(udp::kernel_drops(*inode).unwrap_or(0));
        }
    }

    /// Every figure by its name.
    pub fn readings(&self) -> Vec<(&'static str, serde_json::Value)> {
        let mut r = self.stats.counts.readings();
        if let Some(a) = &self.amqp {
            r.extend(a.readings());
        }
        if let Some((u, _)) = &self.udp {
            r.extend(u.readings());
        }
        r
    }
}

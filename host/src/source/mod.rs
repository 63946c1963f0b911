//! Where samples come from. Each source owns its batcher and hands sealed batches
//! to the [`Fanout`](crate::dispatch::Fanout).

pub mod amqp;
pub mod http;
pub mod tcp;
pub mod udp;
pub mod udp_recv;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::BatchConfig;
use crate::dispatch::Fanout;
use crate::telemetry::{AmqpMetrics, HttpMetrics, SourceStats, TcpMetrics, UdpMetrics};

/// A socket of `ty` bound to `address` with `SO_REUSEADDR` and
/// `SO_REUSEPORT`, so that a source restarted by a config reload binds before
/// the old one closes; non-blocking. Streams are listening.
///
/// # Errors
/// When the address cannot be bound.
pub fn reusable_socket(address: SocketAddr, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let domain = if address.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sock = Socket::new(domain, ty, None)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&address.into())?;
    if ty == Type::STREAM {
        sock.listen(1024)?;
    }
    sock.set_nonblocking(true)?;
    Ok(sock)
}

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
    /// The address it listens on (UDP, TCP, HTTP).
    pub address: Option<SocketAddr>,
    /// Its AMQP figures (AMQP).
    pub amqp: Option<AmqpMetrics>,
    /// The broker host it consumes from now, redacted (AMQP; None while down).
    pub amqp_broker: Option<amqp::ConnectedTo>,
    /// Its socket's kernel figures, and the socket's inode to find them (UDP).
    pub udp: Option<(UdpMetrics, u64)>,
    /// Its connections and frames (TCP).
    pub tcp: Option<TcpMetrics>,
    /// What it answered (HTTP).
    pub http: Option<HttpMetrics>,
}

impl SourceReport {
    /// The report of a source with no figures of its own kind yet.
    pub fn of(stats: Arc<SourceStats>, address: Option<SocketAddr>) -> SourceReport {
        SourceReport {
            stats,
            address,
            amqp: None,
            amqp_broker: None,
            udp: None,
            tcp: None,
            http: None,
        }
    }

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
        if let Some(t) = &self.tcp {
            r.extend(t.readings());
        }
        if let Some(h) = &self.http {
            r.extend(h.readings());
        }
        r
    }
}

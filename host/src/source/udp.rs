//! The UDP source: Ceilometer's `udp://` publisher sends one msgpack map per
//! datagram, unsigned by the transport, signed by `telemetry_secret`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::batch::Batcher;
use crate::config::{BatchConfig, UdpConfig};
use crate::dispatch::Fanout;
use crate::signature::Signer;
use crate::telemetry::{RateLimit, SourceStats};
use crate::wire::msgpack;

/// Largest UDP payload over IPv4; Ceilometer's collector read 64 KiB.
const MAX_DATAGRAM: usize = 65_536;

/// A bound UDP source, not yet receiving.
pub struct UdpSource {
    socket: UdpSocket,
    cfg: UdpConfig,
}

impl UdpSource {
    /// Binds the socket with the configured receive buffer.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn bind(cfg: &UdpConfig) -> io::Result<UdpSource> {
        let domain = if cfg.address.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_reuse_address(true)?;
        set_receive_buffer(&sock, cfg.receive_buffer_bytes);
        sock.bind(&cfg.address.into())?;
        sock.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(sock.into())?;
        Ok(UdpSource {
            socket,
            cfg: cfg.clone(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives until `shutdown` turns true, then flushes the open batch.
    pub async fn run(
        self,
        batch: BatchConfig,
        secret: Arc<[u8]>,
        fanout: Fanout,
        stats: Arc<SourceStats>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let signer = Signer::new(&secret);
        let mut batcher = Batcher::new(&batch);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let bad_input = RateLimit::default();
        let far = Duration::from_secs(3600);
        // First and last datagram: the active span, for throughput figures.
        let mut span: Option<(std::time::Instant, std::time::Instant)> = None;
        loop {
            let deadline = batcher.deadline();
            let sleep_until = deadline.unwrap_or_else(|| std::time::Instant::now() + far);
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep_until(sleep_until.into()), if deadline.is_some() => {
                    if let Some(b) = batcher.flush() {
                        fanout.send_or_drop(b);
                    }
                }
                r = self.socket.readable() => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "UDP socket failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    for _ in 0..self.cfg.max_datagrams_per_wake {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, peer)) => {
                                let now = std::time::Instant::now();
                                span = Some(span.map_or((now, now), |(first, _)| (first, now)));
                                let Some(datagram) = buf.get(..n) else { continue };
                                handle(datagram, peer, &signer, &mut batcher, &fanout, &stats, &bad_input);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "UDP receive error");
                                break;
                            }
                        }
                    }
                }
            }
        }
        if let Some(b) = batcher.flush() {
            fanout.send_or_drop(b);
        }
        tracing::info!(
            received = stats.received.get(),
            samples = stats.samples.get(),
            malformed = stats.malformed.get(),
            bad_signature = stats.bad_signature.get(),
            active_ms = span.map_or(0, |(a, b)| b.duration_since(a).as_millis() as u64),
            "UDP source stopped"
        );
    }
}

fn handle(
    datagram: &[u8],
    peer: SocketAddr,
    signer: &Signer,
    batcher: &mut Batcher,
    fanout: &Fanout,
    stats: &SourceStats,
    bad_input: &RateLimit,
) {
    stats.received.inc();
    let sample = match msgpack::decode_sample(datagram) {
        Ok(s) => s,
        Err(e) => {
            stats.malformed.inc();
            if let Some(suppressed) = bad_input.allow() {
                tracing::warn!(%peer, bytes = datagram.len(), suppressed, "UDP: cannot decode datagram: {e}");
            }
            return;
        }
    };
    if !signer.verify(&sample) {
        stats.bad_signature.inc();
        if let Some(suppressed) = bad_input.allow() {
            tracing::warn!(%peer, message_id = %sample.message_id, suppressed, "UDP: sample signature invalid, discarding");
        }
        return;
    }
    stats.samples.inc();
    if let Some(b) = batcher.push(&sample) {
        fanout.send_or_drop(b);
    }
}

/// Asks for a large kernel buffer; as root, beyond `net.core.rmem_max`.
fn set_receive_buffer(sock: &Socket, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: setsockopt with a valid fd and a c_int option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
    if let Err(e) = sock.set_recv_buffer_size(bytes) {
        tracing::warn!(error = %e, bytes, "Cannot set the UDP receive buffer");
    }
}

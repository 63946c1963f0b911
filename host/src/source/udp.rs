//! The UDP source: Ceilometer's `udp://` publisher sends one msgpack map per
//! datagram, unsigned by the transport, signed by `telemetry_secret`.
//!
//! The async task only reads datagrams, in chunks, and hands each chunk to one of
//! `decode_threads` threads; each decodes, verifies and batches on its own, so
//! the CPU work runs on every core and never on the async runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Socket, Type};
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::SourceContext;
use super::udp_recv::Receiver as Datagrams;
use crate::batch::{Batcher, SystemClock};
use crate::config::{BatchConfig, UdpConfig};
use crate::dispatch::Fanout;

use crate::telemetry::SourceStats;
use crate::telemetry::events::{
    DatagramUndecodable, DatagramsDropped, DropCause, Origin, SignatureInvalid,
    SourceWorkerPanicked,
};
use crate::wire::transcode::{Refusal, Transcoder};

/// How long the receive task waits for a decoder with room before it drops a
/// chunk: a burst the decoders fall behind on waits in the kernel's receive
/// buffer (`receive_buffer_bytes`, 16 MiB: about 25,000 realistic datagrams)
/// rather than being dropped at once.
const HOLD_WHEN_SATURATED: Duration = Duration::from_millis(100);
/// Chunks queued per decoder thread before the receive task waits for room.
const CHUNKS_PER_DECODER: usize = 64;

/// Datagrams read in one wake-up: their bytes back to back, and where each ends.
struct Chunk {
    data: Vec<u8>,
    ends: Vec<(usize, SocketAddr)>,
}

/// A bound UDP source, not yet receiving.
pub struct UdpSource {
    socket: UdpSocket,
    cfg: UdpConfig,
}

/// What each decoder thread needs.
#[derive(Clone)]
struct Decoding {
    batch: BatchConfig,
    secret: Arc<[u8]>,
    fanout: Fanout,
    stats: Arc<SourceStats>,
    /// Set at shutdown: chunks still queued after it are dropped, not decoded.
    stop_by: Arc<std::sync::OnceLock<Instant>>,
    /// Decoded chunks go back to the receive task to be filled again: fresh
    /// buffers at this rate cost more in page faults than the decoding.
    recycle: SyncSender<Chunk>,
}

impl UdpSource {
    /// Binds the socket with the configured receive buffer.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn bind(cfg: &UdpConfig) -> io::Result<UdpSource> {
        // SO_REUSEPORT, like Ceilometer's collector: a reloaded source binds before the old one closes.
        let sock = super::reusable_socket(cfg.address, Type::DGRAM)?;
        set_receive_buffer(&sock, cfg.receive_buffer_bytes);
        let socket = UdpSocket::from_std(sock.into())?;
        Ok(UdpSource {
            socket,
            cfg: cfg.clone(),
        })
    }

    /// The socket's inode, to find its line in /proc/net/udp.
    pub fn inode(&self) -> u64 {
        use std::os::fd::AsRawFd;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on our own open socket fd into a stat buffer of the right type.
        match unsafe { libc::fstat(self.socket.as_raw_fd(), &mut st) } {
            0 => st.st_ino,
            _ => 0,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives until `shutdown` turns true, then lets the decoders flush their
    /// batches. They have half of `grace` for what they hold: what is still queued
    /// then is dropped (counted), so that the dispatchers keep the other half.
    pub async fn run(self, ctx: SourceContext, mut shutdown: watch::Receiver<bool>) {
        let SourceContext {
            batch,
            secret,
            fanout,
            stats,
            grace,
        } = ctx;
        let (recycle, recycled) = sync_channel::<Chunk>(CHUNKS_PER_DECODER);
        let decoding = Decoding {
            batch,
            secret,
            fanout,
            stats: stats.clone(),
            stop_by: Arc::default(),
            recycle,
        };
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for i in 0..self.cfg.decode_threads {
            let (tx, rx) = sync_channel::<Chunk>(CHUNKS_PER_DECODER);
            let d = decoding.clone();
            match std::thread::Builder::new()
                .name(format!("udp-decode-{i}"))
                .spawn(move || decode_loop(&d, &rx))
            {
                Ok(t) => {
                    senders.push(tx);
                    threads.push(t);
                }
                Err(e) => tracing::error!(error = %e, "Cannot start a UDP decoder thread"),
            }
        }
        if senders.is_empty() {
            tracing::error!("UDP source has no decoder thread; not receiving");
            return;
        }
        let mut intake = Intake {
            senders,
            next: 0,
            span: None,
            stats: stats.clone(),
        };
        let mut rx = Datagrams::new();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    let now = Instant::now();
                    let _ = decoding.stop_by.set(now + grace / 2);
                    // What the kernel already holds is ours: read it before closing,
                    // for a quarter of the grace period at most (a flood never ends).
                    let drain_until = now + grace / 4;
                    while Instant::now() < drain_until {
                        let chunk = self.read_chunk(&mut rx, &recycled);
                        if chunk.ends.is_empty() {
                            break;
                        }
                        intake.forward(chunk).await;
                        tokio::task::yield_now().await;
                    }
                    break;
                }
                r = self.socket.readable() => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "UDP socket failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    let chunk = self.read_chunk(&mut rx, &recycled);
                    if !chunk.ends.is_empty() {
                        intake.forward(chunk).await;
                    }
                }
            }
        }
        let span = intake.span;
        drop(intake);
        let joined = tokio::task::spawn_blocking(move || threads.into_iter().for_each(join));
        match tokio::time::timeout(grace, joined).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::error!("A UDP decoder thread panicked"),
            Err(_) => tracing::error!("UDP decoders did not stop within the grace period"),
        }
        tracing::info!(
            active_ms = span.map_or(0, |(a, b)| b.duration_since(a).as_millis() as u64),
            "UDP source stopped"
        );
    }

    /// Reads the datagrams waiting now, up to `max_datagrams_per_wake`, many
    /// per system call; each is copied once, into the chunk.
    fn read_chunk(&self, rx: &mut Datagrams, recycled: &Receiver<Chunk>) -> Chunk {
        let mut chunk = recycled.try_recv().unwrap_or_else(|_| Chunk {
            data: Vec::with_capacity(64 << 10),
            ends: Vec::new(),
        });
        chunk.data.clear();
        chunk.ends.clear();
        let fd = self.socket.as_raw_fd();
        let mut left = self.cfg.max_datagrams_per_wake;
        while left > 0 {
            let got = self.socket.try_io(Interest::READABLE, || {
                rx.recv(fd, left, |d, peer| {
                    chunk.data.extend_from_slice(d);
                    chunk.ends.push((chunk.data.len(), peer));
                })
            });
            match got {
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "UDP receive error");
                    break;
                }
            }
        }
        chunk
    }
}

fn join(t: JoinHandle<()>) {
    let _ = t.join();
}

/// Hands chunks of datagrams to the decoder threads, round robin, counting them.
struct Intake {
    senders: Vec<SyncSender<Chunk>>,
    next: usize,
    /// First and last datagram: the active span, for throughput figures.
    span: Option<(Instant, Instant)>,
    stats: Arc<SourceStats>,
}

impl Intake {
    /// Gives the chunk to the next decoder with room. When every decoder is
    /// full, waits for one (up to [`HOLD_WHEN_SATURATED`], reading nothing
    /// meanwhile, so that the kernel's receive buffer takes the burst); then
    /// drops the chunk and counts it.
    async fn forward(&mut self, mut chunk: Chunk) {
        let now = Instant::now();
        self.span = Some(self.span.map_or((now, now), |(first, _)| (first, now)));
        self.stats
            .counts
            .messages_received
            .inc_by(chunk.ends.len() as u64);
        self.next = (self.next + 1) % self.senders.len();
        let give_up = now + HOLD_WHEN_SATURATED;
        loop {
            for i in 0..self.senders.len() {
                match self.senders[(self.next + i) % self.senders.len()].try_send(chunk) {
                    Ok(()) => return,
                    Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => chunk = c,
                }
            }
            if Instant::now() >= give_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        DatagramsDropped {
            count: chunk.ends.len() as u64,
            cause: DropCause::Saturated,
        }
        .emit(&self.stats);
    }
}

/// One decoder thread: decode, verify, batch; flush on the batch deadline and at the end.
fn decode_loop(d: &Decoding, rx: &Receiver<Chunk>) {
    let mut transcoder = Transcoder::new(&d.secret);
    let mut batcher = Batcher::<SystemClock>::new(&d.batch);
    loop {
        let next = match batcher.deadline() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(deadline) => rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
        };
        match next {
            Ok(chunk) => {
                let mut done = 0;
                let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut start = 0;
                    for (i, &(end, peer)) in chunk.ends.iter().enumerate() {
                        // Past the shutdown deadline, what is left is dropped, counted.
                        if d.stop_by.get().is_some_and(|t| Instant::now() >= *t) {
                            DatagramsDropped {
                                count: (chunk.ends.len() - i) as u64,
                                cause: DropCause::Shutdown,
                            }
                            .emit(&d.stats);
                            return;
                        }
                        if let Some(datagram) = chunk.data.get(start..end) {
                            handle(datagram, peer, &mut transcoder, &mut batcher, d);
                        }
                        done = i + 1;
                        start = end;
                    }
                }));
                match handled {
                    Ok(()) => d.stats.counts.source_healthy.set(true),
                    Err(_) => {
                        // The open batch may hold half a sample: it is given up, with
                        // the datagrams of the chunk not handled yet (the culprit too).
                        let lost = batcher.discard();
                        let skipped = (chunk.ends.len() - done) as u64;
                        DatagramsDropped {
                            count: skipped,
                            cause: DropCause::Panic,
                        }
                        .emit(&d.stats);
                        SourceWorkerPanicked {
                            detail: &format!(
                                "a decoder thread gave up {skipped} datagrams and an open batch of \
                                 {lost} samples; it goes on with the next datagrams"
                            ),
                        }
                        .emit(&d.stats);
                    }
                }
                // A receive task that has stopped, or has enough spares: dropped.
                let _ = d.recycle.try_send(chunk);
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(b) = batcher.flush() {
                    d.fanout.send_or_drop(b);
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(b) = batcher.flush() {
        d.fanout.send_or_drop(b);
    }
}

fn handle(
    datagram: &[u8],
    peer: SocketAddr,
    transcoder: &mut Transcoder,
    batcher: &mut Batcher,
    d: &Decoding,
) {
    match batcher.push_with(|out| transcoder.transcode(datagram, out)) {
        Ok(sealed) => {
            d.stats.counts.samples_received.inc();
            if let Some(b) = sealed {
                d.fanout.send_or_drop(b);
            }
        }
        Err(Refusal::Undecodable(e)) => DatagramUndecodable {
            peer,
            bytes: datagram.len(),
            error: &e,
        }
        .emit(&d.stats),
        Err(Refusal::SignatureInvalid { message_id }) => SignatureInvalid {
            origin: Origin::Peer(peer),
            message_id,
            count: 1,
        }
        .emit(&d.stats),
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

/// Datagrams the kernel dropped on this source's socket (the `drops` column of
/// /proc/net/udp or udp6), if the socket is found there.
pub fn kernel_drops(inode: u64) -> Option<i64> {
    if inode == 0 {
        return None;
    }
    let wanted = inode.to_string();
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        text.lines().skip(1).find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:tm retrnsmt uid timeout inode ref pointer drops
            (cols.get(9) == Some(&wanted.as_str())).then(|| cols.get(12)?.parse().ok())?
        })
    })
}

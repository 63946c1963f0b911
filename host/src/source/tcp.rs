//! The TCP source: Ceilometer's `tcp://` publisher (`TCPPublisher`) sends each
//! sample as an 8-byte little-endian length and one msgpack map (the UDP dict
//! plus `publisher_id`, which the agent adds before signing), on a connection
//! it keeps open and never reads from.
//!
//! Unlike UDP, TCP can push back, and this source does: each connection's task
//! reads frames and hands them, in chunks, to the source's one batching task
//! over a small bounded channel; the batching task decodes and verifies them
//! off the async workers and waits for room in every dispatcher's queue
//! ([`Fanout::send_wait_with`]). When the dispatchers are slow the channel
//! fills, the connections stop reading, and the agents' sockets wait in the
//! kernel: nothing is dropped. A batch from this source is retried for as long
//! as a dispatcher answers `retry`, whatever its `max_retries` ([`Terms`]).
//!
//! A frame longer than `max_frame_bytes`, a connection closed or stalled in
//! the middle of a frame, closes that connection (counted); a frame whose
//! msgpack is not a sample, or whose signature fails, is dropped alone.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::SourceContext;
use crate::batch::{Batcher, Sealed, TokioClock};
use crate::config::TcpConfig;
use crate::dispatch::Terms;
use crate::telemetry::events::{FrameRefused, FrameUndecodable, Origin, SignatureInvalid};
use crate::telemetry::{SourceStats, TcpMetrics};
use crate::wire::transcode::{Refusal, Transcoder};

/// Bytes of frames a connection gathers before handing them on.
const CHUNK_BYTES: usize = 256 << 10;
/// Chunks waiting for the batching task: beyond them, connections stop reading.
const CHUNKS_QUEUED: usize = 8;
/// The length prefix.
const PREFIX: usize = 8;
/// A connection's read buffer between large frames.
const READ_BYTES: usize = 64 << 10;

/// Whole frames of one connection, back to back, and where each ends.
struct Chunk {
    peer: SocketAddr,
    data: Vec<u8>,
    ends: Vec<usize>,
}

/// A bound TCP source, not yet accepting.
pub struct TcpSource {
    listener: TcpListener,
    cfg: TcpConfig,
}

impl TcpSource {
    /// Binds the listening socket (with `SO_REUSEPORT`, so that a source
    /// restarted by a config reload binds before the old one closes).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn bind(cfg: &TcpConfig) -> io::Result<TcpSource> {
        let sock = super::reusable_socket(cfg.address, socket2::Type::STREAM)?;
        Ok(TcpSource {
            listener: TcpListener::from_std(sock.into())?,
            cfg: cfg.clone(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` turns true; then the frames already
    /// read are batched and handed on, and the source returns.
    pub async fn run(
        self,
        ctx: SourceContext,
        tcp: TcpMetrics,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (tx, rx) = mpsc::channel::<Chunk>(CHUNKS_QUEUED);
        let batching = tokio::spawn(batch_loop(ctx.clone(), rx));
        let slots = Arc::new(Semaphore::new(self.cfg.max_connections));
        loop {
            let slot = tokio::select! {
                _ = shutdown.changed() => break,
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                _ = shutdown.changed() => break,
                a = self.listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, most likely: pause rather than spin.
                    tracing::warn!(error = %e, "TCP: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            tcp.tcp_connections.inc();
            let conn = Connection {
                peer,
                cfg: self.cfg.clone(),
                tx: tx.clone(),
                stats: ctx.stats.clone(),
                tcp: tcp.clone(),
            };
            let stop = shutdown.clone();
            tokio::spawn(async move {
                conn.tcp.tcp_connections_open.inc();
                conn.serve(stream, stop).await;
                conn.tcp.tcp_connections_open.dec();
                drop(slot);
            });
        }
        drop(tx);
        drop(self.listener);
        // The connections see the same shutdown and drop their senders: the
        // batching task then drains the channel, flushes, and ends.
        let _ = batching.await;
        tracing::info!("TCP source stopped");
    }
}

/// One connection: frames in, chunks out.
struct Connection {
    peer: SocketAddr,
    cfg: TcpConfig,
    tx: mpsc::Sender<Chunk>,
    stats: Arc<SourceStats>,
    tcp: TcpMetrics,
}

impl Connection {
    async fn serve(&self, mut stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_BYTES);
        let mut chunk = self.chunk();
        // When the bytes of the frame now in `buf` began to arrive.
        let mut frame_began: Option<Instant> = None;
        loop {
            // Every whole frame in `buf` into the chunk.
            let mut at = 0;
            while buf.len() - at >= PREFIX {
                let mut len = [0u8; PREFIX];
                len.copy_from_slice(&buf[at..at + PREFIX]);
                let len = u64::from_le_bytes(len);
                if len > self.cfg.max_frame_bytes as u64 {
                    // The whole frames before it still count.
                    if !chunk.ends.is_empty() {
                        self.hand_on(&mut chunk).await;
                    }
                    return self.refuse(&format!(
                        "a frame of {len} bytes is over max_frame_bytes ({})",
                        self.cfg.max_frame_bytes
                    ));
                }
                let end = at + PREFIX + len as usize;
                if buf.len() < end {
                    // Room for exactly this frame, not a doubling past it.
                    buf.reserve_exact(end - buf.len());
                    break;
                }
                chunk.data.extend_from_slice(&buf[at + PREFIX..end]);
                chunk.ends.push(chunk.data.len());
                at = end;
                if chunk.data.len() >= CHUNK_BYTES && !self.hand_on(&mut chunk).await {
                    return;
                }
            }
            buf.drain(..at);
            if buf.is_empty() && buf.capacity() > READ_BYTES {
                // A large frame passed: give its memory back.
                buf = Vec::with_capacity(READ_BYTES);
            }
            if !chunk.ends.is_empty() && !self.hand_on(&mut chunk).await {
                return;
            }
            frame_began = match (buf.is_empty(), frame_began, at > 0) {
                (true, _, _) => None,
                // A new frame began in what was just read.
                (false, None, _) | (false, Some(_), true) => Some(Instant::now()),
                (false, Some(t), false) => Some(t),
            };
            let wait_until = match frame_began {
                Some(t) => t + self.cfg.frame_timeout,
                None => Instant::now() + self.cfg.idle_timeout,
            };
            let read = tokio::select! {
                _ = shutdown.changed() => return,
                r = tokio::time::timeout_at(wait_until, stream.read_buf(&mut buf)) => r,
            };
            match read {
                Err(_) if frame_began.is_some() => {
                    return self.refuse(&format!(
                        "a frame stalled: {} bytes of it came, then nothing for frame_timeout_ms ({} ms)",
                        buf.len(),
                        self.cfg.frame_timeout.as_millis()
                    ));
                }
                Err(_) => {
                    self.tcp.tcp_idle_closed.inc();
                    tracing::debug!(peer = %self.peer, "TCP: closing an idle connection");
                    return;
                }
                Ok(Ok(0)) if !buf.is_empty() => {
                    return self.refuse(&format!(
                        "the peer closed the connection {} bytes into a frame",
                        buf.len()
                    ));
                }
                Ok(Ok(0)) => return,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(peer = %self.peer, error = %e, "TCP: connection failed");
                    if !buf.is_empty() {
                        self.refuse(&format!("the connection failed in a frame: {e}"));
                    }
                    return;
                }
            }
        }
    }

    fn chunk(&self) -> Chunk {
        Chunk {
            peer: self.peer,
            data: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Hands the chunk to the batching task, waiting for room (the time
    /// waited is counted); false when the source has stopped.
    async fn hand_on(&self, chunk: &mut Chunk) -> bool {
        let full = std::mem::replace(chunk, self.chunk());
        let permit = match self.tx.try_reserve() {
            Ok(p) => p,
            Err(mpsc::error::TrySendError::Closed(())) => return false,
            Err(mpsc::error::TrySendError::Full(())) => {
                let waited = Instant::now();
                let p = self.tx.reserve().await;
                self.tcp
                    .tcp_backpressure_ms
                    .inc_by(waited.elapsed().as_millis() as u64);
                match p {
                    Ok(p) => p,
                    Err(_) => return false,
                }
            }
        };
        self.stats
            .counts
            .messages_received
            .inc_by(full.ends.len() as u64);
        permit.send(full);
        true
    }

    fn refuse(&self, why: &str) {
        FrameRefused {
            peer: self.peer,
            why,
        }
        .emit(&self.stats, &self.tcp);
    }
}

/// The source's one batching task: decodes and verifies chunks on the
/// blocking pool, batches, and waits for room in the dispatchers' queues.
async fn batch_loop(ctx: SourceContext, mut rx: mpsc::Receiver<Chunk>) {
    let terms = Terms {
        persistent: true,
        withdrawn: None,
    };
    let mut work = Some((
        Batcher::<TokioClock>::new(&ctx.batch),
        Transcoder::new(&ctx.secret),
    ));
    loop {
        let deadline = work.as_ref().and_then(|(b, _)| b.deadline());
        let next = tokio::select! {
            c = rx.recv() => c,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(b) = work.as_mut().and_then(|(b, _)| b.flush()) {
                    ctx.fanout.send_wait_with(b, &terms).await;
                }
                continue;
            }
        };
        let Some(chunk) = next else { break };
        let Some((mut b, mut t)) = work.take() else {
            break;
        };
        let stats = ctx.stats.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            let sealed = decode_chunk(&chunk, &mut t, &mut b, &stats);
            ((b, t), sealed)
        })
        .await;
        let (w, sealed) = match decoded {
            Ok(v) => v,
            Err(e) => {
                // The open batch went with the panic: start a new one.
                crate::telemetry::events::SourceWorkerPanicked {
                    detail: &format!("a TCP decoder gave up a chunk and its open batch: {e}"),
                }
                .emit(&ctx.stats);
                (
                    (Batcher::new(&ctx.batch), Transcoder::new(&ctx.secret)),
                    Vec::new(),
                )
            }
        };
        work = Some(w);
        for s in sealed {
            ctx.fanout.send_wait_with(s, &terms).await;
        }
    }
    if let Some(b) = work.as_mut().and_then(|(b, _)| b.flush()) {
        ctx.fanout.send_wait_with(b, &terms).await;
    }
}

/// Decodes, verifies and batches every frame of `chunk` (in one pass each,
/// as UDP datagrams); the batches it sealed.
fn decode_chunk(
    chunk: &Chunk,
    transcoder: &mut Transcoder,
    batcher: &mut Batcher<TokioClock>,
    stats: &SourceStats,
) -> Vec<Sealed> {
    let mut sealed = Vec::new();
    let mut start = 0;
    for &end in &chunk.ends {
        let frame = chunk.data.get(start..end).unwrap_or_default();
        start = end;
        match batcher.push_with(|out| transcoder.transcode(frame, out)) {
            Ok(done) => {
                stats.counts.samples_received.inc();
                sealed.extend(done);
            }
            Err(Refusal::Undecodable(e)) => FrameUndecodable {
                peer: chunk.peer,
                bytes: frame.len(),
                error: &e,
            }
            .emit(stats),
            Err(Refusal::SignatureInvalid { message_id }) => SignatureInvalid {
                origin: Origin::Tcp(chunk.peer),
                message_id,
                count: 1,
            }
            .emit(stats),
        }
    }
    stats.counts.source_healthy.set(true);
    sealed
}

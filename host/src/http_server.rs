//! The one HTTP server stack (axum on hyper 1, HTTP/1.1) under the admin
//! endpoint and the HTTP input, each on its own address with its own limits.
//!
//! Clients cannot take the daemon down through it: at most `max_connections`
//! are served at a time (the others wait in the kernel's backlog, holding no
//! descriptor of ours); a connection's request headers (and the TLS handshake)
//! must arrive within `header_timeout`; a connection may be bounded as a whole
//! (`connection_timeout`, the admin endpoint's); a failing `accept` (out of
//! descriptors) backs off instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The peer of a connection, in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// How one server protects itself.
#[derive(Clone)]
pub struct Limits {
    /// Connections served at once; the next waits in the kernel's backlog.
    pub max_connections: usize,
    /// From accept to the end of the connection, whatever the client does
    /// (`None`: as long as the client keeps sending requests in time).
    pub connection_timeout: Option<Duration>,
    /// The TLS handshake, and each request's headers, must arrive within this.
    pub header_timeout: Duration,
    /// Serve several requests on one connection.
    pub keep_alive: bool,
    /// Serve HTTPS with this configuration.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// What a server tells its owner, who counts and logs it.
pub trait Events: Send + Sync + 'static {
    /// `accept` failed; the server pauses `retry_in`.
    fn accept_failed(&self, error: &std::io::Error, retry_in: Duration);
    /// A connection was closed at `connection_timeout`, or its headers or TLS
    /// handshake did not come within `header_timeout`.
    fn timed_out(&self);
}

/// Pause after a failed `accept`, doubling up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
    events: Arc<dyn Events>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        // A slot first: beyond the cap, clients wait in the backlog and cost no descriptor.
        let slot = tokio::select! {
            _ = shutdown.changed() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = ACCEPT_BACKOFF_MIN;
                a
            }
            Err(e) => {
                events.accept_failed(&e, backoff);
                drop(slot);
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let app = app.clone().layer(axum::Extension(Peer(peer)));
        let (limits, events, stop) = (limits.clone(), events.clone(), shutdown.clone());
        tokio::spawn(async move {
            let done = async {
                match &limits.tls {
                    None => connection(stream, app, &limits, stop).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => connection(tls, app, &limits, stop).await,
                            Ok(Err(e)) => {
                                tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                                true
                            }
                            Err(_) => false,
                        }
                    }
                }
            };
            let in_time = match limits.connection_timeout {
                Some(t) => tokio::time::timeout(t, done).await.unwrap_or(false),
                None => done.await,
            };
            if !in_time {
                events.timed_out();
            }
            drop(slot);
        });
    }
}

/// Serves one connection; false when it ended at `header_timeout`. When the
/// server stops (shutdown, or a config reload replaced it), the connection
/// finishes the request in hand and closes: a kept-alive client does not go
/// on with the old settings.
async fn connection<I>(io: I, app: Router, limits: &Limits, mut stop: watch::Receiver<bool>) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(limits.keep_alive)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match ended {
        Ok(()) => true,
        Err(e) => !e.is_timeout(),
    }
}

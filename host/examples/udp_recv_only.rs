//! The baseline for the end-to-end benchmark: receive datagrams the way the
//! daemon's UDP source does (same buffer, same non-blocking loop) and do nothing
//! else. Prints how many arrived and over what span, once idle for 2 s.
//!
//! `cargo run --release --example udp_recv_only -- 127.0.0.1:49521`

use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:49521".into());
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    sock.set_recv_buffer_size(16 << 20)?;
    let parsed: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    sock.bind(&parsed.into())?;
    let sock: UdpSocket = sock.into();
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    println!("listening on {addr}");
    let mut buf = vec![0u8; 65536];
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut first = None;
    let mut last = Instant::now();
    loop {
        match sock.recv_from(&mut buf) {
            Ok((len, _)) => {
                last = Instant::now();
                first.get_or_insert(last);
                n += 1;
                bytes += len as u64;
            }
            Err(_) if first.is_some() => break,
            Err(_) => {}
        }
    }
    let active_ms = first.map_or(0, |f| last.duration_since(f).as_millis());
    println!("received={n} bytes={bytes} active_ms={active_ms}");
    Ok(())
}

//! The baseline for the end-to-end benchmark: receive datagrams the way the
//! daemon's UDP source does (the same `recvmmsg` receiver and buffers, woken by
//! readiness) and do nothing else. Prints how many arrived and over what span,
//! once idle for 2 s.
//!
//! `cargo run --release --example udp_recv_only -- 127.0.0.1:49521`

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Instant;

use collector::source::udp_recv::{BATCH, Receiver};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:49521".into());
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    sock.set_recv_buffer_size(16 << 20)?;
    let parsed: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    sock.bind(&parsed.into())?;
    let sock: UdpSocket = sock.into();
    let fd = sock.as_raw_fd();
    println!("listening on {addr}");
    let mut rx = Receiver::new();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut first = None;
    let mut last = Instant::now();
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 2000) } == 0 {
            if first.is_some() {
                break;
            }
            continue;
        }
        loop {
            match rx.recv(fd, BATCH, |d, _| {
                n += 1;
                bytes += d.len() as u64;
            }) {
                Ok(_) => {
                    last = Instant::now();
                    first.get_or_insert(last);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    let active_ms = first.map_or(0, |f| last.duration_since(f).as_millis());
    println!("received={n} bytes={bytes} active_ms={active_ms}");
    Ok(())
}

//! Many datagrams per system call: `recvmmsg(2)` into buffers reused from one
//! wake-up to the next.
//!
//! Hand-written over `libc` because neither tokio nor socket2 offers
//! `recvmmsg`; quinn-udp does, but shaped for QUIC (GRO segments, ECN, its own
//! socket state). The UDP source and its receive-only baseline
//! (`examples/udp_recv_only.rs`) both receive with [`Receiver`], so the
//! benchmark's ratio compares decoding, not receive methods.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// The largest UDP payload (IPv4, 65,535 minus the headers), rounded up.
pub const MAX_DATAGRAM: usize = 65_536;

/// Datagrams asked for per call.
pub const BATCH: usize = 32;

/// Reused `recvmmsg` state: [`BATCH`] slots of [`MAX_DATAGRAM`] bytes (2 MiB).
pub struct Receiver {
    slots: Vec<u8>,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    headers: Vec<libc::mmsghdr>,
}

// The raw pointers in `iov` and `headers` point into the receiver's own
// buffers; they are rewritten before every call and never shared.
unsafe impl Send for Receiver {}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    pub fn new() -> Self {
        // SAFETY: all-zero is a valid value of these plain C structs.
        let zeroed_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zeroed_header: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Receiver {
            slots: vec![0; BATCH * MAX_DATAGRAM],
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                BATCH
            ],
            names: vec![zeroed_name; BATCH],
            headers: vec![zeroed_header; BATCH],
        }
    }

    /// Receives the datagrams waiting now (up to `max`, at most [`BATCH`])
    /// without blocking, and calls `each` with every one and its sender, in
    /// arrival order. `Ok(0)` never happens: nothing waiting is `WouldBlock`.
    pub fn recv(
        &mut self,
        fd: RawFd,
        max: usize,
        mut each: impl FnMut(&[u8], SocketAddr),
    ) -> io::Result<usize> {
        let n = max.clamp(1, BATCH);
        let base = self.slots.as_mut_ptr();
        for i in 0..n {
            self.iov[i] = libc::iovec {
                // SAFETY: slot i lies inside `slots` (BATCH * MAX_DATAGRAM bytes).
                iov_base: unsafe { base.add(i * MAX_DATAGRAM) }.cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut self.headers[i].msg_hdr;
            h.msg_name = (&raw mut self.names[i]).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &raw mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: `headers[..n]` point at live buffers of the lengths given;
        // MSG_DONTWAIT makes the call non-blocking whatever the socket's mode.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        for i in 0..got {
            let len = (self.headers[i].msg_len as usize).min(MAX_DATAGRAM);
            let start = i * MAX_DATAGRAM;
            each(&self.slots[start..start + len], peer(&self.names[i]));
        }
        Ok(got)
    }
}

/// The sender's address from what the kernel wrote.
fn peer(name: &libc::sockaddr_storage) -> SocketAddr {
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(name as *const libc::sockaddr_storage).cast() };
            SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(a.sin_addr.s_addr).into(),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast() };
            SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            ))
        }
        _ => SocketAddr::V4(SocketAddrV4::new(0.into(), 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_what_was_sent_with_its_sender_in_order() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut r = Receiver::new();
        let err = r
            .recv(rx.as_raw_fd(), BATCH, |_, _| {})
            .expect_err("nothing waits");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let big = vec![7u8; 60_000];
        for i in 0..40u8 {
            let d: &[u8] = if i == 3 { &big } else { &[i; 3] };
            tx.send_to(d, rx.local_addr().expect("addr")).expect("send");
        }
        let mut seen = Vec::new();
        while seen.len() < 40 {
            r.recv(rx.as_raw_fd(), BATCH, |d, peer| {
                assert_eq!(peer, tx.local_addr().expect("addr"));
                seen.push(d.to_vec());
            })
            .expect("received");
        }
        assert_eq!(seen[3], big);
        assert_eq!(seen[39], [39; 3]);
        assert_eq!(seen[0], [0; 3]);
    }
}

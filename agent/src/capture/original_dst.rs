//! The destination a redirected connection was going to before iptables `REDIRECT` sent it to
//! the agent (`SO_ORIGINAL_DST` for IPv4, `IP6T_SO_ORIGINAL_DST` for IPv6).
//!
//! Read through socket2 (already the data plane's socket library, built with these calls);
//! nix's equivalents (`sockopt::OriginalDst`, `sockopt::Ip6tOriginalDst`) need its `net`
//! feature and one more crate for the same two `getsockopt` calls.

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;

/// The original destination of an accepted connection. A connection that was not redirected
/// reports its own local address (the caller refuses those: proxying them would loop).
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let sock = SockRef::from(stream);
    let local = stream.local_addr()?;
    let addr = if local.is_ipv4() {
        sock.original_dst_v4()?
    } else {
        // A dual-stack socket carries IPv4 connections as mapped addresses; their NAT entry is
        // IPv4.
        sock.original_dst_v6().or_else(|_| sock.original_dst_v4())?
    };
    addr.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "original destination is not an IP address",
        )
    })
}

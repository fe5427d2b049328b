//! TCP listeners for the API and the metrics endpoint.
//!
//! A node on an IPv6-only network must be configurable, and one on an
//! IPv4-only network too, so the API listens on `[::]` with `IPV6_V6ONLY`
//! off: one socket takes both families (IPv4 peers appear as
//! `::ffff:a.b.c.d`, which [`crate::peers`] folds back). The option is set
//! explicitly rather than left to `net.ipv6.bindv6only`. A kernel without
//! IPv6 gets the IPv4 wildcard instead.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bind `addr`; an IPv6 wildcard (`[::]:port`) takes IPv4 peers as well.
pub fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    // A restarted listener (a metrics address changed back, machined's API
    // after a crash of its task) must not wait out TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// The API's listener on `port`: both families on `[::]`, or the IPv4
/// wildcard when the kernel has no IPv6 (returned with why).
pub fn bind_any(port: u16) -> io::Result<(tokio::net::TcpListener, Option<io::Error>)> {
    match bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))) {
        Ok(l) => Ok((l, None)),
        Err(v6) => Ok((
            bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?,
            Some(v6),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_ipv6_wildcard_takes_both_families() {
        let (l, fallback) = bind_any(0).unwrap();
        assert!(fallback.is_none(), "this kernel has IPv6: {fallback:?}");
        let port = l.local_addr().unwrap().port();
        for peer in [
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ] {
            let _client = tokio::net::TcpStream::connect(peer).await.unwrap();
            let (_, seen) = l.accept().await.unwrap();
            match peer {
                SocketAddr::V4(_) => assert_eq!(
                    seen.ip().to_canonical(),
                    std::net::IpAddr::from(Ipv4Addr::LOCALHOST)
                ),
                SocketAddr::V6(_) => {
                    assert_eq!(seen.ip(), std::net::IpAddr::from(Ipv6Addr::LOCALHOST))
                }
            }
        }
    }

    #[tokio::test]
    async fn an_ipv4_address_stays_ipv4() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(
            tokio::net::TcpStream::connect((Ipv6Addr::LOCALHOST, port))
                .await
                .is_err()
        );
    }
}

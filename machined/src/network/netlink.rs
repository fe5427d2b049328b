//! A thin async wrapper over `rtnetlink`: list links, set them up/down, set
//! the MTU, add/remove addresses and routes. Every error names the link and
//! the address or route it was about.
//!
//! The netlink socket belongs to the network namespace of the thread that
//! called [`Netlink::connect`]; every later request goes to that namespace.

use super::NetworkError;
use basalt_api::config::{Cidr, MacAddr};
use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use rtnetlink::packet_route::route::{RouteProtocol, RouteScope};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use serde::Serialize;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The rtnetlink "kind" of a virtual link (`veth`, `bridge`, …); `None`
    /// for hardware NICs.
    pub kind: Option<String>,
    pub loopback: bool,
    /// A NIC backed by a device: `/sys/class/net/<name>/device` exists. When
    /// sysfs is not mounted, an Ethernet link with no rtnetlink kind counts.
    /// Loopback, veth, bridges, bonds, tunnels… are never physical.
    pub physical: bool,
}

/// A route on one link. `via: None` is an on-link (scope link) route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct RouteSpec {
    pub to: Cidr,
    pub via: Option<IpAddr>,
    pub metric: Option<u32>,
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        Ok(())
    }
}

/// Who installed a route: written into the route's protocol field, so
/// `ip route` shows `proto static` or `proto dhcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOrigin {
    Static,
    Dhcp,
}

/// A handle on one rtnetlink connection. Cheap to clone.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Netlink")
    }
}

fn io_err(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

fn is_errno(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}

fn net(addr: IpAddr, prefix: u8) -> Option<Cidr> {
    IpNet::new(addr, prefix).ok().map(Cidr)
}

impl Netlink {
    /// Open an rtnetlink socket in the calling thread's network namespace and
    /// drive it on the current tokio runtime.
    pub fn connect() -> Result<Self, NetworkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Connect)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Every link in the namespace, in index order.
    pub async fn links(&self) -> Result<Vec<Link>, NetworkError> {
        let sysfs = Path::new("/sys/class/net").is_dir();
        let mut out = Vec::new();
        let mut stream = self.handle.link().get().execute();
        while let Some(msg) = stream.try_next().await.map_err(|e| NetworkError::Dump {
            what: "links",
            source: io_err(e),
        })? {
            out.push(link_from_message(&msg, sysfs));
        }
        out.sort_by_key(|l| l.index);
        Ok(out)
    }

    /// Set a link administratively up or down.
    pub async fn set_up(&self, link: &Link, up: bool) -> Result<(), NetworkError> {
        let b = LinkUnspec::new_with_index(link.index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetworkError::Link {
                link: link.name.clone(),
                op: if up { "set up" } else { "set down" },
                source: io_err(e),
            })
    }

    pub async fn set_mtu(&self, link: &Link, mtu: u32) -> Result<(), NetworkError> {
        let msg = LinkUnspec::new_with_index(link.index).mtu(mtu).build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetworkError::Link {
                link: link.name.clone(),
                op: "set mtu",
                source: io_err(e),
            })
    }

    /// The addresses on a link (both families).
    pub async fn addresses(&self, link: &Link) -> Result<Vec<Cidr>, NetworkError> {
        let mut out = Vec::new();
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(link.index)
            .execute();
        while let Some(msg) = stream.try_next().await.map_err(|e| NetworkError::Dump {
            what: "addresses",
            source: io_err(e),
        })? {
            if msg.header.index != link.index {
                continue;
            }
            let addr = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(c) = addr.and_then(|ip| net(ip, msg.header.prefix_len)) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Add an address (replacing an identical one, so this is idempotent).
    pub async fn add_address(&self, link: &Link, addr: Cidr) -> Result<(), NetworkError> {
        let mut req = self
            .handle
            .address()
            .add(link.index, addr.addr(), addr.0.prefix_len());
        if let IpNet::V4(v4) = addr.0
            && v4.prefix_len() < 31
        {
            // Like `ip addr add … brd +`: DHCP servers and peers expect it.
            req.message_mut()
                .attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
        req.replace()
            .execute()
            .await
            .map_err(|e| NetworkError::Address {
                link: link.name.clone(),
                addr,
                op: "add",
                source: io_err(e),
            })
    }

    /// Remove an address; one that is already gone is not an error.
    pub async fn del_address(&self, link: &Link, addr: Cidr) -> Result<(), NetworkError> {
        let mut req = self
            .handle
            .address()
            .add(link.index, addr.addr(), addr.0.prefix_len());
        let msg = std::mem::take(req.message_mut());
        match self
            .handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(io_err)
        {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EADDRNOTAVAIL) || is_errno(&e, libc::ENODEV) => Ok(()),
            Err(source) => Err(NetworkError::Address {
                link: link.name.clone(),
                addr,
                op: "delete",
                source,
            }),
        }
    }

    /// Remove every address of a link.
    pub async fn flush_addresses(&self, link: &Link) -> Result<(), NetworkError> {
        for a in self.addresses(link).await? {
            self.del_address(link, a).await?;
        }
        Ok(())
    }

    /// Add (or replace) a route out of `link`.
    pub async fn add_route(
        &self,
        link: &Link,
        route: &RouteSpec,
        origin: RouteOrigin,
    ) -> Result<(), NetworkError> {
        let msg =
            route_message(link, route, Some(origin)).map_err(|source| NetworkError::Route {
                link: link.name.clone(),
                route: *route,
                op: "add",
                source,
            })?;
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| NetworkError::Route {
                link: link.name.clone(),
                route: *route,
                op: "add",
                source: io_err(e),
            })
    }

    /// Remove a route; one that is already gone is not an error.
    pub async fn del_route(&self, link: &Link, route: &RouteSpec) -> Result<(), NetworkError> {
        let err = |source| NetworkError::Route {
            link: link.name.clone(),
            route: *route,
            op: "delete",
            source,
        };
        let msg = route_message(link, route, None).map_err(err)?;
        match self.handle.route().del(msg).execute().await.map_err(io_err) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ESRCH) || is_errno(&e, libc::ENODEV) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// Bring `lo` up with 127.0.0.1/8 (and ::1, which the kernel adds itself
    /// when IPv6 is enabled).
    pub async fn loopback_up(&self) -> Result<(), NetworkError> {
        let links = self.links().await?;
        let lo = links
            .iter()
            .find(|l| l.loopback)
            .ok_or_else(|| NetworkError::NoSuchLink("lo".into()))?;
        self.set_up(lo, true).await?;
        let want = Cidr::v4([127, 0, 0, 1], 8);
        if !self.addresses(lo).await?.contains(&want) {
            self.add_address(lo, want).await?;
        }
        Ok(())
    }
}

fn route_message(
    link: &Link,
    route: &RouteSpec,
    origin: Option<RouteOrigin>,
) -> Result<rtnetlink::packet_route::route::RouteMessage, io::Error> {
    fn invalid(e: impl fmt::Display) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
    }
    let dst = route.to.0.trunc();
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .map_err(invalid)?
        .output_interface(link.index);
    if let Some(via) = route.via {
        b = b.gateway(via).map_err(invalid)?;
    }
    if let Some(m) = route.metric {
        b = b.priority(m);
    }
    b = match origin {
        // A delete matches any scope and protocol.
        None => b.scope(RouteScope::NoWhere).protocol(RouteProtocol::Unspec),
        Some(o) => b
            .scope(if route.via.is_some() {
                RouteScope::Universe
            } else {
                RouteScope::Link
            })
            .protocol(match o {
                RouteOrigin::Static => RouteProtocol::Static,
                RouteOrigin::Dhcp => RouteProtocol::Dhcp,
            }),
    };
    Ok(b.build())
}

fn link_from_message(msg: &LinkMessage, sysfs: bool) -> Link {
    let mut name = String::new();
    let mut mac = None;
    let mut mtu = 0;
    let mut kind = None;
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(b);
                mac = Some(MacAddr(m));
            }
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    let loopback = msg.header.flags.contains(LinkFlags::Loopback)
        || msg.header.link_layer_type == LinkLayerType::Loopback;
    let physical = !loopback
        && if sysfs {
            Path::new("/sys/class/net")
                .join(&name)
                .join("device")
                .exists()
        } else {
            kind.is_none() && msg.header.link_layer_type == LinkLayerType::Ether
        };
    Link {
        index: msg.header.index,
        name,
        mac,
        mtu,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind,
        loopback,
        physical,
    }
}

/// The connected network of a v4 address: what a DHCP lease's mask implies.
pub fn v4_cidr(addr: Ipv4Addr, prefix: u8) -> Option<Cidr> {
    net(IpAddr::V4(addr), prefix)
}

/// The link changes the network controller's executor makes: the seam
/// between its reconcile and rtnetlink, so the executor runs against a
/// recording fake in unit tests.
pub(crate) trait LinkOps: Sync {
    async fn set_up(&self, link: &Link, up: bool) -> Result<(), NetworkError>;
    async fn set_mtu(&self, link: &Link, mtu: u32) -> Result<(), NetworkError>;
    async fn add_address(&self, link: &Link, addr: Cidr) -> Result<(), NetworkError>;
    async fn del_address(&self, link: &Link, addr: Cidr) -> Result<(), NetworkError>;
    async fn add_route(&self, link: &Link, route: &RouteSpec) -> Result<(), NetworkError>;
    async fn del_route(&self, link: &Link, route: &RouteSpec) -> Result<(), NetworkError>;
}

impl LinkOps for Netlink {
    async fn set_up(&self, link: &Link, up: bool) -> Result<(), NetworkError> {
        Netlink::set_up(self, link, up).await
    }
    async fn set_mtu(&self, link: &Link, mtu: u32) -> Result<(), NetworkError> {
        Netlink::set_mtu(self, link, mtu).await
    }
    async fn add_address(&self, link: &Link, addr: Cidr) -> Result<(), NetworkError> {
        Netlink::add_address(self, link, addr).await
    }
    async fn del_address(&self, link: &Link, addr: Cidr) -> Result<(), NetworkError> {
        Netlink::del_address(self, link, addr).await
    }
    /// Static routes: the config's.
    async fn add_route(&self, link: &Link, route: &RouteSpec) -> Result<(), NetworkError> {
        Netlink::add_route(self, link, route, RouteOrigin::Static).await
    }
    async fn del_route(&self, link: &Link, route: &RouteSpec) -> Result<(), NetworkError> {
        Netlink::del_route(self, link, route).await
    }
}

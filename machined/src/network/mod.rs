//! Networking for PID 1 (DESIGN.md "Boot sequence" step 5 and 7): links,
//! addresses, routes and MTU over rtnetlink; a DHCPv4 client; the machine
//! config's static settings; the DNS servers and search domains DHCP
//! offers (resolv.conf itself is written by `controllers::dns`).
//!
//! - [`netlink`]: a thin async wrapper over `rtnetlink`.
//! - [`dhcp`]: the DHCPv4 client as a pure state machine (time injected).
//! - `dhcp_link`: the per-link task that runs it over a UDP socket.
//! - [`controller`]: [`NetworkController`], what boot and apply call.
//!
//! Wiring (all on the tokio runtime; `pid1` and `node` do exactly this):
//! ```text
//! let net = NetworkController::start(ControllerOptions::default()).await?; // lo up
//! net.apply(None).await?;                          // boot: DHCP on physical links
//! net.apply(Some(&cfg.machine.network)).await?;    // each config apply
//! let dns = net.lease_dns();                       // DHCP's servers and domains
//! let mut changes = net.changes();                 // a lease came or went: rewrite resolv.conf
//! net.release_all().await;                         // before reboot
//! ```

pub mod controller;
pub mod dhcp;
mod dhcp_link;
pub mod netlink;

pub use controller::{
    ControllerOptions, LinkSelector, LinkStatus, NetworkController, NetworkStatus,
};
pub use dhcp_link::DhcpStatus;
pub use netlink::{Link, Netlink, RouteSpec};

use basalt_api::config::Cidr;
use std::fmt;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("netlink: cannot open a socket: {0}")]
    Connect(#[source] io::Error),
    #[error("netlink: listing {what}: {source}")]
    Dump {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("link {link}: {op}: {source}")]
    Link {
        link: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("link {link}: {op} address {addr}: {source}")]
    Address {
        link: String,
        addr: Cidr,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("link {link}: {op} route {route}: {source}")]
    Route {
        link: String,
        route: RouteSpec,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("no link matches {0}")]
    NoSuchLink(String),
    #[error("link {0} is matched by more than one [[machine.network.interfaces]] entry")]
    DuplicateMatch(String),
}

/// Everything that failed in one [`NetworkController::apply`]; the rest was
/// applied.
#[derive(Debug, thiserror::Error)]
pub struct ApplyErrors(pub Vec<NetworkError>);

impl fmt::Display for ApplyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

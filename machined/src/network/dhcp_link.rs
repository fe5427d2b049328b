//! The I/O side of the DHCP client: one tokio task per link drives a
//! [`dhcp::Client`](super::dhcp::Client) over a UDP socket and installs its
//! leases with netlink.
//!
//! The socket is bound to 0.0.0.0:68 with `SO_BINDTODEVICE` and
//! `SO_BROADCAST`. Linux sends from it (source 0.0.0.0) and delivers
//! broadcast replies to it before the link has any address, so no raw socket
//! is needed; the client sets the BROADCAST flag until it holds an address.

use super::dhcp::{Action, Client, Dest, Lease, Phase, Timing};
use super::netlink::{Link, Netlink, RouteOrigin, RouteSpec};
use basalt_api::config::Cidr;
use dhcproto::v4::Message;
use dhcproto::{Encodable, Encoder};
use serde::Serialize;
use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// What the API shows for one link's DHCP client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DhcpStatus {
    pub phase: Phase,
    pub lease: Option<Lease>,
    /// Wall-clock time of the last ACK (seconds since the epoch; may be
    /// wrong on a node that has not synced its clock yet).
    pub bound_at_unix: Option<u64>,
    /// ACKs that extended a lease already held.
    pub renewals: u32,
    /// The last failure (socket, netlink), cleared by the next success.
    pub error: Option<String>,
}

impl Default for DhcpStatus {
    fn default() -> Self {
        Self {
            phase: Phase::Init,
            lease: None,
            bound_at_unix: None,
            renewals: 0,
            error: None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DhcpParams {
    pub timing: Timing,
    /// Metric of the default route through the lease's router.
    pub route_metric: u32,
    /// Sent as option 12 so the server can register the name.
    pub hostname: Option<String>,
    /// Apply the lease's MTU option (off when the config sets an MTU).
    pub apply_mtu: bool,
}

enum Cmd {
    RenewNow,
    Release(oneshot::Sender<()>),
}

/// A running DHCP client. Dropping it stops the task without releasing.
pub(crate) struct DhcpTask {
    cmds: mpsc::UnboundedSender<Cmd>,
    status: watch::Receiver<DhcpStatus>,
    join: tokio::task::JoinHandle<()>,
}

pub(crate) type OnChange = Arc<dyn Fn() + Send + Sync>;

impl DhcpTask {
    pub fn spawn(nl: Netlink, link: Link, params: DhcpParams, on_change: OnChange) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(DhcpStatus::default());
        let driver = Driver {
            nl,
            link,
            params,
            status: status_tx,
            on_change,
            installed: None,
        };
        let join = tokio::spawn(driver.run(cmd_rx));
        Self {
            cmds: cmd_tx,
            status: status_rx,
            join,
        }
    }

    pub fn watch(&self) -> watch::Receiver<DhcpStatus> {
        self.status.clone()
    }

    pub fn renew_now(&self) {
        let _ = self.cmds.send(Cmd::RenewNow);
    }

    /// Send RELEASE, remove the lease from the link and stop (bounded wait).
    pub async fn release(self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Release(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        self.join.abort();
    }
}

impl Drop for DhcpTask {
    fn drop(&mut self) {
        self.join.abort();
    }
}

fn open_socket(ifname: &str) -> io::Result<UdpSocket> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::Broadcast, &true)?;
    setsockopt(&fd, sockopt::BindToDevice, &OsString::from(ifname))?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, 68))?;
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

fn seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
    })
}

struct Driver {
    nl: Netlink,
    link: Link,
    params: DhcpParams,
    status: watch::Sender<DhcpStatus>,
    on_change: OnChange,
    installed: Option<Lease>,
}

impl Driver {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let Some(mac) = self.link.mac else {
            self.fail(format!(
                "link {} has no MAC address; DHCP needs one",
                self.link.name
            ));
            return;
        };
        let sock = loop {
            match open_socket(&self.link.name) {
                Ok(s) => break s,
                Err(e) => {
                    self.fail(format!("link {}: DHCP socket: {e}", self.link.name));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        c = cmds.recv() => if let Some(Cmd::Release(done)) = c {
                            let _ = done.send(());
                            return;
                        } else if c.is_none() {
                            return;
                        },
                    }
                }
            }
        };
        tracing::info!(link = %self.link.name, "dhcp: starting");
        let mut client = Client::new(
            mac.0,
            self.params.hostname.clone(),
            self.params.timing,
            seed(),
            now(),
        );
        let mut buf = vec![0u8; 4096];
        loop {
            let actions = client.poll(now());
            self.execute(&sock, actions, &client).await;
            let wake = client.next_wakeup().map(Instant::from_std);
            tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok((n, _from)) => {
                        let Some(bytes) = buf.get(..n) else { continue };
                        match super::dhcp::wire::decode_reply(bytes) {
                            Ok(msg) => {
                                let actions = client.handle(&msg, now());
                                self.execute(&sock, actions, &client).await;
                            }
                            Err(e) => tracing::debug!(link = %self.link.name, "dhcp: undecodable packet: {e}"),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(link = %self.link.name, "dhcp: receive: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                _ = sleep_until(wake) => {}
                c = cmds.recv() => match c {
                    Some(Cmd::RenewNow) => {
                        let actions = client.renew_now(now());
                        self.execute(&sock, actions, &client).await;
                    }
                    Some(Cmd::Release(done)) => {
                        let actions = client.release(now());
                        self.execute(&sock, actions, &client).await;
                        tracing::info!(link = %self.link.name, "dhcp: stopped");
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
            }
        }
    }

    fn fail(&self, msg: String) {
        tracing::warn!("{msg}");
        self.status.send_modify(|s| s.error = Some(msg));
    }

    async fn execute(&mut self, sock: &UdpSocket, actions: Vec<Action>, client: &Client) {
        for a in actions {
            match a {
                Action::Send { msg, dest } => self.send(sock, &msg, dest).await,
                Action::Bind(lease) => self.bind(lease).await,
                Action::Unbind(lease) => self.unbind(&lease).await,
            }
        }
        self.status.send_if_modified(|s| {
            let phase = client.phase();
            let changed = s.phase != phase;
            s.phase = phase;
            changed
        });
    }

    async fn send(&self, sock: &UdpSocket, msg: &Message, dest: Dest) {
        let mut buf = Vec::with_capacity(576);
        if let Err(e) = msg.encode(&mut Encoder::new(&mut buf)) {
            tracing::warn!(link = %self.link.name, "dhcp: encode: {e}");
            return;
        }
        let ip = match dest {
            Dest::Broadcast => Ipv4Addr::BROADCAST,
            Dest::Server(ip) => ip,
        };
        let to = SocketAddr::V4(SocketAddrV4::new(ip, 67));
        let kind = msg.opts().msg_type();
        tracing::debug!(link = %self.link.name, ?kind, %to, "dhcp: send");
        if let Err(e) = sock.send_to(&buf, to).await {
            tracing::warn!(link = %self.link.name, ?kind, %to, "dhcp: send: {e}");
        }
    }

    fn default_route(&self, lease: &Lease) -> Option<RouteSpec> {
        let via = *lease.routers.first()?;
        Some(RouteSpec {
            to: Cidr::v4([0, 0, 0, 0], 0),
            via: Some(via.into()),
            metric: Some(self.params.route_metric),
        })
    }

    async fn bind(&mut self, lease: Lease) {
        let link = &self.link;
        let Some(cidr) = lease.cidr() else {
            self.fail(format!(
                "link {}: lease {}/{} is not a valid prefix",
                link.name, lease.address, lease.prefix_len
            ));
            return;
        };
        let mut errors = Vec::new();
        let old = self.installed.take();
        let renewal = old.is_some();
        if let Some(old) = &old {
            let (old_route, new_route) = (self.default_route(old), self.default_route(&lease));
            if old_route != new_route
                && let Some(r) = old_route
                && let Err(e) = self.nl.del_route(link, &r).await
            {
                errors.push(e.to_string());
            }
            if let Some(c) = old.cidr()
                && c != cidr
                && let Err(e) = self.nl.del_address(link, c).await
            {
                errors.push(e.to_string());
            }
        }
        if let Err(e) = self.nl.add_address(link, cidr).await {
            errors.push(e.to_string());
        }
        if self.params.apply_mtu
            && let Some(mtu) = lease.mtu
            && u32::from(mtu) != link.mtu
            && let Err(e) = self.nl.set_mtu(link, u32::from(mtu)).await
        {
            errors.push(e.to_string());
        }
        if let Some(r) = self.default_route(&lease)
            && let Err(e) = self.nl.add_route(link, &r, RouteOrigin::Dhcp).await
        {
            errors.push(e.to_string());
        }
        tracing::info!(
            link = %link.name, address = %cidr, routers = ?lease.routers, dns = ?lease.dns,
            lease_secs = lease.lease_secs, renewal, "dhcp: bound"
        );
        for r in &lease.refused {
            tracing::warn!(link = %link.name, server = %lease.server, "dhcp: not taken from the server: {r}");
        }
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        if let Some(e) = &error {
            tracing::warn!("dhcp: installing the lease: {e}");
        }
        let bound_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
        self.status.send_modify(|s| {
            s.lease = Some(lease.clone());
            s.bound_at_unix = bound_at;
            s.error = error;
            if renewal {
                s.renewals += 1;
            }
        });
        self.installed = Some(lease);
        (self.on_change)();
    }

    async fn unbind(&mut self, lease: &Lease) {
        let link = &self.link;
        if let Some(r) = self.default_route(lease)
            && let Err(e) = self.nl.del_route(link, &r).await
        {
            tracing::warn!("dhcp: {e}");
        }
        if let Some(c) = lease.cidr()
            && let Err(e) = self.nl.del_address(link, c).await
        {
            tracing::warn!("dhcp: {e}");
        }
        tracing::info!(link = %link.name, address = %lease.address, "dhcp: lease removed");
        self.installed = None;
        self.status.send_modify(|s| {
            s.lease = None;
            s.bound_at_unix = None;
        });
        (self.on_change)();
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

//! [`NetworkController`]: makes the links match the machine config.
//!
//! - No config, or a config with no `[[machine.network.interfaces]]`: DHCP
//!   on every eligible link ([`LinkSelector`]; physical NICs by default).
//! - Otherwise each interface entry is matched to a link by `name` and/or
//!   `mac` (both must match when both are given) and gets its MTU, static
//!   addresses, routes and — with `dhcp = true` — a DHCP client. Links not
//!   listed are not brought up; a link we configured earlier that is no
//!   longer listed is released, stripped of what we added and set down.
//!   `lo` is always up with 127.0.0.1/8.
//! - Re-applying reconciles: addresses and routes we added before and no
//!   longer want are removed; what is still wanted is left alone (a running
//!   DHCP lease survives an apply that keeps `dhcp = true`).
//!
//! The controller only removes what it added itself (tracked in memory; on a
//! fresh boot nothing is ours yet). A failure on one link does not stop the
//! others; all failures come back in [`ApplyErrors`] and in the status.

use super::dhcp::Timing;
use super::dhcp_link::{DhcpParams, DhcpStatus, DhcpTask, OnChange};
use super::netlink::{Link, LinkOps, Netlink, RouteSpec};
use super::{ApplyErrors, NetworkError};
use crate::controllers::dns::LeaseDns;
use crate::host::kernel::{Kernel, Linux};
use basalt_api::config::{Cidr, MacAddr, Network};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

mod diff;
pub(crate) use diff::{LinkOp, link_ops, stale_links, teardown_ops};
use tokio::sync::watch;

/// Which links get DHCP when the config names no interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSelector {
    /// Every [`Link::physical`] link (the node default).
    Physical,
    /// Exactly these link names (tests use it for veth pairs).
    Named(Vec<String>),
}

impl LinkSelector {
    fn selects(&self, link: &Link) -> bool {
        !link.loopback
            && match self {
                LinkSelector::Physical => link.physical,
                LinkSelector::Named(names) => names.contains(&link.name),
            }
    }
}

#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub dhcp_links: LinkSelector,
    pub dhcp_timing: Timing,
    /// Metric of DHCP default routes (systemd-networkd also uses 1024), so a
    /// static default route with a lower metric wins.
    pub dhcp_route_metric: u32,
    /// Sent to DHCP servers as option 12.
    pub dhcp_hostname: Option<String>,
    /// Where the per-link sysctls (`promote_secondaries`) go.
    pub kernel: Arc<dyn Kernel>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            dhcp_links: LinkSelector::Physical,
            dhcp_timing: Timing::default(),
            dhcp_route_metric: 1024,
            dhcp_hostname: None,
            kernel: Arc::new(Linux),
        }
    }
}

/// One configured link, as `/v1/network` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkStatus {
    pub name: String,
    pub index: u32,
    pub mac: Option<MacAddr>,
    /// The MTU the config set, if any.
    pub mtu: Option<u32>,
    /// Static addresses and routes from the config.
    pub addresses: Vec<Cidr>,
    pub routes: Vec<RouteSpec>,
    pub dhcp: Option<DhcpStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkStatus {
    pub links: Vec<LinkStatus>,
    pub dns: Vec<IpAddr>,
    pub search_domains: Vec<String>,
    /// Failures of the last apply (and of bringing up `lo`).
    pub errors: Vec<String>,
}

/// What one link should look like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Want {
    pub(crate) addrs: Vec<Cidr>,
    pub(crate) routes: Vec<RouteSpec>,
    pub(crate) mtu: Option<u32>,
    pub(crate) dhcp: bool,
}

/// What we did to one link.
struct Owned {
    link: Link,
    want: Want,
    dhcp: Option<DhcpTask>,
}

#[derive(Default)]
struct View {
    nameservers: Vec<IpAddr>,
    search: Vec<String>,
    links: Vec<(LinkStatus, Option<watch::Receiver<DhcpStatus>>)>,
    errors: Vec<String>,
}

struct Inner {
    nl: Netlink,
    opts: ControllerOptions,
    owned: tokio::sync::Mutex<BTreeMap<String, Owned>>,
    view: Mutex<View>,
    changed: Arc<watch::Sender<u64>>,
}

/// The network side of machined. Cheap to clone; methods take `&self`, and
/// applies are serialized internally.
#[derive(Clone)]
pub struct NetworkController {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NetworkController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkController").finish_non_exhaustive()
    }
}

impl NetworkController {
    /// Connect to rtnetlink in the calling thread's network namespace and
    /// bring up loopback. Only a netlink socket failure is fatal; a loopback
    /// failure is logged and reported in [`NetworkController::status`].
    pub async fn start(opts: ControllerOptions) -> Result<Self, NetworkError> {
        let nl = Netlink::connect()?;
        let (changed, _) = watch::channel(0u64);
        let this = Self {
            inner: Arc::new(Inner {
                nl,
                opts,
                owned: tokio::sync::Mutex::new(BTreeMap::new()),
                view: Mutex::new(View::default()),
                changed: Arc::new(changed),
            }),
        };
        if let Err(e) = this.inner.nl.loopback_up().await {
            tracing::error!("network: loopback: {e}");
            this.view().errors.push(e.to_string());
        }
        Ok(this)
    }

    /// The netlink handle, for callers that need a link list.
    pub fn netlink(&self) -> &Netlink {
        &self.inner.nl
    }

    fn view(&self) -> MutexGuard<'_, View> {
        crate::lock::lock(&self.inner.view)
    }

    fn bump(changed: &watch::Sender<u64>) {
        changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Make the links match `net` (see the module docs). `None` is "no
    /// config yet". Returns every failure; what could be applied was.
    pub async fn apply(&self, net: Option<&Network>) -> Result<(), ApplyErrors> {
        let nl = &self.inner.nl;
        let mut owned = self.inner.owned.lock().await;
        let links = match nl.links().await {
            Ok(l) => l,
            Err(e) => {
                self.view().errors = vec![e.to_string()];
                return Err(ApplyErrors(vec![e]));
            }
        };
        let (desired, mut errors) = desired(net, &links, &self.inner.opts.dhcp_links);

        // Links we configured before and no longer want (or that vanished or
        // were renumbered): release, strip, set down.
        let had: BTreeMap<String, Link> = owned
            .iter()
            .map(|(n, o)| (n.clone(), o.link.clone()))
            .collect();
        for (name, exists) in stale_links(&had, &desired, &links) {
            if let Some(o) = owned.remove(&name) {
                let ops = teardown_ops(&o.want, o.dhcp.is_some(), exists);
                self.teardown(o, ops, &mut errors).await;
            }
        }

        for (name, (link, want)) in desired {
            let o = owned.entry(name).or_insert_with(|| Owned {
                link: link.clone(),
                want: Want::default(),
                dhcp: None,
            });
            o.link = link;
            self.reconcile(o, want, &mut errors).await;
        }

        {
            let mut v = self.view();
            v.nameservers = net.map(|n| n.nameservers.clone()).unwrap_or_default();
            v.search = net.map(|n| n.search_domains.clone()).unwrap_or_default();
            v.links = owned
                .values()
                .map(|o| {
                    let s = LinkStatus {
                        name: o.link.name.clone(),
                        index: o.link.index,
                        mac: o.link.mac,
                        mtu: o.want.mtu,
                        addresses: o.want.addrs.clone(),
                        routes: o.want.routes.clone(),
                        dhcp: None,
                    };
                    (s, o.dhcp.as_ref().map(DhcpTask::watch))
                })
                .collect();
            v.errors = errors.iter().map(|e| e.to_string()).collect();
        }
        Self::bump(&self.inner.changed);
        for e in &errors {
            tracing::warn!("network: {e}");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApplyErrors(errors))
        }
    }

    async fn reconcile(&self, o: &mut Owned, want: Want, errors: &mut Vec<NetworkError>) {
        let ops = link_ops(&o.link, &o.want, o.dhcp.is_some(), &want);
        for op in ops {
            self.execute(o, op, errors).await;
        }
        o.want = want;
    }

    /// Carry out one [`LinkOp`] on a link we own; failures are collected.
    async fn execute(&self, o: &mut Owned, op: LinkOp, errors: &mut Vec<NetworkError>) {
        let link = o.link.clone();
        let result = match &op {
            LinkOp::PromoteSecondaries => {
                let key = format!("net/ipv4/conf/{}/promote_secondaries", link.name);
                if let Err(e) = self.inner.opts.kernel.write_sysctl(&key, "1") {
                    tracing::warn!(link = %link.name, "network: {key}: {e}");
                }
                Ok(())
            }
            LinkOp::ReleaseDhcp => {
                if let Some(task) = o.dhcp.take() {
                    task.release().await;
                }
                Ok(())
            }
            LinkOp::StartDhcp { apply_mtu } => {
                let params = DhcpParams {
                    timing: self.inner.opts.dhcp_timing,
                    route_metric: self.inner.opts.dhcp_route_metric,
                    hostname: self.inner.opts.dhcp_hostname.clone(),
                    apply_mtu: *apply_mtu,
                };
                let changed = self.inner.changed.clone();
                let on_change: OnChange = Arc::new(move || Self::bump(&changed));
                let nl = self.inner.nl.clone();
                o.dhcp = Some(DhcpTask::spawn(nl, link.clone(), params, on_change));
                Ok(())
            }
            other => apply_link_op(&self.inner.nl, &link, other).await,
        };
        match result {
            Ok(()) => log_op(&link, &op),
            Err(e) => errors.push(e),
        }
    }

    async fn teardown(&self, mut o: Owned, ops: Vec<LinkOp>, errors: &mut Vec<NetworkError>) {
        tracing::info!(link = %o.link.name, "network: link no longer configured; setting it down");
        for op in ops {
            self.execute(&mut o, op, errors).await;
        }
    }

    /// Links, leases, DNS and the last apply's errors.
    pub fn status(&self) -> NetworkStatus {
        let (links, errors) = {
            let v = self.view();
            let links = v
                .links
                .iter()
                .map(|(s, rx)| LinkStatus {
                    dhcp: rx.as_ref().map(|rx| rx.borrow().clone()),
                    ..s.clone()
                })
                .collect();
            (links, v.errors.clone())
        };
        NetworkStatus {
            links,
            dns: self.dns(),
            search_domains: self.search_domains(),
            errors,
        }
    }

    fn leases(&self) -> Vec<super::dhcp::Lease> {
        let v = self.view();
        v.links
            .iter()
            .filter_map(|(_, rx)| rx.as_ref().and_then(|rx| rx.borrow().lease.clone()))
            .collect()
    }

    /// DNS servers for resolv.conf: the config's nameservers first, then
    /// those of every DHCP lease (links in name order), without repeats.
    pub fn dns(&self) -> Vec<IpAddr> {
        let mut out = self.view().nameservers.clone();
        for l in self.leases() {
            for d in l.dns {
                let d = IpAddr::V4(d);
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        out
    }

    /// Search domains: the config's first, then each lease's domain name and
    /// search list, without repeats.
    pub fn search_domains(&self) -> Vec<String> {
        let mut out = self.view().search.clone();
        for l in self.leases() {
            for d in l.domain_name.into_iter().chain(l.search) {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        out
    }

    /// The servers and search domains of every DHCP lease (links in name
    /// order): what the DNS controller adds after the config's own.
    pub fn lease_dns(&self) -> LeaseDns {
        let mut out = LeaseDns::default();
        for l in self.leases() {
            out.nameservers.extend(l.dns.into_iter().map(IpAddr::V4));
            out.search.extend(l.domain_name.into_iter().chain(l.search));
        }
        out
    }

    /// The host name a DHCP server offered (option 12), if any. The config's
    /// hostname, when set, wins; this is for nodes without one.
    pub fn dhcp_hostname(&self) -> Option<String> {
        self.leases().into_iter().find_map(|l| l.hostname)
    }

    /// Bumped whenever a lease is installed, renewed or removed and after
    /// each apply: wait on it to regenerate resolv.conf.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Renew a link's DHCP lease now instead of at T1. False when the link
    /// runs no DHCP client.
    pub async fn renew_now(&self, link: &str) -> bool {
        let owned = self.inner.owned.lock().await;
        match owned.get(link).and_then(|o| o.dhcp.as_ref()) {
            Some(t) => {
                t.renew_now();
                true
            }
            None => false,
        }
    }

    /// Release every DHCP lease (before reboot or shutdown). The static
    /// configuration stays.
    pub async fn release_all(&self) {
        let mut owned = self.inner.owned.lock().await;
        for o in owned.values_mut() {
            if let Some(t) = o.dhcp.take() {
                t.release().await;
            }
        }
    }
}

/// The link's own part of an operation, over `nl`. DHCP and sysctl
/// operations are the controller's and do nothing here.
pub(crate) async fn apply_link_op(
    nl: &impl LinkOps,
    link: &Link,
    op: &LinkOp,
) -> Result<(), NetworkError> {
    match op {
        LinkOp::SetUp(up) => nl.set_up(link, *up).await,
        LinkOp::SetMtu(mtu) => nl.set_mtu(link, *mtu).await,
        LinkOp::DelRoute(r) => nl.del_route(link, r).await,
        LinkOp::DelAddress(a) => nl.del_address(link, *a).await,
        LinkOp::AddAddress { addr, .. } => nl.add_address(link, *addr).await,
        LinkOp::AddRoute { route, .. } => nl.add_route(link, route).await,
        LinkOp::PromoteSecondaries | LinkOp::ReleaseDhcp | LinkOp::StartDhcp { .. } => Ok(()),
    }
}

/// Say what changed (what was only re-asserted stays quiet).
fn log_op(link: &Link, op: &LinkOp) {
    let name = &link.name;
    match op {
        LinkOp::SetMtu(mtu) => tracing::info!(link = %name, mtu, "network: mtu set"),
        LinkOp::DelRoute(r) => tracing::info!(link = %name, route = %r, "network: route removed"),
        LinkOp::DelAddress(a) => {
            tracing::info!(link = %name, address = %a, "network: address removed")
        }
        LinkOp::AddAddress { addr, new: true } => {
            tracing::info!(link = %name, address = %addr, "network: address added")
        }
        LinkOp::AddRoute { route, new: true } => {
            tracing::info!(link = %name, route = %route, "network: route added")
        }
        _ => {}
    }
}

/// The desired state of every link `net` touches.
pub(crate) fn desired(
    net: Option<&Network>,
    links: &[Link],
    selector: &LinkSelector,
) -> (BTreeMap<String, (Link, Want)>, Vec<NetworkError>) {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    match net {
        Some(net) if !net.interfaces.is_empty() => {
            for iface in &net.interfaces {
                let found = links.iter().find(|l| {
                    iface.name.as_ref().is_none_or(|n| *n == l.name)
                        && iface.mac.as_ref().is_none_or(|m| Some(*m) == l.mac)
                        && (iface.name.is_some() || iface.mac.is_some())
                });
                let Some(link) = found else {
                    let mut what = Vec::new();
                    if let Some(n) = &iface.name {
                        what.push(format!("name {n}"));
                    }
                    if let Some(m) = &iface.mac {
                        what.push(format!("mac {m}"));
                    }
                    errors.push(NetworkError::NoSuchLink(format!(
                        "interface with {}",
                        what.join(" and ")
                    )));
                    continue;
                };
                if out.contains_key(&link.name) {
                    errors.push(NetworkError::DuplicateMatch(link.name.clone()));
                    continue;
                }
                let want = Want {
                    addrs: iface.addresses.clone(),
                    routes: iface
                        .routes
                        .iter()
                        .map(|r| RouteSpec {
                            to: r.to,
                            via: r.via,
                            metric: r.metric,
                        })
                        .collect(),
                    mtu: iface.mtu,
                    dhcp: iface.dhcp,
                };
                out.insert(link.name.clone(), (link.clone(), want));
            }
        }
        _ => {
            for l in links.iter().filter(|l| selector.selects(l)) {
                let want = Want {
                    dhcp: true,
                    ..Want::default()
                };
                out.insert(l.name.clone(), (l.clone(), want));
            }
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests;

//! The network reconcile as a pure function: what we configured on a link
//! before, and what the config wants now, in; the operations that take one
//! to the other out. No sockets, no kernel: the executor in the parent
//! module carries the operations out over netlink.

use super::Want;
use crate::network::netlink::{Link, RouteSpec};
use basalt_api::config::Cidr;
use std::collections::BTreeMap;

/// One step on one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkOp {
    /// `net.ipv4.conf.<link>.promote_secondaries = 1` (as systemd-networkd
    /// does): deleting a subnet's primary address would otherwise take its
    /// secondaries (say a static address next to a DHCP one) with it.
    PromoteSecondaries,
    /// Release the DHCP lease and stop the client.
    ReleaseDhcp,
    SetUp(bool),
    SetMtu(u32),
    DelRoute(RouteSpec),
    DelAddress(Cidr),
    /// Added again on every reconcile (netlink treats an existing address
    /// as success) so one lost behind our back comes back; `new` when we
    /// did not have it before.
    AddAddress {
        addr: Cidr,
        new: bool,
    },
    AddRoute {
        route: RouteSpec,
        new: bool,
    },
    StartDhcp {
        apply_mtu: bool,
    },
}

/// From `had` (what we configured on `link` before, with a DHCP client
/// running or not) to `want`.
pub(crate) fn link_ops(link: &Link, had: &Want, dhcp_running: bool, want: &Want) -> Vec<LinkOp> {
    let mut ops = vec![LinkOp::PromoteSecondaries];
    if !want.dhcp && dhcp_running {
        // Release before touching addresses: the lease's address goes first.
        ops.push(LinkOp::ReleaseDhcp);
    }
    ops.push(LinkOp::SetUp(true));
    if let Some(mtu) = want.mtu
        && mtu != link.mtu
    {
        ops.push(LinkOp::SetMtu(mtu));
    }
    ops.extend(
        had.routes
            .iter()
            .filter(|r| !want.routes.contains(r))
            .map(|r| LinkOp::DelRoute(*r)),
    );
    ops.extend(
        had.addrs
            .iter()
            .filter(|a| !want.addrs.contains(a))
            .map(|a| LinkOp::DelAddress(*a)),
    );
    ops.extend(want.addrs.iter().map(|a| LinkOp::AddAddress {
        addr: *a,
        new: !had.addrs.contains(a),
    }));
    ops.extend(want.routes.iter().map(|r| LinkOp::AddRoute {
        route: *r,
        new: !had.routes.contains(r),
    }));
    if want.dhcp && !dhcp_running {
        ops.push(LinkOp::StartDhcp {
            apply_mtu: want.mtu.is_none(),
        });
    }
    ops
}

/// Give up a link we configured: release its lease and, if it still
/// exists, remove what we added and set it down.
pub(crate) fn teardown_ops(had: &Want, dhcp_running: bool, exists: bool) -> Vec<LinkOp> {
    let mut ops = Vec::new();
    if dhcp_running {
        ops.push(LinkOp::ReleaseDhcp);
    }
    if !exists {
        return ops;
    }
    ops.extend(had.routes.iter().map(|r| LinkOp::DelRoute(*r)));
    ops.extend(had.addrs.iter().map(|a| LinkOp::DelAddress(*a)));
    ops.push(LinkOp::SetUp(false));
    ops
}

/// Links we configured before (`had`, by name) that the config no longer
/// wants, or that vanished or were renumbered; with whether the link we
/// configured still exists.
pub(crate) fn stale_links(
    had: &BTreeMap<String, Link>,
    desired: &BTreeMap<String, (Link, Want)>,
    links: &[Link],
) -> Vec<(String, bool)> {
    had.iter()
        .filter(|(name, old)| desired.get(*name).is_none_or(|(l, _)| l.index != old.index))
        .map(|(name, old)| {
            let exists = links
                .iter()
                .any(|l| l.index == old.index && l.name == old.name);
            (name.clone(), exists)
        })
        .collect()
}

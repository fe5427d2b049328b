//! machined's internal state as the API's wire types ([`basalt_api::rpc`]).
//! The internal types carry what the controllers need (pids, instants,
//! netlink details); these conversions are the one place that decides what
//! an operator sees, so the two can change independently.

use crate::controllers::dns::ResolvConf;
use crate::network::dhcp::{Lease, Phase};
use crate::network::{DhcpStatus, LinkStatus, NetworkStatus, RouteSpec};
use crate::supervisor::{ExitInfo, ServiceState, ServiceStatus};
use basalt_api::rpc;

impl From<&ServiceStatus> for rpc::ServiceStatus {
    fn from(s: &ServiceStatus) -> Self {
        rpc::ServiceStatus {
            name: s.name.clone(),
            state: s.state.into(),
            pid: s.pid,
            restarts: s.restarts,
            last_exit: s.last_exit.map(Into::into),
            last_error: s.last_error.clone(),
            ready: s.ready,
            memory_current: s.memory_current,
        }
    }
}

impl From<ServiceState> for rpc::ServiceState {
    fn from(s: ServiceState) -> Self {
        match s {
            ServiceState::Waiting => rpc::ServiceState::Waiting,
            ServiceState::Starting => rpc::ServiceState::Starting,
            ServiceState::Running => rpc::ServiceState::Running,
            ServiceState::Backoff => rpc::ServiceState::Backoff,
            ServiceState::Failed => rpc::ServiceState::Failed,
            ServiceState::Stopping => rpc::ServiceState::Stopping,
            ServiceState::Stopped => rpc::ServiceState::Stopped,
        }
    }
}

impl From<ExitInfo> for rpc::ExitInfo {
    fn from(e: ExitInfo) -> Self {
        rpc::ExitInfo {
            code: e.code,
            signal: e.signal,
        }
    }
}

impl From<&NetworkStatus> for rpc::NetworkControllerStatus {
    fn from(n: &NetworkStatus) -> Self {
        rpc::NetworkControllerStatus {
            links: n.links.iter().map(Into::into).collect(),
            dns: n.dns.clone(),
            search_domains: n.search_domains.clone(),
            errors: n.errors.clone(),
        }
    }
}

impl From<&LinkStatus> for rpc::ConfiguredLink {
    fn from(l: &LinkStatus) -> Self {
        rpc::ConfiguredLink {
            name: l.name.clone(),
            index: l.index,
            mac: l.mac,
            mtu: l.mtu,
            addresses: l.addresses.clone(),
            routes: l.routes.iter().map(|&r| r.into()).collect(),
            dhcp: l.dhcp.as_ref().map(Into::into),
        }
    }
}

impl From<RouteSpec> for rpc::LinkRoute {
    fn from(r: RouteSpec) -> Self {
        rpc::LinkRoute {
            to: r.to,
            via: r.via,
            metric: r.metric,
        }
    }
}

impl From<&DhcpStatus> for rpc::DhcpStatus {
    fn from(d: &DhcpStatus) -> Self {
        rpc::DhcpStatus {
            phase: d.phase.into(),
            lease: d.lease.as_ref().map(Into::into),
            bound_at_unix: d.bound_at_unix,
            renewals: d.renewals,
            error: d.error.clone(),
        }
    }
}

impl From<Phase> for rpc::DhcpPhase {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Init => rpc::DhcpPhase::Init,
            Phase::Selecting => rpc::DhcpPhase::Selecting,
            Phase::Requesting => rpc::DhcpPhase::Requesting,
            Phase::Bound => rpc::DhcpPhase::Bound,
            Phase::Renewing => rpc::DhcpPhase::Renewing,
            Phase::Rebinding => rpc::DhcpPhase::Rebinding,
            Phase::Stopped => rpc::DhcpPhase::Stopped,
        }
    }
}

impl From<&Lease> for rpc::DhcpLease {
    fn from(l: &Lease) -> Self {
        rpc::DhcpLease {
            address: l.address,
            prefix_len: l.prefix_len,
            server: l.server,
            routers: l.routers.clone(),
            dns: l.dns.clone(),
            domain_name: l.domain_name.clone(),
            search: l.search.clone(),
            hostname: l.hostname.clone(),
            mtu: l.mtu,
            lease_secs: l.lease_secs,
            t1_secs: l.t1_secs,
            t2_secs: l.t2_secs,
        }
    }
}

impl From<ResolvConf> for rpc::ResolvConf {
    fn from(r: ResolvConf) -> Self {
        rpc::ResolvConf {
            nameservers: r.nameservers,
            search: r.search,
        }
    }
}

//! The links controller: the config's `machine.network` (desired) made
//! real by the [`NetworkController`] (links, addresses, routes, DHCP), and
//! what it observes. A node without one (dev mode) has no links to manage.

use super::dns::LeaseDns;
use super::resources::{Concern, Resource, ResourceState};
use crate::network::{NetworkController, NetworkStatus};
use basalt_api::config::Network;
use std::sync::OnceLock;

#[derive(Default)]
pub struct LinksController {
    net: OnceLock<NetworkController>,
}

impl LinksController {
    /// Hand over the network controller (once, after boot). False if one
    /// was attached already.
    pub fn attach(&self, net: NetworkController) -> bool {
        self.net.set(net).is_ok()
    }

    pub fn get(&self) -> Option<&NetworkController> {
        self.net.get()
    }

    /// Make the links match; what failed (the rest was applied).
    pub async fn converge(&self, cfg: Option<&Network>) -> Result<(), String> {
        let Some(net) = self.get() else {
            return Ok(());
        };
        net.apply(cfg).await.map_err(|e| {
            tracing::error!("network: {e}");
            format!("network: {e}")
        })
    }

    pub fn lease_dns(&self) -> LeaseDns {
        self.get()
            .map(NetworkController::lease_dns)
            .unwrap_or_default()
    }

    pub fn status(&self) -> Option<NetworkStatus> {
        self.get().map(NetworkController::status)
    }

    /// Ok when the last apply failed nowhere and every DHCP link holds a
    /// lease; else why not.
    pub fn readiness(&self) -> Result<(), String> {
        let Some(status) = self.status() else {
            return Ok(());
        };
        if let Some(e) = status.errors.first() {
            return Err(format!("network: {e}"));
        }
        for l in &status.links {
            if let Some(d) = &l.dhcp
                && d.lease.is_none()
            {
                return Err(format!("network: {} has no DHCP lease yet", l.name));
            }
        }
        Ok(())
    }

    pub fn resources(&self) -> Vec<Resource> {
        let Some(status) = self.status() else {
            return Vec::new();
        };
        status
            .links
            .into_iter()
            .map(|l| {
                let in_sync = l.dhcp.as_ref().is_none_or(|d| d.lease.is_some());
                Resource::new(
                    Concern::Network,
                    l.name.clone(),
                    in_sync,
                    ResourceState::Link {
                        observed: (&l).into(),
                    },
                )
            })
            .collect()
    }
}

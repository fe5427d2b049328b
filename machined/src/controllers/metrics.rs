//! The metrics controller: the unauthenticated Prometheus listener of
//! `machine.metrics.listen` (desired) and the address it serves (observed),
//! and the metrics text itself.

use super::resources::{Concern, Resource, ResourceState};
use crate::host::{self, inspect::rss_bytes};
use crate::metrics::{NodeStats, Scrape};
use crate::node::Node;
use basalt_api::config::MachineConfig;
use basalt_api::rpc::ServiceStatus;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

#[derive(Default)]
pub struct MetricsController {
    listener: Mutex<Option<(SocketAddr, JoinHandle<()>)>>,
}

fn desired(cfg: Option<&MachineConfig>) -> Option<SocketAddr> {
    cfg.and_then(|c| c.machine.metrics.as_ref())
        .map(|m| m.listen)
}

impl MetricsController {
    fn observed(&self) -> Option<SocketAddr> {
        crate::lock::lock(&self.listener).as_ref().map(|(a, _)| *a)
    }

    /// Start, move or stop the listener to match the config.
    pub async fn converge(&self, cfg: Option<&MachineConfig>, node: &Arc<Node>) {
        let want = desired(cfg);
        if want == self.observed() {
            return;
        }
        if let Some((_, task)) = crate::lock::lock(&self.listener).take() {
            task.abort();
        }
        let Some(addr) = want else { return };
        match crate::listen::bind(addr) {
            Ok(l) => {
                let task = tokio::spawn(crate::server::serve_metrics(l, Arc::clone(node)));
                *crate::lock::lock(&self.listener) = Some((addr, task));
                tracing::info!("metrics on http://{addr}/metrics");
            }
            Err(e) => tracing::error!("machine.metrics.listen {addr}: {e}"),
        }
    }

    pub fn resources(&self, cfg: Option<&MachineConfig>) -> Vec<Resource> {
        let (desired, observed) = (desired(cfg), self.observed());
        vec![Resource::new(
            Concern::Metrics,
            "listener",
            desired == observed,
            ResourceState::MetricsListener { desired, observed },
        )]
    }
}

/// One scrape's exposition text: machined's instruments and a snapshot of
/// the node, its services and their cgroups taken now.
pub async fn scrape(node: &Node) -> prometheus::Result<String> {
    let status = node.status().await;
    let services: Vec<ServiceStatus> = node.supervisor().list().iter().map(Into::into).collect();
    let usage = node.supervisor().usage();
    let mut stats = NodeStats::parse(
        &host::stats::node_stats(node.host.root()),
        host::stats::ticks_per_second(),
    );
    // STATE, and /var (EPHEMERAL once the disk layout has one).
    let volumes = [
        ("state", node.state().dir().to_path_buf()),
        ("var", node.host.path("/var")),
    ];
    stats.filesystems = volumes
        .iter()
        .filter_map(|(name, path)| {
            let (size, avail) = host::stats::filesystem_bytes(path)?;
            Some((*name, size, avail))
        })
        .collect();
    node.metrics.render(&Scrape {
        status: &status,
        machined_resident_bytes: rss_bytes(std::process::id()),
        services: &services,
        usage: &usage,
        node: stats,
    })
}

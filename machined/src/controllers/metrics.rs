//! The metrics controller: the unauthenticated Prometheus listener of
//! `machine.metrics.listen` (desired) and the address it serves (observed),
//! and the metrics text itself.

use super::resources::{Concern, Resource, ResourceState};
use crate::host::inspect::rss_bytes;
use crate::node::Node;
use basalt_api::config::MachineConfig;
use basalt_api::rpc::Status;
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

/// Prometheus text format. No secrets: generations, hashes, counters only.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    out.push_str("# HELP basalt_config_generation Generation of the applied machine config.\n");
    out.push_str("# TYPE basalt_config_generation gauge\n");
    out.push_str(&format!("basalt_config_generation {}\n", s.generation));
    out.push_str("# HELP basalt_maintenance_mode 1 while the node waits for its first config.\n");
    out.push_str("# TYPE basalt_maintenance_mode gauge\n");
    out.push_str(&format!(
        "basalt_maintenance_mode {}\n",
        u8::from(s.mode == basalt_api::rpc::NodeMode::Maintenance)
    ));
    out.push_str("# HELP basalt_machined_resident_bytes machined's resident memory.\n");
    out.push_str("# TYPE basalt_machined_resident_bytes gauge\n");
    out.push_str(&format!(
        "basalt_machined_resident_bytes {}\n",
        rss_bytes(std::process::id()).unwrap_or(0)
    ));
    if !s.host_checks.is_empty() {
        out.push_str(
            "# HELP basalt_host_check_ok 1 when a host prerequisite of the node's CNI holds (see `basaltctl status` for why not).\n",
        );
        out.push_str("# TYPE basalt_host_check_ok gauge\n");
        for c in &s.host_checks {
            out.push_str(&format!(
                "basalt_host_check_ok{{check=\"{}\"}} {}\n",
                c.name,
                u8::from(c.ok)
            ));
        }
    }
    out
}

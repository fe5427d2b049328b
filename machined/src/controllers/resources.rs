//! What `GET /v1/resources` lists: every resource a controller owns, with
//! its desired state (from the applied config) next to what the machine
//! shows, and whether they agree (Talos' "resources you can list").

use super::dns::ResolvConf;
use crate::network::LinkStatus;
use crate::supervisor::ServiceStatus;
use basalt_api::config::FileOp;
use serde::Serialize;
use std::net::SocketAddr;

/// The controller that owns a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Concern {
    Config,
    Kernel,
    Files,
    Dns,
    Network,
    Services,
    Metrics,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResourceState {
    Config {
        generation: u64,
        sha256: Option<String>,
        staged_generation: Option<u64>,
        try_pending: bool,
    },
    Hostname {
        desired: Option<String>,
        observed: String,
    },
    Sysctl {
        desired: String,
        observed: Option<String>,
    },
    KernelModule {
        present: bool,
    },
    File {
        op: FileOp,
        mode: u32,
        desired_bytes: usize,
        observed_bytes: Option<usize>,
    },
    ResolvConf {
        desired: ResolvConf,
    },
    Link {
        observed: LinkStatus,
    },
    Service {
        observed: ServiceStatus,
    },
    MetricsListener {
        desired: Option<SocketAddr>,
        observed: Option<SocketAddr>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    pub controller: Concern,
    /// Unique within its controller.
    pub id: String,
    /// The machine matches the desired state.
    pub in_sync: bool,
    #[serde(flatten)]
    pub state: ResourceState,
}

impl Resource {
    pub fn new(
        controller: Concern,
        id: impl Into<String>,
        in_sync: bool,
        state: ResourceState,
    ) -> Self {
        Self {
            controller,
            id: id.into(),
            in_sync,
            state,
        }
    }
}

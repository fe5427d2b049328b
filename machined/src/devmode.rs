//! `machined --dev-root DIR`: the whole node (state, apply, API) running
//! unprivileged against a directory, for tests, benchmarks and development.

use crate::host::Host;
use crate::node::{BootParts, Node, PowerEvent};
use crate::server::{self, Limits};
use crate::state::StateStore;
use crate::tls::Identity;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

pub use basalt_api::image_layout::TRUST_ROOTS;
pub const STATE_DIR: &str = "/var/lib/basalt/state";

pub struct DevOptions {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub limits: Limits,
    /// Services started once the node has a config (a node runs containerd).
    pub services: Vec<crate::supervisor::ServiceSpec>,
}

pub struct RunningNode {
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub node: Arc<Node>,
    pub power: mpsc::UnboundedReceiver<PowerEvent>,
    server: tokio::task::JoinHandle<()>,
}

impl RunningNode {
    /// Stop serving (the in-process equivalent of a shutdown).
    pub fn stop(self) {
        self.server.abort();
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn load_trust_roots(host: &Host) -> Result<basalt_api::trust::TrustRoots> {
    let path = host.path(TRUST_ROOTS);
    let text = host
        .read(TRUST_ROOTS)
        .with_context(|| format!("reading trust roots {}", path.display()))?;
    basalt_api::trust::TrustRoots::from_toml(&String::from_utf8_lossy(&text))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A dev node's boot id: the dev root's path (a dev node has no kernel of
/// its own to give one).
fn boot_id(root: &Path) -> String {
    root.display().to_string()
}

/// Boot a dev node: load trust roots and STATE under `root`, serve the API.
pub async fn start(opts: DevOptions) -> Result<RunningNode> {
    let host = Host::dev(&opts.root);
    let trust = load_trust_roots(&host)?;
    let state = StateStore::open(host.path(STATE_DIR), false)?;
    let identity =
        Identity::load_or_create(state.fs(), &state.dir().join("tls"), &host.hostname())?;
    let fingerprint = identity.fingerprint();
    let listener =
        crate::listen::bind(opts.listen).with_context(|| format!("binding {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let nonces = crate::auth::Nonces::new(opts.limits.nonce_ttl)
        .map_err(|_| anyhow::anyhow!("no randomness for the nonce key"))?;
    crate::supervisor::init_reaper()?;
    let supervisor = crate::supervisor::Supervisor::new(crate::supervisor::SupervisorConfig {
        cgroup_root: None,
        log_lines: 1000,
    })?;
    let node = Node::boot(BootParts {
        host,
        supervisor,
        services: opts.services,
        images: None,
        state,
        image_trust: trust,
        boot_id: boot_id(&opts.root),
        tls_fingerprint: fingerprint.clone(),
        nonces,
        power: tx,
    });
    node.clear_upgrade_spool().await;
    node.apply_baked_config().await;
    node.start_runtime().await;
    let server = tokio::spawn(server::serve(
        listener,
        identity.server_config()?,
        Arc::clone(&node),
        opts.limits,
    ));
    tracing::info!("API on https://{addr}, TLS fingerprint {fingerprint}");
    Ok(RunningNode {
        addr,
        fingerprint,
        node,
        power: rx,
        server,
    })
}

//! The node controller: holds the applied config and turns signed apply
//! requests into persisted, converged state. One apply at a time.

use crate::auth::Nonces;
use crate::converge;
use crate::host::Host;
use crate::network::NetworkController;
use crate::state::{SignedDoc, Slot, StateError, StateStore};
use crate::supervisor::{ServiceSpec, Supervisor};
use basalt_api::config::MachineConfig;
use basalt_api::rpc::{
    ApplyMode, ApplyRequest, ApplyResponse, NetworkControllerStatus, NodeMode, Status,
};
use basalt_api::signed::{SignedConfigError, verify_and_parse};
use basalt_api::trust::TrustRoots;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc};

pub const DEFAULT_TRY_TIMEOUT: Duration = Duration::from_secs(120);

/// What PID 1's main loop should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    Reboot,
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Config(#[from] SignedConfigError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Precondition(#[from] converge::ConvergeError),
    #[error("persisting the config failed (nothing changed): {0}")]
    State(#[from] StateError),
}

impl ApplyError {
    pub fn status(&self) -> u16 {
        match self {
            ApplyError::Config(SignedConfigError::Signature(_)) => 403,
            ApplyError::Config(SignedConfigError::Invalid(_)) => 400,
            ApplyError::Config(SignedConfigError::Replay { .. }) => 409,
            ApplyError::Conflict(_) | ApplyError::Precondition(_) => 409,
            ApplyError::State(_) => 500,
        }
    }
}

#[derive(Clone)]
struct Applied {
    config: MachineConfig,
    sha256: String,
    signers: Vec<String>,
    /// The config's own trust section, parsed once: every API request is
    /// authenticated against it.
    policy: Option<TrustRoots>,
}

impl Applied {
    fn new(config: MachineConfig, document: &[u8], signers: Vec<String>) -> Self {
        Self {
            sha256: sha256_hex(document),
            signers,
            policy: config.trust_roots().ok(),
            config,
        }
    }
}

struct Inner {
    current: Option<Applied>,
    /// A `try` apply waiting for confirmation: its generation and deadline.
    pending_try: Option<(u64, Instant)>,
}

pub struct Node {
    pub host: Host,
    pub supervisor: Supervisor,
    /// Services to run once the node has a config (containerd on a node).
    services: Vec<ServiceSpec>,
    services_started: std::sync::atomic::AtomicBool,
    /// The unauthenticated metrics listener and the address it serves.
    metrics: std::sync::Mutex<Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>>,
    /// Links, DHCP and DNS on a real node; None in dev mode.
    network: std::sync::Mutex<Option<NetworkController>>,
    pub state: StateStore,
    image_trust: TrustRoots,
    pub nonces: Nonces,
    pub boot_id: String,
    pub tls_fingerprint: String,
    inner: Mutex<Inner>,
    power: mpsc::UnboundedSender<PowerEvent>,
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

impl Node {
    /// Load STATE (promoting a staged config first) and converge to it.
    /// A stored config that no longer verifies is reported and skipped:
    /// the node stays in maintenance mode rather than trusting it.
    #[allow(clippy::too_many_arguments)]
    pub fn boot(
        host: Host,
        supervisor: Supervisor,
        services: Vec<ServiceSpec>,
        state: StateStore,
        image_trust: TrustRoots,
        boot_id: String,
        tls_fingerprint: String,
        nonces: Nonces,
        power: mpsc::UnboundedSender<PowerEvent>,
    ) -> Arc<Node> {
        match state.promote_staged() {
            Ok(true) => tracing::info!("staged config promoted to current"),
            Ok(false) => {}
            Err(e) => tracing::error!("promoting staged config: {e}"),
        }
        let current = match state.load(Slot::Current) {
            Ok(Some(doc)) => load_trusted(&doc, &image_trust),
            Ok(None) => None,
            Err(e) => {
                tracing::error!("reading STATE: {e}");
                None
            }
        };
        if let Some(a) = &current {
            if let Err(e) = converge::converge(&a.config, &host) {
                tracing::error!("converging generation {}: {e}", a.config.generation);
            }
            tracing::info!("running config generation {}", a.config.generation);
        } else {
            tracing::info!("no config: maintenance mode, waiting for a signed apply");
        }
        let configured = current.is_some();
        let node = Arc::new(Node {
            host,
            supervisor,
            services,
            services_started: std::sync::atomic::AtomicBool::new(false),
            network: std::sync::Mutex::new(None),
            metrics: std::sync::Mutex::new(None),
            state,
            image_trust,
            nonces,
            boot_id,
            tls_fingerprint,
            inner: Mutex::new(Inner {
                current,
                pending_try: None,
            }),
            power,
        });
        if configured {
            node.start_services();
        }
        node
    }

    /// Start, move or stop the metrics listener to match the config.
    async fn converge_metrics(self: &Arc<Self>, cfg: Option<&MachineConfig>) {
        let want = cfg
            .and_then(|c| c.machine.metrics.as_ref())
            .map(|m| m.listen);
        let current = self
            .metrics
            .lock()
            .ok()
            .and_then(|m| m.as_ref().map(|(a, _)| *a));
        if want == current {
            return;
        }
        if let Ok(mut slot) = self.metrics.lock()
            && let Some((_, task)) = slot.take()
        {
            task.abort();
        }
        let Some(addr) = want else { return };
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                let task = tokio::spawn(crate::server::serve_metrics(l, Arc::clone(self)));
                if let Ok(mut slot) = self.metrics.lock() {
                    *slot = Some((addr, task));
                }
                tracing::info!("metrics on http://{addr}/metrics");
            }
            Err(e) => tracing::error!("machine.metrics.listen {addr}: {e}"),
        }
    }

    /// Converge what needs the runtime (metrics) for the running config; called once after boot.
    pub async fn start_runtime(self: &Arc<Self>) {
        let cfg = self.current_config().await;
        self.converge_metrics(cfg.as_ref()).await;
    }

    async fn current_config(&self) -> Option<MachineConfig> {
        self.inner
            .lock()
            .await
            .current
            .as_ref()
            .map(|c| c.config.clone())
    }

    fn net(&self) -> Option<NetworkController> {
        self.network.lock().ok().and_then(|n| n.clone())
    }

    /// Hand the node its network controller: converge the current config's
    /// network and keep resolv.conf in step with DHCP from now on.
    pub async fn attach_network(self: &Arc<Self>, net: Option<NetworkController>) {
        let Some(net) = net else { return };
        if let Ok(mut slot) = self.network.lock() {
            *slot = Some(net.clone());
        }
        let cfg = self.current_config().await;
        self.converge_network(cfg.as_ref()).await;
        let node = Arc::clone(self);
        let mut changes = net.changes();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                node.write_resolv(&net);
            }
        });
    }

    async fn converge_network(&self, cfg: Option<&MachineConfig>) {
        let Some(net) = self.net() else { return };
        if let Err(e) = net.apply(cfg.map(|c| &c.machine.network)).await {
            tracing::error!("network: {e}");
        }
        self.write_resolv(&net);
    }

    /// Config nameservers first, then DHCP's.
    fn write_resolv(&self, net: &NetworkController) {
        let text = crate::network::resolv_conf(&net.dns(), &net.search_domains());
        if let Err(e) = self
            .host
            .write_atomic(converge::RESOLV_CONF, text.as_bytes(), 0o644)
        {
            tracing::error!("writing resolv.conf: {e}");
        }
    }

    pub fn network_status(&self) -> Option<NetworkControllerStatus> {
        self.net().map(|n| (&n.status()).into())
    }

    /// DESIGN step 7: services start once the node has a config.
    fn start_services(&self) {
        use std::sync::atomic::Ordering;
        if self.services_started.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.supervisor.start(self.services.clone()) {
            tracing::error!("starting services: {e}");
            self.services_started.store(false, Ordering::SeqCst);
        }
    }

    /// Admins and readers of the running config, or the image's trust roots
    /// in maintenance mode.
    pub async fn policy(&self) -> TrustRoots {
        let inner = self.inner.lock().await;
        policy_of(inner.current.as_ref(), &self.image_trust)
    }

    pub async fn apply(self: &Arc<Self>, req: ApplyRequest) -> Result<ApplyResponse, ApplyError> {
        let mut inner = self.inner.lock().await;
        let policy = policy_of(inner.current.as_ref(), &self.image_trust);
        let current_gen = inner.current.as_ref().map_or(0, |c| c.config.generation);
        let verified = verify_and_parse(
            req.config.as_bytes(),
            req.signatures.as_bytes(),
            &policy,
            current_gen,
        )?;
        let new = verified.config;
        let (mut plan, reboot_required) =
            converge::plan(inner.current.as_ref().map(|c| &c.config), &new, &self.host);
        converge::check(&new, &self.host)?;
        let signers: Vec<String> = verified.signers.iter().map(|s| s.to_string()).collect();
        let response = |plan: Vec<String>, reboot_required| ApplyResponse {
            generation: new.generation,
            mode: req.mode,
            dry_run: req.dry_run,
            plan,
            reboot_required,
            signers: signers.clone(),
        };
        if inner.pending_try.is_some() && !req.dry_run {
            return Err(ApplyError::Conflict(
                "a `try` apply is waiting for confirmation: confirm it (POST /v1/apply/confirm) or let it roll back first".into(),
            ));
        }
        if req.mode == ApplyMode::NoReboot && reboot_required {
            return Err(ApplyError::Conflict(format!(
                "this change needs a reboot ({}); use --mode auto or --mode reboot",
                plan.join("; ")
            )));
        }
        if req.dry_run {
            return Ok(response(plan, reboot_required));
        }
        let doc = SignedDoc {
            config: req.config.into_bytes(),
            signatures: req.signatures.into_bytes(),
        };
        if req.mode == ApplyMode::Staged {
            self.state.stage(new.generation, &doc)?;
            plan.insert(
                0,
                format!("staged generation {} for the next boot", new.generation),
            );
            return Ok(response(plan, false));
        }
        self.state.commit(new.generation, &doc)?;
        inner.current = Some(Applied::new(new.clone(), &doc.config, signers.clone()));
        let reboot =
            req.mode == ApplyMode::Reboot || (req.mode == ApplyMode::Auto && reboot_required);
        if reboot {
            plan.push("reboot".into());
            let _ = self.power.send(PowerEvent::Reboot);
        } else if let Err(e) = converge::converge(&new, &self.host) {
            // Persisted but not fully converged: report, keep retrying at boot.
            tracing::error!("converging generation {}: {e}", new.generation);
            plan.push(format!("converge error: {e}"));
        }
        if !reboot {
            self.converge_network(Some(&new)).await;
            self.converge_metrics(Some(&new)).await;
            self.start_services();
        }
        if req.mode == ApplyMode::Try {
            let timeout = req
                .try_timeout_secs
                .map_or(DEFAULT_TRY_TIMEOUT, Duration::from_secs);
            inner.pending_try = Some((new.generation, Instant::now() + timeout));
            plan.push(format!(
                "roll back unless confirmed within {}s",
                timeout.as_secs()
            ));
            let node = Arc::clone(self);
            let generation = new.generation;
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                node.rollback_try(generation).await;
            });
        }
        tracing::info!("applied generation {} ({:?})", new.generation, req.mode);
        Ok(response(plan, reboot))
    }

    /// Keep a `try` config for good.
    pub async fn confirm(&self) -> Result<u64, ApplyError> {
        let mut inner = self.inner.lock().await;
        match inner.pending_try.take() {
            Some((generation, _)) => Ok(generation),
            None => Err(ApplyError::Conflict(
                "no `try` apply is waiting for confirmation".into(),
            )),
        }
    }

    async fn rollback_try(&self, generation: u64) {
        let mut inner = self.inner.lock().await;
        if inner.pending_try.map(|(g, _)| g) != Some(generation) {
            return;
        }
        inner.pending_try = None;
        match self.state.rollback() {
            Ok(_) => {}
            Err(e) => {
                tracing::error!("rolling back generation {generation}: {e}");
                return;
            }
        }
        inner.current = match self.state.load(Slot::Current) {
            Ok(Some(doc)) => load_trusted(&doc, &self.image_trust),
            _ => None,
        };
        if let Some(a) = &inner.current
            && let Err(e) = converge::converge(&a.config, &self.host)
        {
            tracing::error!("converging after rollback: {e}");
        }
        let cfg = inner.current.as_ref().map(|c| c.config.clone());
        self.converge_network(cfg.as_ref()).await;
        tracing::warn!(
            "try apply of generation {generation} was not confirmed: rolled back to {}",
            inner.current.as_ref().map_or(0, |c| c.config.generation)
        );
    }

    pub async fn status(&self) -> Status {
        let inner = self.inner.lock().await;
        let cur = inner.current.as_ref();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: self.host.hostname(),
            mode: if cur.is_some() {
                NodeMode::Configured
            } else {
                NodeMode::Maintenance
            },
            generation: cur.map_or(0, |c| c.config.generation),
            config_sha256: cur.map(|c| c.sha256.clone()),
            signers: cur.map(|c| c.signers.clone()).unwrap_or_default(),
            boot_id: self.boot_id.clone(),
            state: if self.state.is_ram() {
                "ram".into()
            } else {
                self.state.dir().display().to_string()
            },
            ready: true,
            staged_generation: self.state.generation(Slot::Staged),
            try_pending_secs: inner
                .pending_try
                .map(|(_, at)| at.saturating_duration_since(Instant::now()).as_secs()),
            tls_fingerprint: self.tls_fingerprint.clone(),
        }
    }

    /// Wipe STATE and reboot into maintenance mode.
    pub async fn reset(&self) -> Result<(), ApplyError> {
        let mut inner = self.inner.lock().await;
        self.state.wipe()?;
        inner.current = None;
        inner.pending_try = None;
        tracing::warn!("STATE wiped by reset; rebooting into maintenance mode");
        let _ = self.power.send(PowerEvent::Reboot);
        Ok(())
    }

    pub fn request_power(&self, ev: PowerEvent) {
        let _ = self.power.send(ev);
    }
}

fn policy_of(current: Option<&Applied>, image: &TrustRoots) -> TrustRoots {
    current
        .and_then(|c| c.policy.clone())
        .unwrap_or_else(|| image.clone())
}

/// A stored config was verified when it was applied; STATE is machined's
/// own storage. Re-verify to name the signers, but a config whose signers
/// were rotated out by that very config still loads.
fn load_trusted(doc: &SignedDoc, image: &TrustRoots) -> Option<Applied> {
    let config = match MachineConfig::parse(&doc.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("stored config is invalid, ignoring it:\n{e}");
            return None;
        }
    };
    let own = config.trust_roots().ok();
    let signers = [own.as_ref(), Some(image)]
        .into_iter()
        .flatten()
        .find_map(|p| p.verify_document(&doc.config, &doc.signatures).ok())
        .map(|s| s.iter().map(|x| x.to_string()).collect())
        .unwrap_or_else(|| vec!["(verified at apply; signer keys since rotated)".to_string()]);
    Some(Applied::new(config, &doc.config, signers))
}

//! The node: a thin registry of the controllers (see [`crate::controllers`])
//! and the apply pipeline that runs through them: verify → plan → persist
//! → converge. One apply at a time.

use crate::auth::Nonces;
use crate::controllers::config::{
    BAKED_CONFIG, BAKED_CONFIG_SIG, ConfigController, ConfigState, admission,
};
use crate::controllers::dns::DnsController;
use crate::controllers::files::{FilesController, FilesError};
use crate::controllers::images::{ImageImporter, ImagesController};
use crate::controllers::kernel::{KernelController, KernelError};
use crate::controllers::kubernetes::KubernetesController;
use crate::controllers::metrics::MetricsController;
use crate::controllers::network::LinksController;
use crate::controllers::plan::{self, PlanStep};
use crate::controllers::resources::Resource;
use crate::controllers::services::ServicesController;
use crate::host::Host;
use crate::log_policy;
use crate::metrics::Metrics;
use crate::network::NetworkController;
use crate::state::{SignedDoc, Slot, StateError, StateStore};
use crate::supervisor::{ServiceSpec, Supervisor};
use basalt_api::config::MachineConfig;
use basalt_api::rpc::{ApplyMode, ApplyRequest, ApplyResponse, NodeMode, Status};
use basalt_api::signed::SignedConfigError;
use basalt_api::trust::TrustRoots;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc};

pub use crate::host::power::PowerEvent;

pub const DEFAULT_TRY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Config(#[from] SignedConfigError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Kernel(#[from] KernelError),
    #[error("{0}")]
    Files(#[from] FilesError),
    #[error("{0}")]
    Kubernetes(String),
    #[error("persisting the config failed (nothing changed): {0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Install(#[from] crate::installer::InstallError),
}

impl ApplyError {
    pub fn status(&self) -> u16 {
        match self {
            ApplyError::Config(SignedConfigError::Signature(_)) => 403,
            ApplyError::Config(SignedConfigError::Invalid(_)) => 400,
            ApplyError::Config(
                SignedConfigError::Replay { .. }
                | SignedConfigError::BelowImageMinimum { .. }
                | SignedConfigError::NotThisNode { .. }
                | SignedConfigError::Expired { .. },
            ) => 409,
            ApplyError::Install(crate::installer::InstallError::Refused { .. }) => 409,
            ApplyError::Install(_) => 500,
            ApplyError::Conflict(_)
            | ApplyError::Kernel(_)
            | ApplyError::Files(_)
            | ApplyError::Kubernetes(_) => 409,
            // 507 Insufficient Storage: the client may free space (or
            // apply a smaller config) and retry; nothing changed.
            ApplyError::State(StateError::Full { .. }) => 507,
            ApplyError::State(_) => 500,
        }
    }
}

/// Everything [`Node::boot`] needs.
pub struct BootParts {
    pub host: Host,
    pub supervisor: Supervisor,
    /// Services to run once the node has a config (containerd on a node).
    pub services: Vec<ServiceSpec>,
    /// Imports the image's baked OCI archives once containerd is ready;
    /// `None` imports nothing.
    pub images: Option<ImageImporter>,
    pub state: StateStore,
    /// The image's trust roots: who may sign the first config.
    pub image_trust: TrustRoots,
    pub boot_id: String,
    pub tls_fingerprint: String,
    pub nonces: Nonces,
    pub power: mpsc::UnboundedSender<PowerEvent>,
}

pub struct Node {
    pub host: Host,
    pub nonces: Nonces,
    pub boot_id: String,
    pub tls_fingerprint: String,
    pub(crate) config: ConfigController,
    kernel: KernelController,
    files: FilesController,
    dns: DnsController,
    links: LinksController,
    services: ServicesController,
    images: Arc<ImagesController>,
    metrics_listener: MetricsController,
    /// machined's own instruments (API requests, auth failures, applies).
    pub metrics: Metrics,
    kubernetes: KubernetesController,
    /// The config controller's state: the lock serializes applies.
    applied: Mutex<ConfigState>,
    power: mpsc::UnboundedSender<PowerEvent>,
    /// How a disk-booted node booted (see `crate::slots`); set by PID 1.
    boot: std::sync::Mutex<Option<basalt_api::rpc::BootStatus>>,
    /// Set on an ISO boot: a config with `[machine.install]` installs.
    installer: std::sync::OnceLock<Arc<dyn crate::installer::Installer>>,
    /// Writes upgrades to the disk's A/B slots; unset on a node that does
    /// not boot from one ([`Node::attach_slots`]).
    pub(crate) slots: std::sync::OnceLock<Arc<dyn crate::upgrade::SlotWriter>>,
    /// Held from an upgrade's first byte to its install: one at a time.
    pub(crate) upgrade_lock: Mutex<()>,
}

impl Node {
    /// Load STATE (promoting a staged config first) and converge to it.
    pub fn boot(parts: BootParts) -> Arc<Node> {
        let host = parts.host;
        let config = ConfigController::new(
            parts.state,
            parts.image_trust,
            admission::image_policy(&host),
        );
        let applied = config.load_at_boot();
        let current = applied.current.as_ref().map(|a| a.config.clone());
        // The STATE directory as a node path (below the dev root in dev mode).
        let state_dir = config
            .store
            .dir()
            .strip_prefix(host.root())
            .map(|p| std::path::Path::new("/").join(p))
            .unwrap_or_else(|_| config.store.dir().to_path_buf());
        let kubernetes = KubernetesController::new(
            host.clone(),
            parts.supervisor.clone(),
            &state_dir.display().to_string(),
        );
        let node = Arc::new(Node {
            kubernetes,
            kernel: KernelController::new(host.clone()),
            files: FilesController::new(host.clone()),
            dns: DnsController::new(host.clone()),
            links: LinksController::default(),
            services: ServicesController::new(parts.supervisor, parts.services),
            images: ImagesController::new(parts.images),
            metrics_listener: MetricsController::default(),
            metrics: Metrics::new(),
            config,
            host,
            nonces: parts.nonces,
            boot_id: parts.boot_id,
            tls_fingerprint: parts.tls_fingerprint,
            applied: Mutex::new(applied),
            power: parts.power,
            boot: std::sync::Mutex::new(None),
            installer: std::sync::OnceLock::new(),
            slots: std::sync::OnceLock::new(),
            upgrade_lock: Mutex::new(()),
        });
        node.learn_secrets(current.as_ref());
        match &current {
            Some(c) => {
                node.converge_host(c);
                tracing::info!("running config generation {}", c.generation);
                node.start_services();
            }
            None => tracing::info!("no config: maintenance mode, waiting for a signed apply"),
        }
        node
    }

    pub fn supervisor(&self) -> &Supervisor {
        self.services.supervisor()
    }

    /// Teach the log redaction ([`crate::log_policy`]) the secrets of `cfg`
    /// and those in STATE: the PKI and kubeconfigs machined wrote, the
    /// kubelet's keys, the API's TLS key (etcd's data is the cluster's,
    /// not keys, and large).
    fn learn_secrets(&self, cfg: Option<&MachineConfig>) {
        let known = self.supervisor().known_secrets();
        if let Some(cfg) = cfg {
            known.learn(log_policy::config_secrets(cfg));
        }
        let state = self
            .config
            .store
            .dir()
            .strip_prefix(self.host.root())
            .map(|p| std::path::Path::new("/").join(p))
            .unwrap_or_else(|_| self.config.store.dir().to_path_buf());
        let skip = [self.kubernetes.layout().etcd_data.display().to_string()];
        known.learn(log_policy::secrets_below(
            &self.host,
            &state.display().to_string(),
            &skip,
        ));
    }

    pub fn state(&self) -> &StateStore {
        &self.config.store
    }

    /// An image may carry a signed config (`/etc/basalt/config.toml` and
    /// its `.sig`): with none in STATE, apply it now, exactly as if it had
    /// come through the API (same trust roots, same generation rules).
    pub async fn apply_baked_config(self: &Arc<Self>) {
        if self.applied.lock().await.current.is_some() {
            return;
        }
        let (Ok(config), Ok(signatures)) = (
            self.host.read(BAKED_CONFIG),
            self.host.read(BAKED_CONFIG_SIG),
        ) else {
            return;
        };
        let req = ApplyRequest {
            config: String::from_utf8_lossy(&config).into_owned(),
            signatures: String::from_utf8_lossy(&signatures).into_owned(),
            mode: ApplyMode::Auto,
            dry_run: false,
            try_timeout_secs: None,
        };
        match self.apply(req).await {
            Ok(r) => tracing::info!(
                "applied the image's baked config {BAKED_CONFIG}, generation {}",
                r.generation
            ),
            Err(e) => tracing::error!("the image's baked config {BAKED_CONFIG}: {e}"),
        }
    }

    /// Converge what needs the runtime (metrics) for the running config; called once after boot.
    pub async fn start_runtime(self: &Arc<Self>) {
        let cfg = self.current_config().await;
        self.metrics_listener.converge(cfg.as_ref(), self).await;
        let node = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let cfg = node.current_config().await;
                node.kubernetes
                    .resync(cfg.as_ref(), &node.addresses())
                    .await;
                // The keys this pass issued, and those the kubelet wrote.
                node.learn_secrets(None);
                node.kubernetes.wait().await;
            }
        });
    }

    /// The node's addresses: the config's static ones and DHCP's.
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        let Some(status) = self.links.status() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for link in status.links {
            out.extend(link.addresses.iter().map(|c| c.addr()));
            if let Some(lease) = link.dhcp.and_then(|d| d.lease) {
                out.push(std::net::IpAddr::V4(lease.address));
            }
        }
        out
    }

    pub(crate) fn kubernetes(&self) -> &KubernetesController {
        &self.kubernetes
    }

    pub(crate) async fn current_config(&self) -> Option<MachineConfig> {
        self.applied
            .lock()
            .await
            .current
            .as_ref()
            .map(|c| c.config.clone())
    }

    /// Hand the node its network controller: converge the current config's
    /// network and keep resolv.conf in step with DHCP from now on.
    pub async fn attach_network(self: &Arc<Self>, net: Option<NetworkController>) {
        let Some(net) = net else { return };
        let mut changes = net.changes();
        if !self.links.attach(net) {
            tracing::error!("network controller attached twice; keeping the first");
            return;
        }
        let cfg = self.current_config().await;
        // Failures are logged and shown in the network status.
        let _ = self.converge_network(cfg.as_ref()).await;
        let node = Arc::clone(self);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let cfg = node.current_config().await;
                node.converge_dns(cfg.as_ref());
                // A new lease may be the address Kubernetes waits for.
                node.kubernetes.kick();
            }
        });
    }

    /// Links first, then resolv.conf (it lists DHCP's servers); the
    /// links' failures, if any.
    async fn converge_network(&self, cfg: Option<&MachineConfig>) -> Result<(), String> {
        let links = self.links.converge(cfg.map(|c| &c.machine.network)).await;
        self.converge_dns(cfg);
        links
    }

    fn converge_dns(&self, cfg: Option<&MachineConfig>) {
        let net = cfg.map(|c| &c.machine.network);
        if let Err(e) = self.dns.converge(net, &self.links.lease_dns()) {
            tracing::error!("writing resolv.conf: {e}");
        }
    }

    pub fn network_status(&self) -> Option<crate::network::NetworkStatus> {
        self.links.status()
    }

    fn start_services(&self) {
        match self.services.converge() {
            Ok(()) => self.images.start(self.supervisor().clone()),
            Err(e) => tracing::error!("starting services: {e}"),
        }
    }

    /// The synchronous controllers: kernel, files, resolv.conf. Each
    /// failure is reported; the others still converge.
    fn converge_host(&self, cfg: &MachineConfig) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = self.kernel.converge(cfg) {
            errors.push(e.to_string());
        }
        if let Err(e) = self.files.converge(cfg) {
            errors.push(e.to_string());
        }
        let leases = self.links.lease_dns();
        if let Err(e) = self.dns.converge(Some(&cfg.machine.network), &leases) {
            errors.push(e.to_string());
        }
        // containerd reads these at every pull: no restart needed.
        if let Err(e) = crate::registries::converge(
            &cfg.machine.registries,
            &self.host,
            crate::containerd::CERTS_D,
        ) {
            errors.push(e.to_string());
        }
        for e in &errors {
            tracing::error!("converging generation {}: {e}", cfg.generation);
        }
        errors
    }

    /// Every controller's steps from `old` to `new`, in the order they
    /// converge; whether any needs a reboot.
    fn plan(&self, old: Option<&MachineConfig>, new: &MachineConfig) -> Vec<PlanStep> {
        let mut steps = self.kernel.plan(old, new);
        steps.extend(self.files.plan(new));
        steps.extend(
            self.dns
                .plan(Some(&new.machine.network), &self.links.lease_dns()),
        );
        steps.extend(self.kernel.plan_modules(old, new));
        steps.extend(self.kubernetes.plan(old, new, &self.addresses()));
        steps
    }

    /// The config the node runs (None in maintenance mode).
    pub async fn running_config(&self) -> Option<MachineConfig> {
        let applied = self.applied.lock().await;
        applied.current.as_ref().map(|c| c.config.clone())
    }

    /// Admins and readers of the running config, or the image's trust roots
    /// in maintenance mode.
    pub async fn policy(&self) -> TrustRoots {
        self.config.policy(&*self.applied.lock().await)
    }

    pub async fn apply(self: &Arc<Self>, req: ApplyRequest) -> Result<ApplyResponse, ApplyError> {
        let mut applied = self.applied.lock().await;
        // Verify.
        let identity = crate::host::identity::read(&self.host);
        let time = admission::trusted_time(&self.host, &self.config.image_policy);
        let verified = self.config.verify(
            &applied,
            req.config.as_bytes(),
            req.signatures.as_bytes(),
            (&identity, time),
        )?;
        let new = verified.config;
        // Before anything can print them (a dry run's too: they are secrets).
        self.supervisor()
            .known_secrets()
            .learn(log_policy::config_secrets(&new));
        let signers: Vec<String> = verified.signers.iter().map(|s| s.to_string()).collect();
        // Plan.
        let mut steps = self.plan(applied.current.as_ref().map(|c| &c.config), &new);
        if steps.is_empty() {
            steps.push(PlanStep::NoChanges);
        }
        let reboot_required = steps.iter().any(PlanStep::needs_reboot);
        self.check_host(&new)?;
        let response = |steps: &[PlanStep], reboot_required| ApplyResponse {
            generation: new.generation,
            mode: req.mode,
            dry_run: req.dry_run,
            plan: plan::render(steps),
            reboot_required,
            signers: signers.clone(),
        };
        if applied.pending_try.is_some() && !req.dry_run {
            return Err(ApplyError::Conflict(
                "a `try` apply is waiting for confirmation: confirm it (POST /v1/apply/confirm) or let it roll back first".into(),
            ));
        }
        if req.mode == ApplyMode::NoReboot && reboot_required {
            return Err(ApplyError::Conflict(format!(
                "this change needs a reboot ({}); use --mode auto or --mode reboot",
                plan::render(&steps).join("; ")
            )));
        }
        let install = match (self.installer.get(), &new.machine.install) {
            (Some(i), Some(target)) => {
                let disk = i.check(target)?;
                Some((Arc::clone(i), target.clone(), disk))
            }
            _ => None,
        };
        if req.dry_run {
            if let Some((_, _, disk)) = &install {
                steps.push(PlanStep::WouldInstall { disk: disk.clone() });
            }
            let reboot_required = reboot_required || steps.iter().any(PlanStep::needs_reboot);
            return Ok(response(&steps, reboot_required));
        }
        // Persist.
        let doc = SignedDoc {
            config: req.config.clone().into_bytes(),
            signatures: req.signatures.clone().into_bytes(),
        };
        if let Some((installer, target, _)) = install {
            steps.push(Self::install(installer, target, new.generation, &doc).await?);
        }
        let reboot_required = reboot_required || steps.iter().any(PlanStep::needs_reboot);
        if req.mode == ApplyMode::Staged {
            self.config.store.stage(new.generation, &doc)?;
            steps.insert(
                0,
                PlanStep::Staged {
                    generation: new.generation,
                },
            );
            return Ok(response(&steps, false));
        }
        self.config
            .commit(&mut applied, new.clone(), &doc, signers.clone())?;
        // Converge.
        let reboot =
            req.mode == ApplyMode::Reboot || (req.mode == ApplyMode::Auto && reboot_required);
        if reboot {
            steps.push(PlanStep::Reboot);
            let _ = self.power.send(PowerEvent::Reboot);
        } else {
            self.converge_now(&new, &mut steps).await;
        }
        if req.mode == ApplyMode::Try {
            steps.push(self.arm_try(&mut applied, new.generation, req.try_timeout_secs));
        }
        tracing::info!("applied generation {} ({:?})", new.generation, req.mode);
        Ok(response(&steps, reboot))
    }

    /// What the host must allow before a config is accepted: kernel
    /// settings, files, Kubernetes addresses.
    fn check_host(&self, new: &MachineConfig) -> Result<(), ApplyError> {
        self.kernel.check(new)?;
        self.files.check(new)?;
        self.kubernetes
            .check(new, &self.addresses())
            .map_err(ApplyError::Kubernetes)
    }

    /// Writes this image to the install disk (blocking work, off the
    /// runtime's threads).
    async fn install(
        installer: Arc<dyn crate::installer::Installer>,
        target: basalt_api::config::Install,
        generation: u64,
        doc: &SignedDoc,
    ) -> Result<PlanStep, ApplyError> {
        let d = doc.clone();
        let summary =
            tokio::task::spawn_blocking(move || installer.install(&target, generation, &d))
                .await
                .map_err(|e| ApplyError::Conflict(format!("the installer stopped: {e}")))??;
        tracing::info!("{summary}");
        Ok(PlanStep::Installed { summary })
    }

    /// Bring the host to a config just committed. Persisted but perhaps not
    /// fully converged: each controller's failure is reported as a step, and
    /// converging is retried at boot.
    async fn converge_now(self: &Arc<Self>, new: &MachineConfig, steps: &mut Vec<PlanStep>) {
        let mut errors = self.converge_host(new);
        errors.extend(self.converge_network(Some(new)).await.err());
        steps.extend(errors.into_iter().map(PlanStep::ConvergeError));
        self.metrics_listener.converge(Some(new), self).await;
        self.start_services();
        self.kubernetes.kick();
    }

    /// Roll `generation` back unless it is confirmed within the timeout.
    fn arm_try(
        self: &Arc<Self>,
        applied: &mut ConfigState,
        generation: u64,
        timeout_secs: Option<u64>,
    ) -> PlanStep {
        let timeout = timeout_secs.map_or(DEFAULT_TRY_TIMEOUT, Duration::from_secs);
        applied.pending_try = Some((generation, Instant::now() + timeout));
        let node = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            node.rollback_try(generation).await;
        });
        PlanStep::RollBackUnlessConfirmed {
            secs: timeout.as_secs(),
        }
    }

    /// Keep a `try` config for good.
    pub async fn confirm(&self) -> Result<u64, ApplyError> {
        let mut applied = self.applied.lock().await;
        match applied.pending_try.take() {
            Some((generation, _)) => Ok(generation),
            None => Err(ApplyError::Conflict(
                "no `try` apply is waiting for confirmation".into(),
            )),
        }
    }

    async fn rollback_try(&self, generation: u64) {
        let mut applied = self.applied.lock().await;
        if applied.pending_try.map(|(g, _)| g) != Some(generation) {
            return;
        }
        applied.pending_try = None;
        if let Err(e) = self.config.rollback(&mut applied) {
            tracing::error!("rolling back generation {generation}: {e}");
            return;
        }
        let cfg = applied.current.as_ref().map(|c| c.config.clone());
        if let Some(c) = &cfg {
            self.converge_host(c);
        }
        // Failures are logged and shown in the network status.
        let _ = self.converge_network(cfg.as_ref()).await;
        tracing::warn!(
            "try apply of generation {generation} was not confirmed: rolled back to {}",
            cfg.as_ref().map_or(0, |c| c.generation)
        );
    }

    /// Ready: a config is applied, its services are ready and the network
    /// is configured. Else the first reason it is not.
    fn readiness(&self, applied: &ConfigState) -> Result<(), String> {
        if applied.current.is_none() {
            return Err("no config yet (maintenance mode)".into());
        }
        self.services.readiness()?;
        self.links.readiness()
    }

    pub async fn status(&self) -> Status {
        let applied = self.applied.lock().await;
        let cur = applied.current.as_ref();
        let readiness = self.readiness(&applied);
        let store = &self.config.store;
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
            state: if store.is_ram() {
                "ram".into()
            } else {
                store.dir().display().to_string()
            },
            ready: readiness.is_ok(),
            not_ready: readiness.err(),
            staged_generation: store.generation(Slot::Staged),
            try_pending_secs: applied
                .pending_try
                .map(|(_, at)| at.saturating_duration_since(Instant::now()).as_secs()),
            tls_fingerprint: self.tls_fingerprint.clone(),
            host_checks: self.kubernetes.host_checks(cur.map(|c| &c.config)),
            identity: crate::host::identity::read(&self.host),
            trusted_time: Some(admission::trusted_time(
                &self.host,
                &self.config.image_policy,
            )),
            min_generation: self.config.image_policy.min_generation,
            boot: self
                .boot
                .lock()
                .map(|b| b.clone())
                .unwrap_or_else(|p| p.into_inner().clone()),
        }
    }

    /// Every controller's resources: desired next to observed.
    pub async fn resources(&self) -> Vec<Resource> {
        let applied = self.applied.lock().await;
        let cfg = applied.current.as_ref().map(|c| &c.config);
        let mut out = self.config.resources(&applied);
        out.extend(self.kernel.resources(cfg));
        out.extend(self.files.resources(cfg));
        out.extend(
            self.dns
                .resources(cfg.map(|c| &c.machine.network), &self.links.lease_dns()),
        );
        out.extend(self.links.resources());
        out.extend(self.services.resources());
        out.extend(self.images.resources());
        out.extend(self.metrics_listener.resources(cfg));
        out.extend(self.kubernetes.resources());
        out
    }

    /// Wipe STATE and reboot into maintenance mode.
    pub async fn reset(&self) -> Result<(), ApplyError> {
        let mut applied = self.applied.lock().await;
        self.config.store.wipe()?;
        *applied = ConfigState::default();
        tracing::warn!("STATE wiped by reset; rebooting into maintenance mode");
        let _ = self.power.send(PowerEvent::Reboot);
        Ok(())
    }

    /// Makes this node an installer (an ISO boot).
    pub fn set_installer(&self, installer: Arc<dyn crate::installer::Installer>) {
        let _ = self.installer.set(installer);
    }

    /// Records how this node booted, for `status`.
    pub fn set_boot(&self, boot: basalt_api::rpc::BootStatus) {
        match self.boot.lock() {
            Ok(mut b) => *b = Some(boot),
            Err(p) => *p.into_inner() = Some(boot),
        }
    }

    /// Requests `ev` once `delay` has passed: time for the answer of the
    /// request that caused it to reach the client before services and
    /// links go down.
    pub fn request_power_after(&self, ev: PowerEvent, delay: std::time::Duration) {
        let power = self.power.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = power.send(ev);
        });
    }

    pub fn request_power(&self, ev: PowerEvent) {
        let _ = self.power.send(ev);
    }
}

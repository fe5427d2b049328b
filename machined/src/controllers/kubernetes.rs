//! The Kubernetes controller: from the applied config, the node's
//! addresses and whether this node was bootstrapped, it derives the PKI,
//! the generated configs and the set of Kubernetes services, and makes the
//! supervisor run exactly that set. It also applies the bootstrap objects
//! once the API server answers, and reports the node's health.
//!
//! Converging is a loop ([`KubernetesController::resync`], then
//! [`KubernetesController::wait`]): kicked by an
//! apply, a bootstrap or a network change, and every 30 s regardless, so a
//! DHCP address that arrives late or an API server that was not up yet is
//! picked up without anyone asking.

use super::plan::{PlanStep, ServiceAction};
use super::resources::{Concern, Resource, ResourceState};
use crate::host::Host;
use crate::host::bpf::BpfProbe;
use crate::kubernetes::bootstrap;
use crate::kubernetes::cilium;
use crate::kubernetes::components::{self, Components};
use crate::kubernetes::csr_approver::{self, Decision};
use crate::kubernetes::layout::{CNI_CONF_DIR, Layout, RUN_DIR};
use crate::kubernetes::node_api::KubeApiError;
use crate::kubernetes::pki::{self, NodeIdentity, PkiChange};
use crate::log_policy;
use crate::supervisor::{ServiceSpec, Supervisor};
use basalt_api::config::{CniName, MachineConfig, Role};
use basalt_api::rpc::HealthCheck;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// How often the loop converges without being kicked.
const RESYNC: Duration = Duration::from_secs(30);
/// ... and while a step waits for the API server to have something.
const RESYNC_PENDING: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Observed {
    /// The specs this controller started, by name.
    started: BTreeMap<String, ServiceSpec>,
    node: Option<NodeIdentity>,
    /// The bootstrap objects were applied this boot, with Cilium's RBAC
    /// (`Some(true)`) or without; applied again when that changes.
    bootstrap_applied: Option<bool>,
    /// The bridge CNI config waits for the node's pod CIDR.
    cni_pending: bool,
    /// Cilium's BPF sources were copied to its writable lib dir this boot.
    cilium_lib_copied: bool,
    /// Serving CSRs already reported as left pending, so each pass does
    /// not log them again.
    csrs_reported: BTreeSet<String>,
    last_error: Option<String>,
}

pub struct KubernetesController {
    host: Host,
    /// The boot's BPF probe (a Cilium prerequisite), run once.
    bpf_probe: BpfProbe,
    layout: Layout,
    supervisor: Supervisor,
    kick: Notify,
    observed: Mutex<Observed>,
}

impl KubernetesController {
    /// `state_dir`: the node path of this boot's STATE directory.
    pub fn new(host: Host, supervisor: Supervisor, state_dir: &str) -> Self {
        let bpf_probe = host.bpf_probe();
        tracing::info!("BPF probe: {bpf_probe:?}");
        KubernetesController {
            bpf_probe,
            host,
            layout: Layout::new(state_dir),
            supervisor,
            kick: Notify::new(),
            observed: Mutex::new(Observed::default()),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Ask the loop to converge now.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        // A panic while holding this lock cannot leave it inconsistent in a
        // way that matters more than stopping Kubernetes would: keep going.
        self.observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn node_path(&self, p: &Path) -> String {
        p.display().to_string()
    }

    pub fn bootstrapped(&self) -> bool {
        self.host
            .exists(&self.node_path(&self.layout.bootstrapped_marker))
    }

    /// One pass of the loop: converge the running config (if any),
    /// remembering the outcome for health and resources.
    pub async fn resync(&self, cfg: Option<&MachineConfig>, addrs: &[IpAddr]) {
        let Some(cfg) = cfg else { return };
        let result = self.converge(cfg, addrs).await;
        if let Err(e) = &result {
            tracing::warn!("kubernetes: {e}");
        }
        self.observed().last_error = result.err();
    }

    /// Wait until kicked, or [`RESYNC`] at most ([`RESYNC_PENDING`] while
    /// something waits on the API server).
    pub async fn wait(&self) {
        let period = if self.observed().cni_pending {
            RESYNC_PENDING
        } else {
            RESYNC
        };
        let _ = tokio::time::timeout(period, self.kick.notified()).await;
    }

    /// Who this node is to Kubernetes: its lower-cased host name and the
    /// addresses it registers with (`machine.kubelet.node_ip_subnets`
    /// picks among several).
    pub fn identity(&self, cfg: &MachineConfig, addrs: &[IpAddr]) -> Option<NodeIdentity> {
        let subnets = &cfg.machine.kubelet.node_ip_subnets;
        let ips: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|ip| !ip.is_loopback())
            .filter(|ip| subnets.is_empty() || subnets.iter().any(|s| s.0.contains(ip)))
            .collect();
        if ips.is_empty() {
            return None;
        }
        Some(NodeIdentity {
            name: self.host.hostname().to_lowercase(),
            ips,
        })
    }

    fn components<'a>(&'a self, cfg: &'a MachineConfig, node: &'a NodeIdentity) -> Components<'a> {
        Components {
            config: cfg,
            layout: &self.layout,
            node_name: &node.name,
            node_ip: node
                .ips
                .first()
                .copied()
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
            root: self.host.root(),
        }
    }

    /// What the PKI would change for `cfg`, changing nothing; `None` while
    /// the node has no address to put in its certificates.
    fn pki_plan(
        &self,
        cfg: &MachineConfig,
        addrs: &[IpAddr],
    ) -> Option<Result<Vec<PkiChange>, pki::PkiError>> {
        let node = self.identity(cfg, addrs)?;
        Some(pki::plan(
            &self.host,
            &self.layout,
            &cfg.cluster,
            cfg.machine.role,
            &node,
            SystemTime::now(),
        ))
    }

    /// The certificate changes an apply of `cfg` would make, and the
    /// Kubernetes services it starts, restarts or stops compared with what
    /// `old` asks for (dry-run plans; a service that fails to start for
    /// its own reasons is not a change this apply makes).
    pub fn plan(
        &self,
        old: Option<&MachineConfig>,
        cfg: &MachineConfig,
        addrs: &[IpAddr],
    ) -> Vec<PlanStep> {
        let mut steps: Vec<PlanStep> = match self.pki_plan(cfg, addrs) {
            None => return Vec::new(),
            Some(Ok(changes)) => changes
                .into_iter()
                .map(|c| PlanStep::Certificate(c.to_string()))
                .collect(),
            Some(Err(e)) => return vec![PlanStep::ConvergeError(e.to_string())],
        };
        if let Some(node) = self.identity(cfg, addrs) {
            let before: BTreeMap<String, ServiceSpec> = old
                .and_then(|o| Some((o, self.identity(o, addrs)?)))
                .map(|(o, n)| self.desired(&self.components(o, &n)))
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect();
            let desired = self.desired(&self.components(cfg, &node));
            steps.extend(service_changes(&before, &desired));
        }
        steps
    }

    /// Refuse what `cfg` cannot become (e.g. a CA key that does not match
    /// its certificate) before anything is persisted.
    pub fn check(&self, cfg: &MachineConfig, addrs: &[IpAddr]) -> Result<(), String> {
        match self.pki_plan(cfg, addrs) {
            Some(Err(e)) => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    /// PKI, generated files, then the services; then the bootstrap objects.
    pub async fn converge(&self, cfg: &MachineConfig, addrs: &[IpAddr]) -> Result<(), String> {
        let node = self.identity(cfg, addrs).ok_or(
            "waiting for the node's address (none matches machine.kubelet.node_ip_subnets yet)",
        )?;
        let changes = pki::converge(
            &self.host,
            &self.layout,
            &cfg.cluster,
            cfg.machine.role,
            &node,
            SystemTime::now(),
        )
        .map_err(|e| e.to_string())?;
        for c in &changes {
            tracing::info!("kubernetes: {c}");
        }
        if !changes.is_empty() {
            // Before a component that holds them starts and can print them.
            let skip = [self.node_path(&self.layout.etcd_data)];
            let issued =
                log_policy::secrets_below(&self.host, &self.node_path(&self.layout.pki_dir), &skip);
            self.supervisor.known_secrets().learn(issued);
        }
        let comps = self.components(cfg, &node);
        self.write_configs(&comps)?;
        self.remove_foreign_cni_config(cfg)?;
        let mut desired = self.desired(&comps);
        // Without its sources the agent cannot start: everything else
        // still does, and the error is this pass's outcome.
        let cilium_error = self.prepare_cilium(&desired).err();
        if cilium_error.is_some() {
            desired.retain(|s| s.name != cilium::AGENT);
        }
        self.reconcile(desired, &changes).await?;
        self.observed().node = Some(node.clone());
        if cfg.machine.role == Role::Controlplane && self.bootstrapped() {
            self.apply_bootstrap_objects(cfg).await?;
            self.approve_serving_csrs().await;
        }
        if cfg.cluster.cni.name == CniName::Bridge {
            self.converge_bridge(cfg, &comps, &node).await?;
        }
        cilium_error.map_or(Ok(()), Err)
    }

    /// The services `comps` asks for on this node now.
    fn desired(&self, comps: &Components<'_>) -> Vec<ServiceSpec> {
        let credentials = self
            .host
            .exists(&self.node_path(&self.layout.kubelet_kubeconfig));
        comps.services(self.bootstrapped(), credentials)
    }

    /// Before the agent first starts this boot: its writable copy of the
    /// image's BPF sources (see [`cilium::LIB_DIR`]).
    fn prepare_cilium(&self, desired: &[ServiceSpec]) -> Result<(), String> {
        if self.observed().cilium_lib_copied || !desired.iter().any(|s| s.name == cilium::AGENT) {
            return Ok(());
        }
        let to = format!("{}/bpf", cilium::LIB_DIR);
        self.host
            .copy_tree(cilium::IMAGE_BPF_DIR, &to)
            .map_err(|e| format!("copying Cilium's BPF sources for the agent: {e}"))?;
        tracing::info!("kubernetes: Cilium's BPF sources copied to {to}");
        self.observed().cilium_lib_copied = true;
        Ok(())
    }

    /// Exactly one CNI config is machined's to keep: after a switch of
    /// `cluster.cni.name`, the previous CNI's config goes (the CRI plugin
    /// uses the first config in name order, whoever wrote it).
    fn remove_foreign_cni_config(&self, cfg: &MachineConfig) -> Result<(), String> {
        // Cilium's conflist is machined's to remove only while machined
        // runs the agent that wrote it: with `none`, a Cilium the operator
        // installed may write the same file.
        let ran_agent = self.observed().started.contains_key(cilium::AGENT);
        let stale: &[&str] = match cfg.cluster.cni.name {
            CniName::Cilium => &[components::BRIDGE_CONFLIST],
            CniName::Bridge => &[cilium::CONFLIST],
            CniName::None if ran_agent => &[components::BRIDGE_CONFLIST, cilium::CONFLIST],
            CniName::None => &[components::BRIDGE_CONFLIST],
        };
        for name in stale {
            let path = format!("{CNI_CONF_DIR}/{name}");
            if self.host.exists(&path) {
                self.host.remove_all(&path).map_err(|e| e.to_string())?;
                tracing::info!(
                    "kubernetes: removed {path} (cluster.cni.name is now {:?})",
                    cfg.cluster.cni.name
                );
            }
        }
        Ok(())
    }

    /// The bridge CNI config names this node's pod CIDR, which the
    /// controller-manager allocates once the kubelet registered the node:
    /// until then there is no CNI config (the kubelet reports the network
    /// not ready, rightly) and the loop comes back sooner.
    async fn converge_bridge(
        &self,
        cfg: &MachineConfig,
        comps: &Components<'_>,
        node: &NodeIdentity,
    ) -> Result<(), String> {
        let path = format!("{CNI_CONF_DIR}/{}", components::BRIDGE_CONFLIST);
        let kubeconfig = self.host.path(self.client_kubeconfig(cfg));
        let query = async {
            let client = bootstrap::client(&kubeconfig).await?;
            bootstrap::pod_cidr(&client, &node.name).await
        };
        let cidr = match tokio::time::timeout(Duration::from_secs(10), query).await {
            Ok(Ok(Some(cidr))) => cidr,
            // Not registered or not allocated yet, or the API is not up:
            // the next pass (soon) asks again.
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                self.observed().cni_pending = true;
                return Ok(());
            }
        };
        self.observed().cni_pending = false;
        let conflist = comps.bridge_conflist(&cidr);
        if self.host.read(&path).ok().as_deref() == Some(conflist.as_bytes()) {
            return Ok(());
        }
        self.host
            .ensure_dir(CNI_CONF_DIR, 0o755)
            .map_err(|e| e.to_string())?;
        self.host
            .write_atomic(&path, conflist.as_bytes(), 0o644)
            .map_err(|e| e.to_string())?;
        tracing::info!("kubernetes: bridge CNI config for pod CIDR {cidr}");
        Ok(())
    }

    /// The credentials machined talks to the API server with: its own admin
    /// kubeconfig on a control-plane node; a worker has only its kubelet's
    /// (the Node authorizer lets it read its own Node).
    fn client_kubeconfig(&self, cfg: &MachineConfig) -> &std::path::Path {
        match cfg.machine.role {
            Role::Controlplane => &self.layout.admin_kubeconfig,
            Role::Worker => &self.layout.kubelet_kubeconfig,
        }
    }

    /// Judge the kubelets' pending serving-certificate CSRs (workers ask for
    /// theirs by CSR; see [`csr_approver`]). A failure is logged, not
    /// returned: it must not hold back the rest of converging, and the next
    /// pass retries.
    async fn approve_serving_csrs(&self) {
        if self.observed().bootstrap_applied.is_none() {
            // Not before the apiserver answered machined once.
            return;
        }
        let kubeconfig = self.host.path(&self.layout.admin_kubeconfig);
        let decisions = match bootstrap::client(&kubeconfig).await {
            Ok(client) => csr_approver::approve_pending(&client)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let decisions = match decisions {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("kubernetes: serving CSR approver: {e}");
                return;
            }
        };
        let mut observed = self.observed();
        for (name, decision) in decisions {
            match &decision {
                Decision::Approve => tracing::info!("kubernetes: CSR {name} {decision}"),
                Decision::Deny(_) => tracing::warn!("kubernetes: CSR {name} {decision}"),
                Decision::Ignore(_) => {
                    if observed.csrs_reported.insert(name.clone()) {
                        tracing::info!("kubernetes: CSR {name} {decision}");
                    }
                }
            }
        }
    }

    fn write_configs(&self, comps: &Components<'_>) -> Result<(), String> {
        let write = |path: &str, data: &str| {
            self.host
                .write_atomic(path, data.as_bytes(), 0o644)
                .map_err(|e| e.to_string())
        };
        self.host
            .ensure_dir(RUN_DIR, 0o755)
            .map_err(|e| e.to_string())?;
        write(
            &self.node_path(&self.layout.kubelet_config),
            &comps.kubelet_config(),
        )?;
        Ok(())
    }

    /// Make the supervisor run exactly `desired`: start what is missing,
    /// replace what changed (or whose certificates were reissued), stop
    /// what is no longer wanted.
    async fn reconcile(&self, desired: Vec<ServiceSpec>, pki: &[PkiChange]) -> Result<(), String> {
        let started = self.observed().started.clone();
        let wanted: BTreeMap<&str, &ServiceSpec> =
            desired.iter().map(|s| (s.name.as_str(), s)).collect();
        for name in started.keys() {
            if !wanted.contains_key(name.as_str()) {
                tracing::info!("kubernetes: stopping {name}");
                let _ = self.supervisor.stop(name).await;
                self.observed().started.remove(name);
            }
        }
        let mut to_start = Vec::new();
        for spec in &desired {
            let reissued = pki.iter().any(|c| restarts(&c.name, &spec.name));
            match started.get(&spec.name) {
                Some(old) if old == spec && !reissued => {}
                Some(_) => {
                    tracing::info!("kubernetes: restarting {} with its new settings", spec.name);
                    let _ = self.supervisor.stop(&spec.name).await;
                    self.observed().started.remove(&spec.name);
                    to_start.push(spec.clone());
                }
                None => to_start.push(spec.clone()),
            }
        }
        if to_start.is_empty() {
            return Ok(());
        }
        self.supervisor
            .start(to_start.clone())
            .map_err(|e| format!("starting Kubernetes services: {e}"))?;
        let mut observed = self.observed();
        for spec in to_start {
            observed.started.insert(spec.name.clone(), spec);
        }
        Ok(())
    }

    async fn apply_bootstrap_objects(&self, cfg: &MachineConfig) -> Result<(), String> {
        let with_cilium = cilium::enabled(cfg);
        if self.observed().bootstrap_applied == Some(with_cilium) {
            return Ok(());
        }
        let ready = self
            .supervisor
            .status(components::APISERVER)
            .is_ok_and(|s| s.ready);
        if !ready {
            return Ok(());
        }
        let kubeconfig = self.host.path(&self.layout.admin_kubeconfig);
        let client = bootstrap::client(&kubeconfig)
            .await
            .map_err(|e| e.to_string())?;
        bootstrap::apply(&client, cfg.cluster.token.expose(), with_cilium)
            .await
            .map_err(|e| format!("applying the bootstrap token and RBAC: {e}"))?;
        tracing::info!("kubernetes: bootstrap token and node RBAC applied");
        self.observed().bootstrap_applied = Some(with_cilium);
        Ok(())
    }

    /// `basaltctl bootstrap`: initialise etcd on this control-plane node,
    /// once per cluster.
    pub fn bootstrap(&self, cfg: Option<&MachineConfig>) -> Result<String, KubeApiError> {
        let cfg = cfg.ok_or_else(|| {
            KubeApiError::new(
                409,
                "this node has no config yet: apply a control-plane config first",
            )
        })?;
        if cfg.machine.role != Role::Controlplane {
            return Err(KubeApiError::new(
                409,
                "bootstrap runs on a control-plane node; workers join with cluster.token",
            ));
        }
        let marker = self.node_path(&self.layout.bootstrapped_marker);
        let data = self.node_path(&self.layout.etcd_data);
        if self.host.exists(&marker) || self.host.exists(&data) {
            return Err(KubeApiError::new(
                409,
                "etcd is already bootstrapped on this node; a second bootstrap would start a second cluster. Nothing was changed",
            ));
        }
        let name = self.host.hostname().to_lowercase();
        self.host
            .ensure_dir(&self.node_path(&self.layout.pki_dir), 0o700)
            .map_err(|e| KubeApiError::new(500, e.to_string()))?;
        self.host
            .write_atomic(&marker, format!("{name}\n").as_bytes(), 0o600)
            .map_err(|e| KubeApiError::new(500, format!("recording the bootstrap: {e}")))?;
        tracing::info!("kubernetes: bootstrapping etcd on {name}");
        self.kick();
        Ok(name)
    }

    /// The Kubernetes services this node should run, by name.
    pub fn expected(&self, cfg: &MachineConfig) -> Vec<&'static str> {
        let mut names = Vec::new();
        let cilium = cilium::enabled(cfg);
        if cfg.machine.role == Role::Controlplane {
            names.extend(components::CONTROL_PLANE);
            if cilium {
                names.push(cilium::OPERATOR);
            }
        }
        names.push(components::KUBELET);
        if cilium {
            names.push(cilium::AGENT);
        }
        names
    }

    /// Cilium's host prerequisites for `cfg` (for the defaults before a
    /// config arrives); none when the config runs another CNI.
    pub fn host_checks(&self, cfg: Option<&MachineConfig>) -> Vec<HealthCheck> {
        let settings = match cfg {
            Some(c) if !cilium::enabled(c) => return Vec::new(),
            Some(c) => c.cluster.cni.cilium_settings(),
            None => Default::default(),
        };
        cilium::host_checks(&self.host, &settings, &self.bpf_probe)
    }

    /// Every component's readiness and the node's Ready condition.
    pub async fn health(&self, cfg: Option<&MachineConfig>) -> Vec<HealthCheck> {
        let Some(cfg) = cfg else {
            return vec![HealthCheck {
                name: "config".into(),
                ok: false,
                detail: "no config applied (maintenance mode)".into(),
            }];
        };
        let mut checks = Vec::new();
        if cfg.machine.role == Role::Controlplane && !self.bootstrapped() {
            checks.push(HealthCheck {
                name: "bootstrap".into(),
                ok: false,
                detail: "not bootstrapped: run `basaltctl bootstrap` once on the first control-plane node".into(),
            });
        }
        for name in self.expected(cfg) {
            let (ok, detail) = match self.supervisor.status(name) {
                Ok(s) if s.ready => (true, format!("ready, {:?}", s.state)),
                Ok(s) => (
                    false,
                    format!("not ready ({:?}, {} restarts)", s.state, s.restarts),
                ),
                Err(_) => (false, "not started".into()),
            };
            checks.push(HealthCheck {
                name: name.into(),
                ok,
                detail,
            });
        }
        checks.push(self.node_ready_check(cfg).await);
        checks.extend(self.host_checks(Some(cfg)));
        if let Some(e) = self.observed().last_error.clone() {
            checks.push(HealthCheck {
                name: "converge".into(),
                ok: false,
                detail: e,
            });
        }
        checks
    }

    async fn node_ready_check(&self, cfg: &MachineConfig) -> HealthCheck {
        let check = |ok, detail| HealthCheck {
            name: "node-ready".into(),
            ok,
            detail,
        };
        let Some(node) = self.observed().node.clone() else {
            return check(false, "the node has no address yet".into());
        };
        let kubeconfig = self.client_kubeconfig(cfg);
        let query = async {
            let client = bootstrap::client(&self.host.path(kubeconfig)).await?;
            bootstrap::node_ready(&client, &node.name).await
        };
        match tokio::time::timeout(Duration::from_secs(10), query).await {
            Ok(Ok((ok, detail))) => check(ok, detail),
            Ok(Err(e)) => check(false, e.to_string()),
            Err(_) => check(false, "the API server did not answer within 10 s".into()),
        }
    }

    pub fn resources(&self) -> Vec<Resource> {
        let observed = self.observed();
        let Some(node) = &observed.node else {
            return Vec::new();
        };
        vec![Resource::new(
            Concern::Kubernetes,
            node.name.clone(),
            observed.last_error.is_none(),
            ResourceState::Kubernetes {
                node_ips: node.ips.clone(),
                bootstrapped: self.bootstrapped(),
                services: observed.started.keys().cloned().collect(),
                error: observed.last_error.clone(),
            },
        )]
    }
}

/// What running `desired` instead of `started` does to each service.
fn service_changes(
    started: &BTreeMap<String, ServiceSpec>,
    desired: &[ServiceSpec],
) -> Vec<PlanStep> {
    let mut steps = Vec::new();
    for spec in desired {
        match started.get(&spec.name) {
            Some(old) if old == spec => {}
            Some(_) => steps.push(PlanStep::Service {
                name: spec.name.clone(),
                action: ServiceAction::Restart,
            }),
            None => steps.push(PlanStep::Service {
                name: spec.name.clone(),
                action: ServiceAction::Start,
            }),
        }
    }
    for name in started.keys() {
        if !desired.iter().any(|s| &s.name == name) {
            steps.push(PlanStep::Service {
                name: name.clone(),
                action: ServiceAction::Stop,
            });
        }
    }
    steps
}

/// Whether a reissued certificate (by PKI name) means `service` must
/// restart to load it. The cluster CA touches everyone.
fn restarts(cert: &str, service: &str) -> bool {
    use components::*;
    let users: &[&str] = match cert {
        "ca" => &[
            ETCD,
            APISERVER,
            CONTROLLER_MANAGER,
            SCHEDULER,
            KUBELET,
            cilium::AGENT,
            cilium::OPERATOR,
        ],
        c if c.starts_with("cilium-operator") => &[cilium::OPERATOR],
        // The agent acts as its node with the kubelet's credentials, read
        // once at start.
        "kubelet.kubeconfig" => &[KUBELET, cilium::AGENT],
        "etcd-ca" | "etcd-server" | "etcd-peer" => &[ETCD, APISERVER],
        "apiserver-etcd-client" => &[APISERVER],
        "front-proxy-ca" => &[APISERVER, CONTROLLER_MANAGER, SCHEDULER],
        "sa" => &[APISERVER, CONTROLLER_MANAGER],
        c if c.starts_with("apiserver") || c.starts_with("front-proxy") => &[APISERVER],
        c if c.starts_with("controller-manager") => &[CONTROLLER_MANAGER],
        c if c.starts_with("scheduler") => &[SCHEDULER],
        c if c.starts_with("kubelet") => &[KUBELET],
        _ => &[],
    };
    users.contains(&service)
}

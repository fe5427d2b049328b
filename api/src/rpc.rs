//! JSON bodies of the node API (`/v1/…`), shared by machined and basaltctl:
//! every request and response body the API has is a type here (the routes
//! themselves are [`crate::route::Route`]). Responses do not deny unknown
//! fields, so an older basaltctl can read a newer node.

use crate::config::{Cidr, FileOp, MacAddr};
use crate::scope::{NodeIdentity, TrustedTime};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// `GET /v1/nonce`: a single-use value the next signed request must carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NonceResponse {
    pub nonce: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyMode {
    /// Apply now; reboot only if the change needs it.
    #[default]
    Auto,
    /// Apply now; refuse if the change needs a reboot.
    NoReboot,
    /// Persist, then reboot into it.
    Reboot,
    /// Persist; apply at the next boot.
    Staged,
    /// Apply now; roll back unless confirmed before the timeout.
    Try,
}

/// `POST /v1/apply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The config document, exactly as signed.
    pub config: String,
    /// The `.sig` file: one or more armored SSHSIG blocks.
    pub signatures: String,
    #[serde(default)]
    pub mode: ApplyMode,
    #[serde(default)]
    pub dry_run: bool,
    /// For `try`: seconds before an unconfirmed config rolls back.
    #[serde(default)]
    pub try_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub generation: u64,
    pub mode: ApplyMode,
    pub dry_run: bool,
    /// Human-readable steps the node takes (or would take).
    pub plan: Vec<String>,
    pub reboot_required: bool,
    pub signers: Vec<String>,
}

/// The body of every non-2xx JSON answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}

/// Whether a node runs a config yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeMode {
    /// No config yet: only a signed config is accepted.
    Maintenance,
    /// Running an applied config.
    Configured,
}

impl NodeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeMode::Maintenance => "maintenance",
            NodeMode::Configured => "configured",
        }
    }
}

impl fmt::Display for NodeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub hostname: String,
    pub mode: NodeMode,
    pub generation: u64,
    /// sha256 of the applied config document.
    pub config_sha256: Option<String>,
    pub signers: Vec<String>,
    pub boot_id: String,
    /// Where STATE lives, or `ram` when no STATE was found.
    pub state: String,
    /// The configured services are ready and the network is configured.
    pub ready: bool,
    /// Why `ready` is false (absent when ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<String>,
    pub staged_generation: Option<u64>,
    /// Seconds left before an unconfirmed `try` apply rolls back.
    pub try_pending_secs: Option<u64>,
    pub tls_fingerprint: String,
    /// The host prerequisites of the node's CNI (Cilium: bpffs, cgroup2,
    /// kernel modules, a live BPF probe), each with what was seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_checks: Vec<HealthCheck>,
    /// The ids a config's `[scope]` selector is matched against.
    #[serde(default)]
    pub identity: NodeIdentity,
    /// The time the node knows it is at least, which `scope.not_after`
    /// is checked against, and where that comes from (absent from nodes
    /// older than `[scope]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_time: Option<TrustedTime>,
    /// The image's lowest acceptable config generation.
    #[serde(default)]
    pub min_generation: u64,
    /// The boot disk, slot and boot entry, on a node booted from disk
    /// (absent on kernel+initramfs and ISO boots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootStatus>,
}

/// How a disk-booted node booted: which slot, which systemd-boot entry, and
/// how boot counting judged it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BootStatus {
    /// `/dev/vda`.
    pub disk: String,
    /// `A` or `B`.
    pub slot: String,
    /// The systemd-boot entry's file name now (`basalt-0.2.0.efi`), if
    /// systemd-boot booted the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// The running image's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `not counted`, `trial (N tries left)`, `blessed`, or `marked bad: …`.
    pub assessment: String,
    /// What the last upgrade came to, when it did not simply succeed
    /// (e.g. it failed and the node rolled back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_upgrade: Option<String>,
    /// Where /var lives: the EPHEMERAL partition, or `ram`.
    pub var: String,
}

/// The body of a POST that carries no parameters (`confirm`, `reboot`, …):
/// an empty JSON object, signed like any other body.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// `GET /v1/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    /// machined's version.
    pub version: String,
    /// The API version, `v1`.
    pub api: String,
}

/// `POST /v1/apply/confirm`: the `try` generation now kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmResponse {
    pub confirmed: u64,
}

/// `POST /v1/services/{name}/restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartResponse {
    pub restarting: String,
}

/// `POST /v1/services/{name}/kill`: the pid whose process group got SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillResponse {
    pub killed: u32,
}

/// `POST /v1/reboot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootResponse {
    pub rebooting: bool,
}

/// `POST /v1/upgrade`: what the node did with a verified bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeResponse {
    /// The bundle's image version and counter.
    pub version: String,
    pub counter: u64,
    /// The slot written (as the node names it, e.g. `B`).
    pub slot: String,
    /// Written for the next reboot only (`?stage=1`).
    pub staged: bool,
    /// The node is rebooting into the new slot now.
    pub rebooting: bool,
    /// Who signed the manifest (fingerprint and comment).
    pub signers: Vec<String>,
}

/// `POST /v1/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackResponse {
    /// The slot the node boots next.
    pub slot: String,
    pub rebooting: bool,
}

/// `POST /v1/shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownResponse {
    pub shutting_down: bool,
}

/// `POST /v1/reset`: STATE wiped, rebooting into maintenance mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetResponse {
    pub reset: bool,
    pub rebooting: bool,
}

/// `POST /v1/bootstrap`: etcd initialised as a new cluster on this node and
/// the cluster's bootstrap objects applied. A node answers 409 to a second
/// call (the cluster already exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapResponse {
    /// The etcd member this node became (its name or ID).
    pub etcd_member: String,
    /// What was done, for the operator.
    pub message: String,
}

/// `POST /v1/kubeconfig`: ask the node to mint an admin kubeconfig. Admin
/// only: the answer is a credential for the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigRequest {
    /// The API server URL to write into the kubeconfig instead of
    /// `cluster.endpoint`, e.g. `https://127.0.0.1:16443` for a forwarded
    /// port.
    #[serde(default)]
    pub server: Option<String>,
    /// The user the credential names (its client certificate's CN).
    pub user: String,
}

/// The user [`KubeconfigRequest::user`] names when the operator gives none.
pub const DEFAULT_KUBECONFIG_USER: &str = "admin";

impl KubeconfigRequest {
    /// Why the node (and basaltctl, before asking) refuses this request:
    /// `server` must be an `https://` URL with a host and no path, `user` a
    /// non-empty name of printable ASCII without `/` or `:` (it becomes a
    /// certificate CN and a kubeconfig entry name).
    pub fn check(&self) -> Result<(), String> {
        if let Some(server) = &self.server {
            match url::Url::parse(server) {
                Ok(u)
                    if u.scheme() == "https"
                        && u.host_str().is_some_and(|h| !h.is_empty())
                        && matches!(u.path(), "" | "/")
                        && u.query().is_none()
                        && u.fragment().is_none()
                        && u.username().is_empty()
                        && u.password().is_none() => {}
                _ => {
                    return Err(format!(
                        "server `{server}` is not an API server URL; expected https://HOST[:PORT], e.g. https://127.0.0.1:6443"
                    ));
                }
            }
        }
        let u = &self.user;
        if u.is_empty()
            || u.len() > 64
            || !u
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
        {
            return Err(format!(
                "user `{u}` is not a user name; use 1–64 printable ASCII characters without spaces, `/` or `:`"
            ));
        }
        Ok(())
    }
}

/// `POST /v1/kubeconfig`: the kubeconfig YAML, with its embedded key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeconfigResponse {
    pub kubeconfig: String,
}

/// Never prints the credential.
impl fmt::Debug for KubeconfigResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeconfigResponse")
            .field(
                "kubeconfig",
                &format_args!("<{} bytes redacted>", self.kubeconfig.len()),
            )
            .finish()
    }
}

/// The names of [`HealthCheck`]s a control-plane node running Cilium
/// reports, in the order it reports them (a worker leaves out the control
/// plane; a node with another CNI the Cilium and host checks).
pub const HEALTH_CHECKS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "cilium-operator",
    "kubelet",
    "cilium-agent",
    "node-ready",
    "host-bpffs",
    "host-cgroup2",
    "host-modules",
    "host-bpf",
];

/// `GET /v1/health`: the node's Kubernetes checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub checks: Vec<HealthCheck>,
}

impl HealthReport {
    /// Every check passed, and there is at least one (a report with no
    /// checks says nothing is known yet, which is not healthy).
    pub fn all_ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// The checks that did not pass.
    pub fn failing(&self) -> impl Iterator<Item = &HealthCheck> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

/// One check of a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// One of [`HEALTH_CHECKS`].
    pub name: String,
    pub ok: bool,
    /// Why not, or what was seen (e.g. `/readyz: ok`).
    pub detail: String,
}

impl HealthCheck {
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

/// One entry of `GET /v1/mounts` (from `/proc/self/mountinfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: String,
}

/// One entry of `GET /v1/processes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    /// The one-letter state of `/proc/PID/stat` (`R`, `S`, `Z`, …).
    pub state: String,
    /// The command line, or `[comm]` for kernel threads.
    pub command: String,
    pub rss_bytes: u64,
}

/// `GET /v1/read?path=…`: one file, size-capped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContent {
    pub path: String,
    pub size: u64,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// UTF-8 text, or base64 when `binary`.
    pub content: String,
    pub binary: bool,
}

/// `GET /v1/services`: one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Life-cycle state.
    pub state: ServiceState,
    /// Pid of the running process.
    pub pid: Option<u32>,
    /// How many times it was started again after its first start.
    pub restarts: u32,
    /// How its last run ended.
    pub last_exit: Option<ExitInfo>,
    /// The last start failure, readiness timeout or kill failure.
    pub last_error: Option<String>,
    /// Whether its readiness check passed for the current run.
    pub ready: bool,
    /// `memory.current` of its cgroup, when cgroups with memory accounting are in use.
    pub memory_current: Option<u64>,
}

/// Where a service is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Waiting for its dependencies to be ready.
    Waiting,
    /// Spawned, not ready yet.
    Starting,
    /// Running and ready.
    Running,
    /// Exited; waiting for the backoff delay before restarting.
    Backoff,
    /// Could not be started or did not become ready (see `last_error`);
    /// retried after the backoff delay.
    Failed,
    /// Being stopped (SIGTERM sent, SIGKILL after the grace).
    Stopping,
    /// Stopped on request; not restarted.
    Stopped,
}

impl ServiceState {
    /// Every state, for exports that list them all (a Prometheus state set).
    pub const ALL: [ServiceState; 7] = [
        ServiceState::Waiting,
        ServiceState::Starting,
        ServiceState::Running,
        ServiceState::Backoff,
        ServiceState::Failed,
        ServiceState::Stopping,
        ServiceState::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Waiting => "waiting",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::Failed => "failed",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Terminating signal number, when it was killed by a signal.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// Exited normally with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}"),
            (None, None) => write!(f, "unknown exit"),
        }
    }
}

/// `GET /v1/network`: what the kernel has (every link, IPv4 routes) and,
/// once the network controller runs, what it was asked for and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkReport {
    pub links: Vec<LinkReport>,
    pub routes: Vec<KernelRoute>,
    /// Absent until the network controller has started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<NetworkControllerStatus>,
}

/// A link as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReport {
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    /// `address/prefix`, IPv4 and IPv6.
    pub addresses: Vec<String>,
}

/// An IPv4 route from the kernel's main table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRoute {
    pub destination: String,
    pub gateway: Option<String>,
    pub interface: String,
    pub metric: u32,
}

/// The network controller's view: configured links, DNS and failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkControllerStatus {
    pub links: Vec<ConfiguredLink>,
    pub dns: Vec<IpAddr>,
    pub search_domains: Vec<String>,
    /// Failures of the last apply (and of bringing up `lo`).
    pub errors: Vec<String>,
}

/// One link the controller manages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfiguredLink {
    pub name: String,
    pub index: u32,
    pub mac: Option<MacAddr>,
    /// The MTU the config set, if any.
    pub mtu: Option<u32>,
    /// Static addresses and routes from the config.
    pub addresses: Vec<Cidr>,
    pub routes: Vec<LinkRoute>,
    pub dhcp: Option<DhcpStatus>,
}

/// A route on one link; `via: None` is an on-link route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRoute {
    pub to: Cidr,
    pub via: Option<IpAddr>,
    pub metric: Option<u32>,
}

/// One link's DHCP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpStatus {
    pub phase: DhcpPhase,
    pub lease: Option<DhcpLease>,
    /// Wall-clock time of the last ACK (seconds since the epoch; may be
    /// wrong on a node that has not synced its clock yet).
    pub bound_at_unix: Option<u64>,
    /// ACKs that extended a lease already held.
    pub renewals: u32,
    /// The last failure (socket, netlink), cleared by the next success.
    pub error: Option<String>,
}

/// The DHCP client's state (RFC 2131 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DhcpPhase {
    Init,
    Selecting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
    Stopped,
}

/// What a DHCP server granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpLease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// The server identifier (option 54).
    pub server: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain_name: Option<String>,
    /// Option 119 (domain search), without trailing dots.
    pub search: Vec<String>,
    /// Option 12: the name the server suggests for this host.
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    /// Seconds; `u32::MAX` never expires.
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
}

/// The controller that owns a resource (`GET /v1/resources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concern {
    Config,
    Kernel,
    Files,
    Dns,
    Network,
    Services,
    Metrics,
    Kubernetes,
    /// OCI images baked into the node image, imported into containerd.
    Images,
}

impl Concern {
    pub fn as_str(self) -> &'static str {
        match self {
            Concern::Config => "config",
            Concern::Kernel => "kernel",
            Concern::Files => "files",
            Concern::Dns => "dns",
            Concern::Network => "network",
            Concern::Services => "services",
            Concern::Metrics => "metrics",
            Concern::Kubernetes => "kubernetes",
            Concern::Images => "images",
        }
    }
}

impl fmt::Display for Concern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One entry of `GET /v1/resources`: a resource a controller owns, its
/// desired state (from the applied config) next to what the machine shows,
/// and whether they agree (Talos' "resources you can list").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// What one resource is, by kind (the `kind` field of its JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResourceState {
    /// This node as a Kubernetes node: the addresses it registers with,
    /// whether etcd was bootstrapped here, the services it runs.
    Kubernetes {
        node_ips: Vec<std::net::IpAddr>,
        bootstrapped: bool,
        services: Vec<String>,
        error: Option<String>,
    },
    /// The applied machine config.
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
    /// A kernel module the config needs.
    KernelModule {
        present: bool,
    },
    /// A file the config places.
    File {
        op: FileOp,
        mode: u32,
        desired_bytes: usize,
        observed_bytes: Option<usize>,
    },
    /// The resolver file: the config's entries, then the leases'.
    ResolvConf {
        desired: ResolvConf,
    },
    /// A link the network controller manages.
    Link {
        observed: ConfiguredLink,
    },
    Service {
        observed: ServiceStatus,
    },
    /// The metrics endpoint.
    MetricsListener {
        desired: Option<SocketAddr>,
        observed: Option<SocketAddr>,
    },
    /// An OCI archive of the node image (`image_layout::OCI_IMAGES_DIR`)
    /// and its import into containerd's `k8s.io` namespace: pending until
    /// containerd is ready, then imported or the import's error.
    BakedImage {
        archive: String,
        imported: bool,
        error: Option<String>,
    },
}

impl ResourceState {
    /// The `kind` of the JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            ResourceState::Config { .. } => "config",
            ResourceState::Hostname { .. } => "hostname",
            ResourceState::Sysctl { .. } => "sysctl",
            ResourceState::KernelModule { .. } => "kernel_module",
            ResourceState::File { .. } => "file",
            ResourceState::ResolvConf { .. } => "resolv_conf",
            ResourceState::Link { .. } => "link",
            ResourceState::Service { .. } => "service",
            ResourceState::MetricsListener { .. } => "metrics_listener",
            ResourceState::Kubernetes { .. } => "kubernetes",
            ResourceState::BakedImage { .. } => "baked_image",
        }
    }
}

/// The nameservers and search domains of `/etc/resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_ok_only_with_checks_and_all_of_them_passing() {
        assert!(!HealthReport::default().all_ok());
        let mut r = HealthReport {
            checks: HEALTH_CHECKS
                .iter()
                .map(|n| HealthCheck::new(*n, true, "ok"))
                .collect(),
        };
        assert!(r.all_ok());
        assert_eq!(r.failing().count(), 0);
        r.checks[1] = HealthCheck::new("kube-apiserver", false, "connection refused");
        assert!(!r.all_ok());
        let failing: Vec<&str> = r.failing().map(|c| c.name.as_str()).collect();
        assert_eq!(failing, ["kube-apiserver"]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["checks"][1]["detail"], "connection refused");
        assert_eq!(serde_json::from_value::<HealthReport>(json).unwrap(), r);
    }

    #[test]
    fn kubeconfig_requests_are_checked_and_answers_never_debug_print() {
        let req = |server: Option<&str>, user: &str| KubeconfigRequest {
            server: server.map(str::to_string),
            user: user.to_string(),
        };
        for ok in [
            req(None, DEFAULT_KUBECONFIG_USER),
            req(Some("https://127.0.0.1:16443"), "ops@example"),
            req(Some("https://[fd00::1]:6443/"), "admin"),
        ] {
            assert_eq!(ok.check(), Ok(()), "{ok:?}");
        }
        for (bad, why) in [
            (
                req(Some("http://10.0.0.1:6443"), "admin"),
                "is not an API server URL",
            ),
            (
                req(Some("10.0.0.1:6443"), "admin"),
                "is not an API server URL",
            ),
            (
                req(Some("https://h:6443/api"), "admin"),
                "is not an API server URL",
            ),
            (req(None, ""), "is not a user name"),
            (req(None, "a b"), "is not a user name"),
            (req(None, "system:admin"), "is not a user name"),
        ] {
            let e = bad.check().unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        // A request body with a typo is refused, not silently defaulted.
        assert!(serde_json::from_str::<KubeconfigRequest>(r#"{"user":"a","sever":"x"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<KubeconfigRequest>(r#"{"user":"a"}"#).unwrap(),
            req(None, "a")
        );
        let answer = KubeconfigResponse {
            kubeconfig: "client-key-data: SECRET".into(),
        };
        assert!(!format!("{answer:?}").contains("SECRET"));
    }

    /// A resource reads back as what was written, its kind flattened next
    /// to the common fields (the JSON `GET /v1/resources` answers with).
    #[test]
    fn a_resource_round_trips_with_its_kind_flattened() {
        let list = vec![
            Resource::new(
                Concern::Kernel,
                "sysctl/vm.max_map_count",
                false,
                ResourceState::Sysctl {
                    desired: "262144".into(),
                    observed: Some("65530".into()),
                },
            ),
            Resource::new(
                Concern::Dns,
                "/run/basalt/resolv.conf",
                true,
                ResourceState::ResolvConf {
                    desired: ResolvConf {
                        nameservers: vec!["10.0.2.3".parse().unwrap()],
                        search: vec!["example.org".into()],
                    },
                },
            ),
            Resource::new(
                Concern::Metrics,
                "listener",
                true,
                ResourceState::MetricsListener {
                    desired: Some("127.0.0.1:9100".parse().unwrap()),
                    observed: Some("127.0.0.1:9100".parse().unwrap()),
                },
            ),
        ];
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(json[0]["controller"], "kernel");
        assert_eq!(json[0]["kind"], "sysctl");
        assert_eq!(json[0]["observed"], "65530");
        assert_eq!(json[1]["desired"]["nameservers"][0], "10.0.2.3");
        assert_eq!(json[2]["kind"], list[2].state.kind());
        let back: Vec<Resource> = serde_json::from_value(json).unwrap();
        assert_eq!(back, list);
    }
}

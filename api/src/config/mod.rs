//! Machine config v1: the typed, strictly parsed document an operator signs.
//!
//! Parsing happens in two passes over one spanned TOML tree: serde builds the
//! typed model (unknown keys and wrong types fail here), then [`validate`]
//! checks meaning (addresses, paths, role rules, trust). Every error carries
//! the TOML path and the line:column it points at.

mod disk_selector;
pub(crate) mod locate;
mod redacted;
mod registries;
mod validate;
mod values;

pub use disk_selector::{DiskSelector, DiskType, SizeMatch, SizeOp, glob_matches};
pub use locate::{ConfigError, ConfigErrors, PathSeg, TomlPath};
pub use registries::{DEFAULT_HOST, Registries, RegistryMirror, check_endpoint, check_upstream};
/// RFC 1123 host name check, for every name that comes from elsewhere
/// (DHCP's host and domain names, search lists).
pub use validate::hostname as dns_name;
pub use validate::{KUBELET_EXTRA_ARGS, KUBELET_PROTECTED_ARGS, KubeletArg, KubeletArgValue};
pub use values::{Cidr, MacAddr};

use crate::MAX_DOCUMENT_BYTES;
use crate::scope::Scope;
use crate::secret::Secret;
use crate::trust::{TrustRoots, TrustRootsError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

pub const VERSION: u32 = 1;

/// containerd's CRI drop-ins: `machine.files` may write there, and
/// registry credentials go there.
pub const CRI_DROP_INS: &str = "/etc/cri/conf.d/";

/// Files may be written only below these prefixes: everything else on a node
/// is the read-only image or owned by machined.
pub const WRITABLE_PREFIXES: &[&str] = &["/var/", CRI_DROP_INS, "/etc/cni/net.d/"];

/// containerd's keys for registry credentials in a CRI drop-in
/// (`registry.configs."<host>".auth`, and the older `registry.auths`).
const CREDENTIAL_KEYS: &[&str] = &[
    "password",
    "auth",
    "identitytoken",
    "registrytoken",
    "token",
];

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    pub version: u32,
    pub generation: u64,
    /// Where and until when this config may be applied ([`crate::scope`]).
    #[serde(default, skip_serializing_if = "is_unscoped")]
    pub scope: Scope,
    pub machine: Machine,
    pub cluster: Cluster,
    pub trust: Trust,
}

fn is_unscoped(s: &Scope) -> bool {
    *s == Scope::default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Controlplane,
    Worker,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub role: Role,
    pub hostname: Option<String>,
    pub install: Option<Install>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub time: Time,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default)]
    pub kernel: Kernel,
    #[serde(default)]
    pub files: Vec<File>,
    #[serde(default)]
    pub kubelet: Kubelet,
    pub metrics: Option<Metrics>,
    /// Registry mirrors (containerd `hosts.toml`).
    #[serde(default)]
    pub registries: Registries,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    /// The target by path (`/dev/vda`, `/dev/disk/by-id/…`); exactly one
    /// of `disk` and `selector` is set (see [`Install::target`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// The target by what it is: the one disk that matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<DiskSelector>,
    #[serde(default)]
    pub wipe: bool,
}

/// How `[machine.install]` names its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallTarget<'a> {
    Disk(&'a str),
    Selector(&'a DiskSelector),
}

impl Install {
    /// The target; None when not exactly one of `disk` and `selector` is
    /// set, which validation refuses.
    pub fn target(&self) -> Option<InstallTarget<'_>> {
        match (&self.disk, &self.selector) {
            (Some(d), None) => Some(InstallTarget::Disk(d)),
            (None, Some(s)) => Some(InstallTarget::Selector(s)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub nameservers: Vec<IpAddr>,
    #[serde(default)]
    pub search_domains: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: Option<String>,
    pub mac: Option<MacAddr>,
    #[serde(default)]
    pub dhcp: bool,
    #[serde(default)]
    pub addresses: Vec<Cidr>,
    #[serde(default)]
    pub routes: Vec<Route>,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub to: Cidr,
    pub via: Option<IpAddr>,
    pub metric: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Time {
    #[serde(default)]
    pub servers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    #[serde(default)]
    pub modules: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOp {
    /// Fails at apply time if the file already exists.
    #[default]
    Create,
    Overwrite,
    Append,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub path: String,
    pub content: String,
    #[serde(default = "default_file_mode")]
    pub mode: u32,
    #[serde(default)]
    pub op: FileOp,
}

fn default_file_mode() -> u32 {
    0o644
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Kubelet {
    /// Kubelet flags (without the leading dashes) and their values. Only the
    /// flags of [`KUBELET_EXTRA_ARGS`] are accepted; those machined sets
    /// itself ([`KUBELET_PROTECTED_ARGS`]) are refused with the reason.
    #[serde(default)]
    pub extra_args: BTreeMap<String, String>,
    /// Labels the kubelet registers the node with: Kubernetes label keys and
    /// values; none under `kubernetes.io`/`k8s.io` but those the
    /// NodeRestriction admission plugin lets a kubelet set.
    #[serde(default)]
    pub node_labels: BTreeMap<String, String>,
    /// `key = "value:Effect"` or `key = ":Effect"`, Effect one of
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute`.
    #[serde(default)]
    pub node_taints: BTreeMap<String, String>,
    #[serde(default)]
    pub node_ip_subnets: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    pub endpoint: String,
    pub token: Secret,
    pub ca_cert: String,
    pub ca_key: Option<Secret>,
    pub etcd_ca_cert: Option<String>,
    pub etcd_ca_key: Option<Secret>,
    pub front_proxy_ca_cert: Option<String>,
    pub front_proxy_ca_key: Option<Secret>,
    pub service_account_key: Option<Secret>,
    #[serde(default = "default_pod_subnets")]
    pub pod_subnets: Vec<Cidr>,
    #[serde(default = "default_service_subnets")]
    pub service_subnets: Vec<Cidr>,
    #[serde(default)]
    pub cni: Cni,
    #[serde(default)]
    pub inline_manifests: Vec<InlineManifest>,
    /// Let ordinary pods run on control-plane nodes. When false (the
    /// default), control-plane nodes register with the taint
    /// `node-role.kubernetes.io/control-plane:NoSchedule`.
    #[serde(default)]
    pub allow_scheduling_on_control_plane: bool,
    /// The cluster's DNS domain (the kubelet's `clusterDomain`, the suffix
    /// of service names): a DNS name, `cluster.local` by default.
    #[serde(default = "default_dns_domain")]
    pub dns_domain: String,
}

/// [`Cluster::dns_domain`] when the config gives none.
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";

fn default_dns_domain() -> String {
    DEFAULT_DNS_DOMAIN.to_string()
}

/// The taint a control-plane node registers with unless
/// [`Cluster::allow_scheduling_on_control_plane`].
pub const CONTROL_PLANE_TAINT_KEY: &str = "node-role.kubernetes.io/control-plane";

fn default_pod_subnets() -> Vec<Cidr> {
    vec![Cidr::v4([10, 244, 0, 0], 16)]
}

fn default_service_subnets() -> Vec<Cidr> {
    vec![Cidr::v4([10, 96, 0, 0], 12)]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CniName {
    Cilium,
    /// The reference bridge + host-local plugins: pods reach each other
    /// on one node; enough until Cilium runs.
    Bridge,
    /// Bring your own: machined writes no CNI config.
    None,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cni {
    pub name: CniName,
    /// Cilium replaces kube-proxy with eBPF service handling. Basalt ships
    /// no kube-proxy, so with Cilium this must stay true.
    #[serde(default = "default_true")]
    pub kube_proxy_replacement: bool,
    /// `[cluster.cni.cilium]`: only with `name = "cilium"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cilium: Option<Cilium>,
}

impl Default for Cni {
    fn default() -> Self {
        Self {
            name: CniName::Cilium,
            kube_proxy_replacement: true,
            cilium: None,
        }
    }
}

impl Cni {
    /// The Cilium settings in force (the defaults when the table is absent).
    pub fn cilium_settings(&self) -> Cilium {
        self.cilium.clone().unwrap_or_default()
    }
}

/// The Cilium settings an operator changes; everything else is fixed by
/// machined (see machined's `kubernetes::cilium`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cilium {
    /// `tunnel` (the default: pods' traffic between nodes is encapsulated)
    /// or `native` (the network routes pod CIDRs itself).
    #[serde(default)]
    pub routing_mode: RoutingMode,
    /// Encapsulation in tunnel mode: `vxlan` (default) or `geneve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_protocol: Option<TunnelProtocol>,
    /// Native routing: the CIDR the network routes without masquerading
    /// (usually the pod subnets). Required with `routing_mode = "native"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_routing_cidr: Option<Cidr>,
    /// Pods' MTU; by default Cilium derives it from the node's links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    #[default]
    Tunnel,
    Native,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelProtocol {
    #[default]
    Vxlan,
    Geneve,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InlineManifest {
    pub name: String,
    pub contents: String,
}

/// A config's `[trust]` table: the trust roots it installs, in the same
/// shape as an image's `trust.toml`.
pub use crate::trust::TrustTable as Trust;

impl Cluster {
    /// Every `Secret` of the config with its TOML path: the one list for
    /// whoever must compare or hide them (the diff, machined's log
    /// redaction). A new `Secret` field goes here.
    pub fn secrets(&self) -> [(&'static str, Option<&Secret>); 5] {
        [
            ("cluster.token", Some(&self.token)),
            ("cluster.ca_key", self.ca_key.as_ref()),
            ("cluster.etcd_ca_key", self.etcd_ca_key.as_ref()),
            (
                "cluster.front_proxy_ca_key",
                self.front_proxy_ca_key.as_ref(),
            ),
            (
                "cluster.service_account_key",
                self.service_account_key.as_ref(),
            ),
        ]
    }
}

impl MachineConfig {
    /// The registry credentials this config writes into CRI drop-ins: the
    /// string values of [`CREDENTIAL_KEYS`] in each `machine.files` entry
    /// below [`CRI_DROP_INS`]. An entry that is not TOML gives none (and
    /// containerd refuses it).
    pub fn registry_credentials(&self) -> Vec<String> {
        fn walk(v: &toml::Value, credential: bool, out: &mut Vec<String>) {
            match v {
                toml::Value::String(s) if credential => out.push(s.clone()),
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let k = k.to_ascii_lowercase();
                        walk(v, credential || CREDENTIAL_KEYS.contains(&k.as_str()), out);
                    }
                }
                toml::Value::Array(a) => a.iter().for_each(|v| walk(v, credential, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        for f in &self.machine.files {
            if !f.path.starts_with(CRI_DROP_INS) {
                continue;
            }
            if let Ok(t) = f.content.parse::<toml::Table>() {
                walk(&toml::Value::Table(t), false, &mut out);
            }
        }
        out
    }

    /// Parse and fully validate a config document. All semantic errors are
    /// reported together; a syntax or type error stops at the first.
    pub fn parse(bytes: &[u8]) -> Result<MachineConfig, ConfigErrors> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(ConfigErrors::single(ConfigError::document(format!(
                "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes",
                bytes.len()
            ))));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let at = e.valid_up_to();
            let (line, col) =
                crate::text_position::line_col(&String::from_utf8_lossy(&bytes[..at]), at);
            ConfigErrors::single(ConfigError {
                path: "(document)".into(),
                line,
                col,
                message: "not valid UTF-8; a config must be UTF-8 text".into(),
            })
        })?;
        let tree = toml::de::DeTable::parse(text)
            .map_err(|e| ConfigErrors::single(locate::syntax_error(text, &e)))?;
        let de = toml::Deserializer::from(tree.clone());
        let config: MachineConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| ConfigErrors::single(locate::serde_error(text, e)))?;
        let problems = validate::validate(&config);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(
                problems
                    .into_iter()
                    .map(|(path, message)| locate::at_path(text, &tree, path, message))
                    .collect(),
            ))
        }
    }

    /// The admin keys, reader keys and threshold this config installs.
    /// Valid only after [`MachineConfig::parse`] succeeded (keys were checked).
    pub fn trust_roots(&self) -> Result<TrustRoots, TrustRootsError> {
        TrustRoots::from_table(&self.trust)
    }
}

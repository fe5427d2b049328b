//! Cilium run natively, as Cilium documents for agents outside a pod: the
//! agent on every node and the operator on control-plane nodes are
//! supervised host processes, like the rest of Kubernetes here. The agent
//! compiles its BPF programs on the node with clang (in the image, with
//! Cilium's BPF sources copied to [`LIB_DIR`]`/bpf`), replaces kube-proxy, and
//! writes the CNI config only once it is ready, so the kubelet reports the
//! node Ready only then.
//!
//! Credentials: the agent talks to the API server as its node (the
//! kubelet's kubeconfig, `system:node:<name>`, rotated by the kubelet), and
//! the [`rbac`] grants group `system:nodes` what Cilium's own chart grants
//! the agent's ServiceAccount; no extra secret is distributed, and the API
//! server's audit log names the node that acted. The operator runs on
//! control-plane nodes with a client certificate of its own
//! ([`OPERATOR_USER`]).
//!
//! Fixed here (not config): IPAM `kubernetes` (the controller-manager's
//! node CIDRs), CRD identities, kube-proxy replacement with BPF
//! masquerading, no L7 proxy (Envoy is C++, not buildable from Go modules),
//! no Hubble.

use super::components::{APISERVER, Components, slow_start};
use super::layout::CNI_CONF_DIR;
use crate::host::Host;
use crate::host::bpf::BpfProbe;
use crate::host::mounts::{BPF_FS, BPF_FS_MAGIC, CGROUP2_FS, CGROUP2_MAGIC};
use crate::supervisor::{HttpProbe, Readiness, ServiceSpec};
use basalt_api::config::{Cilium, MachineConfig, RoutingMode, TunnelProtocol};
use basalt_api::rpc::HealthCheck;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::path::Path;

pub const AGENT: &str = "cilium-agent";
pub const OPERATOR: &str = "cilium-operator";
/// The agent's `--lib-dir`: it compiles from `<LIB_DIR>/bpf` and writes
/// the kernel's feature macros into that tree, so it is a writable copy
/// (RAM-backed /var, made at each boot) of [`IMAGE_BPF_DIR`].
pub const LIB_DIR: &str = "/var/lib/cilium";
/// Cilium's BPF sources as the image's packages install them, read-only.
pub const IMAGE_BPF_DIR: &str = "/usr/lib/cilium/bpf";
/// The conflist the agent writes when ready (`--write-cni-conf-when-ready`).
pub const CONFLIST: &str = "05-cilium.conflist";
/// The agent's health API, plain HTTP on loopback (Cilium's default port).
pub const AGENT_HEALTH_PORT: u16 = 9879;
/// The operator's API (its `/healthz`), on loopback.
pub const OPERATOR_API_PORT: u16 = 9234;
/// The user of the operator's client certificate.
pub const OPERATOR_USER: &str = "basalt:cilium-operator";
/// The namespace Cilium's namespaced objects (leases, identities' GC) use.
pub const NAMESPACE: &str = "kube-system";
/// clang and Cilium's helpers: clang stays at its Debian path (it finds
/// libclang-cpp through `$ORIGIN/../lib`); iptables is in /usr/sbin.
const PATH: &str = "/usr/lib/llvm-19/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Components<'_> {
    /// The agent: every node, once the node's credentials exist.
    pub fn cilium_agent(&self) -> ServiceSpec {
        let l = self.layout;
        let settings = self.config.cluster.cni.cilium_settings();
        let mut argv: Vec<String> = vec![
            "/usr/bin/cilium-agent".into(),
            format!("--k8s-kubeconfig-path={}", self.path(&l.kubelet_kubeconfig)),
            format!("--k8s-namespace={NAMESPACE}"),
            "--identity-allocation-mode=crd".into(),
            "--ipam=kubernetes".into(),
            "--k8s-require-ipv4-pod-cidr=true".into(),
            "--enable-ipv4=true".into(),
            "--enable-ipv6=false".into(),
            "--kube-proxy-replacement=true".into(),
            "--enable-bpf-masquerade=true".into(),
            "--enable-ipv4-masquerade=true".into(),
            "--enable-l7-proxy=false".into(),
            "--enable-hubble=false".into(),
            // Node-to-node health checking stays on; the health endpoint
            // (one more BPF program set to compile, and relaunched every
            // few seconds when its start is slow, as under emulation) is off.
            "--enable-endpoint-health-checking=false".into(),
            // BPF maps sized from the node's memory, as Cilium's chart does.
            "--bpf-map-dynamic-size-ratio=0.0025".into(),
            format!("--lib-dir={}", self.path(Path::new(LIB_DIR))),
            format!("--bpf-root={}", self.path(Path::new(BPF_FS))),
            format!("--cgroup-root={}", self.path(Path::new(CGROUP2_FS))),
            format!(
                "--write-cni-conf-when-ready={}",
                self.path(&Path::new(CNI_CONF_DIR).join(CONFLIST))
            ),
            format!("--agent-health-port={AGENT_HEALTH_PORT}"),
            // gops is a debugging agent on a TCP port that also wants a
            // writable $HOME: neither on a node.
            "--enable-gops=false".into(),
        ];
        match settings.routing_mode {
            RoutingMode::Tunnel => {
                argv.push("--routing-mode=tunnel".into());
                let protocol = match settings.tunnel_protocol.unwrap_or_default() {
                    TunnelProtocol::Vxlan => "vxlan",
                    TunnelProtocol::Geneve => "geneve",
                };
                argv.push(format!("--tunnel-protocol={protocol}"));
            }
            RoutingMode::Native => {
                argv.push("--routing-mode=native".into());
                if let Some(cidr) = &settings.native_routing_cidr {
                    argv.push(format!("--ipv4-native-routing-cidr={cidr}"));
                }
                // Nodes on one L2 segment learn each other's pod CIDRs.
                argv.push("--auto-direct-node-routes=true".into());
            }
        }
        if let Some(mtu) = settings.mtu {
            argv.push(format!("--mtu={mtu}"));
        }
        let mut spec = ServiceSpec::new(AGENT, argv);
        spec.env = vec![
            ("PATH".into(), PATH.into()),
            ("K8S_NODE_NAME".into(), self.node_name.into()),
            ("CILIUM_K8S_NAMESPACE".into(), NAMESPACE.into()),
        ];
        if self.config.machine.role == basalt_api::config::Role::Controlplane {
            // Nothing to talk to before the local API server answers.
            spec.depends_on = vec![APISERVER.into()];
        }
        spec.readiness = Readiness::Http(HttpProbe {
            address: format!("127.0.0.1:{AGENT_HEALTH_PORT}"),
            path: "/healthz".into(),
            tls: None,
        });
        slow_start(&mut spec);
        spec
    }

    /// The operator (generic flavour): registers Cilium's CRDs, garbage
    /// collects identities and endpoints. Control-plane nodes only.
    pub fn cilium_operator(&self) -> ServiceSpec {
        let l = self.layout;
        let argv: Vec<String> = vec![
            "/usr/bin/cilium-operator-generic".into(),
            format!(
                "--k8s-kubeconfig-path={}",
                self.path(&l.cilium_operator_kubeconfig)
            ),
            format!("--k8s-namespace={NAMESPACE}"),
            "--identity-allocation-mode=crd".into(),
            "--ipam=kubernetes".into(),
            format!("--operator-api-serve-addr=127.0.0.1:{OPERATOR_API_PORT}"),
            "--enable-metrics=false".into(),
            "--enable-gops=false".into(),
            // These look for Cilium's pods (label k8s-app=cilium); a native
            // agent has none, so they would only ever misreport.
            "--remove-cilium-node-taints=false".into(),
            "--set-cilium-is-up-condition=false".into(),
            "--set-cilium-node-taints=false".into(),
            "--unmanaged-pod-watcher-interval=0".into(),
            // The same slack as the controller-manager's and scheduler's
            // (components::leader_election), in the operator's own flags.
            "--leader-election-lease-duration=60s".into(),
            "--leader-election-renew-deadline=45s".into(),
            "--leader-election-retry-period=5s".into(),
        ];
        let mut spec = ServiceSpec::new(OPERATOR, argv);
        spec.env = vec![("CILIUM_K8S_NAMESPACE".into(), NAMESPACE.into())];
        spec.depends_on = vec![APISERVER.into()];
        spec.readiness = Readiness::Http(HttpProbe {
            address: format!("127.0.0.1:{OPERATOR_API_PORT}"),
            path: "/healthz".into(),
            tls: None,
        });
        slow_start(&mut spec);
        spec
    }
}

/// The kernel modules the datapath needs with `settings`: the tunnel's
/// device, and tc's clsact qdisc and BPF classifier (this kernel predates
/// tcx). No modprobe runs on the node: they must be in the image's list.
pub fn required_modules(settings: &Cilium) -> Vec<&'static str> {
    let mut modules = vec![
        "sch_ingress",
        "cls_bpf",
        // Its netlink handles open the XFRM family (even without IPsec).
        "xfrm_user",
        // Its iptables rules: port matches, CT --notrack, the socket match.
        "xt_tcpudp",
        "xt_CT",
        "xt_socket",
        // sock_diag: the kube-proxy replacement closes sockets to deleted
        // backends.
        "inet_diag",
        "tcp_diag",
        "udp_diag",
    ];
    if settings.routing_mode == RoutingMode::Tunnel {
        modules.push(match settings.tunnel_protocol.unwrap_or_default() {
            TunnelProtocol::Vxlan => "vxlan",
            TunnelProtocol::Geneve => "geneve",
        });
    }
    modules
}

/// What Cilium needs of the host, each with what was seen: the BPF
/// filesystem, the unified cgroup hierarchy, the datapath's modules, and a
/// BPF program the kernel accepts (`probe`, run once per boot).
pub fn host_checks(host: &Host, settings: &Cilium, probe: &BpfProbe) -> Vec<HealthCheck> {
    let mounted = |path: &str, magic: u64, what: &str| {
        let seen = host.filesystem_magic(path);
        let ok = seen == Some(magic);
        let detail = match seen {
            _ if ok => format!("{what} at {path}"),
            Some(other) => format!("{path} is not {what} (filesystem magic {other:#x})"),
            None => format!("{path} cannot be examined; {what} is not mounted there"),
        };
        HealthCheck::new(
            format!("host-{}", what.split(' ').next().unwrap_or(what)),
            ok,
            detail,
        )
    };
    let mut checks = vec![
        mounted(BPF_FS, BPF_FS_MAGIC, "bpffs"),
        mounted(CGROUP2_FS, CGROUP2_MAGIC, "cgroup2 (unified)"),
    ];
    let modules = required_modules(settings);
    let missing: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|m| !host.module_present(m))
        .collect();
    checks.push(HealthCheck::new(
        "host-modules",
        missing.is_empty(),
        if missing.is_empty() {
            format!("loaded: {}", modules.join(", "))
        } else {
            format!(
                "not loaded: {} (add them to the image profile's [kernel] modules)",
                missing.join(", ")
            )
        },
    ));
    checks.push(match probe {
        BpfProbe::Jited => {
            HealthCheck::new("host-bpf", true, "a BPF program loads and is JIT-compiled")
        }
        BpfProbe::Interpreted => HealthCheck::new(
            "host-bpf",
            true,
            "a BPF program loads but is interpreted (net.core.bpf_jit_enable is 0): slow datapath",
        ),
        BpfProbe::Refused(reason) => HealthCheck::new(
            "host-bpf",
            false,
            format!(
                "the kernel refused a trivial BPF program: {reason} (the kernel needs CONFIG_BPF_SYSCALL, and machined CAP_BPF or CAP_SYS_ADMIN)"
            ),
        ),
    });
    checks
}

/// Whether `cfg` runs Cilium.
pub fn enabled(cfg: &MachineConfig) -> bool {
    cfg.cluster.cni.name == basalt_api::config::CniName::Cilium
}

type Rule<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str]);

fn cluster_role(name: &str, rules: &[Rule<'_>]) -> ClusterRole {
    let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        rules: Some(
            rules
                .iter()
                .map(|(groups, resources, verbs)| PolicyRule {
                    api_groups: strings(groups),
                    resources: strings(resources),
                    verbs: verbs.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];

/// The agent's permissions: those Cilium's chart gives its agent for this
/// feature set (no Secrets: no L7 proxy, no ingress).
pub fn agent_role() -> ClusterRole {
    cluster_role(
        "basalt:cilium-agent",
        &[
            (&["networking.k8s.io"], &["networkpolicies"], READ),
            (&["discovery.k8s.io"], &["endpointslices"], READ),
            (&[""], &["namespaces", "services", "pods", "nodes"], READ),
            (
                &["apiextensions.k8s.io"],
                &["customresourcedefinitions"],
                READ,
            ),
            (
                &["cilium.io"],
                &[
                    "ciliumloadbalancerippools",
                    "ciliumbgpnodeconfigs",
                    "ciliumbgpadvertisements",
                    "ciliumbgppeerconfigs",
                    "ciliumclusterwideenvoyconfigs",
                    "ciliumclusterwidenetworkpolicies",
                    "ciliumegressgatewaypolicies",
                    "ciliumendpoints",
                    "ciliumendpointslices",
                    "ciliumenvoyconfigs",
                    "ciliumidentities",
                    "ciliumlocalredirectpolicies",
                    "ciliumnetworkpolicies",
                    "ciliumnodes",
                    "ciliumnodeconfigs",
                    "ciliumcidrgroups",
                    "ciliuml2announcementpolicies",
                    "ciliumpodippools",
                    "ciliumdatapathplugins",
                ],
                &["list", "watch"],
            ),
            (
                &["cilium.io"],
                &["ciliumidentities", "ciliumendpoints", "ciliumnodes"],
                &["create"],
            ),
            (&["cilium.io"], &["ciliumidentities"], &["update"]),
            (&["cilium.io"], &["ciliumendpoints"], &["delete", "get"]),
            (
                &["cilium.io"],
                &["ciliumnodes", "ciliumnodes/status"],
                &["get", "update"],
            ),
            (
                &["cilium.io"],
                &[
                    "ciliumendpoints/status",
                    "ciliumendpoints",
                    "ciliuml2announcementpolicies/status",
                    "ciliumbgpnodeconfigs/status",
                ],
                &["patch"],
            ),
        ],
    )
}

/// The agent reads its ConfigMap (`cilium-config`, optional: machined
/// configures it by flags) and only that, in [`NAMESPACE`].
pub fn agent_config_role() -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some("basalt:cilium-agent-config".into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec!["cilium-config".into()]),
            verbs: READ.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }]),
    }
}

/// Every CRD the operator registers (and may update).
const CRDS: &[&str] = &[
    "ciliumloadbalancerippools.cilium.io",
    "ciliumbgpclusterconfigs.cilium.io",
    "ciliumbgppeerconfigs.cilium.io",
    "ciliumbgpadvertisements.cilium.io",
    "ciliumbgpnodeconfigs.cilium.io",
    "ciliumbgpnodeconfigoverrides.cilium.io",
    "ciliumclusterwideenvoyconfigs.cilium.io",
    "ciliumclusterwidenetworkpolicies.cilium.io",
    "ciliumegressgatewaypolicies.cilium.io",
    "ciliumendpoints.cilium.io",
    "ciliumendpointslices.cilium.io",
    "ciliumenvoyconfigs.cilium.io",
    "ciliumidentities.cilium.io",
    "ciliumlocalredirectpolicies.cilium.io",
    "ciliumnetworkpolicies.cilium.io",
    "ciliumnodes.cilium.io",
    "ciliumnodeconfigs.cilium.io",
    "ciliumcidrgroups.cilium.io",
    "ciliuml2announcementpolicies.cilium.io",
    "ciliumpodippools.cilium.io",
    "ciliumgatewayclassconfigs.cilium.io",
    "ciliumdatapathplugins.cilium.io",
];

/// The operator's permissions, from Cilium's chart for this feature set.
pub fn operator_role() -> ClusterRole {
    let mut role = cluster_role(
        "basalt:cilium-operator",
        &[
            (&[""], &["pods"], READ),
            (&[""], &["nodes"], &["list", "watch"]),
            (&["discovery.k8s.io"], &["endpointslices"], READ),
            (&[""], &["namespaces", "services"], READ),
            (
                &["cilium.io"],
                &["ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"],
                &[
                    "create",
                    "update",
                    "deletecollection",
                    "patch",
                    "get",
                    "list",
                    "watch",
                ],
            ),
            (
                &["cilium.io"],
                &[
                    "ciliumnetworkpolicies/status",
                    "ciliumclusterwidenetworkpolicies/status",
                ],
                &["patch", "update"],
            ),
            (
                &["cilium.io"],
                &["ciliumendpoints", "ciliumidentities"],
                &["delete", "list", "watch"],
            ),
            (&["cilium.io"], &["ciliumidentities"], &["update"]),
            (
                &["cilium.io"],
                &["ciliumnodes"],
                &["create", "update", "get", "list", "watch", "delete"],
            ),
            (&["cilium.io"], &["ciliumnodes/status"], &["update"]),
            (
                &["cilium.io"],
                &[
                    "ciliumendpointslices",
                    "ciliumenvoyconfigs",
                    "ciliumbgpclusterconfigs",
                    "ciliumbgpnodeconfigoverrides",
                    "ciliumbgppeerconfigs",
                    "ciliumbgpadvertisements",
                    "ciliumbgpnodeconfigs",
                    "ciliumcidrgroups",
                ],
                &[
                    "create", "update", "get", "list", "watch", "delete", "patch",
                ],
            ),
            (
                &["cilium.io"],
                &[
                    "ciliumloadbalancerippools",
                    "ciliumpodippools",
                    "ciliumbgppeerconfigs",
                    "ciliumdatapathplugins",
                ],
                READ,
            ),
            (&["cilium.io"], &["ciliumpodippools"], &["create"]),
            (
                &["cilium.io"],
                &["ciliumloadbalancerippools/status"],
                &["patch"],
            ),
            (
                &["apiextensions.k8s.io"],
                &["customresourcedefinitions"],
                &["create", "get", "list", "watch"],
            ),
            (
                &["coordination.k8s.io"],
                &["leases"],
                &["create", "get", "update"],
            ),
        ],
    );
    if let Some(rules) = role.rules.as_mut() {
        rules.push(PolicyRule {
            api_groups: Some(vec!["apiextensions.k8s.io".into()]),
            resources: Some(vec!["customresourcedefinitions".into()]),
            resource_names: Some(CRDS.iter().map(|s| s.to_string()).collect()),
            verbs: vec!["update".into()],
            ..Default::default()
        });
    }
    role
}

#[cfg(test)]
mod tests;

//! The Kubernetes components as supervised services: their flags, readiness
//! checks and generated config files, all pure functions of the machine
//! config, the node's identity and the [`Layout`]. Nothing here touches the
//! host; the kubernetes controller writes and starts what this returns.
//!
//! Flags follow kubeadm's and Talos' secure defaults (see
//! ../shared/notes/k8s-node-research.md): Node,RBAC authorization,
//! NodeRestriction, no anonymous auth, TLS everywhere with the cluster's own
//! CAs, certificates verified in every direction.

use super::layout::{
    APISERVER_PORT, CONTROLLER_MANAGER_PORT, CRI_ENDPOINT, CertPair, ETCD_CLIENT_PORT,
    ETCD_PEER_PORT, KUBELET_HEALTHZ_PORT, KUBELET_PORT, KUBELET_ROOT, Layout, SCHEDULER_PORT,
};
use crate::supervisor::{Backoff, HttpProbe, Readiness, ServiceSpec, TlsVerify};
use basalt_api::config::{CONTROL_PLANE_TAINT_KEY, Cidr, MachineConfig, Role};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kubelet's CRI call timeout on a Cilium node; a sandbox gets twice
/// this, 20 min, the one bound on a pod's first start (the agent compiling
/// the pods' BPF program: a second on real hardware, minutes under
/// emulation, more with two emulated nodes sharing the cores). The cost: a
/// runtime that hangs is given up on after 10 min instead of 2.
pub const CILIUM_RUNTIME_REQUEST_TIMEOUT: &str = "10m";

pub const ETCD: &str = "etcd";
pub const APISERVER: &str = "kube-apiserver";
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const SCHEDULER: &str = "kube-scheduler";
pub const KUBELET: &str = "kubelet";
/// The container runtime's service (see [`crate::containerd`]).
pub const CONTAINERD: &str = "containerd";

/// The control-plane components, in start order.
pub const CONTROL_PLANE: [&str; 4] = [ETCD, APISERVER, CONTROLLER_MANAGER, SCHEDULER];

/// The bridge CNI config machined owns until a CNI such as Cilium installs its own.
pub const BRIDGE_CONFLIST: &str = "10-basalt-bridge.conflist";
/// The Linux bridge the bridge CNI plugin creates.
pub const BRIDGE_NAME: &str = "cni0";

/// Everything the components are derived from.
pub struct Components<'a> {
    pub config: &'a MachineConfig,
    pub layout: &'a Layout,
    /// The Kubernetes node name (the host name, lower-cased).
    pub node_name: &'a str,
    /// The address the node registers with and the control plane advertises.
    pub node_ip: IpAddr,
    /// Maps a node path to the path a process sees (identity on a node; a
    /// dev root in dev mode and tests).
    pub root: &'a Path,
}

impl Components<'_> {
    pub(super) fn path(&self, node_path: &Path) -> String {
        self.root
            .join(node_path.strip_prefix("/").unwrap_or(node_path))
            .display()
            .to_string()
    }

    fn pair(&self, pair: &CertPair) -> (String, String) {
        (self.path(&pair.cert), self.path(&pair.key))
    }

    fn probe(&self, port: u16, path: &str, ca: &CertPair, client: &CertPair) -> Readiness {
        Readiness::Http(HttpProbe {
            address: format!("127.0.0.1:{port}"),
            path: path.into(),
            tls: Some(TlsVerify {
                server_name: "127.0.0.1".into(),
                ca: PathBuf::from(self.path(&ca.cert)),
                client: Some((
                    PathBuf::from(self.path(&client.cert)),
                    PathBuf::from(self.path(&client.key)),
                )),
            }),
        })
    }

    fn ip_url(&self, port: u16) -> String {
        match self.node_ip {
            IpAddr::V4(ip) => format!("https://{ip}:{port}"),
            IpAddr::V6(ip) => format!("https://[{ip}]:{port}"),
        }
    }

    fn cluster_domain(&self) -> &str {
        &self.config.cluster.dns_domain
    }

    /// The services this node runs once it runs Kubernetes: the control
    /// plane (on a bootstrapped control-plane node), the kubelet, and with
    /// Cilium its operator (control plane) and agent (once the node has
    /// credentials: `node_credentials`, the kubelet's kubeconfig exists).
    pub fn services(&self, bootstrapped: bool, node_credentials: bool) -> Vec<ServiceSpec> {
        let mut specs = Vec::new();
        let cilium = super::cilium::enabled(self.config);
        if self.config.machine.role == Role::Controlplane {
            if !bootstrapped {
                // Nothing to register with until etcd is initialised.
                return specs;
            }
            specs.extend([
                self.etcd(),
                self.apiserver(),
                self.controller_manager(),
                self.scheduler(),
            ]);
            if cilium {
                specs.push(self.cilium_operator());
            }
        }
        specs.push(self.kubelet());
        if cilium && node_credentials {
            specs.push(self.cilium_agent());
        }
        specs
    }

    pub fn etcd(&self) -> ServiceSpec {
        let l = self.layout;
        let (cert, key) = self.pair(&l.etcd_server);
        let (peer_cert, peer_key) = self.pair(&l.etcd_peer);
        let ca = self.path(&l.etcd_ca.cert);
        let name = self.node_name;
        let peer_url = self.ip_url(ETCD_PEER_PORT);
        let argv = vec![
            "/usr/bin/etcd".into(),
            format!("--name={name}"),
            format!("--data-dir={}", self.path(&l.etcd_data)),
            format!(
                "--listen-client-urls=https://127.0.0.1:{ETCD_CLIENT_PORT},{}",
                self.ip_url(ETCD_CLIENT_PORT)
            ),
            format!("--advertise-client-urls={}", self.ip_url(ETCD_CLIENT_PORT)),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={name}={peer_url}"),
            // Only read when the data directory is empty: the first start
            // after `bootstrap` creates the cluster; later starts rejoin it.
            "--initial-cluster-state=new".into(),
            format!("--initial-cluster-token={}", self.config.cluster.name),
            format!("--cert-file={cert}"),
            format!("--key-file={key}"),
            format!("--trusted-ca-file={ca}"),
            "--client-cert-auth=true".into(),
            format!("--peer-cert-file={peer_cert}"),
            format!("--peer-key-file={peer_key}"),
            format!("--peer-trusted-ca-file={ca}"),
            "--peer-client-cert-auth=true".into(),
            "--listen-metrics-urls=http://127.0.0.1:2381".into(),
            "--snapshot-count=10000".into(),
        ];
        let mut spec = ServiceSpec::new(ETCD, argv);
        spec.readiness = self.probe(
            ETCD_CLIENT_PORT,
            "/readyz",
            &l.etcd_ca,
            &l.apiserver_etcd_client,
        );
        slow_start(&mut spec);
        spec
    }

    pub fn apiserver(&self) -> ServiceSpec {
        let l = self.layout;
        let c = &self.config.cluster;
        let (tls_cert, tls_key) = self.pair(&l.apiserver);
        let (etcd_cert, etcd_key) = self.pair(&l.apiserver_etcd_client);
        let (kubelet_cert, kubelet_key) = self.pair(&l.apiserver_kubelet_client);
        let (proxy_cert, proxy_key) = self.pair(&l.front_proxy_client);
        let argv = vec![
            "/usr/bin/kube-apiserver".into(),
            format!("--advertise-address={}", self.node_ip),
            format!("--secure-port={APISERVER_PORT}"),
            format!("--etcd-servers=https://127.0.0.1:{ETCD_CLIENT_PORT}"),
            format!("--etcd-cafile={}", self.path(&l.etcd_ca.cert)),
            format!("--etcd-certfile={etcd_cert}"),
            format!("--etcd-keyfile={etcd_key}"),
            format!("--client-ca-file={}", self.path(&l.ca.cert)),
            format!("--tls-cert-file={tls_cert}"),
            format!("--tls-private-key-file={tls_key}"),
            "--tls-min-version=VersionTLS12".into(),
            format!("--kubelet-client-certificate={kubelet_cert}"),
            format!("--kubelet-client-key={kubelet_key}"),
            // Kubelets serve with certificates machined issues from the
            // cluster CA: verify them, as kubeadm does not by default.
            format!("--kubelet-certificate-authority={}", self.path(&l.ca.cert)),
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--anonymous-auth=false".into(),
            "--enable-bootstrap-token-auth=true".into(),
            format!(
                "--service-account-issuer=https://kubernetes.default.svc.{}",
                self.cluster_domain()
            ),
            format!(
                "--service-account-key-file={}",
                self.path(&l.service_account_pub)
            ),
            format!(
                "--service-account-signing-key-file={}",
                self.path(&l.service_account_key)
            ),
            format!("--service-cluster-ip-range={}", join(&c.service_subnets)),
            format!("--proxy-client-cert-file={proxy_cert}"),
            format!("--proxy-client-key-file={proxy_key}"),
            format!(
                "--requestheader-client-ca-file={}",
                self.path(&l.front_proxy_ca.cert)
            ),
            "--requestheader-allowed-names=front-proxy-client".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
        ];
        let mut spec = ServiceSpec::new(APISERVER, argv);
        spec.depends_on = vec![ETCD.into()];
        spec.readiness = self.probe(
            APISERVER_PORT,
            "/readyz",
            &l.ca,
            &l.apiserver_kubelet_client,
        );
        slow_start(&mut spec);
        spec
    }

    pub fn controller_manager(&self) -> ServiceSpec {
        let l = self.layout;
        let c = &self.config.cluster;
        let kubeconfig = self.path(&l.controller_manager_kubeconfig);
        let (tls_cert, tls_key) = self.pair(&l.controller_manager_serving);
        let (ca_cert, ca_key) = self.pair(&l.ca);
        let mut argv: Vec<String> = vec![
            "/usr/bin/kube-controller-manager".into(),
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={CONTROLLER_MANAGER_PORT}"),
            format!("--tls-cert-file={tls_cert}"),
            format!("--tls-private-key-file={tls_key}"),
            format!("--client-ca-file={ca_cert}"),
            format!(
                "--requestheader-client-ca-file={}",
                self.path(&l.front_proxy_ca.cert)
            ),
            // Signs kubelet client CSRs (TLS bootstrap and rotation).
            format!("--cluster-signing-cert-file={ca_cert}"),
            format!("--cluster-signing-key-file={ca_key}"),
            format!("--root-ca-file={ca_cert}"),
            format!(
                "--service-account-private-key-file={}",
                self.path(&l.service_account_key)
            ),
            "--use-service-account-credentials=true".into(),
            "--allocate-node-cidrs=true".into(),
            format!("--cluster-cidr={}", join(&c.pod_subnets)),
            format!("--service-cluster-ip-range={}", join(&c.service_subnets)),
            format!("--cluster-name={}", c.name),
            // tokencleaner removes expired bootstrap tokens; bootstrapsigner
            // is not needed (nodes do not discover through cluster-info).
            "--controllers=*,tokencleaner".into(),
        ];
        argv.extend(leader_election());
        argv.push("--profiling=false".into());
        let mut spec = ServiceSpec::new(CONTROLLER_MANAGER, argv);
        spec.depends_on = vec![APISERVER.into()];
        spec.readiness = self.probe(
            CONTROLLER_MANAGER_PORT,
            "/healthz",
            &l.ca,
            &l.apiserver_kubelet_client,
        );
        slow_start(&mut spec);
        spec
    }

    pub fn scheduler(&self) -> ServiceSpec {
        let l = self.layout;
        let kubeconfig = self.path(&l.scheduler_kubeconfig);
        let (tls_cert, tls_key) = self.pair(&l.scheduler_serving);
        let mut argv: Vec<String> = vec![
            "/usr/bin/kube-scheduler".into(),
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={SCHEDULER_PORT}"),
            format!("--tls-cert-file={tls_cert}"),
            format!("--tls-private-key-file={tls_key}"),
            format!("--client-ca-file={}", self.path(&l.ca.cert)),
            format!(
                "--requestheader-client-ca-file={}",
                self.path(&l.front_proxy_ca.cert)
            ),
        ];
        argv.extend(leader_election());
        argv.push("--profiling=false".into());
        let mut spec = ServiceSpec::new(SCHEDULER, argv);
        spec.depends_on = vec![APISERVER.into()];
        spec.readiness = self.probe(
            SCHEDULER_PORT,
            "/healthz",
            &l.ca,
            &l.apiserver_kubelet_client,
        );
        slow_start(&mut spec);
        spec
    }

    pub fn kubelet(&self) -> ServiceSpec {
        let l = self.layout;
        let k = &self.config.machine.kubelet;
        let mut argv = vec![
            "/usr/bin/kubelet".into(),
            format!("--config={}", self.path(&l.kubelet_config)),
            format!("--kubeconfig={}", self.path(&l.kubelet_kubeconfig)),
            format!("--cert-dir={}", self.path(&l.kubelet_cert_dir)),
            format!("--root-dir={}", self.path(Path::new(KUBELET_ROOT))),
            // The default (/usr/libexec/...) is in the read-only image.
            format!(
                "--volume-plugin-dir={}",
                self.path(&Path::new(KUBELET_ROOT).join("volumeplugins"))
            ),
            format!("--hostname-override={}", self.node_name),
            format!("--node-ip={}", self.node_ip),
        ];
        if self.config.machine.role == Role::Worker {
            argv.push(format!(
                "--bootstrap-kubeconfig={}",
                self.path(&l.kubelet_bootstrap_kubeconfig)
            ));
        }
        if !k.node_labels.is_empty() {
            let labels: Vec<String> = k
                .node_labels
                .iter()
                .map(|(key, v)| format!("{key}={v}"))
                .collect();
            argv.push(format!("--node-labels={}", labels.join(",")));
        }
        // Validated against an allow-list when the config was parsed.
        argv.extend(k.extra_args.iter().map(|(key, v)| format!("--{key}={v}")));
        let mut spec = ServiceSpec::new(KUBELET, argv);
        spec.depends_on = vec![CONTAINERD.into()];
        if self.config.machine.role == Role::Controlplane {
            after_apiserver_listens(&mut spec);
        }
        // The kubelet's healthz is plain HTTP on loopback only.
        spec.readiness = Readiness::Http(HttpProbe {
            address: format!("127.0.0.1:{KUBELET_HEALTHZ_PORT}"),
            path: "/healthz".into(),
            tls: None,
        });
        slow_start(&mut spec);
        spec
    }

    /// The taints the node registers with: the config's, plus the
    /// control-plane taint unless the control plane schedules workloads.
    fn register_taints(&self) -> Vec<serde_json::Value> {
        let mut taints: Vec<serde_json::Value> = self
            .config
            .machine
            .kubelet
            .node_taints
            .iter()
            .filter_map(|(key, v)| {
                let (value, effect) = v.rsplit_once(':')?;
                let mut t = json!({"key": key, "effect": effect});
                if !value.is_empty() {
                    t["value"] = json!(value);
                }
                Some(t)
            })
            .collect();
        let cp_taint = CONTROL_PLANE_TAINT_KEY;
        if self.config.machine.role == Role::Controlplane
            && !self.config.cluster.allow_scheduling_on_control_plane
            && !self
                .config
                .machine
                .kubelet
                .node_taints
                .contains_key(cp_taint)
        {
            taints.push(json!({"key": cp_taint, "effect": "NoSchedule"}));
        }
        taints
    }

    /// `KubeletConfiguration` (JSON is YAML; the kubelet reads either).
    ///
    /// [`CILIUM_RUNTIME_REQUEST_TIMEOUT`] on Cilium nodes.
    pub fn kubelet_config(&self) -> String {
        let l = self.layout;
        let c = &self.config.cluster;
        let dns: Vec<String> = c
            .service_subnets
            .iter()
            .filter_map(|s| nth_address(s, 10))
            .map(|ip| ip.to_string())
            .collect();
        let mut cfg = json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "authentication": {
                "x509": {"clientCAFile": self.path(&l.ca.cert)},
                "webhook": {"enabled": true},
                "anonymous": {"enabled": false},
            },
            "authorization": {"mode": "Webhook"},
            // No systemd: cgroupfs, as containerd's runc (`SystemdCgroup = false`).
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": CRI_ENDPOINT,
            "port": KUBELET_PORT,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": KUBELET_HEALTHZ_PORT,
            "readOnlyPort": 0,
            "clusterDomain": self.cluster_domain(),
            "clusterDNS": dns,
            "rotateCertificates": true,
            "tlsMinVersion": "VersionTLS13",
            "failSwapOn": false,
            "failCgroupV1": true,
            "serializeImagePulls": false,
            // No logind to delay shutdown through; machined stops the kubelet.
            "shutdownGracePeriod": "0s",
            "systemReserved": {"cpu": "50m", "memory": "256Mi", "pid": "100"},
            "registerWithTaints": self.register_taints(),
            "resolvConf": "/etc/resolv.conf",
            "staticPodPath": "",
        });
        if super::cilium::enabled(self.config) {
            // The first pod on a Cilium node waits, inside RunPodSandbox,
            // for the agent to compile the pods' BPF program on the node
            // (Cilium's own bounds on that are raised in its package). The
            // kubelet gives a sandbox twice this (default 2m, so 4 min),
            // and cancelling cancels the compile; each retry would start
            // it over.
            cfg["runtimeRequestTimeout"] = json!(CILIUM_RUNTIME_REQUEST_TIMEOUT);
        }
        match self.config.machine.role {
            Role::Controlplane => {
                let (cert, key) = self.pair(&l.kubelet_serving);
                cfg["tlsCertFile"] = json!(cert);
                cfg["tlsPrivateKeyFile"] = json!(key);
            }
            // A worker holds no CA key: its kubelet asks for its serving
            // certificate by CSR (signer kubernetes.io/kubelet-serving),
            // which machined on a control-plane node approves
            // (`csr_approver`) and kube-controller-manager signs with the
            // cluster CA, so the apiserver can verify it. Without this the
            // kubelet would self-sign, and logs/exec/port-forward would fail.
            Role::Worker => cfg["serverTLSBootstrap"] = json!(true),
        }
        pretty(&cfg)
    }

    /// The bridge + host-local CNI config: pods get addresses from
    /// `pod_cidr`, the range the controller-manager allocated to this node,
    /// routed and masqueraded by the bridge.
    pub fn bridge_conflist(&self, pod_cidr: &str) -> String {
        pretty(&json!({
            "cniVersion": "1.0.0",
            "name": "basalt-bridge",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE_NAME,
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": pod_cidr}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        }))
    }
}

/// Leader election for the controller-manager and the scheduler, with
/// more slack than the defaults (15 s lease, 10 s renew deadline): a loaded
/// or emulated node answers a lease renewal slower than 10 s at times, and
/// a lost lease makes the component exit. A takeover after a real failure
/// then waits up to a minute instead of 15 s.
fn leader_election() -> [String; 4] {
    [
        "--leader-elect=true".into(),
        "--leader-elect-lease-duration=60s".into(),
        "--leader-elect-renew-deadline=45s".into(),
        "--leader-elect-retry-period=5s".into(),
    ]
}

/// The kubelet on a control-plane node starts once the apiserver's port
/// listens: before that it only competes with the apiserver's start (the
/// heaviest CPU of a node's boot) and retries; after it, registration
/// overlaps the apiserver's post-start work. The controller-manager and the
/// scheduler wait for `/readyz` instead: the controller-manager gives the
/// apiserver 10 s to be healthy once it holds its lease and exits otherwise,
/// and its successor then waits out the lease (seen in the Kubernetes bench
/// when they started at the port: Ready 85 s later).
fn after_apiserver_listens(spec: &mut ServiceSpec) {
    spec.start_when = Some(Readiness::Tcp(SocketAddr::from((
        [127, 0, 0, 1],
        APISERVER_PORT,
    ))));
}

/// Long-running Go programs that may take minutes to become ready under
/// emulation: a generous readiness window and a capped backoff.
pub(super) fn slow_start(spec: &mut ServiceSpec) {
    spec.ready_timeout = Duration::from_secs(600);
    spec.restart = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(30),
        factor: 2,
    };
    spec.stop_grace = Duration::from_secs(20);
}

fn join(cidrs: &[Cidr]) -> String {
    cidrs
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The `n`-th address of a subnet (1 = the first after the network
/// address): the apiserver's service IP is the 1st, cluster DNS the 10th.
pub fn nth_address(cidr: &Cidr, n: u32) -> Option<IpAddr> {
    match cidr.0.trunc().network() {
        IpAddr::V4(ip) => u32::from(ip).checked_add(n).map(|v| IpAddr::V4(v.into())),
        IpAddr::V6(ip) => u128::from(ip)
            .checked_add(u128::from(n))
            .map(|v| IpAddr::V6(v.into())),
    }
    .filter(|ip| cidr.0.contains(ip))
}

fn pretty(v: &serde_json::Value) -> String {
    // Serializing a Value of strings, numbers and maps cannot fail.
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests;

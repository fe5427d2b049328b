//! Where Kubernetes' files live on a node. Everything generated for the
//! components is named here and only here; `pki`, the component specs and
//! the bootstrap all take their paths from [`Layout`].
//!
//! Secrets (keys, kubeconfigs) and etcd's data live in STATE: they survive a
//! reboot, and the `read` API refuses every path below STATE. Files that are
//! pure functions of the config (kubelet.yaml, CNI config) are regenerated
//! into `/run` at every converge.
//!
//! Paths are node paths (`/var/...`); [`crate::host::Host::path`] maps them
//! below a dev root.

use std::path::{Path, PathBuf};

/// Generated, non-secret component configs, rewritten at each converge.
pub const RUN_DIR: &str = "/run/basalt/kubernetes";
/// The kubelet's working directory (pods' volumes): RAM-backed /var.
pub const KUBELET_ROOT: &str = "/var/lib/kubelet";
/// Where the CRI plugin finds CNI configs; machined owns the bridge config
/// in it (`10-basalt-bridge.conflist`) until Cilium takes over.
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
/// containerd's CRI socket, as the kubelet dials it.
pub const CRI_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

/// The control-plane ports, as kubeadm and Talos use them.
pub const APISERVER_PORT: u16 = 6443;
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
pub const SCHEDULER_PORT: u16 = 10259;
pub const KUBELET_PORT: u16 = 10250;
pub const KUBELET_HEALTHZ_PORT: u16 = 10248;

/// A certificate and its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertPair {
    fn new(dir: &Path, stem: &str) -> Self {
        CertPair {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }
}

/// Every Kubernetes file machined generates, rooted at one STATE directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `<STATE>/kubernetes`: certificates, keys, kubeconfigs, 0700.
    pub pki_dir: PathBuf,
    /// Cluster CA (cert + key: the controller-manager signs kubelet CSRs with it).
    pub ca: CertPair,
    pub etcd_ca: CertPair,
    pub front_proxy_ca: CertPair,
    /// kube-apiserver's serving certificate.
    pub apiserver: CertPair,
    /// kube-apiserver → kubelet client (logs, exec, port-forward through the apiserver).
    pub apiserver_kubelet_client: CertPair,
    /// kube-apiserver → etcd client.
    pub apiserver_etcd_client: CertPair,
    pub front_proxy_client: CertPair,
    pub etcd_server: CertPair,
    pub etcd_peer: CertPair,
    /// Serving certificates of the controller-manager's and scheduler's
    /// secure ports, so their `/healthz` is checked against the cluster CA.
    pub controller_manager_serving: CertPair,
    pub scheduler_serving: CertPair,
    /// The kubelet's serving certificate on a control-plane node, issued by
    /// machined from the cluster CA; kube-apiserver verifies it
    /// (`--kubelet-certificate-authority`) for logs, exec and port-forward.
    pub kubelet_serving: CertPair,
    /// Service-account signing key (private) and its public half.
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
    /// Kubeconfigs with embedded client certificates.
    pub controller_manager_kubeconfig: PathBuf,
    pub scheduler_kubeconfig: PathBuf,
    /// machined's own admin credentials: bootstrap RBAC, health checks.
    pub admin_kubeconfig: PathBuf,
    /// cilium-operator's (control-plane nodes running Cilium).
    pub cilium_operator_kubeconfig: PathBuf,
    /// The kubelet's: on a control-plane node, a client certificate machined
    /// issues (`system:node:<name>`); on a worker it does not exist until TLS
    /// bootstrap wrote it.
    pub kubelet_kubeconfig: PathBuf,
    /// Workers: the bootstrap token kubeconfig the kubelet starts with.
    pub kubelet_bootstrap_kubeconfig: PathBuf,
    /// The kubelet's `--cert-dir`: its rotated client certificates and, on a
    /// worker, the serving certificates it obtained by CSR.
    pub kubelet_cert_dir: PathBuf,
    /// etcd's data directory: the cluster itself.
    pub etcd_data: PathBuf,
    /// Present once `bootstrap` initialised etcd on this node.
    pub bootstrapped_marker: PathBuf,
    /// Generated non-secret configs (see [`RUN_DIR`]).
    pub kubelet_config: PathBuf,
}

impl Layout {
    /// `state_dir`: the node path of this boot's STATE directory.
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        let k = state_dir.as_ref().join("kubernetes");
        let pki = k.join("pki");
        let run = Path::new(RUN_DIR);
        Layout {
            ca: CertPair::new(&pki, "ca"),
            etcd_ca: CertPair::new(&pki, "etcd-ca"),
            front_proxy_ca: CertPair::new(&pki, "front-proxy-ca"),
            apiserver: CertPair::new(&pki, "apiserver"),
            apiserver_kubelet_client: CertPair::new(&pki, "apiserver-kubelet-client"),
            apiserver_etcd_client: CertPair::new(&pki, "apiserver-etcd-client"),
            front_proxy_client: CertPair::new(&pki, "front-proxy-client"),
            etcd_server: CertPair::new(&pki, "etcd-server"),
            etcd_peer: CertPair::new(&pki, "etcd-peer"),
            controller_manager_serving: CertPair::new(&pki, "controller-manager-serving"),
            scheduler_serving: CertPair::new(&pki, "scheduler-serving"),
            kubelet_serving: CertPair::new(&pki, "kubelet-serving"),
            service_account_key: pki.join("sa.key"),
            service_account_pub: pki.join("sa.pub"),
            controller_manager_kubeconfig: k.join("controller-manager.kubeconfig"),
            scheduler_kubeconfig: k.join("scheduler.kubeconfig"),
            admin_kubeconfig: k.join("admin.kubeconfig"),
            cilium_operator_kubeconfig: k.join("cilium-operator.kubeconfig"),
            kubelet_kubeconfig: k.join("kubelet.kubeconfig"),
            kubelet_bootstrap_kubeconfig: k.join("kubelet-bootstrap.kubeconfig"),
            kubelet_cert_dir: k.join("kubelet-pki"),
            etcd_data: k.join("etcd"),
            bootstrapped_marker: k.join("bootstrapped"),
            kubelet_config: run.join("kubelet.yaml"),
            pki_dir: k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_live_in_state_and_generated_configs_in_run() {
        let l = Layout::new("/var/lib/basalt/state");
        for p in [
            &l.ca.key,
            &l.service_account_key,
            &l.admin_kubeconfig,
            &l.etcd_data,
        ] {
            assert!(p.starts_with("/var/lib/basalt/state/kubernetes"), "{p:?}");
        }
        assert!(l.kubelet_config.starts_with(RUN_DIR));
    }
}

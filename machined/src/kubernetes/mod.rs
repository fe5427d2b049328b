//! Kubernetes on the node (DESIGN.md "Kubernetes on the node"): machined
//! supervises etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on control-plane nodes, the kubelet (and Cilium) on every node, as
//! host processes with generated flags, certificates and kubeconfigs.
//!
//! | module | holds |
//! | --- | --- |
//! | [`layout`] | where every generated file lives (the one owner of those paths) |
//! | [`pki`] | leaf certificates, keys and kubeconfigs derived from the config's CAs |
//! | [`kubeconfig`] | kubeconfig files (JSON), rendered and read back |
//! | [`components`] | each component's flags, readiness and generated config |
//! | [`cilium`] | the Cilium agent and operator: flags, readiness, RBAC |
//! | [`bootstrap`] | the bootstrap token and RBAC, applied through the API |
//! | [`csr_approver`] | approval of workers' kubelet serving-certificate CSRs |
//! | [`node_api`] | what the node API asks of Kubernetes: bootstrap, kubeconfig, health |

pub mod bootstrap;
pub mod cilium;
pub mod components;
pub mod csr_approver;
pub mod kubeconfig;
pub mod layout;
pub mod node_api;
pub mod pki;

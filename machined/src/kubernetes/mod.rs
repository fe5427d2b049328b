//! Kubernetes on the node (DESIGN.md "Kubernetes on the node"): machined
//! supervises etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on control-plane nodes and the kubelet on every node, as
//! host processes with generated flags, certificates and kubeconfigs.
//!
//! | module | holds |
//! | --- | --- |
//! | [`layout`] | where every generated file lives (the one owner of those paths) |
//! | [`node_api`] | what the node API asks of Kubernetes: bootstrap, kubeconfig, health |

pub mod layout;
pub mod node_api;

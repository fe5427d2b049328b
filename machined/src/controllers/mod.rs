//! One controller per concern. Each owns its desired state (its part of the
//! applied config) and reads its observed state through the host boundary;
//! each plans its part of an apply, converges it, and lists its resources
//! (`GET /v1/resources`). [`crate::node::Node`] only holds them and runs an
//! apply through them: verify → plan → persist → converge.
//!
//! | concern | module | desired (config) | observed |
//! | --- | --- | --- | --- |
//! | config, STATE, `try` | [`config`] | signed documents | STATE |
//! | host name, sysctls, modules | [`kernel`] | `machine.{hostname,sysctls,kernel}` | the kernel |
//! | files, /etc/hosts | [`files`] | `machine.files` | the files |
//! | resolv.conf | [`dns`] | `machine.network.{nameservers,search_domains}` + leases | the file |
//! | links, addresses, routes, DHCP | [`network`] | `machine.network.interfaces` | netlink, leases |
//! | services | [`services`] | the image's services | the supervisor |
//! | metrics listener | [`metrics`] | `machine.metrics` | the listener |
//! | Kubernetes: PKI, components, bootstrap | [`kubernetes`] | `cluster`, `machine.kubelet`, role | STATE, the supervisor, the API server |
//! | baked OCI images | [`images`] | the image's archives | `ctr images import` |

pub mod config;
pub mod dns;
pub mod files;
pub mod images;
pub mod kernel;
pub mod kubernetes;
pub mod metrics;
pub mod network;
pub mod plan;
pub mod resources;
pub mod services;

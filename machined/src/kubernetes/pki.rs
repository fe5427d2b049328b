//! A node's Kubernetes certificates, keys and kubeconfigs, derived at apply
//! time from the CAs in its config (DESIGN.md "Kubernetes on the node":
//! "machined derives every leaf certificate and kubeconfig at apply time
//! into STATE (0600), and reissues them when the CA or SANs change").
//!
//! [`plan`] compares what is on disk with what the config and the node's
//! identity call for and lists what would change; [`converge`] does it.
//! Nothing is reissued that is still right: a leaf is reissued only when it
//! is missing or unreadable, was not signed by the configured CA, names a
//! different subject, SANs or usage, or has less than a third of its life
//! (or 30 days) left. Files copied from the config (CA certificates, the
//! cluster CA key, the service-account key) are rewritten when their bytes
//! differ. Every file is 0600 and its directory 0700.
//!
//! Every path comes from [`Layout`]; every byte goes through [`Host`].

#[cfg(test)]
mod tests;

use super::kubeconfig::{self, Credential, Kubeconfig};
use super::layout::{APISERVER_PORT, CertPair, Layout};
use crate::host::{Host, HostError};
use basalt_api::config::{Cidr, Cluster, CniName, Role};
use basalt_api::secret::Secret;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// Who this node is, as its certificates name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The node name (the kubelet's `--hostname-override`), a DNS name.
    pub name: String,
    /// The node's addresses: SANs of every serving certificate.
    pub ips: Vec<IpAddr>,
}

/// One file (or certificate with its key) that [`converge`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiChange {
    /// A certificate's name (`apiserver`, `etcd-peer`) or a file's name
    /// (`ca.crt`, `sa.pub`, `admin.kubeconfig`).
    pub name: String,
    /// Why: `missing`, `issued by a different CA`, `SANs changed: +10.0.2.15`,
    /// `expires in 12 days`, `content changed`...
    pub reason: String,
}

impl fmt::Display for PkiChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Certificates are named by their stem, files by their file name.
        let what = if self.name.ends_with(".kubeconfig") {
            "write kubeconfig"
        } else if self.name.contains('.') {
            "write"
        } else {
            "issue certificate"
        };
        write!(f, "{what} {} ({})", self.name, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("`{key}` is required on a control-plane node")]
    Missing { key: &'static str },
    /// A config value that cannot be used: `key` is its TOML path.
    #[error("`{key}`: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("the node has no name; its certificates and the kubelet's identity need one")]
    NoNodeName,
    #[error("reading Kubernetes PKI: {0}")]
    Read(#[source] HostError),
    #[error("writing Kubernetes PKI: {0}")]
    Write(#[source] HostError),
    #[error("{}: not a UTF-8 path", path.display())]
    Path { path: PathBuf },
    #[error("issuing {name}: {reason}")]
    Issue { name: String, reason: String },
}

/// Leaves live a year; they are reissued long before (see [`renew_before`]).
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Leaves are backdated an hour so a peer whose clock is a little behind
/// this node's does not reject them as not yet valid.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);
/// Never let a leaf get closer than this to expiry, whatever its lifetime.
const MIN_REMAINING: Duration = Duration::from_secs(30 * 24 * 3600);
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// What converge would do, changing nothing (for dry-run plans).
pub fn plan(
    host: &Host,
    layout: &Layout,
    cluster: &Cluster,
    role: Role,
    node: &NodeIdentity,
    now: SystemTime,
) -> Result<Vec<PkiChange>, PkiError> {
    let cas = Cas::load(cluster, role)?;
    let items = desired(layout, cluster, role, node, &cas)?;
    Ok(assess_all(host, &items, &cas, now)?
        .into_iter()
        .map(|(_, change)| change)
        .collect())
}

/// Write what [`plan`] lists; returns the changes made. Idempotent: a second
/// call with the same inputs returns no changes and rewrites nothing.
///
/// Everything is computed (and every config value checked) before the first
/// write, so a bad key leaves the node's files as they were.
pub fn converge(
    host: &Host,
    layout: &Layout,
    cluster: &Cluster,
    role: Role,
    node: &NodeIdentity,
    now: SystemTime,
) -> Result<Vec<PkiChange>, PkiError> {
    let cas = Cas::load(cluster, role)?;
    let items = desired(layout, cluster, role, node, &cas)?;
    let work = assess_all(host, &items, &cas, now)?;
    let mut writes = Vec::new();
    for (item, _) in &work {
        writes.extend(item.render(&cas, now)?);
    }
    // Directories first and always: a directory an older version (or an
    // operator) left world-readable is tightened even when no file changes.
    let mut dirs = BTreeSet::new();
    dirs.insert(layout.pki_dir.clone());
    for item in &items {
        for path in item.paths() {
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
    }
    for dir in &dirs {
        host.ensure_dir(node_str(dir)?, DIR_MODE)
            .map_err(PkiError::Write)?;
    }
    for (path, bytes) in &writes {
        host.write_atomic(node_str(path)?, bytes, FILE_MODE)
            .map_err(PkiError::Write)?;
    }
    Ok(work.into_iter().map(|(_, change)| change).collect())
}

/// A fresh admin kubeconfig (client certificate CN `basalt:admin:<user>`,
/// O `system:masters`, one year) for `server`, used by `basaltctl kubeconfig`
/// through the node API. Nothing is written: the caller hands it out.
pub fn admin_kubeconfig(
    cluster: &Cluster,
    cluster_name: &str,
    server: &str,
    user: &str,
    now: SystemTime,
) -> Result<String, PkiError> {
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err(PkiError::Issue {
            name: "admin kubeconfig".into(),
            reason: format!("`{}` is not a user name", user.escape_debug()),
        });
    }
    let ca = Ca::load(
        &cluster.ca_cert,
        "cluster.ca_cert",
        Some(cluster.ca_key.as_ref().ok_or(PkiError::Missing {
            key: "cluster.ca_key",
        })?),
        "cluster.ca_key",
    )?;
    let spec = LeafSpec {
        ca: CaId::Cluster,
        cn: format!("basalt:admin:{user}"),
        org: Some("system:masters"),
        sans: BTreeSet::new(),
        usage: Usage::Client,
    };
    let (cert_pem, key_pem) = issue("admin kubeconfig", &spec, &ca, now)?;
    render_kubeconfig(
        "admin kubeconfig",
        &Kubeconfig {
            cluster_name,
            server,
            ca_pem: &ca.cert_pem,
            user: &spec.cn,
            credential: Credential::ClientCert {
                cert_pem: &cert_pem,
                key_pem: &key_pem,
            },
        },
    )
}

// ---------------------------------------------------------------------------
// The CAs.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaId {
    Cluster,
    Etcd,
    FrontProxy,
}

/// A CA from the config: its certificate and, on a control-plane node, the
/// key that signs this node's leaves.
struct Ca {
    /// The config key of the certificate and of the key, for errors.
    cert_key: &'static str,
    key_key: &'static str,
    /// As given in the config (may be a bundle: it is what clients trust).
    cert_pem: String,
    /// The first certificate of the bundle: the one that signs.
    der: Vec<u8>,
    issuer: Option<Issuer<'static, KeyPair>>,
}

impl Ca {
    fn load(
        cert: &str,
        cert_key: &'static str,
        key: Option<&Secret>,
        key_key: &'static str,
    ) -> Result<Ca, PkiError> {
        let bad = |key: &'static str| move |reason: String| PkiError::Config { key, reason };
        let der = first_pem(cert.as_bytes(), "CERTIFICATE").map_err(bad(cert_key))?;
        let (_, x) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| bad(cert_key)(format!("not an X.509 certificate: {e}")))?;
        if !x.is_ca() {
            return Err(bad(cert_key)(
                "not a CA certificate (basicConstraints CA:TRUE is missing)".into(),
            ));
        }
        // rcgen rebuilds the issuer name from the CA's subject and supports
        // one attribute per RDN only (and panics on an empty RDN); refuse
        // such a subject here rather than issue leaves peers cannot chain.
        if x.subject().iter().any(|rdn| rdn.iter().count() != 1) {
            return Err(bad(cert_key)(
                "the subject has multi-valued or empty RDNs, which machined cannot issue under"
                    .into(),
            ));
        }
        let issuer = match key {
            None => None,
            Some(key) => {
                let pair = key_pair(key.expose()).map_err(bad(key_key))?;
                if pair.public_key_raw() != x.public_key().subject_public_key.data.as_ref() {
                    return Err(bad(key_key)(format!(
                        "does not match `{cert_key}`: it is the private half of another key"
                    )));
                }
                let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), pair)
                    .map_err(|e| bad(cert_key)(format!("cannot issue under it: {e}")))?;
                Some(issuer)
            }
        };
        let mut cert_pem = cert.to_string();
        if !cert_pem.ends_with('\n') {
            cert_pem.push('\n');
        }
        Ok(Ca {
            cert_key,
            key_key,
            cert_pem,
            der,
            issuer,
        })
    }

    /// Whether `leaf` was signed by this CA's key and names it as issuer
    /// (Go's verifier looks parents up by the issuer name's bytes).
    fn signed(&self, leaf: &X509Certificate<'_>) -> bool {
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(&self.der) else {
            return false;
        };
        leaf.issuer().as_raw() == ca.subject().as_raw()
            && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }
}

struct Cas {
    cluster: Ca,
    etcd: Option<Ca>,
    front_proxy: Option<Ca>,
}

impl Cas {
    /// A control-plane node needs every CA with its key (the etcd and
    /// front-proxy keys only to sign here); a worker only trusts the cluster
    /// CA and holds no key at all.
    fn load(cluster: &Cluster, role: Role) -> Result<Cas, PkiError> {
        match role {
            Role::Worker => Ok(Cas {
                cluster: Ca::load(&cluster.ca_cert, "cluster.ca_cert", None, "cluster.ca_key")?,
                etcd: None,
                front_proxy: None,
            }),
            Role::Controlplane => {
                fn need<'a>(
                    v: Option<&'a Secret>,
                    key: &'static str,
                ) -> Result<Option<&'a Secret>, PkiError> {
                    v.ok_or(PkiError::Missing { key }).map(Some)
                }
                let need_cert = |v: &Option<String>, key: &'static str| {
                    v.clone().ok_or(PkiError::Missing { key })
                };
                Ok(Cas {
                    cluster: Ca::load(
                        &cluster.ca_cert,
                        "cluster.ca_cert",
                        need(cluster.ca_key.as_ref(), "cluster.ca_key")?,
                        "cluster.ca_key",
                    )?,
                    etcd: Some(Ca::load(
                        &need_cert(&cluster.etcd_ca_cert, "cluster.etcd_ca_cert")?,
                        "cluster.etcd_ca_cert",
                        need(cluster.etcd_ca_key.as_ref(), "cluster.etcd_ca_key")?,
                        "cluster.etcd_ca_key",
                    )?),
                    front_proxy: Some(Ca::load(
                        &need_cert(&cluster.front_proxy_ca_cert, "cluster.front_proxy_ca_cert")?,
                        "cluster.front_proxy_ca_cert",
                        need(
                            cluster.front_proxy_ca_key.as_ref(),
                            "cluster.front_proxy_ca_key",
                        )?,
                        "cluster.front_proxy_ca_key",
                    )?),
                })
            }
        }
    }

    fn get(&self, id: CaId) -> Result<&Ca, PkiError> {
        let (ca, key) = match id {
            CaId::Cluster => (Some(&self.cluster), "cluster.ca_cert"),
            CaId::Etcd => (self.etcd.as_ref(), "cluster.etcd_ca_cert"),
            CaId::FrontProxy => (self.front_proxy.as_ref(), "cluster.front_proxy_ca_cert"),
        };
        ca.ok_or(PkiError::Missing { key })
    }
}

// ---------------------------------------------------------------------------
// What a node should have.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Usage {
    Server,
    Client,
    ServerClient,
}

impl Usage {
    /// (serverAuth, clientAuth)
    fn flags(self) -> (bool, bool) {
        match self {
            Usage::Server => (true, false),
            Usage::Client => (false, true),
            Usage::ServerClient => (true, true),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(d) => f.write_str(d),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[derive(Debug, Clone)]
struct LeafSpec {
    ca: CaId,
    cn: String,
    org: Option<&'static str>,
    sans: BTreeSet<San>,
    usage: Usage,
}

struct KubeconfigSpec {
    cluster_name: String,
    server: String,
    user: String,
    credential: KubeconfigCredential,
}

enum KubeconfigCredential {
    Cert(LeafSpec),
    Token(String),
}

enum Item {
    /// Bytes from the config (CA certificates and key, the service-account
    /// key) or derived from it without randomness (`sa.pub`).
    File {
        name: String,
        path: PathBuf,
        bytes: Vec<u8>,
    },
    Leaf {
        name: String,
        pair: CertPair,
        spec: LeafSpec,
    },
    Kubeconfig {
        name: String,
        path: PathBuf,
        spec: KubeconfigSpec,
    },
}

impl Item {
    fn name(&self) -> &str {
        match self {
            Item::File { name, .. } | Item::Leaf { name, .. } | Item::Kubeconfig { name, .. } => {
                name
            }
        }
    }

    fn paths(&self) -> Vec<&Path> {
        match self {
            Item::File { path, .. } | Item::Kubeconfig { path, .. } => vec![path],
            Item::Leaf { pair, .. } => vec![&pair.cert, &pair.key],
        }
    }

    /// The files to write for this item: new keys and certificates are
    /// made here, so this runs only for items that need it.
    fn render(&self, cas: &Cas, now: SystemTime) -> Result<Vec<(PathBuf, Vec<u8>)>, PkiError> {
        match self {
            Item::File { path, bytes, .. } => Ok(vec![(path.clone(), bytes.clone())]),
            Item::Leaf { name, pair, spec } => {
                let (cert, key) = issue(name, spec, cas.get(spec.ca)?, now)?;
                // The key first: a crash between the two leaves a pair that
                // does not match, which the next converge reissues.
                Ok(vec![
                    (pair.key.clone(), key.into_bytes()),
                    (pair.cert.clone(), cert.into_bytes()),
                ])
            }
            Item::Kubeconfig { name, path, spec } => {
                let ca = &cas.cluster;
                let text = match &spec.credential {
                    KubeconfigCredential::Token(token) => {
                        render_kubeconfig(name, &spec.view(ca, Credential::Token(token)))?
                    }
                    KubeconfigCredential::Cert(leaf) => {
                        let (cert_pem, key_pem) = issue(name, leaf, cas.get(leaf.ca)?, now)?;
                        render_kubeconfig(
                            name,
                            &spec.view(
                                ca,
                                Credential::ClientCert {
                                    cert_pem: &cert_pem,
                                    key_pem: &key_pem,
                                },
                            ),
                        )?
                    }
                };
                Ok(vec![(path.clone(), text.into_bytes())])
            }
        }
    }
}

impl KubeconfigSpec {
    fn view<'a>(&'a self, ca: &'a Ca, credential: Credential<'a>) -> Kubeconfig<'a> {
        Kubeconfig {
            cluster_name: &self.cluster_name,
            server: &self.server,
            ca_pem: &ca.cert_pem,
            user: &self.user,
            credential,
        }
    }
}

fn render_kubeconfig(name: &str, kc: &Kubeconfig<'_>) -> Result<String, PkiError> {
    kc.render().map_err(|e| PkiError::Issue {
        name: name.to_string(),
        reason: format!("rendering the kubeconfig: {e}"),
    })
}

/// Every file this node should have, for its role.
fn desired(
    layout: &Layout,
    cluster: &Cluster,
    role: Role,
    node: &NodeIdentity,
    cas: &Cas,
) -> Result<Vec<Item>, PkiError> {
    let mut items = vec![file(&layout.ca.cert, cas.cluster.cert_pem.as_bytes())];
    if role == Role::Worker {
        items.push(worker_bootstrap_kubeconfig(layout, cluster));
        return Ok(items);
    }
    if node.name.is_empty() {
        return Err(PkiError::NoNodeName);
    }
    items.extend(control_plane_secrets(layout, cluster, cas)?);
    let sans = Sans::of(cluster, node)?;
    items.extend(leaves(layout, node, &sans));
    items.extend(component_kubeconfigs(layout, cluster, node));
    Ok(items)
}

/// A worker's kubelet joins with the bootstrap token and gets its client
/// certificate from the cluster (TLS bootstrap): no key lives here.
fn worker_bootstrap_kubeconfig(layout: &Layout, cluster: &Cluster) -> Item {
    Item::Kubeconfig {
        name: file_name(&layout.kubelet_bootstrap_kubeconfig),
        path: layout.kubelet_bootstrap_kubeconfig.clone(),
        spec: KubeconfigSpec {
            cluster_name: cluster.name.clone(),
            server: cluster.endpoint.clone(),
            user: "kubelet-bootstrap".into(),
            credential: KubeconfigCredential::Token(cluster.token.expose().to_string()),
        },
    }
}

/// The CA certificates, the cluster CA key and the service-account pair.
fn control_plane_secrets(
    layout: &Layout,
    cluster: &Cluster,
    cas: &Cas,
) -> Result<Vec<Item>, PkiError> {
    let mut items = Vec::new();
    let etcd = cas.get(CaId::Etcd)?;
    let front_proxy = cas.get(CaId::FrontProxy)?;
    // The controller-manager signs kubelet CSRs with the cluster CA key;
    // the etcd and front-proxy keys only sign here, so they stay in the config.
    let ca_key = cluster.ca_key.as_ref().ok_or(PkiError::Missing {
        key: "cluster.ca_key",
    })?;
    items.push(file(&layout.ca.key, ca_key.expose().as_bytes()));
    items.push(file(&layout.etcd_ca.cert, etcd.cert_pem.as_bytes()));
    items.push(file(
        &layout.front_proxy_ca.cert,
        front_proxy.cert_pem.as_bytes(),
    ));

    let sa = cluster
        .service_account_key
        .as_ref()
        .ok_or(PkiError::Missing {
            key: "cluster.service_account_key",
        })?;
    let sa_pub = key_pair(sa.expose())
        .map_err(|reason| PkiError::Config {
            key: "cluster.service_account_key",
            reason,
        })?
        .public_key_pem();
    items.push(file(&layout.service_account_key, sa.expose().as_bytes()));
    items.push(file(&layout.service_account_pub, sa_pub.as_bytes()));
    Ok(items)
}

/// The names each kind of certificate carries.
struct Sans {
    /// The node's name and addresses.
    node: BTreeSet<San>,
    /// ... plus loopback, for clients on this node.
    node_and_local: BTreeSet<San>,
    /// ... plus the endpoint, the `kubernetes` Service's IP and names.
    apiserver: BTreeSet<San>,
}

impl Sans {
    fn of(cluster: &Cluster, node: &NodeIdentity) -> Result<Sans, PkiError> {
        let node_sans: BTreeSet<San> = std::iter::once(San::Dns(node.name.to_ascii_lowercase()))
            .chain(node.ips.iter().copied().map(San::Ip))
            .collect();
        // Loopback names for clients on this node (the components' kubeconfigs,
        // health probes). `::1` is left out: local clients dial 127.0.0.1 or
        // `localhost`, and a name in the certificate is checked against what
        // the client dialled, not the address it reached.
        let local: BTreeSet<San> = [
            San::Dns("localhost".into()),
            San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ]
        .into();
        let node_and_local: BTreeSet<San> = node_sans.union(&local).cloned().collect();

        let mut apiserver_sans = node_and_local.clone();
        apiserver_sans.insert(endpoint_host(&cluster.endpoint)?);
        for subnet in &cluster.service_subnets {
            // In-cluster clients reach the apiserver at the `kubernetes`
            // Service's ClusterIP, the first address of the service range.
            apiserver_sans.insert(San::Ip(first_ip(subnet)));
        }
        for name in [
            "kubernetes".to_string(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            format!("kubernetes.default.svc.{}", cluster.dns_domain),
        ] {
            apiserver_sans.insert(San::Dns(name));
        }
        Ok(Sans {
            node: node_sans,
            node_and_local,
            apiserver: apiserver_sans,
        })
    }
}

fn leaf(
    ca: CaId,
    cn: &str,
    org: Option<&'static str>,
    sans: &BTreeSet<San>,
    usage: Usage,
) -> LeafSpec {
    LeafSpec {
        ca,
        cn: cn.to_string(),
        org,
        sans: sans.clone(),
        usage,
    }
}

/// Every leaf certificate of a control-plane node, with its key.
fn leaves(layout: &Layout, node: &NodeIdentity, sans: &Sans) -> Vec<Item> {
    let none = BTreeSet::new();
    let masters = Some("system:masters");
    let node_user = format!("system:node:{}", node.name);
    let (node_sans, node_and_local, apiserver_sans) =
        (&sans.node, &sans.node_and_local, &sans.apiserver);
    let leaves = [
        (
            &layout.apiserver,
            leaf(
                CaId::Cluster,
                "kube-apiserver",
                None,
                apiserver_sans,
                Usage::Server,
            ),
        ),
        (
            &layout.apiserver_kubelet_client,
            leaf(
                CaId::Cluster,
                "kube-apiserver-kubelet-client",
                masters,
                &none,
                Usage::Client,
            ),
        ),
        (
            &layout.apiserver_etcd_client,
            leaf(
                CaId::Etcd,
                "kube-apiserver-etcd-client",
                masters,
                &none,
                Usage::Client,
            ),
        ),
        (
            &layout.front_proxy_client,
            // Must equal the apiserver's --requestheader-allowed-names.
            leaf(
                CaId::FrontProxy,
                "front-proxy-client",
                None,
                &none,
                Usage::Client,
            ),
        ),
        // etcd's certificates serve clients and peers and also act as the
        // client side of peer connections, hence both usages.
        (
            &layout.etcd_server,
            leaf(
                CaId::Etcd,
                &node.name,
                None,
                node_and_local,
                Usage::ServerClient,
            ),
        ),
        (
            &layout.etcd_peer,
            leaf(
                CaId::Etcd,
                &node.name,
                None,
                node_and_local,
                Usage::ServerClient,
            ),
        ),
        (
            &layout.controller_manager_serving,
            leaf(
                CaId::Cluster,
                "kube-controller-manager",
                None,
                node_and_local,
                Usage::Server,
            ),
        ),
        (
            &layout.scheduler_serving,
            leaf(
                CaId::Cluster,
                "kube-scheduler",
                None,
                node_and_local,
                Usage::Server,
            ),
        ),
        (
            &layout.kubelet_serving,
            // The subject a kubelet's own serving CSR would carry.
            leaf(
                CaId::Cluster,
                &node_user,
                Some("system:nodes"),
                node_sans,
                Usage::Server,
            ),
        ),
    ];
    leaves
        .into_iter()
        .map(|(pair, spec)| Item::Leaf {
            name: stem(&pair.cert),
            pair: pair.clone(),
            spec,
        })
        .collect()
}

/// The kubeconfigs of the control-plane components, the kubelet and machined.
fn component_kubeconfigs(layout: &Layout, cluster: &Cluster, node: &NodeIdentity) -> Vec<Item> {
    let none = BTreeSet::new();
    let masters = Some("system:masters");
    let node_user = format!("system:node:{}", node.name);
    let mut items = Vec::new();
    // Components on a control-plane node talk to their local apiserver
    // (whose SANs include 127.0.0.1), not through the cluster endpoint: they
    // keep working while the endpoint (a VIP, a load balancer) is not up.
    let local_server = format!("https://127.0.0.1:{APISERVER_PORT}");
    let kubeconfigs = [
        (
            &layout.controller_manager_kubeconfig,
            "system:kube-controller-manager",
            None,
        ),
        (&layout.scheduler_kubeconfig, "system:kube-scheduler", None),
        // machined's own credentials (bootstrap RBAC, health checks).
        (&layout.admin_kubeconfig, "basalt:machined", masters),
        (&layout.kubelet_kubeconfig, &node_user, Some("system:nodes")),
    ];
    let cilium = (cluster.cni.name == CniName::Cilium).then_some((
        &layout.cilium_operator_kubeconfig,
        super::cilium::OPERATOR_USER,
        None,
    ));
    for (path, cn, org) in kubeconfigs.into_iter().chain(cilium) {
        items.push(Item::Kubeconfig {
            name: file_name(path),
            path: path.clone(),
            spec: KubeconfigSpec {
                cluster_name: cluster.name.clone(),
                server: local_server.clone(),
                user: cn.to_string(),
                credential: KubeconfigCredential::Cert(leaf(
                    CaId::Cluster,
                    cn,
                    org,
                    &none,
                    Usage::Client,
                )),
            },
        });
    }
    items
}

fn file(path: &Path, bytes: &[u8]) -> Item {
    let mut bytes = bytes.to_vec();
    if !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    Item::File {
        name: file_name(path),
        path: path.to_path_buf(),
        bytes,
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The host of `https://host[:port][/path]`: an IP SAN or a DNS SAN.
fn endpoint_host(endpoint: &str) -> Result<San, PkiError> {
    let bad = |reason: &str| PkiError::Config {
        key: "cluster.endpoint",
        reason: format!("`{endpoint}`: {reason}"),
    };
    // URL schemes are case-insensitive (config validation accepts `HTTPS://`).
    let rest = endpoint
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .and_then(|_| endpoint.get(8..))
        .ok_or_else(|| bad("not an https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => San::Ip(ip),
        Err(_) => San::Dns(host.to_ascii_lowercase()),
    })
}

/// The first address after the network address: 10.96.0.1 for 10.96.0.0/12.
fn first_ip(subnet: &Cidr) -> IpAddr {
    match subnet.0.trunc() {
        ipnet::IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).saturating_add(1))),
        ipnet::IpNet::V6(n) => {
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).saturating_add(1)))
        }
    }
}

// ---------------------------------------------------------------------------
// Comparing with what is on disk.

fn assess_all<'a>(
    host: &Host,
    items: &'a [Item],
    cas: &Cas,
    now: SystemTime,
) -> Result<Vec<(&'a Item, PkiChange)>, PkiError> {
    let mut out = Vec::new();
    for item in items {
        if let Some(reason) = assess(host, item, cas, now)? {
            out.push((
                item,
                PkiChange {
                    name: item.name().to_string(),
                    reason,
                },
            ));
        }
    }
    Ok(out)
}

/// Why `item` must be (re)written, or `None` when what is on disk is right.
fn assess(
    host: &Host,
    item: &Item,
    cas: &Cas,
    now: SystemTime,
) -> Result<Option<String>, PkiError> {
    let reason = match item {
        Item::File { path, bytes, .. } => match read(host, path)? {
            None => Some("missing".to_string()),
            Some(have) if &have != bytes => Some("content changed".into()),
            Some(_) => None,
        },
        Item::Leaf { pair, spec, .. } => match (read(host, &pair.cert)?, read(host, &pair.key)?) {
            (None, _) => Some("missing".to_string()),
            (Some(_), None) => Some("key missing".into()),
            (Some(cert), Some(key)) => leaf_problem(&cert, &key, spec, cas.get(spec.ca)?, now),
        },
        Item::Kubeconfig { path, spec, .. } => match read(host, path)? {
            None => Some("missing".to_string()),
            Some(have) => kubeconfig_problem(&have, spec, cas, now)?,
        },
    };
    if reason.is_some() {
        return Ok(reason);
    }
    // Right content, wrong permissions (restored from a backup, chmodded by
    // hand): rewrite, which also fixes the mode.
    for path in item.paths() {
        match host.mode(node_str(path)?) {
            Some(FILE_MODE) => {}
            Some(mode) => return Ok(Some(format!("mode {mode:04o}, want {FILE_MODE:04o}"))),
            None => return Ok(Some("missing".into())),
        }
    }
    Ok(None)
}

fn kubeconfig_problem(
    have: &[u8],
    spec: &KubeconfigSpec,
    cas: &Cas,
    now: SystemTime,
) -> Result<Option<String>, PkiError> {
    let ca = &cas.cluster;
    let parsed = match kubeconfig::parse(have) {
        Ok(p) => p,
        Err(why) => return Ok(Some(format!("unparsable: {why}"))),
    };
    let expected = match &spec.credential {
        KubeconfigCredential::Cert(leaf) => {
            let (Some(cert), Some(key)) = (&parsed.client_cert_pem, &parsed.client_key_pem) else {
                return Ok(Some("no client certificate".into()));
            };
            if let Some(why) = leaf_problem(cert, key, leaf, cas.get(leaf.ca)?, now) {
                return Ok(Some(why));
            }
            let (Ok(cert_pem), Ok(key_pem)) = (std::str::from_utf8(cert), std::str::from_utf8(key))
            else {
                return Ok(Some("client certificate is not PEM text".into()));
            };
            // What machined would write around the same credentials.
            render_kubeconfig(
                "kubeconfig",
                &spec.view(ca, Credential::ClientCert { cert_pem, key_pem }),
            )?
        }
        KubeconfigCredential::Token(token) => {
            render_kubeconfig("kubeconfig", &spec.view(ca, Credential::Token(token)))?
        }
    };
    if expected.as_bytes() == have {
        return Ok(None);
    }
    Ok(Some(if parsed.server != spec.server {
        format!("server changed: {} → {}", parsed.server, spec.server)
    } else if parsed.ca_pem != ca.cert_pem.as_bytes() {
        "cluster CA changed".into()
    } else if matches!(&spec.credential, KubeconfigCredential::Token(t) if parsed.token.as_deref() != Some(t.as_str()))
    {
        // Never the token itself: plans are shown to operators.
        "bootstrap token changed".into()
    } else {
        "content differs from the generated kubeconfig".into()
    }))
}

/// Why a certificate and key on disk do not do for `spec`, or `None`.
fn leaf_problem(
    cert_pem: &[u8],
    key_pem: &[u8],
    spec: &LeafSpec,
    ca: &Ca,
    now: SystemTime,
) -> Option<String> {
    let der = match first_pem(cert_pem, "CERTIFICATE") {
        Ok(der) => der,
        Err(why) => return Some(format!("unparsable: {why}")),
    };
    let x = match x509_parser::parse_x509_certificate(&der) {
        Ok((_, x)) => x,
        Err(e) => return Some(format!("unparsable: {e}")),
    };
    if !ca.signed(&x) {
        return Some("issued by a different CA".into());
    }
    let cn: Vec<&str> = x
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let org: Vec<&str> = x
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let want_org: Vec<&str> = spec.org.into_iter().collect();
    if cn != [spec.cn.as_str()] || org != want_org {
        return Some(format!(
            "subject changed: CN={} O={} → CN={} O={}",
            cn.join(","),
            org.join(","),
            spec.cn,
            want_org.join(",")
        ));
    }
    let have = match sans(&x) {
        Ok(s) => s,
        Err(why) => return Some(format!("unparsable: {why}")),
    };
    if have != spec.sans {
        let added = spec.sans.difference(&have).map(|s| format!("+{s}"));
        let removed = have.difference(&spec.sans).map(|s| format!("-{s}"));
        return Some(format!(
            "SANs changed: {}",
            added.chain(removed).collect::<Vec<_>>().join(", ")
        ));
    }
    let usage = match x.extended_key_usage() {
        Ok(Some(eku)) => (eku.value.server_auth, eku.value.client_auth),
        Ok(None) => (false, false),
        Err(e) => return Some(format!("unparsable: {e}")),
    };
    if usage != spec.usage.flags() {
        return Some("extended key usage changed".into());
    }
    let now_s = unix_secs(now);
    let not_before = x.validity().not_before.timestamp();
    let not_after = x.validity().not_after.timestamp();
    if now_s < not_before {
        return Some("not valid yet (the clock moved back)".into());
    }
    let remaining = not_after.saturating_sub(now_s);
    if remaining <= 0 {
        return Some("expired".into());
    }
    if remaining < renew_before(not_after.saturating_sub(not_before)) {
        return Some(format!("expires in {} days", remaining / 86_400));
    }
    let key = match std::str::from_utf8(key_pem)
        .map_err(|e| e.to_string())
        .and_then(key_pair)
    {
        Ok(key) => key,
        Err(why) => return Some(format!("key unparsable: {why}")),
    };
    if key.public_key_raw() != x.public_key().subject_public_key.data.as_ref() {
        return Some("key does not match the certificate".into());
    }
    None
}

/// Reissue when less than a third of the lifetime, or 30 days, remains.
fn renew_before(lifetime_secs: i64) -> i64 {
    (lifetime_secs / 3).max(MIN_REMAINING.as_secs() as i64)
}

fn sans(x: &X509Certificate<'_>) -> Result<BTreeSet<San>, String> {
    let mut out = BTreeSet::new();
    let Some(ext) = x.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(out);
    };
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(d) => {
                out.insert(San::Dns(d.to_ascii_lowercase()));
            }
            GeneralName::IPAddress(b) => {
                let ip = match b.len() {
                    4 => <[u8; 4]>::try_from(*b).map(IpAddr::from).ok(),
                    16 => <[u8; 16]>::try_from(*b).map(IpAddr::from).ok(),
                    _ => None,
                };
                out.insert(San::Ip(ip.ok_or("an IP SAN of bad length")?));
            }
            // Names machined never issues: a different certificate.
            other => {
                out.insert(San::Dns(format!("{other:?}")));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Issuing.

/// A fresh ECDSA P-256 key and a certificate for it signed by `ca`, valid
/// from an hour ago for a year. Returns (certificate PEM, key PEM).
fn issue(
    name: &str,
    spec: &LeafSpec,
    ca: &Ca,
    now: SystemTime,
) -> Result<(String, String), PkiError> {
    let fail = |reason: String| PkiError::Issue {
        name: name.to_string(),
        reason,
    };
    let issuer = ca
        .issuer
        .as_ref()
        .ok_or(PkiError::Missing { key: ca.key_key })?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(format!("generating a key: {e}")))?;
    let mut params = CertificateParams::default();
    // O before CN, the order Go's crypto/x509 (kubeadm, the controller-
    // manager's CSR signer) encodes them in.
    let mut dn = DistinguishedName::new();
    if let Some(org) = spec.org {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, spec.cn.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = spec
        .sans
        .iter()
        .map(|s| match s {
            San::Dns(d) => d
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| fail(format!("SAN `{d}`: {e}"))),
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    // ECDSA keys sign (TLS handshakes); they never encipher keys.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let (server, client) = spec.usage.flags();
    params.extended_key_usages = [
        (server, ExtendedKeyUsagePurpose::ServerAuth),
        (client, ExtendedKeyUsagePurpose::ClientAuth),
    ]
    .into_iter()
    .filter_map(|(on, eku)| on.then_some(eku))
    .collect();
    params.use_authority_key_identifier_extension = true;
    params.not_before = now.checked_sub(CLOCK_SKEW).unwrap_or(UNIX_EPOCH).into();
    params.not_after = now
        .checked_add(LEAF_VALIDITY)
        .ok_or_else(|| fail("the clock is beyond any expiry date".into()))?
        .into();
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| fail(format!("signing with `{}`: {e}", ca.key_key)))?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    // What is written must pass the check the next converge makes, or every
    // converge would reissue it; a CA rcgen re-encodes differently (issuer
    // name bytes) would also be caught here rather than by a peer.
    if let Some(why) = leaf_problem(cert_pem.as_bytes(), key_pem.as_bytes(), spec, ca, now) {
        return Err(fail(format!(
            "the new certificate does not check out against `{}`: {why}",
            ca.cert_key
        )));
    }
    Ok((cert_pem, key_pem))
}

// ---------------------------------------------------------------------------
// Small helpers.

/// A private key in any of the PEM forms config validation accepts:
/// PKCS#8 (`PRIVATE KEY`, what `basaltctl config gen` writes), PKCS#1
/// (`RSA PRIVATE KEY`, kubeadm's CA keys) and SEC1 (`EC PRIVATE KEY`,
/// `openssl ecparam -genkey`). rcgen (with ring) reads PKCS#8 only, so the
/// other two are wrapped into PKCS#8 first; the key itself is unchanged.
fn key_pair(pem: &str) -> Result<KeyPair, String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    let pkcs8 = match block.label.as_str() {
        "PRIVATE KEY" => block.contents,
        "RSA PRIVATE KEY" => pkcs8::wrap(&pkcs8::rsa_algorithm(), &block.contents),
        "EC PRIVATE KEY" => {
            let curve = pkcs8::sec1_curve(&block.contents).ok_or(
                "an EC PRIVATE KEY on a curve machined cannot tell (P-256 or P-384 expected)",
            )?;
            pkcs8::wrap(&pkcs8::ec_algorithm(&curve), &block.contents)
        }
        other => {
            return Err(format!(
                "PEM block is `{other}`; expected `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`"
            ));
        }
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|e| {
        format!("not a usable private key (unencrypted RSA ≥ 2048 bits, ECDSA P-256/P-384 or Ed25519): {e}")
    })
}

/// Just enough DER to put a PKCS#1 or SEC1 key into a PKCS#8 envelope
/// (RFC 5208 `PrivateKeyInfo`).
mod pkcs8 {
    const SEQUENCE: u8 = 0x30;
    const OCTET_STRING: u8 = 0x04;
    const OID: u8 = 0x06;
    /// rsaEncryption (1.2.840.113549.1.1.1).
    const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// id-ecPublicKey (1.2.840.10045.2.1).
    const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// prime256v1 (1.2.840.10045.3.1.7) and secp384r1 (1.3.132.0.34).
    const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }

    /// One DER element: (tag, content, rest).
    fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    pub fn rsa_algorithm() -> Vec<u8> {
        let mut alg = tlv(OID, RSA_ENCRYPTION);
        alg.extend([0x05, 0x00]); // NULL parameters
        tlv(SEQUENCE, &alg)
    }

    pub fn ec_algorithm(curve_oid: &[u8]) -> Vec<u8> {
        let mut alg = tlv(OID, EC_PUBLIC_KEY);
        alg.extend(tlv(OID, curve_oid));
        tlv(SEQUENCE, &alg)
    }

    /// The curve of a SEC1 `ECPrivateKey`: its `[0] parameters` when
    /// present, else told by the private key's length.
    pub fn sec1_curve(der: &[u8]) -> Option<Vec<u8>> {
        let (SEQUENCE, body, _) = next(der)? else {
            return None;
        };
        let (_version, _, rest) = next(body)?;
        let (OCTET_STRING, private, mut rest) = next(rest)? else {
            return None;
        };
        while let Some((tag, content, more)) = next(rest) {
            if tag == 0xa0
                && let Some((OID, oid, _)) = next(content)
            {
                return Some(oid.to_vec());
            }
            rest = more;
        }
        match private.len() {
            32 => Some(P256.to_vec()),
            48 => Some(P384.to_vec()),
            _ => None,
        }
    }

    /// `PrivateKeyInfo { version 0, algorithm, privateKey OCTET STRING }`.
    pub fn wrap(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
        let mut body = vec![0x02, 0x01, 0x00];
        body.extend_from_slice(algorithm);
        body.extend(tlv(OCTET_STRING, key));
        tlv(SEQUENCE, &body)
    }
}

/// The DER of the first PEM block, which must be labelled `label`.
fn first_pem(bytes: &[u8], label: &str) -> Result<Vec<u8>, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(bytes).map_err(|e| format!("not PEM: {e}"))?;
    if pem.label != label {
        return Err(format!("PEM block is `{}`; expected `{label}`", pem.label));
    }
    Ok(pem.contents)
}

/// A file's bytes, `None` when it does not exist (any other read error is
/// an error: a file machined cannot read is not one to overwrite blindly).
fn read(host: &Host, path: &Path) -> Result<Option<Vec<u8>>, PkiError> {
    match host.read(node_str(path)?) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::Read(e)),
    }
}

fn node_str(path: &Path) -> Result<&str, PkiError> {
    path.to_str().ok_or_else(|| PkiError::Path {
        path: path.to_path_buf(),
    })
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

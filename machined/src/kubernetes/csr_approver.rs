//! Approves kubelets' serving-certificate requests.
//!
//! A worker has no cluster CA key, so its kubelet asks for its serving
//! certificate by CSR (`serverTLSBootstrap`, signer
//! `kubernetes.io/kubelet-serving`); kube-controller-manager signs such CSRs
//! with the cluster CA once approved, but its in-tree approver never
//! approves them, because only someone who knows the node's addresses can
//! tell a good request from a node asking for another name. machined on a
//! control-plane node is that someone: it approves a request when the node
//! asks for itself, as itself, for exactly a server certificate, with names
//! the API already lists for that node. kube-apiserver then verifies the
//! kubelet with the cluster CA (`--kubelet-certificate-authority`), so
//! `kubectl logs`, `exec` and `port-forward` reach workers over verified TLS.
//!
//! The decision is a pure function ([`decide`]) over what the CSR object
//! and its PKCS#10 request say ([`ServingRequest`]) and the node's addresses
//! ([`NodeAddresses`]); [`approve_pending`] fetches both and writes the
//! outcome through the API.
//!
//! Trust boundary: a Node's addresses are written by its own kubelet
//! (NodeRestriction lets it update only its own Node), so this proves a
//! node asks only for names it publicly claims, not that it owns them. That
//! is the same guarantee kubeadm's documented manual approval and the
//! common external approvers give.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// The signer of kubelet serving certificates.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The group every node's credentials carry.
pub const NODES_GROUP: &str = "system:nodes";
/// Node user names are this prefix and the node name.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The usages a kubelet serving CSR must carry, and the one it may add
/// (the kubelet adds key encipherment for RSA keys only).
const REQUIRED_USAGES: [&str; 2] = ["digital signature", "server auth"];
const OPTIONAL_USAGES: [&str; 1] = ["key encipherment"];

/// Everything the decision looks at: the CSR object's fields (set by the
/// apiserver from the requestor's credentials, so trustworthy) and what its
/// PKCS#10 request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingRequest {
    pub name: String,
    pub signer_name: String,
    /// `spec.username`: who submitted it.
    pub username: String,
    pub groups: Vec<String>,
    pub usages: Vec<String>,
    /// The parsed request, or why it could not be parsed.
    pub request: Result<RequestedCert, String>,
}

/// What a PKCS#10 request asks to be certified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestedCert {
    pub common_names: Vec<String>,
    pub organizations: Vec<String>,
    /// Subject attributes other than CN and O (their OIDs), which a
    /// kubelet never sends.
    pub other_subject: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// SANs of other kinds (e-mail, URI, ...), described.
    pub other_sans: Vec<String>,
}

/// The names a node may put in its serving certificate: its Node object's
/// `status.addresses` (host names and DNS names; IPs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAddresses {
    pub dns_names: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl NodeAddresses {
    /// From a Node object's `status.addresses`.
    pub fn of(node: &Node) -> Self {
        let mut out = NodeAddresses::default();
        let addresses = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .map(Vec::as_slice)
            .unwrap_or_default();
        for a in addresses {
            match a.type_.as_str() {
                "InternalIP" | "ExternalIP" => {
                    if let Ok(ip) = a.address.parse() {
                        out.ips.insert(ip);
                    }
                }
                "Hostname" | "InternalDNS" | "ExternalDNS" => {
                    out.dns_names.insert(a.address.to_ascii_lowercase());
                }
                _ => {}
            }
        }
        out
    }
}

/// What to do with one CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    /// Refused for good: the reason is written into the CSR's Denied
    /// condition, and the kubelet will ask again with a new CSR.
    Deny(String),
    /// Left pending: not ours to judge, or not yet (the node is not
    /// registered); looked at again on the next pass.
    Ignore(String),
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Approve => write!(f, "approved"),
            Decision::Deny(why) => write!(f, "denied: {why}"),
            Decision::Ignore(why) => write!(f, "left pending: {why}"),
        }
    }
}

/// The node a CSR's requestor is, if it is one: `system:node:<n>` → `<n>`.
pub fn requesting_node(req: &ServingRequest) -> Option<&str> {
    req.username
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
}

/// Judge one pending CSR. `node` is the requesting node's addresses as the
/// API shows them, `None` when that Node is not registered (yet).
pub fn decide(req: &ServingRequest, node: Option<&NodeAddresses>) -> Decision {
    if req.signer_name != KUBELET_SERVING_SIGNER {
        // Other signers have their own approvers (kube-controller-manager's
        // for kubelet client certificates); never judge theirs.
        return Decision::Ignore(format!("signer {} is not ours", req.signer_name));
    }
    let Some(node_name) = requesting_node(req) else {
        return Decision::Deny(format!(
            "requested by {:?}, not by a node (system:node:<name>)",
            req.username
        ));
    };
    if !req.groups.iter().any(|g| g == NODES_GROUP) {
        return Decision::Deny(format!(
            "requestor {} is not in group {NODES_GROUP}",
            req.username
        ));
    }
    let cert = match &req.request {
        Ok(c) => c,
        Err(e) => return Decision::Deny(format!("unreadable request: {e}")),
    };
    if cert.common_names != [req.username.as_str()] {
        return Decision::Deny(format!(
            "subject CN {:?} is not the requestor {}",
            cert.common_names, req.username
        ));
    }
    if cert.organizations != [NODES_GROUP] {
        return Decision::Deny(format!(
            "subject O {:?} is not [{NODES_GROUP}]",
            cert.organizations
        ));
    }
    if !cert.other_subject.is_empty() {
        return Decision::Deny(format!(
            "subject has attributes besides CN and O: {:?}",
            cert.other_subject
        ));
    }
    let usages: BTreeSet<&str> = req.usages.iter().map(String::as_str).collect();
    let required_present = REQUIRED_USAGES.iter().all(|u| usages.contains(u));
    let only_allowed = usages
        .iter()
        .all(|u| REQUIRED_USAGES.contains(u) || OPTIONAL_USAGES.contains(u));
    if !required_present || !only_allowed {
        return Decision::Deny(format!(
            "usages {:?} are not exactly server auth + digital signature (+ key encipherment)",
            req.usages
        ));
    }
    if !cert.other_sans.is_empty() {
        return Decision::Deny(format!(
            "asks for SANs a kubelet never needs: {:?}",
            cert.other_sans
        ));
    }
    if cert.dns_names.is_empty() && cert.ip_addresses.is_empty() {
        // Such a certificate could not be verified for any address the
        // apiserver dials: useless, and not what a kubelet asks for.
        return Decision::Deny("asks for no DNS or IP SAN".into());
    }
    let Some(node) = node else {
        return Decision::Ignore(format!("node {node_name} is not registered yet"));
    };
    if let Some(dns) = cert
        .dns_names
        .iter()
        .find(|d| !node.dns_names.contains(&d.to_ascii_lowercase()))
    {
        return Decision::Deny(format!(
            "DNS SAN {dns} is not one of node {node_name}'s names {:?}",
            node.dns_names
        ));
    }
    if let Some(ip) = cert.ip_addresses.iter().find(|ip| !node.ips.contains(ip)) {
        return Decision::Deny(format!(
            "IP SAN {ip} is not one of node {node_name}'s addresses {:?}",
            node.ips
        ));
    }
    Decision::Approve
}

/// Read what a PEM-encoded PKCS#10 request asks for.
pub fn parse_request(pem: &[u8]) -> Result<RequestedCert, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not PEM: {e}"))?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(format!(
            "PEM block is {:?}, not a CERTIFICATE REQUEST",
            pem.label
        ));
    }
    let (_, csr) = X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| format!("not a PKCS#10 request: {e}"))?;
    let info = &csr.certification_request_info;
    let mut out = RequestedCert::default();
    let cn = x509_parser::oid_registry::OID_X509_COMMON_NAME;
    let o = x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME;
    for attr in info.subject.iter_attributes() {
        let value = attr
            .as_str()
            .map_err(|e| format!("subject attribute {}: {e}", attr.attr_type()))?
            .to_string();
        if *attr.attr_type() == cn {
            out.common_names.push(value);
        } else if *attr.attr_type() == o {
            out.organizations.push(value);
        } else {
            out.other_subject.push(attr.attr_type().to_id_string());
        }
    }
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else {
            // kube-controller-manager's signer takes only the SANs from a
            // request; other requested extensions never reach the cert.
            continue;
        };
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(d) => out.dns_names.push((*d).to_string()),
                GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                    Some(ip) => out.ip_addresses.push(ip),
                    None => out.other_sans.push(format!("IP of {} bytes", b.len())),
                },
                other => out.other_sans.push(format!("{other:?}")),
            }
        }
    }
    Ok(out)
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(b).ok().map(IpAddr::from)
}

/// The decision's inputs from a CSR object.
pub fn serving_request(csr: &CertificateSigningRequest) -> ServingRequest {
    let spec = &csr.spec;
    ServingRequest {
        name: csr.metadata.name.clone().unwrap_or_default(),
        signer_name: spec.signer_name.clone(),
        username: spec.username.clone().unwrap_or_default(),
        groups: spec.groups.clone().unwrap_or_default(),
        usages: spec.usages.clone().unwrap_or_default(),
        request: parse_request(&spec.request.0),
    }
}

/// Whether a CSR still waits for a decision (no Approved or Denied
/// condition; a Failed one is final too).
pub fn pending(csr: &CertificateSigningRequest) -> bool {
    let conditions = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    !conditions
        .iter()
        .any(|c| matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed"))
}

#[derive(Debug, thiserror::Error)]
pub enum ApproverError {
    #[error("listing kubelet serving CSRs: {0}")]
    List(#[source] kube::Error),
    #[error("reading node {node} for CSR {csr}: {source}")]
    Node {
        node: String,
        csr: String,
        #[source]
        source: kube::Error,
    },
    #[error("recording the decision on CSR {csr}: {source}")]
    Record {
        csr: String,
        #[source]
        source: kube::Error,
    },
}

/// One pass: judge every pending kubelet-serving CSR and record approvals
/// and denials through the `approval` subresource. Returns each pending
/// CSR's name and decision (ignored ones included), for the caller to log.
pub async fn approve_pending(
    client: &kube::Client,
) -> Result<Vec<(String, Decision)>, ApproverError> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let list = csrs
        .list(&ListParams::default().fields(&format!("spec.signerName={KUBELET_SERVING_SIGNER}")))
        .await
        .map_err(ApproverError::List)?;
    let mut out = Vec::new();
    for csr in list.items.iter().filter(|c| pending(c)) {
        let req = serving_request(csr);
        let node = match requesting_node(&req) {
            Some(n) => nodes
                .get_opt(n)
                .await
                .map_err(|source| ApproverError::Node {
                    node: n.to_string(),
                    csr: req.name.clone(),
                    source,
                })?
                .map(|n| NodeAddresses::of(&n)),
            None => None,
        };
        let decision = decide(&req, node.as_ref());
        let (type_, reason, message) = match &decision {
            Decision::Approve => (
                "Approved",
                "BasaltNodeServingCert",
                format!(
                    "approved by machined: {} asks for its own serving certificate",
                    req.username
                ),
            ),
            Decision::Deny(why) => (
                "Denied",
                "BasaltNodeServingCertRefused",
                format!("denied by machined: {why}"),
            ),
            Decision::Ignore(_) => {
                out.push((req.name, decision));
                continue;
            }
        };
        let status = CertificateSigningRequestStatus {
            certificate: None,
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: type_.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_update_time: None,
                last_transition_time: None,
            }]),
        };
        csrs.patch_approval(
            &req.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .map_err(|source| ApproverError::Record {
            csr: req.name.clone(),
            source,
        })?;
        out.push((req.name, decision));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ServingRequest {
        ServingRequest {
            name: "csr-1".into(),
            signer_name: KUBELET_SERVING_SIGNER.into(),
            username: "system:node:worker-1".into(),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
            usages: vec!["digital signature".into(), "server auth".into()],
            request: Ok(RequestedCert {
                common_names: vec!["system:node:worker-1".into()],
                organizations: vec![NODES_GROUP.into()],
                dns_names: vec!["worker-1".into()],
                ip_addresses: vec!["192.168.77.11".parse().unwrap()],
                ..Default::default()
            }),
        }
    }

    fn node() -> NodeAddresses {
        NodeAddresses {
            dns_names: ["worker-1".to_string()].into(),
            ips: ["192.168.77.11".parse().unwrap()].into(),
        }
    }

    fn cert(r: &mut ServingRequest) -> &mut RequestedCert {
        r.request.as_mut().unwrap()
    }

    fn denied(r: &ServingRequest) -> String {
        match decide(r, Some(&node())) {
            Decision::Deny(why) => why,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn a_node_asking_for_its_own_names_is_approved() {
        assert_eq!(decide(&good(), Some(&node())), Decision::Approve);
        // RSA keys add key encipherment; a subset of the node's names is fine.
        let mut r = good();
        r.usages.push("key encipherment".into());
        cert(&mut r).dns_names.clear();
        assert_eq!(decide(&r, Some(&node())), Decision::Approve);
        // Host names compare case-insensitively, as DNS does.
        let mut r = good();
        cert(&mut r).dns_names = vec!["Worker-1".into()];
        assert_eq!(decide(&r, Some(&node())), Decision::Approve);
    }

    #[test]
    fn other_signers_are_left_to_their_approvers() {
        let mut r = good();
        r.signer_name = "kubernetes.io/kube-apiserver-client-kubelet".into();
        assert!(matches!(decide(&r, Some(&node())), Decision::Ignore(_)));
    }

    #[test]
    fn an_unregistered_node_waits() {
        assert!(matches!(decide(&good(), None), Decision::Ignore(_)));
    }

    #[test]
    fn foreign_names_are_denied() {
        let mut r = good();
        cert(&mut r).ip_addresses.push("10.0.0.1".parse().unwrap());
        assert!(denied(&r).contains("10.0.0.1"));
        let mut r = good();
        cert(&mut r).dns_names.push("kubernetes.default".into());
        assert!(denied(&r).contains("kubernetes.default"));
        let mut r = good();
        cert(&mut r).other_sans.push("URI(spiffe://x)".into());
        assert!(denied(&r).contains("SANs"));
        let mut r = good();
        cert(&mut r).dns_names.clear();
        cert(&mut r).ip_addresses.clear();
        assert!(denied(&r).contains("no DNS or IP SAN"));
    }

    #[test]
    fn the_requestor_must_be_the_node_in_the_subject() {
        let mut r = good();
        r.username = "system:node:worker-2".into();
        assert!(denied(&r).contains("CN"));
        let mut r = good();
        r.username = "system:bootstrap:abcdef".into();
        assert!(denied(&r).contains("not by a node"));
        let mut r = good();
        r.username = "system:node:".into();
        assert!(denied(&r).contains("not by a node"));
        let mut r = good();
        r.groups = vec!["system:authenticated".into()];
        assert!(denied(&r).contains("group"));
        let mut r = good();
        cert(&mut r).organizations = vec!["system:masters".into()];
        assert!(denied(&r).contains("subject O"));
        let mut r = good();
        cert(&mut r).organizations.push("system:masters".into());
        assert!(denied(&r).contains("subject O"));
        let mut r = good();
        cert(&mut r).other_subject.push("2.5.4.11".into());
        assert!(denied(&r).contains("besides CN and O"));
        let mut r = good();
        r.request = Err("not PEM".into());
        assert!(denied(&r).contains("unreadable"));
    }

    #[test]
    fn usages_must_be_exactly_a_server_certificate() {
        for usages in [
            vec!["digital signature", "server auth", "client auth"],
            vec!["server auth"],
            vec!["digital signature", "client auth"],
            vec!["digital signature", "server auth", "cert sign"],
        ] {
            let mut r = good();
            r.usages = usages.iter().map(|u| u.to_string()).collect();
            assert!(denied(&r).contains("usages"), "{usages:?}");
        }
    }

    #[test]
    fn requests_are_read_from_pem() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["worker-1".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("192.168.77.11".parse().unwrap()));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, NODES_GROUP);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:worker-1");
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        let got = parse_request(pem.as_bytes()).unwrap();
        assert_eq!(got.common_names, ["system:node:worker-1"]);
        assert_eq!(got.organizations, [NODES_GROUP]);
        assert_eq!(got.dns_names, ["worker-1"]);
        assert_eq!(
            got.ip_addresses,
            ["192.168.77.11".parse::<IpAddr>().unwrap()]
        );
        assert!(got.other_subject.is_empty() && got.other_sans.is_empty());
        assert!(parse_request(b"garbage").is_err());
    }
}

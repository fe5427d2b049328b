//! Kubelet serving-certificate requests as machined's CSR approver reads and
//! judges them (`machined::kubernetes::csr_approver`). Any node holding a
//! bootstrap token or node credentials can submit a CSR, so its PKCS#10
//! bytes are untrusted.
//!
//! Input: PEM text, or (first byte 0xff) raw DER that the target wraps in a
//! `CERTIFICATE REQUEST` PEM block, so the fuzzer reaches the DER parser
//! without having to keep base64 valid.
//!
//! Properties:
//! - reading the request never panics;
//! - the decision for a request from node `n1` (right signer, group, usages;
//!   the node lists `n1` and 10.0.0.1) is Approve exactly when the request
//!   names that node and nothing else: subject CN `system:node:n1` and O
//!   `system:nodes` only, at least one SAN, every DNS SAN `n1` (any case),
//!   every IP SAN 10.0.0.1, no other kind of SAN.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use machined::kubernetes::csr_approver::{
    Decision, KUBELET_SERVING_SIGNER, NODES_GROUP, NodeAddresses, ServingRequest, decide,
    parse_request,
};
use std::net::{IpAddr, Ipv4Addr};

const NODE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

fuzz_target!(|data: &[u8]| {
    let pem = match data.split_first() {
        Some((0xff, der)) => format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
        .into_bytes(),
        _ => data.to_vec(),
    };
    let request = parse_request(&pem);
    let node = NodeAddresses {
        dns_names: ["n1".to_string()].into(),
        ips: [NODE_IP].into(),
    };
    let req = ServingRequest {
        name: "csr-fuzz".into(),
        signer_name: KUBELET_SERVING_SIGNER.into(),
        username: "system:node:n1".into(),
        groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        usages: vec!["digital signature".into(), "server auth".into()],
        request: request.clone(),
    };
    let approved = decide(&req, Some(&node)) == Decision::Approve;
    let names_only_n1 = request.as_ref().is_ok_and(|c| {
        c.common_names == ["system:node:n1"]
            && c.organizations == [NODES_GROUP]
            && c.other_subject.is_empty()
            && c.other_sans.is_empty()
            && !(c.dns_names.is_empty() && c.ip_addresses.is_empty())
            && c.dns_names.iter().all(|d| d.eq_ignore_ascii_case("n1"))
            && c.ip_addresses.iter().all(|ip| *ip == NODE_IP)
    });
    assert_eq!(
        approved, names_only_n1,
        "decision {:?} for {request:?}",
        decide(&req, Some(&node))
    );
});

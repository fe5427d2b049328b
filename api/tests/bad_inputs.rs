//! Every way a config can be wrong, each with the error an operator sees.
//! Config cases go through `MachineConfig::parse`; signature cases through
//! `verify_and_parse`, exactly as a node checks an apply.

mod cases;

use basalt_api::config::MachineConfig;
use basalt_api::signed::{Admission, verify_and_parse};
use cases::*;

fn line_of(doc: &str, needle: &str) -> usize {
    doc.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in doc"))
}

#[test]
fn bad_configs_are_rejected_with_path_and_position() {
    let cases = config_cases();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for c in &cases {
        match MachineConfig::parse(c.doc.as_bytes()) {
            Ok(_) => failures.push(format!("{}: accepted", c.name)),
            Err(errs) => {
                let hit = errs
                    .0
                    .iter()
                    .find(|e| e.path == c.path && e.message.contains(c.message));
                match (hit, c.line_of) {
                    (None, _) => failures.push(format!(
                        "{}: expected `{}: …{}…`, got:\n{}",
                        c.name, c.path, c.message, errs
                    )),
                    (Some(e), Some(text)) if e.line != line_of(&c.doc, text) => {
                        failures.push(format!(
                            "{}: error at line {}, expected line {} ({text:?})",
                            c.name,
                            e.line,
                            line_of(&c.doc, text)
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn non_utf8_is_rejected_with_position() {
    let mut doc = worker().into_bytes();
    doc.extend_from_slice(b"\n# caf\xe9\n");
    let errs = MachineConfig::parse(&doc).unwrap_err();
    assert_eq!(
        errs.0[0].message,
        "not valid UTF-8; a config must be UTF-8 text"
    );
    assert_eq!(errs.0[0].line, worker().lines().count() + 2);
}

#[test]
fn examples_validate() {
    MachineConfig::parse(WORKER.as_bytes()).unwrap();
    MachineConfig::parse(CONTROLPLANE.as_bytes()).unwrap();
}

#[test]
fn errors_render_as_file_line_col_path_message() {
    let doc = edit(&worker(), "mtu = 1500", "mtu = 20");
    let errs = MachineConfig::parse(doc.as_bytes()).unwrap_err();
    let line = line_of(&doc, "mtu = 20");
    assert_eq!(
        errs.render("w.toml"),
        format!(
            "w.toml:{line}:7: machine.network.interfaces[0].mtu: 20 is out of range; expected 68..=65535"
        )
    );
}

#[test]
fn secrets_never_print() {
    let c = MachineConfig::parse(CONTROLPLANE.as_bytes()).unwrap();
    let debug = format!("{c:?} {c:#?}");
    for secret in [
        c.cluster.token.expose(),
        c.cluster.ca_key.as_ref().unwrap().expose(),
        c.cluster.etcd_ca_key.as_ref().unwrap().expose(),
        c.cluster.front_proxy_ca_key.as_ref().unwrap().expose(),
        c.cluster.service_account_key.as_ref().unwrap().expose(),
    ] {
        let probe = secret.lines().nth(1).unwrap_or(secret);
        assert!(!debug.contains(probe), "secret leaked into Debug");
    }
    assert!(debug.contains("<redacted>"));
}

#[test]
fn bad_signatures_are_rejected() {
    let mut failures = Vec::new();
    for c in sig_cases() {
        match verify_and_parse(
            c.doc.as_bytes(),
            &c.sig,
            &Admission::offline(&c.policy, c.current),
        ) {
            Ok(_) => failures.push(format!("{}: accepted", c.name)),
            Err(e) if !e.to_string().contains(&c.message) => {
                failures.push(format!("{}: expected …{}…, got: {e}", c.name, c.message))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn threshold_of_distinct_admins_is_met() {
    let doc = worker();
    let two = sign(1, &doc) + &sign(2, &doc);
    let two_of_two = policy(&[1, 2], &[], 2);
    let v = verify_and_parse(
        doc.as_bytes(),
        two.as_bytes(),
        &Admission::offline(&two_of_two, 0),
    )
    .unwrap();
    assert_eq!(v.signers.len(), 2);
    assert_eq!(v.signers[0].fingerprint, key(1).public().fingerprint());
    // An extra signature by an untrusted key does not spoil a met threshold.
    let three = two + &sign(9, &doc);
    verify_and_parse(
        doc.as_bytes(),
        three.as_bytes(),
        &Admission::offline(&two_of_two, 0),
    )
    .unwrap();
}

/// The Kubernetes keys: defaults when absent, and what the rules let through.
#[test]
fn kubernetes_keys_default_and_accept_what_nodes_may_set() {
    let c = MachineConfig::parse(worker().as_bytes()).unwrap();
    assert_eq!(c.cluster.dns_domain, "cluster.local");
    assert!(!c.cluster.allow_scheduling_on_control_plane);
    // Absent keys take their defaults.
    let doc = edit(
        &edit(&worker(), "dns_domain = \"cluster.local\"\n", ""),
        "allow_scheduling_on_control_plane = false\n",
        "",
    );
    let c = MachineConfig::parse(doc.as_bytes()).unwrap();
    assert_eq!(c.cluster.dns_domain, basalt_api::config::DEFAULT_DNS_DOMAIN);
    assert!(!c.cluster.allow_scheduling_on_control_plane);

    // Every allow-listed flag with a value of its kind.
    let args: Vec<String> = basalt_api::config::KUBELET_EXTRA_ARGS
        .iter()
        .map(|a| {
            use basalt_api::config::KubeletArgValue as V;
            let v = match a.value {
                V::Int { min, max } => ((min + max) / 2).to_string(),
                V::Bool => "false".into(),
                V::Duration => "1m30.5s".into(),
                V::Token => "memory.available<100Mi,nodefs.available<10%".into(),
            };
            format!("\"{}\" = \"{v}\"", a.name)
        })
        .collect();
    let doc = edit(
        &worker(),
        "extra_args = { \"max-pods\" = \"110\" }",
        &format!("extra_args = {{ {} }}", args.join(", ")),
    );
    let doc = edit(
        &doc,
        "node_labels = { ",
        "node_labels = { \"node.kubernetes.io/pool\" = \"a\", \"x.kubelet.kubernetes.io/y\" = \"\", \"topology.kubernetes.io/region\" = \"eu-1\", \"example.com/role\" = \"db\", plain = \"A_b.c\", ",
    );
    let doc = edit(
        &doc,
        "node_taints = {}",
        "node_taints = { \"node-role.kubernetes.io/infra\" = \":NoExecute\", \"example.com/gpu\" = \"yes:PreferNoSchedule\" }",
    );
    let doc = edit(
        &doc,
        "dns_domain = \"cluster.local\"",
        "dns_domain = \"k8s.example.org\"",
    );
    if let Err(e) = MachineConfig::parse(doc.as_bytes()) {
        panic!("{}", e.render("w.toml"));
    }
    // The control-plane example leaves its taint to machined.
    let cp = edit(
        CONTROLPLANE,
        "allow_scheduling_on_control_plane = false",
        "allow_scheduling_on_control_plane = true",
    );
    MachineConfig::parse(cp.as_bytes()).unwrap();
}

#[test]
fn cilium_settings_default_and_parse_typed() {
    use basalt_api::config::{RoutingMode, TunnelProtocol};
    let w = worker();
    let defaults = MachineConfig::parse(w.as_bytes()).unwrap().cluster.cni;
    assert_eq!(defaults.cilium, None);
    let s = defaults.cilium_settings();
    assert_eq!(s.routing_mode, RoutingMode::Tunnel);
    assert_eq!(s.tunnel_protocol, None);
    let native = edit(
        &w,
        "kube_proxy_replacement = true\n",
        "kube_proxy_replacement = true\n[cluster.cni.cilium]\nrouting_mode = \"native\"\nnative_routing_cidr = \"10.244.0.0/16\"\nmtu = 1400\n",
    );
    let c = match MachineConfig::parse(native.as_bytes()) {
        Ok(c) => c.cluster.cni.cilium_settings(),
        Err(e) => panic!("{}", e.render("w.toml")),
    };
    assert_eq!(c.routing_mode, RoutingMode::Native);
    assert_eq!(c.native_routing_cidr.unwrap().to_string(), "10.244.0.0/16");
    assert_eq!(c.mtu, Some(1400));
    let geneve = edit(
        &w,
        "kube_proxy_replacement = true\n",
        "kube_proxy_replacement = true\n[cluster.cni.cilium]\ntunnel_protocol = \"geneve\"\n",
    );
    let g = MachineConfig::parse(geneve.as_bytes()).unwrap();
    assert_eq!(
        g.cluster.cni.cilium_settings().tunnel_protocol,
        Some(TunnelProtocol::Geneve)
    );
}

/// No flag is both allowed and protected, and each list names a flag once.
#[test]
fn kubelet_flag_lists_are_disjoint() {
    use basalt_api::config::{KUBELET_EXTRA_ARGS, KUBELET_PROTECTED_ARGS};
    let mut seen = std::collections::HashSet::new();
    for name in KUBELET_EXTRA_ARGS
        .iter()
        .map(|a| a.name)
        .chain(KUBELET_PROTECTED_ARGS.iter().map(|(n, _)| *n))
    {
        assert!(seen.insert(name), "{name} listed twice");
    }
}

/// The selector the control-plane example shows (commented out), used
/// instead of its `disk`, parses into typed keys.
#[test]
fn the_example_disk_selector_parses_typed() {
    use basalt_api::config::{DiskType, InstallTarget, SizeOp};
    let start = CONTROLPLANE
        .find("disk = \"/dev/vda\"")
        .expect("the example installs to a path");
    let end = CONTROLPLANE[start..].find('\n').unwrap() + start + 1;
    let mut doc = CONTROLPLANE[..start].to_string();
    for line in CONTROLPLANE[end..].lines() {
        doc.push_str(
            line.strip_prefix("# ")
                .filter(|l| {
                    l.starts_with("[machine.install.selector]")
                        || ["size", "model", "serial", "wwid", "type"]
                            .iter()
                            .any(|k| l.starts_with(&format!("{k} = ")))
                })
                .unwrap_or(line),
        );
        doc.push('\n');
    }
    let c = MachineConfig::parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    let install = c.machine.install.expect("[machine.install]");
    let Some(InstallTarget::Selector(s)) = install.target() else {
        panic!("a selector: {install:?}");
    };
    let size = s.size.as_ref().expect("size");
    assert_eq!((size.op, size.bytes), (SizeOp::AtLeast, 64 << 30));
    assert_eq!(s.model.as_deref(), Some("Samsung SSD 980*"));
    assert_eq!(s.serial.as_deref(), Some("S5GXNF0R123456"));
    assert_eq!(s.wwid.as_deref(), Some("eui.002538b111b2c3d4"));
    assert_eq!(s.kind, Some(DiskType::Nvme));
}

//! The agent's and operator's flags as Cilium reads them, per setting.

use super::*;
use crate::kubernetes::components::{CONTROL_PLANE, KUBELET};
use crate::kubernetes::layout::Layout;
use basalt_api::config::Role;
use basalt_api::sshkey::PrivateKey;
use basaltctl::template::{Shape, generate};
use std::path::Path;

fn config(role: Role, cilium_table: &str) -> MachineConfig {
    let admin = PrivateKey::from_seed(&[7; 32], "test").public();
    let doc = generate(
        role,
        "test",
        "https://10.0.2.15:6443",
        &admin,
        Shape::default(),
    )
    .unwrap();
    let doc = doc.replacen(
        "kube_proxy_replacement = true\n",
        &format!("kube_proxy_replacement = true\n{cilium_table}"),
        1,
    );
    match MachineConfig::parse(doc.as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("{}", e.render("test.toml")),
    }
}

fn with<T>(cfg: &MachineConfig, f: impl FnOnce(&Components<'_>) -> T) -> T {
    let layout = Layout::new("/var/lib/basalt/state");
    f(&Components {
        config: cfg,
        layout: &layout,
        node_name: "node-1",
        node_ip: "10.0.2.15".parse().unwrap(),
        root: Path::new("/"),
    })
}

fn flags(spec: &ServiceSpec) -> Vec<&str> {
    spec.argv.iter().skip(1).map(String::as_str).collect()
}

fn flag<'a>(spec: &'a ServiceSpec, name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    spec.argv.iter().find_map(|a| a.strip_prefix(&prefix))
}

#[test]
fn by_default_the_agent_tunnels_over_vxlan_and_replaces_kube_proxy() {
    let cfg = config(Role::Worker, "");
    let agent = with(&cfg, |c| c.cilium_agent());
    assert_eq!(agent.argv[0], "/usr/bin/cilium-agent");
    for f in [
        "--routing-mode=tunnel",
        "--tunnel-protocol=vxlan",
        "--kube-proxy-replacement=true",
        "--enable-bpf-masquerade=true",
        "--ipam=kubernetes",
        "--identity-allocation-mode=crd",
        "--enable-l7-proxy=false",
        "--enable-hubble=false",
        "--lib-dir=/var/lib/cilium",
        "--write-cni-conf-when-ready=/etc/cni/net.d/05-cilium.conflist",
    ] {
        assert!(
            flags(&agent).contains(&f),
            "{f} missing from {:?}",
            agent.argv
        );
    }
    assert_eq!(flag(&agent, "ipv4-native-routing-cidr"), None);
    assert_eq!(flag(&agent, "mtu"), None);
    // As its node: the kubelet's credentials.
    assert_eq!(
        flag(&agent, "k8s-kubeconfig-path"),
        Some("/var/lib/basalt/state/kubernetes/kubelet.kubeconfig")
    );
    assert!(
        agent.depends_on.is_empty(),
        "a worker has no local apiserver"
    );
    // clang is found through PATH, at its Debian location in the image.
    let path = agent.env.iter().find(|(k, _)| k == "PATH").unwrap();
    assert!(path.1.split(':').any(|d| d == "/usr/lib/llvm-19/bin"));
    match &agent.readiness {
        Readiness::Http(p) => {
            assert_eq!(p.address, "127.0.0.1:9879");
            assert_eq!(p.path, "/healthz");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn settings_become_flags() {
    let cfg = config(
        Role::Worker,
        "[cluster.cni.cilium]\nrouting_mode = \"native\"\nnative_routing_cidr = \"10.244.0.0/16\"\nmtu = 1400\n",
    );
    let agent = with(&cfg, |c| c.cilium_agent());
    assert_eq!(flag(&agent, "routing-mode"), Some("native"));
    assert_eq!(
        flag(&agent, "ipv4-native-routing-cidr"),
        Some("10.244.0.0/16")
    );
    assert_eq!(flag(&agent, "auto-direct-node-routes"), Some("true"));
    assert_eq!(flag(&agent, "tunnel-protocol"), None);
    assert_eq!(flag(&agent, "mtu"), Some("1400"));

    let geneve = config(
        Role::Worker,
        "[cluster.cni.cilium]\ntunnel_protocol = \"geneve\"\n",
    );
    let agent2 = with(&geneve, |c| c.cilium_agent());
    assert_eq!(flag(&agent2, "tunnel-protocol"), Some("geneve"));
    // A changed setting is a changed spec: the controller restarts the agent.
    assert_ne!(
        agent2,
        with(&config(Role::Worker, ""), |c| c.cilium_agent())
    );
}

#[test]
fn the_operator_runs_on_control_planes_and_the_agent_once_the_node_has_credentials() {
    let cp = config(Role::Controlplane, "");
    let names = |specs: Vec<ServiceSpec>| specs.into_iter().map(|s| s.name).collect::<Vec<_>>();
    with(&cp, |c| {
        let all = names(c.services(true, true));
        assert!(all.iter().any(|n| n == OPERATOR) && all.iter().any(|n| n == AGENT));
        for n in CONTROL_PLANE {
            assert!(all.iter().any(|a| a == n));
        }
        let operator = c.cilium_operator();
        assert_eq!(
            flag(&operator, "k8s-kubeconfig-path"),
            Some("/var/lib/basalt/state/kubernetes/cilium-operator.kubeconfig")
        );
        assert_eq!(flag(&operator, "identity-allocation-mode"), Some("crd"));
        // The operator's own flag names (it has no --leader-elect).
        assert_eq!(
            flag(&operator, "leader-election-lease-duration"),
            Some("60s")
        );
        assert!(
            !operator
                .argv
                .iter()
                .any(|a| a.starts_with("--leader-elect="))
        );
        assert_eq!(operator.depends_on, [APISERVER]);
        assert_eq!(c.cilium_agent().depends_on, [APISERVER]);
    });
    let worker = config(Role::Worker, "");
    with(&worker, |c| {
        assert_eq!(names(c.services(false, false)), [KUBELET]);
        assert_eq!(names(c.services(false, true)), [KUBELET, AGENT]);
    });
}

#[test]
fn the_operator_may_update_exactly_ciliums_crds() {
    let role = operator_role();
    let rules = role.rules.unwrap();
    let update = rules
        .iter()
        .find(|r| r.verbs == ["update"] && r.resource_names.is_some())
        .unwrap();
    let names = update.resource_names.as_ref().unwrap();
    assert!(names.iter().all(|n| n.ends_with(".cilium.io")));
    assert!(names.iter().any(|n| n == "ciliumnodes.cilium.io"));
    // The agent reads no Secrets (no L7 proxy, no ingress).
    let agent = agent_role().rules.unwrap();
    assert!(
        !agent
            .iter()
            .any(|r| r.resources.as_ref().unwrap().iter().any(|x| x == "secrets"))
    );
}

#[test]
fn host_checks_say_what_is_missing_and_what_to_do() {
    use crate::host::recording::RecordingKernel;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let mut good = RecordingKernel::new("n")
        .with_filesystem(BPF_FS, BPF_FS_MAGIC)
        .with_filesystem(CGROUP2_FS, CGROUP2_MAGIC);
    for m in required_modules(&Cilium::default()) {
        good = good.with_module(m);
    }
    let host = Host::with_kernel(dir.path(), Arc::new(good));
    let defaults = Cilium::default();
    let checks = host_checks(&host, &defaults, &BpfProbe::Jited);
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["host-bpffs", "host-cgroup2", "host-modules", "host-bpf"]
    );
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");

    // Geneve needs its own module; a v1 cgroup mount and a refusing kernel
    // are named with what was seen.
    let mut bad = RecordingKernel::new("n")
        .with_filesystem(BPF_FS, BPF_FS_MAGIC)
        .with_filesystem(CGROUP2_FS, 0x0102_1994);
    for m in required_modules(&Cilium::default()) {
        bad = bad.with_module(m);
    }
    let host = Host::with_kernel(dir.path(), Arc::new(bad));
    let geneve = Cilium {
        tunnel_protocol: Some(TunnelProtocol::Geneve),
        ..Cilium::default()
    };
    let checks = host_checks(
        &host,
        &geneve,
        &BpfProbe::Refused("Operation not permitted (os error 1)".into()),
    );
    let failing: Vec<(&str, &str)> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| (c.name.as_str(), c.detail.as_str()))
        .collect();
    assert_eq!(
        failing,
        [
            (
                "host-cgroup2",
                "/sys/fs/cgroup is not cgroup2 (unified) (filesystem magic 0x1021994)"
            ),
            (
                "host-modules",
                "not loaded: geneve (add them to the image profile's [kernel] modules)"
            ),
            (
                "host-bpf",
                "the kernel refused a trivial BPF program: Operation not permitted (os error 1) (the kernel needs CONFIG_BPF_SYSCALL, and machined CAP_BPF or CAP_SYS_ADMIN)"
            ),
        ]
    );
}

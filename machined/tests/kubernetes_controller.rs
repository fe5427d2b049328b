//! The Kubernetes controller's decisions against a dev root: bootstrap's
//! refusals, the certificate steps a dry-run plan shows, the node address.
//! (Its own process: the supervisor it needs installs a reaper that owns
//! `waitpid(-1)`, which would break other tests' child processes.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_api::config::{MachineConfig, Role};
use basalt_api::sshkey::PrivateKey;
use basaltctl::template::{Shape, generate};
use machined::controllers::kubernetes::KubernetesController;
use machined::host::Host;
use machined::kubernetes::pki;
use machined::supervisor::{Supervisor, SupervisorConfig};
use std::net::IpAddr;
use std::time::SystemTime;

fn config(role: Role) -> MachineConfig {
    let admin = PrivateKey::from_seed(&[7; 32], "test").public();
    let doc = generate(
        role,
        "test",
        "https://10.0.2.15:6443",
        &admin,
        Shape::default(),
    )
    .unwrap();
    MachineConfig::parse(doc.as_bytes()).unwrap()
}

fn controller() -> (tempfile::TempDir, Host, KubernetesController) {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(SupervisorConfig::default()).unwrap();
    let host = Host::dev(dir.path());
    let c = KubernetesController::new(host.clone(), sup, "/var/lib/basalt/state");
    (dir, host, c)
}

/// Issue every certificate and kubeconfig `cfg` asks for at address `ip`,
/// as the controller's converge does.
fn issue_pki(host: &Host, c: &KubernetesController, cfg: &MachineConfig, ip: IpAddr) {
    let node = c.identity(cfg, &[ip]).unwrap();
    pki::converge(
        host,
        c.layout(),
        &cfg.cluster,
        cfg.machine.role,
        &node,
        SystemTime::now(),
    )
    .unwrap();
}

#[test]
fn bootstrap_refuses_without_config_on_workers_and_the_second_time() {
    let (_dir, _host, c) = controller();
    let e = c.bootstrap(None).unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("no config"), "{e}");

    let e = c.bootstrap(Some(&config(Role::Worker))).unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("workers join"), "{e}");
    assert!(!c.bootstrapped());

    let cp = config(Role::Controlplane);
    c.bootstrap(Some(&cp)).unwrap();
    assert!(c.bootstrapped());
    let e = c.bootstrap(Some(&cp)).unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("already bootstrapped"), "{e}");
}

#[test]
fn a_dry_run_lists_each_certificate_until_it_is_issued_then_only_what_changes() {
    let (_dir, host, c) = controller();
    let cfg = config(Role::Controlplane);
    let ip: IpAddr = "10.0.2.15".parse().unwrap();
    // No address yet: nothing to plan (nor to issue) for Kubernetes.
    assert!(c.plan(Some(&cfg), &cfg, &[]).is_empty());

    let steps: Vec<String> = c
        .plan(Some(&cfg), &cfg, &[ip])
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(
        steps.contains(&"issue certificate apiserver (missing)".to_string()),
        "{steps:?}"
    );
    // Planning writes nothing.
    assert!(c.plan(Some(&cfg), &cfg, &[ip]).len() == steps.len());

    issue_pki(&host, &c, &cfg, ip);
    assert!(c.plan(Some(&cfg), &cfg, &[ip]).is_empty());

    // A new address: the certificates naming it, and only those.
    let moved: IpAddr = "10.0.2.16".parse().unwrap();
    let steps: Vec<String> = c
        .plan(Some(&cfg), &cfg, &[moved])
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("issue certificate apiserver (SANs changed")),
        "{steps:?}"
    );
    assert!(
        !steps
            .iter()
            .any(|s| s.contains("controller-manager.kubeconfig")),
        "{steps:?}"
    );
}

#[test]
fn the_node_ip_is_picked_by_node_ip_subnets() {
    let (_dir, _host, c) = controller();
    let mut cfg = config(Role::Controlplane);
    let addrs: Vec<IpAddr> = ["127.0.0.1", "10.0.2.15", "192.168.77.10"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(c.identity(&cfg, &addrs).unwrap().ips, addrs[1..]);
    cfg.machine.kubelet.node_ip_subnets = vec!["192.168.77.0/24".parse().unwrap()];
    assert_eq!(c.identity(&cfg, &addrs).unwrap().ips, addrs[2..]);
    cfg.machine.kubelet.node_ip_subnets = vec!["172.16.0.0/12".parse().unwrap()];
    assert!(c.identity(&cfg, &addrs).is_none());
}

#[test]
fn a_dry_run_plans_restarting_the_cilium_agent_when_its_settings_change() {
    let (_dir, host, c) = controller();
    let cfg = config(Role::Controlplane);
    let ip: IpAddr = "10.0.2.15".parse().unwrap();
    c.bootstrap(Some(&cfg)).unwrap();
    issue_pki(&host, &c, &cfg, ip);
    let plan = |old: Option<&MachineConfig>, new: &MachineConfig| -> Vec<String> {
        c.plan(old, new, &[ip])
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    // The first config starts everything; the same one again, nothing.
    let first = plan(None, &cfg);
    for name in [
        "etcd",
        "kube-apiserver",
        "cilium-operator",
        "kubelet",
        "cilium-agent",
    ] {
        assert!(
            first.contains(&format!("start service {name}")),
            "{first:?}"
        );
    }
    assert_eq!(plan(Some(&cfg), &cfg), Vec::<String>::new());

    // A new MTU restarts the agent, and only the agent.
    let mut mtu = cfg.clone();
    mtu.cluster.cni.cilium = Some(basalt_api::config::Cilium {
        mtu: Some(1400),
        ..Default::default()
    });
    assert_eq!(
        plan(Some(&cfg), &mtu),
        ["restart service cilium-agent (its settings changed)"]
    );

    // Bringing your own CNI stops Cilium (and asks for no certificate).
    let mut none = cfg.clone();
    none.cluster.cni.name = basalt_api::config::CniName::None;
    let steps = plan(Some(&cfg), &none);
    assert!(
        steps.contains(&"stop service cilium-agent".to_string()),
        "{steps:?}"
    );
    assert!(
        steps.contains(&"stop service cilium-operator".to_string()),
        "{steps:?}"
    );
    assert!(!steps.iter().any(|s| s.contains("start")), "{steps:?}");
}

/// The keys a converge issues are known to the log redaction before any
/// service that holds one starts (and could print it).
#[test]
fn issued_keys_are_redacted_from_service_output_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(SupervisorConfig::default()).unwrap();
    let host = Host::dev(dir.path());
    let c = KubernetesController::new(host, sup.clone(), "/var/lib/basalt/state");
    let cfg = config(Role::Controlplane);
    let ip: IpAddr = "10.0.2.15".parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The kubelet cannot start in a dev root; the PKI is issued before.
    let _ = rt.block_on(c.converge(&cfg, &[ip]));
    let key = std::fs::read_to_string(
        dir.path()
            .join("var/lib/basalt/state/kubernetes/pki/apiserver.key"),
    )
    .unwrap();
    let body = key.lines().nth(1).unwrap();
    assert_eq!(sup.known_secrets().redact(body), "<redacted>");
    rt.block_on(sup.stop_all());
}

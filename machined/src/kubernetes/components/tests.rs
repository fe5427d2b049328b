//! What the generated flags and configs promise, read back as the
//! components would (JSON parsed, flags split).

use super::*;
use basalt_api::config::CniName;
use basalt_api::sshkey::PrivateKey;
use basaltctl::template::{Shape, generate};

fn config(role: Role, shape: Shape<'_>) -> MachineConfig {
    let admin = PrivateKey::from_seed(&[7; 32], "test").public();
    let doc = generate(role, "test", "https://10.0.2.15:6443", &admin, shape).unwrap();
    MachineConfig::parse(doc.as_bytes()).unwrap()
}

fn with<T>(cfg: &MachineConfig, f: impl FnOnce(&Components<'_>) -> T) -> T {
    let layout = Layout::new("/var/lib/basalt/state");
    let c = Components {
        config: cfg,
        layout: &layout,
        node_name: "cp-1",
        node_ip: "10.0.2.15".parse().unwrap(),
        root: Path::new("/"),
    };
    f(&c)
}

fn flag<'a>(spec: &'a ServiceSpec, name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    spec.argv.iter().find_map(|a| a.strip_prefix(&prefix))
}

#[test]
fn the_control_plane_is_started_in_order_only_once_bootstrapped() {
    let cfg = config(Role::Controlplane, Shape::default());
    with(&cfg, |c| {
        assert!(
            c.services(false, true).is_empty(),
            "nothing before bootstrap"
        );
        let names: Vec<String> = c.services(true, true).into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                ETCD,
                APISERVER,
                CONTROLLER_MANAGER,
                SCHEDULER,
                super::super::cilium::OPERATOR,
                KUBELET,
                super::super::cilium::AGENT
            ]
        );
        let api = c.apiserver();
        assert_eq!(api.depends_on, [ETCD]);
        // The kubelet starts once the apiserver listens; the controllers
        // once it is ready.
        let listens = Some(Readiness::Tcp("127.0.0.1:6443".parse().unwrap()));
        assert_eq!(c.kubelet().start_when, listens);
        assert_eq!(c.kubelet().depends_on, [CONTAINERD]);
        for spec in [c.controller_manager(), c.scheduler()] {
            assert_eq!(spec.depends_on, [APISERVER], "{}", spec.name);
            assert_eq!(spec.start_when, None, "{}", spec.name);
        }
        assert_eq!(flag(&api, "anonymous-auth"), Some("false"));
        assert_eq!(flag(&api, "authorization-mode"), Some("Node,RBAC"));
        assert_eq!(
            flag(&api, "enable-admission-plugins"),
            Some("NodeRestriction")
        );
        assert_eq!(flag(&api, "service-cluster-ip-range"), Some("10.96.0.0/12"));
        let cm = c.controller_manager();
        assert_eq!(flag(&cm, "cluster-cidr"), Some("10.244.0.0/16"));
        assert_eq!(flag(&cm, "allocate-node-cidrs"), Some("true"));
        // Every readiness check is HTTPS against a CA, or the kubelet's
        // loopback healthz.
        for spec in c.services(true, true) {
            match &spec.readiness {
                // Plain HTTP only on loopback: the kubelet's healthz and
                // Cilium's health APIs.
                Readiness::Http(p) if spec.name == KUBELET || spec.name.starts_with("cilium") => {
                    assert!(p.tls.is_none() && p.address.starts_with("127.0.0.1:"))
                }
                Readiness::Http(p) => assert!(p.tls.is_some(), "{}", spec.name),
                other => panic!("{}: {other:?}", spec.name),
            }
        }
    });
}

#[test]
fn a_worker_runs_only_the_kubelet_which_joins_with_the_bootstrap_token() {
    let shape = Shape {
        cni: CniName::Bridge,
        ..Shape::default()
    };
    let cfg = config(Role::Worker, shape);
    with(&cfg, |c| {
        let specs = c.services(false, true);
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].name, KUBELET);
        assert_eq!(specs[0].depends_on, [CONTAINERD]);
        assert_eq!(specs[0].start_when, None, "its apiserver is elsewhere");
        assert!(flag(&specs[0], "bootstrap-kubeconfig").is_some());
    });
}

#[test]
fn the_kubelet_config_is_secure_and_taints_the_control_plane_unless_told() {
    let cfg = config(Role::Controlplane, Shape::default());
    let kc: serde_json::Value = with(&cfg, |c| serde_json::from_str(&c.kubelet_config()).unwrap());
    assert_eq!(kc["authentication"]["anonymous"]["enabled"], false);
    assert_eq!(kc["authorization"]["mode"], "Webhook");
    assert_eq!(kc["readOnlyPort"], 0);
    assert_eq!(kc["cgroupDriver"], "cgroupfs");
    assert_eq!(kc["clusterDNS"][0], "10.96.0.10");
    assert_eq!(kc["clusterDomain"], "cluster.local");
    assert_eq!(kc["registerWithTaints"][0]["key"], CONTROL_PLANE_TAINT_KEY);

    let shape = Shape {
        schedule_on_control_plane: true,
        ..Shape::default()
    };
    let cfg = config(Role::Controlplane, shape);
    let kc: serde_json::Value = with(&cfg, |c| serde_json::from_str(&c.kubelet_config()).unwrap());
    assert_eq!(kc["registerWithTaints"], serde_json::json!([]));
}

#[test]
fn the_bridge_config_takes_the_pod_cidr_the_controller_manager_allocates() {
    let cfg = config(Role::Controlplane, Shape::default());
    let conf: serde_json::Value = with(&cfg, |c| {
        serde_json::from_str(&c.bridge_conflist("10.244.3.0/24")).unwrap()
    });
    assert_eq!(conf["plugins"][0]["type"], "bridge");
    assert_eq!(
        conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        "10.244.3.0/24"
    );
}

#[test]
fn nth_address_stays_inside_its_subnet() {
    let s: Cidr = "10.96.0.0/12".parse().unwrap();
    assert_eq!(nth_address(&s, 1), Some("10.96.0.1".parse().unwrap()));
    assert_eq!(nth_address(&s, 10), Some("10.96.0.10".parse().unwrap()));
    let tiny: Cidr = "10.0.0.0/30".parse().unwrap();
    assert_eq!(nth_address(&tiny, 10), None);
    let v6: Cidr = "fd00::/108".parse().unwrap();
    assert_eq!(nth_address(&v6, 10), Some("fd00::a".parse().unwrap()));
}

fn kubelet_config(doc: &str) -> serde_json::Value {
    let cfg = MachineConfig::parse(doc.as_bytes()).unwrap();
    let layout = Layout::new("/var/lib/basalt/state");
    let comps = Components {
        config: &cfg,
        layout: &layout,
        node_name: "n",
        node_ip: IpAddr::from([10, 0, 0, 5]),
        root: Path::new("/"),
    };
    serde_json::from_str(&comps.kubelet_config()).unwrap()
}

#[test]
fn workers_ask_for_their_serving_certificate_and_control_planes_are_issued_one() {
    let worker = kubelet_config(include_str!("../../../../configs/worker.toml"));
    assert_eq!(worker["serverTLSBootstrap"], true);
    assert!(worker.get("tlsCertFile").is_none());
    let cp = kubelet_config(include_str!("../../../../configs/controlplane.toml"));
    assert!(cp.get("serverTLSBootstrap").is_none());
    assert!(
        cp["tlsCertFile"]
            .as_str()
            .unwrap()
            .ends_with("kubelet-serving.crt")
    );
}

#[test]
fn a_cilium_kubelet_waits_out_the_agents_bpf_compile_and_a_bridge_one_keeps_the_default() {
    let doc = include_str!("../../../../configs/controlplane.toml");
    assert!(doc.contains("name = \"cilium\""));
    let cilium = kubelet_config(doc);
    assert_eq!(cilium["runtimeRequestTimeout"], "10m");
    let bridge = kubelet_config(&doc.replace("name = \"cilium\"", "name = \"bridge\""));
    assert!(bridge.get("runtimeRequestTimeout").is_none());
}

/// Every process's command line is in `/proc/<pid>/cmdline`, which readers
/// may read and `GET /v1/processes` lists: no secret goes on one, nor in an
/// environment (refused to every role, but one copy fewer). Secrets reach
/// the components as files in STATE.
#[test]
fn no_secret_is_on_a_command_line_or_in_an_environment() {
    for role in [Role::Controlplane, Role::Worker] {
        for cni in [CniName::Cilium, CniName::Bridge] {
            let shape = Shape {
                cni,
                ..Shape::default()
            };
            let cfg = config(role, shape);
            let secrets = crate::log_policy::config_secrets(&cfg);
            assert!(secrets.len() >= 2, "{secrets:?}");
            let mut specs = with(&cfg, |c| c.services(true, true));
            specs.push(crate::containerd::service(
                std::path::Path::new("/"),
                std::path::Path::new("/usr/bin"),
            ));
            assert!(specs.len() >= 2);
            for spec in &specs {
                let exposed = spec
                    .argv
                    .iter()
                    .chain(spec.env.iter().flat_map(|(k, v)| [k, v]));
                for text in exposed {
                    for s in &secrets {
                        assert!(!text.contains(s.as_str()), "{}: {text}", spec.name);
                    }
                }
            }
        }
    }
}

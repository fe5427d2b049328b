//! Cilium as the node's CNI, in QEMU, driven as an operator drives it: a
//! `basaltctl config gen` control-plane config with the default CNI
//! (Cilium), signed, applied and bootstrapped; `health` waits for the
//! agent (which compiles its BPF programs on the node), the operator and
//! the host prerequisites, and the node turns Ready only once the agent
//! wrote its CNI config.
//!
//! Then what users rely on, read from pods' own logs (the echo image
//! fetches once a second with `$FETCH` set): pods addressed from the
//! node's pod CIDR, pod→pod, pod→ClusterIP and pod→NodePort HTTP with no
//! kube-proxy, CiliumEndpoints, a default-deny NetworkPolicy and an allow
//! rule for one label, and traffic that keeps flowing while the agent is
//! killed and restarted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_api::config::CniName;
use basalt_api::rpc::{
    ApplyMode, ApplyRequest, ApplyResponse, BootstrapResponse, KillResponse, ServiceStatus,
};
use basalt_api::{CONFIG_NAMESPACE, sshsig};
use basaltctl::client::NodeClient;
use qemu_tests::admin_key;
use qemu_tests::cluster::{self, apply, eventually, wait_healthy};
use qemu_tests::kubectl::run as kubectl;
use qemu_tests::vm::Vm;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Unpacking the node image's initramfs under TCG.
const BOOT: Duration = Duration::from_secs(600);
/// The control plane's Go programs and the agent's BPF compile (clang
/// under TCG is ~13× slower than native) all start here.
const HEALTHY: Duration = Duration::from_secs(2700);
/// A policy change reaching the datapath. Usually seconds, but on a first
/// boot the agent reinitialises its datapath once after the host endpoint
/// first loads, and endpoints then wait for new templates: under TCG about
/// 3 min per program (bpf_overlay, bpf_host, bpf_lxc), 520 s once here.
const POLICY: Duration = Duration::from_secs(1200);
const APISERVER_PORT: u16 = 6443;

fn controlplane_config() -> String {
    cluster::one_node_config("cilium", "cp-1", CniName::Cilium)
}

fn services(admin: &NodeClient) -> Vec<ServiceStatus> {
    admin.get("/v1/services").expect("services")
}

/// A running one-node cluster with Cilium, as the stories start from.
struct Started {
    vm: Vm,
    /// The applied config.
    doc: String,
    admin: NodeClient,
    kubeconfig: PathBuf,
    kdir: PathBuf,
    disk: PathBuf,
    t0: Instant,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.kdir);
        let _ = std::fs::remove_file(&self.disk);
    }
}

/// Boot the node image, check the host prerequisites before any config,
/// apply a control-plane config with Cilium, bootstrap, and wait until
/// every check (the agent and operator included) passes.
fn start(name: &str) -> Started {
    let t0 = Instant::now();
    let cluster::OneNode {
        vm,
        admin,
        state_disk: disk,
        ..
    } = cluster::boot_one_node(name, APISERVER_PORT, BOOT);

    // The host prerequisites are reported before any config.
    let status: basalt_api::rpc::Status = admin.get("/v1/status").unwrap();
    let names: Vec<&str> = status.host_checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["host-bpffs", "host-cgroup2", "host-modules", "host-bpf"]
    );
    assert!(
        status.host_checks.iter().all(|c| c.ok),
        "{:?}",
        status.host_checks
    );
    let metrics = admin
        .send("GET", "/v1/metrics", vec![])
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("basalt_host_check_ok{check=\"host-bpf\"} 1"),
        "{metrics}"
    );

    let logs = cluster::LogsOnFailure {
        admin: &admin,
        dir: vm.dir().to_path_buf(),
    };
    let applied = Instant::now();
    let doc = controlplane_config();
    apply(&admin, &doc);
    let _: BootstrapResponse = admin.post("/v1/bootstrap", &()).expect("bootstrap");
    let took = wait_healthy("cp-1", &vm, &admin, HEALTHY);
    eprintln!(
        "Cilium and the node ready {took:?} after bootstrap ({:?} after apply)",
        applied.elapsed()
    );
    let agent_log = admin
        .send("GET", "/v1/logs/cilium-agent", vec![])
        .unwrap()
        .text()
        .unwrap();
    assert!(
        !agent_log.is_empty(),
        "basaltctl logs cilium-agent is empty"
    );

    // No kube-proxy on the node: Services are Cilium's.
    let running: Vec<String> = services(&admin).into_iter().map(|s| s.name).collect();
    assert!(
        running.iter().any(|s| s == "cilium-agent")
            && running.iter().any(|s| s == "cilium-operator"),
        "{running:?}"
    );
    assert!(!running.iter().any(|s| s.contains("proxy")), "{running:?}");

    let port = vm.forwarded(APISERVER_PORT).unwrap();
    let kdir = std::env::temp_dir().join(format!("basalt-{name}-{}", std::process::id()));
    let kubeconfig = cluster::kubeconfig(&admin, &format!("https://127.0.0.1:{port}"), &kdir);
    let crds = kubectl(&kubeconfig, &["get", "crd", "-o", "name"]).unwrap();
    assert!(
        crds.contains("ciliumendpoints.cilium.io"),
        "the operator registered no CRDs: {crds}"
    );
    drop(logs);
    Started {
        vm,
        doc,
        admin,
        kubeconfig,
        kdir,
        disk,
        t0,
    }
}

/// `kubectl apply --server-side` of one JSON manifest.
fn kubectl_apply(kubeconfig: &Path, name: &str, manifest: serde_json::Value) {
    let file = kubeconfig.with_file_name(format!("{name}.json"));
    std::fs::write(&file, manifest.to_string()).unwrap();
    kubectl(
        kubeconfig,
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            file.to_str().unwrap(),
        ],
    )
    .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// A pod of the baked echo image; with `fetch`, it also GETs that
/// `<ip>:<port>` once a second and logs the outcome.
fn echo_pod(name: &str, labels: serde_json::Value, fetch: Option<&str>) -> serde_json::Value {
    let env = fetch.map_or(
        serde_json::json!([]),
        |t| serde_json::json!([{"name": "FETCH", "value": t}]),
    );
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{
            "name": "echo",
            "image": "registry.basalt.test/echo:1",
            "imagePullPolicy": "Never",
            "ports": [{"containerPort": 8080}],
            "env": env,
        }]},
    })
}

fn pod_field(kubeconfig: &Path, pod: &str, path: &str) -> Result<String, String> {
    kubectl(
        kubeconfig,
        &["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")],
    )
}

fn wait_running(kubeconfig: &Path, pod: &str) -> Ipv4Addr {
    eventually(&format!("pod {pod} running"), HEALTHY, || {
        let phase = pod_field(kubeconfig, pod, ".status.phase")?;
        let ip = pod_field(kubeconfig, pod, ".status.podIP")?;
        match (phase.as_str(), ip.parse::<Ipv4Addr>()) {
            ("Running", Ok(ip)) => Ok(ip),
            _ => Err(format!("phase {phase:?}, ip {ip:?}")),
        }
    })
}

/// One line of a fetching pod's log: `fetch <n> <target> ok|error ...`.
#[derive(Debug)]
struct Fetch {
    n: u64,
    ok: bool,
    line: String,
}

fn fetches(kubeconfig: &Path, pod: &str) -> Result<Vec<Fetch>, String> {
    let log = kubectl(kubeconfig, &["logs", pod, "--tail=20"])?;
    Ok(log
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "fetch").then_some(())?;
            let n = w.next()?.parse().ok()?;
            let _target = w.next()?;
            let ok = w.next()? == "ok";
            Some(Fetch {
                n,
                ok,
                line: l.to_string(),
            })
        })
        .collect())
}

/// Wait until `pod`'s last three fetches all succeed (`ok`) or all fail;
/// the sequence number of the last one.
fn wait_fetching(kubeconfig: &Path, pod: &str, ok: bool, within: Duration) -> u64 {
    let what = format!("{pod} fetches {}", if ok { "succeed" } else { "fail" });
    eventually(&what, within, || {
        let f = fetches(kubeconfig, pod)?;
        let last: Vec<&Fetch> = f.iter().rev().take(3).collect();
        if last.len() == 3 && last.iter().all(|x| x.ok == ok) {
            Ok(last[0].n)
        } else {
            Err(format!(
                "{:?}",
                last.iter().map(|x| x.line.as_str()).collect::<Vec<_>>()
            ))
        }
    })
}

fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap();
    let (net, len): (Ipv4Addr, u32) = (net.parse().unwrap(), len.parse().unwrap());
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[test]
fn cilium_readies_the_node_connects_pods_enforces_policy_and_survives_a_kill() {
    let s = start("cilium");
    let (vm, admin, kubeconfig, t0) = (&s.vm, &s.admin, &s.kubeconfig, s.t0);
    let _logs = cluster::LogsOnFailure {
        admin,
        dir: vm.dir().to_path_buf(),
    };
    // The node turned Ready through Cilium's CNI config, and Cilium sees it.
    let ready = kubectl(
        kubeconfig,
        &[
            "get",
            "node",
            "cp-1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    )
    .unwrap();
    assert_eq!(ready, "True");
    let pod_cidr = kubectl(
        kubeconfig,
        &["get", "node", "cp-1", "-o", "jsonpath={.spec.podCIDR}"],
    )
    .unwrap();
    let cilium_node = kubectl(
        kubeconfig,
        &[
            "get",
            "ciliumnode",
            "cp-1",
            "-o",
            "jsonpath={.spec.ipam.podCIDRs[0]}",
        ],
    )
    .unwrap();
    assert_eq!(
        cilium_node, pod_cidr,
        "Cilium's IPAM is the controller-manager's allocation"
    );

    // A Cilium setting changed in a dry run: the plan says the agent
    // restarts, and nothing changes.
    let doc = s
        .doc
        .replacen("generation = 1", "generation = 2", 1)
        .replacen(
            "kube_proxy_replacement = true\n",
            "kube_proxy_replacement = true\n[cluster.cni.cilium]\nmtu = 1400\n",
            1,
        );
    let dry: ApplyResponse = admin
        .post(
            "/v1/apply",
            &ApplyRequest {
                config: doc.clone(),
                signatures: sshsig::sign(&admin_key(), CONFIG_NAMESPACE, doc.as_bytes()),
                mode: ApplyMode::Auto,
                dry_run: true,
                try_timeout_secs: None,
            },
        )
        .expect("dry run");
    assert!(
        dry.plan
            .iter()
            .any(|p| p == "restart service cilium-agent (its settings changed)"),
        "{:?}",
        dry.plan
    );

    // Two echo servers behind a NodePort Service (which has a ClusterIP too).
    for name in ["echo-a", "echo-b"] {
        kubectl_apply(
            kubeconfig,
            name,
            echo_pod(name, serde_json::json!({"app": "echo"}), None),
        );
    }
    kubectl_apply(
        kubeconfig,
        "echo-svc",
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo", "namespace": "default"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "echo"},
                "ports": [{"port": 80, "targetPort": 8080}],
            },
        }),
    );
    let echo_a = wait_running(kubeconfig, "echo-a");
    let echo_b = wait_running(kubeconfig, "echo-b");
    eprintln!("two echo pods running, {:?} after boot", t0.elapsed());
    for ip in [echo_a, echo_b] {
        assert!(
            in_cidr(ip, &pod_cidr),
            "{ip} is not in the node's {pod_cidr}"
        );
    }
    let service = |path: &str| {
        kubectl(
            kubeconfig,
            &[
                "get",
                "service",
                "echo",
                "-o",
                &format!("jsonpath={{{path}}}"),
            ],
        )
        .unwrap()
    };
    let (cluster_ip, node_port) = (
        service(".spec.clusterIP"),
        service(".spec.ports[0].nodePort"),
    );
    let node_ip = kubectl(
        kubeconfig,
        &[
            "get",
            "node",
            "cp-1",
            "-o",
            "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
        ],
    )
    .unwrap();

    // Clients: pod→pod, pod→ClusterIP, pod→NodePort, and a stranger to
    // the policy.
    let to_pod = format!("{echo_a}:8080");
    let to_service = format!("{cluster_ip}:80");
    let to_node_port = format!("{node_ip}:{node_port}");
    let clients = ["client-pod", "client-svc", "client-nodeport", "stranger"];
    for (name, access, target) in [
        ("client-pod", "yes", to_pod.as_str()),
        ("client-svc", "yes", to_service.as_str()),
        ("client-nodeport", "yes", to_node_port.as_str()),
        ("stranger", "no", to_service.as_str()),
    ] {
        kubectl_apply(
            kubeconfig,
            name,
            echo_pod(name, serde_json::json!({"access": access}), Some(target)),
        );
    }
    for name in clients {
        wait_running(kubeconfig, name);
        wait_fetching(kubeconfig, name, true, POLICY);
    }
    eprintln!(
        "pod→pod, pod→ClusterIP and pod→NodePort work, {:?} after boot",
        t0.elapsed()
    );

    // Cilium's view, without a shell: an endpoint per pod.
    let endpoints = kubectl(
        kubeconfig,
        &[
            "get",
            "ciliumendpoints",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    )
    .unwrap();
    for pod in ["echo-a", "echo-b"].into_iter().chain(clients) {
        assert!(
            endpoints.split_whitespace().any(|e| e == pod),
            "no CiliumEndpoint for {pod}: {endpoints}"
        );
    }

    // Default deny: nobody reaches the echo pods...
    kubectl_apply(
        kubeconfig,
        "deny",
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "echo-deny", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "echo"}}, "policyTypes": ["Ingress"]},
        }),
    );
    for name in clients {
        wait_fetching(kubeconfig, name, false, POLICY);
    }
    // ...until one label is allowed in: exactly those clients.
    kubectl_apply(
        kubeconfig,
        "allow",
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "echo-allow-access", "namespace": "default"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "echo"}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "yes"}}}]}],
            },
        }),
    );
    for name in ["client-pod", "client-svc", "client-nodeport"] {
        wait_fetching(kubeconfig, name, true, POLICY);
    }
    wait_fetching(kubeconfig, "stranger", false, Duration::from_secs(60));
    eprintln!("policies bite, {:?} after boot", t0.elapsed());

    // Kill the agent: the datapath stays loaded, so established policy and
    // service translation keep working while it is gone.
    let before = wait_fetching(kubeconfig, "client-svc", true, Duration::from_secs(60));
    let restarts = |admin: &NodeClient| {
        services(admin)
            .into_iter()
            .find(|s| s.name == "cilium-agent")
            .map(|s| s.restarts)
            .unwrap()
    };
    let restarts_before = restarts(admin);
    let killed: KillResponse = admin
        .post("/v1/services/cilium-agent/kill", &())
        .expect("kill cilium-agent");
    assert!(killed.killed > 0, "nothing killed");
    std::thread::sleep(Duration::from_secs(15));
    let after: Vec<Fetch> = fetches(kubeconfig, "client-svc")
        .unwrap()
        .into_iter()
        .filter(|f| f.n > before)
        .collect();
    assert!(after.len() >= 5, "the client stalled: {after:?}");
    assert!(
        after.iter().all(|f| f.ok),
        "traffic broke without the agent: {after:?}"
    );
    let k0 = Instant::now();
    eventually("cilium-agent started again", HEALTHY, || {
        let now = restarts(admin);
        (now > restarts_before)
            .then_some(())
            .ok_or(format!("{now} restarts"))
    });
    wait_healthy("cp-1", vm, admin, HEALTHY);
    eprintln!(
        "cilium-agent back and healthy {:?} after the kill",
        k0.elapsed()
    );
    wait_fetching(kubeconfig, "client-svc", true, Duration::from_secs(120));
    wait_fetching(kubeconfig, "stranger", false, Duration::from_secs(60));

    for svc in services(admin) {
        if svc.name.starts_with("cilium") {
            eprintln!(
                "{}: memory.current {} MiB",
                svc.name,
                svc.memory_current.unwrap_or(0) >> 20
            );
        }
    }
    // What the agent compiled on the node, and how long each took.
    let agent_log = admin
        .send("GET", "/v1/logs/cilium-agent", vec![])
        .unwrap()
        .text()
        .unwrap();
    for line in agent_log
        .lines()
        .filter(|l| l.contains("Compiled new BPF template"))
    {
        eprintln!("cilium-agent: {line}");
    }
    eprintln!("story done after {:?}", t0.elapsed());
}

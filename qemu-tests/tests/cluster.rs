//! Two nodes, one cluster: a control-plane VM and a worker VM on a private
//! link (a second NIC on a QEMU UDP socket pair, static addresses from the
//! machine config), driven only through the node API and kubectl. The
//! worker joins by kubelet TLS bootstrap with the cluster token, gets its
//! kubelet serving certificate by CSR (approved by machined on the control
//! plane, signed by the controller-manager), and a pod pinned to it runs,
//! shows its logs and answers HTTP through `kubectl port-forward`: logs and
//! port-forward go apiserver → worker kubelet over TLS the apiserver
//! verifies with the cluster CA, so they prove the serving certificate.
//! Both nodes run Cilium, and a pod on each node reaches a pod on the other
//! through the VXLAN tunnel.
//!
//! The slow tier: two TCG VMs on a small machine take many minutes, so this
//! runs only with `cargo test -p qemu-tests --features cluster --test cluster`
//! (README, "Tests").

#![cfg(feature = "cluster")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_api::config::{CniName, MachineConfig, Role};
use basalt_api::rpc::BootstrapResponse;
use basaltctl::template::Shape;
use qemu_tests::cluster::{self, apply, eventually, wait_healthy};
use qemu_tests::vm::{LinkNic, Vm, VmOptions};
use qemu_tests::{admin_key, image};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Cilium, the default CNI: pod → pod across the VXLAN tunnel is checked.
const CNI: CniName = CniName::Cilium;
/// Unpacking the node image's initramfs under TCG, two VMs at once.
const BOOT: Duration = Duration::from_secs(900);
/// Go programs under TCG with two VMs sharing the cores.
const HEALTHY: Duration = Duration::from_secs(2400);
/// A node's first pod: under TCG its agent compiles bpf_host, bpf_overlay
/// and bpf_lxc first (minutes each, two VMs sharing the cores), and
/// reinitialises its datapath once more on a first boot (README, "Cilium").
const FIRST_POD: Duration = Duration::from_secs(1800);
/// The control plane's first pod: its agent compiles with the control
/// plane's Go programs (apiserver, etcd, operator) on the same vCPUs.
const CP_FIRST_POD: Duration = Duration::from_secs(3600);
/// A node's later pods reuse the compiled template.
const NEXT_POD: Duration = Duration::from_secs(900);
const APISERVER_PORT: u16 = 6443;
const CP_IP: &str = "192.168.77.10";
const WORKER_IP: &str = "192.168.77.11";
const ENDPOINT: &str = "https://192.168.77.10:6443";
/// The user-mode (API) NIC of each VM, and its end of the private link.
const CP_MAC: &str = "52:54:00:12:34:10";
const WORKER_MAC: &str = "52:54:00:12:34:11";
const CP_LINK_MAC: &str = "52:54:00:77:00:10";
const WORKER_LINK_MAC: &str = "52:54:00:77:00:11";
const POD: &str = "echo-on-worker";
const CP_POD: &str = "echo-on-cp";

use qemu_tests::kubectl::run as kubectl;

/// The private link: each interface matched by MAC. The user-mode NIC keeps
/// DHCP (the API is forwarded through it); the link gets `address`.
fn interfaces(api_mac: &str, link_mac: &str, address: &str) -> String {
    format!(
        r#"[[machine.network.interfaces]]
mac = "{api_mac}"
dhcp = true

[[machine.network.interfaces]]
mac = "{link_mac}"
addresses = ["{address}/24"]

"#
    )
}

/// Edit a generated document: the interfaces go before `[machine.network]`,
/// and the kubelet registers the link address.
fn on_the_link(doc: &str, api_mac: &str, link_mac: &str, address: &str) -> String {
    let doc = doc.replacen(
        "\n[machine.network]\n",
        &format!(
            "\n{}[machine.network]\n",
            interfaces(api_mac, link_mac, address)
        ),
        1,
    );
    let doc = doc.replacen(
        "node_ip_subnets = []",
        "node_ip_subnets = [\"192.168.77.0/24\"]",
        1,
    );
    assert!(doc.contains("192.168.77.0/24") && doc.contains(link_mac));
    doc
}

/// The span of the line that starts with `key = ` (a one-line value) or,
/// for a `'''` PEM, up to its closing `'''`.
fn value_span(doc: &str, key: &str) -> (usize, usize) {
    let start = if doc.starts_with(&format!("{key} = ")) {
        0
    } else {
        doc.find(&format!("\n{key} = "))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("no {key} in the document"))
    };
    let rest = &doc[start..];
    let end = if rest.starts_with(&format!("{key} = '''")) {
        let open = key.len() + " = '''".len();
        open + rest[open..].find("'''").unwrap() + 3
    } else {
        rest.find('\n').unwrap()
    };
    (start, start + end)
}

/// The worker's document: a generated worker config carrying the control
/// plane's token and CA certificate (a worker can only join the cluster
/// whose token it holds and whose CA it trusts).
fn worker_config(cp_doc: &str, endpoint: &str) -> String {
    let mut doc = basaltctl::template::generate(
        Role::Worker,
        "pair",
        endpoint,
        &admin_key().public(),
        Shape {
            hostname: Some("worker-1"),
            cni: CNI,
            schedule_on_control_plane: false,
        },
    )
    .unwrap();
    for key in ["token", "ca_cert"] {
        let (s, e) = value_span(cp_doc, key);
        let (ws, we) = value_span(&doc, key);
        doc.replace_range(ws..we, &cp_doc[s..e]);
    }
    let cp = MachineConfig::parse(cp_doc.as_bytes()).unwrap();
    let w = MachineConfig::parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{doc}"));
    assert_eq!(w.cluster.token.expose(), cp.cluster.token.expose());
    assert_eq!(w.cluster.ca_cert, cp.cluster.ca_cert);
    assert!(w.cluster.ca_key.is_none());
    doc
}

/// `kubectl port-forward` to `pod`'s port 8080 on a free local port, then
/// one HTTP request through it; the response.
fn http_through_port_forward(kubeconfig: &Path, pod: &str) -> Result<String, String> {
    let mut child = Command::new(qemu_tests::kubectl::binary())
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        // Bounds the upgrade to a stream, so a hung dial fails this try.
        .args([
            "--request-timeout=60s",
            "port-forward",
            &format!("pod/{pod}"),
            ":8080",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // kubectl's stdout stays open and drained until it is killed: it says
    // "Handling connection for …" there per connection, and a Go program
    // writing to a closed stdout dies of SIGPIPE (which reset the
    // connection it was handling).
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let result = (|| {
        // "Forwarding from 127.0.0.1:NNNNN -> 8080"
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .map_err(|e| format!("port-forward printed no address: {e}"))?;
        let port = line
            .strip_prefix("Forwarding from 127.0.0.1:")
            .and_then(|r| r.split_whitespace().next())
            .ok_or_else(|| format!("port-forward said {line:?}"))?
            .to_string();
        let mut conn =
            std::net::TcpStream::connect(format!("127.0.0.1:{port}")).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        conn.write_all(b"GET /from-the-host HTTP/1.0\r\nHost: echo\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        conn.read_to_string(&mut response)
            .map_err(|e| e.to_string())?;
        if response.starts_with("HTTP/1.") && response.contains(" 200 ") {
            Ok(response)
        } else {
            Err(format!("unexpected response {response:?}"))
        }
    })();
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    result.map_err(|e| format!("{e}; port-forward stderr: {err}"))
}

#[test]
fn a_worker_joins_and_runs_a_pod_that_answers() {
    let img = image::node().expect("node image");
    let cp_doc = basaltctl::template::generate(
        Role::Controlplane,
        "pair",
        ENDPOINT,
        &admin_key().public(),
        Shape {
            hostname: Some("cp-1"),
            cni: CNI,
            schedule_on_control_plane: false,
        },
    )
    .unwrap();
    let worker_doc = worker_config(&cp_doc, ENDPOINT);
    let cp_doc = on_the_link(&cp_doc, CP_MAC, CP_LINK_MAC, CP_IP);
    let worker_doc = on_the_link(&worker_doc, WORKER_MAC, WORKER_LINK_MAC, WORKER_IP);

    let (cp_link, worker_link) = LinkNic::pair(CP_LINK_MAC, WORKER_LINK_MAC).unwrap();
    let t0 = Instant::now();
    let mut cp = Vm::boot(
        img,
        "cluster-cp",
        &VmOptions {
            memory_mib: Some(3584),
            forwards: vec![APISERVER_PORT],
            mac: Some(CP_MAC.into()),
            link: Some(cp_link),
            ..VmOptions::default()
        },
    )
    .expect("boot the control plane");
    let mut worker = Vm::boot(
        img,
        "cluster-worker",
        &VmOptions {
            memory_mib: Some(3584),
            mac: Some(WORKER_MAC.into()),
            link: Some(worker_link),
            ..VmOptions::default()
        },
    )
    .expect("boot the worker");
    let fp = cp.fingerprint(1, BOOT).expect("control-plane fingerprint");
    let cp_api = cp
        .client(&fp, admin_key(), BOOT)
        .expect("control-plane API");
    let fp = worker.fingerprint(1, BOOT).expect("worker fingerprint");
    let worker_api = worker.client(&fp, admin_key(), BOOT).expect("worker API");
    let _cp_logs = cluster::LogsOnFailure {
        admin: &cp_api,
        dir: cp.dir().to_path_buf(),
    };
    let _worker_logs = cluster::LogsOnFailure {
        admin: &worker_api,
        dir: worker.dir().to_path_buf(),
    };
    eprintln!("both APIs up after {:?}", t0.elapsed());

    assert_eq!(apply(&cp_api, &cp_doc).generation, 1);
    assert_eq!(apply(&worker_api, &worker_doc).generation, 1);
    let boot: BootstrapResponse = cp_api.post("/v1/bootstrap", &()).expect("bootstrap");
    assert_eq!(boot.etcd_member, "cp-1");
    // Only a control-plane node bootstraps.
    assert!(
        worker_api
            .post::<_, BootstrapResponse>("/v1/bootstrap", &())
            .is_err()
    );
    let t_boot = Instant::now();

    let took = wait_healthy("cp", &cp, &cp_api, HEALTHY);
    eprintln!("control plane healthy {took:?} after bootstrap");
    let took = wait_healthy("worker", &worker, &worker_api, HEALTHY);
    eprintln!(
        "worker healthy {took:?} later, {:?} after bootstrap",
        t_boot.elapsed()
    );

    let port = cp.forwarded(APISERVER_PORT).unwrap();
    let dir = std::env::temp_dir().join(format!("basalt-cluster-{}", std::process::id()));
    let kubeconfig = cluster::kubeconfig(&cp_api, &format!("https://127.0.0.1:{port}"), &dir);

    for (node, ip) in [("cp-1", CP_IP), ("worker-1", WORKER_IP)] {
        let got = kubectl(
            &kubeconfig,
            &[
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.addresses[?(@.type==\"InternalIP\")].address}",
            ],
        )
        .unwrap();
        assert_eq!(got, format!("True {ip}"), "node {node}");
    }
    eprintln!(
        "{}",
        kubectl(&kubeconfig, &["get", "nodes", "-o", "wide"]).unwrap()
    );

    // The worker's serving certificate: requested by its kubelet, approved
    // by machined on the control plane.
    let csrs = eventually(
        "worker serving CSR approved",
        Duration::from_secs(300),
        || {
            let out = kubectl(
                &kubeconfig,
                &[
                    "get",
                    "csr",
                    "--field-selector=spec.signerName=kubernetes.io/kubelet-serving",
                    "-o",
                    "jsonpath={range .items[*]}{.spec.username} {.status.conditions[*].type}{\"\\n\"}{end}",
                ],
            )?;
            if out
                .lines()
                .any(|l| l.starts_with("system:node:worker-1 ") && l.contains("Approved"))
            {
                Ok(out)
            } else {
                Err(format!("serving CSRs: {out:?}"))
            }
        },
    );
    eprintln!("kubelet-serving CSRs:\n{csrs}");

    // The control plane's first pod goes in with the worker's: each node's
    // agent compiles bpf_lxc for its first pod (README, "Cilium"), and
    // started together the two compiles overlap instead of queueing.
    create_pod(&kubeconfig, &dir, POD, "worker-1", None);
    create_pod(&kubeconfig, &dir, CP_POD, "cp-1", None);
    let t_pod = Instant::now();
    wait_running(&kubeconfig, POD, "worker-1", FIRST_POD);
    // Through the apiserver to the worker's kubelet, verified with the CA.
    let logs = eventually("kubectl logs", Duration::from_secs(300), || {
        let out = kubectl(&kubeconfig, &["logs", POD])?;
        if out.contains("listening on port 8080") {
            Ok(out)
        } else {
            Err(format!("logs so far: {out:?}"))
        }
    });
    eprintln!("logs: {logs}");
    let response = eventually(
        "HTTP through port-forward",
        Duration::from_secs(300),
        || http_through_port_forward(&kubeconfig, POD),
    );
    assert!(response.contains("/from-the-host"), "{response}");
    // The pod's own UTS name: the answer came from the pod on the worker.
    assert!(response.contains(&format!("hostname: {POD}")), "{response}");
    eprintln!("pod answered {:?} after it was created", t_pod.elapsed(),);

    pod_to_pod_across_nodes(&kubeconfig, &dir);
    eprintln!("the story took {:?}", t0.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pod of the echo image pinned to `node` (tolerating the control
/// plane's taint); with `fetch`, it also fetches from that address once a
/// second and logs each answer.
fn create_pod(kubeconfig: &Path, dir: &Path, name: &str, node: &str, fetch: Option<&str>) {
    let env: Vec<_> = fetch
        .map(|t| serde_json::json!({"name": "FETCH", "value": t}))
        .into_iter()
        .collect();
    let manifest = dir.join(format!("{name}.json"));
    std::fs::write(
        &manifest,
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "echo"}},
            "spec": {
                "nodeName": node,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{
                    "name": "echo",
                    "image": "registry.basalt.test/echo:1",
                    "imagePullPolicy": "Never",
                    "ports": [{"containerPort": 8080}],
                    "env": env,
                }],
            },
        })
        .to_string(),
    )
    .unwrap();
    kubectl(kubeconfig, &["apply", "-f", manifest.to_str().unwrap()]).unwrap();
}

fn wait_running(kubeconfig: &Path, pod: &str, node: &str, within: Duration) {
    eventually(&format!("pod {pod} Running on {node}"), within, || {
        let out = kubectl(
            kubeconfig,
            &[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.phase} {.spec.nodeName}",
            ],
        )?;
        if out == format!("Running {node}") {
            Ok(())
        } else {
            Err(out)
        }
    });
}

/// Pod to pod across nodes, both ways: a client on one node fetches from
/// the echo pod on the other through Cilium's VXLAN tunnel between the two
/// nodes' link addresses, and logs each answer with the answering pod's name.
fn pod_to_pod_across_nodes(kubeconfig: &Path, dir: &Path) {
    let t = Instant::now();
    wait_running(kubeconfig, CP_POD, "cp-1", CP_FIRST_POD);
    eprintln!("{CP_POD} Running {:?} after {POD} answered", t.elapsed());
    for (client, node, server) in [
        ("client-on-cp", "cp-1", POD),
        ("client-on-worker", "worker-1", CP_POD),
    ] {
        let target = kubectl(
            kubeconfig,
            &["get", "pod", server, "-o", "jsonpath={.status.podIP}"],
        )
        .unwrap();
        create_pod(
            kubeconfig,
            dir,
            client,
            node,
            Some(&format!("{target}:8080")),
        );
        let t = Instant::now();
        let answered = eventually(
            &format!("{client} reached {server} ({target})"),
            NEXT_POD,
            || {
                let log = kubectl(kubeconfig, &["logs", client, "--tail=3"])?;
                log.lines()
                    .rev()
                    .find_map(|l| {
                        l.strip_suffix(&format!(" ok {server}"))
                            .map(|_| l.to_string())
                    })
                    .ok_or(format!("{client} log: {log:?}"))
            },
        );
        eprintln!(
            "{client} → {server}: {answered} ({:?} after creation)",
            t.elapsed()
        );
    }
}

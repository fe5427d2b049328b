//! The control plane machined generates, run for real on this machine: the
//! packaged etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler, started by machined's supervisor with the flags of
//! `kubernetes::components` and the certificates of `kubernetes::pki`, in
//! dependency order, each ready only when its `/readyz` or `/healthz`
//! answers over TLS verified against the cluster's CAs. The upstream
//! kubectl then checks what a user would: the API answers the admin,
//! refuses strangers, and the bootstrap token machined applies lets a new
//! node get a client certificate signed by the controller-manager (kubelet
//! TLS bootstrap, without a second VM). With that node identity it then
//! asks for kubelet serving certificates, as a worker's kubelet does, and
//! machined's approver approves the one for the node's own names (which the
//! controller-manager then signs) and denies one naming a foreign address.
//!
//! Needs root, the packaged binaries (`image-builder package kubernetes
//! etcd`, which scripts/test runs first) and `openssl`. It runs in a network
//! namespace of its own, where the node's address is 10.77.0.1 (the
//! apiserver refuses to advertise a loopback address), so it binds nothing
//! on the machine's own network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_api::config::{CniName, MachineConfig, Role};
use basalt_api::sshkey::PrivateKey;
use basaltctl::template::{self, Shape};
use machined::host::Host;
use machined::kubernetes::bootstrap;
use machined::kubernetes::components::{self, Components};
use machined::kubernetes::csr_approver::{self, Decision};
use machined::kubernetes::layout::Layout;
use machined::kubernetes::pki::{self, NodeIdentity};
use machined::supervisor::{ServiceSpec, Supervisor, SupervisorConfig, spawn_reaped};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const NODE: &str = "cp-test";

mod packaged;

/// `basaltctl config gen --role controlplane`, as an operator makes it.
fn config() -> MachineConfig {
    let admin = PrivateKey::from_seed(&[7; 32], "admin").public();
    let shape = Shape {
        hostname: Some(NODE),
        cni: CniName::Bridge,
        schedule_on_control_plane: false,
    };
    let doc = template::generate(
        Role::Controlplane,
        "test",
        "https://10.77.0.1:6443",
        &admin,
        shape,
    )
    .unwrap();
    MachineConfig::parse(doc.as_bytes()).unwrap()
}

/// Found before the supervisor starts: from then on its reaper owns
/// `waitpid(-1)`, and `go` (run to find the cache entry) is a child.
static KUBECTL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Run a command to completion through machined's reaper (which owns
/// `waitpid(-1)` in this process once the supervisor runs); its output
/// goes through files, so no pipe can fill up.
async fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    cmd.stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap());
    let (_child, exit) = spawn_reaped(cmd).unwrap();
    let status = exit.await.unwrap();
    let read = |f: &tempfile::NamedTempFile| std::fs::read_to_string(f.path()).unwrap();
    (status.success(), read(&out), read(&err))
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(KUBECTL.get().expect("kubectl located first"));
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args);
    run(&mut cmd).await
}

async fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(kubeconfig, args).await;
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

/// A spec with the image's `/usr/bin/<x>` swapped for the packaged binary.
fn from_package(
    mut spec: ServiceSpec,
    binaries: &std::collections::BTreeMap<&str, PathBuf>,
) -> ServiceSpec {
    let name = Path::new(&spec.argv[0])
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    spec.argv[0] = binaries[name.as_str()].display().to_string();
    spec
}

/// A kubeconfig for a user holding only the bootstrap token.
fn token_kubeconfig(dir: &Path, ca: &Path, token: &str) -> PathBuf {
    let path = dir.join("token.kubeconfig");
    let kc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": ca}}],
        "users": [{"name": "t", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "t"}}],
        "current-context": "t",
    });
    std::fs::write(&path, kc.to_string()).unwrap();
    path
}

const NODE_IP: [u8; 4] = [10, 77, 0, 1];

/// Move this thread into a new network namespace with `lo` up and the
/// node's address on it; threads and processes started from here on
/// inherit it.
fn enter_netns() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (a network namespace): run it as root, as scripts/test and CI do"
    );
    // SAFETY: only the network namespace is unshared, never the file
    // table, which is what makes `unshare` unsafe in general.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .expect("unshare(CLONE_NEWNET)");
    let ip = IpAddr::from(NODE_IP);
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["addr", "add", &format!("{ip}/32"), "dev", "lo"],
    ] {
        let st = Command::new("ip").args(&args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    }
}

#[test]
fn generated_control_plane_runs_and_signs_a_joining_node() {
    enter_netns();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(control_plane());
}

async fn control_plane() {
    let binaries: Vec<(&str, &str)> = vec![
        ("etcd", "etcd"),
        ("kubernetes", "kube-apiserver"),
        ("kubernetes", "kube-controller-manager"),
        ("kubernetes", "kube-scheduler"),
    ];
    let binaries: std::collections::BTreeMap<&str, PathBuf> = binaries
        .iter()
        .map(|(c, b)| (*b, packaged::binary(c, b)))
        .collect();
    KUBECTL.get_or_init(|| packaged::binary("kubernetes", "kubectl"));
    let root = tempfile::tempdir().unwrap();
    let host = Host::dev(root.path());
    let layout = Layout::new("/var/lib/basalt/state");
    let cfg = config();
    let node = NodeIdentity {
        name: NODE.into(),
        ips: vec![IpAddr::from(NODE_IP)],
    };
    let changes = pki::converge(
        &host,
        &layout,
        &cfg.cluster,
        Role::Controlplane,
        &node,
        SystemTime::now(),
    )
    .unwrap();
    assert!(!changes.is_empty());
    let comps = Components {
        config: &cfg,
        layout: &layout,
        node_name: NODE,
        node_ip: node.ips[0],
        root: root.path(),
    };
    let specs: Vec<ServiceSpec> = vec![
        from_package(comps.etcd(), &binaries),
        from_package(comps.apiserver(), &binaries),
        from_package(comps.controller_manager(), &binaries),
        from_package(comps.scheduler(), &binaries),
    ];
    let sup = Supervisor::new(SupervisorConfig {
        cgroup_root: None,
        log_lines: 2000,
    })
    .unwrap();
    let t0 = Instant::now();
    // Reversed: the supervisor orders them by dependency.
    sup.start(specs.into_iter().rev().collect()).unwrap();
    for name in components::CONTROL_PLANE {
        if let Err(e) = sup.wait_ready(name, Duration::from_secs(240)).await {
            let logs: Vec<String> = sup
                .logs(name)
                .unwrap_or_default()
                .into_iter()
                .map(|l| l.line)
                .collect();
            let tail = logs[logs.len().saturating_sub(40)..].join("\n");
            panic!("{name} not ready: {e}\n{tail}");
        }
        eprintln!("{name} ready after {:?}", t0.elapsed());
    }

    let admin = host.path(&layout.admin_kubeconfig);
    assert_eq!(kubectl_ok(&admin, &["get", "--raw", "/readyz"]).await, "ok");
    let groups = kubectl_ok(
        &admin,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"],
    )
    .await;
    assert!(groups.contains("system:masters"), "{groups}");

    // A stranger (no credentials) is refused: anonymous auth is off.
    let ca = host.path(&layout.ca.cert);
    let (_, code, err) = run(Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .arg("https://127.0.0.1:6443/api"))
    .await;
    assert_eq!(code, "401", "an anonymous request was not refused: {err}");

    // machined's bootstrap objects, through kube-rs with its admin kubeconfig.
    let token = cfg.cluster.token.expose();
    let token_id = token.split('.').next().unwrap();
    let client = bootstrap::client(&admin).await.unwrap();
    bootstrap::apply(&client, token, true).await.unwrap();
    // Applying again changes nothing and does not fail (every boot does it).
    bootstrap::apply(&client, token, true).await.unwrap();
    let secret = kubectl_ok(
        &admin,
        &[
            "-n",
            "kube-system",
            "get",
            "secret",
            &format!("bootstrap-token-{token_id}"),
            "-o",
            "jsonpath={.type}",
        ],
    )
    .await;
    assert_eq!(secret, "bootstrap.kubernetes.io/token");

    // The token authenticates as a bootstrapper that may ask for a node
    // certificate, and nothing more.
    let token = token_kubeconfig(root.path(), &ca, token);
    let who = kubectl_ok(
        &token,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )
    .await;
    assert_eq!(who, format!("system:bootstrap:{token_id}"));
    let can =
        async |verb: &str, what: &str| kubectl(&token, &["auth", "can-i", verb, what]).await.1;
    assert_eq!(
        can("create", "certificatesigningrequests").await.trim(),
        "yes"
    );
    assert_eq!(can("list", "secrets").await.trim(), "no");

    // Cilium's RBAC (applied with the bootstrap objects): its agent acts
    // as its node, its operator as basalt:cilium-operator; each may do
    // what Cilium needs and no more. Asked of the API server itself
    // (SubjectAccessReview), which answers for resources not yet defined.
    let node: (&str, &[&str]) = ("system:node:worker-1", &["system:nodes"]);
    let operator: (&str, &[&str]) = ("basalt:cilium-operator", &[]);
    let review = async |(user, groups): (&str, &[&str]),
                        verb: &str,
                        group: &str,
                        resource: &str,
                        namespace: &str,
                        name: &str| {
        let sar = root.path().join("sar.json");
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        std::fs::write(
            &sar,
            serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user,
                    "groups": groups,
                    "resourceAttributes": {
                        "group": group, "resource": resource, "subresource": subresource,
                        "verb": verb, "namespace": namespace, "name": name,
                    },
                },
            })
            .to_string(),
        )
        .unwrap();
        let args = [
            "create",
            "-f",
            sar.to_str().unwrap(),
            "-o",
            "jsonpath={.status.allowed}",
        ];
        kubectl_ok(&admin, &args).await.trim() == "true"
    };
    for (who, verb, group, resource, namespace, name, allowed) in [
        (node, "create", "cilium.io", "ciliumendpoints", "", "", true),
        (
            node,
            "update",
            "cilium.io",
            "ciliumnodes",
            "",
            "worker-1",
            true,
        ),
        (
            node,
            "watch",
            "networking.k8s.io",
            "networkpolicies",
            "",
            "",
            true,
        ),
        (node, "list", "", "secrets", "", "", false),
        (
            node,
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "",
            false,
        ),
        (
            operator,
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "",
            true,
        ),
        (
            operator,
            "update",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "ciliumnodes.cilium.io",
            true,
        ),
        (
            operator,
            "update",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "foos.example.com",
            false,
        ),
        (
            operator,
            "delete",
            "cilium.io",
            "ciliumidentities",
            "",
            "",
            true,
        ),
        (operator, "list", "", "secrets", "", "", false),
        // Its ConfigMap, and only that one.
        (
            node,
            "watch",
            "",
            "configmaps",
            "kube-system",
            "cilium-config",
            true,
        ),
        (node, "get", "", "configmaps", "kube-system", "other", false),
    ] {
        assert_eq!(
            review(who, verb, group, resource, namespace, name).await,
            allowed,
            "{who:?} {verb} {group}/{resource} {name}"
        );
    }

    // Kubelet TLS bootstrap by hand: a CSR for system:node:worker-1 made
    // with openssl, submitted with the token, approved by the
    // controller-manager's csrapproving controller (the RBAC above) and
    // signed by its csrsigning controller with the cluster CA.
    let key = root.path().join("worker.key");
    let csr = root.path().join("worker.csr");
    let (ok, _, err) = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/O=system:nodes/CN=system:node:worker-1"]))
    .await;
    assert!(ok, "openssl req: {err}");
    use base64::Engine;
    let request = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).unwrap());
    let manifest = root.path().join("csr.json");
    std::fs::write(
        &manifest,
        serde_json::json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": "node-csr-worker-1"},
            "spec": {
                "request": request,
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "client auth"],
            },
        })
        .to_string(),
    )
    .unwrap();
    kubectl_ok(&token, &["create", "-f", manifest.to_str().unwrap()]).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let issued = loop {
        let cert = kubectl_ok(
            &admin,
            &[
                "get",
                "csr",
                "node-csr-worker-1",
                "-o",
                "jsonpath={.status.certificate}",
            ],
        )
        .await;
        if !cert.is_empty() {
            break base64::engine::general_purpose::STANDARD
                .decode(cert.trim())
                .unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the CSR was not approved and signed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let issued_path = root.path().join("worker.crt");
    std::fs::write(&issued_path, &issued).unwrap();
    let (ok, out, err) = run(Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&ca)
        .arg(&issued_path))
    .await;
    assert!(ok, "openssl verify: {out}{err}");

    serving_csrs_are_judged_by_machined(root.path(), &admin, &ca, &key, &issued_path).await;
    sup.stop_all().await;
    eprintln!("control plane test took {:?}", t0.elapsed());
}

/// A kubeconfig for the node identity `worker-1` (the client certificate
/// TLS bootstrap just issued).
fn node_kubeconfig(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> PathBuf {
    let path = dir.join("worker-1.kubeconfig");
    let kc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": ca}}],
        "users": [{"name": "n", "user": {"client-certificate": cert, "client-key": key}}],
        "contexts": [{"name": "n", "context": {"cluster": "c", "user": "n"}}],
        "current-context": "n",
    });
    std::fs::write(&path, kc.to_string()).unwrap();
    path
}

/// A kubelet-serving CSR named `name` from the node, for `sans`
/// (openssl's subjectAltName syntax).
async fn submit_serving_csr(dir: &Path, node: &Path, name: &str, sans: &str) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let (ok, _, err) = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/O=system:nodes/CN=system:node:worker-1"])
        .args(["-addext", &format!("subjectAltName={sans}")]))
    .await;
    assert!(ok, "openssl req: {err}");
    use base64::Engine;
    let request = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).unwrap());
    let manifest = dir.join(format!("{name}.json"));
    std::fs::write(
        &manifest,
        serde_json::json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {
                "request": request,
                "signerName": csr_approver::KUBELET_SERVING_SIGNER,
                // What the kubelet asks for with an ECDSA key.
                "usages": ["digital signature", "server auth"],
            },
        })
        .to_string(),
    )
    .unwrap();
    kubectl_ok(node, &["create", "-f", manifest.to_str().unwrap()]).await;
}

/// Worker kubelets get their serving certificates by CSR: machined's
/// approver, through kube-rs with its admin kubeconfig, approves a request
/// for the node's own names and denies one with a foreign address.
async fn serving_csrs_are_judged_by_machined(
    dir: &Path,
    admin: &Path,
    ca: &Path,
    key: &Path,
    cert: &Path,
) {
    let node = node_kubeconfig(dir, ca, cert, key);
    let who = kubectl_ok(
        &node,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )
    .await;
    assert_eq!(who, "system:node:worker-1");
    // The node registers itself with its addresses, as its kubelet would
    // (the Node authorizer and NodeRestriction let it create its own Node).
    let node_json = dir.join("node.json");
    std::fs::write(
        &node_json,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "worker-1"},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "10.77.0.2"},
                {"type": "Hostname", "address": "worker-1"},
            ]},
        })
        .to_string(),
    )
    .unwrap();
    kubectl_ok(&node, &["create", "-f", node_json.to_str().unwrap()]).await;
    let addrs = kubectl_ok(
        admin,
        &[
            "get",
            "node",
            "worker-1",
            "-o",
            "jsonpath={.status.addresses[*].address}",
        ],
    )
    .await;
    assert_eq!(addrs, "10.77.0.2 worker-1");

    submit_serving_csr(dir, &node, "serving-good", "DNS:worker-1,IP:10.77.0.2").await;
    submit_serving_csr(dir, &node, "serving-foreign", "DNS:worker-1,IP:10.77.0.99").await;

    let client = bootstrap::client(admin).await.unwrap();
    let decisions = csr_approver::approve_pending(&client).await.unwrap();
    let decision = |name: &str| {
        decisions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no decision on {name}: {decisions:?}"))
    };
    assert_eq!(decision("serving-good"), Decision::Approve);
    match decision("serving-foreign") {
        Decision::Deny(why) => assert!(why.contains("10.77.0.99"), "{why}"),
        other => panic!("a foreign SAN was not denied: {other:?}"),
    }
    // Decided CSRs are not judged again.
    let again = csr_approver::approve_pending(&client).await.unwrap();
    assert!(again.is_empty(), "{again:?}");

    // The controller-manager signs the approved one with the cluster CA...
    let deadline = Instant::now() + Duration::from_secs(120);
    let issued = loop {
        let cert = kubectl_ok(
            admin,
            &[
                "get",
                "csr",
                "serving-good",
                "-o",
                "jsonpath={.status.certificate}",
            ],
        )
        .await;
        if !cert.is_empty() {
            use base64::Engine;
            break base64::engine::general_purpose::STANDARD
                .decode(cert.trim())
                .unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the approved serving CSR was not signed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let path = dir.join("serving-good.crt");
    std::fs::write(&path, &issued).unwrap();
    let (ok, out, err) = run(Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(ca)
        .arg(&path))
    .await;
    assert!(ok, "openssl verify: {out}{err}");
    // ...and never the denied one.
    let foreign = kubectl_ok(
        admin,
        &[
            "get",
            "csr",
            "serving-foreign",
            "-o",
            "jsonpath={.status.conditions[*].type}/{.status.certificate}",
        ],
    )
    .await;
    assert_eq!(foreign, "Denied/");
}

//! A one-node Kubernetes cluster in QEMU, driven as an operator drives it:
//! a config from `basaltctl config gen`, signed and applied through the
//! node API, `bootstrap`, `health` until every component and the node are
//! ready, a kubeconfig minted by the node, and the upstream kubectl against
//! the apiserver through a forwarded port. Then what a user relies on: a
//! Deployment of the baked echo image serves HTTP through its Service,
//! `kubectl logs` works, each of etcd, the apiserver and the kubelet is
//! killed and comes back, and after a reboot the cluster (node, Deployment)
//! is still there because etcd and the PKI live on STATE.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_api::config::CniName;
use basalt_api::rpc::{BootstrapResponse, KillResponse};
use basaltctl::client::ClientError;
use image_builder::oci::{self, OciImage};
use image_builder::package;
use qemu_tests::cluster::{self, apply, eventually, wait_healthy};
use qemu_tests::{admin_key, image};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Unpacking the node image's initramfs under TCG.
const BOOT: Duration = Duration::from_secs(600);
/// Go programs under TCG: etcd, the apiserver and the kubelet each take
/// minutes to start there. Measured, then doubled.
const HEALTHY: Duration = Duration::from_secs(1800);
const APISERVER_PORT: u16 = 6443;

/// Where scripts/test builds the static binaries baked into images.
fn static_dir() -> PathBuf {
    std::env::var_os("BASALT_STATIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| image::target_dir().join("x86_64-unknown-linux-gnu/release"))
}

use qemu_tests::kubectl::run as kubectl;

/// `basaltctl config gen --role controlplane`, set up for one node: it
/// schedules workloads, and pods use the bridge CNI.
fn controlplane_config() -> String {
    cluster::one_node_config("story", "cp-1", CniName::Bridge)
}

/// The echo Deployment (2 replicas of the image baked into the node, never
/// pulled) and its ClusterIP Service.
fn echo_manifest() -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "echo", "namespace": "default"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "echo"}},
                    "template": {
                        "metadata": {"labels": {"app": "echo"}},
                        "spec": {"containers": [{
                            "name": "echo",
                            "image": "registry.basalt.test/echo:1",
                            "imagePullPolicy": "Never",
                            "ports": [{"containerPort": 8080}],
                        }]},
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "echo", "namespace": "default"},
                "spec": {
                    "selector": {"app": "echo"},
                    "ports": [{"port": 80, "targetPort": 8080}],
                },
            },
        ],
    })
    .to_string()
}

/// A real registry (the `distribution` binary built from packages/) on the
/// host's loopback, which the guest reaches as 10.0.2.2; killed on drop.
struct Registry {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.join("registry-data").display()
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let packages = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packages");
        let registry = package::require_built(&packages, "distribution")
            .unwrap_or_else(|e| panic!("{e}"))
            .binary("registry")
            .unwrap();
        let child = Command::new(registry)
            .arg("serve")
            .arg(&config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let r = Registry { child, port, log };
        eventually("the registry listened", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| e.to_string())
        });
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Push an OCI image-layout archive as `repo:tag` over the
    /// distribution API: each blob, then the manifest.
    fn push(&self, archive: &[u8], manifest_digest: &str, repo: &str, tag: &str) {
        let base = format!("http://127.0.0.1:{}/v2/{repo}", self.port);
        let http = reqwest::blocking::Client::new();
        let mut manifest = None;
        for (name, data) in tar_entries(archive) {
            let Some(hex) = name.strip_prefix("blobs/sha256/") else {
                continue;
            };
            let digest = format!("sha256:{hex}");
            if digest == manifest_digest {
                manifest = Some(data);
                continue;
            }
            let started = http.post(format!("{base}/blobs/uploads/")).send().unwrap();
            assert_eq!(started.status(), 202, "starting a blob upload");
            let location = started.headers()["location"].to_str().unwrap().to_string();
            let url = if location.starts_with("http") {
                location
            } else {
                format!("http://127.0.0.1:{}{location}", self.port)
            };
            let sep = if url.contains('?') { '&' } else { '?' };
            let put = http
                .put(format!("{url}{sep}digest={digest}"))
                .header("content-type", "application/octet-stream")
                .body(data.to_vec())
                .send()
                .unwrap();
            assert_eq!(put.status(), 201, "uploading {digest}");
        }
        let manifest = manifest.expect("the archive holds its manifest");
        let put = http
            .put(format!("{base}/manifests/{tag}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_vec())
            .send()
            .unwrap();
        assert_eq!(put.status(), 201, "pushing the manifest");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files of a ustar archive, by name.
fn tar_entries(tar: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let header = &tar[at..at + 512];
        let name = String::from_utf8_lossy(&header[..100])
            .trim_end_matches('\0')
            .to_string();
        let size_field = String::from_utf8_lossy(&header[124..136]);
        let size =
            usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .unwrap();
        let data = &tar[at + 512..at + 512 + size];
        if header[156] == b'0' || header[156] == 0 {
            out.push((name.trim_start_matches("./").to_string(), data));
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// Both replicas run and the Service answers through the apiserver's
/// service proxy (apiserver → endpoints → pod, over the bridge CNI).
fn echo_serves(kubeconfig: &Path) {
    eventually("the echo Deployment rolled out", HEALTHY, || {
        let ready = kubectl(
            kubeconfig,
            &[
                "get",
                "deployment",
                "echo",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        )?;
        (ready == "2")
            .then_some(())
            .ok_or(format!("readyReplicas={ready:?}"))
    });
    let body = eventually(
        "the echo Service answered",
        // After a reboot the Deployment's status is the one from before
        // until the kubelet has recreated the pods: the answer is the test.
        HEALTHY,
        || {
            kubectl(
                kubeconfig,
                &[
                    "get",
                    "--raw",
                    "/api/v1/namespaces/default/services/echo:80/proxy/hello",
                ],
            )
        },
    );
    assert!(body.contains("GET /hello"), "{body}");
}

#[test]
fn a_one_node_cluster_serves_survives_kills_and_reboots() {
    let t0 = Instant::now();
    let cluster::OneNode {
        mut vm,
        admin,
        fingerprint: fp,
        state_disk: disk,
    } = cluster::boot_one_node("kubernetes", APISERVER_PORT, BOOT);

    let doc = controlplane_config();
    assert_eq!(apply(&admin, &doc).generation, 1);

    let boot: BootstrapResponse = admin.post("/v1/bootstrap", &()).expect("bootstrap");
    assert_eq!(boot.etcd_member, "cp-1");
    // A second bootstrap would make a second cluster: refused, nothing changes.
    match admin.post::<_, BootstrapResponse>("/v1/bootstrap", &()) {
        Err(ClientError::Api {
            status,
            message: body,
        }) => {
            assert_eq!(status, 409, "{body}");
            assert!(body.contains("already bootstrapped"), "{body}");
        }
        other => panic!("a second bootstrap was not refused: {other:?}"),
    }

    let took = wait_healthy("cp-1", &vm, &admin, HEALTHY);
    eprintln!(
        "healthy {took:?} after bootstrap, {:?} after boot",
        t0.elapsed()
    );

    let port = vm.forwarded(APISERVER_PORT).unwrap();
    let kdir = std::env::temp_dir().join(format!("basalt-k8s-{}", std::process::id()));
    let kubeconfig = cluster::kubeconfig(&admin, &format!("https://127.0.0.1:{port}"), &kdir);

    let ready = kubectl(
        &kubeconfig,
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
    let wide = kubectl(&kubeconfig, &["get", "nodes", "-o", "wide"]).unwrap();
    eprintln!("{wide}");
    assert!(wide.contains("10.0.2.15"), "{wide}");

    // A workload, its Service and its logs.
    let manifest = kdir.join("echo.json");
    std::fs::write(&manifest, echo_manifest()).unwrap();
    // Server-side apply: client-side validation would first download the
    // whole OpenAPI document, which a busy apiserver under TCG serves slower
    // than kubectl waits.
    kubectl(
        &kubeconfig,
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            manifest.to_str().unwrap(),
        ],
    )
    .unwrap();
    echo_serves(&kubeconfig);
    let logs = kubectl(&kubeconfig, &["logs", "deployment/echo"]).unwrap();
    assert!(logs.contains("echo: listening on port 8080"), "{logs}");
    eprintln!("echo serves, {:?} after boot", t0.elapsed());

    // A private registry: machine.registries makes docker.io pulls go to a
    // real registry on the host's loopback (10.0.2.2 from the guest).
    let registry = Registry::start(&kdir);
    let echo = oci::archive(
        &OciImage {
            name: "docker.io/basalt-test/echo:2".into(),
            binary: static_dir().join("echo"),
            path: "/echo".into(),
            entrypoint: vec!["/echo".into()],
            origin: "the mirror story".into(),
        },
        1_700_000_000,
    )
    .unwrap();
    registry.push(&echo.bytes, &echo.manifest_digest, "basalt-test/echo", "2");
    let doc2 = doc.replacen("generation = 1", "generation = 2", 1)
        + &format!(
            "\n[machine.registries.mirrors.\"docker.io\"]\nendpoints = [\"http://10.0.2.2:{}\"]\n",
            registry.port
        );
    assert_eq!(apply(&admin, &doc2).generation, 2);
    let pod = kdir.join("pulled.json");
    std::fs::write(
        &pod,
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pulled", "namespace": "default"},
            "spec": {"containers": [{
                "name": "echo",
                "image": "docker.io/basalt-test/echo:2",
                "imagePullPolicy": "Always",
            }]},
        })
        .to_string(),
    )
    .unwrap();
    kubectl(
        &kubeconfig,
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            pod.to_str().unwrap(),
        ],
    )
    .unwrap();
    eventually("the pod pulled through the mirror runs", HEALTHY, || {
        let phase = kubectl(
            &kubeconfig,
            &["get", "pod", "pulled", "-o", "jsonpath={.status.phase}"],
        )?;
        (phase == "Running")
            .then_some(())
            .ok_or(format!("phase {phase:?}"))
    });
    let log = registry.log();
    assert!(
        log.contains("/v2/basalt-test/echo/manifests/2"),
        "the mirror saw no pull:\n{log}"
    );
    eprintln!("pulled through the mirror, {:?} after boot", t0.elapsed());
    drop(registry);

    // Kill each critical service: the supervisor restarts it and the
    // cluster is healthy again.
    for name in ["kube-apiserver", "etcd", "kubelet"] {
        let k0 = Instant::now();
        let killed: KillResponse = admin
            .post(&format!("/v1/services/{name}/kill"), &())
            .unwrap_or_else(|e| panic!("kill {name}: {e}"));
        assert!(killed.killed > 0, "{name}: nothing killed");
        // Give the health report time to see the death before waiting.
        std::thread::sleep(Duration::from_secs(2));
        wait_healthy("cp-1", &vm, &admin, HEALTHY);
        eprintln!("{name} killed and healthy again after {:?}", k0.elapsed());
    }
    echo_serves(&kubeconfig);

    // Reboot: etcd's data and the PKI are on STATE, so the same cluster
    // comes back, with the node and the Deployment.
    admin
        .post::<_, serde_json::Value>("/v1/reboot", &serde_json::json!({}))
        .unwrap();
    let r0 = Instant::now();
    let fp2 = vm.fingerprint(2, BOOT).expect("second boot");
    assert_eq!(fp2, fp, "the TLS identity lives on STATE");
    let admin = vm
        .client(&fp2, admin_key(), BOOT)
        .expect("API after reboot");
    wait_healthy("cp-1", &vm, &admin, HEALTHY);
    eprintln!("healthy again {:?} after the reboot", r0.elapsed());
    echo_serves(&kubeconfig);
    let _ = std::fs::remove_dir_all(&kdir);
    let _ = std::fs::remove_file(&disk);
    eprintln!("story done after {:?}", t0.elapsed());
}

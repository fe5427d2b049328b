//! The full Kubernetes node image (`configs/images/node.toml`: every upstream
//! component built from packages/, clang, iptables) boots on a real kernel
//! under QEMU and machined runs containerd 2 from it, imports the baked
//! OCI images into it and writes the registry mirrors' hosts.toml; checked
//! through the API only.

use basalt_api::rpc::{ApplyMode, ApplyRequest, ApplyResponse};
use basalt_api::{CONFIG_NAMESPACE, sshsig};
use basaltctl::client::NodeClient;
use qemu_tests::vm::{Vm, VmOptions};
use qemu_tests::{admin_key, image};
use std::time::{Duration, Instant};

/// The node's initramfs carries a root image of several hundred MB, which
/// the kernel unpacks into RAM under TCG.
const BOOT: Duration = Duration::from_secs(600);
const WORKER: &str = include_str!("../../configs/worker.toml");
const EXAMPLE_ADMIN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRBnXLtUn61qn3ftZ0PoOixOodqYhzuC1OWicDtwZPQ ops@example";

fn containerd(admin: &NodeClient) -> Option<serde_json::Value> {
    let list: serde_json::Value = admin.get("/v1/services").ok()?;
    list.as_array()?
        .iter()
        .find(|s| s["name"] == "containerd")
        .cloned()
}

#[test]
fn the_kubernetes_node_image_boots_and_runs_containerd_2() {
    let img = image::node().expect("node image");
    let opts = VmOptions {
        memory_mib: Some(3072),
        ..VmOptions::default()
    };
    let mut vm = Vm::boot(img, "node-image", &opts).expect("boot");
    let fp = vm.fingerprint(1, BOOT).expect("fingerprint on the console");
    let admin = vm.client(&fp, admin_key(), BOOT).expect("API");

    let doc = WORKER.replace(EXAMPLE_ADMIN, &admin_key().public().to_openssh())
        + "\n[machine.registries.mirrors.\"docker.io\"]\nendpoints = [\"http://10.0.2.2:5000\"]\n";
    let applied: ApplyResponse = admin
        .post(
            "/v1/apply",
            &ApplyRequest {
                config: doc.clone(),
                signatures: sshsig::sign(&admin_key(), CONFIG_NAMESPACE, doc.as_bytes()),
                mode: ApplyMode::Auto,
                dry_run: false,
                try_timeout_secs: None,
            },
        )
        .expect("apply");
    assert_eq!(applied.generation, 1);

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(c) = containerd(&admin)
            && c["state"] == "running"
            && c["ready"] == true
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "containerd never became ready: {:?}\n{}",
            containerd(&admin),
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // The containerd that answers is the one built from packages/containerd.
    let logs = admin
        .send("GET", "/v1/logs/containerd", vec![])
        .unwrap()
        .text()
        .unwrap();
    assert!(logs.contains("version=v2.4.2"), "{logs}");
    // Both baked archives land in containerd's k8s.io namespace.
    let baked = |admin: &NodeClient| -> Vec<serde_json::Value> {
        let list: serde_json::Value = admin.get("/v1/resources").unwrap_or_default();
        list.as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["controller"] == "images")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let images = baked(&admin);
        if images.len() == 2 && images.iter().all(|r| r["in_sync"] == true) {
            let ids: Vec<&str> = images.iter().filter_map(|r| r["id"].as_str()).collect();
            assert_eq!(
                ids,
                [
                    "registry.basalt.test_echo_1.tar",
                    "registry.k8s.io_pause_3.10.2.tar"
                ]
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "baked images not imported: {images:?}\n{}",
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // machine.registries became containerd's hosts.toml.
    let hosts: serde_json::Value = admin
        .get("/v1/read?path=/run/basalt/containerd/certs.d/docker.io/hosts.toml")
        .expect("read hosts.toml");
    let hosts = hosts["content"].as_str().unwrap_or_default();
    assert!(
        hosts.contains("server = \"https://registry-1.docker.io\"")
            && hosts.contains("[host.\"http://10.0.2.2:5000\"]"),
        "{hosts}"
    );
    // Cilium's BPF sources are where its agent will compile them.
    let bpf: serde_json::Value = admin
        .get("/v1/read?path=/usr/lib/cilium/bpf/bpf_lxc.c")
        .expect("read bpf_lxc.c");
    assert!(
        bpf["content"].as_str().unwrap_or_default().contains("SPDX"),
        "{bpf}"
    );
    let console = vm.console();
    for bad in ["panicked at", "Kernel panic"] {
        assert!(!console.contains(bad), "{bad} on the console:\n{console}");
    }
}

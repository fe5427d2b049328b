//! The full Kubernetes node image (`configs/images/node.toml`: every upstream
//! component built from packages/, clang, iptables) boots on a real kernel
//! under QEMU and machined runs containerd 2 from it; checked through the
//! API only.

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

    let doc = WORKER.replace(EXAMPLE_ADMIN, &admin_key().public().to_openssh());
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

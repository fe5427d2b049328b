use super::*;
use crate::host::recording::{Call, RecordingKernel};
use std::sync::Arc;

const DOC: &str = include_str!("../../../../configs/worker.toml");

fn config() -> MachineConfig {
    MachineConfig::parse(DOC.as_bytes()).unwrap()
}

fn controller(k: &RecordingKernel) -> (KernelController, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::with_kernel(dir.path(), Arc::new(k.clone()));
    (KernelController::new(host), dir)
}

#[test]
fn plan_then_converge_then_nothing_left_to_do() {
    let k = RecordingKernel::new("localhost").with_sysctl("vm.max_map_count", "262144");
    let (c, _dir) = controller(&k);
    let cfg = config();
    assert_eq!(
        c.plan(None, &cfg),
        [
            PlanStep::Hostname {
                to: "worker-1".into(),
                from: "localhost".into()
            },
            PlanStep::Sysctl {
                key: "net.ipv4.ip_forward".into(),
                value: "1".into()
            },
        ],
        "vm.max_map_count already holds its value"
    );
    assert_eq!(k.calls(), [], "planning changes nothing");
    c.converge(&cfg).unwrap();
    assert_eq!(
        k.calls(),
        [
            Call::SetHostname("worker-1".into()),
            Call::WriteSysctl {
                key: "net.ipv4.ip_forward".into(),
                value: "1".into()
            },
            Call::WriteSysctl {
                key: "vm.max_map_count".into(),
                value: "262144".into()
            },
        ]
    );
    assert!(c.plan(Some(&cfg), &cfg).is_empty());
    assert!(
        c.resources(Some(&cfg))
            .iter()
            .filter(|r| !r.id.starts_with("module/"))
            .all(|r| r.in_sync)
    );
}

#[test]
fn a_module_the_kernel_lacks_is_refused_before_anything_changes() {
    let k = RecordingKernel::new("n");
    let (c, _dir) = controller(&k);
    let err = c.check(&config()).unwrap_err();
    assert!(
        err.to_string().contains("br_netfilter is not loaded"),
        "{err}"
    );
    assert_eq!(k.calls(), []);
    let k = RecordingKernel::new("n").with_module("br_netfilter");
    let (c, _dir) = controller(&k);
    c.check(&config()).unwrap();
}

#[test]
fn a_role_change_needs_a_reboot() {
    let k = RecordingKernel::new("worker-1");
    let (c, _dir) = controller(&k);
    let old = config();
    let mut new = config();
    new.machine.role = basalt_api::config::Role::Controlplane;
    let steps = c.plan(Some(&old), &new);
    assert!(steps.iter().any(PlanStep::needs_reboot), "{steps:?}");
}

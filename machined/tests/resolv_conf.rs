//! Regression: resolv.conf had two writers (the apply's converge and the
//! network controller) with different headers, so on a DHCP node every
//! apply plan listed a resolv.conf change that was no change at all.
//!
//! Its own test binary: the node's supervisor reaps every child of the
//! process, which would race the `ip` commands of the other network tests.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod netns;

use machined::network::{ControllerOptions, LinkSelector, NetworkController};
use netns::*;
use std::time::Duration;

#[path = "../../api/tests/cases/mod.rs"]
mod cases;

/// The worker example with its interface renamed to the test's veth `vA`
/// (DHCP stays on) and its route via the dnsmasq subnet's gateway.
fn dhcp_worker(generation: u64) -> String {
    let doc = cases::edit(&cases::worker(), "name = \"eth0\"", "name = \"vA\"");
    let doc = cases::edit(&doc, "via = \"10.0.2.2\"", "via = \"10.77.0.1\"");
    cases::edit(
        &doc,
        "generation = 1",
        &format!("generation = {generation}"),
    )
}

fn dhcp_node_setup() -> (Netns, Netns, Dnsmasq) {
    let srv = Netns::new("resolv-srv");
    let cli = Netns::new("resolv-cli");
    run(&[
        "ip", "-n", &cli.0, "link", "add", "vA", "type", "veth", "peer", "name", "vB", "netns",
        &srv.0,
    ]);
    run(&[
        "ip",
        "-n",
        &srv.0,
        "addr",
        "add",
        "10.77.0.1/24",
        "dev",
        "vB",
    ]);
    run(&["ip", "-n", &srv.0, "link", "set", "vB", "up"]);
    let dnsmasq = Dnsmasq::start(&srv.0, "vB");
    (srv, cli, dnsmasq)
}

/// Regression: resolv.conf had two writers (the apply's converge and the
/// network controller) with different headers, so on a DHCP node every
/// apply plan listed a resolv.conf change that was no change at all.
#[test]
fn dhcp_node_plans_no_resolv_conf_change_for_an_unchanged_config() {
    require_root("dhcp_node_plans_no_resolv_conf_change_for_an_unchanged_config");
    let (_srv, cli, dnsmasq) = dhcp_node_setup();
    in_netns(&cli.0, move || async move {
        use basalt_api::rpc::{ApplyMode, ApplyRequest};
        use machined::host::Host;
        use machined::node::{BootParts, Node};
        use machined::state::StateStore;
        use machined::supervisor::{Supervisor, SupervisorConfig};

        let root = tempfile::tempdir().unwrap();
        let host = Host::dev(root.path());
        let state = StateStore::open(root.path().join("state"), false).unwrap();
        let supervisor = Supervisor::new(SupervisorConfig {
            cgroup_root: None,
            log_lines: 100,
        })
        .unwrap();
        let (tx, _power) = tokio::sync::mpsc::unbounded_channel();
        let node = Node::boot(BootParts {
            host: host.clone(),
            supervisor,
            services: Vec::new(),
            images: None,
            state,
            image_trust: cases::policy(&[1], &[], 1),
            boot_id: "boot".into(),
            tls_fingerprint: "fp".into(),
            nonces: machined::auth::Nonces::new(machined::auth::NONCE_TTL).unwrap(),
            power: tx,
        });
        let opts = ControllerOptions {
            dhcp_links: LinkSelector::Named(vec!["vA".into()]),
            dhcp_timing: fast_timing(),
            ..ControllerOptions::default()
        };
        let net = NetworkController::start(opts).await.unwrap();
        node.attach_network(Some(net.clone())).await;
        let apply = |generation: u64, dry_run: bool| {
            let doc = dhcp_worker(generation);
            ApplyRequest {
                signatures: cases::sign(1, &doc),
                config: doc,
                mode: ApplyMode::NoReboot,
                dry_run,
                try_timeout_secs: None,
            }
        };
        node.apply(apply(1, false)).await.unwrap();
        wait_for("a DHCP lease", Duration::from_secs(20), || {
            net.status()
                .links
                .iter()
                .find_map(|l| l.dhcp.as_ref()?.lease.clone())
        })
        .await;
        // The lease's servers follow the config's in resolv.conf.
        wait_for(
            "resolv.conf with DHCP's servers",
            Duration::from_secs(5),
            || {
                let text = String::from_utf8(host.read("/run/basalt/resolv.conf").ok()?).ok()?;
                text.contains("nameserver 10.77.0.53").then_some(())
            },
        )
        .await;
        let text = String::from_utf8(host.read("/run/basalt/resolv.conf").unwrap()).unwrap();
        assert!(
            text.find("nameserver 10.0.2.3") < text.find("nameserver 10.77.0.53"),
            "{text}"
        );
        // The Kubernetes controller's loop writes the worker's certificates
        // once the lease gave the node an address; until it has, a plan
        // rightly lists them.
        node.start_runtime().await;
        wait_for(
            "the worker's Kubernetes files",
            Duration::from_secs(20),
            || {
                host.exists("/state/kubernetes/kubelet-bootstrap.kubeconfig")
                    .then_some(())
            },
        )
        .await;
        let plan = node.apply(apply(2, true)).await.unwrap().plan;
        assert_eq!(
            plan,
            ["no changes"],
            "the same config again, only its generation raised"
        );
    });
    drop(dnsmasq);
}

//! Metrics, checked against peers: Prometheus' own `promtool check metrics`
//! lints the exposition, and the node figures equal what the kernel, GNU
//! `df` and `uname` say on the same host.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/dev_process.rs"]
mod dev_process;

use dev_process::{DevMachined, free_port, http_get};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// `promtool check metrics` of `text`: its verdict and what it said.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/install-deps installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Every sample: `name{labels}` → value, labels as printed.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn sample(all: &BTreeMap<String, f64>, key: &str) -> f64 {
    *all.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in:\n{all:#?}"))
}

fn proc_field(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {file}"))
}

#[test]
fn metrics_pass_promtool_and_report_what_the_kernel_reports() {
    let node = DevMachined::start(1);
    let port = free_port();
    node.apply(&node.worker_doc(1, port));
    // One refused call (an untrusted key) and a few good ones.
    let stranger = node.client_with(9);
    let refused = stranger.get::<serde_json::Value>("/v1/status").unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
    for _ in 0..3 {
        node.client
            .get::<serde_json::Value>("/v1/services")
            .unwrap();
    }

    let api = node
        .client
        .send("GET", "/v1/metrics", vec![])
        .unwrap()
        .text()
        .unwrap();
    let (status, listener) = http_get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    for (what, text) in [("API", &api), ("listener", &listener)] {
        let (ok, said) = promtool(text);
        assert!(
            ok && said.trim().is_empty(),
            "{what}: promtool: {said}\n{text}"
        );
    }

    let m = samples(&api);
    assert_eq!(
        sample(
            &m,
            "basalt_api_requests_total{code=\"200\",route=\"apply\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "basalt_api_requests_total{code=\"200\",route=\"services\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &m,
            "basalt_api_requests_total{code=\"401\",route=\"status\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&m, "basalt_api_auth_failures_total{reason=\"unknown_key\"}"),
        1.0
    );
    assert_eq!(sample(&m, "basalt_apply_duration_seconds_count"), 1.0);
    assert!(sample(&m, "basalt_apply_duration_seconds_sum") > 0.0);
    assert_eq!(sample(&m, "basalt_config_generation"), 1.0);
    assert_eq!(sample(&m, "basalt_maintenance_mode"), 0.0);

    // The node, as the kernel and coreutils report it on this host.
    assert_eq!(
        sample(&m, "basalt_node_boot_time_seconds"),
        proc_field("/proc/stat", "btime ") as f64
    );
    assert_eq!(
        sample(&m, "basalt_node_memory_total_bytes"),
        (proc_field("/proc/meminfo", "MemTotal:") * 1024) as f64
    );
    let uname = Command::new("uname").arg("-r").output().unwrap();
    let kernel = String::from_utf8(uname.stdout).unwrap();
    let info = m
        .keys()
        .find(|k| k.starts_with("basalt_node_info{"))
        .expect("basalt_node_info");
    assert!(
        info.contains(&format!("kernel=\"{}\"", kernel.trim())),
        "{info} vs uname -r {kernel}"
    );
    assert!(sample(&m, "basalt_node_cpu_seconds_total{mode=\"idle\"}") > 0.0);
    assert!(sample(&m, "basalt_node_network_receive_bytes_total{link=\"lo\"}") > 0.0);
    assert!(sample(&m, "basalt_node_uptime_seconds") > 0.0);
    assert!(m.contains_key("basalt_node_load1"));
    assert!(m.contains_key(
        "basalt_node_pressure_stalled_seconds_total{kind=\"some\",resource=\"memory\"}"
    ));
    let df = Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(node.root.join("var/lib/basalt/state"))
        .output()
        .unwrap();
    let df_size: f64 = String::from_utf8(df.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        sample(&m, "basalt_node_filesystem_size_bytes{volume=\"state\"}"),
        df_size
    );
    // Nothing secret and nothing unbounded: no key material, no paths.
    assert!(!api.contains("PRIVATE") && !api.contains("ssh-ed25519"));
}

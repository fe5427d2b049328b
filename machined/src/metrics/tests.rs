use super::*;
use crate::metrics::kernel_stats::Stall;
use basalt_api::rpc::{ExitInfo, HealthCheck};

fn status() -> Status {
    serde_json::from_value(serde_json::json!({
        "version": "0.1.0", "hostname": "n1", "mode": "configured", "generation": 7,
        "config_sha256": null, "signers": [], "boot_id": "b", "state": "ram",
        "ready": true, "staged_generation": null, "try_pending_secs": null,
        "tls_fingerprint": "SHA256:x",
    }))
    .unwrap()
}

fn service(name: &str, state: ServiceState, exit: Option<ExitInfo>) -> ServiceStatus {
    ServiceStatus {
        name: name.into(),
        state,
        pid: None,
        restarts: 4,
        last_exit: exit,
        last_error: None,
        ready: state == ServiceState::Running,
        memory_current: None,
    }
}

fn stall(avg10: f64, total_seconds: f64) -> Option<Stall> {
    Some(Stall {
        avg10,
        total_seconds,
    })
}

fn render_fixture(own: &Metrics) -> String {
    let mut status = status();
    status.host_checks = vec![HealthCheck {
        name: "host-bpf".into(),
        ok: true,
        detail: "ok".into(),
    }];
    let services = [
        service("containerd", ServiceState::Running, None),
        service(
            "kubelet",
            ServiceState::Backoff,
            Some(ExitInfo {
                code: None,
                signal: Some(9),
            }),
        ),
    ];
    let usage = [(
        "containerd".to_string(),
        ServiceUsage {
            cpu_seconds: Some(2.5),
            memory_current: Some(41_943_040),
            memory_peak: Some(52_428_800),
            io_read_bytes: Some(1024),
            io_written_bytes: Some(0),
            pressure: [
                Pressure {
                    some: stall(0.012, 1.5),
                    full: stall(0.0, 0.25),
                },
                Pressure::default(),
                Pressure::default(),
            ],
        },
    )];
    let node = NodeStats {
        cpu_seconds: vec![("user", 10.0), ("idle", 90.5)],
        memory: Memory {
            total: Some(2 << 30),
            available: Some(1 << 30),
            ..Memory::default()
        },
        pressure: [
            Pressure {
                some: stall(0.5, 3.0),
                full: None,
            },
            Pressure::default(),
            Pressure::default(),
        ],
        load: Some([0.5, 0.25, 0.125]),
        uptime_seconds: Some(12.5),
        boot_time_seconds: Some(1_796_121_294),
        links: vec![LinkCounters {
            name: "eth0".into(),
            receive_bytes: 100,
            receive_errors: 1,
            receive_drops: 2,
            transmit_bytes: 50,
            transmit_errors: 0,
            transmit_drops: 0,
        }],
        filesystems: vec![("state", 1 << 20, 1 << 19)],
        kernel_release: "6.1.0-57-amd64".into(),
        image_version: "0.1.0".into(),
        image_variant: "node".into(),
    };
    own.render(&Scrape {
        status: &status,
        machined_resident_bytes: Some(8 << 20),
        services: &services,
        usage: &usage,
        node,
    })
    .unwrap()
}

#[test]
fn machined_instruments_are_on() {
    assert!(Own::new().is_ok());
    assert!(Metrics::new().own.is_some());
}

#[test]
fn a_scrape_says_what_each_service_and_the_node_used() {
    let m = Metrics::new();
    m.api_request("status", 200);
    m.api_request("status", 200);
    m.auth_failure("unsigned");
    m.apply_took(Duration::from_millis(300));
    let text = render_fixture(&m);
    for line in [
        "basalt_api_requests_total{code=\"200\",route=\"status\"} 2",
        "basalt_api_auth_failures_total{reason=\"unsigned\"} 1",
        "basalt_apply_duration_seconds_bucket{le=\"0.25\"} 0",
        "basalt_apply_duration_seconds_bucket{le=\"0.5\"} 1",
        "basalt_apply_duration_seconds_count 1",
        "basalt_config_generation 7",
        "basalt_node_ready 1",
        "basalt_host_check_ok{check=\"host-bpf\"} 1",
        "basalt_machined_resident_bytes 8388608",
        "basalt_service_cpu_seconds_total{service=\"containerd\"} 2.5",
        "basalt_service_memory_bytes{service=\"containerd\"} 41943040",
        "basalt_service_memory_peak_bytes{service=\"containerd\"} 52428800",
        "basalt_service_io_read_bytes_total{service=\"containerd\"} 1024",
        "basalt_service_pressure_stalled_seconds_total{kind=\"full\",resource=\"cpu\",service=\"containerd\"} 0.25",
        "basalt_service_pressure_avg10_ratio{kind=\"some\",resource=\"cpu\",service=\"containerd\"} 0.012",
        "basalt_service_restarts_total{service=\"kubelet\"} 4",
        "basalt_service_state{service=\"kubelet\",state=\"backoff\"} 1",
        "basalt_service_state{service=\"kubelet\",state=\"running\"} 0",
        "basalt_service_ready{service=\"containerd\"} 1",
        "basalt_service_last_exit_code{service=\"kubelet\"} 137",
        "basalt_node_cpu_seconds_total{mode=\"idle\"} 90.5",
        "basalt_node_memory_total_bytes 2147483648",
        "basalt_node_pressure_stalled_seconds_total{kind=\"some\",resource=\"cpu\"} 3",
        "basalt_node_load15 0.125",
        "basalt_node_boot_time_seconds 1796121294",
        "basalt_node_filesystem_avail_bytes{volume=\"state\"} 524288",
        "basalt_node_network_receive_drops_total{link=\"eth0\"} 2",
        "basalt_node_info{image_variant=\"node\",image_version=\"0.1.0\",kernel=\"6.1.0-57-amd64\",machined_version=\"0.1.0\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    // Absent readings stay absent: no memory.available of a service, no
    // full CPU line for the node, no exit code for a service that never
    // exited.
    assert!(!text.contains("basalt_node_memory_free_bytes"), "{text}");
    assert!(
        !text.contains("kind=\"full\",resource=\"cpu\"}"),
        "node cpu has no full line: {text}"
    );
    assert!(!text.contains("basalt_service_last_exit_code{service=\"containerd\"}"));
}

/// Prometheus' own linter (`promtool`, Debian's prometheus package) reads
/// the text as Prometheus would and finds nothing to say.
#[test]
fn promtool_finds_nothing_to_lint() {
    let text = render_fixture(&Metrics::new());
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-deps installs Debian's prometheus)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{said}\n{text}"
    );
}

//! A real Prometheus server (Debian's `prometheus`) scrapes a node's metrics
//! listener through a forwarded port, and its PromQL answers are what the
//! node's kernel reports through the API at the same time; `basaltctl
//! dashboard` shows the same node.

use basaltctl::client::NodeClient;
use qemu_tests::cluster::{apply, eventually};
use qemu_tests::vm::{Vm, VmOptions};
use qemu_tests::{admin_key, image};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);
const WORKER: &str = include_str!("../../configs/worker.toml");
const EXAMPLE_ADMIN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRBnXLtUn61qn3ftZ0PoOixOodqYhzuC1OWicDtwZPQ ops@example";
/// `machine.metrics.listen` of configs/worker.toml.
const METRICS_PORT: u16 = 9100;

/// Prometheus on the host, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    http: reqwest::blocking::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    /// Scrape `target` every 2 s; data under `dir`.
    fn start(dir: &std::path::Path, target: &str) -> Prometheus {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n\
                 scrape_configs:\n  - job_name: basalt\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (scripts/install-deps installs Debian's prometheus)");
        Prometheus {
            child,
            port,
            http: reqwest::blocking::Client::new(),
        }
    }

    /// The single value of an instant `query`, or why there is none.
    fn query(&self, query: &str) -> Result<f64, String> {
        let r: serde_json::Value = self
            .http
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", query)])
            .send()
            .and_then(|r| r.json())
            .map_err(|e| format!("{query}: {e}"))?;
        let result = &r["data"]["result"];
        match result.as_array().map(Vec::as_slice) {
            Some([one]) => one["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{query}: {r}")),
            _ => Err(format!("{query}: not one series: {r}")),
        }
    }
}

fn read(admin: &NodeClient, path: &str) -> String {
    let v: serde_json::Value = admin
        .get(&format!("/v1/read?path={path}"))
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    v["content"].as_str().unwrap_or_default().to_string()
}

/// `total=` of the `some` line of a pressure file, in seconds.
fn psi_some_total(text: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with("some "))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("total=")))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|us| us / 1e6)
        .unwrap_or_else(|| panic!("no some total in {text:?}"))
}

fn service_memory(admin: &NodeClient, name: &str) -> Option<f64> {
    let list: serde_json::Value = admin.get("/v1/services").ok()?;
    list.as_array()?
        .iter()
        .find(|s| s["name"] == name && s["ready"] == true)?["memory_current"]
        .as_f64()
}

#[test]
fn prometheus_scrapes_the_node_and_answers_with_its_values() {
    let opts = VmOptions {
        forwards: vec![METRICS_PORT],
        ..VmOptions::default()
    };
    let mut vm = Vm::boot(image::debian().expect("node image"), "prometheus", &opts).unwrap();
    let fp = vm.fingerprint(1, BOOT).expect("fingerprint");
    let admin = vm.client(&fp, admin_key(), BOOT).expect("API");
    let doc = WORKER.replace(EXAMPLE_ADMIN, &admin_key().public().to_openssh());
    apply(&admin, &doc);
    eventually("containerd ready", Duration::from_secs(180), || {
        service_memory(&admin, "containerd").ok_or("not ready".to_string())
    });
    let host_port = vm.forwarded(METRICS_PORT).unwrap();

    // What a node with services serves passes Prometheus' linter.
    let text = admin
        .send("GET", "/v1/metrics", vec![])
        .unwrap()
        .text()
        .unwrap();
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{said}\n{text}"
    );
    assert!(
        text.contains("basalt_service_cpu_seconds_total{service=\"containerd\"}"),
        "{text}"
    );

    let prom = Prometheus::start(
        &vm.dir().join("prometheus"),
        &format!("127.0.0.1:{host_port}"),
    );
    eventually(
        "Prometheus scrapes the node",
        Duration::from_secs(120),
        || {
            let up = prom.query("up{job=\"basalt\"}")?;
            if up == 1.0 {
                Ok(())
            } else {
                Err(format!("up = {up}"))
            }
        },
    );

    // Exact: the boot time the kernel reports.
    let btime: f64 = read(&admin, "/proc/stat")
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .expect("btime");
    let boot = eventually("boot time", Duration::from_secs(30), || {
        prom.query("basalt_node_boot_time_seconds")
    });
    assert_eq!(boot, btime);

    // Node CPU pressure (a node under TCG waits for CPU, so it grows):
    // Prometheus' latest sample lies between what the kernel said before
    // it was scraped and what it says after.
    let before = psi_some_total(&read(&admin, "/proc/pressure/cpu"));
    std::thread::sleep(Duration::from_secs(5));
    let scraped = prom
        .query("basalt_node_pressure_stalled_seconds_total{resource=\"cpu\",kind=\"some\"}")
        .unwrap();
    let after = psi_some_total(&read(&admin, "/proc/pressure/cpu"));
    assert!(
        0.0 < before && before <= scraped && scraped <= after,
        "cpu PSI: 0 < {before} <= {scraped} <= {after}"
    );
    let memory_psi = prom
        .query("basalt_node_pressure_stalled_seconds_total{resource=\"memory\",kind=\"full\"}")
        .unwrap();

    // containerd's memory: its cgroup's memory.current, as the node reports
    // it (an idle containerd moves by pages, so within 10 %).
    let node_says = service_memory(&admin, "containerd").unwrap();
    let prom_says = prom
        .query("basalt_service_memory_bytes{service=\"containerd\"}")
        .unwrap();
    assert!(
        (prom_says - node_says).abs() <= node_says * 0.1,
        "containerd memory: Prometheus {prom_says}, node {node_says}"
    );
    let cpu = prom
        .query("basalt_service_cpu_seconds_total{service=\"containerd\"}")
        .unwrap();
    assert!(cpu > 0.0, "containerd used no CPU? {cpu}");
    let requests = prom
        .query("sum(basalt_api_requests_total{route=\"apply\",code=\"200\"})")
        .unwrap();
    assert_eq!(requests, 1.0);
    dashboard_shows_the_node(&vm.addr(), &admin);
    eprintln!(
        "prometheus: boot time {boot}, cpu PSI {scraped} s (kernel: {before} .. {after}), \
         memory PSI full {memory_psi} s, containerd {prom_says} bytes and {cpu} s CPU"
    );
}

/// `basaltctl dashboard`'s live view (drawn into a test buffer) and its
/// one-shot text, after two refreshes (a CPU rate needs two).
fn dashboard_shows_the_node(addr: &str, admin: &NodeClient) {
    use basaltctl::dashboard::{self, DashboardState};
    let mut state = DashboardState::new(&[addr.to_string()], Duration::from_secs(2));
    for _ in 0..2 {
        state.update(0, dashboard::fetch(admin, Some("containerd")));
        std::thread::sleep(Duration::from_secs(2));
    }
    let data = match &state.nodes[0].data {
        Some(Ok(d)) => d.clone(),
        other => panic!("dashboard refresh: {other:?}"),
    };
    let text = dashboard::plain_text(addr, &data);
    let cpu = text
        .lines()
        .find_map(|l| l.strip_prefix("cpu"))
        .and_then(|v| v.trim().strip_suffix('%'))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no CPU rate in:\n{text}"));
    assert!((0.0..=100.0).contains(&cpu), "{text}");
    assert!(text.contains("generation  1"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("containerd") && l.contains("running") && l.contains("yes")),
        "{text}"
    );
    assert!(
        text.contains("memory") && text.contains("used of"),
        "{text}"
    );
    let backend = ratatui::backend::TestBackend::new(120, 40);
    let mut terminal = ratatui::Terminal::new(backend).unwrap();
    terminal
        .draw(|frame| dashboard::render(&state, frame))
        .unwrap();
    let screen: String = terminal
        .backend()
        .buffer()
        .content()
        .chunks(120)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
        .collect();
    assert!(
        screen.contains(addr) && screen.contains("containerd"),
        "{screen}"
    );
    // The chosen service's log came with the refresh: containerd's own
    // words about its socket.
    let log = data.log.as_ref().expect("the chosen service's log");
    assert_eq!(log.service, "containerd");
    let lines = log.lines.as_ref().expect("containerd's log");
    assert!(
        lines.iter().any(|l| l.contains("containerd.sock")),
        "{lines:?}"
    );
    eprintln!("dashboard of the QEMU node:\n{text}");
}

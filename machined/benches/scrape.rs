//! The cost of one metrics scrape, against Prometheus' node-exporter
//! (Debian's `prometheus-node-exporter`) serving the same kind of data.
//!
//! Both run as processes on this host and are scraped over loopback HTTP by
//! this bench, 1000 times each after a warm-up:
//! - scrape_cpu: CPU time (user + system, from /proc/<pid>/stat) the server
//!   spent per scrape;
//! - scrape_rss_growth: VmRSS after the 1000 scrapes minus before.
//!
//! node-exporter runs only the collectors of what machined reports about
//! the node (cpu, stat, meminfo, pressure, loadavg, netdev, filesystem,
//! uname). machined runs in dev mode (`--dev-root`): no service cgroups on
//! this host, so its scrape has the node and API families, not the
//! per-service ones a node adds (a few per service).

// A bench may unwrap: a failure is the bench failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/dev_process.rs"]
mod dev_process;

use dev_process::{DevMachined, free_port, http_get};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRAPES: u32 = 1000;

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name's closing parenthesis: fields 3.., utime and
    // stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse::<f64>()
    .unwrap();
    ticks as f64 / hz
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

struct Cost {
    cpu_ms_per_scrape: f64,
    rss_growth_mib: f64,
    bytes: usize,
    series: usize,
}

fn measure(pid: u32, port: u16) -> Cost {
    let scrape = || {
        let (status, body) = http_get(port, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        body
    };
    for _ in 0..20 {
        scrape();
    }
    let (cpu0, rss0) = (cpu_seconds(pid), rss_mib(pid));
    let mut last = String::new();
    for _ in 0..SCRAPES {
        last = scrape();
    }
    let (cpu1, rss1) = (cpu_seconds(pid), rss_mib(pid));
    Cost {
        cpu_ms_per_scrape: (cpu1 - cpu0) * 1e3 / f64::from(SCRAPES),
        rss_growth_mib: rss1 - rss0,
        bytes: last.len(),
        series: last
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count(),
    }
}

fn wait_listening(port: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(30), "nothing on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let node = DevMachined::start(1);
    let port = free_port();
    node.apply(&node.worker_doc(1, port));
    wait_listening(port);
    let ours = measure(node.pid(), port);
    drop(node);

    let peer_port = free_port();
    let mut exporter = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{peer_port}"))
        .args([
            "--collector.disable-defaults",
            "--collector.cpu",
            "--collector.stat",
            "--collector.meminfo",
            "--collector.pressure",
            "--collector.loadavg",
            "--collector.netdev",
            "--collector.filesystem",
            "--collector.uname",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-node-exporter (scripts/install-deps installs it)");
    wait_listening(peer_port);
    let peer = measure(exporter.id(), peer_port);
    let _ = exporter.kill();
    let _ = exporter.wait();

    println!(
        "scrapes={SCRAPES} each; ours: {} series, {} bytes; node-exporter: {} series, {} bytes",
        ours.series, ours.bytes, peer.series, peer.bytes
    );
    println!(
        "RESULT name=scrape_cpu ours={:.3}ms peer={:.3}ms ratio={:.2}",
        ours.cpu_ms_per_scrape,
        peer.cpu_ms_per_scrape,
        ours.cpu_ms_per_scrape / peer.cpu_ms_per_scrape
    );
    println!(
        "per series: ours {:.1}us, node-exporter {:.1}us of CPU",
        ours.cpu_ms_per_scrape * 1e3 / ours.series as f64,
        peer.cpu_ms_per_scrape * 1e3 / peer.series as f64
    );
    println!(
        "RESULT name=scrape_rss_growth_after_{SCRAPES} ours={:.2}MiB peer={:.2}MiB ratio={:.2}",
        ours.rss_growth_mib,
        peer.rss_growth_mib,
        ours.rss_growth_mib / peer.rss_growth_mib
    );
}

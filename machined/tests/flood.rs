//! A stranger floods the API while an admin works: every admin call succeeds
//! and machined's memory stays bounded.
//!
//! Two network namespaces made here: the node (a real `machined --dev-root`
//! process) and the admin live in A and talk over A's loopback; the flood
//! client lives in B and reaches the node over a veth pair, so it is a
//! different peer, as a stranger on the LAN would be. The flood client is
//! native: tokio + rustls, many keep-alive connections asking for nonces as
//! fast as they are answered, plus connections that open and never finish
//! their TLS handshake. Needs root (namespaces); fails, never skips, without.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod any_cert;
#[path = "../../api/tests/cases/mod.rs"]
mod cases;

use any_cert::AnyCert;

use basalt_api::rpc::Status;
use basaltctl::client::NodeClient;
use rustls::pki_types::ServerName;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PORT: u16 = 50443;
const FLOOD_FOR: Duration = Duration::from_secs(12);
/// Keep-alive connections asking for nonces: twice one peer's share.
const FLOOD_CONNECTIONS: usize = 128;
/// Connections that connect and then say nothing (holding handshakes):
/// with the flood's, more than one peer's share of connections.
const SILENT_CONNECTIONS: usize = 640;
/// How long the admin's slow calls hold a nonce before using it.
const ADMIN_ROUND_TRIP: Duration = Duration::from_secs(3);

struct Netns(String);

impl Netns {
    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn new(name: String) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        Self::ip(&["netns", "add", &name]);
        Self::ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }

    /// Move the calling thread (and threads it starts) into this namespace.
    fn enter(&self) {
        let f = std::fs::File::open(format!("/run/netns/{}", self.0)).expect("open netns");
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&f),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

struct Node {
    child: Child,
    fingerprint: String,
    _root: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(ns: &Netns) -> Node {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/basalt")).unwrap();
    std::fs::write(
        root.path().join("etc/basalt/trust.toml"),
        format!("admins = [\"{}\"]\n", cases::key(1).public().to_openssh()),
    )
    .unwrap();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            env!("CARGO_BIN_EXE_machined"),
            "--dev-root",
        ])
        .arg(root.path())
        .args(["--listen", &format!("0.0.0.0:{PORT}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start machined");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fingerprint = line
        .split_whitespace()
        .last()
        .unwrap_or_else(|| panic!("machined said {line:?}"))
        .to_string();
    Node {
        child,
        fingerprint,
        _root: root,
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[derive(Default)]
struct FloodCounts {
    ok: AtomicU64,
    too_many: AtomicU64,
    other: AtomicU64,
    connects: AtomicU64,
    refused_connections: AtomicU64,
    closed_at_once: AtomicU64,
}

/// One keep-alive connection asking for nonces until `stop`; reconnects when
/// the node closes it.
async fn nonce_loop(
    addr: std::net::SocketAddr,
    tls: tokio_rustls::TlsConnector,
    counts: Arc<FloodCounts>,
    stop: Arc<AtomicBool>,
) {
    const REQUEST: &[u8] = b"GET /v1/nonce HTTP/1.1\r\nhost: node\r\n\r\n";
    let name = ServerName::try_from("node").unwrap();
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
            counts.refused_connections.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        counts.connects.fetch_add(1, Ordering::Relaxed);
        let Ok(mut s) = tls.connect(name.clone(), tcp).await else {
            counts.refused_connections.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(REQUEST).await.is_err() {
                break;
            }
            // Responses are small and come in one record: read until the
            // body's closing brace.
            let mut got = Vec::new();
            let complete = loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if got.ends_with(b"}") {
                    break true;
                }
            };
            if !complete {
                break;
            }
            let counter = if got.starts_with(b"HTTP/1.1 200") {
                &counts.ok
            } else if got.starts_with(b"HTTP/1.1 429") {
                &counts.too_many
            } else {
                &counts.other
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Connections that never start TLS: each holds a handshake slot until the
/// node's handshake timeout, then is reopened.
async fn silent_loop(addr: std::net::SocketAddr, counts: Arc<FloodCounts>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await {
            let opened = Instant::now();
            let mut b = [0u8; 1];
            let _ = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut b)).await;
            // Closed long before the handshake timeout: over the peer's share.
            if opened.elapsed() < Duration::from_secs(1) {
                counts.closed_at_once.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn flood(
    ns: &Netns,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Arc<FloodCounts>> {
    let ns_name = ns.0.clone();
    std::thread::spawn(move || {
        Netns(ns_name.clone()).enter_and_forget();
        let counts = Arc::new(FloodCounts::default());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..FLOOD_CONNECTIONS {
                tasks.push(tokio::spawn(nonce_loop(
                    addr,
                    tls.clone(),
                    Arc::clone(&counts),
                    Arc::clone(&stop),
                )));
            }
            for _ in 0..SILENT_CONNECTIONS {
                tasks.push(tokio::spawn(silent_loop(
                    addr,
                    Arc::clone(&counts),
                    Arc::clone(&stop),
                )));
            }
            tokio::time::sleep(FLOOD_FOR).await;
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                t.abort();
            }
        });
        counts
    })
}

impl Netns {
    /// [`Netns::enter`] for a thread that does not own the namespace.
    fn enter_and_forget(self) {
        self.enter();
        std::mem::forget(self);
    }
}

#[test]
fn a_nonce_flood_from_a_stranger_never_fails_an_admin_call() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root for network namespaces; run it as root (scripts/test does)"
    );
    let tag = std::process::id();
    let node_ns = Netns::new(format!("basalt-node-{tag}"));
    let flood_ns = Netns::new(format!("basalt-flood-{tag}"));
    let (veth_a, veth_b) = (format!("bfa{tag}"), format!("bfb{tag}"));
    Netns::ip(&[
        "link", "add", &veth_a, "type", "veth", "peer", "name", &veth_b,
    ]);
    Netns::ip(&["link", "set", &veth_a, "netns", &node_ns.0]);
    Netns::ip(&["link", "set", &veth_b, "netns", &flood_ns.0]);
    Netns::ip(&[
        "-n",
        &node_ns.0,
        "addr",
        "add",
        "10.233.0.1/30",
        "dev",
        &veth_a,
    ]);
    Netns::ip(&[
        "-n",
        &flood_ns.0,
        "addr",
        "add",
        "10.233.0.2/30",
        "dev",
        &veth_b,
    ]);
    Netns::ip(&["-n", &node_ns.0, "link", "set", &veth_a, "up"]);
    Netns::ip(&["-n", &flood_ns.0, "link", "set", &veth_b, "up"]);

    let node = start_node(&node_ns);
    let pid = node.child.id();
    let rss_before = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(
        &flood_ns,
        "10.233.0.1:50443".parse().unwrap(),
        Arc::clone(&stop),
    );

    // The admin, inside the node's namespace, over its loopback.
    let admin_ns = node_ns.0.clone();
    let fingerprint = node.fingerprint.clone();
    let admin_stop = Arc::clone(&stop);
    let admin = std::thread::spawn(move || {
        Netns(admin_ns).enter_and_forget();
        let client = NodeClient::new(
            &format!("127.0.0.1:{PORT}"),
            Some(fingerprint),
            Arc::new(cases::key(1)),
        )
        .unwrap();
        // Let the flood reach full speed first.
        std::thread::sleep(Duration::from_secs(2));
        let mut results: Vec<(Result<(), String>, Duration)> = Vec::new();
        let key = cases::key(1);
        while !admin_stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let r = client.get::<Status>("/v1/status").map(|_| ());
            results.push((r.map_err(|e| e.to_string()), t.elapsed()));
            // Every tenth call holds its nonce for a slow round trip (an
            // admin across a WAN, or signing with a hardware key), while
            // the stranger asks for thousands more.
            if results.len().is_multiple_of(10) {
                let t = Instant::now();
                let r = client.nonce().and_then(|nonce| {
                    std::thread::sleep(ADMIN_ROUND_TRIP);
                    let sig = basalt_api::request::sign(&key, "GET", "/v1/status", b"", &nonce);
                    client.send_raw("GET", "/v1/status", Vec::new(), Some(&nonce), Some(&sig))
                });
                results.push((r.map(|_| ()).map_err(|e| e.to_string()), t.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        results
    });

    let mut rss_peak = rss_before;
    let flood_started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        rss_peak = rss_peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let counts = flooder.join().unwrap();
    let flood_secs = flood_started.elapsed().as_secs_f64();
    let admin_results = admin.join().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = rss_kib(pid);

    let failures: Vec<_> = admin_results
        .iter()
        .filter_map(|(r, _)| r.as_ref().err())
        .collect();
    let slowest = admin_results
        .iter()
        .map(|(_, d)| *d)
        .max()
        .unwrap_or_default();
    let (ok, too_many, other) = (
        counts.ok.load(Ordering::Relaxed),
        counts.too_many.load(Ordering::Relaxed),
        counts.other.load(Ordering::Relaxed),
    );
    println!(
        "flood: {:.0} nonce requests/s answered ({:.0}/s served, {:.0}/s refused with 429, {other} other), \
         {} TLS connections made, {} refused, {} silent connections closed at once; admin: {} calls, {} failed, slowest {:?}; \
         machined RSS {} KiB before, {} KiB peak, {} KiB after",
        (ok + too_many) as f64 / flood_secs,
        ok as f64 / flood_secs,
        too_many as f64 / flood_secs,
        counts.connects.load(Ordering::Relaxed),
        counts.refused_connections.load(Ordering::Relaxed),
        counts.closed_at_once.load(Ordering::Relaxed),
        admin_results.len(),
        failures.len(),
        slowest,
        rss_before,
        rss_peak,
        rss_after,
    );
    assert!(
        admin_results.len() >= 20,
        "the admin made only {} calls",
        admin_results.len()
    );
    assert!(
        failures.is_empty(),
        "admin calls failed under the flood: {failures:?}"
    );
    assert!(
        ok + too_many > 1000,
        "the flood never got going: {ok} served, {too_many} refused"
    );
    assert!(
        too_many > 0,
        "the stranger's nonce requests were never limited"
    );
    assert_eq!(other, 0, "unexpected responses to the flood");
    assert!(
        counts.closed_at_once.load(Ordering::Relaxed) > 0,
        "the stranger was never held to its share of connections"
    );
    assert!(
        rss_peak < 64 * 1024,
        "machined grew to {rss_peak} KiB under the flood (from {rss_before} KiB)"
    );
}

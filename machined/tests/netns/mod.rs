//! Shared by the tests that need network namespaces, veth pairs and a real
//! DHCP server (dnsmasq): see `network.rs` for how they isolate themselves.
#![allow(dead_code)]

use machined::network::dhcp::Timing;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// These tests cannot run unprivileged; say so by failing, never by
/// passing without having checked anything.
pub fn require_root(test: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "{test} needs root (network namespaces): run the tests as root, as scripts/test and CI do"
    );
}

pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ip_json(ns: &str, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["ip", "-n", ns, "-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&run(&full)).unwrap()
}

/// `local/prefixlen` of every address on a link.
pub fn addrs(ns: &str, dev: &str) -> Vec<String> {
    ip_json(ns, &["addr", "show", "dev", dev])
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

pub fn routes(ns: &str, dev: &str) -> Vec<Value> {
    ip_json(ns, &["route", "show", "dev", dev])
}

pub fn link(ns: &str, dev: &str) -> Value {
    ip_json(ns, &["link", "show", "dev", dev]).remove(0)
}

pub fn is_up(ns: &str, dev: &str) -> bool {
    link(ns, dev)["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP")
}

/// A network namespace that is deleted when dropped.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("basalt-test-{}-{tag}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(&["ip", "netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Run `f` on a thread inside network namespace `ns`, on a current-thread
/// tokio runtime; a panic there fails the test.
pub fn in_netns<F, Fut, T>(ns: &str, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    let t = std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&fd),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    });
    match t.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

pub async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn fast_timing() -> Timing {
    Timing {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(2),
        jitter: Duration::from_millis(100),
        ..Timing::default()
    }
}

pub struct Dnsmasq {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    pub fn start(ns: &str, dev: &str) -> Self {
        assert!(
            Path::new("/usr/sbin/dnsmasq").exists()
                || Command::new("dnsmasq").arg("--version").output().is_ok(),
            "dnsmasq is missing: scripts/install-deps installs dnsmasq-base"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = |f: &str| dir.path().join(f).display().to_string();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "dnsmasq",
                "--no-daemon",
                "--port=0",
                "--conf-file=/dev/null",
            ])
            .arg(format!("--interface={dev}"))
            .args([
                "--bind-interfaces",
                "--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,2m",
                "--dhcp-option=option:router,10.77.0.1",
                "--dhcp-option=option:dns-server,10.77.0.53,10.77.0.54",
                "--dhcp-option=option:domain-name,basalt.test",
                "--dhcp-authoritative",
                "--no-ping",
                "--user=root",
                "--log-dhcp",
            ])
            .arg(format!("--dhcp-leasefile={}", p("leases")))
            .arg(format!("--pid-file={}", p("pid")))
            .arg(format!("--log-facility={}", p("log")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Dnsmasq { child, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        // With --no-daemon dnsmasq writes no pid file; its log says when
        // the DHCP socket is ready.
        while !d.log().contains("DHCP, IP range") {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not start: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("log")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        // `ip netns exec` execs dnsmasq, so this pid is dnsmasq's own.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- dnsmasq log ---\n{}", self.log());
        }
    }
}

impl Dnsmasq {
    /// `(expiry, mac, ip)` of every lease in a dnsmasq lease file.
    pub fn parse_leases(path: &Path) -> Vec<(u64, String, String)> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((
                    f.first()?.parse().ok()?,
                    f.get(1)?.to_string(),
                    f.get(2)?.to_string(),
                ))
            })
            .collect()
    }
}

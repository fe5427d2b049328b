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

/// Move the calling thread into network namespace `ns` (network
/// namespaces are per thread).
pub fn enter(ns: &str) {
    let fd = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&fd),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .unwrap();
}

/// Run `f` on a thread inside network namespace `ns`, on a current-thread
/// tokio runtime; a panic there fails the test.
pub fn in_netns<F, Fut, T>(ns: &str, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let ns = ns.to_string();
    let t = std::thread::spawn(move || {
        enter(&ns);
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

/// What [`HostileDhcp`] answers a REQUEST with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An ACK with every option [`hostile_options`] holds.
    HostileAck,
    /// A NAK, every time (a NAK storm).
    Nak,
}

/// A small raw DHCP server for hostile replies: port 67 on `dev` in `ns`,
/// every reply broadcast to port 68. It OFFERs and ACKs `yiaddr` with
/// [`hostile_options`], or NAKs every REQUEST, and notes when each
/// DISCOVER arrived.
pub struct HostileDhcp {
    pub answer: std::sync::Arc<std::sync::Mutex<Answer>>,
    pub discovers: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub const HOSTILE_SERVER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 77, 0, 1);

/// What a hostile server puts in its OFFER and ACK (with its id and a
/// message type).
pub fn hostile_options() -> Vec<dhcproto::v4::DhcpOption> {
    use dhcproto::v4::DhcpOption as O;
    use std::net::Ipv4Addr;
    let injected =
        dhcproto::Name::from_labels(vec![b"x\nnameserver 6".to_vec(), b"6".to_vec()]).unwrap();
    vec![
        // /0: every destination on the link.
        O::SubnetMask(Ipv4Addr::UNSPECIFIED),
        // The default route via a gateway off the link.
        O::Router(vec![Ipv4Addr::new(192, 0, 2, 1)]),
        O::DomainNameServer((0..200u8).map(|i| Ipv4Addr::new(10, 77, 1, i)).collect()),
        O::DomainName("corp.test\nnameserver 6.6.6.6".into()),
        O::Hostname(format!("../{}\u{7}", "h".repeat(300))),
        O::DomainSearch(vec![injected, "good.test.".parse().unwrap()]),
        O::AddressLeaseTime(0),
        O::InterfaceMtu(100),
    ]
}

impl HostileDhcp {
    pub fn start(ns: &str, dev: &str, yiaddr: std::net::Ipv4Addr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let answer = Arc::new(Mutex::new(Answer::HostileAck));
        let discovers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, d, s) = (answer.clone(), discovers.clone(), stop.clone());
        let (ns, dev) = (ns.to_string(), dev.to_string());
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let sock = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )
            .unwrap();
            sock.set_broadcast(true).unwrap();
            sock.bind_device(Some(dev.as_bytes())).unwrap();
            sock.bind(&std::net::SocketAddr::from(([0, 0, 0, 0], 67)).into())
                .unwrap();
            let sock: std::net::UdpSocket = sock.into();
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = hostile_reply(&buf[..n], *a.lock().unwrap(), yiaddr, &d) {
                    let _ = sock.send_to(&reply, ("255.255.255.255", 68));
                }
            }
        });
        ready.recv_timeout(Duration::from_secs(5)).unwrap();
        Self {
            answer,
            discovers,
            stop,
            thread: Some(thread),
        }
    }
}

fn hostile_reply(
    bytes: &[u8],
    answer: Answer,
    yiaddr: std::net::Ipv4Addr,
    discovers: &std::sync::Mutex<Vec<Instant>>,
) -> Option<Vec<u8>> {
    use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
    use dhcproto::{Decodable, Decoder, Encodable, Encoder};
    let msg = Message::decode(&mut Decoder::new(bytes)).ok()?;
    let kind = match msg.opts().msg_type()? {
        MessageType::Discover => {
            discovers.lock().unwrap().push(Instant::now());
            MessageType::Offer
        }
        MessageType::Request if answer == Answer::Nak => MessageType::Nak,
        MessageType::Request => MessageType::Ack,
        _ => return None,
    };
    let u = std::net::Ipv4Addr::UNSPECIFIED;
    let given = if kind == MessageType::Nak { u } else { yiaddr };
    let mut m = Message::new_with_id(msg.xid(), u, given, u, u, msg.chaddr());
    m.set_opcode(Opcode::BootReply);
    m.set_flags(msg.flags());
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut()
        .insert(DhcpOption::ServerIdentifier(HOSTILE_SERVER));
    if kind != MessageType::Nak {
        for o in hostile_options() {
            m.opts_mut().insert(o);
        }
    }
    let mut out = Vec::new();
    m.encode(&mut Encoder::new(&mut out)).ok()?;
    Some(out)
}

impl Drop for HostileDhcp {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

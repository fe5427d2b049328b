//! Apply latency and machined's memory, in dev mode against the real binary.
//!
//! - apply_latency: end-to-end `basaltctl`-client apply of a signed hostname
//!   change (nonce, TLS, verify, parse, persist with fsync, converge), median
//!   of N; the floor is `ssh-keygen -Y verify` of the same document and
//!   signature (what any SSHSIG check costs from a shell), same run.
//! - machined_rss_idle / machined_rss_after_100_applies: VmRSS of the machined
//!   process; compared to the 16 MiB goal (DESIGN "Performance anchors").

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/dev_process.rs"]
mod dev_process;

use dev_process::DevMachined;

use basalt_api::rpc::{ApplyMode, ApplyRequest, ApplyResponse, Status};
use basalt_api::{CONFIG_NAMESPACE, sshsig};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WORKER: &str = include_str!("../../configs/worker.toml");
const EXAMPLE_ADMIN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRBnXLtUn61qn3ftZ0PoOixOodqYhzuC1OWicDtwZPQ ops@example";
const GOAL_RSS_MIB: f64 = 16.0;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = DevMachined::start(1);
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_mib(node.pid());

    let admin_line = node.key.public().to_openssh();
    let doc = |g: u64| {
        WORKER
            .replace(EXAMPLE_ADMIN, &admin_line)
            .replace("generation = 1", &format!("generation = {g}"))
            // Dev mode runs on the host: metrics on loopback only.
            .replace("0.0.0.0:9100", "127.0.0.1:0")
            .replace(
                "hostname = \"worker-1\"",
                &format!("hostname = \"bench-{g}\""),
            )
    };
    let n = 100u64;
    let mut ours = Vec::new();
    for g in 1..=n {
        let d = doc(g);
        let sig = sshsig::sign(&node.key, CONFIG_NAMESPACE, d.as_bytes());
        let req = ApplyRequest {
            config: d,
            signatures: sig,
            mode: ApplyMode::NoReboot,
            dry_run: false,
            try_timeout_secs: None,
        };
        let t = Instant::now();
        let r: ApplyResponse = node.client.post("/v1/apply", &req).unwrap();
        ours.push(t.elapsed());
        assert_eq!(r.generation, g);
    }
    assert_eq!(
        node.client.get::<Status>("/v1/status").unwrap().hostname,
        format!("bench-{n}")
    );
    let after = rss_mib(node.pid());
    // The floor: OpenSSH verifying the same kind of document and signature
    // (signed now, verified with machined gone).
    let d = doc(n + 1);
    std::fs::write(tmp.path().join("doc.toml"), &d).unwrap();
    std::fs::write(
        tmp.path().join("doc.toml.sig"),
        sshsig::sign(&node.key, CONFIG_NAMESPACE, d.as_bytes()),
    )
    .unwrap();
    node.stop();
    std::fs::write(tmp.path().join("allowed"), format!("ops {admin_line}\n")).unwrap();
    let mut peer = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let st = Command::new("ssh-keygen")
            .current_dir(tmp.path())
            .args([
                "-Y",
                "verify",
                "-f",
                "allowed",
                "-I",
                "ops",
                "-n",
                CONFIG_NAMESPACE,
                "-s",
                "doc.toml.sig",
            ])
            .stdin(std::fs::File::open(tmp.path().join("doc.toml")).unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        peer.push(t.elapsed());
        assert!(st.success());
    }
    let (o, p) = (
        median(ours).as_secs_f64() * 1e3,
        median(peer).as_secs_f64() * 1e3,
    );
    println!("applies={n} (signed hostname change, mode no-reboot, fsync'd STATE)");
    // The peer only verifies the signature (ssh-keygen -Y verify); ours
    // verifies, plans, persists with fsync and converges as well.
    println!(
        "apply_latency: the peer is verification alone (ssh-keygen -Y verify of the same document)"
    );
    println!(
        "RESULT name=apply_latency ours={o:.2}ms peer={p:.2}ms ratio={:.2} peer_is=verification_alone",
        o / p
    );
    // No peer runs here: the design's memory goal, printed as a goal.
    println!("RESULT name=machined_rss_idle ours={idle:.1}MiB goal={GOAL_RSS_MIB:.1}MiB");
    println!(
        "RESULT name=machined_rss_after_100_applies ours={after:.1}MiB goal={GOAL_RSS_MIB:.1}MiB"
    );
}

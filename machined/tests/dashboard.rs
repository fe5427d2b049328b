//! `basaltctl dashboard` as an operator runs it (the real binary, stdout a
//! pipe) against a dev-mode machined serving on a socket, running a
//! service: it prints each node once as plain text, and a node it cannot
//! reach fails the command under its name.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/dev_process.rs"]
mod dev_process;

use basalt_api::rpc::{ServiceState, ServiceStatus, Status};
use basalt_api::sshkey::PrivateKey;
use basaltctl::client::NodeClient;
use dev_process::{apply, free_port, worker_doc};
use machined::devmode::{self, DevOptions, RunningNode};
use machined::server::Limits;
use machined::supervisor::ServiceSpec;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `basaltctl` binary of this build: next to machined's, where
/// `cargo test --workspace` (scripts/test) builds it.
fn basaltctl_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_machined")).with_file_name("basaltctl");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (cargo build -p basaltctl; cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// A dev node trusting `key`, running one service, `greeter`, once configured.
struct Node {
    running: Option<RunningNode>,
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    key: PrivateKey,
}

impl Node {
    fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let key = PrivateKey::from_seed(&[21; 32], "ops@dashboard");
        std::fs::create_dir_all(root.join("etc/basalt")).unwrap();
        std::fs::write(
            root.join("etc/basalt/trust.toml"),
            format!("admins = [\"{}\"]\n", key.public().to_openssh()),
        )
        .unwrap();
        let greeter = ServiceSpec::new(
            "greeter",
            ["/bin/sh", "-c", "echo hello from greeter; exec sleep 1000"]
                .map(String::from)
                .to_vec(),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = rt
            .block_on(devmode::start(DevOptions {
                root,
                listen: "127.0.0.1:0".parse().unwrap(),
                limits: Limits::default(),
                services: vec![greeter],
            }))
            .unwrap();
        Node {
            running: Some(running),
            _rt: rt,
            dir,
            key,
        }
    }

    fn addr(&self) -> String {
        self.running.as_ref().unwrap().addr.to_string()
    }

    fn fingerprint(&self) -> String {
        self.running.as_ref().unwrap().fingerprint.clone()
    }

    fn client(&self) -> NodeClient {
        let key = PrivateKey::from_seed(&[21; 32], "ops@dashboard");
        NodeClient::new(&self.addr(), Some(self.fingerprint()), Arc::new(key)).unwrap()
    }

    /// `basaltctl --node NODES … dashboard EXTRA` as this node's admin.
    fn dashboard(&self, nodes: &str, extra: &[&str]) -> Output {
        let key = self.dir.path().join("admin");
        std::fs::write(&key, self.key.to_openssh().unwrap()).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut cmd = Command::new(basaltctl_bin());
        cmd.args(["--node", nodes, "--fingerprint", &self.fingerprint()])
            .arg("--key")
            .arg(&key)
            .arg("--known-nodes")
            .arg(self.dir.path().join("known_nodes"))
            .arg("dashboard")
            .args(extra);
        output_reaped(&mut cmd)
    }
}

/// `cmd`'s output, spawned through machined's reaper: the node in this
/// process reaps every child (`waitpid(-1)`), so `Command::output` would
/// race it and fail with ECHILD.
fn output_reaped(cmd: &mut Command) -> Output {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{ExitStatus, Stdio};
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, exit) = machined::supervisor::spawn_reaped(cmd).unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut err = Vec::new();
        stderr.read_to_end(&mut err).unwrap();
        err
    });
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let stderr = reading.join().unwrap();
    let exit = exit.blocking_recv().expect("basaltctl's exit");
    let status = match (exit.code, exit.signal) {
        (Some(code), _) => ExitStatus::from_raw((code & 0xff) << 8),
        (None, Some(sig)) => ExitStatus::from_raw(sig & 0x7f),
        (None, None) => panic!("basaltctl ended without a status: {exit:?}"),
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(n) = self.running.take() {
            n.stop();
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The value of a `key   value` line of the block.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).filter(|r| r.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {key} line in\n{out}"))
        .trim()
}

#[test]
fn piped_it_prints_each_node_once_and_a_dead_node_fails_it_by_name() {
    let node = Node::start();
    let client = node.client();
    apply(&client, &node.key, &worker_doc(&node.key, 4, free_port()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .get::<Vec<ServiceStatus>>("/v1/services")
        .unwrap()
        .iter()
        .all(|s| s.name != "greeter" || s.state != ServiceState::Running)
    {
        assert!(Instant::now() < deadline, "greeter never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status: Status = client.get("/v1/status").unwrap();
    assert!(!status.signers.is_empty());

    let out = node.dashboard(&node.addr(), &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        stdout.lines().next(),
        Some(format!("node        {}", node.addr()).as_str()),
        "{stdout}"
    );
    assert_eq!(field(&stdout, "generation"), "4");
    assert_eq!(field(&stdout, "signers"), status.signers.join(", "));
    // The CPU use over its one-second sample, and this host's memory.
    let cpu = field(&stdout, "cpu");
    let pct: f64 = cpu.strip_suffix('%').unwrap().parse().unwrap();
    assert!((0.0..=100.0).contains(&pct), "{cpu}");
    assert!(field(&stdout, "memory").contains(" used of "), "{stdout}");
    assert!(
        field(&stdout, "pressure").starts_with("cpu some "),
        "{stdout}"
    );
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("greeter "))
        .unwrap_or_else(|| panic!("no greeter row in\n{stdout}"))
        .split_whitespace()
        .collect();
    assert_eq!(row, ["greeter", "running", "yes", "0"], "{stdout}");

    let dead = format!("127.0.0.1:{}", free_port());
    let out = node.dashboard(&format!("{},{dead}", node.addr()), &["--once"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        field(&stdout, "node"),
        node.addr(),
        "the live node still prints"
    );
    assert!(stdout.contains("\ngreeter "), "{stdout}");
    assert!(!stdout.contains(&dead), "{stdout}");
    assert!(
        stderr.contains(&format!("{dead}: error: connecting to {dead}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("error: 1 of 2 nodes failed: {dead}")),
        "{stderr}"
    );
}

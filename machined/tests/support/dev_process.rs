//! A real `machined --dev-root` process and a signed client to it, for
//! tests and benches that watch machined from outside (its CPU time, its
//! memory, what it serves). Shared by `tests/metrics.rs`,
//! `tests/dashboard.rs` and `benches/scrape.rs`, each of which uses only part of it.

#![allow(dead_code)]

use basalt_api::rpc::{ApplyMode, ApplyRequest, ApplyResponse, Status};
use basalt_api::sshkey::PrivateKey;
use basalt_api::{CONFIG_NAMESPACE, sshsig};
use basaltctl::client::NodeClient;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

const WORKER: &str = include_str!("../../../configs/worker.toml");
const EXAMPLE_ADMIN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRBnXLtUn61qn3ftZ0PoOixOodqYhzuC1OWicDtwZPQ ops@example";

pub struct DevMachined {
    pub child: Child,
    pub client: NodeClient,
    pub key: PrivateKey,
    pub addr: String,
    pub fingerprint: String,
    pub root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl DevMachined {
    /// Start machined on a fresh dev root that trusts the key of `seed`.
    pub fn start(seed: u8) -> DevMachined {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let key = PrivateKey::from_seed(&[seed; 32], "dev");
        std::fs::create_dir_all(root.join("etc/basalt")).unwrap();
        std::fs::write(
            root.join("etc/basalt/trust.toml"),
            format!("admins = [\"{}\"]\n", key.public().to_openssh()),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_machined"))
            .args([
                "--dev-root",
                root.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "machined (dev) API https://ADDR fingerprint FP"
        let addr = line
            .split("https://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let fingerprint = line
            .split("fingerprint ")
            .nth(1)
            .unwrap_or_else(|| panic!("no fingerprint in {line:?}"))
            .trim()
            .to_string();
        let client = NodeClient::new(
            &addr,
            Some(fingerprint.clone()),
            Arc::new(PrivateKey::from_seed(&[seed; 32], "dev")),
        )
        .unwrap();
        client.get::<Status>("/v1/status").unwrap();
        DevMachined {
            child,
            client,
            key,
            addr,
            fingerprint,
            root,
            _tmp: tmp,
        }
    }

    /// A client of the same node signing with another key.
    pub fn client_with(&self, seed: u8) -> NodeClient {
        let key = PrivateKey::from_seed(&[seed; 32], "other");
        NodeClient::new(&self.addr, Some(self.fingerprint.clone()), Arc::new(key)).unwrap()
    }

    /// `configs/worker.toml` signed by this node's admin, at `generation`,
    /// with its metrics listener on 127.0.0.1:`metrics_port` (dev mode
    /// runs on the host: loopback only).
    pub fn worker_doc(&self, generation: u64, metrics_port: u16) -> String {
        worker_doc(&self.key, generation, metrics_port)
    }

    pub fn apply(&self, doc: &str) -> ApplyResponse {
        apply(&self.client, &self.key, doc)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl DevMachined {
    /// Kill machined now (a bench measuring its peer next wants it gone).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DevMachined {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `configs/worker.toml` administered by `key`, at `generation`, with its
/// metrics listener on 127.0.0.1:`metrics_port`.
pub fn worker_doc(key: &PrivateKey, generation: u64, metrics_port: u16) -> String {
    WORKER
        .replace(EXAMPLE_ADMIN, &key.public().to_openssh())
        .replace("generation = 1", &format!("generation = {generation}"))
        .replace("0.0.0.0:9100", &format!("127.0.0.1:{metrics_port}"))
}

/// `doc` signed by `key`, applied through `client` without a reboot.
pub fn apply(client: &NodeClient, key: &PrivateKey, doc: &str) -> ApplyResponse {
    let req = ApplyRequest {
        config: doc.to_string(),
        signatures: sshsig::sign(key, CONFIG_NAMESPACE, doc.as_bytes()),
        mode: ApplyMode::NoReboot,
        dry_run: false,
        try_timeout_secs: None,
    };
    client.post("/v1/apply", &req).unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 GET of 127.0.0.1:`port` `path`: status line and body.
pub fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

//! What every Kubernetes story does to a node as an operator: apply a
//! signed config, wait for `/v1/health`, mint a kubeconfig, and retry a
//! check until the (slow, emulated) cluster gets there.

use crate::vm::Vm;
use crate::vm::VmOptions;
use crate::{admin_key, image, statedisk};
use basalt_api::config::{CniName, Role};
use basalt_api::rpc::{
    ApplyMode, ApplyRequest, ApplyResponse, HealthReport, KubeconfigRequest, KubeconfigResponse,
    ServiceStatus,
};
use basalt_api::{CONFIG_NAMESPACE, sshsig};
use basaltctl::client::NodeClient;
use basaltctl::template::Shape;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The one-node stories' node: QEMU user networking gives it 10.0.2.15.
pub const ONE_NODE_ENDPOINT: &str = "https://10.0.2.15:6443";

/// `basaltctl config gen --role controlplane` for a one-node cluster
/// `cluster` whose node `hostname` schedules workloads, with `cni`.
pub fn one_node_config(cluster: &str, hostname: &str, cni: CniName) -> String {
    basaltctl::template::generate(
        Role::Controlplane,
        cluster,
        ONE_NODE_ENDPOINT,
        &admin_key().public(),
        Shape {
            hostname: Some(hostname),
            cni,
            schedule_on_control_plane: true,
        },
    )
    .unwrap_or_else(|e| panic!("config gen: {e}"))
}

/// A booted node-image VM with a STATE disk, its API answering.
pub struct OneNode {
    pub vm: Vm,
    pub admin: NodeClient,
    /// The node's TLS fingerprint, from its console.
    pub fingerprint: String,
    /// The STATE disk image, for the story to remove when it is done.
    pub state_disk: PathBuf,
}

/// Boot the node image as `name` with 4 GiB, a fresh 512 MiB STATE disk
/// and guest port `forward` forwarded; wait up to `within` for its API.
pub fn boot_one_node(name: &str, forward: u16, within: Duration) -> OneNode {
    let img = image::node().unwrap_or_else(|e| panic!("node image: {e}"));
    let dir = image::target_dir().join("qemu-runs");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let state_disk = dir.join(format!("{name}-state-{}.raw", std::process::id()));
    statedisk::create(&state_disk, 512).unwrap_or_else(|e| panic!("STATE disk: {e}"));
    let opts = VmOptions {
        memory_mib: Some(4096),
        forwards: vec![forward],
        disks: vec![state_disk.clone()],
        ..VmOptions::default()
    };
    let t0 = Instant::now();
    let mut vm = Vm::boot(img, name, &opts).unwrap_or_else(|e| panic!("boot: {e}"));
    let fingerprint = vm
        .fingerprint(1, within)
        .unwrap_or_else(|e| panic!("fingerprint on the console: {e}"));
    let admin = vm
        .client(&fingerprint, admin_key(), within)
        .unwrap_or_else(|e| panic!("API: {e}"));
    eprintln!("{name}: API up after {:?}", t0.elapsed());
    OneNode {
        vm,
        admin,
        fingerprint,
        state_disk,
    }
}

/// Sign `doc` with the harness admin key and apply it (mode auto); panics
/// (failing the test) when the node refuses.
pub fn apply(admin: &NodeClient, doc: &str) -> ApplyResponse {
    admin
        .post(
            "/v1/apply",
            &ApplyRequest {
                config: doc.into(),
                signatures: sshsig::sign(&admin_key(), CONFIG_NAMESPACE, doc.as_bytes()),
                mode: ApplyMode::Auto,
                dry_run: false,
                try_timeout_secs: None,
            },
        )
        .unwrap_or_else(|e| panic!("apply: {e}"))
}

/// Poll `/v1/health` until every check passes, printing each change as
/// `[who <secs>s] name=ok | name=why ...`; how long it took.
pub fn wait_healthy(who: &str, vm: &Vm, admin: &NodeClient, within: Duration) -> Duration {
    let t0 = Instant::now();
    let mut last = String::new();
    loop {
        // An API that stops answering is news too: a story that fails
        // that way must say so, not repeat the last health it saw.
        let (line, healthy) = match admin.get::<HealthReport>("/v1/health") {
            Ok(report) => (
                report
                    .checks
                    .iter()
                    .map(|c| format!("{}={}", c.name, if c.ok { "ok" } else { &c.detail }))
                    .collect::<Vec<String>>()
                    .join(" | "),
                report.all_ok(),
            ),
            Err(e) => (format!("API does not answer: {e}"), false),
        };
        if line != last {
            eprintln!("[{who} {:>4}s] {line}", t0.elapsed().as_secs());
            last = line;
        }
        if healthy {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "{who} not healthy after {within:?}: {last}\n{}",
            vm.console_tail(60)
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Retry `f` every 5 s until it succeeds, or fail after `within` with the
/// last thing it said.
pub fn eventually<T>(what: &str, within: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let t0 = Instant::now();
    loop {
        match f() {
            Ok(v) => {
                eprintln!("{what}: after {:?}", t0.elapsed());
                return v;
            }
            Err(e) => assert!(t0.elapsed() < within, "{what}: not within {within:?}: {e}"),
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// A kubeconfig minted by the node (`/v1/kubeconfig`) for `server`,
/// written to `dir/kubeconfig`.
pub fn kubeconfig(admin: &NodeClient, server: &str, dir: &Path) -> PathBuf {
    let minted: KubeconfigResponse = admin
        .post(
            "/v1/kubeconfig",
            &KubeconfigRequest {
                server: Some(server.into()),
                user: "story".into(),
            },
        )
        .unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join("kubeconfig");
    std::fs::write(&path, &minted.kubeconfig).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// Every service's log ring into `dir` (`<service>.log`, beside the VM's
/// console): the components' own account of a slow or failed run.
pub fn save_logs(admin: &NodeClient, dir: &Path) {
    let services: Vec<ServiceStatus> = match admin.get("/v1/services") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("saving logs into {}: services: {e}", dir.display());
            return;
        }
    };
    for s in services {
        let text = admin
            .send("GET", &format!("/v1/logs/{}", s.name), vec![])
            .map_err(|e| e.to_string())
            .and_then(|r| r.text().map_err(|e| e.to_string()));
        let path = dir.join(format!("{}.log", s.name));
        match text.map(|t| std::fs::write(&path, t)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("{}: {e}", path.display()),
            Err(e) => eprintln!("logs of {}: {e}", s.name),
        }
    }
    eprintln!("service logs saved in {}", dir.display());
}

/// Saves a node's service logs beside its console if the story panics
/// while this lives (a failed story is read by them).
pub struct LogsOnFailure<'a> {
    pub admin: &'a NodeClient,
    pub dir: PathBuf,
}

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            save_logs(self.admin, &self.dir);
        }
    }
}

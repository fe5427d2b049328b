//! The packaged containerd 2 (built from packages/containerd, as the node
//! image ships it) reads the config machined generates and runs with it:
//! CRI loaded, the sandbox image pinned, the CNI and registry directories
//! machined owns. (The supervised daemon is tested in
//! containerd_supervised.rs: that test installs the process-wide reaper,
//! which would race this file's plain `Command` calls if they shared a
//! binary.)

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod packaged;

use machined::containerd;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

fn write_config(root: &Path) -> std::path::PathBuf {
    let cfg = root.join(containerd::CONFIG.trim_start_matches('/'));
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, containerd::config(root)).unwrap();
    cfg
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn containerd_2_reads_our_config() {
    let bins = packaged::containerd_bin_dir();
    let t = tempfile::tempdir().unwrap();
    let cfg = write_config(t.path());
    let out = Command::new(bins.path().join("containerd"))
        .args(["--config", cfg.to_str().unwrap(), "config", "dump"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dump = String::from_utf8_lossy(&out.stdout);
    let root = t.path().display().to_string();
    // containerd prints TOML with single-quoted strings.
    for want in [
        format!("root = '{root}/var/lib/containerd'"),
        format!("state = '{root}/run/containerd'"),
        format!("address = '{root}/run/containerd/containerd.sock'"),
        format!("sandbox = '{}'", containerd::PAUSE_IMAGE),
        format!("config_path = '{root}/run/basalt/containerd/certs.d'"),
        format!("bin_dirs = ['{root}/opt/cni/bin']"),
        format!("conf_dir = '{root}/etc/cni/net.d'"),
        "SystemdCgroup = false".to_string(),
        "'io.containerd.internal.v1.tracing'".to_string(),
    ] {
        assert!(
            dump.contains(&want),
            "containerd's dump lacks {want}:\n{dump}"
        );
    }
}

/// Kills and reaps the daemon however the test ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn containerd_2_runs_our_config_with_cri_loaded() {
    let bins = packaged::containerd_bin_dir();
    let t = tempfile::tempdir().unwrap();
    let cfg = write_config(t.path());
    let sock = t.path().join(containerd::SOCKET.trim_start_matches('/'));
    let log = std::fs::File::create(t.path().join("containerd.log")).unwrap();
    let mut daemon = Daemon(
        Command::new(bins.path().join("containerd"))
            .args(["--config", cfg.to_str().unwrap()])
            .env("PATH", bins.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let ctr = |args: &[&str]| {
        Command::new(bins.path().join("ctr"))
            .arg("--address")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap()
    };
    let started = Instant::now();
    let version = loop {
        let out = ctr(&["version"]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!(
                "containerd exited ({status}):\n{}",
                std::fs::read_to_string(t.path().join("containerd.log")).unwrap()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "containerd never answered: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("containerd answered after {:?}", started.elapsed());
    assert!(version.contains("Server:"), "{version}");
    assert!(version.contains("v2.4.2"), "{version}");

    let plugins = ctr(&["plugins", "ls"]);
    assert!(plugins.status.success(), "{}", text(&plugins));
    let plugins = String::from_utf8_lossy(&plugins.stdout);
    // `TYPE  ID  PLATFORMS  STATUS` columns.
    let status = |ty: &str, id: &str| {
        plugins
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&ty) && f.get(1) == Some(&id))
            .and_then(|f| f.last().map(|s| s.to_string()))
    };
    for (ty, id) in [
        ("io.containerd.cri.v1", "images"),
        ("io.containerd.cri.v1", "runtime"),
        ("io.containerd.grpc.v1", "cri"),
    ] {
        assert_eq!(
            status(ty, id).as_deref(),
            Some("ok"),
            "{ty} {id} not loaded:\n{plugins}"
        );
    }
    // Disabled plugins are not registered at all (upstream's default
    // config loads these three).
    for (ty, id) in [
        ("io.containerd.internal.v1", "tracing"),
        ("io.containerd.tracing.processor.v1", "otlp"),
        ("io.containerd.nri.v1", "nri"),
    ] {
        assert_eq!(status(ty, id), None, "{ty} {id} not disabled:\n{plugins}");
    }
    // Schema 3 with current keys: nothing in the config for containerd to
    // warn about. (cgroup v1 is this test host's, not the config's: a
    // Basalt node mounts cgroup2.)
    let deprecations = ctr(&["deprecations", "list"]);
    assert!(deprecations.status.success(), "{}", text(&deprecations));
    let listed = String::from_utf8_lossy(&deprecations.stdout);
    assert!(
        listed.lines().all(|l| l.trim().is_empty()
            || l.starts_with("ID ")
            || l.starts_with("io.containerd.deprecation/cgroup-v1 ")),
        "containerd reports deprecated config:\n{listed}"
    );
    // containerd exits on SIGTERM; the guard's SIGKILL is for failures.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(daemon.0.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "containerd exited {status}");
}

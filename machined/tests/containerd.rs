//! containerd as machined runs it: the generated config is read back by
//! containerd itself, and the supervised daemon answers `ctr version`,
//! and comes back after it is killed.

use machined::containerd;
use machined::supervisor::{Supervisor, SupervisorConfig, init_reaper, spawn_reaped};
use std::process::Command;
use std::time::{Duration, Instant};

fn have(bin: &str) -> bool {
    Command::new(bin).arg("--version").output().is_ok()
}

#[test]
fn containerd_reads_our_config() {
    assert!(
        have("containerd"),
        "containerd must be installed (scripts/install-deps)"
    );
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("config.toml");
    std::fs::write(&cfg, containerd::config(t.path())).unwrap();
    let out = Command::new("containerd")
        .args(["--config", cfg.to_str().unwrap(), "config", "dump"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8_lossy(&out.stdout);
    let root = t.path().display().to_string();
    for want in [
        format!("root = \"{root}/var/lib/containerd\""),
        format!("state = \"{root}/run/containerd\""),
        format!("address = \"{root}/run/containerd/containerd.sock\""),
        format!("bin_dir = \"{root}/opt/cni/bin\""),
        format!("conf_dir = \"{root}/etc/cni/net.d\""),
        "SystemdCgroup = false".to_string(),
    ] {
        assert!(
            dump.contains(&want),
            "containerd's dump lacks {want}:\n{dump}"
        );
    }
}

#[test]
fn supervised_containerd_answers_and_is_restarted_after_a_kill() {
    assert!(
        have("containerd") && have("ctr"),
        "containerd and ctr must be installed"
    );
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join(containerd::CONFIG.trim_start_matches('/'));
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, containerd::config(t.path())).unwrap();
    let sock = t.path().join(containerd::SOCKET.trim_start_matches('/'));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        init_reaper().unwrap();
        let sup = Supervisor::new(SupervisorConfig::default()).unwrap();
        sup.start(vec![containerd::service(t.path())]).unwrap();
        sup.wait_ready("containerd", Duration::from_secs(60))
            .await
            .unwrap();
        let version = |sock: &std::path::Path| {
            // Through the supervisor's reaper: it owns waitpid(-1).
            let mut cmd = Command::new("ctr");
            cmd.args(["--address", sock.to_str().unwrap(), "version"]);
            cmd.stdout(std::process::Stdio::piped());
            spawn_reaped(&mut cmd).unwrap()
        };
        let (mut child, exit) = version(&sock);
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(exit.await.unwrap().success());
        assert!(out.contains("Server:") && out.contains("Version:"), "{out}");

        let first = sup.status("containerd").unwrap().pid.unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(first as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = sup.status("containerd").unwrap();
            if s.restarts >= 1 && s.ready && s.pid.is_some_and(|p| p != first) {
                break;
            }
            assert!(Instant::now() < deadline, "containerd not restarted: {s:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sup.stop_all().await;
    });
}

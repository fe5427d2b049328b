//! The packaged containerd 2 supervised as machined runs it: ready once
//! `ctr version` answers on its socket, and restarted after it is killed.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod packaged;

use machined::containerd;
use machined::supervisor::{Supervisor, SupervisorConfig, init_reaper, spawn_reaped};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn supervised_containerd_answers_and_is_restarted_after_a_kill() {
    let bins = packaged::containerd_bin_dir();
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
        sup.start(vec![containerd::service(t.path(), bins.path())])
            .unwrap();
        sup.wait_ready("containerd", Duration::from_secs(60))
            .await
            .unwrap();
        let version = |sock: &std::path::Path| {
            // Through the supervisor's reaper: it owns waitpid(-1).
            let mut cmd = Command::new(bins.path().join("ctr"));
            cmd.args(["--address", sock.to_str().unwrap(), "version"]);
            cmd.stdout(std::process::Stdio::piped());
            spawn_reaped(&mut cmd).unwrap()
        };
        let (mut child, exit) = version(&sock);
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(exit.await.unwrap().success());
        assert!(out.contains("Server:") && out.contains("v2.4.2"), "{out}");

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

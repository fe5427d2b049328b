//! containerd reads the config machined generates for it.
//! (The supervised daemon is tested in containerd_supervised.rs: that test
//! installs the process-wide reaper, which would race this file's plain
//! `Command::output` calls if they shared a binary.)

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use machined::containerd;
use std::process::Command;

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

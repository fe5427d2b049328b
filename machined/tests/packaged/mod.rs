#![allow(dead_code)] // each test binary uses part of this module
//! The upstream binaries the tests run against: the ones built from
//! `packages/` (the same the node image ships), found in the package cache
//! through image-builder's key, so a changed pin is never satisfied by a
//! stale entry. Missing binaries fail the test with the command that builds
//! them; they are never skipped.

use std::path::{Path, PathBuf};

fn packages_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packages")
}

/// `binary` of component `component`, as built from its pin.
pub fn binary(component: &str, binary: &str) -> PathBuf {
    let built = image_builder::package::require_built(&packages_dir(), component)
        .unwrap_or_else(|e| panic!("{e}"));
    built
        .binary(binary)
        .unwrap_or_else(|| panic!("{component} builds no {binary}"))
}

/// One directory with containerd, ctr, containerd-shim-runc-v2 and runc
/// (symlinks into the cache), as `/usr/bin` holds them on a node:
/// containerd finds the shim, and the shim runc, on PATH.
pub fn containerd_bin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (component, name) in [
        ("containerd", "containerd"),
        ("containerd", "ctr"),
        ("containerd", "containerd-shim-runc-v2"),
        ("runc", "runc"),
    ] {
        std::os::unix::fs::symlink(binary(component, name), dir.path().join(name)).unwrap();
    }
    dir
}

/// A static binary built from this workspace (packages/pause, packages/echo)
/// as scripts/test builds them for the images.
pub fn static_binary(name: &str) -> PathBuf {
    // As configs/images/node.toml names them.
    let dir = std::env::var_os("BASALT_STATIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
                .join("x86_64-unknown-linux-gnu/release")
        });
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `CARGO_ENCODED_RUSTFLAGS=-Ctarget-feature=+crt-static cargo build \
         --release --target x86_64-unknown-linux-gnu -p pause -p echo` (scripts/test does)",
        p.display()
    );
    p
}

/// A real containerd daemon on machined's config, rooted in a temporary
/// directory; killed and reaped however the test ends.
pub struct Containerd {
    pub root: tempfile::TempDir,
    pub bins: tempfile::TempDir,
    pub socket: PathBuf,
    child: std::process::Child,
}

impl Containerd {
    /// Starts containerd with `machined::containerd::config` and waits
    /// until `ctr version` answers.
    pub fn start() -> Containerd {
        use machined::containerd;
        let bins = containerd_bin_dir();
        let root = tempfile::tempdir().unwrap();
        let cfg = root.path().join(containerd::CONFIG.trim_start_matches('/'));
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        std::fs::write(&cfg, containerd::config(root.path())).unwrap();
        let socket = root.path().join(containerd::SOCKET.trim_start_matches('/'));
        let log = std::fs::File::create(root.path().join("containerd.log")).unwrap();
        let child = std::process::Command::new(bins.path().join("containerd"))
            .arg("--config")
            .arg(&cfg)
            .env("PATH", format!("{}:/usr/bin:/bin", bins.path().display()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Containerd {
            root,
            bins,
            socket,
            child,
        };
        let started = std::time::Instant::now();
        loop {
            if d.ctr(&["version"]).status.success() {
                return d;
            }
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("containerd exited ({status}):\n{}", d.log());
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "containerd never answered:\n{}",
                d.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("containerd.log")).unwrap_or_default()
    }

    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(self.bins.path().join("ctr"))
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    /// `ctr args`, which must succeed; its stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

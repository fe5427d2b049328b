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

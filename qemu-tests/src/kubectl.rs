//! The upstream kubectl the Kubernetes stories and benches check clusters
//! with: the one built from packages/kubernetes (found, or built, in the
//! shared package cache, as images take it).

use image_builder::package::{self, BuildOptions, Recipe};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The packaged kubectl; panics (failing the test) when it cannot be had.
pub fn binary() -> PathBuf {
    let dir = crate::image::workspace().join("packages/kubernetes");
    let opts = BuildOptions {
        cache_dir: BuildOptions::default_cache_dir(),
        go_cache: None,
        progress: false,
    };
    let recipe = Recipe::load(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    package::build(&recipe, &opts)
        .unwrap_or_else(|e| panic!("kubectl (run `image-builder package kubernetes`): {e}"))
        .binary("kubectl")
        .unwrap_or_else(|| panic!("the kubernetes package builds no kubectl"))
}

/// `kubectl --kubeconfig=<kubeconfig> <args>`: its stdout, or its stderr.
pub fn run(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(binary())
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["--request-timeout=60s"])
        .args(args)
        .output()
        .map_err(|e| format!("running kubectl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

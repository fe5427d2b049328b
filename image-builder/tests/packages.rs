//! The upstream components in `packages/`, built for real with Go: every
//! binary prints its pinned version, Go's own build info agrees with the lock,
//! two cold builds give the same bytes, a rebuild is a cache hit, and a
//! tampered lock fails with Go's checksum error. Needs Go (/usr/local/go or
//! PATH) and the module proxy; libseccomp-dev for runc.

use image_builder::package::{self, BuildOptions, Built, Recipe, gosum};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn packages_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packages")
}

fn recipe(name: &str) -> Recipe {
    Recipe::load(&packages_dir().join(name)).unwrap()
}

/// The shared cache (`BASALT_PACKAGE_CACHE`, else ~/.cache/basalt/packages):
/// image builds and the QEMU stories take the same entries.
fn shared() -> BuildOptions {
    BuildOptions {
        cache_dir: BuildOptions::default_cache_dir(),
        go_cache: None,
        progress: false,
    }
}

fn build(name: &str) -> Built {
    package::build(&recipe(name), &shared()).unwrap_or_else(|e| panic!("{e}"))
}

/// Binaries with no way to print a version; `build_info` checks the module
/// version Go recorded in them instead.
const NO_VERSION_OUTPUT: &[&str] = &["cilium-health-responder"];

/// How each binary is asked for its version.
fn version_args(binary: &str) -> &'static [&'static str] {
    match binary {
        "kubectl" => &["version", "--client"],
        "containerd-shim-runc-v2" => &["-v"],
        // Prints the client's version, then that no agent answers.
        "cilium-dbg" => &["version"],
        "cilium-cni" => &["--help"],
        // The CNI plugins print their version when run without CNI_COMMAND.
        "loopback" | "bridge" | "host-local" | "portmap" => &[],
        _ => &["--version"],
    }
}

fn check_versions(name: &str) {
    let built = build(name);
    let version = &built.record.version;
    assert_eq!(version, &recipe(name).version);
    for b in &built.record.binaries {
        if NO_VERSION_OUTPUT.contains(&b.name.as_str()) {
            continue;
        }
        let path = built.binary(&b.name).unwrap();
        let out = Command::new(&path)
            .args(version_args(&b.name))
            .env_remove("CNI_COMMAND")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let bare = version.trim_start_matches('v');
        assert!(
            text.contains(bare),
            "{} {:?} printed no {version}:\n{text}",
            b.name,
            version_args(&b.name)
        );
        assert!(!text.contains("unknown"), "{}: {text}", b.name);
    }
}

/// `go version -m` of every binary lists the recipe's module at its version,
/// and every module compiled in is in go.sum with the same hash.
fn check_build_info(name: &str) {
    let built = build(name);
    let r = recipe(name);
    let lock = gosum::module_hashes(&std::fs::read_to_string(r.dir.join("go.sum")).unwrap());
    for b in &built.record.binaries {
        let out = Command::new(go())
            .args(["version", "-m"])
            .arg(built.binary(&b.name).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "go version -m {}", b.name);
        let info = gosum::parse_build_info(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(info.path, b.package);
        let main = info.main_module.clone().expect("a mod line");
        let mut checked = info.clone();
        if r.overlays.is_empty() {
            assert_eq!(
                (main.module.as_str(), main.version.as_str()),
                (r.module.as_str(), r.version.as_str()),
                "{}: built from the wrong module",
                b.name
            );
        } else {
            // Built from the patched copy, and the binary says so; the record
            // names each replaced file and the upstream hash it replaced.
            assert_eq!(
                (main.module.as_str(), main.version.as_str(), main.hash),
                ("./upstream", "(devel)", None),
                "{}: overlaid, so built from ./upstream",
                b.name
            );
            assert_eq!(built.record.overlays.len(), r.overlays.len());
            checked.main_module = None;
        }
        assert!(!info.deps.is_empty(), "{}: no modules recorded", b.name);
        let problems = gosum::check_against_lock(&checked, &lock);
        assert!(problems.is_empty(), "{}: {problems:#?}", b.name);
        assert_eq!(
            info.settings.get("CGO_ENABLED").map(String::as_str),
            Some(if r.cgo { "1" } else { "0" })
        );
        assert_eq!(
            info.settings.get("-trimpath").map(String::as_str),
            Some("true")
        );
    }
}

fn go() -> PathBuf {
    std::env::var_os("BASALT_GO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("go"))
}

macro_rules! component_tests {
    ($($name:ident => $component:literal),* $(,)?) => {
        mod versions {
            $(#[test] fn $name() { super::check_versions($component) })*
        }
        mod build_info {
            $(#[test] fn $name() { super::check_build_info($component) })*
        }
    };
}

component_tests! {
    cilium => "cilium",
    cni_plugins => "cni-plugins",
    containerd => "containerd",
    distribution => "distribution",
    etcd => "etcd",
    kubernetes => "kubernetes",
    runc => "runc",
}

#[test]
fn every_component_folder_is_tested_here() {
    let names: Vec<String> = package::list(&packages_dir())
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        names,
        [
            "cilium",
            "cni-plugins",
            "containerd",
            "distribution",
            "etcd",
            "kubernetes",
            "runc"
        ]
    );
}

/// Two builds from empty Go build caches into empty package caches give the
/// same bytes as each other and as the shared cache's entry. runc (cgo, a
/// static libseccomp) and the CNI plugins (pure Go) stand for the rest:
/// the same flags build every component.
#[test]
fn two_cold_builds_are_byte_identical() {
    for name in ["runc", "cni-plugins"] {
        let reference = build(name);
        let mut records = Vec::new();
        for _ in 0..2 {
            let tmp = tempfile::tempdir().unwrap();
            let opts = BuildOptions {
                cache_dir: tmp.path().join("packages"),
                go_cache: Some(tmp.path().join("go-build")),
                progress: false,
            };
            let built = package::build(&recipe(name), &opts).unwrap_or_else(|e| panic!("{e}"));
            assert!(!built.cached);
            records.push(built.record);
        }
        assert_eq!(records[0], records[1], "{name}: two cold builds differ");
        assert_eq!(
            records[0], reference.record,
            "{name}: differs from the cached build"
        );
    }
}

#[test]
fn a_rebuild_is_a_cache_hit_in_well_under_a_second() {
    build("cni-plugins");
    let started = Instant::now();
    let again = build("cni-plugins");
    let took = started.elapsed();
    assert!(again.cached);
    assert!(took < Duration::from_millis(500), "cache hit took {took:?}");
}

/// A cache of its own under `dir` (Go's build cache stays shared).
fn private_cache(dir: &Path) -> BuildOptions {
    BuildOptions {
        cache_dir: dir.join("cache"),
        go_cache: None,
        progress: false,
    }
}

/// What a cache holds besides its lock files.
fn cache_entries(opts: &BuildOptions) -> Vec<String> {
    std::fs::read_dir(&opts.cache_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect()
}

fn copy_component(name: &str, to: &Path) -> PathBuf {
    let dir = to.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["go.mod", "go.sum", "package.toml"] {
        std::fs::copy(packages_dir().join(name).join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn a_tampered_lock_fails_with_gos_checksum_error_and_caches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_component("cni-plugins", tmp.path());
    let sum = std::fs::read_to_string(dir.join("go.sum")).unwrap();
    // Flip one character of the hash of a module the plugins compile in.
    let target = "github.com/containernetworking/cni v";
    let line = sum
        .lines()
        .find(|l| l.starts_with(target) && !l.contains("/go.mod"))
        .unwrap();
    let (head, hash) = line.rsplit_once(" h1:").unwrap();
    let flipped: String = hash
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 3 {
                if c == 'A' { 'B' } else { 'A' }
            } else {
                c
            }
        })
        .collect();
    std::fs::write(
        dir.join("go.sum"),
        sum.replace(line, &format!("{head} h1:{flipped}")),
    )
    .unwrap();
    let opts = private_cache(tmp.path());
    let e = package::build(&Recipe::load(&dir).unwrap(), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(e.contains("github.com/containernetworking/cni"), "{e}");
    assert!(e.contains("Restore go.sum"), "{e}");
    let left = cache_entries(&opts);
    assert!(left.is_empty(), "a failed build left {left:?}");
}

#[test]
fn recipe_and_go_mod_must_name_the_same_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_component("runc", tmp.path());
    let text = std::fs::read_to_string(dir.join("package.toml")).unwrap();
    std::fs::write(
        dir.join("package.toml"),
        text.replace("version = \"v1.5.2\"", "version = \"v1.5.1\""),
    )
    .unwrap();
    let e = package::build(&Recipe::load(&dir).unwrap(), &shared())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "package.toml says github.com/opencontainers/runc v1.5.1 but go.mod requires v1.5.2"
        ),
        "{e}"
    );
}

/// A copy of cni-plugins whose recipe replaces the file that formats the
/// plugins' version line, pinned to `upstream_sha256`.
fn cni_plugins_with_overlay(to: &Path, upstream_sha256: &str) -> PathBuf {
    let dir = copy_component("cni-plugins", to);
    let file = "pkg/utils/buildversion/buildversion.go";
    std::fs::create_dir_all(dir.join("overlays")).unwrap();
    std::fs::write(
        dir.join("overlays/buildversion.go"),
        "package buildversion\n\nimport \"fmt\"\n\nvar BuildVersion = \"version unknown\"\n\n\
         func BuildString(pluginName string) string {\n\
         \treturn fmt.Sprintf(\"CNI %s plugin %s, overlaid\", pluginName, BuildVersion)\n}\n",
    )
    .unwrap();
    let mut recipe = std::fs::read_to_string(dir.join("package.toml")).unwrap();
    // Array tables go after the recipe's last table.
    recipe.push_str(&format!(
        "\n[[overlays]]\nfile = \"{file}\"\nupstream_sha256 = \"{upstream_sha256}\"\n\
         replacement = \"overlays/buildversion.go\"\n"
    ));
    std::fs::write(dir.join("package.toml"), recipe).unwrap();
    dir
}

fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// The pinned module's copy of a file, from Go's module cache.
fn upstream_file(component: &str, file: &str) -> PathBuf {
    let r = recipe(component);
    let out = Command::new(go())
        .current_dir(&r.dir)
        .args(["mod", "download", "-json", &r.module])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(v["Dir"].as_str().unwrap()).join(file)
}

#[test]
fn an_overlay_replaces_an_upstream_file_in_the_binaries_and_the_record_says_so() {
    let file = "pkg/utils/buildversion/buildversion.go";
    let upstream = sha256_file(&upstream_file("cni-plugins", file));
    let tmp = tempfile::tempdir().unwrap();
    let dir = cni_plugins_with_overlay(tmp.path(), &upstream);
    let opts = private_cache(tmp.path());
    let built =
        package::build(&Recipe::load(&dir).unwrap(), &opts).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(built.binary("loopback").unwrap())
        .env_remove("CNI_COMMAND")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("CNI loopback plugin v1.9.1, overlaid"),
        "{text}"
    );
    assert_eq!(built.record.overlays.len(), 1);
    assert_eq!(built.record.overlays[0].file, file);
    assert_eq!(built.record.overlays[0].upstream_sha256, upstream);
    assert_eq!(
        built.record.overlays[0].sha256,
        sha256_file(&dir.join("overlays/buildversion.go"))
    );
    // The replacement is part of the cache key: a changed one rebuilds.
    let again = package::build(&Recipe::load(&dir).unwrap(), &opts).unwrap();
    assert!(again.cached);
    std::fs::write(
        dir.join("overlays/buildversion.go"),
        std::fs::read_to_string(dir.join("overlays/buildversion.go"))
            .unwrap()
            .replace("overlaid", "overlaid twice"),
    )
    .unwrap();
    let changed = package::build(&Recipe::load(&dir).unwrap(), &opts).unwrap();
    assert!(!changed.cached);
    assert_ne!(changed.dir, built.dir);
}

#[test]
fn an_overlay_whose_upstream_file_changed_is_refused_and_caches_nothing() {
    let wrong = "0".repeat(64);
    let tmp = tempfile::tempdir().unwrap();
    let dir = cni_plugins_with_overlay(tmp.path(), &wrong);
    let opts = private_cache(tmp.path());
    let e = package::build(&Recipe::load(&dir).unwrap(), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("package.toml: overlays: upstream pkg/utils/buildversion/buildversion.go"),
        "{e}"
    );
    assert!(e.contains(&format!("the recipe pins {wrong}")), "{e}");
    assert!(
        e.contains("port the replacement overlays/buildversion.go"),
        "{e}"
    );
    let left = cache_entries(&opts);
    assert!(left.is_empty(), "a refused build left {left:?}");
}

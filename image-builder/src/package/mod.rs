//! Upstream Go components built from the pins in `packages/<name>/`.
//!
//! Each component folder holds a wrapper `go.mod` + `go.sum` (the lock: Go's
//! checksum database verifies every module against it) and a
//! [`recipe::Recipe`]. [`build`] turns that into binaries in a cache keyed by
//! the Go toolchain, the lock and the recipe, so the second build of the same
//! inputs is a lookup. Builds are reproducible: `-trimpath`, no VCS stamping,
//! an empty build id, fixed version stamps and `-mod=readonly`, so two cold
//! builds give the same bytes.

pub mod gosum;
pub mod install;
pub mod recipe;
mod toolchain;

pub use recipe::Recipe;
pub use toolchain::Toolchain;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Bumped whenever the way a component is built changes, so old cache entries
/// are not taken for new ones.
const BUILD_SCHEME: &str = "basalt-package-v1";
/// What a cache entry records about itself, next to `bin/`.
pub const RECORD_FILE: &str = "build.json";

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Recipe { path: PathBuf, message: String },
    #[error("{component}: {message}")]
    Pin { component: String, message: String },
    #[error("go toolchain: {0}")]
    Toolchain(String),
    #[error("{component}: go build of {package} failed ({status}):\n{output}")]
    GoBuild {
        component: String,
        package: String,
        status: String,
        output: String,
    },
    #[error("{component}: {message}")]
    Output { component: String, message: String },
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PackageError + 'a {
    move |source| PackageError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Where to build and how loudly.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Built components live here, one directory per cache key.
    pub cache_dir: PathBuf,
    /// Go's own build cache for this build (`GOCACHE`); `None` keeps the
    /// environment's. A test points it at an empty directory to force a
    /// cold build.
    pub go_cache: Option<PathBuf>,
    /// Show a spinner with what Go is compiling.
    pub progress: bool,
}

impl BuildOptions {
    /// `$BASALT_PACKAGE_CACHE`, else `$XDG_CACHE_HOME/basalt/packages`, else
    /// `~/.cache/basalt/packages`.
    pub fn default_cache_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("BASALT_PACKAGE_CACHE") {
            return PathBuf::from(dir);
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("basalt").join("packages")
    }
}

/// What a cache entry says it holds; also what goes into `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRecord {
    pub component: String,
    pub module: String,
    pub version: String,
    pub go_version: String,
    /// sha256 of `go.sum`.
    pub lock_sha256: String,
    /// The cache key: toolchain + go.mod + go.sum + recipe + build scheme.
    pub key: String,
    pub binaries: Vec<BuiltBinary>,
    /// Directories copied out of the module's sources (relative to the entry).
    #[serde(default)]
    pub trees: Vec<String>,
    /// Upstream files replaced at build time (the recipe's overlays).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<OverlaidFile>,
}

/// One upstream file the build replaced, as the record and manifest show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaidFile {
    /// Relative to the module's root.
    pub file: String,
    pub upstream_sha256: String,
    /// sha256 of the replacement that was compiled instead.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltBinary {
    pub name: String,
    pub package: String,
    pub sha256: String,
    pub size: u64,
}

/// A component ready to be taken into an image.
#[derive(Debug, Clone)]
pub struct Built {
    /// The cache entry: `bin/<name>` for each binary, plus any trees.
    pub dir: PathBuf,
    pub record: BuildRecord,
    /// True when nothing had to be compiled.
    pub cached: bool,
}

impl Built {
    pub fn binary(&self, name: &str) -> Option<PathBuf> {
        self.record
            .binaries
            .iter()
            .any(|b| b.name == name)
            .then(|| self.dir.join("bin").join(name))
    }
}

/// Build `recipe` (or find it in the cache).
pub fn build(recipe: &Recipe, opts: &BuildOptions) -> Result<Built, PackageError> {
    let go = Toolchain::detect(recipe.cgo)?;
    check_pin(recipe, &go)?;
    let key = cache_key(recipe, &go)?;
    let entry = entry_dir(&opts.cache_dir, &recipe.name, &recipe.version, &key);
    if let Some(hit) = cached(&entry, &key)? {
        return Ok(hit);
    }
    std::fs::create_dir_all(&opts.cache_dir).map_err(io_err("create", &opts.cache_dir))?;
    // Two builders of the same component (parallel tests, two terminals)
    // wait for each other instead of compiling twice.
    let lock_path = opts.cache_dir.join(format!("{}.lock", recipe.name));
    let lock = std::fs::File::create(&lock_path).map_err(io_err("create", &lock_path))?;
    lock.lock().map_err(io_err("lock", &lock_path))?;
    if let Some(hit) = cached(&entry, &key)? {
        return Ok(hit);
    }
    let staging = opts
        .cache_dir
        .join(format!(".staging-{}-{}", recipe.name, std::process::id()));
    remove_dir_if_present(&staging)?;
    let result = build_into(recipe, &go, &key, &staging, opts).and_then(|record| {
        remove_dir_if_present(&entry)?;
        std::fs::rename(&staging, &entry).map_err(io_err("rename into place", &entry))?;
        Ok(record)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        let _ = std::fs::remove_dir_all(work_dir(recipe, opts));
    }
    Ok(Built {
        dir: entry,
        record: result?,
        cached: false,
    })
}

/// The cache entry for `recipe` if it was built already, without building:
/// for tests and tools that run a component's binaries but must not start a
/// tens-of-minutes Go build themselves.
pub fn lookup(recipe: &Recipe, cache_dir: &Path) -> Result<Option<Built>, PackageError> {
    let go = Toolchain::detect(recipe.cgo)?;
    let key = cache_key(recipe, &go)?;
    cached(
        &entry_dir(cache_dir, &recipe.name, &recipe.version, &key),
        &key,
    )
}

/// The built binaries of component `name` under `packages_dir`, from the
/// default cache ([`BuildOptions::default_cache_dir`]); an error telling
/// how to build them when they are not there.
pub fn require_built(packages_dir: &Path, name: &str) -> Result<Built, PackageError> {
    let recipe = Recipe::load(&packages_dir.join(name))?;
    let cache_dir = BuildOptions::default_cache_dir();
    lookup(&recipe, &cache_dir)?.ok_or_else(|| PackageError::Output {
        component: name.to_owned(),
        message: format!(
            "not built for this toolchain and pin in {}: run `image-builder package {name}` \
             (or scripts/test, which builds every package)",
            cache_dir.display()
        ),
    })
}

/// The cache entry of one build: `<component>-<version>-<key prefix>`.
pub fn entry_dir(cache_dir: &Path, component: &str, version: &str, key: &str) -> PathBuf {
    cache_dir.join(format!(
        "{component}-{version}-{}",
        &key[..key.len().min(16)]
    ))
}

/// `go.mod` must require the recipe's module at the recipe's version: the
/// recipe's version is what the image manifest and `--version` claim.
fn check_pin(recipe: &Recipe, go: &Toolchain) -> Result<(), PackageError> {
    let out = go.run_in(&recipe.dir, &["mod", "edit", "-json"])?;
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct GoMod {
        require: Option<Vec<Require>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Require {
        path: String,
        version: String,
    }
    let parsed: GoMod = serde_json::from_str(&out).map_err(|e| PackageError::Pin {
        component: recipe.name.clone(),
        message: format!("go mod edit -json: {e}"),
    })?;
    let required = parsed
        .require
        .unwrap_or_default()
        .into_iter()
        .find(|r| r.path == recipe.module);
    match required {
        Some(r) if r.version == recipe.version => Ok(()),
        Some(r) => Err(PackageError::Pin {
            component: recipe.name.clone(),
            message: format!(
                "package.toml says {} {} but go.mod requires {}; change both together",
                recipe.module, recipe.version, r.version
            ),
        }),
        None => Err(PackageError::Pin {
            component: recipe.name.clone(),
            message: format!("go.mod does not require {}", recipe.module),
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PackageError> {
    std::fs::read(path).map_err(io_err("read", path))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn cache_key(recipe: &Recipe, go: &Toolchain) -> Result<String, PackageError> {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    field("scheme", BUILD_SCHEME.as_bytes());
    field("toolchain", go.identity().as_bytes());
    for file in ["go.mod", "go.sum", recipe::RECIPE_FILE] {
        field(file, &read(&recipe.dir.join(file))?);
    }
    for overlay in &recipe.overlays {
        field(
            &overlay.replacement,
            &read(&recipe.dir.join(&overlay.replacement))?,
        );
    }
    Ok(hex::encode(h.finalize()))
}

/// A complete cache entry for `key`, if there is one.
fn cached(entry: &Path, key: &str) -> Result<Option<Built>, PackageError> {
    let path = entry.join(RECORD_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    // An entry is renamed into place only once complete, so a record that
    // does not parse or does not match is stale; rebuild over it.
    let Ok(record) = serde_json::from_slice::<BuildRecord>(&text) else {
        return Ok(None);
    };
    let complete = record.key == key
        && record
            .binaries
            .iter()
            .all(|b| entry.join("bin").join(&b.name).is_file());
    Ok(complete.then(|| Built {
        dir: entry.to_owned(),
        record,
        cached: true,
    }))
}

fn remove_dir_if_present(dir: &Path) -> Result<(), PackageError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("remove", dir)(e)),
        _ => Ok(()),
    }
}

fn build_into(
    recipe: &Recipe,
    go: &Toolchain,
    key: &str,
    staging: &Path,
    opts: &BuildOptions,
) -> Result<BuildRecord, PackageError> {
    let bin = staging.join("bin");
    std::fs::create_dir_all(&bin).map_err(io_err("create", &bin))?;
    let source = source_tree(recipe, go, opts)?;
    let bar = progress_bar(opts.progress);
    let started = Instant::now();
    let mut binaries = Vec::new();
    for b in &recipe.binaries {
        let out = bin.join(&b.name);
        bar.set_prefix(format!("{} {}: {}", recipe.name, recipe.version, b.name));
        go_build(recipe, go, b, &out, source.dir(recipe), opts, &bar)?;
        let bytes = read(&out)?;
        binaries.push(BuiltBinary {
            name: b.name.clone(),
            package: b.package.clone(),
            sha256: sha256_hex(&bytes),
            size: bytes.len() as u64,
        });
    }
    // Trees come from the same sources as the binaries: with overlays, the
    // patched copy (as the Nix build has it).
    let trees = copy_trees(recipe, go, source.work.as_deref(), staging)?;
    if let Some(work) = &source.work {
        remove_dir_if_present(work)?;
    }
    bar.finish_and_clear();
    tracing::info!(
        component = %recipe.name,
        version = %recipe.version,
        seconds = started.elapsed().as_secs(),
        "built"
    );
    let record = BuildRecord {
        component: recipe.name.clone(),
        module: recipe.module.clone(),
        version: recipe.version.clone(),
        go_version: go.version.clone(),
        lock_sha256: sha256_hex(&read(&recipe.dir.join("go.sum"))?),
        key: key.to_owned(),
        binaries,
        trees,
        overlays: source.overlays,
    };
    let path = staging.join(RECORD_FILE);
    let json = serde_json::to_vec_pretty(&record).map_err(|e| PackageError::Output {
        component: recipe.name.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&path, json).map_err(io_err("write", &path))?;
    Ok(record)
}

fn progress_bar(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The `-ldflags` value: no symbols or DWARF, an empty build id (Go's build
/// id hashes action ids, which would be stable, but empty is simpler to
/// reason about), and the recipe's version stamps.
fn ldflags(recipe: &Recipe) -> String {
    let mut flags = vec!["-s".to_owned(), "-w".to_owned(), "-buildid=".to_owned()];
    for (var, value) in &recipe.ldflags {
        flags.push(format!("-X={var}={value}"));
    }
    if recipe.cgo && recipe.static_link {
        flags.push("-linkmode=external".into());
        flags.push("-extldflags=-static".into());
    }
    flags.join(" ")
}

fn go_build(
    recipe: &Recipe,
    go: &Toolchain,
    binary: &recipe::Binary,
    out: &Path,
    dir: &Path,
    opts: &BuildOptions,
    bar: &ProgressBar,
) -> Result<(), PackageError> {
    let package = binary.package.as_str();
    let mut cmd = go.command();
    cmd.current_dir(dir)
        .env("CGO_ENABLED", if recipe.cgo { "1" } else { "0" })
        .args(["build", "-v", "-ldflags", &ldflags(recipe)]);
    let tags: Vec<&str> = recipe
        .tags
        .iter()
        .chain(&binary.tags)
        .map(String::as_str)
        .collect();
    if !tags.is_empty() {
        cmd.arg(format!("-tags={}", tags.join(",")));
    }
    if let Some(cache) = &opts.go_cache {
        cmd.env("GOCACHE", cache);
    }
    cmd.arg("-o").arg(out).arg(package);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| PackageError::Toolchain(format!("run go: {e}")))?;
    // `go build -v` names each package as it compiles it; anything else Go
    // prints (errors, checksum mismatches) is kept for the error message.
    let mut compiled = 0usize;
    let mut messages = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if is_package_line(&line) {
                compiled += 1;
                bar.set_message(format!("{compiled} packages compiled, now {line}"));
            } else {
                messages.push(line);
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| PackageError::Toolchain(format!("wait for go: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let mut output = messages.join("\n");
    if output.contains("checksum mismatch") {
        output.insert_str(
            0,
            "the lock (go.sum) and the module's bytes disagree: go.sum was edited or the module was \
             tampered with. Restore go.sum from version control; run `go mod tidy` only for an \
             intended version change.\n",
        );
    }
    Err(PackageError::GoBuild {
        component: recipe.name.clone(),
        package: package.to_owned(),
        status: status.to_string(),
        output,
    })
}

/// An import path alone on its line, as `go build -v` prints them.
fn is_package_line(line: &str) -> bool {
    !line.is_empty() && !line.contains(char::is_whitespace) && !line.contains(':')
}

/// Where Go keeps the recipe's module sources (the read-only module cache),
/// downloaded and checked against `go.sum` first if need be (`go list -m`
/// alone reports no directory for a module not yet downloaded).
fn module_dir(recipe: &Recipe, go: &Toolchain) -> Result<PathBuf, PackageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Download {
        dir: Option<PathBuf>,
        error: Option<String>,
    }
    let out = go.run_in(&recipe.dir, &["mod", "download", "-json", &recipe.module])?;
    let parsed: Download = serde_json::from_str(&out).map_err(|e| PackageError::Pin {
        component: recipe.name.clone(),
        message: format!("go mod download -json: {e}"),
    })?;
    match parsed {
        Download { dir: Some(dir), .. } => Ok(dir),
        Download { error, .. } => Err(PackageError::Pin {
            component: recipe.name.clone(),
            message: format!(
                "go mod download {}: {}",
                recipe.module,
                error.unwrap_or_else(|| "no source directory".into())
            ),
        }),
    }
}

/// The directory `go build` runs in. Without overlays, the component
/// folder. With them, a work copy: the wrapper's `go.mod`/`go.sum` plus the
/// upstream module copied to `./upstream` with the overlaid files replaced
/// (each upstream file checked against its pinned hash first), and a
/// `replace` to it. Go cannot overlay files in its module cache, and the
/// relative path keeps the build info the same wherever the copy lives.
/// Every other module still comes from the module cache, checked by go.sum.
struct SourceTree {
    overlays: Vec<OverlaidFile>,
    /// The work copy, removed when the build is done; `None` without overlays.
    work: Option<PathBuf>,
}

impl SourceTree {
    fn dir<'a>(&'a self, recipe: &'a Recipe) -> &'a Path {
        self.work.as_deref().unwrap_or(&recipe.dir)
    }
}

const UPSTREAM_COPY: &str = "upstream";

fn work_dir(recipe: &Recipe, opts: &BuildOptions) -> PathBuf {
    opts.cache_dir.join(format!(".src-{}", recipe.name))
}

fn source_tree(
    recipe: &Recipe,
    go: &Toolchain,
    opts: &BuildOptions,
) -> Result<SourceTree, PackageError> {
    if recipe.overlays.is_empty() {
        return Ok(SourceTree {
            overlays: Vec::new(),
            work: None,
        });
    }
    // One fixed place per component (the caller holds its lock), so Go's
    // build cache recognises the copy's packages from the last build.
    let work = work_dir(recipe, opts);
    remove_dir_if_present(&work)?;
    std::fs::create_dir_all(&work).map_err(io_err("create", &work))?;
    for file in ["go.mod", "go.sum"] {
        let (from, to) = (recipe.dir.join(file), work.join(file));
        std::fs::copy(&from, &to).map_err(io_err("copy", &from))?;
    }
    let upstream = work.join(UPSTREAM_COPY);
    copy_dir(&module_dir(recipe, go)?, &upstream)?;
    let mut overlays = Vec::new();
    for overlay in &recipe.overlays {
        let target = upstream.join(&overlay.file);
        let found = sha256_hex(&read(&target)?);
        if found != overlay.upstream_sha256 {
            return Err(PackageError::Recipe {
                path: recipe.dir.join(recipe::RECIPE_FILE),
                message: format!(
                    "overlays: upstream {} of {} {} has sha256 {found}, the recipe pins {}: \
                     upstream changed the file; port the replacement {} to the new text, \
                     then pin the new hash",
                    overlay.file,
                    recipe.module,
                    recipe.version,
                    overlay.upstream_sha256,
                    overlay.replacement
                ),
            });
        }
        let with = recipe.dir.join(&overlay.replacement);
        let bytes = read(&with)?;
        std::fs::write(&target, &bytes).map_err(io_err("write", &target))?;
        overlays.push(OverlaidFile {
            file: overlay.file.clone(),
            upstream_sha256: found,
            sha256: sha256_hex(&bytes),
        });
    }
    go.run_in(
        &work,
        &[
            "mod",
            "edit",
            &format!("-replace={}=./{UPSTREAM_COPY}", recipe.module),
        ],
    )?;
    Ok(SourceTree {
        overlays,
        work: Some(work),
    })
}

/// Copy each recipe tree out of the module's (read-only) source directory,
/// with normalised permissions.
fn copy_trees(
    recipe: &Recipe,
    go: &Toolchain,
    work: Option<&Path>,
    staging: &Path,
) -> Result<Vec<String>, PackageError> {
    if recipe.trees.is_empty() {
        return Ok(Vec::new());
    }
    let module_dir = match work {
        Some(work) => work.join(UPSTREAM_COPY),
        None => module_dir(recipe, go)?,
    };
    let mut done = Vec::new();
    for tree in &recipe.trees {
        let from = module_dir.join(&tree.from);
        let to = staging.join(&tree.to);
        copy_dir(&from, &to)?;
        done.push(tree.to.clone());
    }
    Ok(done)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), PackageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).map_err(io_err("create", to))?;
    let entries = std::fs::read_dir(from).map_err(io_err("read directory", from))?;
    for entry in entries {
        let entry = entry.map_err(io_err("read directory", from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&src).map_err(io_err("stat", &src))?;
        if meta.is_dir() {
            copy_dir(&src, &dst)?;
        } else if meta.is_file() {
            std::fs::copy(&src, &dst).map_err(io_err("copy", &src))?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", &dst))?;
        }
    }
    Ok(())
}

/// Every component folder under `packages_dir` (those with a recipe).
pub fn list(packages_dir: &Path) -> Result<Vec<Recipe>, PackageError> {
    let mut recipes = Vec::new();
    let entries =
        std::fs::read_dir(packages_dir).map_err(io_err("read directory", packages_dir))?;
    for entry in entries {
        let dir = entry
            .map_err(io_err("read directory", packages_dir))?
            .path();
        if dir.join(recipe::RECIPE_FILE).is_file() {
            recipes.push(Recipe::load(&dir)?);
        }
    }
    recipes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(recipes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_lines_are_bare_import_paths() {
        assert!(is_package_line("k8s.io/kubernetes/pkg/kubelet"));
        assert!(is_package_line("runtime/cgo"));
        assert!(!is_package_line("go: downloading k8s.io/api v0.37.2"));
        assert!(!is_package_line(
            "verifying golang.org/x/sys@v0.1.0: checksum mismatch"
        ));
        assert!(!is_package_line(""));
    }
}

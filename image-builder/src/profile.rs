//! Image profiles: the TOML file that names everything that goes into an image.
//!
//! Parsing is strict (unknown keys are errors) and every error carries the
//! profile file, `line:column` and the TOML key path, so a typo points at itself.
//!
//! Path values may use `${VAR}` / `${VAR:-default}` (see [`crate::expand`]).
//! A relative path resolves against `base_dir`, which is itself relative to the
//! profile file's directory (default: that directory). The shipped profiles set
//! `base_dir = "../.."`, the repository root, so `target/release/machined`
//! means the workspace's target dir. The kernel image and binary sources may be
//! globs; the kernel must match exactly one file.
//!
//! ```toml
//! name = "debian"                 # recorded in the manifest and os-release
//! base_dir = "../.."              # optional, relative to this file
//!
//! [kernel]
//! image = "/boot/vmlinuz-*"       # exactly one match
//! modules_dir = "/lib/modules/…"  # optional: default /lib/modules/<release read from the image>
//! modules = ["ext4", "virtio_net"]  # plus dependencies; `-`/`_` alike; built-ins skipped
//!
//! [machined]
//! path = "${BASALT_MACHINED:-${CARGO_TARGET_DIR:-target}/release/machined}"   # → /init
//!
//! [[binaries]]                    # ELF executables, with interpreter and libraries
//! source = "/usr/lib/cni/*"       # a glob needs a target directory ending in `/`
//! target = "/opt/cni/bin/"        # optional: default = the source path
//! mode = 0o755                    # optional: default = the source's bits
//!
//! [[files]]                       # anything else, copied as is (same keys)
//! source = "motd"
//! target = "/etc/motd"
//!
//! [trust]                         # → /etc/basalt/trust.toml
//! admins = ["ssh-ed25519 AAAA… alice"]
//! admin_files = ["${BASALT_ADMIN_PUB}"]   # one key a line, `#` comments
//! readers = []
//! reader_files = []
//! threshold = 1                   # default 1; at most the number of admins
//!
//! [config]                        # optional baked config, checked against [trust]
//! path = "worker.toml"            # → /etc/basalt/config.toml
//! signature = "worker.toml.sig"   # default: path + ".sig"
//!
//! [nix]                           # optional: store paths under /nix/store
//! paths = ["/nix/store/<hash>-containerd-1.7.20"]
//! closure_file = "closure"        # optional: nix-store -qR output or exportReferencesGraph
//! store = "/nix/store"            # local store (default), or instead:
//! # substituter = "https://cache.nixos.org"
//! # trusted_public_keys = ["cache.nixos.org-1:…"]
//! # cache_dir = "…"               # default $XDG_CACHE_HOME/basalt/nix
//! # ca_certs = ["internal-ca.pem"]  # https substituter: extra trusted root CAs (PEM)
//!
//! [rootfs]
//! compression = "zstd"            # squashfs blocks: zstd | gzip
//!
//! [output]
//! artifacts = ["kernel", "initramfs"]   # also "rootfs" (root.squashfs on its own)
//! compression = "zstd"            # initramfs: zstd | gzip | none
//! ```

use crate::error::{Error, Result};
use crate::expand::expand;
use crate::lexical_path::normalize_lexically;
use basalt_api::sshkey::PublicKey;
use basalt_api::text_position::line_col;
use basalt_api::trust::{TrustRoots, TrustRootsError};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A loaded profile with every path expanded, resolved and checked to exist.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// The profile file itself.
    pub file: PathBuf,
    pub kernel: Kernel,
    /// Host path of the `machined` binary, installed as `/init`.
    pub machined: PathBuf,
    pub binaries: Vec<Install>,
    /// Upstream components built from `packages/` (see [`crate::package`]).
    pub packages: Vec<PackageRef>,
    pub files: Vec<Install>,
    pub trust: TrustRoots,
    pub config: Option<BakedConfig>,
    /// Nix store paths to put under `/nix/store` in the root image.
    pub nix: Option<NixSettings>,
    pub rootfs: RootfsSettings,
    pub output: OutputSettings,
}

/// Where Nix inputs come from. Binaries and files whose source is under
/// `/nix/store/` are taken from these inputs rather than from the host.
#[derive(Debug, Clone)]
pub struct NixSettings {
    /// Store paths as written (`/nix/store/<hash>-<name>`), validated.
    pub paths: Vec<String>,
    /// A closure file (`nix-store -qR` output or `exportReferencesGraph`).
    pub closure_file: Option<PathBuf>,
    pub source: NixSource,
}

#[derive(Debug, Clone)]
pub enum NixSource {
    /// A local store directory (physical path of `/nix/store`); the paths
    /// must list the whole closure (or come from a closure file).
    LocalStore(PathBuf),
    /// A binary cache (`file://`, `http(s)://`); closures are followed
    /// through the signed narinfos' references.
    BinaryCache {
        url: String,
        trusted_public_keys: Vec<String>,
        cache_dir: PathBuf,
        /// PEM files of root CAs trusted for an `https://` cache on top of
        /// the built-in ones (a private cache behind an internal CA).
        ca_certs: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone)]
pub struct Kernel {
    pub image: PathBuf,
    /// `None`: `/lib/modules/<version read from the kernel image>`.
    pub modules_dir: Option<PathBuf>,
    pub modules: Vec<String>,
}

/// Binaries of one component under `packages/`, built (or taken from the
/// cache) when the image is assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRef {
    pub recipe: crate::package::Recipe,
    /// Which of the recipe's binaries, in the recipe's order.
    pub binaries: Vec<String>,
    /// Directory inside the image the binaries go to (ends in `/`).
    pub target: PathBuf,
    /// Where in the profile this came from, for error messages.
    pub origin: String,
}

/// One host file to copy into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub source: PathBuf,
    /// Absolute path inside the image.
    pub target: PathBuf,
    /// `None`: the source's permission bits.
    pub mode: Option<u32>,
    /// Where in the profile this came from, for error messages.
    pub origin: String,
}

#[derive(Debug, Clone)]
pub struct BakedConfig {
    pub document: PathBuf,
    pub signature: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsCompression {
    Zstd,
    Gzip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootfsSettings {
    pub compression: RootfsCompression,
}

/// Compression of the initramfs output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

/// The files a build can produce besides `manifest.json`. New kinds (UKI,
/// disk, ISO) join this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Artifact {
    /// The kernel image, copied as `vmlinuz`.
    Kernel,
    /// `initramfs.cpio[.zst|.gz]`: `/init`, modules, trust, the root image.
    Initramfs,
    /// The root image on its own, `root.squashfs` (it is inside the initramfs too).
    Rootfs,
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Artifact::Kernel => "kernel",
            Artifact::Initramfs => "initramfs",
            Artifact::Rootfs => "rootfs",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSettings {
    /// Sorted, without duplicates.
    pub artifacts: Vec<Artifact>,
    pub compression: Compression,
}

/// How to load a profile: where environment variables come from, and
/// overrides that win over the file (the CLI's `--machined`).
pub struct LoadOptions<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub machined: Option<PathBuf>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            env: &process_env,
            machined: None,
        }
    }
}

/// Looks a variable up in this process's environment (non-UTF-8 counts as unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

// ---- the file format ------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    base_dir: Option<Spanned<String>>,
    kernel: RawKernel,
    machined: RawMachined,
    #[serde(default)]
    binaries: Vec<RawInstall>,
    /// Folder holding one directory per component; default `packages`
    /// under base_dir.
    packages_dir: Option<Spanned<String>>,
    #[serde(default)]
    packages: Vec<RawPackage>,
    #[serde(default)]
    files: Vec<RawInstall>,
    trust: RawTrust,
    config: Option<RawConfig>,
    nix: Option<RawNix>,
    #[serde(default)]
    rootfs: RawRootfs,
    #[serde(default)]
    output: RawOutput,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    image: Spanned<String>,
    modules_dir: Option<Spanned<String>>,
    #[serde(default)]
    modules: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachined {
    path: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstall {
    source: Spanned<String>,
    target: Option<Spanned<String>>,
    mode: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: Spanned<String>,
    binaries: Option<Vec<Spanned<String>>>,
    target: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    #[serde(default)]
    admins: Vec<Spanned<String>>,
    #[serde(default)]
    admin_files: Vec<Spanned<String>>,
    #[serde(default)]
    readers: Vec<Spanned<String>>,
    #[serde(default)]
    reader_files: Vec<Spanned<String>>,
    threshold: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    path: Spanned<String>,
    signature: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNix {
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    closure_file: Option<Spanned<String>>,
    store: Option<Spanned<String>>,
    substituter: Option<Spanned<String>>,
    #[serde(default)]
    trusted_public_keys: Vec<String>,
    cache_dir: Option<Spanned<String>>,
    #[serde(default)]
    ca_certs: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRootfs {
    compression: RootfsCompression,
}

impl Default for RawRootfs {
    fn default() -> Self {
        RawRootfs {
            compression: RootfsCompression::Zstd,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    #[serde(default = "default_artifacts")]
    artifacts: Vec<Artifact>,
    #[serde(default = "default_compression")]
    compression: Compression,
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            artifacts: default_artifacts(),
            compression: default_compression(),
        }
    }
}

fn default_artifacts() -> Vec<Artifact> {
    vec![Artifact::Kernel, Artifact::Initramfs]
}

fn default_compression() -> Compression {
    Compression::Zstd
}

// ---- loading ---------------------------------------------------------------

/// Reads, parses and resolves the profile at `file`.
pub fn load(file: &Path, options: &LoadOptions<'_>) -> Result<Profile> {
    let text = std::fs::read_to_string(file).map_err(Error::io("reading profile", file))?;
    parse(&text, file, options)
}

/// Parses and resolves profile `text`; `file` names it in errors and anchors
/// relative paths.
pub fn parse(text: &str, file: &Path, options: &LoadOptions<'_>) -> Result<Profile> {
    let ctx = Ctx {
        text,
        file,
        env: options.env,
        base: PathBuf::new(),
        from_nix: false,
    };
    let raw = deserialize(&ctx)?;
    let profile_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let profile_dir = if profile_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        profile_dir
    };
    let base = match &raw.base_dir {
        Some(b) => {
            let expanded = ctx.expand(b, "base_dir")?;
            normalize_lexically(&profile_dir.join(expanded))
        }
        None => profile_dir,
    };
    let ctx = Ctx { base, ..ctx };

    let kernel = resolve_kernel(&ctx, &raw.kernel)?;
    let machined = match &options.machined {
        Some(p) => {
            if !p.is_file() {
                return Err(Error::Profile(format!(
                    "machined override {}: no such file (build it with `cargo build --release -p machined`, or pass another --machined)",
                    p.display()
                )));
            }
            p.clone()
        }
        None => {
            let path = ctx.path(&raw.machined.path, "machined.path")?;
            if !path.is_file() {
                return Err(ctx.error_at(
                    raw.machined.path.span(),
                    "machined.path",
                    format!(
                        "{}: no such file; build machined first (`cargo build --release -p machined`), \
                         or point BASALT_MACHINED / --machined at a binary",
                        path.display()
                    ),
                ));
            }
            path
        }
    };
    let nix = match &raw.nix {
        Some(n) => Some(resolve_nix(&ctx, n)?),
        None => None,
    };
    let ctx = Ctx {
        from_nix: nix.is_some(),
        ..ctx
    };
    let binaries = resolve_installs(&ctx, &raw.binaries, "binaries")?;
    let packages = resolve_packages(&ctx, raw.packages_dir.as_ref(), &raw.packages)?;
    let files = resolve_installs(&ctx, &raw.files, "files")?;
    for f in &files {
        if !is_nix_path(&f.source) && f.source.is_dir() {
            return Err(Error::Profile(format!(
                "{}: {}: {} is a directory; list files one by one or use a glob",
                file.display(),
                f.origin,
                f.source.display()
            )));
        }
    }
    let trust = resolve_trust(&ctx, &raw.trust)?;
    let config = match &raw.config {
        Some(c) => Some(resolve_config(&ctx, c)?),
        None => None,
    };
    let mut artifacts = raw.output.artifacts.clone();
    artifacts.sort();
    artifacts.dedup();
    Ok(Profile {
        name: raw.name,
        file: file.to_path_buf(),
        kernel,
        machined,
        binaries,
        packages,
        files,
        trust,
        config,
        nix,
        rootfs: RootfsSettings {
            compression: raw.rootfs.compression,
        },
        output: OutputSettings {
            artifacts,
            compression: raw.output.compression,
        },
    })
}

/// What every resolution step needs to expand paths and point at the text.
struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    base: PathBuf,
    /// A `[nix]` section exists: sources under /nix/store come from it and
    /// need not exist on this host.
    from_nix: bool,
}

impl Ctx<'_> {
    fn error_at(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl fmt::Display,
    ) -> Error {
        let (line, col) = line_col(self.text, span.start);
        Error::Profile(format!(
            "{}:{line}:{col}: {key}: {message}",
            self.file.display()
        ))
    }

    fn expand(&self, value: &Spanned<String>, key: &str) -> Result<String> {
        expand(value.get_ref(), self.env).map_err(|m| self.error_at(value.span(), key, m))
    }

    /// Expands `value` and makes it absolute against the base dir.
    fn path(&self, value: &Spanned<String>, key: &str) -> Result<PathBuf> {
        let expanded = self.expand(value, key)?;
        if expanded.is_empty() {
            return Err(self.error_at(value.span(), key, "expected a path, found an empty string"));
        }
        Ok(self.base.join(expanded))
    }

    /// Expands a path that may be a glob; returns the sorted matches (or the
    /// path itself when it has no glob characters and exists).
    fn glob(&self, value: &Spanned<String>, key: &str) -> Result<Vec<PathBuf>> {
        let path = self.path(value, key)?;
        let text = path.to_string_lossy().into_owned();
        if self.from_nix && is_nix_path(&path) {
            if text.contains(['*', '?', '[']) {
                return Err(self.error_at(
                    value.span(),
                    key,
                    "globs are not supported for Nix store paths",
                ));
            }
            return Ok(vec![path]);
        }
        if !text.contains(['*', '?', '[']) {
            if std::fs::symlink_metadata(&path).is_err() {
                return Err(self.error_at(
                    value.span(),
                    key,
                    format!("{}: no such file", path.display()),
                ));
            }
            return Ok(vec![path]);
        }
        let paths = glob::glob(&text)
            .map_err(|e| self.error_at(value.span(), key, format!("bad glob `{text}`: {e}")))?;
        let mut out = Vec::new();
        for p in paths {
            out.push(p.map_err(|e| {
                self.error_at(value.span(), key, format!("while matching `{text}`: {e}"))
            })?);
        }
        out.sort();
        if out.is_empty() {
            return Err(self.error_at(value.span(), key, format!("`{text}` matches no file")));
        }
        Ok(out)
    }
}

fn deserialize(ctx: &Ctx<'_>) -> Result<RawProfile> {
    let de = toml::Deserializer::parse(ctx.text).map_err(|e| toml_error(ctx, None, &e))?;
    serde_path_to_error::deserialize::<_, RawProfile>(de).map_err(|e| {
        // Spanned<T> shows up in the path as an internal field; users never wrote it.
        let key = e.path().to_string();
        let key = key
            .split(".$__serde_spanned")
            .next()
            .unwrap_or(&key)
            .to_string();
        toml_error(ctx, Some(key), e.inner())
    })
}

fn toml_error(ctx: &Ctx<'_>, key: Option<String>, e: &toml::de::Error) -> Error {
    let (line, col) = e
        .span()
        .map(|s| line_col(ctx.text, s.start))
        .unwrap_or((1, 1));
    let key = match key.as_deref() {
        None | Some(".") | Some("") => String::new(),
        Some(k) => format!("{k}: "),
    };
    Error::Profile(format!(
        "{}:{line}:{col}: {key}{}",
        ctx.file.display(),
        e.message().trim_end()
    ))
}

fn resolve_kernel(ctx: &Ctx<'_>, raw: &RawKernel) -> Result<Kernel> {
    let matches = ctx.glob(&raw.image, "kernel.image")?;
    if matches.len() != 1 {
        let list: Vec<String> = matches.iter().map(|p| p.display().to_string()).collect();
        return Err(ctx.error_at(
            raw.image.span(),
            "kernel.image",
            format!(
                "expected exactly one kernel image, found {}: {}",
                list.len(),
                list.join(", ")
            ),
        ));
    }
    let image = matches.into_iter().next().unwrap_or_default();
    if !image.is_file() {
        return Err(ctx.error_at(
            raw.image.span(),
            "kernel.image",
            format!("{}: not a file", image.display()),
        ));
    }
    let modules_dir = match &raw.modules_dir {
        Some(d) => {
            let dirs = ctx.glob(d, "kernel.modules_dir")?;
            if dirs.len() != 1 || !dirs[0].is_dir() {
                return Err(ctx.error_at(
                    d.span(),
                    "kernel.modules_dir",
                    format!("expected exactly one directory, found {}", dirs.len()),
                ));
            }
            dirs.into_iter().next()
        }
        None => None,
    };
    let mut modules = Vec::new();
    for (i, m) in raw.modules.iter().enumerate() {
        let name = m.get_ref();
        if name.is_empty() || name.contains(['/', ' ']) || name.ends_with(".ko") {
            return Err(ctx.error_at(
                m.span(),
                &format!("kernel.modules[{i}]"),
                format!("expected a module name like `ext4` or `virtio_net`, found `{name}`"),
            ));
        }
        modules.push(name.clone());
    }
    Ok(Kernel {
        image,
        modules_dir,
        modules,
    })
}

fn resolve_installs(ctx: &Ctx<'_>, raw: &[RawInstall], table: &str) -> Result<Vec<Install>> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("{table}[{i}]");
        let sources = ctx.glob(&r.source, &format!("{key}.source"))?;
        let is_glob = r.source.get_ref().contains(['*', '?', '[']);
        let target = match &r.target {
            Some(t) => {
                let expanded = ctx.expand(t, &format!("{key}.target"))?;
                if !expanded.starts_with('/') {
                    return Err(ctx.error_at(
                        t.span(),
                        &format!("{key}.target"),
                        format!("expected an absolute path inside the image, found `{expanded}`"),
                    ));
                }
                Some((expanded, t.span()))
            }
            None => None,
        };
        let mode = match &r.mode {
            Some(m) if *m.get_ref() > 0o7777 => {
                return Err(ctx.error_at(
                    m.span(),
                    &format!("{key}.mode"),
                    format!(
                        "expected permission bits (at most 0o7777), found {:#o}",
                        m.get_ref()
                    ),
                ));
            }
            Some(m) => Some(*m.get_ref()),
            None => None,
        };
        for source in sources {
            let target = match &target {
                None => source.clone(),
                Some((t, _)) if t.ends_with('/') => {
                    let name = source.file_name().map(PathBuf::from).unwrap_or_default();
                    Path::new(t).join(name)
                }
                Some((t, span)) if is_glob => {
                    return Err(ctx.error_at(
                        span.clone(),
                        &format!("{key}.target"),
                        format!("source is a glob, so the target must be a directory ending in `/`, found `{t}`"),
                    ));
                }
                Some((t, _)) => PathBuf::from(t),
            };
            if !target.is_absolute() {
                return Err(ctx.error_at(
                    r.source.span(),
                    &format!("{key}.source"),
                    format!("without a target, the source must be absolute (it is also the image path): {}", target.display()),
                ));
            }
            let origin = format!("{}: {key} ({})", ctx.file.display(), source.display());
            out.push(Install {
                source,
                target,
                mode,
                origin,
            });
        }
    }
    Ok(out)
}

fn resolve_packages(
    ctx: &Ctx<'_>,
    dir: Option<&Spanned<String>>,
    raw: &[RawPackage],
) -> Result<Vec<PackageRef>> {
    let packages_dir = match dir {
        Some(d) => ctx.path(d, "packages_dir")?,
        None => ctx.base.join("packages"),
    };
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("packages[{i}]");
        let name = r.name.get_ref();
        let dir = packages_dir.join(name);
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(ctx.error_at(
                r.name.span(),
                &format!("{key}.name"),
                format!("`{name}` is not a component name (a folder under packages/)"),
            ));
        }
        if !dir.join(crate::package::recipe::RECIPE_FILE).is_file() {
            return Err(ctx.error_at(
                r.name.span(),
                &format!("{key}.name"),
                format!(
                    "no component `{name}`: {} has no {}",
                    dir.display(),
                    crate::package::recipe::RECIPE_FILE
                ),
            ));
        }
        let recipe = crate::package::Recipe::load(&dir)
            .map_err(|e| ctx.error_at(r.name.span(), &format!("{key}.name"), e.to_string()))?;
        let binaries = match &r.binaries {
            None => recipe.binaries.iter().map(|b| b.name.clone()).collect(),
            Some(names) => {
                let mut chosen = Vec::new();
                for n in names {
                    if !recipe.binaries.iter().any(|b| &b.name == n.get_ref()) {
                        let known: Vec<&str> =
                            recipe.binaries.iter().map(|b| b.name.as_str()).collect();
                        return Err(ctx.error_at(
                            n.span(),
                            &format!("{key}.binaries"),
                            format!(
                                "component `{name}` builds no `{}` (it builds: {})",
                                n.get_ref(),
                                known.join(", ")
                            ),
                        ));
                    }
                    chosen.push(n.get_ref().clone());
                }
                chosen
            }
        };
        let target = match &r.target {
            Some(t) => {
                let expanded = ctx.expand(t, &format!("{key}.target"))?;
                if !expanded.starts_with('/') || !expanded.ends_with('/') {
                    return Err(ctx.error_at(
                        t.span(),
                        &format!("{key}.target"),
                        format!("expected a directory inside the image, absolute and ending in `/`, found `{expanded}`"),
                    ));
                }
                PathBuf::from(expanded)
            }
            None => PathBuf::from("/usr/bin/"),
        };
        out.push(PackageRef {
            recipe,
            binaries,
            target,
            origin: format!("{}: {key} ({name})", ctx.file.display()),
        });
    }
    Ok(out)
}

fn resolve_trust(ctx: &Ctx<'_>, raw: &RawTrust) -> Result<TrustRoots> {
    let admins = collect_keys(
        ctx,
        &raw.admins,
        &raw.admin_files,
        "trust.admins",
        "trust.admin_files",
    )?;
    let readers = collect_keys(
        ctx,
        &raw.readers,
        &raw.reader_files,
        "trust.readers",
        "trust.reader_files",
    )?;
    let threshold = raw.threshold.as_ref().map_or(1, |t| *t.get_ref());
    let span = raw.threshold.as_ref().map_or(0..0, |t| t.span());
    TrustRoots::new(admins, readers, threshold as usize).map_err(|e| match e {
        TrustRootsError::NoAdmins => ctx.error_at(
            span,
            "trust",
            "expected at least one admin key (trust.admins or trust.admin_files): a node without one can never be configured",
        ),
        TrustRootsError::Threshold { threshold, admins } => ctx.error_at(
            span,
            "trust.threshold",
            format!(
                "expected a threshold between 1 and the {admins} admin key(s), found {threshold}"
            ),
        ),
        other => ctx.error_at(0..0, "trust", other.to_string()),
    })
}

/// Inline key lines plus the keys of each key file (one key a line, `#`
/// comments), each checked as an OpenSSH ed25519 public key and normalised.
fn collect_keys(
    ctx: &Ctx<'_>,
    inline: &[Spanned<String>],
    files: &[Spanned<String>],
    inline_key: &str,
    files_key: &str,
) -> Result<Vec<PublicKey>> {
    let mut keys = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, k) in inline.iter().enumerate() {
        let key = PublicKey::from_openssh(k.get_ref().trim()).map_err(|e| {
            ctx.error_at(
                k.span(),
                &format!("{inline_key}[{i}]"),
                format!("expected an OpenSSH ed25519 public key: {e}"),
            )
        })?;
        if seen.insert(key.blob()) {
            keys.push(key);
        }
    }
    for (i, f) in files.iter().enumerate() {
        let key_path = format!("{files_key}[{i}]");
        let path = ctx.path(f, &key_path)?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ctx.error_at(
                f.span(),
                &key_path,
                format!("reading {}: {e}", path.display()),
            )
        })?;
        let parsed = basalt_api::sshkey::parse_key_list(&text).map_err(|(line, e)| {
            ctx.error_at(
                f.span(),
                &key_path,
                format!(
                    "{}:{line}: expected an OpenSSH ed25519 public key: {e}",
                    path.display()
                ),
            )
        })?;
        if parsed.is_empty() {
            return Err(ctx.error_at(
                f.span(),
                &key_path,
                format!("{}: contains no key", path.display()),
            ));
        }
        for key in parsed {
            if seen.insert(key.blob()) {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

/// Whether `path` lies inside the Nix store (and so comes from `[nix]`).
pub fn is_nix_path(path: &Path) -> bool {
    path.starts_with(crate::nix::NIX_STORE_DIR)
}

fn resolve_nix(ctx: &Ctx<'_>, raw: &RawNix) -> Result<NixSettings> {
    let mut paths = Vec::new();
    for (i, p) in raw.paths.iter().enumerate() {
        let key = format!("nix.paths[{i}]");
        let expanded = ctx.expand(p, &key)?;
        crate::nix::parse_store_path(&expanded).map_err(|e| ctx.error_at(p.span(), &key, e))?;
        paths.push(expanded);
    }
    let closure_file = match &raw.closure_file {
        Some(c) => {
            let path = ctx.path(c, "nix.closure_file")?;
            if !path.is_file() {
                return Err(ctx.error_at(
                    c.span(),
                    "nix.closure_file",
                    format!("{}: no such file", path.display()),
                ));
            }
            Some(path)
        }
        None => None,
    };
    if paths.is_empty() && closure_file.is_none() {
        return Err(ctx.error_at(0..0, "nix", "expected `paths` or `closure_file`"));
    }
    let source = match (&raw.substituter, &raw.store) {
        (Some(s), None) => {
            let url = ctx.expand(s, "nix.substituter")?;
            if raw.trusted_public_keys.is_empty() {
                return Err(ctx.error_at(
                    s.span(),
                    "nix.trusted_public_keys",
                    "a substituter needs trusted_public_keys (e.g. `cache.nixos.org-1:…`); unsigned inputs are refused",
                ));
            }
            crate::nix::TrustedKeys::parse(&raw.trusted_public_keys)
                .map_err(|e| ctx.error_at(s.span(), "nix.trusted_public_keys", e))?;
            let cache_dir = match &raw.cache_dir {
                Some(d) => ctx.path(d, "nix.cache_dir")?,
                None => default_nix_cache_dir(ctx.env),
            };
            if let Some(first) = raw.ca_certs.first()
                && !url.starts_with("https://")
            {
                return Err(ctx.error_at(
                    first.span(),
                    "nix.ca_certs",
                    format!("only an https:// substituter uses CA certificates, not `{url}`"),
                ));
            }
            let mut ca_certs = Vec::new();
            for (i, c) in raw.ca_certs.iter().enumerate() {
                let key = format!("nix.ca_certs[{i}]");
                let path = ctx.path(c, &key)?;
                if !path.is_file() {
                    return Err(ctx.error_at(
                        c.span(),
                        &key,
                        format!("{}: no such file", path.display()),
                    ));
                }
                crate::nix::read_root_certificates(&path)
                    .map_err(|e| ctx.error_at(c.span(), &key, e))?;
                ca_certs.push(path);
            }
            NixSource::BinaryCache {
                url,
                trusted_public_keys: raw.trusted_public_keys.clone(),
                cache_dir,
                ca_certs,
            }
        }
        (None, _) if !raw.ca_certs.is_empty() => {
            return Err(ctx.error_at(
                raw.ca_certs[0].span(),
                "nix.ca_certs",
                "CA certificates are for an https:// `substituter`; a local store needs none",
            ));
        }
        (None, Some(store)) => NixSource::LocalStore(ctx.path(store, "nix.store")?),
        (None, None) => NixSource::LocalStore(PathBuf::from(crate::nix::NIX_STORE_DIR)),
        (Some(s), Some(_)) => {
            return Err(ctx.error_at(
                s.span(),
                "nix.substituter",
                "give either `store` or `substituter`, not both",
            ));
        }
    };
    Ok(NixSettings {
        paths,
        closure_file,
        source,
    })
}

/// `$XDG_CACHE_HOME/basalt/nix`, else `$HOME/.cache/basalt/nix`.
fn default_nix_cache_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let base = env("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("basalt").join("nix")
}

fn resolve_config(ctx: &Ctx<'_>, raw: &RawConfig) -> Result<BakedConfig> {
    let document = ctx.path(&raw.path, "config.path")?;
    if !document.is_file() {
        return Err(ctx.error_at(
            raw.path.span(),
            "config.path",
            format!("{}: no such file", document.display()),
        ));
    }
    let (signature, span, key) = match &raw.signature {
        Some(s) => (
            ctx.path(s, "config.signature")?,
            s.span(),
            "config.signature",
        ),
        None => {
            let mut p = document.clone().into_os_string();
            p.push(".sig");
            (PathBuf::from(p), raw.path.span(), "config.path")
        }
    };
    if !signature.is_file() {
        return Err(ctx.error_at(
            span,
            key,
            format!("signature {}: no such file (sign the config with `basaltctl` or `ssh-keygen -Y sign -n basalt-config`)", signature.display()),
        ));
    }
    Ok(BakedConfig {
        document,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIX_PATH: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-1.0";
    const NIX_KEY: &str = "cache.example-1:I9QwGBR2Vv54wNdXymTVd+/+rPC1JZc5K/feyR1oYvg=";

    /// A minimal valid profile in `dir` whose `[nix]` section ends with `nix`; returns the text
    /// (for line numbers) and the parse result.
    fn with_nix(dir: &Path, nix: &str) -> (String, Result<Profile>) {
        std::fs::write(dir.join("vmlinuz"), b"not really a kernel").unwrap();
        std::fs::write(dir.join("machined"), b"").unwrap();
        let admin = basalt_api::sshkey::PrivateKey::from_seed(&[7; 32], "t")
            .public()
            .to_openssh();
        let text = format!(
            "name = \"t\"\n\n[kernel]\nimage = \"vmlinuz\"\n\n[machined]\npath = \"machined\"\n\n\
             [trust]\nadmins = [\"{admin}\"]\n\n[nix]\npaths = [\"{NIX_PATH}\"]\n{nix}"
        );
        let env = |_: &str| None::<String>;
        let options = LoadOptions {
            env: &env,
            machined: None,
        };
        let parsed = parse(&text, &dir.join("p.toml"), &options);
        (text, parsed)
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn nix_ca_certs_resolve_against_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_pem()).unwrap();
        let (_, parsed) = with_nix(
            dir.path(),
            &format!(
                "substituter = \"https://cache.internal\"\ntrusted_public_keys = [\"{NIX_KEY}\"]\n\
                 cache_dir = \"cache\"\nca_certs = [\"ca.pem\"]\n"
            ),
        );
        let nix = parsed.unwrap().nix.unwrap();
        match nix.source {
            NixSource::BinaryCache { url, ca_certs, .. } => {
                assert_eq!(url, "https://cache.internal");
                assert_eq!(ca_certs, vec![dir.path().join("ca.pem")]);
            }
            other => panic!("{other:?}"),
        }

        // Without the key the list is empty, not an error.
        let (_, parsed) = with_nix(
            dir.path(),
            &format!(
                "substituter = \"https://cache.internal\"\ntrusted_public_keys = [\"{NIX_KEY}\"]\n"
            ),
        );
        match parsed.unwrap().nix.unwrap().source {
            NixSource::BinaryCache { ca_certs, .. } => assert!(ca_certs.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nix_ca_certs_are_strict() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_pem()).unwrap();
        std::fs::write(dir.path().join("junk.pem"), "this is no certificate\n").unwrap();
        std::fs::write(
            dir.path().join("bad-der.pem"),
            "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let https = format!(
            "substituter = \"https://cache.internal\"\ntrusted_public_keys = [\"{NIX_KEY}\"]\n"
        );
        let err = |nix: &str| {
            let (text, parsed) = with_nix(dir.path(), nix);
            let line = text.lines().position(|l| l.starts_with("ca_cert")).unwrap() + 1;
            (line, parsed.unwrap_err().to_string())
        };

        let (line, e) = err(&format!(
            "{https}ca_certs = [\"ca.pem\", \"missing.pem\"]\n"
        ));
        assert!(
            e.contains(&format!("p.toml:{line}:"))
                && e.contains("nix.ca_certs[1]")
                && e.contains("missing.pem: no such file"),
            "{e}"
        );

        let (line, e) = err(&format!("{https}ca_certs = [\"junk.pem\"]\n"));
        assert!(
            e.contains(&format!("p.toml:{line}:13: nix.ca_certs[0]"))
                && e.contains("junk.pem")
                && e.contains("no PEM `CERTIFICATE` block"),
            "{e}"
        );

        let (_, e) = err(&format!("{https}ca_certs = [\"bad-der.pem\"]\n"));
        assert!(
            e.contains("nix.ca_certs[0]")
                && e.contains("bad-der.pem")
                && e.contains("unusable certificate"),
            "{e}"
        );

        let (line, e) = err(&format!(
            "substituter = \"http://cache.internal\"\ntrusted_public_keys = [\"{NIX_KEY}\"]\n\
             ca_certs = [\"ca.pem\"]\n"
        ));
        assert!(
            e.contains(&format!("p.toml:{line}:13: nix.ca_certs"))
                && e.contains("only an https:// substituter"),
            "{e}"
        );

        let (_, e) = err("store = \"/nix/store\"\nca_certs = [\"ca.pem\"]\n");
        assert!(
            e.contains("nix.ca_certs") && e.contains("a local store needs none"),
            "{e}"
        );

        let (line, e) = err(&format!("{https}ca_cert = \"ca.pem\"\n"));
        assert!(
            e.contains(&format!(
                "p.toml:{line}:1: nix.ca_cert: unknown field `ca_cert`"
            )) && e.contains("ca_certs"),
            "{e}"
        );
    }
}

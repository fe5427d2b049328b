//! Phase two of loading a profile: a [`RawProfile`] into a [`Profile`].
//! Expands `${VAR}`s, makes paths absolute against `base_dir`, matches globs,
//! reads key files and component recipes and checks that every input exists,
//! pointing errors at the span of the value they came from.

use super::raw::{
    RawConfig, RawInstall, RawKernel, RawNix, RawOciImage, RawPackage, RawProfile, RawTrust,
};
use super::{
    BakedConfig, BootFiles, DEFAULT_CMDLINE, DEFAULT_STUB, DEFAULT_SYSTEMD_BOOT, DiskSettings,
    Install, Kernel, LoadOptions, NixSettings, NixSource, OutputSettings, PackageRef, Profile,
    RootfsSettings, is_nix_path,
};
use crate::error::{Error, Result};
use crate::expand::expand;
use crate::lexical_path::normalize_lexically;
use crate::oci::OciImage;
use basalt_api::sshkey::PublicKey;
use basalt_api::text_position::line_col;
use basalt_api::trust::{TrustRoots, TrustRootsError};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Turns a parsed profile into a [`Profile`]; `file` names it in errors and
/// anchors relative paths.
pub(super) fn resolve(
    raw: RawProfile,
    text: &str,
    file: &Path,
    options: &LoadOptions<'_>,
) -> Result<Profile> {
    let ctx = Ctx {
        text,
        file,
        env: options.env,
        base: PathBuf::new(),
        from_nix: false,
    };
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
    let machined = resolve_machined(&ctx, &raw, options)?;
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
    let oci_images = resolve_oci_images(&ctx, &raw.oci_images)?;
    let trust = resolve_trust(&ctx, &raw.trust)?;
    let config = match &raw.config {
        Some(c) => Some(resolve_config(&ctx, c)?),
        None => None,
    };
    let version = resolve_version(&ctx, raw.version.as_ref())?;
    let disk = resolve_disk(&ctx, &raw.disk)?;
    let boot = BootFiles {
        stub: match &raw.boot.stub {
            Some(p) => ctx.path(p, "boot.stub")?,
            None => PathBuf::from(DEFAULT_STUB),
        },
        systemd_boot: match &raw.boot.systemd_boot {
            Some(p) => ctx.path(p, "boot.systemd_boot")?,
            None => PathBuf::from(DEFAULT_SYSTEMD_BOOT),
        },
    };
    let mut artifacts = raw.output.artifacts.clone();
    artifacts.sort();
    artifacts.dedup();
    Ok(Profile {
        name: raw.name,
        version,
        file: file.to_path_buf(),
        kernel,
        machined,
        binaries,
        packages,
        files,
        oci_images,
        trust,
        min_generation: raw.trust.min_generation,
        config,
        nix,
        rootfs: RootfsSettings {
            compression: raw.rootfs.compression,
        },
        boot,
        disk,
        output: OutputSettings {
            artifacts,
            compression: raw.output.compression,
        },
    })
}

/// The machined binary for `/init`: the `--machined` / `BASALT_MACHINED`
/// override, else the profile's `machined.path`; it must exist.
fn resolve_machined(ctx: &Ctx<'_>, raw: &RawProfile, options: &LoadOptions<'_>) -> Result<PathBuf> {
    match &options.machined {
        Some(p) => {
            if !p.is_file() {
                return Err(Error::Profile(format!(
                    "machined override {}: no such file (build it with `cargo build --release -p machined`, or pass another --machined)",
                    p.display()
                )));
            }
            Ok(p.clone())
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
            Ok(path)
        }
    }
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
    let cmdline = match &raw.cmdline {
        Some(c) => {
            let text = ctx.expand(c, "kernel.cmdline")?;
            check_cmdline(&text).map_err(|m| ctx.error_at(c.span(), "kernel.cmdline", m))?;
            text
        }
        None => DEFAULT_CMDLINE.to_string(),
    };
    Ok(Kernel {
        image,
        modules_dir,
        modules,
        cmdline,
    })
}

/// One line of printable ASCII, without the root argument image-builder adds.
fn check_cmdline(text: &str) -> std::result::Result<(), String> {
    if !text.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return Err("expected one line of printable ASCII".into());
    }
    if text.contains(basalt_api::disk_layout::ROOT_ARG) {
        return Err(format!(
            "leave `{}` out: image-builder adds it for the disk's UKI",
            basalt_api::disk_layout::ROOT_ARG
        ));
    }
    Ok(())
}

/// `version`, or image-builder's own. It names the UKI file
/// (`basalt-<version>.efi`, where a `+` would read as a boot counter) and
/// goes unquoted into os-release, so only `[A-Za-z0-9._~-]`, starting with
/// an alphanumeric.
fn resolve_version(ctx: &Ctx<'_>, raw: Option<&Spanned<String>>) -> Result<String> {
    let Some(raw) = raw else {
        return Ok(env!("CARGO_PKG_VERSION").to_string());
    };
    let v = ctx.expand(raw, "version")?;
    let ok = v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'));
    if !ok {
        return Err(ctx.error_at(
            raw.span(),
            "version",
            format!(
                "`{v}`: expected up to 64 of [A-Za-z0-9._~-], starting with a letter or digit \
                 (it names the UKI file; `+` would read as a boot counter)"
            ),
        ));
    }
    Ok(v)
}

fn resolve_disk(ctx: &Ctx<'_>, raw: &super::raw::RawDisk) -> Result<DiskSettings> {
    use basalt_api::disk_layout::{DEFAULT_SLOT_SIZE, MIB};
    let Some(mib) = &raw.slot_size_mib else {
        return Ok(DiskSettings {
            slot_size: DEFAULT_SLOT_SIZE,
        });
    };
    // 1 TiB: far beyond any root image, and well inside GPT's arithmetic.
    if !(1..=1024 * 1024).contains(mib.get_ref()) {
        return Err(ctx.error_at(
            mib.span(),
            "disk.slot_size_mib",
            format!("{}: expected 1 to 1048576 (MiB)", mib.get_ref()),
        ));
    }
    Ok(DiskSettings {
        slot_size: mib.get_ref() * MIB,
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

fn resolve_oci_images(ctx: &Ctx<'_>, raw: &[RawOciImage]) -> Result<Vec<OciImage>> {
    let mut out: Vec<OciImage> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("oci_images[{i}]");
        let name = r.name.get_ref();
        crate::oci::check_reference(name)
            .map_err(|m| ctx.error_at(r.name.span(), &format!("{key}.name"), m))?;
        if let Some(first) = out
            .iter()
            .position(|o| crate::oci::file_name(&o.name) == crate::oci::file_name(name))
        {
            return Err(ctx.error_at(
                r.name.span(),
                &format!("{key}.name"),
                format!(
                    "`{name}` would be archived as {}, like oci_images[{first}]",
                    crate::oci::file_name(name)
                ),
            ));
        }
        let binary = ctx.path(&r.binary, &format!("{key}.binary"))?;
        if !binary.is_file() {
            return Err(ctx.error_at(
                r.binary.span(),
                &format!("{key}.binary"),
                format!(
                    "{}: no such file; build it static first \
                     (scripts/test does: `CARGO_ENCODED_RUSTFLAGS=-Ctarget-feature=+crt-static \
                     cargo build --release --target x86_64-unknown-linux-gnu -p <crate>`)",
                    binary.display()
                ),
            ));
        }
        let path = match &r.path {
            Some(p) => {
                let text = p.get_ref();
                let ok = text.starts_with('/')
                    && text.len() > 1
                    && !text.ends_with('/')
                    && !text.split('/').any(|c| c == "." || c == "..");
                if !ok {
                    return Err(ctx.error_at(
                        p.span(),
                        &format!("{key}.path"),
                        format!("expected an absolute file path inside the image, found `{text}`"),
                    ));
                }
                text.clone()
            }
            None => format!(
                "/{}",
                binary
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
        };
        let entrypoint = match &r.entrypoint {
            Some(e) if e.get_ref().is_empty() => {
                return Err(ctx.error_at(
                    e.span(),
                    &format!("{key}.entrypoint"),
                    "expected at least the program",
                ));
            }
            Some(e) => e.get_ref().clone(),
            None => vec![path.clone()],
        };
        out.push(OciImage {
            name: name.clone(),
            binary: binary.clone(),
            path,
            entrypoint,
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

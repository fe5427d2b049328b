//! The node images the tests boot: a profile from `configs/images/` built with
//! a deterministic test admin key, cached under the target dir and reused
//! while its inputs (machined, the profile, the package pins, this harness)
//! are unchanged. `debian` is the minimal image most stories boot; `node` is
//! the full Kubernetes node.

use anyhow::{Context, Result, bail};
use image_builder::assemble::{self, BuildOptions};
use image_builder::profile::{self, LoadOptions};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub struct Image {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

impl Image {
    /// `disk.raw`, in a build that asked for it ([`debian_media`]).
    pub fn disk(&self) -> PathBuf {
        self.dir.join(image_builder::media::DISK_NAME)
    }

    /// `basalt.iso`, in a build that asked for it ([`debian_media`]).
    pub fn iso(&self) -> PathBuf {
        self.dir.join(image_builder::media::ISO_NAME)
    }
}

/// Which outputs a test image is built with: most stories boot the kernel
/// and initramfs directly and need nothing else (a disk and an ISO add
/// seconds and hundreds of MB to every build), so only [`debian_media`]
/// builds the profile's whole list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outputs {
    KernelInitramfs,
    Profile,
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// machined for /init: `BASALT_MACHINED`, else the release build.
pub fn machined() -> Result<PathBuf> {
    let p = std::env::var_os("BASALT_MACHINED")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/machined"));
    if !p.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p machined` first (scripts/test does)",
            p.display()
        );
    }
    Ok(p)
}

fn file_hash(h: &mut Sha256, p: &Path) -> Result<()> {
    h.update(p.as_os_str().as_encoded_bytes());
    h.update(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?);
    Ok(())
}

/// A signed config to bake into an image (image-builder's `[config]`).
pub struct Baked<'a> {
    pub config: &'a str,
    pub signature: &'a str,
}

/// The Debian image with `baked` as its config: built once per test
/// process (and once per input set across runs).
pub fn debian_with_config(baked: &Baked<'_>) -> Result<&'static Image> {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(img) = IMAGE.get() {
        return Ok(img);
    }
    let img = build("debian", Some(baked), Outputs::KernelInitramfs)?;
    Ok(IMAGE.get_or_init(|| img))
}

/// The minimal image with every output its profile lists: `uki.efi`,
/// `disk.raw` and `basalt.iso` besides the kernel and initramfs.
pub fn debian_media() -> Result<&'static Image> {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(img) = IMAGE.get() {
        return Ok(img);
    }
    let img = build("debian", None, Outputs::Profile)?;
    for f in [img.disk(), img.iso()] {
        if !f.exists() {
            bail!(
                "{} is missing: configs/images/debian.toml must list the disk and iso artifacts",
                f.display()
            );
        }
    }
    Ok(IMAGE.get_or_init(|| img))
}

/// The minimal image: `configs/images/debian.toml`.
pub fn debian() -> Result<&'static Image> {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    build_once("debian", &IMAGE)
}

/// The full Kubernetes node: `configs/images/node.toml`.
pub fn node() -> Result<&'static Image> {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    build_once("node", &IMAGE)
}

/// Every pin in `packages/`: a changed lock or recipe is a changed image.
fn packages_hash(h: &mut Sha256) -> Result<()> {
    let dir = workspace().join("packages");
    let mut components: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    components.sort();
    for c in components {
        for f in ["go.mod", "go.sum", "package.toml"] {
            let p = c.join(f);
            if p.exists() {
                file_hash(h, &p)?;
            }
        }
    }
    Ok(())
}

/// Build once per test process (and once per input set across runs), or
/// use `BASALT_IMAGE_DIR` when set.
fn build_once(profile_name: &str, image: &'static OnceLock<Image>) -> Result<&'static Image> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(img) = image.get() {
        return Ok(img);
    }
    // A prebuilt image (e.g. `nix build .#node-image`, for the flake's
    // qemu-boot check); it must trust the harness's admin key.
    if let Some(dir) = std::env::var_os("BASALT_IMAGE_DIR").map(PathBuf::from) {
        let img = Image {
            kernel: dir.join("vmlinuz"),
            initramfs: dir.join("initramfs.cpio.zst"),
            dir,
        };
        for f in [&img.kernel, &img.initramfs] {
            if !f.exists() {
                bail!("BASALT_IMAGE_DIR: {} is missing", f.display());
            }
        }
        return Ok(image.get_or_init(|| img));
    }
    let img = build(profile_name, None, Outputs::KernelInitramfs)?;
    Ok(image.get_or_init(|| img))
}

/// The minimal image with every output, built as image version `version`
/// (`BASALT_IMAGE_VERSION`): an upgrade to carry to a node, or a node to
/// carry one to. Cached on disk like the others.
pub fn debian_media_version(version: &str) -> Result<Image> {
    build_versioned("debian", None, Outputs::Profile, Some(version))
}

fn build(profile_name: &str, baked: Option<&Baked<'_>>, outputs: Outputs) -> Result<Image> {
    build_versioned(profile_name, baked, outputs, None)
}

fn build_versioned(
    profile_name: &str,
    baked: Option<&Baked<'_>>,
    outputs: Outputs,
    version: Option<&str>,
) -> Result<Image> {
    let profile_path = workspace().join(format!("configs/images/{profile_name}.toml"));
    let machined = machined()?;
    let admin = crate::admin_key().public().to_openssh();
    // The profile is loaded first: its OCI images' binaries (built by
    // cargo, not pinned in packages/) are inputs of the image too.
    // Tests of one binary build their images in parallel threads: one
    // build at a time, and the key file replaced whole (never truncated
    // under a reader in another process).
    static BUILD: Mutex<()> = Mutex::new(());
    let _build = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let keys = target_dir().join("qemu-images").join("harness-admin.pub");
    std::fs::create_dir_all(keys.parent().unwrap_or(Path::new(".")))?;
    let partial = keys.with_extension(format!("pub.{}", std::process::id()));
    std::fs::write(&partial, format!("{admin}\n"))
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &keys)
        .with_context(|| format!("renaming {} to {}", partial.display(), keys.display()))?;
    let keys_str = keys.display().to_string();
    let version_env = version.map(str::to_string);
    let env = move |name: &str| match name {
        "BASALT_ADMIN_PUB" => Some(keys_str.clone()),
        "BASALT_IMAGE_VERSION" if version_env.is_some() => version_env.clone(),
        other => profile::process_env(other),
    };
    let mut profile = profile::load(
        &profile_path,
        &LoadOptions {
            env: &env,
            machined: Some(machined.clone()),
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if outputs == Outputs::KernelInitramfs {
        use image_builder::profile::Artifact;
        profile
            .output
            .artifacts
            .retain(|a| matches!(a, Artifact::Kernel | Artifact::Initramfs));
    }
    let mut h = Sha256::new();
    for a in &profile.output.artifacts {
        h.update(a.to_string().as_bytes());
    }
    file_hash(&mut h, &machined)?;
    file_hash(&mut h, &profile_path)?;
    packages_hash(&mut h)?;
    for image in &profile.oci_images {
        file_hash(&mut h, &image.binary)?;
    }
    // The code that builds images (build.rs), not this test binary: every
    // test binary of one source tree shares each image.
    h.update(env!("BASALT_IMAGE_CODE").as_bytes());
    file_hash(&mut h, &profile.kernel.image)?;
    h.update(admin.as_bytes());
    if let Some(b) = baked {
        h.update(b.config.as_bytes());
        h.update(b.signature.as_bytes());
    }
    if let Some(v) = version {
        h.update(b"version\0");
        h.update(v.as_bytes());
    }
    let key: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = target_dir()
        .join("qemu-images")
        .join(format!("{profile_name}-{key}"));
    if !dir.join("manifest.json").exists() {
        if let Some(b) = baked {
            let document = dir.with_extension("config.toml");
            let signature = dir.with_extension("config.toml.sig");
            std::fs::write(&document, b.config)?;
            std::fs::write(&signature, b.signature)?;
            profile.config = Some(profile::BakedConfig {
                document,
                signature,
            });
        }
        eprintln!("qemu-tests: building the node image into {}", dir.display());
        assemble::build(&profile, &dir, &BuildOptions::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(Image {
        kernel: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio.zst"),
        dir,
    })
}

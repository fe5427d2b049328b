//! `build`: from a resolved [`Profile`] to an output directory holding the
//! kernel, the initramfs (with the root image inside), the bootable media
//! the profile asks for (UKI, disk, ISO: [`crate::media`]) and `manifest.json`.
//!
//! One function per job, called in order by [`build`]: plan modules, fill the
//! root tree, pack it, fill the initramfs tree, pack it, make the media, copy
//! the kernel, write the manifest. Everything is written into a staging directory next to
//! the output and renamed into place at the end, so a failed build leaves no
//! partial output behind.

use crate::elf::Resolver;
use crate::error::{Error, Result};
use crate::kmod::{ModuleIndex, ModulePlan};
use crate::manifest::{self, HashCache, ImageRecord, Manifest, OutputRecord};
use crate::profile::{Artifact, Install, Profile, is_nix_path};
use crate::tree::{Node, Tree};
use crate::{initrd, kernel, media, rootfs, shells};
use basalt_api::image_layout::{
    BAKED_CONFIG, BAKED_CONFIG_SIGNATURES, IMAGE_POLICY, INIT, MODULES_LIST, MODULES_ROOT,
    ROOT_IMAGE, ROOT_IMAGE_NAME, TRUST_ROOTS,
};
use basalt_api::scope::ImagePolicy;
use basalt_api::signed::Admission;
use std::path::{Path, PathBuf};
use tracing::{debug, info};

/// `SOURCE_DATE_EPOCH` when neither the environment nor the CLI gives one:
/// 1, as Nix uses for store paths (0 is avoided because some tools read it
/// as "unset").
pub const DEFAULT_SOURCE_DATE_EPOCH: u32 = 1;

pub const KERNEL_NAME: &str = "vmlinuz";

/// Empty directories the read-only root needs as mount points.
const ROOT_MOUNT_POINTS: &[(&str, u32)] = &[
    ("/dev", 0o755),
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/run", 0o755),
    ("/tmp", 0o1777),
    ("/var", 0o755),
];
/// The initramfs before machined runs: what the kernel and `/init` expect.
const INITRAMFS_DIRS: &[(&str, u32)] = &[
    ("/dev", 0o755),
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/run", 0o755),
    ("/tmp", 0o1777),
];

pub struct BuildOptions<'a> {
    pub source_date_epoch: u32,
    /// Called with a short description as each step starts (for progress bars).
    pub on_step: Option<&'a dyn Fn(&str)>,
}

impl Default for BuildOptions<'_> {
    fn default() -> Self {
        BuildOptions {
            source_date_epoch: DEFAULT_SOURCE_DATE_EPOCH,
            on_step: None,
        }
    }
}

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub out_dir: PathBuf,
    pub manifest: Manifest,
    pub modules: ModulePlan,
}

/// Builds `profile` into `out` (replacing a previous build there).
pub fn build(profile: &Profile, out: &Path, options: &BuildOptions<'_>) -> Result<BuildReport> {
    let step = |s: &str| {
        info!("{s}");
        if let Some(f) = options.on_step {
            f(s);
        }
    };
    let epoch = options.source_date_epoch;
    let components = build_components(profile, &step)?;
    let profile = &with_component_files(profile, &components);
    let staging = staging_dir(out)?;
    let stage = staging.path();

    step("resolving kernel modules");
    let modules = plan_modules(profile)?;
    let modules_load = modules_load_list(&modules.release, &modules.plan);
    let etc = etc_basalt_files(profile, &modules_load, epoch)?;

    // Kept until both images are packed: the trees read the unpacked files.
    let mut nix_inputs = Vec::new();
    let nix_root = match &profile.nix {
        Some(settings) => {
            step("fetching and unpacking Nix inputs");
            let (inputs, dir) = unpack_nix_inputs(settings, stage)?;
            nix_inputs = inputs;
            Some(dir)
        }
        None => None,
    };

    step("collecting the root image");
    let root = root_tree(profile, &etc, nix_root.as_ref().map(|d| d.path()), epoch)?;
    shells::check_tree(&root)?;
    step("packing the root image");
    let root_image = stage.join(ROOT_IMAGE_NAME);
    rootfs::write(&root, profile.rootfs, &root_image)?;

    step("collecting the initramfs");
    let initramfs_tree = initramfs_tree(
        profile,
        &etc,
        &modules.dir,
        &modules.release,
        &modules.plan,
        Some(&root_image),
        epoch,
    )?;
    shells::check_tree(&initramfs_tree)?;
    step("packing the initramfs");
    let initramfs_name = initrd::output_name(profile.output.compression);
    let initramfs_path = stage.join(initramfs_name);
    initrd::write(&initramfs_tree, profile.output.compression, &initramfs_path)?;

    let packed = Packed {
        root_image: PackedImage::hash(root_image)?,
        initramfs: PackedImage::hash(initramfs_path)?,
        initramfs_name,
    };
    let media = build_media(profile, &etc, &modules, &packed, stage, epoch, &step)?;

    step("writing outputs and manifest");
    let outputs = all_output_records(profile, stage, &packed, &media)?;
    let mut cache = HashCache::default();
    let manifest = Manifest {
        format: manifest::FORMAT,
        profile: profile.name.clone(),
        source_date_epoch: epoch,
        kernel_release: modules.release,
        outputs,
        initramfs: ImageRecord {
            format: "cpio".into(),
            path: None,
            sha256: packed.initramfs.sha256.clone(),
            size: packed.initramfs.size,
            files: manifest::records(&initramfs_tree, &mut cache)?,
        },
        rootfs: ImageRecord {
            format: "squashfs".into(),
            path: Some(ROOT_IMAGE.into()),
            sha256: packed.root_image.sha256.clone(),
            size: packed.root_image.size,
            files: manifest::records(&root, &mut cache)?,
        },
        nix_inputs: crate::nix_inputs::records(&nix_inputs),
        components: components.records,
    };
    finish_stage(profile, stage, &packed, &manifest)?;

    publish(staging, out)?;
    info!(out = %out.display(), "build complete");
    Ok(BuildReport {
        out_dir: out.to_path_buf(),
        manifest,
        modules: modules.plan,
    })
}

/// Every output's record (the packed images' and the media's), by name.
fn all_output_records(
    profile: &Profile,
    stage: &Path,
    packed: &Packed,
    media: &[crate::media::Made],
) -> Result<Vec<OutputRecord>> {
    let mut outputs = output_records(profile, stage, packed)?;
    for m in media {
        let (sha256, size) = crate::hash::file(&m.path)?;
        outputs.push(OutputRecord {
            name: m.name.to_string(),
            kind: m.artifact.to_string(),
            sha256,
            size,
        });
    }
    outputs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(outputs)
}

/// The bootable outputs the profile asks for (UKI, disk, ISO), from the
/// packed images; intermediate files live in scratch space.
fn build_media(
    profile: &Profile,
    etc: &[Generated],
    modules: &Modules,
    packed: &Packed,
    stage: &Path,
    epoch: u32,
    step: &dyn Fn(&str),
) -> Result<Vec<media::Made>> {
    let (need_uki, _, _) = media::wanted(profile);
    if !need_uki {
        return Ok(Vec::new());
    }
    let scratch = scratch_dir(stage)?;
    step("packing the disk's initramfs (without the root image)");
    let small_tree = initramfs_tree(
        profile,
        etc,
        &modules.dir,
        &modules.release,
        &modules.plan,
        None,
        epoch,
    )?;
    shells::check_tree(&small_tree)?;
    let small = scratch.path().join("initramfs-disk.cpio");
    initrd::write(&small_tree, profile.output.compression, &small)?;
    let mut root_sha256 = [0u8; 32];
    hex::decode_to_slice(&packed.root_image.sha256, &mut root_sha256)
        .map_err(|e| Error::RootImage(format!("its sha256: {e}")))?;
    media::build(
        &media::Inputs {
            profile,
            small_initramfs: &small,
            full_initramfs: &packed.initramfs.path,
            root_image: &packed.root_image.path,
            root_sha256,
            os_release: &os_release(profile),
            epoch,
            stage,
            scratch: scratch.path(),
        },
        step,
    )
}

/// The profile's `[[packages]]`, built (or taken from the cache) from `packages/`.
fn build_components(
    profile: &Profile,
    step: &dyn Fn(&str),
) -> Result<crate::package::install::ForImage> {
    if profile.packages.is_empty() {
        return Ok(crate::package::install::ForImage::default());
    }
    step("building upstream components (packages/)");
    Ok(crate::package::install::for_image(
        &profile.packages,
        &crate::package::BuildOptions {
            cache_dir: crate::package::BuildOptions::default_cache_dir(),
            go_cache: None,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        },
    )?)
}

/// The profile with the built components' binaries and files added to its own.
fn with_component_files(
    profile: &Profile,
    components: &crate::package::install::ForImage,
) -> Profile {
    let mut p = profile.clone();
    p.binaries.extend(components.binaries.iter().cloned());
    p.files.extend(components.files.iter().cloned());
    p
}

/// The kernel release and the modules to load, in order.
struct Modules {
    release: String,
    /// Where the release's modules are read from on the build host.
    dir: PathBuf,
    plan: ModulePlan,
}

fn plan_modules(profile: &Profile) -> Result<Modules> {
    let release = kernel::release(&profile.kernel.image)?;
    let dir = profile
        .kernel
        .modules_dir
        .clone()
        .unwrap_or_else(|| kernel::default_modules_dir(&release));
    let plan = ModuleIndex::load(&dir)?.plan(&profile.kernel.modules)?;
    for b in &plan.builtin {
        info!(module = %b, "built into the kernel, nothing to load");
    }
    Ok(Modules { release, dir, plan })
}

/// Fetch the profile's Nix inputs and unpack them into scratch space.
fn unpack_nix_inputs(
    settings: &crate::profile::NixSettings,
    stage: &Path,
) -> Result<(Vec<crate::nix::NixInput>, tempfile::TempDir)> {
    let inputs = crate::nix_inputs::collect(settings)?;
    let dir = scratch_dir(stage)?;
    crate::nix_inputs::unpack(&inputs, dir.path())?;
    info!(inputs = inputs.len(), "Nix inputs unpacked");
    Ok((inputs, dir))
}

/// An image packed into the staging directory.
struct PackedImage {
    path: PathBuf,
    sha256: String,
    size: u64,
}

impl PackedImage {
    fn hash(path: PathBuf) -> Result<Self> {
        let (sha256, size) = crate::hash::file(&path)?;
        Ok(Self { path, sha256, size })
    }
}

/// Both packed images.
struct Packed {
    root_image: PackedImage,
    initramfs: PackedImage,
    initramfs_name: &'static str,
}

/// One record per requested artifact (copying the kernel in), sorted by name.
fn output_records(profile: &Profile, stage: &Path, packed: &Packed) -> Result<Vec<OutputRecord>> {
    let mut outputs = Vec::new();
    for artifact in &profile.output.artifacts {
        let (name, (sha256, size)) = match artifact {
            Artifact::Kernel => {
                let dest = stage.join(KERNEL_NAME);
                std::fs::copy(&profile.kernel.image, &dest)
                    .map_err(Error::io("copying kernel", &profile.kernel.image))?;
                set_mode(&dest, 0o644)?;
                (KERNEL_NAME, crate::hash::file(&dest)?)
            }
            Artifact::Initramfs => (
                packed.initramfs_name,
                (packed.initramfs.sha256.clone(), packed.initramfs.size),
            ),
            Artifact::Rootfs => (
                ROOT_IMAGE_NAME,
                (packed.root_image.sha256.clone(), packed.root_image.size),
            ),
            // Recorded from what media::build made.
            Artifact::Uki | Artifact::Disk | Artifact::Iso => continue,
        };
        outputs.push(OutputRecord {
            name: name.to_string(),
            kind: artifact.to_string(),
            sha256,
            size,
        });
    }
    outputs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(outputs)
}

/// Drop the packed images nobody asked for and write `manifest.json`.
fn finish_stage(
    profile: &Profile,
    stage: &Path,
    packed: &Packed,
    manifest: &Manifest,
) -> Result<()> {
    if !profile.output.artifacts.contains(&Artifact::Initramfs) {
        remove_file(&packed.initramfs.path)?;
    }
    if !profile.output.artifacts.contains(&Artifact::Rootfs) {
        remove_file(&packed.root_image.path)?;
    }
    let manifest_path = stage.join(manifest::MANIFEST_NAME);
    std::fs::write(&manifest_path, manifest.to_json())
        .map_err(Error::io("writing", &manifest_path))?;
    set_mode(&manifest_path, 0o644)
}

/// Scratch space beside the staging directory (same file system), removed
/// when dropped; never part of the output.
fn scratch_dir(stage: &Path) -> Result<tempfile::TempDir> {
    let parent = stage
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    tempfile::Builder::new()
        .prefix(".image-builder-scratch-")
        .tempdir_in(&parent)
        .map_err(Error::io("creating a scratch directory in", &parent))
}

/// A fresh directory beside `out`, on the same file system so the final
/// rename is atomic; removed automatically if the build fails.
fn staging_dir(out: &Path) -> Result<tempfile::TempDir> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(Error::io("creating", &parent))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(&parent)
        .map_err(Error::io("creating a staging directory in", &parent))
}

/// Renames the staging directory to `out`. An existing `out` is replaced only
/// if it is empty or a previous build (has a manifest), so a mistyped `--out`
/// never deletes someone's files.
fn publish(staging: tempfile::TempDir, out: &Path) -> Result<()> {
    set_mode(staging.path(), 0o755)?;
    let old = if out.exists() {
        let is_build = out.join(manifest::MANIFEST_NAME).is_file();
        let is_empty = std::fs::read_dir(out)
            .map_err(Error::io("reading", out))?
            .next()
            .is_none();
        if !is_build && !is_empty {
            return Err(Error::Io {
                op: "replacing",
                path: out.to_path_buf(),
                source: std::io::Error::other(
                    "exists, is not empty and holds no manifest.json; refusing to replace it",
                ),
            });
        }
        let parent = staging
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let old = tempfile::Builder::new()
            .prefix(".old-build-")
            .tempdir_in(&parent)
            .map_err(Error::io("creating a directory in", &parent))?;
        let old_path = old.path().join("previous");
        std::fs::rename(out, &old_path).map_err(Error::io("moving aside", out))?;
        Some(old)
    } else {
        None
    };
    let staged = staging.keep();
    std::fs::rename(&staged, out).map_err(Error::io("renaming the staging directory to", out))?;
    drop(old);
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io("setting permissions of", path))
}

fn remove_file(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(Error::io("removing", path))
}

/// `/etc/basalt/modules.load`: one absolute in-initramfs `.ko` path a line,
/// dependencies first.
fn modules_load_list(release: &str, plan: &ModulePlan) -> String {
    let mut text = String::new();
    for rel in &plan.load_order {
        text.push_str(&format!("{MODULES_ROOT}/{release}/{rel}\n"));
    }
    text
}

/// A generated file that goes to `/etc/basalt` in both images.
struct Generated {
    path: &'static str,
    data: Vec<u8>,
    mode: u32,
}

/// trust.toml, image-policy.toml, the optional signed config (checked
/// against those trust roots and that floor now, not at first boot), and
/// modules.load.
fn etc_basalt_files(profile: &Profile, modules_load: &str, epoch: u32) -> Result<Vec<Generated>> {
    let policy = ImagePolicy {
        min_generation: profile.min_generation,
        built_at: i64::from(epoch),
    };
    let trust_toml = profile
        .trust
        .to_toml()
        .map_err(|e| Error::Trust(format!("serialising {TRUST_ROOTS}: {e}")))?;
    let mut out = vec![
        Generated {
            path: TRUST_ROOTS,
            data: trust_toml.into_bytes(),
            mode: 0o644,
        },
        Generated {
            path: IMAGE_POLICY,
            data: policy.to_toml().into_bytes(),
            mode: 0o644,
        },
        Generated {
            path: MODULES_LIST,
            data: modules_load.as_bytes().to_vec(),
            mode: 0o644,
        },
    ];
    if let Some(config) = &profile.config {
        let document =
            std::fs::read(&config.document).map_err(Error::io("reading", &config.document))?;
        let signature =
            std::fs::read(&config.signature).map_err(Error::io("reading", &config.signature))?;
        let admission = Admission {
            image: policy,
            ..Admission::offline(&profile.trust, 0)
        };
        basalt_api::signed::verify_and_parse(&document, &signature, &admission).map_err(|e| {
            Error::Trust(format!(
                "baked config {} with {}: {e}",
                config.document.display(),
                config.signature.display()
            ))
        })?;
        // The config may carry secrets (e.g. join tokens): root-only.
        out.push(Generated {
            path: BAKED_CONFIG,
            data: document,
            mode: 0o600,
        });
        out.push(Generated {
            path: BAKED_CONFIG_SIGNATURES,
            data: signature,
            mode: 0o644,
        });
    }
    Ok(out)
}

fn add_generated(tree: &mut Tree, etc: &[Generated], origin: &str) -> Result<()> {
    for g in etc {
        tree.add_bytes(Path::new(g.path), g.data.clone(), g.mode, origin)?;
    }
    Ok(())
}

/// The root image's os-release, also the UKIs' `.osrel`: systemd-boot sorts
/// UKIs by `IMAGE_ID` then version (`IMAGE_VERSION`), newest first.
fn os_release(profile: &Profile) -> String {
    format!(
        "NAME=Basalt\nID=basalt\nVERSION_ID={v}\nIMAGE_ID=basalt\nIMAGE_VERSION={v}\nPRETTY_NAME=\"Basalt {v} ({p})\"\nVARIANT_ID={p}\nHOME_URL=\"https://github.com/basalt-os/basalt\"\n",
        v = profile.version,
        p = profile.name.replace(['"', '\\', '\n'], "_"),
    )
}

/// The root image: mount points, the profile's binaries with their ELF
/// closures, its files, os-release and `/etc/basalt`.
fn root_tree(
    profile: &Profile,
    etc: &[Generated],
    nix_root: Option<&Path>,
    epoch: u32,
) -> Result<Tree> {
    let mut tree = Tree::new(epoch);
    for (dir, mode) in ROOT_MOUNT_POINTS {
        tree.insert(
            Path::new(dir),
            Node::Dir { mode: *mode },
            epoch,
            "root image skeleton",
        )?;
    }
    if let Some(root) = nix_root {
        crate::nix_inputs::add_unpacked(&mut tree, root)?;
    }
    let resolver = Resolver::default();
    for b in &profile.binaries {
        if nix_root.is_some() && is_nix_path(&b.source) {
            link_nix_path(&mut tree, b)?;
            continue;
        }
        let report = resolver.add_binary(&mut tree, &b.source, &b.target, b.mode, &b.origin)?;
        debug!(binary = %b.target.display(), libraries = report.libraries.len(), "added with its closure");
    }
    for f in &profile.files {
        if nix_root.is_some() && is_nix_path(&f.source) {
            link_nix_path(&mut tree, f)?;
            continue;
        }
        tree.add_host_file(&f.source, &f.target, f.mode, &f.origin)?;
    }
    for image in &profile.oci_images {
        let archive = crate::oci::archive(image, epoch)?;
        let target = Path::new(basalt_api::image_layout::OCI_IMAGES_DIR)
            .join(crate::oci::file_name(&image.name));
        tree.add_bytes(&target, archive.bytes, 0o644, &image.origin)?;
        debug!(image = %image.name, digest = %archive.manifest_digest, "OCI image archived");
    }
    tree.add_bytes(
        Path::new("/usr/lib/os-release"),
        os_release(profile).into_bytes(),
        0o644,
        "generated os-release",
    )?;
    tree.add_symlink(
        Path::new("/etc/os-release"),
        "../usr/lib/os-release",
        "generated os-release",
    )?;
    // machined generates these at runtime under /run (the root is read-only).
    for (link, target) in [
        ("/etc/resolv.conf", "../run/basalt/resolv.conf"),
        ("/etc/hosts", "../run/basalt/hosts"),
        // Writable config drop-ins (machine.files may write here; CNI
        // plugins and containerd's CRI watch these directories).
        ("/etc/cni", "../run/basalt/etc/cni"),
        ("/etc/cri", "../run/basalt/etc/cri"),
    ] {
        tree.add_symlink(Path::new(link), target, "generated by machined at runtime")?;
    }
    add_generated(&mut tree, etc, "generated /etc/basalt")?;
    info!(entries = tree.len(), "root image collected");
    Ok(tree)
}

/// `target` → the store path, which must be part of the Nix inputs.
fn link_nix_path(tree: &mut Tree, install: &Install) -> Result<()> {
    let source = crate::tree::image_path(&install.source)?;
    if tree.get(&source).is_none() {
        return Err(Error::Profile(format!(
            "{}: {source} is not inside any of the Nix inputs",
            install.origin
        )));
    }
    if install.target == install.source {
        return Ok(());
    }
    tree.add_symlink(&install.target, &source, &install.origin)?;
    Ok(())
}

/// The initramfs: `/init` (machined and, if dynamic, its closure), the
/// console node, every planned module, `/etc/basalt`, and the root image
/// (none for the disk's UKI, which mounts it from a root slot).
fn initramfs_tree(
    profile: &Profile,
    etc: &[Generated],
    modules_dir: &Path,
    release: &str,
    plan: &ModulePlan,
    root_image: Option<&Path>,
    epoch: u32,
) -> Result<Tree> {
    let mut tree = Tree::new(epoch);
    for (dir, mode) in INITRAMFS_DIRS {
        tree.insert(
            Path::new(dir),
            Node::Dir { mode: *mode },
            epoch,
            "initramfs skeleton",
        )?;
    }
    tree.insert(
        Path::new("/dev/console"),
        Node::CharDevice {
            major: 5,
            minor: 1,
            mode: 0o600,
        },
        epoch,
        "initramfs skeleton",
    )?;
    let origin = format!("{}: machined", profile.file.display());
    Resolver::default().add_binary(
        &mut tree,
        &profile.machined,
        Path::new(INIT),
        Some(0o755),
        &origin,
    )?;
    for rel in &plan.load_order {
        let source = modules_dir.join(rel);
        let target = Path::new(MODULES_ROOT).join(release).join(rel);
        tree.add_host_file(
            &source,
            &target,
            Some(0o644),
            &format!("kernel module {rel}"),
        )?;
    }
    add_generated(&mut tree, etc, "generated /etc/basalt")?;
    if let Some(root_image) = root_image {
        tree.add_host_file(
            root_image,
            Path::new(ROOT_IMAGE),
            Some(0o444),
            "the root image",
        )?;
    }
    info!(
        entries = tree.len(),
        modules = plan.load_order.len(),
        "initramfs collected"
    );
    Ok(tree)
}

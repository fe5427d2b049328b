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
//! version = "${BASALT_IMAGE_VERSION:-0.1.0}"  # optional, default image-builder's version:
//!                                 # os-release VERSION_ID, the UKI's .osrel and file name
//! base_dir = "../.."              # optional, relative to this file
//!
//! [kernel]
//! image = "/boot/vmlinuz-*"       # exactly one match
//! modules_dir = "/lib/modules/…"  # optional: default /lib/modules/<release read from the image>
//! modules = ["ext4", "virtio_net"]  # plus dependencies; `-`/`_` alike; built-ins skipped
//! cmdline = "console=ttyS0 panic=10"  # optional (this default): the UKIs' .cmdline; the disk's
//!                                 # UKI adds basalt.root=PARTUUID=<slot A>
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
//! [[oci_images]]                  # one static binary as an OCI image archive at
//! name = "registry.k8s.io/pause:3.10.2"   # /usr/share/basalt/images/<name, [^A-Za-z0-9._-] → _>.tar
//! binary = "target/x86_64-unknown-linux-gnu/release/pause"   # must be static
//! path = "/pause"                 # optional: default "/" + the binary's file name
//! entrypoint = ["/pause"]         # optional: default [path]
//!
//! [trust]                         # → /etc/basalt/trust.toml
//! admins = ["ssh-ed25519 AAAA… alice"]
//! admin_files = ["${BASALT_ADMIN_PUB}"]   # one key a line, `#` comments
//! readers = []
//! reader_files = []
//! threshold = 1                   # default 1; at most the number of admins
//! min_generation = 0              # refuse configs below this generation, even after a reset
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
//! [boot]                          # optional: the EFI binaries of the uki/disk/iso outputs
//! stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"           # (these defaults: Debian's
//! systemd_boot = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi" #  systemd-boot-efi)
//!
//! [disk]
//! slot_size_mib = 1024            # optional (this default): each root slot of disk.raw
//!
//! [output]
//! artifacts = ["kernel", "initramfs"]   # also "rootfs" (root.squashfs on its own),
//!                                 # "uki" (uki.efi), "disk" (disk.raw), "iso" (basalt.iso)
//! compression = "zstd"            # initramfs: zstd | gzip | none
//! ```

mod raw;
mod resolve;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use basalt_api::trust::TrustRoots;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A loaded profile with every path expanded, resolved and checked to exist.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// `version`, checked to be usable in a file name and os-release.
    pub version: String,
    /// The profile file itself.
    pub file: PathBuf,
    pub kernel: Kernel,
    /// Host path of the `machined` binary, installed as `/init`.
    pub machined: PathBuf,
    pub binaries: Vec<Install>,
    /// Upstream components built from `packages/` (see [`crate::package`]).
    pub packages: Vec<PackageRef>,
    pub files: Vec<Install>,
    /// Static binaries packed as OCI image archives into
    /// [`basalt_api::image_layout::OCI_IMAGES_DIR`].
    pub oci_images: Vec<crate::oci::OciImage>,
    pub trust: TrustRoots,
    /// `[trust] min_generation`: configs below it are refused by nodes of
    /// this image even with an empty STATE (→ `/etc/basalt/image-policy.toml`).
    pub min_generation: u64,
    pub config: Option<BakedConfig>,
    /// Nix store paths to put under `/nix/store` in the root image.
    pub nix: Option<NixSettings>,
    pub rootfs: RootfsSettings,
    pub boot: BootFiles,
    pub disk: DiskSettings,
    pub output: OutputSettings,
}

/// `[boot]`: systemd's EFI binaries. Checked when a build needs them (a
/// kernel + initramfs build does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// systemd-stub, the head of every UKI.
    pub stub: PathBuf,
    /// systemd-boot, `\EFI\BOOT\BOOTX64.EFI` on the ESPs.
    pub systemd_boot: PathBuf,
}

pub const DEFAULT_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
pub const DEFAULT_SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// `[disk]`: the layout of `disk.raw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSettings {
    /// Bytes in each root slot (a MiB multiple).
    pub slot_size: u64,
}

/// The UKIs' command line when the profile names none: the console the
/// QEMU stories read, and a reboot 10 s after a panic (so a failed trial
/// boot falls back).
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=10";

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
    /// `[kernel] cmdline`: the UKIs' command line.
    pub cmdline: String,
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

/// The files a build can produce besides `manifest.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Artifact {
    /// The kernel image, copied as `vmlinuz`.
    Kernel,
    /// `initramfs.cpio[.zst|.gz]`: `/init`, modules, trust, the root image.
    Initramfs,
    /// The root image on its own, `root.squashfs` (it is inside the initramfs too).
    Rootfs,
    /// `uki.efi`: the disk's unified kernel image (kernel, a small initramfs
    /// without the root image, cmdline naming root slot A).
    Uki,
    /// `disk.raw`: GPT, ESP (systemd-boot + the UKI), root slot A.
    Disk,
    /// `basalt.iso`: boots as a CD or written to a disk; carries the root
    /// image and the installer's payload in its UKI's initramfs.
    Iso,
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Artifact::Kernel => "kernel",
            Artifact::Initramfs => "initramfs",
            Artifact::Rootfs => "rootfs",
            Artifact::Uki => "uki",
            Artifact::Disk => "disk",
            Artifact::Iso => "iso",
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

// ---- loading ---------------------------------------------------------------

/// Reads, parses and resolves the profile at `file`.
pub fn load(file: &Path, options: &LoadOptions<'_>) -> Result<Profile> {
    let text = std::fs::read_to_string(file).map_err(Error::io("reading profile", file))?;
    parse(&text, file, options)
}

/// Parses and resolves profile `text`; `file` names it in errors and anchors
/// relative paths.
pub fn parse(text: &str, file: &Path, options: &LoadOptions<'_>) -> Result<Profile> {
    let raw = raw::deserialize(text, file)?;
    resolve::resolve(raw, text, file, options)
}

/// Phase one of [`parse`] alone: TOML syntax and the profile's schema,
/// without expanding, resolving or looking at the file system. Public for
/// the fuzz target `image_profile` (fuzz/), which runs the whole of
/// [`parse`] only on profiles whose paths stay inside its fixture directory.
pub fn check_schema(text: &str, file: &Path) -> Result<()> {
    raw::deserialize(text, file).map(drop)
}

/// Whether `path` lies inside the Nix store (and so comes from `[nix]`).
pub fn is_nix_path(path: &Path) -> bool {
    path.starts_with(crate::nix::NIX_STORE_DIR)
}

//! Phase one of loading a profile: the TOML text into [`RawProfile`], strictly
//! (unknown keys and wrong types are errors with `file:line:col` and the key
//! path). Values keep their spans so phase two ([`super::resolve`]) can point
//! at them; nothing here looks at the file system or the environment.

use super::{Artifact, Compression, RootfsCompression};
use crate::error::{Error, Result};
use basalt_api::text_position::line_col;
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub(super) name: String,
    /// The image's version (os-release `VERSION_ID`, the UKI's file name and
    /// its `.osrel`, which systemd-boot sorts by); `${VAR}` expands.
    pub(super) version: Option<Spanned<String>>,
    pub(super) base_dir: Option<Spanned<String>>,
    pub(super) kernel: RawKernel,
    pub(super) machined: RawMachined,
    #[serde(default)]
    pub(super) binaries: Vec<RawInstall>,
    /// Folder holding one directory per component; default `packages`
    /// under base_dir.
    pub(super) packages_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) packages: Vec<RawPackage>,
    #[serde(default)]
    pub(super) files: Vec<RawInstall>,
    #[serde(default)]
    pub(super) oci_images: Vec<RawOciImage>,
    pub(super) trust: RawTrust,
    pub(super) config: Option<RawConfig>,
    pub(super) nix: Option<RawNix>,
    #[serde(default)]
    pub(super) rootfs: RawRootfs,
    #[serde(default)]
    pub(super) boot: RawBoot,
    #[serde(default)]
    pub(super) disk: RawDisk,
    #[serde(default)]
    pub(super) output: RawOutput,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBoot {
    pub(super) stub: Option<Spanned<String>>,
    pub(super) systemd_boot: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisk {
    pub(super) slot_size_mib: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKernel {
    pub(super) image: Spanned<String>,
    pub(super) modules_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) modules: Vec<Spanned<String>>,
    /// The UKIs' command line; `${VAR}` expands.
    pub(super) cmdline: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMachined {
    pub(super) path: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstall {
    pub(super) source: Spanned<String>,
    pub(super) target: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPackage {
    pub(super) name: Spanned<String>,
    pub(super) binaries: Option<Vec<Spanned<String>>>,
    pub(super) target: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOciImage {
    pub(super) name: Spanned<String>,
    pub(super) binary: Spanned<String>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) entrypoint: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrust {
    #[serde(default)]
    pub(super) admins: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) admin_files: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) readers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) reader_files: Vec<Spanned<String>>,
    pub(super) threshold: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) min_generation: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) path: Spanned<String>,
    pub(super) signature: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNix {
    #[serde(default)]
    pub(super) paths: Vec<Spanned<String>>,
    pub(super) closure_file: Option<Spanned<String>>,
    pub(super) store: Option<Spanned<String>>,
    pub(super) substituter: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) trusted_public_keys: Vec<String>,
    pub(super) cache_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ca_certs: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRootfs {
    pub(super) compression: RootfsCompression,
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
pub(super) struct RawOutput {
    #[serde(default = "default_artifacts")]
    pub(super) artifacts: Vec<Artifact>,
    #[serde(default = "default_compression")]
    pub(super) compression: Compression,
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            artifacts: default_artifacts(),
            compression: default_compression(),
        }
    }
}

pub(super) fn default_artifacts() -> Vec<Artifact> {
    vec![Artifact::Kernel, Artifact::Initramfs]
}

pub(super) fn default_compression() -> Compression {
    Compression::Zstd
}

pub(super) fn deserialize(text: &str, file: &Path) -> Result<RawProfile> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, file, None, &e))?;
    serde_path_to_error::deserialize::<_, RawProfile>(de).map_err(|e| {
        // Spanned<T> shows up in the path as an internal field; users never wrote it.
        let key = e.path().to_string();
        let key = key
            .split(".$__serde_spanned")
            .next()
            .unwrap_or(&key)
            .to_string();
        toml_error(text, file, Some(key), e.inner())
    })
}

fn toml_error(text: &str, file: &Path, key: Option<String>, e: &toml::de::Error) -> Error {
    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let key = match key.as_deref() {
        None | Some(".") | Some("") => String::new(),
        Some(k) => format!("{k}: "),
    };
    Error::Profile(format!(
        "{}:{line}:{col}: {key}{}",
        file.display(),
        e.message().trim_end()
    ))
}

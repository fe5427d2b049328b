//! `manifest.json`: what a build produced, with a sha256 for every output and
//! every file inside the initramfs and the root image.
//!
//! Keys come out in struct order and lists sorted, pretty-printed with a
//! final newline, so the manifest is itself reproducible (no host paths, no
//! build time) and diffs well.

use crate::error::{Error, Result};
use crate::tree::{Content, Node, Tree};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const MANIFEST_NAME: &str = "manifest.json";
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub profile: String,
    pub source_date_epoch: u32,
    pub kernel_release: String,
    /// Output files in the output directory, sorted by name.
    pub outputs: Vec<OutputRecord>,
    pub initramfs: ImageRecord,
    pub rootfs: ImageRecord,
    /// Nix store paths that went into the image, with their NAR hashes.
    #[serde(default)]
    pub nix_inputs: Vec<NixInputRecord>,
    /// Upstream components built from `packages/`: version, module, lock
    /// hash and each binary's sha256.
    #[serde(default)]
    pub components: Vec<crate::package::BuildRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRecord {
    /// File name in the output directory.
    pub name: String,
    pub kind: String,
    pub sha256: String,
    pub size: u64,
}

/// One packed image and its contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    /// `cpio` or `squashfs`.
    pub format: String,
    /// For the root image: its path inside the initramfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub sha256: String,
    pub size: u64,
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NixInputRecord {
    pub store_path: String,
    /// SRI form, `sha256-<base64>`, as `nix path-info --json` prints `narHash`.
    pub nar_hash: String,
    pub nar_size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    #[serde(rename = "chardev")]
    CharDevice,
    Other,
}

/// One entry of an image, as listed by `inspect` and compared by `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Absolute in-image path.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: FileKind,
    /// Permission bits in octal, e.g. `"0755"`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlink target, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Device number `major:minor` of a device node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<String>,
}

impl FileRecord {
    pub fn mode_text(mode: u32) -> String {
        format!("{:04o}", mode & 0o7777)
    }

    pub fn dir(path: String, mode: u32) -> Self {
        FileRecord {
            path,
            kind: FileKind::Dir,
            mode: Self::mode_text(mode),
            size: None,
            sha256: None,
            target: None,
            rdev: None,
        }
    }

    pub fn file(path: String, mode: u32, size: u64, sha256: String) -> Self {
        FileRecord {
            path,
            kind: FileKind::File,
            mode: Self::mode_text(mode),
            size: Some(size),
            sha256: Some(sha256),
            target: None,
            rdev: None,
        }
    }

    pub fn symlink(path: String, target: String) -> Self {
        FileRecord {
            path,
            kind: FileKind::Symlink,
            mode: Self::mode_text(0o777),
            size: None,
            sha256: None,
            target: Some(target),
            rdev: None,
        }
    }

    pub fn char_device(path: String, mode: u32, major: u32, minor: u32) -> Self {
        FileRecord {
            path,
            kind: FileKind::CharDevice,
            mode: Self::mode_text(mode),
            size: None,
            sha256: None,
            target: None,
            rdev: Some(format!("{major}:{minor}")),
        }
    }

    /// One line for `inspect`: type, mode, size, sha256, path[ -> target].
    pub fn line(&self) -> String {
        let kind = match self.kind {
            FileKind::Dir => 'd',
            FileKind::File => '-',
            FileKind::Symlink => 'l',
            FileKind::CharDevice => 'c',
            FileKind::Other => '?',
        };
        let size = self
            .size
            .map(|s| s.to_string())
            .or_else(|| self.rdev.clone())
            .unwrap_or_default();
        let sha = self.sha256.as_deref().unwrap_or("-");
        match &self.target {
            Some(t) => format!(
                "{kind} {} {size:>10} {sha:64} {} -> {t}",
                self.mode, self.path
            ),
            None => format!("{kind} {} {size:>10} {sha:64} {}", self.mode, self.path),
        }
    }
}

/// Hashes host files once even when both images (or two paths) hold them.
#[derive(Debug, Default)]
pub struct HashCache {
    known: BTreeMap<PathBuf, (String, u64)>,
}

impl HashCache {
    pub fn file(&mut self, path: &Path) -> Result<(String, u64)> {
        if let Some(v) = self.known.get(path) {
            return Ok(v.clone());
        }
        let v = crate::hash::file(path)?;
        self.known.insert(path.to_path_buf(), v.clone());
        Ok(v)
    }
}

/// The records of every entry of `tree`, in path order.
pub fn records(tree: &Tree, cache: &mut HashCache) -> Result<Vec<FileRecord>> {
    let mut out = Vec::with_capacity(tree.len());
    for (path, entry) in tree.entries() {
        let record = match &entry.node {
            Node::Dir { mode } => FileRecord::dir(path.to_string(), *mode),
            Node::Symlink { target } => FileRecord::symlink(path.to_string(), target.clone()),
            Node::CharDevice { major, minor, mode } => {
                FileRecord::char_device(path.to_string(), *mode, *major, *minor)
            }
            Node::File {
                content: Content::Host(src),
                mode,
            } => {
                let (sha, size) = cache.file(src)?;
                FileRecord::file(path.to_string(), *mode, size, sha)
            }
            Node::File {
                content: Content::Bytes(data),
                mode,
            } => FileRecord::file(
                path.to_string(),
                *mode,
                data.len() as u64,
                crate::hash::bytes(data),
            ),
        };
        out.push(record);
    }
    Ok(out)
}

impl Manifest {
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and integers cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
        serde_json::from_str(&text).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

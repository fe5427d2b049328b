//! OCI images without a registry: one static binary as a one-layer
//! linux/amd64 image, written as an OCI image-layout tar that
//! `ctr images import` (and so machined at boot) reads.
//!
//! The archive is a pure function of the binary, the reference, the
//! entrypoint and the epoch: fixed mtimes, uid/gid 0, no user or group
//! names, entries in one order, JSON with fields in one order. Two builds
//! give the same bytes, and so the same image digest, which is also what
//! makes the import at boot a no-op when nothing changed.
//!
//! Layout (OCI image-layout 1.0.0):
//!
//! ```text
//! oci-layout                    {"imageLayoutVersion":"1.0.0"}
//! index.json                    one manifest, named by both annotations
//! blobs/sha256/<layer>          uncompressed tar: the binary, 0755
//! blobs/sha256/<config>         architecture, os, entrypoint, diff_ids
//! blobs/sha256/<manifest>
//! ```
//!
//! The layer is an uncompressed tar: it is small, the root image compresses
//! it anyway, and it needs no compressor whose output could change between
//! versions.

use crate::error::{Error, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// The full reference (`registry.k8s.io/pause:3.10.2`); containerd names
/// the imported image by it.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation: the tag, as `ctr images export` writes it.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One image to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// Full reference with a tag: `registry.k8s.io/pause:3.10.2`.
    pub name: String,
    /// Host path of the static binary.
    pub binary: PathBuf,
    /// Where the binary sits inside the image (`/pause`).
    pub path: String,
    /// argv of the container; the binary's path by default.
    pub entrypoint: Vec<String>,
    /// Where in the profile this came from, for error messages.
    pub origin: String,
}

/// A reference's tag (`3.10.2`), or why `name` is not a full reference
/// with a tag: `host[:port]/path:tag`, lowercase path, no digest. Baked
/// images must carry the exact name the kubelet asks for, so a short name
/// (`pause`) that containerd would expand to docker.io is refused.
pub fn check_reference(name: &str) -> std::result::Result<&str, String> {
    let (repo, tag) = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => return Err(format!("`{name}` has no tag (expected host/path:tag)")),
    };
    if name.contains('@') {
        return Err(format!("`{name}`: a digest cannot be baked, name a tag"));
    }
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !tag.starts_with(['.', '-']);
    if !tag_ok {
        return Err(format!("`{name}`: bad tag `{tag}`"));
    }
    let Some((host, path)) = repo.split_once('/') else {
        return Err(format!(
            "`{name}` has no registry host (expected host/path:tag, e.g. registry.k8s.io/pause:3.10.2)"
        ));
    };
    let host_ok = (host.contains('.') || host.contains(':') || host == "localhost")
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    if !host_ok {
        return Err(format!("`{name}`: `{host}` is not a registry host"));
    }
    let path_ok = path.split('/').all(|c| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
    });
    if !path_ok {
        return Err(format!(
            "`{name}`: bad repository path `{path}` (lowercase letters, digits, `._-`, `/`)"
        ));
    }
    Ok(tag)
}

/// The archive's file name: every character of the reference but
/// `[A-Za-z0-9._-]` becomes `_` (`registry.k8s.io_pause_3.10.2.tar`).
pub fn file_name(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{stem}.tar")
}

#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<&'a str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

#[derive(Serialize)]
struct Platform {
    architecture: &'static str,
    os: &'static str,
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    architecture: &'static str,
    os: &'static str,
    config: RunConfig<'a>,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct RunConfig<'a> {
    #[serde(rename = "Entrypoint")]
    entrypoint: &'a [String],
    #[serde(rename = "WorkingDir")]
    working_dir: &'static str,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn json(value: &impl Serialize) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string
    // keys, no custom serializers); an empty document would fail the
    // import loudly anyway.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The image's digest (of its manifest) and the archive bytes.
pub struct Archive {
    pub manifest_digest: String,
    pub bytes: Vec<u8>,
}

/// Builds the OCI image-layout tar of `image`; every mtime is `epoch`.
pub fn archive(image: &OciImage, epoch: u32) -> Result<Archive> {
    let tag =
        check_reference(&image.name).map_err(|m| Error::Oci(format!("{}: {m}", image.origin)))?;
    let info = crate::elf::read_info(&image.binary)?.ok_or_else(|| Error::Elf {
        path: image.binary.clone(),
        reason: format!("not an ELF executable ({})", image.origin),
    })?;
    // The image holds nothing but this file: no loader, no libc.
    if !info.is_static() {
        return Err(Error::Elf {
            path: image.binary.clone(),
            reason: format!(
                "dynamically linked ({}); an OCI image here holds only the binary, build it static \
                 (RUSTFLAGS=-Ctarget-feature=+crt-static cargo build --release --target x86_64-unknown-linux-gnu)",
                image.origin
            ),
        });
    }
    let binary = std::fs::read(&image.binary).map_err(Error::io("reading", &image.binary))?;
    let in_image = image.path.trim_start_matches('/');
    let mut layer = TarWriter::default();
    layer.file(in_image, 0o755, epoch, &binary)?;
    let layer = layer.finish();
    let layer_digest = sha256(&layer);

    let config = json(&ImageConfig {
        architecture: "amd64",
        os: "linux",
        config: RunConfig {
            entrypoint: &image.entrypoint,
            working_dir: "/",
        },
        rootfs: RootFs {
            kind: "layers",
            // Uncompressed: the diff id is the layer's own digest.
            diff_ids: vec![layer_digest.clone()],
        },
    });
    let config_digest = sha256(&config);
    let manifest = json(&Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST,
        config: Descriptor {
            media_type: MEDIA_CONFIG,
            digest: config_digest.clone(),
            size: config.len() as u64,
            annotations: None,
            platform: None,
        },
        layers: vec![Descriptor {
            media_type: MEDIA_LAYER,
            digest: layer_digest.clone(),
            size: layer.len() as u64,
            annotations: None,
            platform: None,
        }],
    });
    let manifest_digest = sha256(&manifest);
    let index = json(&Index {
        schema_version: 2,
        media_type: MEDIA_INDEX,
        manifests: vec![Descriptor {
            media_type: MEDIA_MANIFEST,
            digest: manifest_digest.clone(),
            size: manifest.len() as u64,
            annotations: Some(BTreeMap::from([
                (ANNOTATION_CONTAINERD_NAME, image.name.as_str()),
                (ANNOTATION_REF_NAME, tag),
            ])),
            platform: Some(Platform {
                architecture: "amd64",
                os: "linux",
            }),
        }],
    });

    let mut blobs = [
        (layer_digest, layer),
        (config_digest, config),
        (manifest_digest.clone(), manifest),
    ];
    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = TarWriter::default();
    out.dir("blobs", epoch)?;
    out.dir("blobs/sha256", epoch)?;
    for (digest, bytes) in &blobs {
        let hex = digest.trim_start_matches("sha256:");
        out.file(&format!("blobs/sha256/{hex}"), 0o644, epoch, bytes)?;
    }
    out.file("index.json", 0o644, epoch, &index)?;
    out.file(
        "oci-layout",
        0o644,
        epoch,
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(Archive {
        manifest_digest,
        bytes: out.finish(),
    })
}

/// Writes `archive(image)` to `out`.
pub fn write(image: &OciImage, epoch: u32, out: &Path) -> Result<Archive> {
    let a = archive(image, epoch)?;
    std::fs::write(out, &a.bytes).map_err(Error::io("writing", out))?;
    Ok(a)
}

/// A POSIX ustar writer for the few entries an image needs: regular files
/// and directories, names under 100 bytes, owned by 0:0.
#[derive(Default)]
struct TarWriter {
    out: Vec<u8>,
}

impl TarWriter {
    fn header(&mut self, name: &str, mode: u32, size: u64, mtime: u32, kind: u8) -> Result<()> {
        if name.len() >= 100 || name.is_empty() {
            return Err(Error::Oci(format!(
                "archive entry `{name}`: names must be 1..99 bytes"
            )));
        }
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
            let s = format!("{v:0w$o}\0", w = width - 1);
            h[at..at + width].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, u64::from(mode));
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, size);
        octal(&mut h, 136, 12, u64::from(mtime));
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field as spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.out.extend_from_slice(&h);
        Ok(())
    }

    fn dir(&mut self, name: &str, mtime: u32) -> Result<()> {
        self.header(&format!("{name}/"), 0o755, 0, mtime, b'5')
    }

    fn file(&mut self, name: &str, mode: u32, mtime: u32, data: &[u8]) -> Result<()> {
        self.header(name, mode, data.len() as u64, mtime, b'0')?;
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        Ok(())
    }

    /// Two zero blocks end the archive.
    fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_need_host_path_and_tag() {
        assert_eq!(
            check_reference("registry.k8s.io/pause:3.10.2"),
            Ok("3.10.2")
        );
        assert_eq!(check_reference("localhost:5000/basalt/echo:v1"), Ok("v1"));
        for bad in [
            "pause:3.10.2",
            "registry.k8s.io/pause",
            "registry.k8s.io/Pause:1",
            "registry.k8s.io/pause:",
            "registry.k8s.io/pause@sha256:00",
            "library/pause:1",
        ] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(
            file_name("registry.k8s.io/pause:3.10.2"),
            "registry.k8s.io_pause_3.10.2.tar"
        );
        assert_eq!(
            file_name("localhost:5000/a/b:c"),
            "localhost_5000_a_b_c.tar"
        );
    }
}

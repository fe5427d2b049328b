//! `inspect`: list an initramfs or a root image with every file's sha256.

use crate::error::{Error, Result};
use crate::manifest::FileRecord;
use crate::{initrd, rootfs};
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Initramfs,
    Squashfs,
}

/// Recognises the format from the first bytes of `path`.
pub fn detect(path: &Path) -> Result<ImageFormat> {
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path).map_err(Error::io("opening", path))?;
    let n = f.read(&mut head).map_err(Error::io("reading", path))?;
    let head = &head[..n];
    if rootfs::is_squashfs(head) {
        Ok(ImageFormat::Squashfs)
    } else if initrd::looks_like_initramfs(head) {
        Ok(ImageFormat::Initramfs)
    } else {
        Err(Error::Inspect {
            path: path.to_path_buf(),
            reason: "neither an initramfs (cpio, zstd or gzip) nor a squashfs image".into(),
        })
    }
}

/// Every entry of the image at `path`.
pub fn inspect(path: &Path) -> Result<(ImageFormat, Vec<FileRecord>)> {
    let format = detect(path)?;
    let records = match format {
        ImageFormat::Squashfs => rootfs::list(path)?,
        ImageFormat::Initramfs => initrd::list(path)?,
    };
    Ok((format, records))
}

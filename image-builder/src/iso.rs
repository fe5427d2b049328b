//! `basalt.iso`: a UEFI-only bootable ISO 9660 image made by xorriso, that
//! boots both as a CD (El Torito, platform UEFI) and written to a disk or
//! USB stick (an MBR partition of type 0xEF holding the same ESP).
//!
//! The El Torito boot image *is* the appended ESP partition (no second copy
//! in the ISO tree). `-partition_offset 16` moves the ISO's own partition
//! off LBA 0: without it OVMF ignores the MBR of the written-to-disk ISO and
//! never finds the ESP. Reproducible with `SOURCE_DATE_EPOCH` set for
//! xorriso and every input's mtime set to it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

pub const XORRISO: &str = "xorriso";

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("running {XORRISO} (Debian package `xorriso`): {0}")]
    Spawn(std::io::Error),
    #[error("{XORRISO} failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IsoError {
    let path = path.to_path_buf();
    move |source| IsoError::Io { op, path, source }
}

/// Writes the ISO to `out`. `esp_image` is the FAT image to boot; `tree` a
/// directory of files for the ISO 9660 side (may be empty). `scratch` is
/// where the inputs' mtimes may be changed.
pub fn write(esp_image: &Path, tree: &Path, epoch: u32, out: &Path) -> Result<(), IsoError> {
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(epoch));
    for p in [esp_image, tree] {
        std::fs::File::options()
            .read(true)
            .open(p)
            .and_then(|f| f.set_modified(when))
            .map_err(io("setting the mtime of", p))?;
    }
    // xorriso refuses to overwrite an existing non-ISO file; the staging
    // directory may hold a stale one only after a bug, but be exact.
    if out.exists() {
        std::fs::remove_file(out).map_err(io("removing", out))?;
    }
    let output = Command::new(XORRISO)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args(["-as", "mkisofs", "-iso-level", "3", "-volid", "BASALT"])
        .arg("-o")
        .arg(out)
        .arg("-append_partition")
        .arg("2")
        .arg("0xef")
        .arg(esp_image)
        .args([
            "-e",
            "--interval:appended_partition_2:all::",
            "-no-emul-boot",
        ])
        .args(["-partition_cyl_align", "all", "-partition_offset", "16"])
        .args(["-iso_mbr_part_type", "0x83"])
        .arg(tree)
        .output()
        .map_err(IsoError::Spawn)?;
    if !output.status.success() {
        return Err(IsoError::Failed {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

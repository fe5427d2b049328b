//! The bootable outputs, made from the packed images: the disk's UKI
//! (`uki.efi`), the whole disk (`disk.raw`) and the installer ISO
//! (`basalt.iso`). One function per output, each built from the one before:
//!
//! ```text
//! kernel + small initramfs ──► uki.efi ──► ESP ──► disk.raw ──► disk head (zstd)
//! kernel + full initramfs + disk head ──► ISO UKI ──► ISO ESP ──► basalt.iso
//! ```

use crate::error::{Error, Result};
use crate::profile::{Artifact, Compression, Profile};
use crate::tree::Tree;
use crate::{disk, esp, initrd, iso, uki};
use basalt_api::disk_layout::{
    ESP_BOOT_LOADER, ESP_LOADER_CONF, ESP_SIZE, ESP_UKI_DIR, LOADER_CONF, ROOT_ARG, UkiName,
    derived, root_slot_guid,
};
use basalt_api::image_layout::INSTALL_DISK_HEAD;
use std::path::{Path, PathBuf};

pub const UKI_NAME: &str = "uki.efi";
pub const DISK_NAME: &str = "disk.raw";
pub const ISO_NAME: &str = "basalt.iso";

/// What the bootable outputs are made of.
pub struct Inputs<'a> {
    pub profile: &'a Profile,
    /// The disk UKI's initramfs: machined, modules, /etc/basalt, no root image.
    pub small_initramfs: &'a Path,
    /// The kernel + initramfs output's initramfs, root image inside.
    pub full_initramfs: &'a Path,
    pub root_image: &'a Path,
    pub root_sha256: [u8; 32],
    /// The UKIs' `.osrel`: the root image's os-release.
    pub os_release: &'a str,
    pub epoch: u32,
    /// Where requested outputs go.
    pub stage: &'a Path,
    /// Where intermediate files go.
    pub scratch: &'a Path,
}

/// A bootable output written to the stage.
pub struct Made {
    pub artifact: Artifact,
    pub name: &'static str,
    pub path: PathBuf,
}

/// Which of the bootable outputs the profile asks for, and what they need.
pub fn wanted(profile: &Profile) -> (bool, bool, bool) {
    let has = |a| profile.output.artifacts.contains(&a);
    let iso = has(Artifact::Iso);
    let disk = iso || has(Artifact::Disk);
    let uki = disk || has(Artifact::Uki);
    (uki, disk, iso)
}

/// Builds the requested bootable outputs; `step` reports progress.
pub fn build(inputs: &Inputs<'_>, step: &dyn Fn(&str)) -> Result<Vec<Made>> {
    let (need_uki, need_disk, need_iso) = wanted(inputs.profile);
    let has = |a| inputs.profile.output.artifacts.contains(&a);
    let mut made = Vec::new();
    if !need_uki {
        return Ok(made);
    }
    let boot = &inputs.profile.boot;
    for (path, what) in [
        (&boot.stub, "boot.stub"),
        (&boot.systemd_boot, "boot.systemd_boot"),
    ] {
        if !path.is_file() {
            return Err(Error::Profile(format!(
                "{what} {}: no such file (Debian: apt-get install systemd-boot-efi), needed by the uki, disk and iso outputs",
                path.display()
            )));
        }
    }
    step("writing the disk's UKI");
    let place = |a: Artifact, name: &'static str| {
        if has(a) {
            inputs.stage.join(name)
        } else {
            inputs.scratch.join(name)
        }
    };
    let uki_path = place(Artifact::Uki, UKI_NAME);
    let guid = root_slot_guid(&inputs.root_sha256);
    let cmdline = format!("{} {ROOT_ARG}{guid}", inputs.profile.kernel.cmdline);
    write_uki(inputs, &cmdline, inputs.small_initramfs, &uki_path)?;
    if has(Artifact::Uki) {
        made.push(Made {
            artifact: Artifact::Uki,
            name: UKI_NAME,
            path: uki_path.clone(),
        });
    }
    if !need_disk {
        return Ok(made);
    }
    step("writing the disk image (ESP, GPT, root slot A)");
    let uki_sha = sha256_of(&uki_path)?;
    let esp_path = inputs.scratch.join("esp.img");
    let mut seed = inputs.root_sha256.to_vec();
    seed.extend_from_slice(&uki_sha);
    write_esp(inputs, &uki_path, Some(ESP_SIZE), &seed, &esp_path)?;
    let disk_path = place(Artifact::Disk, DISK_NAME);
    let report = disk::write(
        &disk::DiskInputs {
            root_image: inputs.root_image,
            root_sha256: inputs.root_sha256,
            uki_sha256: uki_sha,
            esp_image: &esp_path,
            slot_size: inputs.profile.disk.slot_size,
        },
        &disk_path,
    )?;
    remove(&esp_path)?;
    if has(Artifact::Disk) {
        made.push(Made {
            artifact: Artifact::Disk,
            name: DISK_NAME,
            path: disk_path.clone(),
        });
    }
    if need_iso {
        step("writing the installer ISO");
        made.push(build_iso(inputs, &disk_path, report.slot_a_offset)?);
    }
    Ok(made)
}

/// The ISO: a UKI whose initramfs is the full one plus the installer's
/// payload, on a read-only ESP, wrapped by xorriso.
fn build_iso(inputs: &Inputs<'_>, disk_path: &Path, head_len: u64) -> Result<Made> {
    let head = inputs.scratch.join("disk-head.img.zst");
    disk::write_head(disk_path, head_len, &head)?;
    // The kernel unpacks concatenated archives in order; an uncompressed one
    // first, as CPU microcode is shipped, then the (compressed) full initramfs.
    let mut head_tree = Tree::new(inputs.epoch);
    head_tree.add_host_file(
        &head,
        Path::new(INSTALL_DISK_HEAD),
        Some(0o444),
        "the installer's payload (disk.raw up to root slot A)",
    )?;
    let head_cpio = inputs.scratch.join("install-head.cpio");
    initrd::write(&head_tree, Compression::None, &head_cpio)?;
    let initrd = inputs.scratch.join("iso-initramfs.cpio");
    concat(&[&head_cpio, inputs.full_initramfs], &initrd)?;
    remove(&head_cpio)?;
    remove(&head)?;

    let uki_path = inputs.scratch.join("iso-uki.efi");
    write_uki(inputs, &inputs.profile.kernel.cmdline, &initrd, &uki_path)?;
    remove(&initrd)?;
    let mut seed = inputs.root_sha256.to_vec();
    seed.extend_from_slice(&sha256_of(&uki_path)?);
    seed.extend_from_slice(b"iso");
    let esp_path = inputs.scratch.join("iso-esp.img");
    write_esp(inputs, &uki_path, None, &seed, &esp_path)?;
    remove(&uki_path)?;
    let tree = inputs.scratch.join("iso-root");
    std::fs::create_dir_all(&tree).map_err(Error::io("creating", &tree))?;
    let out = inputs.stage.join(ISO_NAME);
    iso::write(&esp_path, &tree, inputs.epoch, &out)?;
    remove(&esp_path)?;
    Ok(Made {
        artifact: Artifact::Iso,
        name: ISO_NAME,
        path: out,
    })
}

fn write_uki(inputs: &Inputs<'_>, cmdline: &str, initrd: &Path, out: &Path) -> Result<()> {
    uki::write(
        &inputs.profile.boot.stub,
        uki::Sections {
            osrel: inputs.os_release.as_bytes().to_vec(),
            cmdline: cmdline.as_bytes().to_vec(),
            initrd: uki::Source::File(initrd.to_path_buf()),
            linux: uki::Source::File(inputs.profile.kernel.image.clone()),
        },
        out,
    )?;
    Ok(())
}

/// systemd-boot, loader.conf and the UKI under its versioned name (no boot
/// counter: the first UKI of a disk is good by definition, and an ISO is
/// read-only).
fn esp_files(inputs: &Inputs<'_>, uki: &Path, loader_conf: &Path) -> esp::Files {
    let name = UkiName::new(&inputs.profile.version, None).file_name();
    esp::Files::from([
        (
            ESP_BOOT_LOADER.to_string(),
            inputs.profile.boot.systemd_boot.clone(),
        ),
        (ESP_LOADER_CONF.to_string(), loader_conf.to_path_buf()),
        (format!("{ESP_UKI_DIR}/{name}"), uki.to_path_buf()),
    ])
}

/// An ESP of `size` bytes, or (`None`) just large enough for its files.
fn write_esp(
    inputs: &Inputs<'_>,
    uki: &Path,
    size: Option<u64>,
    seed: &[u8],
    out: &Path,
) -> Result<()> {
    let conf = inputs.scratch.join("loader.conf");
    std::fs::write(&conf, LOADER_CONF).map_err(Error::io("writing", &conf))?;
    let files = esp_files(inputs, uki, &conf);
    let size = match size {
        Some(s) => s,
        None => esp::size_for(&files)?,
    };
    let id = derived(b"esp volume id", seed).0;
    let volume_id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
    esp::write(out, size, &files, volume_id, inputs.epoch)?;
    Ok(())
}

fn sha256_of(path: &Path) -> Result<[u8; 32]> {
    let (hex, _) = crate::hash::file(path)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(&hex, &mut out).map_err(|e| Error::Io {
        op: "hashing",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    Ok(out)
}

fn concat(parts: &[&Path], out: &Path) -> Result<()> {
    let mut w = std::fs::File::create(out).map_err(Error::io("creating", out))?;
    for p in parts {
        let mut r = std::fs::File::open(p).map_err(Error::io("opening", *p))?;
        std::io::copy(&mut r, &mut w).map_err(Error::io("copying", *p))?;
    }
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(Error::io("removing", path))
}

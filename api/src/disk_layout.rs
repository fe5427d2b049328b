//! The contract between `disk.raw` (image-builder), the installer and
//! machined: which partitions a Basalt disk has, what they are called, how
//! their GUIDs are derived, where the boot files live on the ESP and how
//! UKIs are named for systemd-boot's boot counting.
//!
//! ```text
//! 1 EFI        ESP (FAT32): \EFI\BOOT\BOOTX64.EFI (systemd-boot),
//!              \loader\loader.conf, \EFI\Linux\basalt-<version>[+<tries>].efi
//! 2 BASALT-A   root slot A: the squashfs root image, raw
//! 3 BASALT-B   root slot B
//! 4 STATE      ext4, made by machined at first boot (config, identity)
//! 5 EPHEMERAL  ext4 for /var, made by machined at first boot in the free
//!              space after STATE (the disk may be larger than disk.raw)
//! ```
//!
//! A UKI names its root by the slot's unique GUID (`basalt.root=PARTUUID=…`
//! in its signed command line), and that GUID is derived from the root
//! image's sha256: the slot that holds an image carries that image's GUID.
//! So a UKI boots exactly the root image it was built with, whichever slot
//! an upgrade wrote it to.

use crate::gpt::{Guid, Partition, SECTOR, Table};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const MIB: u64 = 1024 * 1024;
/// Every partition starts on a MiB boundary.
pub const ALIGN: u64 = MIB;

pub const ESP_NAME: &str = "EFI";
pub const SLOT_A_NAME: &str = "BASALT-A";
pub const SLOT_B_NAME: &str = "BASALT-B";
pub const STATE_NAME: &str = "STATE";
pub const EPHEMERAL_NAME: &str = "EPHEMERAL";

pub const ESP_NUMBER: u32 = 1;
pub const SLOT_A_NUMBER: u32 = 2;
pub const SLOT_B_NUMBER: u32 = 3;
pub const STATE_NUMBER: u32 = 4;
pub const EPHEMERAL_NUMBER: u32 = 5;

/// EFI System Partition.
pub const ESP_TYPE: Guid = Guid([
    0xC1, 0x2A, 0x73, 0x28, 0xF8, 0x1F, 0x11, 0xD2, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
]);
/// Root partition, x86-64 (UAPI Discoverable Partitions Specification).
pub const ROOT_X86_64_TYPE: Guid = Guid([
    0x4F, 0x68, 0xBC, 0xE3, 0xE8, 0xCD, 0x4D, 0xB1, 0x96, 0xE7, 0xFB, 0xCA, 0xF9, 0x84, 0xB7, 0x09,
]);
/// Generic Linux filesystem data.
pub const LINUX_DATA_TYPE: Guid = Guid([
    0x0F, 0xC6, 0x3D, 0xAF, 0x84, 0x83, 0x47, 0x72, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4,
]);

/// Room for systemd-boot and three UKIs (running, previous, one being tried).
pub const ESP_SIZE: u64 = 256 * MIB;
pub const STATE_SIZE: u64 = 128 * MIB;
/// A root slot unless the image profile says otherwise: room for the images
/// that later upgrades bring, not only this one.
pub const DEFAULT_SLOT_SIZE: u64 = 1024 * MIB;
/// EPHEMERAL is only made when at least this much is free after STATE.
pub const MIN_EPHEMERAL: u64 = 256 * MIB;

/// systemd-boot, at the removable-media path: found without NVRAM entries,
/// so a copied or freshly written disk boots.
pub const ESP_BOOT_LOADER: &str = "EFI/BOOT/BOOTX64.EFI";
pub const ESP_LOADER_CONF: &str = "loader/loader.conf";
/// Type #2 entries: systemd-boot lists every `.efi` here.
pub const ESP_UKI_DIR: &str = "EFI/Linux";
/// `timeout 0`: no menu; the newest good entry boots (version sort and boot
/// counting choose it, see [`UkiName`]).
pub const LOADER_CONF: &str = "timeout 0\n";
/// How many times systemd-boot tries a new entry before it falls back.
pub const UPGRADE_TRIES: u32 = 3;

/// The kernel argument that names the root slot.
pub const ROOT_ARG: &str = "basalt.root=PARTUUID=";

/// The GUID of the slot that holds a root image whose sha256 is `root_sha256`.
pub fn root_slot_guid(root_sha256: &[u8; 32]) -> Guid {
    derived(b"basalt root slot", root_sha256)
}

/// A GUID for `role` (disk, ESP, STATE, …) of a disk built from `inputs`
/// (the root image's and the UKI's digests): fixed for fixed inputs.
pub fn derived(role: &[u8], inputs: &[u8]) -> Guid {
    let mut h = Sha256::new();
    h.update(role);
    h.update([0]);
    h.update(inputs);
    Guid::derived(&h.finalize().into())
}

/// The table of a new Basalt disk: ESP, slot A holding the root image whose
/// sha256 is `root_sha256`, an empty slot B, STATE. `seed` feeds the other
/// GUIDs (image-builder passes the digests of the root image and the UKI).
pub fn new_table(root_sha256: &[u8; 32], slot_size: u64, seed: &[u8]) -> Table {
    let mut partitions = BTreeMap::new();
    let mut next = ALIGN / SECTOR;
    let mut add = |n: u32, name: &str, type_guid: Guid, unique_guid: Guid, size: u64| {
        let sectors = size.div_ceil(ALIGN) * ALIGN / SECTOR;
        partitions.insert(
            n,
            Partition {
                type_guid,
                unique_guid,
                first_lba: next,
                last_lba: next + sectors - 1,
                attributes: 0,
                name: name.to_string(),
            },
        );
        next += sectors;
    };
    add(
        ESP_NUMBER,
        ESP_NAME,
        ESP_TYPE,
        derived(b"esp", seed),
        ESP_SIZE,
    );
    add(
        SLOT_A_NUMBER,
        SLOT_A_NAME,
        ROOT_X86_64_TYPE,
        root_slot_guid(root_sha256),
        slot_size,
    );
    add(
        SLOT_B_NUMBER,
        SLOT_B_NAME,
        ROOT_X86_64_TYPE,
        derived(b"slot b", seed),
        slot_size,
    );
    add(
        STATE_NUMBER,
        STATE_NAME,
        LINUX_DATA_TYPE,
        derived(b"state", seed),
        STATE_SIZE,
    );
    Table {
        disk_guid: derived(b"disk", seed),
        partitions,
    }
}

/// The size of a disk that holds [`new_table`] exactly: the partitions, the
/// leading MiB, and a trailing MiB for the backup table.
pub fn new_disk_size(table: &Table) -> u64 {
    let end = table
        .partitions
        .values()
        .map(|p| (p.last_lba + 1) * SECTOR)
        .max()
        .unwrap_or(ALIGN);
    end + ALIGN
}

/// A UKI's file name in `\EFI\Linux`: `basalt-<version>[+<left>[-<done>]].efi`.
/// systemd-boot (252+) decrements `left` (and bumps `done`) before it starts
/// an entry; an entry with `left == 0` sorts last, so the previous one boots.
/// machined "blesses" a good boot by renaming to the name without counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UkiName {
    pub version: String,
    pub counter: Option<BootCounter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootCounter {
    pub left: u32,
    pub done: u32,
}

impl UkiName {
    pub fn new(version: &str, counter: Option<BootCounter>) -> UkiName {
        UkiName {
            version: version.to_string(),
            counter,
        }
    }

    /// Parses a file name; `None` if it is not one of ours.
    pub fn parse(file: &str) -> Option<UkiName> {
        let stem = file
            .strip_suffix(".efi")
            .or_else(|| file.strip_suffix(".EFI"))?;
        let rest = stem.strip_prefix("basalt-")?;
        let Some((version, counter)) = rest.rsplit_once('+') else {
            return (!rest.is_empty()).then(|| UkiName::new(rest, None));
        };
        let (left, done) = match counter.split_once('-') {
            Some((l, d)) => (l.parse().ok()?, d.parse().ok()?),
            None => (counter.parse().ok()?, 0),
        };
        (!version.is_empty()).then(|| UkiName::new(version, Some(BootCounter { left, done })))
    }

    pub fn file_name(&self) -> String {
        match self.counter {
            None => format!("basalt-{}.efi", self.version),
            Some(BootCounter { left, done: 0 }) => format!("basalt-{}+{left}.efi", self.version),
            Some(BootCounter { left, done }) => {
                format!("basalt-{}+{left}-{done}.efi", self.version)
            }
        }
    }

    /// Blessed: the same entry without counters.
    pub fn blessed(&self) -> UkiName {
        UkiName::new(&self.version, None)
    }

    /// Marked bad: no tries left, so systemd-boot sorts it last.
    pub fn marked_bad(&self) -> UkiName {
        let done = self.counter.map_or(0, |c| c.done);
        UkiName::new(&self.version, Some(BootCounter { left: 0, done }))
    }

    pub fn is_bad(&self) -> bool {
        self.counter.is_some_and(|c| c.left == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::GptError;

    #[test]
    fn well_known_type_guids_print_as_the_specifications_write_them() {
        assert_eq!(ESP_TYPE.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(
            ROOT_X86_64_TYPE.to_string(),
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
        );
        assert_eq!(
            LINUX_DATA_TYPE.to_string(),
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        );
    }

    #[test]
    fn a_new_table_is_aligned_valid_and_fixed_for_fixed_inputs() -> Result<(), GptError> {
        let root = [7u8; 32];
        let t = new_table(&root, 64 * MIB, b"seed");
        let size = new_disk_size(&t);
        t.validate(size)?;
        assert_eq!(t, new_table(&root, 64 * MIB, b"seed"));
        assert_ne!(t.disk_guid, new_table(&root, 64 * MIB, b"other").disk_guid);
        for p in t.partitions.values() {
            assert_eq!(p.offset() % ALIGN, 0, "{p:?}");
        }
        let (n, a) = t
            .find_unique(root_slot_guid(&root))
            .ok_or(GptError::TooSmall(0))?;
        assert_eq!(
            (n, a.name.as_str(), a.size()),
            (SLOT_A_NUMBER, SLOT_A_NAME, 64 * MIB)
        );
        assert_eq!(t.free_tail(size, ALIGN), None, "disk.raw has no room left");
        let (first, _) = t
            .free_tail(size + MIN_EPHEMERAL + ALIGN, ALIGN)
            .ok_or(GptError::TooSmall(0))?;
        assert_eq!(first * SECTOR, size - ALIGN);
        Ok(())
    }

    #[test]
    fn uki_names_follow_systemd_boots_counter_series() {
        let new = UkiName::new("0.3.0", Some(BootCounter { left: 3, done: 0 }));
        assert_eq!(new.file_name(), "basalt-0.3.0+3.efi");
        for (name, left, done) in [
            ("basalt-0.3.0+2-1.efi", 2, 1),
            ("basalt-0.3.0+0-3.efi", 0, 3),
        ] {
            let parsed = UkiName::parse(name);
            assert_eq!(
                parsed,
                Some(UkiName::new("0.3.0", Some(BootCounter { left, done })))
            );
            assert_eq!(parsed.map(|p| p.file_name()).as_deref(), Some(name));
        }
        let tried = UkiName::parse("basalt-0.3.0+0-3.efi");
        assert!(tried.as_ref().is_some_and(UkiName::is_bad));
        assert_eq!(
            tried.map(|t| t.blessed().file_name()).as_deref(),
            Some("basalt-0.3.0.efi")
        );
        assert_eq!(
            UkiName::parse("basalt-1+2-1.efi").map(|n| n.marked_bad().file_name()),
            Some("basalt-1+0-1.efi".into())
        );
        for not_ours in [
            "systemd-bootx64.efi",
            "basalt-.efi",
            "basalt-1+x.efi",
            "basalt-1",
        ] {
            assert_eq!(UkiName::parse(not_ours), None, "{not_ours}");
        }
    }
}

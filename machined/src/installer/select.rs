//! Which disk `[machine.install.selector]` names: the one disk whose
//! attributes match every key it sets. None or several is a refusal that
//! shows every disk with its attributes, so the operator can write a
//! selector that names one (kernel names follow probe order, so "the first
//! match" would not be the same disk on every boot).

use crate::host::disk::Disk;
use basalt_api::config::{DiskSelector, DiskType, glob_matches};

/// Whether `disk` has every attribute `sel` asks for. An attribute the
/// disk does not report matches nothing.
pub fn matches(sel: &DiskSelector, disk: &Disk) -> bool {
    let exact = |want: &Option<String>, have: &Option<String>| match want {
        None => true,
        Some(w) => have.as_deref() == Some(w.as_str()),
    };
    sel.size.as_ref().is_none_or(|s| s.matches(disk.size))
        && sel
            .model
            .as_ref()
            .is_none_or(|m| disk.model.as_deref().is_some_and(|d| glob_matches(m, d)))
        && exact(&sel.serial, &disk.serial)
        && exact(&sel.wwid, &disk.wwid)
        && sel.kind.is_none_or(|k| kind(disk) == Some(k))
}

/// The kind of disk, as a selector's `type` sees it.
pub fn kind(disk: &Disk) -> Option<DiskType> {
    DiskType::of(&disk.name, disk.rotational)
}

/// The one disk of `disks` that `sel` matches, or why there is not one.
pub fn select<'a>(sel: &DiskSelector, disks: &'a [Disk]) -> Result<&'a Disk, String> {
    let found: Vec<&Disk> = disks.iter().filter(|d| matches(sel, d)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no disk matches ({sel}); the disks here: {}",
            listing(disks.iter())
        )),
        several => Err(format!(
            "{} disks match ({sel}) and an install needs exactly one; add `serial` or `wwid` to say which: {}",
            several.len(),
            listing(several.iter().copied())
        )),
    }
}

fn listing<'a>(disks: impl Iterator<Item = &'a Disk>) -> String {
    let all: Vec<String> = disks.map(describe).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join("; ")
    }
}

/// `/dev/vda: 4.00 GiB (4294967296 B), type virtio, model none, serial
/// "x", wwid none`: what a selector can match on, as it would be written.
pub fn describe(disk: &Disk) -> String {
    let text = |v: &Option<String>| v.as_ref().map_or("none".into(), |v| format!("{v:?}"));
    format!(
        "{}: {:.2} GiB ({} B), type {}, model {}, serial {}, wwid {}",
        disk.path(),
        disk.size as f64 / (1u64 << 30) as f64,
        disk.size,
        kind(disk).map_or("unknown".into(), |k| k.to_string()),
        text(&disk.model),
        text(&disk.serial),
        text(&disk.wwid),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// A machine with an NVMe disk, two SATA SSDs of one model, a spinning
    /// disk and a virtio disk, and an SD card that reports little.
    fn disks() -> Vec<Disk> {
        let disk = |name: &str, size: u64, model: &str, serial: &str, wwid: &str, rot| Disk {
            name: name.into(),
            size,
            model: (!model.is_empty()).then(|| model.into()),
            serial: (!serial.is_empty()).then(|| serial.into()),
            wwid: (!wwid.is_empty()).then(|| wwid.into()),
            rotational: rot,
        };
        vec![
            disk("mmcblk0", 32 * GIB, "", "", "", None),
            disk(
                "nvme0n1",
                1000 * GIB,
                "Samsung SSD 980 PRO 1TB",
                "S5GXNF0R1",
                "eui.002538b",
                Some(false),
            ),
            disk(
                "sda",
                480 * GIB,
                "INTEL SSDSC2KB48",
                "BTYF1",
                "naa.55cd2e41",
                Some(false),
            ),
            disk(
                "sdb",
                480 * GIB,
                "INTEL SSDSC2KB48",
                "BTYF2",
                "naa.55cd2e42",
                Some(false),
            ),
            disk("sdc", 4000 * GIB, "ST4000NM0035", "ZC1", "", Some(true)),
            disk("vda", 8 * GIB, "", "basalt-target", "", Some(true)),
        ]
    }

    fn sel(toml: &str) -> DiskSelector {
        toml::from_str(toml).unwrap()
    }

    fn pick(s: &str) -> Result<String, String> {
        let all = disks();
        select(&sel(s), &all).map(|d| d.name.clone())
    }

    #[test]
    fn each_key_narrows_to_one_disk() {
        assert_eq!(pick("serial = \"BTYF2\"").unwrap(), "sdb");
        assert_eq!(pick("wwid = \"naa.55cd2e41\"").unwrap(), "sda");
        assert_eq!(pick("type = \"nvme\"").unwrap(), "nvme0n1");
        assert_eq!(pick("type = \"hdd\"").unwrap(), "sdc");
        assert_eq!(pick("type = \"virtio\"").unwrap(), "vda");
        assert_eq!(pick("model = \"Samsung SSD 980*\"").unwrap(), "nvme0n1");
        assert_eq!(pick("size = \"> 2TB\"").unwrap(), "sdc");
        assert_eq!(
            pick("model = \"INTEL*\"\nserial = \"BTYF1\"\nsize = \">= 400GiB\"").unwrap(),
            "sda"
        );
        assert_eq!(pick("size = \"< 16GiB\"").unwrap(), "vda");
        assert_eq!(
            pick("size = \"= 8GiB\"\nserial = \"basalt-target\"\ntype = \"virtio\"").unwrap(),
            "vda"
        );
    }

    #[test]
    fn keys_are_anded_and_missing_attributes_never_match() {
        // The serial is the NVMe disk's, the type is not.
        let err = pick("serial = \"S5GXNF0R1\"\ntype = \"ssd\"").unwrap_err();
        assert!(err.starts_with("no disk matches (serial = \"S5GXNF0R1\", type = \"ssd\"); the disks here: /dev/mmcblk0: 32.00 GiB (34359738368 B), type unknown, model none, serial none, wwid none; /dev/nvme0n1: "), "{err}");
        // The SD card reports no model, so no model pattern matches it,
        // not even `*`; it has no known type either.
        assert!(select(&sel("model = \"*\""), &disks()[..1]).is_err());
        assert!(select(&sel("type = \"ssd\""), &disks()[..1]).is_err());
        // Exact means whole: a prefix of a serial is not the serial.
        assert!(pick("serial = \"BTYF\"").is_err());
        assert!(pick("model = \"INTEL\"").is_err());
    }

    #[test]
    fn a_selector_matching_several_disks_is_refused_with_the_matches() {
        let err = pick("model = \"INTEL SSDSC2KB48\"").unwrap_err();
        assert_eq!(
            err,
            "2 disks match (model = \"INTEL SSDSC2KB48\") and an install needs exactly one; add `serial` or `wwid` to say which: \
             /dev/sda: 480.00 GiB (515396075520 B), type ssd, model \"INTEL SSDSC2KB48\", serial \"BTYF1\", wwid \"naa.55cd2e41\"; \
             /dev/sdb: 480.00 GiB (515396075520 B), type ssd, model \"INTEL SSDSC2KB48\", serial \"BTYF2\", wwid \"naa.55cd2e42\""
        );
        let err = pick("type = \"ssd\"").unwrap_err();
        assert!(err.starts_with("2 disks match (type = \"ssd\")"), "{err}");
    }

    #[test]
    fn no_disks_at_all_says_so() {
        let err = select(&sel("type = \"nvme\""), &[]).unwrap_err();
        assert_eq!(
            err,
            "no disk matches (type = \"nvme\"); the disks here: none"
        );
    }
}

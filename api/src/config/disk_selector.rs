//! `[machine.install.selector]`: which disk to install to, said by what the
//! disk is (size, model, serial, WWID, type) rather than by its kernel name,
//! which depends on probe order and so differs between machines of a fleet.
//!
//! The selector must match exactly one disk: kernel names are not stable
//! across boots, so "the first match" would not name the same disk twice,
//! and the install overwrites the disk it picks. Every key given must
//! match (they are ANDed). Matching a concrete disk is machined's job
//! (its installer reads the attributes from sysfs); this module holds the
//! typed keys and the comparisons.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The keys of `[machine.install.selector]`; all that are set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSelector {
    /// The disk's size against a bound, e.g. `>= 8GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<SizeMatch>,
    /// The model the disk reports (`/sys/block/<name>/device/model`),
    /// whole; `*` stands for any run of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The serial number, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The World Wide Identifier (`/sys/block/<name>/device/wwid`), exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwid: Option<String>,
    /// What kind of disk it is.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<DiskType>,
}

impl DiskSelector {
    /// Whether no key is set (such a selector would match every disk).
    pub fn is_empty(&self) -> bool {
        *self == DiskSelector::default()
    }
}

impl fmt::Display for DiskSelector {
    /// `size >= 8GiB, serial = "x"`: the keys set, as they are written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(s) = &self.size {
            parts.push(format!("size {s}"));
        }
        for (key, value) in [
            ("model", &self.model),
            ("serial", &self.serial),
            ("wwid", &self.wwid),
        ] {
            if let Some(v) = value {
                parts.push(format!("{key} = {v:?}"));
            }
        }
        if let Some(k) = self.kind {
            parts.push(format!("type = \"{k}\""));
        }
        f.write_str(&parts.join(", "))
    }
}

/// What kind of disk the kernel says it is. The transport comes from the
/// driver's device names (virtio-blk names its disks `vd*`, NVMe `nvme*`);
/// for every other disk, `queue/rotational` tells a spinning disk from a
/// solid-state one. Kinds do not overlap: an NVMe disk is `nvme`, not `ssd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskType {
    /// Not NVMe or virtio, `queue/rotational` = 0 (SATA/SAS/USB SSDs, SD
    /// and eMMC cards).
    Ssd,
    /// Not NVMe or virtio, `queue/rotational` = 1.
    Hdd,
    /// An NVMe namespace (`nvme0n1`).
    Nvme,
    /// A virtio-blk disk of a virtual machine (`vda`).
    Virtio,
}

impl DiskType {
    /// The kind of the disk named `name` (`vda`, `sda`) whose
    /// `queue/rotational` reads `rotational`; None when that is unknown.
    pub fn of(name: &str, rotational: Option<bool>) -> Option<DiskType> {
        if name.starts_with("nvme") {
            Some(DiskType::Nvme)
        } else if name.starts_with("vd") {
            Some(DiskType::Virtio)
        } else {
            rotational.map(|r| if r { DiskType::Hdd } else { DiskType::Ssd })
        }
    }
}

impl fmt::Display for DiskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskType::Ssd => "ssd",
            DiskType::Hdd => "hdd",
            DiskType::Nvme => "nvme",
            DiskType::Virtio => "virtio",
        })
    }
}

/// `pattern` matches `text` whole, each `*` standing for any run of
/// characters (none included); every other character stands for itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    // split always yields at least one part.
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// How a disk's size is compared with the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeOp {
    AtLeast,
    AtMost,
    Above,
    Below,
    Exactly,
}

impl SizeOp {
    const ALL: [(&'static str, SizeOp); 5] = [
        (">=", SizeOp::AtLeast),
        ("<=", SizeOp::AtMost),
        (">", SizeOp::Above),
        ("<", SizeOp::Below),
        ("=", SizeOp::Exactly),
    ];

    fn symbol(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("=", |(s, _)| s)
    }
}

/// Units of a size: binary (KiB = 1024 B) and decimal (KB = 1000 B).
const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// `>= 8GiB`: a comparison and a whole number of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeMatch {
    pub op: SizeOp,
    pub bytes: u64,
    /// The number and unit as written (`8GiB`), for messages.
    written: String,
}

impl SizeMatch {
    pub fn matches(&self, size: u64) -> bool {
        match self.op {
            SizeOp::AtLeast => size >= self.bytes,
            SizeOp::AtMost => size <= self.bytes,
            SizeOp::Above => size > self.bytes,
            SizeOp::Below => size < self.bytes,
            SizeOp::Exactly => size == self.bytes,
        }
    }
}

impl FromStr for SizeMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let units: Vec<&str> = UNITS.iter().map(|(u, _)| *u).collect();
        let text = s.trim();
        let Some((symbol, op)) = SizeOp::ALL
            .iter()
            .find(|(symbol, _)| text.starts_with(symbol))
        else {
            return Err(format!(
                "`{s}` has no comparison; write one of >=, <=, >, <, = before the size, e.g. \">= 8GiB\""
            ));
        };
        let amount = text[symbol.len()..].trim();
        let digits = amount
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(amount.len());
        let (number, unit) = (&amount[..digits], amount[digits..].trim());
        if number.is_empty() {
            return Err(format!(
                "`{s}`: expected a whole number and a unit after `{symbol}`, e.g. \"{symbol} 8GiB\""
            ));
        }
        if unit.starts_with(['.', ',']) {
            return Err(format!(
                "`{s}`: whole numbers only; write a smaller unit instead of a fraction, e.g. 1536MiB rather than 1.5GiB"
            ));
        }
        let Some((_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "`{s}`: {} is not a unit; write the size with one of {}, e.g. \"{symbol} {number}GiB\"",
                if unit.is_empty() {
                    "no unit".to_string()
                } else {
                    format!("`{unit}`")
                },
                units.join(", ")
            ));
        };
        let bytes = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(*scale))
            .ok_or_else(|| format!("`{s}` is larger than any disk (over 16 EiB)"))?;
        Ok(SizeMatch {
            op: *op,
            bytes,
            written: format!("{number}{unit}"),
        })
    }
}

impl fmt::Display for SizeMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.written)
    }
}

impl<'de> Deserialize<'de> for SizeMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for SizeMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn sizes_parse_with_each_comparison_and_unit() {
        let m: SizeMatch = ">= 8GiB".parse().unwrap();
        assert_eq!((m.op, m.bytes), (SizeOp::AtLeast, 8 * GIB));
        assert_eq!(m.to_string(), ">= 8GiB");
        assert!(m.matches(8 * GIB) && m.matches(9 * GIB) && !m.matches(8 * GIB - 1));
        let m: SizeMatch = "<=500 GB".parse().unwrap();
        assert_eq!((m.op, m.bytes), (SizeOp::AtMost, 500_000_000_000));
        assert_eq!(m.to_string(), "<= 500GB");
        assert!(m.matches(500_000_000_000) && !m.matches(500_000_000_001));
        let m: SizeMatch = "> 1TiB".parse().unwrap();
        assert!(!m.matches(1 << 40) && m.matches((1 << 40) + 1));
        let m: SizeMatch = "< 512MB".parse().unwrap();
        assert!(m.matches(511_999_999) && !m.matches(512_000_000));
        let m: SizeMatch = "= 4096B".parse().unwrap();
        assert!(m.matches(4096) && !m.matches(4097));
        for (text, bytes) in [
            ("= 1KiB", 1024),
            ("= 1MiB", 1 << 20),
            ("= 1KB", 1000),
            ("= 1MB", 1_000_000),
            ("= 2TB", 2_000_000_000_000),
        ] {
            assert_eq!(text.parse::<SizeMatch>().unwrap().bytes, bytes, "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_what_to_write() {
        for (text, says) in [
            ("8GiB", "has no comparison; write one of >=, <=, >, <, ="),
            (">= GiB", "expected a whole number and a unit after `>=`"),
            (">= 1.5GiB", "whole numbers only"),
            (
                ">= 8",
                "no unit is not a unit; write the size with one of B, KiB",
            ),
            (">= 8G", "`G` is not a unit"),
            (">= 8gib", "`gib` is not a unit"),
            ("=> 8GiB", "after `=`, e.g. \"= 8GiB\""),
            (">= 99999999TiB", "larger than any disk"),
        ] {
            let err = text.parse::<SizeMatch>().unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn model_globs_match_whole_strings() {
        assert!(glob_matches("QEMU HARDDISK", "QEMU HARDDISK"));
        assert!(!glob_matches("QEMU", "QEMU HARDDISK"), "whole string");
        assert!(glob_matches("QEMU*", "QEMU HARDDISK"));
        assert!(glob_matches("*HARDDISK", "QEMU HARDDISK"));
        assert!(glob_matches(
            "Samsung SSD 9*0 PRO*",
            "Samsung SSD 980 PRO 1TB"
        ));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*a", "aa"));
        assert!(!glob_matches("a*a", "a"), "the two `a`s may not overlap");
        assert!(!glob_matches("*SSD*", "QEMU HARDDISK"));
        assert!(!glob_matches("qemu*", "QEMU HARDDISK"), "case matters");
    }

    #[test]
    fn disk_types_come_from_the_driver_name_then_rotational() {
        assert_eq!(DiskType::of("nvme0n1", Some(false)), Some(DiskType::Nvme));
        assert_eq!(DiskType::of("vda", Some(true)), Some(DiskType::Virtio));
        assert_eq!(DiskType::of("sda", Some(false)), Some(DiskType::Ssd));
        assert_eq!(DiskType::of("sdb", Some(true)), Some(DiskType::Hdd));
        assert_eq!(DiskType::of("mmcblk0", None), None);
    }

    #[test]
    fn a_selector_shows_the_keys_it_sets() {
        let s = DiskSelector {
            size: Some(">=8GiB".parse().unwrap()),
            serial: Some("basalt-target".into()),
            kind: Some(DiskType::Virtio),
            ..DiskSelector::default()
        };
        assert_eq!(
            s.to_string(),
            "size >= 8GiB, serial = \"basalt-target\", type = \"virtio\""
        );
        assert!(!s.is_empty() && DiskSelector::default().is_empty());
    }
}

//! GUID Partition Tables (UEFI 2.10 §5.3): encode and decode, no I/O.
//!
//! image-builder writes `disk.raw` with it, and machined reads the boot disk
//! with it (to find the root slot by its unique GUID), grows it (EPHEMERAL at
//! first boot, the backup header moved to the end of a larger disk) and
//! rewrites a slot's GUID on upgrade. Both sides share this one codec, and
//! `sgdisk` checks what it writes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub const SECTOR: u64 = 512;
/// Entries in the array: the UEFI minimum, what every tool writes.
pub const ENTRIES: u32 = 128;
pub const ENTRY_SIZE: u32 = 128;
/// Sectors the entry array takes (128 × 128 bytes).
pub const ENTRY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;
/// Protective MBR, header, entry array.
pub const FIRST_USABLE: u64 = 2 + ENTRY_SECTORS;
const HEADER_SIZE: u32 = 92;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;
/// Partition names are at most 36 UTF-16 code units.
pub const NAME_UNITS: usize = 36;

/// A GUID, held in the byte order it is printed in (RFC 4122). On disk the
/// first three fields are little-endian ("mixed-endian").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    pub const ZERO: Guid = Guid([0; 16]);

    /// Decode the on-disk (mixed-endian) form.
    pub fn from_disk(b: &[u8; 16]) -> Guid {
        let mut g = *b;
        g[0..4].reverse();
        g[4..6].reverse();
        g[6..8].reverse();
        Guid(g)
    }

    /// The on-disk (mixed-endian) form.
    pub fn to_disk(self) -> [u8; 16] {
        let mut b = self.0;
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        b
    }

    /// A GUID made from the first 16 bytes of `digest`, marked as an RFC 4122
    /// version-4 (random) GUID, which to every tool it is: derived ids look
    /// like any other, yet the same input always gives the same GUID.
    pub fn derived(digest: &[u8; 32]) -> Guid {
        let mut g = [0u8; 16];
        g.copy_from_slice(&digest[..16]);
        g[6] = (g[6] & 0x0f) | 0x40;
        g[8] = (g[8] & 0x3f) | 0x80;
        Guid(g)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a GUID (expected 8-4-4-4-12 hex digits)")]
pub struct GuidError(pub String);

impl FromStr for Guid {
    type Err = GuidError;
    fn from_str(s: &str) -> Result<Guid, GuidError> {
        let err = || GuidError(s.to_string());
        let groups: Vec<&str> = s.split('-').collect();
        if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
            return Err(err());
        }
        let hex: String = groups.concat();
        let mut g = [0u8; 16];
        for (i, byte) in g.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(err)?, 16)
                .map_err(|_| err())?;
        }
        Ok(Guid(g))
    }
}

/// One partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

impl Partition {
    pub fn sectors(&self) -> u64 {
        self.last_lba + 1 - self.first_lba
    }
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    pub fn size(&self) -> u64 {
        self.sectors() * SECTOR
    }
}

/// A partition table: the disk's GUID and its partitions by number (1-based,
/// as the kernel names them: `vda1` is number 1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub disk_guid: Guid,
    pub partitions: BTreeMap<u32, Partition>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    #[error("the disk is {0} bytes; a GPT needs at least {min} bytes", min = (2 * ENTRY_SECTORS + 4) * SECTOR)]
    TooSmall(u64),
    #[error("the disk's size {0} is not a multiple of {SECTOR}-byte sectors")]
    Unaligned(u64),
    #[error("no GPT: neither the primary header (LBA 1) nor the backup (LBA {0}) is valid: {1}")]
    NoTable(u64, String),
    #[error("partition {0}: {1}")]
    Partition(u32, String),
    #[error("partitions {0} and {1} overlap")]
    Overlap(u32, u32),
}

/// The bytes of a table for one disk size: `primary` goes at offset 0
/// (protective MBR, header, entries), `backup` at `backup_offset` (entries,
/// then the backup header in the disk's last sector).
#[derive(Debug, Clone)]
pub struct Encoded {
    pub primary: Vec<u8>,
    pub backup: Vec<u8>,
    pub backup_offset: u64,
}

/// The last sector a partition may use on a disk of `sectors` sectors.
pub fn last_usable(sectors: u64) -> u64 {
    sectors - 2 - ENTRY_SECTORS
}

fn sectors_of(disk_bytes: u64) -> Result<u64, GptError> {
    if !disk_bytes.is_multiple_of(SECTOR) {
        return Err(GptError::Unaligned(disk_bytes));
    }
    let sectors = disk_bytes / SECTOR;
    if sectors < 2 * ENTRY_SECTORS + 4 {
        return Err(GptError::TooSmall(disk_bytes));
    }
    Ok(sectors)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn guid_at(b: &[u8], at: usize) -> Guid {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Guid::from_disk(&a)
}

impl Table {
    /// Checks every partition against a disk of `disk_bytes`: names fit,
    /// types are set, extents are inside the usable area and disjoint.
    pub fn validate(&self, disk_bytes: u64) -> Result<(), GptError> {
        let sectors = sectors_of(disk_bytes)?;
        let last = last_usable(sectors);
        for (&n, p) in &self.partitions {
            let bad = |m: String| Err(GptError::Partition(n, m));
            if n == 0 || n > ENTRIES {
                return bad(format!("numbers run from 1 to {ENTRIES}"));
            }
            if p.type_guid == Guid::ZERO {
                return bad("the type GUID is zero (that marks an unused entry)".into());
            }
            if p.name.encode_utf16().count() > NAME_UNITS {
                return bad(format!(
                    "name `{}` is over {NAME_UNITS} UTF-16 units",
                    p.name
                ));
            }
            if p.first_lba < FIRST_USABLE || p.last_lba > last || p.first_lba > p.last_lba {
                return bad(format!(
                    "sectors {}..={} are outside the usable {FIRST_USABLE}..={last}",
                    p.first_lba, p.last_lba
                ));
            }
        }
        let parts: Vec<(&u32, &Partition)> = self.partitions.iter().collect();
        for (i, (a, pa)) in parts.iter().enumerate() {
            for (b, pb) in &parts[i + 1..] {
                if pa.first_lba <= pb.last_lba && pb.first_lba <= pa.last_lba {
                    return Err(GptError::Overlap(**a, **b));
                }
            }
        }
        Ok(())
    }

    /// The partition whose unique GUID is `guid`.
    pub fn find_unique(&self, guid: Guid) -> Option<(u32, &Partition)> {
        self.partitions
            .iter()
            .find(|(_, p)| p.unique_guid == guid)
            .map(|(n, p)| (*n, p))
    }

    /// The first partition named `name`.
    pub fn find_name(&self, name: &str) -> Option<(u32, &Partition)> {
        self.partitions
            .iter()
            .find(|(_, p)| p.name == name)
            .map(|(n, p)| (*n, p))
    }

    /// The free space after the last partition on a disk of `disk_bytes`,
    /// in whole units of `align` bytes: `(first_lba, last_lba)`.
    pub fn free_tail(&self, disk_bytes: u64, align: u64) -> Option<(u64, u64)> {
        let sectors = sectors_of(disk_bytes).ok()?;
        let end = self
            .partitions
            .values()
            .map(|p| p.last_lba + 1)
            .max()
            .unwrap_or(FIRST_USABLE);
        let align = (align / SECTOR).max(1);
        let first = end.div_ceil(align) * align;
        // The end rounds down too: the tail is whole aligned units.
        let last = (last_usable(sectors) + 1) / align * align;
        (first < last).then_some((first, last - 1))
    }

    fn entries(&self) -> Vec<u8> {
        let mut out = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (&n, p) in &self.partitions {
            let e = &mut out[((n - 1) * ENTRY_SIZE) as usize..(n * ENTRY_SIZE) as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_disk());
            e[16..32].copy_from_slice(&p.unique_guid.to_disk());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (i, unit) in p.name.encode_utf16().take(NAME_UNITS).enumerate() {
                e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
            }
        }
        out
    }

    fn header(&self, sectors: u64, backup: bool, entries_crc: u32) -> Vec<u8> {
        let last = sectors - 1;
        let (current, other, entries_lba) = if backup {
            (last, 1, last - ENTRY_SECTORS)
        } else {
            (1, last, 2)
        };
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&other.to_le_bytes());
        h[40..48].copy_from_slice(&FIRST_USABLE.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable(sectors).to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_disk());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The table's bytes for a disk of `disk_bytes` (validated first).
    pub fn encode(&self, disk_bytes: u64) -> Result<Encoded, GptError> {
        self.validate(disk_bytes)?;
        let sectors = disk_bytes / SECTOR;
        let entries = self.entries();
        let crc = crc32fast::hash(&entries);
        let mut primary = protective_mbr(sectors);
        primary.extend(self.header(sectors, false, crc));
        primary.extend(&entries);
        let mut backup = entries;
        backup.extend(self.header(sectors, true, crc));
        Ok(Encoded {
            primary,
            backup,
            backup_offset: (sectors - 1 - ENTRY_SECTORS) * SECTOR,
        })
    }

    /// Decodes a table, given a way to read `len` bytes at an offset of a
    /// disk of `disk_bytes`: the primary if it is intact, else the backup.
    pub fn decode<E: fmt::Display>(
        disk_bytes: u64,
        mut read_at: impl FnMut(u64, usize) -> Result<Vec<u8>, E>,
    ) -> Result<Table, GptError> {
        let sectors = sectors_of(disk_bytes)?;
        let primary = match Self::decode_at(1, &mut read_at) {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        Self::decode_at(sectors - 1, &mut read_at).map_err(|backup| {
            GptError::NoTable(sectors - 1, format!("primary: {primary}; backup: {backup}"))
        })
    }

    fn decode_at<E: fmt::Display>(
        lba: u64,
        read_at: &mut impl FnMut(u64, usize) -> Result<Vec<u8>, E>,
    ) -> Result<Table, String> {
        let h = read_at(lba * SECTOR, SECTOR as usize).map_err(|e| e.to_string())?;
        if h.len() < SECTOR as usize || &h[0..8] != SIGNATURE {
            return Err("no `EFI PART` signature".into());
        }
        let size = le32(&h, 12);
        if !(HEADER_SIZE..=SECTOR as u32).contains(&size) {
            return Err(format!("header size {size}"));
        }
        let mut zeroed = h[..size as usize].to_vec();
        zeroed[16..20].fill(0);
        if crc32fast::hash(&zeroed) != le32(&h, 16) {
            return Err("header CRC mismatch".into());
        }
        if le64(&h, 24) != lba {
            return Err(format!("header says it is at LBA {}", le64(&h, 24)));
        }
        let count = le32(&h, 80);
        let entry_size = le32(&h, 84);
        if !(128..=4096).contains(&entry_size) || !entry_size.is_power_of_two() || count > 4096 {
            return Err(format!("{count} entries of {entry_size} bytes"));
        }
        let array = read_at(le64(&h, 72) * SECTOR, (count * entry_size) as usize)
            .map_err(|e| e.to_string())?;
        if array.len() != (count * entry_size) as usize {
            return Err("short entry array".into());
        }
        if crc32fast::hash(&array) != le32(&h, 88) {
            return Err("entry array CRC mismatch".into());
        }
        let mut partitions = BTreeMap::new();
        for (i, e) in array.chunks_exact(entry_size as usize).enumerate() {
            let type_guid = guid_at(e, 0);
            if type_guid == Guid::ZERO {
                continue;
            }
            let units: Vec<u16> = e[56..128]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|u| *u != 0)
                .collect();
            partitions.insert(
                i as u32 + 1,
                Partition {
                    type_guid,
                    unique_guid: guid_at(e, 16),
                    first_lba: le64(e, 32),
                    last_lba: le64(e, 40),
                    attributes: le64(e, 48),
                    name: String::from_utf16_lossy(&units),
                },
            );
        }
        Ok(Table {
            disk_guid: guid_at(&h, 56),
            partitions,
        })
    }
}

/// LBA 0: one partition of type 0xEE covering the disk (up to 2 TiB), so
/// MBR-only tools see the disk as in use.
fn protective_mbr(sectors: u64) -> Vec<u8> {
    let mut m = vec![0u8; SECTOR as usize];
    let e = &mut m[446..462];
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    e[12..16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

#[cfg(test)]
mod tests;

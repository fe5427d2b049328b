//! The EFI System Partition as a FAT32 image, written in Rust (`fatfs`):
//! systemd-boot, `loader.conf` and UKIs.
//!
//! Reproducible: the volume id comes from the caller (derived from the build
//! inputs), every timestamp is `SOURCE_DATE_EPOCH` (clamped to 1980, FAT's
//! epoch), and directories and files are created in sorted path order, so
//! the same files give the same bytes.

use fatfs::{Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time};
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// UEFI firmware (EDK2) decides FAT12/16/32 by the cluster count alone, and
/// below this many clusters a volume is not FAT32.
const FAT32_MIN_CLUSTERS: u64 = 65_525;
const MIB: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ESP path {0:?}: expected a relative path of plain names")]
    Path(String),
    #[error("the ESP ({size} bytes) is too small for FAT32 with 512-byte clusters")]
    TooSmall { size: u64 },
    #[error("the files ({need} bytes) do not fit in an ESP of {size} bytes")]
    Full { need: u64, size: u64 },
}

/// The files of an ESP: path inside it (`EFI/BOOT/BOOTX64.EFI`) → host file.
pub type Files = BTreeMap<String, PathBuf>;

/// An ESP size that holds `files` with room for FAT32's minimum cluster
/// count: what a read-only ESP (the ISO's) needs, rounded up to a MiB.
pub fn size_for(files: &Files) -> Result<u64, EspError> {
    let mut data = 0;
    for host in files.values() {
        data += std::fs::metadata(host)
            .map_err(|source| EspError::Io {
                op: "reading the size of",
                path: host.clone(),
                source,
            })?
            .len()
            .div_ceil(4096)
            * 4096;
    }
    // 2% + 4 MiB for the FATs, directories and cluster slack; at least
    // enough 512-byte clusters for FAT32.
    let size = (data + data / 50 + 4 * MIB).max(FAT32_MIN_CLUSTERS * 512 + 4 * MIB);
    Ok(size.div_ceil(MIB) * MIB)
}

/// The largest cluster that still leaves FAT32's minimum cluster count.
fn cluster_size(size: u64) -> Result<u32, EspError> {
    for bytes in [4096u32, 2048, 1024, 512] {
        // Leave ~1% for the reserved sectors and the two FATs.
        if size / u64::from(bytes) * 99 / 100 > FAT32_MIN_CLUSTERS {
            return Ok(bytes);
        }
    }
    Err(EspError::TooSmall { size })
}

/// FAT timestamps are local-time-less civil dates from 1980 to 2107.
fn fat_time(epoch: u32) -> DateTime {
    let days = i64::from(epoch) / 86_400;
    let secs = i64::from(epoch) % 86_400;
    let (y, m, d) = basalt_api::scope::civil_from_days(days);
    if y < 1980 {
        return DateTime {
            date: Date {
                year: 1980,
                month: 1,
                day: 1,
            },
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        };
    }
    DateTime {
        date: Date {
            year: y as u16,
            month: m as u16,
            day: d as u16,
        },
        time: Time {
            hour: (secs / 3600) as u16,
            min: (secs / 60 % 60) as u16,
            sec: (secs % 60) as u16,
            millis: 0,
        },
    }
}

/// Every time fatfs asks for "now" is the build's epoch.
#[derive(Debug)]
struct FixedTime(DateTime);

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// Checks an ESP path and splits it into its names.
fn components(path: &str) -> Result<Vec<&str>, EspError> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\\'))
    {
        return Err(EspError::Path(path.into()));
    }
    Ok(parts)
}

/// Writes a FAT32 image of `size` bytes holding `files` to `out`.
pub fn write(
    out: &Path,
    size: u64,
    files: &Files,
    volume_id: u32,
    epoch: u32,
) -> Result<(), EspError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| EspError::Io { op, path, source }
    };
    for path in files.keys() {
        components(path)?;
    }
    let bytes_per_cluster = cluster_size(size)?;
    let mut disk = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(io("creating", out))?;
    disk.set_len(size).map_err(io("sizing", out))?;
    fatfs::format_volume(
        &mut disk,
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat32)
            .bytes_per_cluster(bytes_per_cluster)
            .volume_id(volume_id)
            .volume_label(*b"EFI        "),
    )
    .map_err(io("formatting FAT32 in", out))?;
    disk.seek(SeekFrom::Start(0)).map_err(io("seeking", out))?;
    // fatfs wants a `&'static` clock; one tiny leak per ESP written.
    let clock: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_time(epoch))));
    let fs = FileSystem::new(
        &mut disk,
        FsOptions::new()
            .time_provider(clock)
            .update_accessed_date(false),
    )
    .map_err(io("opening the new FAT32 in", out))?;
    let need: u64 = files
        .values()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let free = fs
        .stats()
        .map(|s| u64::from(s.free_clusters()) * u64::from(s.cluster_size()))
        .map_err(io("reading the free space of", out))?;
    if need > free {
        return Err(EspError::Full { need, size });
    }
    add_files(&fs, files, out)?;
    fs.unmount().map_err(io("closing", out))?;
    fix_dot_entries(&disk).map_err(io("repairing directories in", out))?;
    disk.sync_all().map_err(io("syncing", out))?;
    Ok(())
}

const DIR_ENTRY: usize = 32;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LFN: u8 = 0x0F;

/// fatfs 0.3 (with long names on) writes a long-name entry before `.` and
/// `..` in every new directory, which fsck.fat rightly calls corrupt: the
/// dot entries must be the directory's first two, bare. This rewrites the
/// first cluster of every directory to `.`, `..` (cluster 0 when the parent
/// is the root, as the FAT spec has it), then the rest, in order.
fn fix_dot_entries(disk: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut boot = [0u8; 512];
    disk.read_exact_at(&mut boot, 0)?;
    let bytes_per_sector = u64::from(u16::from_le_bytes([boot[11], boot[12]]));
    let cluster = bytes_per_sector * u64::from(boot[13]);
    let reserved = u64::from(u16::from_le_bytes([boot[14], boot[15]]));
    let fats = u64::from(boot[16]);
    let fat_sectors = u64::from(u32::from_le_bytes([boot[36], boot[37], boot[38], boot[39]]));
    let root = u32::from_le_bytes([boot[44], boot[45], boot[46], boot[47]]);
    let data = (reserved + fats * fat_sectors) * bytes_per_sector;
    let at = |c: u32| data + u64::from(c - 2) * cluster;
    let fat_entry = |c: u32| -> std::io::Result<u32> {
        let mut e = [0u8; 4];
        disk.read_exact_at(&mut e, reserved * bytes_per_sector + u64::from(c) * 4)?;
        Ok(u32::from_le_bytes(e) & 0x0FFF_FFFF)
    };
    let mut todo = vec![(root, 0u32)];
    while let Some((dir, parent)) = todo.pop() {
        let mut buf = vec![0u8; cluster as usize];
        disk.read_exact_at(&mut buf, at(dir))?;
        let entries: Vec<&[u8]> = buf.chunks(DIR_ENTRY).take_while(|e| e[0] != 0).collect();
        let is_dot = |e: &[u8]| {
            e[11] != ATTR_LFN && (e[..11] == *b".          " || e[..11] == *b"..         ")
        };
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut pending_lfn: Vec<Vec<u8>> = Vec::new();
        let (mut dot, mut dotdot) = (None, None);
        for e in entries {
            if e[11] == ATTR_LFN {
                pending_lfn.push(e.to_vec());
            } else if is_dot(e) {
                // Its long-name entries are dropped with it.
                pending_lfn.clear();
                let mut e = e.to_vec();
                if e[1] == b'.' {
                    let p = if parent == root { 0 } else { parent };
                    e[20..22].copy_from_slice(&((p >> 16) as u16).to_le_bytes());
                    e[26..28].copy_from_slice(&(p as u16).to_le_bytes());
                    dotdot = Some(e);
                } else {
                    dot = Some(e);
                }
            } else {
                kept.append(&mut pending_lfn);
                if e[11] & ATTR_DIRECTORY != 0 && e[0] != 0xE5 {
                    let c = u32::from(u16::from_le_bytes([e[20], e[21]])) << 16
                        | u32::from(u16::from_le_bytes([e[26], e[27]]));
                    todo.push((c, dir));
                }
                kept.push(e.to_vec());
            }
        }
        if dir != root {
            let (Some(dot), Some(dotdot)) = (dot, dotdot) else {
                return Err(std::io::Error::other(format!(
                    "directory at cluster {dir} has no . and .. entries"
                )));
            };
            if fat_entry(dir)? < 0x0FFF_FFF8 {
                return Err(std::io::Error::other(format!(
                    "directory at cluster {dir} spans more than one cluster"
                )));
            }
            kept.insert(0, dotdot);
            kept.insert(0, dot);
        }
        let mut out = kept.concat();
        out.resize(cluster as usize, 0);
        disk.write_all_at(&out, at(dir))?;
    }
    Ok(())
}

/// Creates `files` (and their directories) in sorted path order: a
/// directory's path sorts before its contents.
fn add_files(
    fs: &FileSystem<&mut std::fs::File>,
    files: &Files,
    out: &Path,
) -> Result<(), EspError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| EspError::Io { op, path, source }
    };
    let root = fs.root_dir();
    let mut made = std::collections::BTreeSet::new();
    for (path, host) in files {
        let parts = components(path)?;
        for depth in 1..parts.len() {
            let dir = parts[..depth].join("/");
            if made.insert(dir.clone()) {
                root.create_dir(&dir)
                    .map_err(io("creating a directory in", out))?;
            }
        }
        let mut src = std::fs::File::open(host).map_err(io("opening", host))?;
        let mut dst = root
            .create_file(path)
            .map_err(io("creating a file in", out))?;
        dst.truncate().map_err(io("writing", out))?;
        std::io::copy(&mut src, &mut dst).map_err(io("copying", host))?;
        dst.flush().map_err(io("writing", out))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_times_are_utc_civil_dates_clamped_to_1980() {
        let t = fat_time(1_700_000_000); // 2023-11-14 22:13:20 UTC
        assert_eq!(
            (t.date.year, t.date.month, t.date.day),
            (2023, 11, 14),
            "{t:?}"
        );
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (22, 13, 20));
        assert_eq!(fat_time(1).date.year, 1980);
    }

    #[test]
    fn paths_must_be_plain_relative_names() {
        for bad in ["/EFI", "EFI//x", "../x", "EFI\\BOOT", ""] {
            assert!(components(bad).is_err(), "{bad}");
        }
        assert_eq!(components("EFI/BOOT/BOOTX64.EFI").unwrap().len(), 3);
    }

    #[test]
    fn too_small_for_fat32_is_refused() {
        assert!(matches!(
            cluster_size(16 * MIB),
            Err(EspError::TooSmall { .. })
        ));
        assert_eq!(cluster_size(256 * MIB).unwrap(), 2048);
    }
}

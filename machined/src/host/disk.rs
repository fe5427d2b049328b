//! Whole disks and their GPTs, as the boot-disk logic (`crate::bootdisk`)
//! sees them through [`Disks`]: list, read and write a table, tell the
//! kernel about a new partition, make an ext4, write bytes at an offset.

use basalt_api::gpt::{GptError, Table};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// A whole disk (`vda`, `nvme0n1`), not a partition, with what the kernel
/// says about it. An attribute the kernel does not give is None, never "".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub size: u64,
    /// `device/model` (SCSI, SATA, NVMe).
    pub model: Option<String>,
    /// `serial` (virtio-blk) or `device/serial` (NVMe).
    pub serial: Option<String>,
    /// `wwid` (NVMe namespaces) or `device/wwid` (SCSI, SATA).
    pub wwid: Option<String>,
    /// `queue/rotational`: whether the disk spins.
    pub rotational: Option<bool>,
}

impl Disk {
    pub fn path(&self) -> String {
        format!("/dev/{}", self.name)
    }

    /// Whether `spec` names this disk: its `/dev` path or its name.
    pub fn is_named(&self, spec: &str) -> bool {
        spec.strip_prefix("/dev/").unwrap_or(spec) == self.name
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: {source}")]
    Gpt { path: String, source: GptError },
    #[error("{0}")]
    Tool(String),
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_string(),
        source,
    }
}

/// What the boot-disk logic needs from the host (a recording fake in tests).
pub trait Disks: Send + Sync {
    /// Whole disks, sorted by name (no loop, RAM or optical devices).
    fn list(&self) -> Vec<Disk>;
    fn read_table(&self, disk: &Disk) -> Result<Table, DiskError>;
    /// Writes the primary and backup tables for the disk's real size.
    fn write_table(&self, disk: &Disk, table: &Table) -> Result<(), DiskError>;
    /// `/dev/<name>` of partition `n` of `disk`, once the kernel has it.
    fn partition_path(&self, disk: &Disk, n: u32) -> Option<String>;
    /// Tells the kernel about a partition added to a disk in use (BLKPG:
    /// re-reading the whole table is refused while the root slot is mounted).
    fn add_partition(&self, disk: &Disk, n: u32, offset: u64, len: u64) -> Result<(), DiskError>;
    /// The ext4 label at `dev`, if it holds an ext4 filesystem.
    fn ext4_label(&self, dev: &str) -> Option<String>;
    fn mkfs_ext4(&self, dev: &str, label: &str) -> Result<(), DiskError>;
    /// Writes `data` at `offset` of `dev` (no fsync: see [`Disks::sync`]).
    fn write_at(&self, dev: &str, offset: u64, data: &[u8]) -> Result<(), DiskError>;
    fn read_at(&self, dev: &str, offset: u64, len: usize) -> Result<Vec<u8>, DiskError>;
    fn sync(&self, dev: &str) -> Result<(), DiskError>;
    /// Copies `len` bytes at `src_offset` of the file `src` to `dev_offset`
    /// of `dev`, then flushes `dev`.
    fn copy_in_at(
        &self,
        src: &Path,
        src_offset: u64,
        len: u64,
        dev: &str,
        dev_offset: u64,
    ) -> Result<(), DiskError>;
    /// Decompresses the zstd file `src` onto the start of `dev`, flushed;
    /// returns the bytes written.
    fn write_zstd(&self, src: &Path, dev: &str) -> Result<u64, DiskError>;
    /// The first `sectors` 512-byte sectors of the zstd file `src`.
    fn head_sectors(&self, src: &Path, sectors: u64) -> Result<Vec<u8>, DiskError>;
    /// Has the kernel read `disk`'s partition table again (BLKRRPART; the
    /// disk must not be in use).
    fn reread(&self, disk: &Disk) -> Result<(), DiskError>;
    /// sha256 of the first `len` bytes of `dev` (reading back what was written).
    fn sha256(&self, dev: &str, len: u64) -> Result<[u8; 32], DiskError>;
}

/// The real disks of this machine.
pub struct Linux;

/// Copies exactly `len` bytes at `offset` of the file `src` into `to`; an
/// error names the file and says how far it got.
pub(super) fn copy_range(
    src: &Path,
    offset: u64,
    len: u64,
    to: &mut impl io::Write,
) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", src.display()));
    let mut from = File::open(src).map_err(named)?;
    from.seek(SeekFrom::Start(offset)).map_err(named)?;
    let copied = io::copy(&mut from.take(len), to).map_err(named)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: {copied} of {len} bytes at {offset} copied",
                src.display()
            ),
        ));
    }
    Ok(())
}

/// `mkfs.ext4` in the root image (profiles take it from e2fsprogs).
pub const MKFS_EXT4: &str = "/usr/sbin/mkfs.ext4";

const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_ADD_PARTITION: libc::c_int = 1;

/// `struct blkpg_partition` (linux/blkpg.h).
#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

fn read_sys(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The first of `/sys/class/block/<name>/<file>` for `files` that the
/// kernel gives and that is not blank (SCSI pads models with spaces;
/// virtio-blk shows an empty serial when the host set none).
fn attribute(name: &str, files: &[&str]) -> Option<String> {
    files
        .iter()
        .filter_map(|f| read_sys(&format!("/sys/class/block/{name}/{f}")))
        .find(|v| !v.is_empty())
}

impl Disks for Linux {
    fn list(&self) -> Vec<Disk> {
        let Ok(dir) = fs::read_dir("/sys/class/block") else {
            return Vec::new();
        };
        let mut disks: Vec<Disk> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| {
                !["loop", "ram", "sr", "zram", "dm-"]
                    .iter()
                    .any(|p| n.starts_with(p))
            })
            .filter(|n| !Path::new(&format!("/sys/class/block/{n}/partition")).exists())
            .filter_map(|name| {
                let sectors: u64 = read_sys(&format!("/sys/class/block/{name}/size"))?
                    .parse()
                    .ok()?;
                Some(Disk {
                    model: attribute(&name, &["device/model"]),
                    serial: attribute(&name, &["serial", "device/serial"]),
                    wwid: attribute(&name, &["wwid", "device/wwid"]),
                    rotational: attribute(&name, &["queue/rotational"]).and_then(|r| {
                        match r.as_str() {
                            "0" => Some(false),
                            "1" => Some(true),
                            _ => None,
                        }
                    }),
                    size: sectors * 512,
                    name,
                })
            })
            .filter(|d| d.size > 0)
            .collect();
        disks.sort_by(|a, b| a.name.cmp(&b.name));
        disks
    }

    fn read_table(&self, disk: &Disk) -> Result<Table, DiskError> {
        let path = disk.path();
        let f = File::open(&path).map_err(io_err(&path))?;
        Table::decode(disk.size, |off, len| {
            let mut b = vec![0u8; len];
            f.read_exact_at(&mut b, off).map(|()| b)
        })
        .map_err(|source| DiskError::Gpt { path, source })
    }

    fn write_table(&self, disk: &Disk, table: &Table) -> Result<(), DiskError> {
        let path = disk.path();
        let enc = table.encode(disk.size).map_err(|source| DiskError::Gpt {
            path: path.clone(),
            source,
        })?;
        // Backup first: if power fails between the two, the intact primary
        // still describes the old table and the backup is merely stale.
        self.write_at(&path, enc.backup_offset, &enc.backup)?;
        self.sync(&path)?;
        self.write_at(&path, 0, &enc.primary)?;
        self.sync(&path)
    }

    fn partition_path(&self, disk: &Disk, n: u32) -> Option<String> {
        let dir = fs::read_dir(format!("/sys/class/block/{}", disk.name)).ok()?;
        dir.flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|child| child.starts_with(&disk.name))
            .find(|child| {
                read_sys(&format!("/sys/class/block/{}/{child}/partition", disk.name))
                    == Some(n.to_string())
            })
            .map(|child| format!("/dev/{child}"))
            .filter(|p| Path::new(p).exists())
    }

    fn add_partition(&self, disk: &Disk, n: u32, offset: u64, len: u64) -> Result<(), DiskError> {
        let path = disk.path();
        let f = File::open(&path).map_err(io_err(&path))?;
        let bad =
            |what: &str| DiskError::Tool(format!("{path}: partition {n}: {what} out of range"));
        let mut part = BlkpgPartition {
            start: i64::try_from(offset).map_err(|_| bad("offset"))?,
            length: i64::try_from(len).map_err(|_| bad("length"))?,
            pno: i32::try_from(n).map_err(|_| bad("number"))?,
            devname: [0; 64],
            volname: [0; 64],
        };
        let mut arg = BlkpgIoctlArg {
            op: BLKPG_ADD_PARTITION,
            flags: 0,
            datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
            data: (&mut part as *mut BlkpgPartition).cast(),
        };
        // SAFETY: BLKPG reads a `struct blkpg_ioctl_arg` whose `data` points
        // at a `struct blkpg_partition`; both live on this stack frame for
        // the duration of the call, and the fd is an open block device.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKPG, &mut arg as *mut BlkpgIoctlArg) };
        if r < 0 {
            return Err(io_err(&path)(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn ext4_label(&self, dev: &str) -> Option<String> {
        super::blockdev::ext4_label(dev)
    }

    fn mkfs_ext4(&self, dev: &str, label: &str) -> Result<(), DiskError> {
        use std::io::Read;
        use std::process::Stdio;
        use tokio::sync::oneshot::error::TryRecvError;
        let mut cmd = Command::new(MKFS_EXT4);
        cmd.args(["-q", "-F", "-L", label, "-E", "root_owner=0:0", dev])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Through the reaper: it owns waitpid(-1), so std's own wait (as in
        // `Command::output`) could lose the exit status to it (ECHILD).
        let (mut child, mut exit) = crate::supervisor::spawn_reaped(&mut cmd)
            .map_err(|e| DiskError::Tool(format!("{MKFS_EXT4}: {e}")))?;
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        // Polled rather than `blocking_recv`, which panics when called on
        // an async runtime's thread; this call blocks as mkfs runs anyway.
        let status = loop {
            match exit.try_recv() {
                Ok(status) => break status,
                Err(TryRecvError::Empty) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(TryRecvError::Closed) => {
                    return Err(DiskError::Tool(format!(
                        "{MKFS_EXT4} -L {label} {dev}: its exit status was lost"
                    )));
                }
            }
        };
        if !status.success() {
            return Err(DiskError::Tool(format!(
                "{MKFS_EXT4} -L {label} {dev}: {status}: {}",
                stderr.trim()
            )));
        }
        Ok(())
    }

    fn write_at(&self, dev: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let f = OpenOptions::new()
            .write(true)
            .open(dev)
            .map_err(io_err(dev))?;
        f.write_all_at(data, offset).map_err(io_err(dev))
    }

    fn read_at(&self, dev: &str, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        let f = File::open(dev).map_err(io_err(dev))?;
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, offset).map_err(io_err(dev))?;
        Ok(b)
    }

    fn sync(&self, dev: &str) -> Result<(), DiskError> {
        let f = OpenOptions::new()
            .write(true)
            .open(dev)
            .map_err(io_err(dev))?;
        f.sync_all().map_err(io_err(dev))
    }

    fn copy_in_at(
        &self,
        src: &Path,
        src_offset: u64,
        len: u64,
        dev: &str,
        dev_offset: u64,
    ) -> Result<(), DiskError> {
        use std::io::{Seek, SeekFrom};
        let mut to = OpenOptions::new()
            .write(true)
            .open(dev)
            .map_err(io_err(dev))?;
        to.seek(SeekFrom::Start(dev_offset)).map_err(io_err(dev))?;
        copy_range(src, src_offset, len, &mut to)
            .map_err(|e| DiskError::Tool(format!("{e} to {dev}")))?;
        to.sync_all().map_err(io_err(dev))
    }

    fn write_zstd(&self, src: &Path, dev: &str) -> Result<u64, DiskError> {
        let src_name = src.display().to_string();
        let from = File::open(src).map_err(io_err(&src_name))?;
        let mut decoder = zstd::stream::read::Decoder::new(from).map_err(io_err(&src_name))?;
        let mut to = OpenOptions::new()
            .write(true)
            .open(dev)
            .map_err(io_err(dev))?;
        let n = io::copy(&mut decoder, &mut to).map_err(io_err(dev))?;
        to.sync_all().map_err(io_err(dev))?;
        Ok(n)
    }

    fn head_sectors(&self, src: &Path, sectors: u64) -> Result<Vec<u8>, DiskError> {
        use std::io::Read;
        let src_name = src.display().to_string();
        let from = File::open(src).map_err(io_err(&src_name))?;
        let decoder = zstd::stream::read::Decoder::new(from).map_err(io_err(&src_name))?;
        let mut out = Vec::new();
        decoder
            .take(sectors * 512)
            .read_to_end(&mut out)
            .map_err(io_err(&src_name))?;
        Ok(out)
    }

    fn reread(&self, disk: &Disk) -> Result<(), DiskError> {
        const BLKRRPART: libc::c_ulong = 0x125F;
        let path = disk.path();
        let f = File::open(&path).map_err(io_err(&path))?;
        // SAFETY: BLKRRPART takes no argument; the fd is an open block device.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKRRPART) };
        if r < 0 {
            return Err(io_err(&path)(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn sha256(&self, dev: &str, len: u64) -> Result<[u8; 32], DiskError> {
        use std::io::Read;
        let f = File::open(dev).map_err(io_err(dev))?;
        let (digest, read) =
            basalt_api::upgrade::Sha256Digest::of_reader(f.take(len)).map_err(io_err(dev))?;
        if read != len {
            return Err(DiskError::Tool(format!(
                "{dev}: {read} of {len} bytes could be read back"
            )));
        }
        Ok(digest.0)
    }
}

#[cfg(test)]
pub mod fake;

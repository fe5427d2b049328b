//! `disk.raw`: a whole Basalt disk as [`basalt_api::disk_layout`] lays it
//! out: GPT, the ESP at partition 1, the root image in slot A, slot B and
//! STATE empty. Written sparse: the file is sized first, then only data is
//! written, so the zeros of the empty partitions take no space.
//!
//! Also the installer's payload: the disk's first bytes up to slot A (MBR,
//! GPT, ESP), zstd-compressed, which the ISO carries at
//! [`basalt_api::image_layout::INSTALL_DISK_HEAD`].

use basalt_api::disk_layout::{self, SLOT_A_NUMBER};
use basalt_api::gpt::GptError;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("disk.raw partition table: {0}")]
    Gpt(#[from] GptError),
    #[error(
        "the root image is {image} bytes, larger than a root slot ({slot} bytes); \
         raise [disk] slot_size_mib in the profile"
    )]
    RootTooLarge { image: u64, slot: u64 },
    #[error("the ESP image is {image} bytes, larger than the ESP partition ({partition} bytes)")]
    EspTooLarge { image: u64, partition: u64 },
    #[error("the new table has no partition {0}")]
    Missing(u32),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DiskError {
    let path = path.to_path_buf();
    move |source| DiskError::Io { op, path, source }
}

/// The inputs of a disk.
pub struct DiskInputs<'a> {
    pub root_image: &'a Path,
    /// sha256 of the root image: it names slot A's GUID.
    pub root_sha256: [u8; 32],
    /// sha256 of the disk's UKI: with the root's, the seed of every other GUID.
    pub uki_sha256: [u8; 32],
    pub esp_image: &'a Path,
    pub slot_size: u64,
}

/// What [`write`] made.
#[derive(Debug, Clone, Copy)]
pub struct DiskReport {
    pub size: u64,
    /// Where slot A starts: the end of the installer's payload.
    pub slot_a_offset: u64,
}

/// Writes `disk.raw` to `out`.
pub fn write(inputs: &DiskInputs<'_>, out: &Path) -> Result<DiskReport, DiskError> {
    let root_len = std::fs::metadata(inputs.root_image)
        .map_err(io("reading the size of", inputs.root_image))?
        .len();
    if root_len > inputs.slot_size {
        return Err(DiskError::RootTooLarge {
            image: root_len,
            slot: inputs.slot_size,
        });
    }
    let mut seed = inputs.root_sha256.to_vec();
    seed.extend_from_slice(&inputs.uki_sha256);
    let table = disk_layout::new_table(&inputs.root_sha256, inputs.slot_size, &seed);
    let size = disk_layout::new_disk_size(&table);
    let encoded = table.encode(size)?;
    let part = |n: u32| table.partitions.get(&n).ok_or(DiskError::Missing(n));
    let esp = part(disk_layout::ESP_NUMBER)?;
    let slot_a = part(SLOT_A_NUMBER)?;
    let esp_len = std::fs::metadata(inputs.esp_image)
        .map_err(io("reading the size of", inputs.esp_image))?
        .len();
    if esp_len > esp.size() {
        return Err(DiskError::EspTooLarge {
            image: esp_len,
            partition: esp.size(),
        });
    }

    let disk = File::create(out).map_err(io("creating", out))?;
    disk.set_len(size).map_err(io("sizing", out))?;
    disk.write_all_at(&encoded.primary, 0)
        .map_err(io("writing the GPT to", out))?;
    disk.write_all_at(&encoded.backup, encoded.backup_offset)
        .map_err(io("writing the backup GPT to", out))?;
    copy_sparse(inputs.esp_image, &disk, esp.offset(), out)?;
    copy_sparse(inputs.root_image, &disk, slot_a.offset(), out)?;
    disk.sync_all().map_err(io("syncing", out))?;
    Ok(DiskReport {
        size,
        slot_a_offset: slot_a.offset(),
    })
}

/// Copies `src` into `disk` at `offset`, skipping all-zero chunks (they are
/// holes in the sized file already).
fn copy_sparse(src: &Path, disk: &File, offset: u64, out: &Path) -> Result<(), DiskError> {
    let mut f = File::open(src).map_err(io("opening", src))?;
    let mut buf = vec![0u8; CHUNK];
    let mut at = offset;
    loop {
        let n = read_full(&mut f, &mut buf).map_err(io("reading", src))?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|b| *b != 0) {
            disk.write_all_at(&buf[..n], at)
                .map_err(io("writing", out))?;
        }
        at += n as u64;
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The installer's payload: `disk`'s bytes `[0, len)` as one zstd frame.
pub fn write_head(disk: &Path, len: u64, out: &Path) -> Result<(), DiskError> {
    let mut src = File::open(disk).map_err(io("opening", disk))?;
    src.seek(SeekFrom::Start(0)).map_err(io("reading", disk))?;
    let dst = File::create(out).map_err(io("creating", out))?;
    let mut enc = zstd::Encoder::new(dst, 3).map_err(io("compressing into", out))?;
    // Content size in the frame header: the reader knows what to expect.
    enc.set_pledged_src_size(Some(len))
        .map_err(io("compressing into", out))?;
    std::io::copy(&mut src.take(len), &mut enc).map_err(io("compressing", disk))?;
    enc.finish()
        .and_then(|mut f| f.flush())
        .map_err(io("writing", out))?;
    Ok(())
}

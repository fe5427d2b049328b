//! Turning a staged host directory tree into archive entries.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::compress::{Compression, InitramfsSummary, write_initramfs};
use crate::error::{Error, Result};
use crate::writer::{Archive, Entry, archive_key};

impl Archive {
    /// Adds everything below `host_dir` (not `host_dir` itself) under the archive directory
    /// `prefix` (`""` or `"/"` for the root); returns the number of entries added.
    ///
    /// Symlinks are archived as symlinks, never followed. Permission bits and mtimes come from
    /// the host (mtimes clamped as usual); owners, inode numbers and hard links do not —
    /// hard-linked files are stored once per name. Sockets are an error. A non-root `prefix`
    /// directory is synthesized with mode 0755 unless already added.
    pub fn add_tree(
        &mut self,
        host_dir: impl AsRef<Path>,
        prefix: impl AsRef<Path>,
    ) -> Result<usize> {
        let prefix = prefix.as_ref().as_os_str().as_bytes();
        let root_key = if prefix.is_empty() || prefix == b"/" {
            Vec::new()
        } else {
            archive_key(Path::new(OsStr::from_bytes(prefix)))?
        };
        let mut added = 0;
        let mut pending: Vec<(PathBuf, Vec<u8>)> =
            vec![(host_dir.as_ref().to_path_buf(), root_key)];
        while let Some((dir, key)) = pending.pop() {
            let io_err = |op, path: &Path, source| Error::Io {
                op,
                path: path.to_path_buf(),
                source,
            };
            let listing = fs::read_dir(&dir).map_err(|e| io_err("read directory", &dir, e))?;
            for dirent in listing {
                let dirent = dirent.map_err(|e| io_err("read directory", &dir, e))?;
                let host = dirent.path();
                let meta = dirent.metadata().map_err(|e| io_err("stat", &host, e))?;
                let mut child_key = key.clone();
                if !child_key.is_empty() {
                    child_key.push(b'/');
                }
                child_key.extend_from_slice(dirent.file_name().as_bytes());

                let perm = meta.mode() & 0o7777;
                let file_type = meta.file_type();
                let entry = if file_type.is_dir() {
                    pending.push((host.clone(), child_key.clone()));
                    Entry::directory(perm)
                } else if file_type.is_file() {
                    if meta.len() > u64::from(u32::MAX) {
                        return Err(Error::FileTooLarge {
                            path: host,
                            size: meta.len(),
                        });
                    }
                    Entry::file(host.clone(), perm)
                } else if file_type.is_symlink() {
                    Entry::symlink(fs::read_link(&host).map_err(|e| io_err("read link", &host, e))?)
                } else if file_type.is_char_device() {
                    let (major, minor) = split_dev(meta.rdev());
                    Entry::char_device(major, minor, perm)
                } else if file_type.is_block_device() {
                    let (major, minor) = split_dev(meta.rdev());
                    Entry::block_device(major, minor, perm)
                } else if file_type.is_fifo() {
                    Entry::fifo(perm)
                } else {
                    return Err(Error::UnsupportedFileType { path: host });
                };
                self.insert(
                    Path::new(OsStr::from_bytes(&child_key)),
                    entry.with_mtime(meta.mtime()),
                )?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// An archive of everything below `host_dir`, at the archive root.
    pub fn from_tree(host_dir: impl AsRef<Path>, source_date_epoch: u32) -> Result<Archive> {
        let mut archive = Archive::new(source_date_epoch);
        archive.add_tree(host_dir, "")?;
        Ok(archive)
    }
}

/// Archives everything below `host_dir` and writes it compressed to `out` in one call — the
/// reproducible equivalent of
/// `find . | sort | cpio -o -H newc --reproducible | zstd -T0 -3`.
pub fn write_tree<W: Write>(
    host_dir: impl AsRef<Path>,
    source_date_epoch: u32,
    compression: Compression,
    out: W,
) -> Result<InitramfsSummary> {
    let archive = Archive::from_tree(host_dir, source_date_epoch)?;
    write_initramfs(out, None, &archive, compression)
}

/// Splits a Linux `dev_t` as glibc's `major()`/`minor()` do.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    // Both fit: glibc's dev_t encoding holds 32-bit majors and minors.
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    use super::split_dev;

    /// glibc's `makedev`.
    fn makedev(major: u64, minor: u64) -> u64 {
        ((major & 0xfff) << 8)
            | ((major & 0xffff_f000) << 32)
            | (minor & 0xff)
            | ((minor & 0xffff_ff00) << 12)
    }

    #[test]
    fn splits_dev_t_like_glibc() {
        assert_eq!(makedev(5, 1), 0x0501);
        for (major, minor) in [(5, 1), (8, 0), (259, 65537), (0xfff_ffff, 0xffff_ffff)] {
            assert_eq!(
                split_dev(makedev(major, minor)),
                (major as u32, minor as u32)
            );
        }
    }
}

//! The filesystem STATE lives on, as the steps that decide what survives a
//! power cut: writes, renames and links reach the disk only once synced.
//!
//! [`DurableFs`] names each step; [`RealFs`] makes them on the real
//! filesystem, [`super::crashfs::CrashFs`] keeps them in memory and can cut
//! the power after any step (and run out of space), so a test can check
//! what a boot finds after a crash at every point of an apply.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What a directory entry is (symlinks not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// The steps of durable storage. Nothing but [`DurableFs::sync_file`] makes
/// file data durable, and nothing but [`DurableFs::sync_dir`] makes entries
/// (created, renamed, removed) durable.
pub trait DurableFs: Send + Sync + std::fmt::Debug {
    /// Create one directory; `AlreadyExists` if there is one.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Create or truncate a file and write `data` (not yet durable).
    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()>;
    /// Make a file's data durable (fsync).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Make a directory's entries durable (fsync of the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// rename(2): replaces a file, symlink or empty directory at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// A symlink at `link` pointing at `target`.
    fn symlink(&self, target: &str, link: &Path) -> io::Result<()>;
    /// Remove a file or symlink.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Remove a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// A file's content (symlinks followed).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// A symlink's target.
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// A directory's entries.
    fn list(&self, path: &Path) -> io::Result<Vec<(String, EntryKind)>>;
    /// What is at `path`, symlinks not followed; `None` when nothing.
    fn kind(&self, path: &Path) -> Option<EntryKind>;
    /// Whether `path` exists, symlinks followed.
    fn exists(&self, path: &Path) -> bool;
}

/// Create `path` and its missing parents, syncing the parent of each
/// directory created so that it survives a power cut.
pub fn create_dir_all(fs: &dyn DurableFs, path: &Path) -> io::Result<()> {
    if fs.exists(path) {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(fs, parent)?;
    }
    match fs.create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fs.sync_dir(parent),
        None => Ok(()),
    }
}

/// Replace a file whole: write a temp file beside it, sync it, rename it
/// over, sync the directory. After a power cut at any step the file is
/// the old one or the new one, never a mix or empty. On error the temp
/// file is removed (best effort).
pub fn write_atomic(fs: &dyn DurableFs, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    create_dir_all(fs, dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = fs
        .write_file(&tmp, data, mode)
        .and_then(|()| fs.sync_file(&tmp))
        .and_then(|()| fs.rename(&tmp, path))
        .and_then(|()| fs.sync_dir(dir));
    if result.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    result
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

fn kind_of(t: fs::FileType) -> EntryKind {
    if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File
    }
}

impl DurableFs for RealFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        f.write_all(data)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        // fsync(2) flushes the inode whichever descriptor names it.
        fs::File::open(path)?.sync_all()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        fs::File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(path)
    }

    fn list(&self, path: &Path) -> io::Result<Vec<(String, EntryKind)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(path)? {
            let e = e?;
            out.push((
                e.file_name().to_string_lossy().into_owned(),
                kind_of(e.file_type()?),
            ));
        }
        Ok(out)
    }

    fn kind(&self, path: &Path) -> Option<EntryKind> {
        fs::symlink_metadata(path)
            .ok()
            .map(|m| kind_of(m.file_type()))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

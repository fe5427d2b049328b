//! Building an archive from entries and streaming it out in canonical newc form.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result, lossy};
use crate::newc::{
    HEADER_LEN, Header, PATH_MAX, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, TRAILER,
    pad4,
};

/// Permissions of parent directories the archive synthesizes.
pub const SYNTHESIZED_DIR_PERMISSIONS: u32 = 0o755;

/// Large enough that big files take few syscalls, small enough to stay in cache.
const COPY_BUF_LEN: usize = 1 << 20;
/// Headers and names are tiny; batching them spares the compressor many small calls.
const OUT_BUF_LEN: usize = 256 << 10;

/// Where a regular file's contents come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// Streamed from this host path at write time (symlinks on the host are followed).
    Host(PathBuf),
    /// Held in memory; cloning an entry shares the bytes.
    Bytes(Arc<[u8]>),
}

/// What an archive entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File(FileSource),
    /// Stored with the target as contents, mode `0o120777`.
    Symlink(PathBuf),
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One entry to be archived: its kind, permission bits and optional mtime.
///
/// Ownership is always `0:0`. The mtime written is `min(mtime, epoch)` (negative clamps to 0);
/// without an explicit mtime, host files use their file system mtime and everything else the
/// archive's epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    kind: EntryKind,
    permissions: u32,
    mtime: Option<i64>,
}

impl Entry {
    /// A directory; `permissions` is masked to `0o7777`.
    pub fn directory(permissions: u32) -> Self {
        Self::new(EntryKind::Directory, permissions)
    }

    /// A regular file whose contents are streamed from `host_path` when the archive is written.
    pub fn file(host_path: impl Into<PathBuf>, permissions: u32) -> Self {
        Self::new(
            EntryKind::File(FileSource::Host(host_path.into())),
            permissions,
        )
    }

    /// A regular file with in-memory contents.
    pub fn bytes(data: impl Into<Arc<[u8]>>, permissions: u32) -> Self {
        Self::new(EntryKind::File(FileSource::Bytes(data.into())), permissions)
    }

    /// A symbolic link to `target` (relative or absolute, taken verbatim).
    pub fn symlink(target: impl Into<PathBuf>) -> Self {
        Self::new(EntryKind::Symlink(target.into()), 0o777)
    }

    /// A character device, e.g. `Entry::char_device(5, 1, 0o600)` for `/dev/console`.
    pub fn char_device(major: u32, minor: u32, permissions: u32) -> Self {
        Self::new(EntryKind::CharDevice { major, minor }, permissions)
    }

    /// A block device.
    pub fn block_device(major: u32, minor: u32, permissions: u32) -> Self {
        Self::new(EntryKind::BlockDevice { major, minor }, permissions)
    }

    /// A named pipe.
    pub fn fifo(permissions: u32) -> Self {
        Self::new(EntryKind::Fifo, permissions)
    }

    /// Sets the mtime (seconds since the Unix epoch); it is still clamped to the archive epoch.
    #[must_use]
    pub fn with_mtime(mut self, mtime: i64) -> Self {
        self.mtime = Some(mtime);
        self
    }

    pub fn kind(&self) -> &EntryKind {
        &self.kind
    }

    /// Permission bits (`0o7777` at most).
    pub fn permissions(&self) -> u32 {
        self.permissions
    }

    pub fn mtime(&self) -> Option<i64> {
        self.mtime
    }

    fn new(kind: EntryKind, permissions: u32) -> Self {
        Self {
            kind,
            permissions: permissions & 0o7777,
            mtime: None,
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self.kind, EntryKind::Directory)
    }
}

/// How many entries and bytes a [`Archive::write_to`] produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Entries written, synthesized directories included, trailer excluded.
    pub entries: u64,
    /// Uncompressed cpio bytes, trailer and padding included.
    pub bytes: u64,
}

/// A set of entries keyed by archive path, written out sorted and normalized.
///
/// Nothing is read from the host until [`Archive::write_to`]; the archive holds only paths and
/// metadata, so it stays small whatever the size of the files it names.
#[derive(Clone, Debug)]
pub struct Archive {
    epoch: u32,
    // Byte order of the keys is the output order, and a parent is a prefix of its children,
    // so it always sorts before them.
    entries: BTreeMap<Vec<u8>, Slot>,
}

#[derive(Clone, Debug)]
enum Slot {
    /// A parent directory nobody added explicitly.
    Synthesized,
    Explicit(Entry),
}

impl Slot {
    fn is_dir(&self) -> bool {
        match self {
            Slot::Synthesized => true,
            Slot::Explicit(entry) => entry.is_dir(),
        }
    }
}

impl Archive {
    /// An empty archive whose entries' mtimes will be clamped to `source_date_epoch`.
    pub fn new(source_date_epoch: u32) -> Self {
        Self {
            epoch: source_date_epoch,
            entries: BTreeMap::new(),
        }
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Number of entries, synthesized parents included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Archive paths in output order, synthesized parents included.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.entries.keys().map(|k| Path::new(OsStr::from_bytes(k)))
    }

    /// The entry added at `path`; `None` if absent or only synthesized as a parent.
    pub fn get(&self, path: impl AsRef<Path>) -> Option<&Entry> {
        let key = archive_key(path.as_ref()).ok()?;
        match self.entries.get(&key)? {
            Slot::Explicit(entry) => Some(entry),
            Slot::Synthesized => None,
        }
    }

    /// Adds `entry` at `path`.
    ///
    /// `path` is relative to the archive root; one leading `/` is accepted and dropped. Missing
    /// parents are synthesized as `0o755` directories; adding a directory later at a
    /// synthesized path replaces it. Errors: invalid path, duplicate path, or a non-directory
    /// ancestor (or non-directory at a path that already has children).
    pub fn insert(&mut self, path: impl AsRef<Path>, entry: Entry) -> Result<()> {
        let key = archive_key(path.as_ref())?;
        if let EntryKind::Symlink(target) = &entry.kind {
            check_symlink_target(&key, target)?;
        }
        match self.entries.get(&key) {
            Some(Slot::Explicit(_)) => return Err(Error::DuplicatePath { path: lossy(&key) }),
            Some(Slot::Synthesized) if !entry.is_dir() => {
                let child = self.first_child(&key).unwrap_or_default();
                return Err(Error::NotADirectory {
                    path: lossy(&child),
                    ancestor: lossy(&key),
                });
            }
            _ => {}
        }
        // Check every ancestor before creating any, so a failed insert changes nothing.
        let ancestors: Vec<usize> = key
            .iter()
            .enumerate()
            .filter_map(|(i, &b)| (b == b'/').then_some(i))
            .collect();
        let mut missing = Vec::new();
        for &end in &ancestors {
            match self.entries.get(&key[..end]) {
                None => missing.push(end),
                Some(slot) if slot.is_dir() => {}
                Some(_) => {
                    return Err(Error::NotADirectory {
                        path: lossy(&key),
                        ancestor: lossy(&key[..end]),
                    });
                }
            }
        }
        for end in missing {
            self.entries.insert(key[..end].to_vec(), Slot::Synthesized);
        }
        self.entries.insert(key, Slot::Explicit(entry));
        Ok(())
    }

    /// Adds a directory.
    pub fn add_dir(&mut self, path: impl AsRef<Path>, permissions: u32) -> Result<()> {
        self.insert(path, Entry::directory(permissions))
    }

    /// Adds a regular file streamed from `host_path` at write time.
    pub fn add_file(
        &mut self,
        path: impl AsRef<Path>,
        host_path: impl Into<PathBuf>,
        permissions: u32,
    ) -> Result<()> {
        self.insert(path, Entry::file(host_path, permissions))
    }

    /// Adds a regular file with in-memory contents.
    pub fn add_bytes(
        &mut self,
        path: impl AsRef<Path>,
        data: impl Into<Arc<[u8]>>,
        permissions: u32,
    ) -> Result<()> {
        self.insert(path, Entry::bytes(data, permissions))
    }

    /// Adds a symlink.
    pub fn add_symlink(
        &mut self,
        path: impl AsRef<Path>,
        target: impl Into<PathBuf>,
    ) -> Result<()> {
        self.insert(path, Entry::symlink(target))
    }

    /// Adds a character device node.
    pub fn add_char_device(
        &mut self,
        path: impl AsRef<Path>,
        major: u32,
        minor: u32,
        permissions: u32,
    ) -> Result<()> {
        self.insert(path, Entry::char_device(major, minor, permissions))
    }

    /// Adds a block device node.
    pub fn add_block_device(
        &mut self,
        path: impl AsRef<Path>,
        major: u32,
        minor: u32,
        permissions: u32,
    ) -> Result<()> {
        self.insert(path, Entry::block_device(major, minor, permissions))
    }

    /// Streams the archive, `TRAILER!!!` included, to `out`.
    ///
    /// Entries come out sorted bytewise by path with inodes numbered 1, 2, … in that order,
    /// uid/gid 0, device numbers of the containing file system 0, directories' nlink
    /// `2 + subdirectories`, everything else nlink 1. Host files are opened here, one at a
    /// time, and copied through a fixed buffer. `out` is wrapped in a buffer of its own.
    pub fn write_to<W: Write>(&self, out: W) -> Result<WriteSummary> {
        let mut out = Output {
            inner: BufWriter::with_capacity(OUT_BUF_LEN, out),
            written: 0,
        };
        let nlinks = self.dir_nlinks();
        let mut buf = vec![0u8; COPY_BUF_LEN];
        let mut ino: u32 = 0;
        for (path, slot) in &self.entries {
            ino += 1;
            let nlink = if slot.is_dir() {
                2 + nlinks.get(path.as_slice()).copied().unwrap_or(0)
            } else {
                1
            };
            match slot {
                Slot::Synthesized => {
                    let header = Header {
                        ino,
                        mode: S_IFDIR | SYNTHESIZED_DIR_PERMISSIONS,
                        nlink,
                        mtime: self.epoch,
                        ..Header::default()
                    };
                    out.header(header, path)?;
                }
                Slot::Explicit(entry) => {
                    self.write_entry(&mut out, path, entry, ino, nlink, &mut buf)?;
                }
            }
        }
        out.header(
            Header {
                nlink: 1,
                ..Header::default()
            },
            TRAILER,
        )?;
        out.inner.flush().map_err(|source| Error::Write {
            entry: lossy(TRAILER),
            source,
        })?;
        Ok(WriteSummary {
            entries: u64::from(ino),
            bytes: out.written,
        })
    }

    fn write_entry<W: Write>(
        &self,
        out: &mut Output<W>,
        path: &[u8],
        entry: &Entry,
        ino: u32,
        nlink: u32,
        buf: &mut [u8],
    ) -> Result<()> {
        let mut header = Header {
            ino,
            nlink,
            ..Header::default()
        };
        let perm = entry.permissions;
        match &entry.kind {
            EntryKind::Directory => header.mode = S_IFDIR | perm,
            EntryKind::Fifo => header.mode = S_IFIFO | perm,
            EntryKind::CharDevice { major, minor } => {
                header.mode = S_IFCHR | perm;
                (header.rdev_major, header.rdev_minor) = (*major, *minor);
            }
            EntryKind::BlockDevice { major, minor } => {
                header.mode = S_IFBLK | perm;
                (header.rdev_major, header.rdev_minor) = (*major, *minor);
            }
            EntryKind::Symlink(target) => {
                let target = target.as_os_str().as_bytes();
                header.mode = S_IFLNK | 0o777;
                // Length was bounded by PATH_MAX at insert.
                header.filesize = target.len() as u32;
                header.mtime = self.clamp(entry.mtime);
                out.header(header, path)?;
                return out.data(target, path);
            }
            EntryKind::File(FileSource::Bytes(data)) => {
                header.mode = S_IFREG | perm;
                header.filesize = u32::try_from(data.len()).map_err(|_| Error::FileTooLarge {
                    path: PathBuf::from(OsStr::from_bytes(path)),
                    size: data.len() as u64,
                })?;
                header.mtime = self.clamp(entry.mtime);
                out.header(header, path)?;
                return out.data(data, path);
            }
            EntryKind::File(FileSource::Host(host)) => {
                let io_err = |op, source| Error::Io {
                    op,
                    path: host.clone(),
                    source,
                };
                // Checked before opening: opening a FIFO would block, a directory would fail
                // only at the first read.
                let meta = fs::metadata(host).map_err(|e| io_err("stat", e))?;
                if !meta.is_file() {
                    return Err(Error::UnsupportedFileType { path: host.clone() });
                }
                let mut file = File::open(host).map_err(|e| io_err("open", e))?;
                let size = meta.len();
                header.mode = S_IFREG | perm;
                header.filesize = u32::try_from(size).map_err(|_| Error::FileTooLarge {
                    path: host.clone(),
                    size,
                })?;
                header.mtime = self.clamp(entry.mtime.or(Some(meta.mtime())));
                out.header(header, path)?;
                let mut remaining = size;
                while remaining > 0 {
                    let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    let n = match file.read(&mut buf[..want]) {
                        Ok(0) => {
                            return Err(Error::FileChanged {
                                path: host.clone(),
                                expected: size,
                                actual: size - remaining,
                            });
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(io_err("read", e)),
                    };
                    out.raw(&buf[..n], path)?;
                    remaining -= n as u64;
                }
                return out.pad(path);
            }
        }
        header.mtime = self.clamp(entry.mtime);
        out.header(header, path)
    }

    fn clamp(&self, mtime: Option<i64>) -> u32 {
        match mtime {
            // Negative mtimes predate anything newc can say; 0 is the closest truth.
            Some(t) => u32::try_from(t.clamp(0, i64::from(self.epoch))).unwrap_or(self.epoch),
            None => self.epoch,
        }
    }

    /// For every directory, the number of its immediate subdirectories.
    fn dir_nlinks(&self) -> HashMap<&[u8], u32> {
        let mut counts: HashMap<&[u8], u32> = HashMap::new();
        for (path, slot) in &self.entries {
            if slot.is_dir()
                && let Some(slash) = path.iter().rposition(|&b| b == b'/')
            {
                *counts.entry(&path[..slash]).or_default() += 1;
            }
        }
        counts
    }

    fn first_child(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut prefix = key.to_vec();
        prefix.push(b'/');
        self.entries
            .range(prefix.clone()..)
            .next()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
    }
}

struct Output<W: Write> {
    inner: BufWriter<W>,
    written: u64,
}

impl<W: Write> Output<W> {
    fn raw(&mut self, bytes: &[u8], entry: &[u8]) -> Result<()> {
        self.inner.write_all(bytes).map_err(|source| Error::Write {
            entry: lossy(entry),
            source,
        })?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, entry: &[u8]) -> Result<()> {
        let n = pad4(self.written);
        self.raw(&[0u8; 4][..n], entry)
    }

    fn header(&mut self, mut header: Header, name: &[u8]) -> Result<()> {
        // Bounded by PATH_MAX at insert (or the fixed trailer name).
        header.namesize = name.len() as u32 + 1;
        self.raw(&header.encode(), name)?;
        self.raw(name, name)?;
        self.raw(&[0], name)?;
        debug_assert_eq!(
            pad4(self.written),
            pad4((HEADER_LEN + name.len() + 1) as u64)
        );
        self.pad(name)
    }

    fn data(&mut self, data: &[u8], entry: &[u8]) -> Result<()> {
        self.raw(data, entry)?;
        self.pad(entry)
    }
}

/// Validates and normalizes an archive path to the bytes stored in the archive.
pub(crate) fn archive_key(path: &Path) -> Result<Vec<u8>> {
    let raw = path.as_os_str().as_bytes();
    let invalid = |reason| Error::InvalidPath {
        path: lossy(raw),
        reason,
    };
    let rel = raw.strip_prefix(b"/").unwrap_or(raw);
    if rel.is_empty() {
        return Err(invalid("empty path"));
    }
    if rel.contains(&0) {
        return Err(invalid("contains NUL"));
    }
    if rel.len() >= PATH_MAX {
        return Err(invalid("longer than PATH_MAX"));
    }
    for component in rel.split(|&b| b == b'/') {
        match component {
            b"" => return Err(invalid("empty component (double or trailing slash)")),
            b"." => return Err(invalid("`.` component")),
            b".." => return Err(invalid("`..` component")),
            _ => {}
        }
    }
    Ok(rel.to_vec())
}

fn check_symlink_target(key: &[u8], target: &Path) -> Result<()> {
    let raw = target.as_os_str().as_bytes();
    let reason = if raw.is_empty() {
        "empty target"
    } else if raw.contains(&0) {
        "contains NUL"
    } else if raw.len() >= PATH_MAX {
        "longer than PATH_MAX"
    } else {
        return Ok(());
    };
    Err(Error::InvalidSymlinkTarget {
        path: lossy(key),
        target: lossy(raw),
        reason,
    })
}

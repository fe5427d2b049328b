//! Streaming NAR unpacker that verifies the NAR hash as it writes.
//!
//! `nix-nar`'s decoder is not used for unpacking because it cannot be made safe or fast enough here:
//! it joins entry names onto the destination without rejecting `/` or `..` (relying on one
//! `canonicalize` per entry instead), does not check that entries are sorted and unique, requires
//! UTF-8 names and symlink targets (Nix does not), reads every length-prefixed string into a buffer
//! of the length the archive claims, and skips some padding without checking it.
//!
//! This parser follows Nix's grammar exactly (`nix-archive-1`, `(`, `type`, …), refuses anything
//! that could escape the destination or differ between two unpackers, unpacks into a temporary
//! sibling of the destination, and renames it into place only after the whole archive parsed and its
//! SHA-256 and size matched. A failure removes the temporary tree, so nothing partial is left.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use nix_derivation::{NixHash, StorePath};
use sha2::{Digest, Sha256};

use super::Error;
use super::store_path::NIX_STORE_DIR;

/// Large reads amortise syscalls and channel hand-offs; 1 MiB is where gains flatten out.
const CHUNK: usize = 1 << 20;
/// Chunks read ahead of the unpacker; enough to ride out a burst of small files.
const CHANNEL_DEPTH: usize = 4;
/// Linux's NAME_MAX: a longer name could not be created anyway.
const MAX_NAME: u64 = 255;
/// Linux's PATH_MAX, the longest symlink target.
const MAX_TARGET: u64 = 4095;
/// Longest grammar keyword (`nix-archive-1`), padded.
const MAX_KEYWORD: u64 = 16;

/// Modes as in a Nix store, except directories stay writable so that an unprivileged build can
/// clean up its tree; the image writer sets the final directory modes.
const MODE_FILE: u32 = 0o444;
const MODE_EXEC: u32 = 0o555;
const MODE_DIR: u32 = 0o755;

/// What an unpack wrote and the NAR it read.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct UnpackStats {
    /// SHA-256 of the NAR stream.
    pub nar_hash: NixHash,
    pub nar_size: u64,
    pub regular_files: u64,
    pub executables: u64,
    pub symlinks: u64,
    pub directories: u64,
}

/// Unpack `reader` at `<image_root>/nix/store/<hash>-<name>`.
///
/// With `expected = Some((hash, size))` the stream must hash to exactly that; the tree appears only
/// if it does. Missing parents (`nix`, `nix/store`) are created, and removed again on failure.
pub fn unpack_nar<R: Read + Send>(
    reader: R,
    image_root: &Path,
    store_path: &StorePath,
    expected: Option<(&NixHash, u64)>,
) -> Result<UnpackStats, Error> {
    let what = store_path.to_string();
    unpack_into_image(
        reader,
        image_root,
        store_path,
        expected,
        &what,
        "NAR stream",
    )
}

/// Unpack `reader` at exactly `dest` (which must not exist; its parent must).
pub fn unpack_nar_at<R: Read + Send>(
    reader: R,
    dest: &Path,
    expected: Option<(&NixHash, u64)>,
) -> Result<UnpackStats, Error> {
    let what = dest.display().to_string();
    unpack_at(reader, dest, expected, &what, "NAR stream")
}

/// Shared by [`unpack_nar`] and `NixInput::unpack_into`, which knows where the NAR came from.
pub(crate) fn unpack_into_image<R: Read + Send>(
    reader: R,
    image_root: &Path,
    store_path: &StorePath,
    expected: Option<(&NixHash, u64)>,
    what: &str,
    source: &str,
) -> Result<UnpackStats, Error> {
    let store_dir = image_root.join(NIX_STORE_DIR.trim_start_matches('/'));
    let created = create_parents(image_root, &store_dir)?;
    let dest = store_dir.join(store_path.to_basename());
    let result = unpack_at(reader, &dest, expected, what, source);
    if result.is_err() {
        // Only directories we made and left empty; `remove_dir` refuses non-empty ones.
        for dir in created.iter().rev() {
            if let Err(e) = fs::remove_dir(dir) {
                tracing::debug!(dir = %dir.display(), error = %e, "left parent directory in place");
            }
        }
    }
    result
}

fn create_parents(image_root: &Path, store_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut created = Vec::new();
    let mut dir = image_root.to_path_buf();
    for component in Path::new(NIX_STORE_DIR.trim_start_matches('/')).components() {
        dir.push(component);
        match DirBuilder::new().mode(MODE_DIR).create(&dir) {
            Ok(()) => created.push(dir.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(Error::io("creating", &dir, e)),
        }
    }
    debug_assert_eq!(&dir, store_dir);
    Ok(created)
}

fn unpack_at<R: Read + Send>(
    reader: R,
    dest: &Path,
    expected: Option<(&NixHash, u64)>,
    what: &str,
    source: &str,
) -> Result<UnpackStats, Error> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(Error::DestinationExists {
            path: dest.to_owned(),
        });
    }
    let tmp = temp_sibling(dest)?;
    let limit = expected.map(|(_, size)| size);
    let result = std::thread::scope(|scope| {
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let (recycle, recycled) = channel();
        let reader_thread = scope.spawn(move || hash_chunks(reader, limit, tx, recycled));
        // Dropping the unpacker (its receiver) on failure is what stops the reader thread.
        let parsed = Unpacker::new(rx, recycle, what).run(&tmp);
        let (nar_hash, nar_size) = reader_thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        parsed.map(|stats| UnpackStats {
            nar_hash,
            nar_size,
            ..stats
        })
    })
    .and_then(|stats| {
        check_expected(&stats, expected, what, source)?;
        Ok(stats)
    })
    .and_then(|stats| {
        fs::rename(&tmp, dest).map_err(|e| Error::io("renaming into place", dest, e))?;
        Ok(stats)
    });
    if result.is_err() {
        remove_tree(&tmp);
    }
    result
}

fn check_expected(
    stats: &UnpackStats,
    expected: Option<(&NixHash, u64)>,
    what: &str,
    source: &str,
) -> Result<(), Error> {
    let Some((hash, size)) = expected else {
        return Ok(());
    };
    if stats.nar_size != size {
        return Err(Error::SizeMismatch {
            store_path: what.to_owned(),
            url: source.to_owned(),
            what: "NarSize",
            expected: size,
            got: stats.nar_size,
        });
    }
    if &stats.nar_hash != hash {
        return Err(Error::HashMismatch {
            store_path: what.to_owned(),
            url: source.to_owned(),
            what: "NarHash",
            expected: hash.to_nix_nixbase32_string(),
            got: stats.nar_hash.to_nix_nixbase32_string(),
        });
    }
    Ok(())
}

/// A name no other unpack (in this or another process) uses, next to `dest` so the final rename
/// stays on one filesystem and is atomic.
fn temp_sibling(dest: &Path) -> Result<PathBuf, Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let parent = dest.parent().ok_or_else(|| Error::DestinationExists {
        path: dest.to_owned(),
    })?;
    let name = dest
        .file_name()
        .map(OsStr::to_string_lossy)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(parent.join(format!(".{name}.tmp-{}-{n}", std::process::id())))
}

pub(crate) fn remove_tree(path: &Path) {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return,
    };
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "could not remove partial unpack");
    }
}

/// Read `reader` in chunks on its own thread, hashing and counting them there, so SHA-256 runs
/// while the unpacker is busy creating files. Refuses to read past `limit` (the expected NAR
/// size): a decompression bomb or an over-long NAR stops early.
fn hash_chunks<R: Read>(
    mut reader: R,
    limit: Option<u64>,
    tx: SyncSender<io::Result<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
) -> (NixHash, u64) {
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    loop {
        // Buffers stay CHUNK long (zeroed once, when allocated) and are filled by plain reads:
        // `read_to_end` would start each chunk with small reads and grow them.
        let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        buf.resize(CHUNK, 0);
        match fill(&mut reader, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                buf.truncate(n);
                hasher.update(&buf);
                count += n as u64;
                if let Some(limit) = limit
                    && count > limit
                {
                    let e = io::Error::other(format!(
                        "the NAR is longer than its NarSize of {limit} bytes"
                    ));
                    let _ = tx.send(Err(e));
                    break;
                }
                if tx.send(Ok(buf)).is_err() {
                    // The unpacker stopped (it failed); nothing more to read for.
                    break;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                break;
            }
        }
    }
    (NixHash::Sha256(hasher.finalize().into()), count)
}

/// Read until `buf` is full or the input ends; the number of bytes read.
fn fill<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The unpacker's side of [`hash_chunks`]: a `BufRead` over the chunks, handing spent buffers back.
struct Chunks {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: Sender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    consumed: u64,
    done: bool,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Chunks {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.chunk.len() && !self.done {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let spent = std::mem::replace(&mut self.chunk, next);
                    // The reader thread may have finished; then the buffer is simply freed.
                    let _ = self.recycle.send(spent);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.consumed += n as u64;
    }
}

#[derive(Clone, Copy, Eq, PartialEq)]
enum NodeKind {
    Regular,
    Symlink,
    Directory,
}

struct Unpacker<'a> {
    r: Chunks,
    scratch: Vec<u8>,
    what: &'a str,
    stats: UnpackStats,
    /// Whether the umask lets our modes through; checked once on the first node we create.
    umask_checked: bool,
    fix_modes: bool,
}

impl<'a> Unpacker<'a> {
    fn new(rx: Receiver<io::Result<Vec<u8>>>, recycle: Sender<Vec<u8>>, what: &'a str) -> Self {
        Self {
            r: Chunks {
                rx,
                recycle,
                chunk: Vec::new(),
                pos: 0,
                consumed: 0,
                done: false,
            },
            scratch: Vec::with_capacity(512),
            what,
            stats: UnpackStats {
                nar_hash: NixHash::Sha256([0; 32]),
                nar_size: 0,
                regular_files: 0,
                executables: 0,
                symlinks: 0,
                directories: 0,
            },
            umask_checked: false,
            fix_modes: false,
        }
    }

    fn offset(&self) -> u64 {
        self.r.consumed
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidNar {
            what: self.what.to_owned(),
            offset: self.offset(),
            reason: reason.into(),
        }
    }

    fn read_error(&self, e: &io::Error) -> Error {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.invalid("truncated")
        } else {
            self.invalid(format!("reading: {e}"))
        }
    }

    fn run(mut self, root: &Path) -> Result<UnpackStats, Error> {
        self.expect(b"nix-archive-1")?;
        let mut path = root.to_path_buf();
        // One element per open directory: the previous entry's name, to enforce Nix's strict
        // byte order (which also rules out duplicates).
        let mut open_dirs: Vec<Option<Vec<u8>>> = Vec::new();
        if self.node(&path)? == NodeKind::Directory {
            open_dirs.push(None);
        }
        while let Some(prev) = open_dirs.last() {
            let token = self.token(MAX_KEYWORD)?;
            if token == b")" {
                open_dirs.pop();
                if !open_dirs.is_empty() {
                    // Closes the `entry (` that held this directory.
                    self.expect(b")")?;
                    path.pop();
                }
                continue;
            }
            if token != b"entry" {
                return Err(self.invalid(format!(
                    "expected 'entry' or ')', got {:?}",
                    String::from_utf8_lossy(&token)
                )));
            }
            self.expect(b"(")?;
            self.expect(b"name")?;
            let name = self.token(MAX_NAME)?;
            self.check_name(&name, prev.as_deref())?;
            self.expect(b"node")?;
            path.push(OsStr::from_bytes(&name));
            if let Some(last) = open_dirs.last_mut() {
                *last = Some(name);
            }
            if self.node(&path)? == NodeKind::Directory {
                open_dirs.push(None);
            } else {
                self.expect(b")")?;
                path.pop();
            }
        }
        match self.r.fill_buf() {
            Ok([]) => {}
            Ok(_) => return Err(self.invalid("trailing data after the archive")),
            Err(e) => return Err(self.read_error(&e)),
        }
        // The hash and size are filled in by the caller from the reader thread.
        Ok(self.stats)
    }

    fn check_name(&self, name: &[u8], prev: Option<&[u8]>) -> Result<(), Error> {
        let shown = String::from_utf8_lossy(name);
        if name.is_empty() || name == b"." || name == b".." {
            return Err(self.invalid(format!("entry name {shown:?} is not allowed")));
        }
        if name.contains(&b'/') || name.contains(&0) {
            return Err(self.invalid(format!("entry name {shown:?} contains '/' or NUL")));
        }
        if prev.is_some_and(|p| p >= name) {
            return Err(self.invalid(format!(
                "entry {shown:?} is not after {:?}: directory entries must be sorted and unique",
                String::from_utf8_lossy(prev.unwrap_or_default())
            )));
        }
        Ok(())
    }

    /// One `( type … )` node; for a directory, only up to its first entry.
    fn node(&mut self, path: &Path) -> Result<NodeKind, Error> {
        self.expect(b"(")?;
        self.expect(b"type")?;
        let tag = self.token(MAX_KEYWORD)?;
        match tag.as_slice() {
            b"regular" => {
                let mut token = self.token(MAX_KEYWORD)?;
                let executable = token == b"executable";
                if executable {
                    self.expect(b"")?;
                    token = self.token(MAX_KEYWORD)?;
                }
                if token != b"contents" {
                    return Err(self.invalid("expected 'contents' in a regular file"));
                }
                let size = self.u64()?;
                self.write_file(path, executable, size)?;
                self.padding(size)?;
                self.expect(b")")?;
                self.stats.regular_files += 1;
                self.stats.executables += u64::from(executable);
                Ok(NodeKind::Regular)
            }
            b"symlink" => {
                self.expect(b"target")?;
                let target = self.token(MAX_TARGET)?;
                if target.is_empty() || target.contains(&0) {
                    return Err(self.invalid("symlink target is empty or contains NUL"));
                }
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), path)
                    .map_err(|e| Error::io("creating symlink", path, e))?;
                self.expect(b")")?;
                self.stats.symlinks += 1;
                Ok(NodeKind::Symlink)
            }
            b"directory" => {
                DirBuilder::new()
                    .mode(MODE_DIR)
                    .create(path)
                    .map_err(|e| Error::io("creating directory", path, e))?;
                self.check_mode(path, MODE_DIR, None)?;
                self.stats.directories += 1;
                Ok(NodeKind::Directory)
            }
            other => Err(self.invalid(format!(
                "unknown node type {:?}",
                String::from_utf8_lossy(other)
            ))),
        }
    }

    fn write_file(&mut self, path: &Path, executable: bool, size: u64) -> Result<(), Error> {
        let mode = if executable { MODE_EXEC } else { MODE_FILE };
        // create_new: a name can appear only once (checked), so an existing file means a bug or a
        // race, never something to overwrite.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| Error::io("creating", path, e))?;
        let mut remaining = size;
        while remaining > 0 {
            let chunk = match self.r.fill_buf() {
                Ok([]) => return Err(self.invalid("truncated inside file contents")),
                Ok(chunk) => chunk,
                Err(e) => return Err(self.read_error(&e)),
            };
            let n = chunk
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            file.write_all(&chunk[..n])
                .map_err(|e| Error::io("writing", path, e))?;
            self.r.consume(n);
            remaining -= n as u64;
        }
        self.check_mode(path, mode, Some(&file))
    }

    /// Files and directories are created with their final mode; only a restrictive umask (which
    /// would make the tree depend on the build machine) needs an extra chmod.
    fn check_mode(&mut self, path: &Path, mode: u32, file: Option<&File>) -> Result<(), Error> {
        if !self.umask_checked {
            self.umask_checked = true;
            let meta = match file {
                Some(f) => f.metadata(),
                None => fs::symlink_metadata(path),
            }
            .map_err(|e| Error::io("inspecting", path, e))?;
            self.fix_modes = meta.permissions().mode() & 0o7777 != mode;
        }
        if self.fix_modes {
            let perms = fs::Permissions::from_mode(mode);
            match file {
                Some(f) => f.set_permissions(perms),
                None => fs::set_permissions(path, perms),
            }
            .map_err(|e| Error::io("setting the mode of", path, e))?;
        }
        Ok(())
    }

    fn u64(&mut self) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        self.r.read_exact(&mut b).map_err(|e| self.read_error(&e))?;
        Ok(u64::from_le_bytes(b))
    }

    fn padding(&mut self, len: u64) -> Result<(), Error> {
        let pad = (8 - (len % 8) as usize) % 8;
        let mut b = [0u8; 8];
        self.r
            .read_exact(&mut b[..pad])
            .map_err(|e| self.read_error(&e))?;
        if b[..pad].iter().any(|&x| x != 0) {
            return Err(self.invalid("non-zero padding"));
        }
        Ok(())
    }

    /// A length-prefixed, zero-padded string of at most `max` bytes. The bound is checked before
    /// allocating, so a hostile length cannot exhaust memory.
    fn token(&mut self, max: u64) -> Result<Vec<u8>, Error> {
        self.read_token(max)?;
        Ok(self.scratch.clone())
    }

    /// [`Self::token`] into `self.scratch`, which the keywords of the grammar (most tokens) are
    /// compared in without allocating.
    fn read_token(&mut self, max: u64) -> Result<(), Error> {
        let len = self.u64()?;
        if len > max {
            return Err(self.invalid(format!("string of {len} bytes where at most {max} fit")));
        }
        let len = len as usize;
        self.scratch.clear();
        self.scratch.resize(len, 0);
        let mut scratch = std::mem::take(&mut self.scratch);
        let read = self.r.read_exact(&mut scratch);
        self.scratch = scratch;
        read.map_err(|e| self.read_error(&e))?;
        self.padding(len as u64)
    }

    fn expect(&mut self, want: &[u8]) -> Result<(), Error> {
        self.read_token(MAX_KEYWORD)?;
        if self.scratch != want {
            return Err(self.invalid(format!(
                "expected {:?}, got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&self.scratch)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny NAR writer for hostile inputs the real encoders refuse to produce.
    #[derive(Default)]
    struct Nar(Vec<u8>);

    impl Nar {
        fn s(mut self, s: &[u8]) -> Self {
            self.0.extend_from_slice(&(s.len() as u64).to_le_bytes());
            self.0.extend_from_slice(s);
            self.0.resize(self.0.len().div_ceil(8) * 8, 0);
            self
        }
        fn strs(self, ss: &[&str]) -> Self {
            ss.iter().fold(self, |n, s| n.s(s.as_bytes()))
        }
        fn file(self, name: &str, contents: &[u8]) -> Self {
            self.strs(&[
                "entry", "(", "name", name, "node", "(", "type", "regular", "contents",
            ])
            .s(contents)
            .strs(&[")", ")"])
        }
        fn dir() -> Self {
            Nar::default().strs(&["nix-archive-1", "(", "type", "directory"])
        }
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, Error>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = unpack_nar_at(bytes, &dir.path().join("out"), None);
        (dir, r)
    }

    fn assert_nothing_left(dir: &Path) {
        let left: Vec<_> = fs::read_dir(dir).expect("read_dir").collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn unpacks_a_tree_and_hashes_it() {
        let nar = Nar::dir()
            .file("a", b"hello")
            .strs(&[
                "entry", "(", "name", "b", "node", "(", "type", "symlink", "target", "a",
            ])
            .strs(&[")", ")"])
            .strs(&[
                "entry",
                "(",
                "name",
                "c",
                "node",
                "(",
                "type",
                "directory",
                ")",
                ")",
            ])
            .strs(&[")"]);
        let (dir, r) = unpack(&nar.0);
        let stats = r.expect("unpack");
        let out = dir.path().join("out");
        assert_eq!(fs::read(out.join("a")).expect("a"), b"hello");
        assert_eq!(fs::read_link(out.join("b")).expect("b"), Path::new("a"));
        assert!(out.join("c").is_dir());
        assert_eq!(stats.nar_size, nar.0.len() as u64);
        let digest: [u8; 32] = Sha256::digest(&nar.0).into();
        assert_eq!(stats.nar_hash, NixHash::Sha256(digest));
    }

    #[test]
    fn refuses_escaping_or_ambiguous_entries() {
        for (case, nar) in [
            ("dotdot", Nar::dir().file("..", b"x")),
            ("slash", Nar::dir().file("a/b", b"x")),
            ("absolute", Nar::dir().file("/etc", b"x")),
            ("empty", Nar::dir().file("", b"x")),
            ("unsorted", Nar::dir().file("b", b"x").file("a", b"y")),
            ("duplicate", Nar::dir().file("a", b"x").file("a", b"y")),
        ] {
            let nar = nar.strs(&[")"]);
            let (dir, r) = unpack(&nar.0);
            let e = r.expect_err(case);
            assert!(matches!(e, Error::InvalidNar { .. }), "{case}: {e}");
            assert_nothing_left(dir.path());
        }
    }

    #[test]
    fn refuses_malformed_streams_without_leaving_anything() {
        let good = Nar::dir().file("a", b"hello").strs(&[")"]).0;
        let mut bad_padding = good.clone();
        // The padding after "hello" (5 bytes) starts 3 bytes before the file node's ")".
        let at = bad_padding.len() - 8 * 2 * 2 - 1;
        bad_padding[at] = 1;
        let mut huge = Nar::dir().0;
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good[..good.len() - 8].to_vec()),
            ("trailing", [good.clone(), vec![0; 8]].concat()),
            ("padding", bad_padding),
            ("huge length", huge),
            ("not a nar", b"hello world, not a nar!!".to_vec()),
        ];
        for (case, bytes) in cases {
            let (dir, r) = unpack(&bytes);
            let e = r.expect_err(case);
            assert!(matches!(e, Error::InvalidNar { .. }), "{case}: {e}");
            assert_nothing_left(dir.path());
        }
    }

    #[test]
    fn hash_and_size_mismatches_leave_nothing() {
        let nar = Nar::dir().file("a", b"hello").strs(&[")"]).0;
        let dir = tempfile::tempdir().expect("tempdir");
        let wrong = NixHash::Sha256([7; 32]);
        let e = unpack_nar_at(
            &nar[..],
            &dir.path().join("o"),
            Some((&wrong, nar.len() as u64)),
        )
        .expect_err("hash");
        assert!(e.to_string().contains("NarHash mismatch"), "{e}");
        let e =
            unpack_nar_at(&nar[..], &dir.path().join("o"), Some((&wrong, 16))).expect_err("size");
        assert!(e.to_string().contains("longer than its NarSize"), "{e}");
        assert_nothing_left(dir.path());
    }

    #[test]
    fn unpack_into_image_cleans_up_created_parents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = super::super::parse_store_path(
            "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-basalt-test",
        )
        .expect("path");
        let e = unpack_nar(&b"garbage!"[..], dir.path(), &p, None).expect_err("garbage");
        assert!(e.to_string().contains(&p.to_string()), "{e}");
        assert_nothing_left(dir.path());

        let nar = Nar::default()
            .strs(&[
                "nix-archive-1",
                "(",
                "type",
                "regular",
                "executable",
                "",
                "contents",
            ])
            .s(b"#!/bin/false\n")
            .strs(&[")"]);
        unpack_nar(&nar.0[..], dir.path(), &p, None).expect("single file");
        let f = dir.path().join("nix/store").join(p.to_basename());
        assert_eq!(
            f.metadata().expect("meta").permissions().mode() & 0o777,
            0o555
        );
        let e = unpack_nar(&nar.0[..], dir.path(), &p, None).expect_err("exists");
        assert!(matches!(e, Error::DestinationExists { .. }), "{e}");
    }
}

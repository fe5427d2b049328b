//! A filesystem in memory that can lose power, for tests of what STATE
//! holds after a crash (the model of ALICE and CrashMonkey, kept small).
//!
//! Every inode has a live version (what the running node sees) and a
//! durable one (what the disk holds). Only [`DurableFs::sync_file`] copies
//! a file's data to the disk and only [`DurableFs::sync_dir`] a directory's
//! entries; a new inode reached through a synced entry but never synced
//! itself comes back empty. [`CrashFs::cut_power_after`] makes every step
//! after the N-th fail as if the machine were gone, and
//! [`CrashFs::after_power_cut`] is the filesystem the next boot mounts,
//! under one of three assumptions of what the kernel had flushed on its
//! own ([`Survives`]). [`CrashFs::with_capacity`] makes a disk that fills
//! up (ENOSPC).

use super::durable::{DurableFs, EntryKind};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

type Ino = u64;
const ROOT: Ino = 0;
/// Symlinks followed in one lookup before ELOOP, as Linux does.
const MAX_LINKS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File { data: Vec<u8>, mode: u32 },
    Dir(BTreeMap<String, Ino>),
    Symlink(String),
}

impl Node {
    fn kind(&self) -> EntryKind {
        match self {
            Node::File { .. } => EntryKind::File,
            Node::Dir(_) => EntryKind::Dir,
            Node::Symlink(_) => EntryKind::Symlink,
        }
    }
}

/// What the disk holds after the power cut, beyond what was synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survives {
    /// Only what was synced: the least a kernel promises.
    Synced,
    /// Every step made before the cut, as if the kernel had flushed it all.
    Everything,
    /// Every entry (creates, renames, removals) but only synced file data:
    /// ext4's delayed allocation, where a renamed file can come back empty.
    EntriesNotData,
}

#[derive(Debug)]
struct Model {
    live: BTreeMap<Ino, Node>,
    durable: BTreeMap<Ino, Node>,
    next: Ino,
    /// Mutating steps made so far.
    steps: u64,
    /// The power goes after this many steps.
    cut_after: Option<u64>,
    /// Bytes of file data the disk holds.
    capacity: Option<u64>,
    /// Each mutating step, for a failing test to show.
    log: Vec<String>,
}

/// Cheap to clone; clones share the filesystem.
#[derive(Debug, Clone)]
pub struct CrashFs {
    model: Arc<Mutex<Model>>,
}

impl Default for CrashFs {
    fn default() -> Self {
        Self::new()
    }
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;
const EINVAL: i32 = 22;
const ENOSPC: i32 = 28;
const ELOOP: i32 = 40;
const ENOTEMPTY: i32 = 39;

fn names(path: &Path) -> VecDeque<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

impl Model {
    fn node(&self, ino: Ino) -> io::Result<&Node> {
        self.live.get(&ino).ok_or_else(|| errno(ENOENT))
    }

    fn entries(&self, ino: Ino) -> io::Result<&BTreeMap<String, Ino>> {
        match self.node(ino)? {
            Node::Dir(e) => Ok(e),
            _ => Err(errno(ENOTDIR)),
        }
    }

    fn entries_mut(&mut self, ino: Ino) -> io::Result<&mut BTreeMap<String, Ino>> {
        match self.live.get_mut(&ino) {
            Some(Node::Dir(e)) => Ok(e),
            Some(_) => Err(errno(ENOTDIR)),
            None => Err(errno(ENOENT)),
        }
    }

    /// The inode at `path` (absolute), following symlinks on the way and,
    /// when `follow`, at the end.
    fn lookup(&self, path: &Path, follow: bool) -> io::Result<Ino> {
        let mut dirs = vec![ROOT];
        let mut todo = names(path);
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            let cur = *dirs.last().ok_or_else(|| errno(ENOENT))?;
            if name == ".." {
                if dirs.len() > 1 {
                    dirs.pop();
                }
                continue;
            }
            let ino = *self.entries(cur)?.get(&name).ok_or_else(|| errno(ENOENT))?;
            let last = todo.is_empty();
            match self.node(ino)? {
                Node::Symlink(target) if !last || follow => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(errno(ELOOP));
                    }
                    if target.starts_with('/') {
                        dirs.truncate(1);
                    }
                    for n in names(Path::new(target)).into_iter().rev() {
                        todo.push_front(n);
                    }
                }
                _ if last => return Ok(ino),
                Node::Dir(_) => dirs.push(ino),
                _ => return Err(errno(ENOTDIR)),
            }
        }
        dirs.last().copied().ok_or_else(|| errno(ENOENT))
    }

    /// The directory holding `path`'s last component, and that name.
    fn parent(&self, path: &Path) -> io::Result<(Ino, String)> {
        let name = path
            .file_name()
            .ok_or_else(|| errno(EINVAL))?
            .to_string_lossy()
            .into_owned();
        let dir = self.lookup(path.parent().ok_or_else(|| errno(EINVAL))?, true)?;
        self.entries(dir)?;
        Ok((dir, name))
    }

    fn add(&mut self, node: Node) -> Ino {
        self.next += 1;
        self.live.insert(self.next, node);
        self.next
    }

    /// Count a mutating step, or fail it if the power is gone.
    fn step(&mut self, what: String) -> io::Result<()> {
        if self.cut_after.is_some_and(|n| self.steps >= n) {
            return Err(io::Error::other(format!("power lost before: {what}")));
        }
        self.steps += 1;
        self.log.push(what);
        Ok(())
    }

    /// Bytes of file data reachable from the root.
    fn used(&self) -> u64 {
        let mut total = 0;
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            match self.live.get(&ino) {
                Some(Node::File { data, .. }) => total += data.len() as u64,
                Some(Node::Dir(e)) => todo.extend(e.values().copied()),
                _ => {}
            }
        }
        total
    }

    /// The inodes reachable from the root through `entries_of`.
    fn reachable(&self, entries_of: impl Fn(Ino) -> Option<Node>) -> BTreeMap<Ino, Node> {
        let mut out = BTreeMap::new();
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if out.contains_key(&ino) {
                continue;
            }
            let Some(node) = entries_of(ino) else {
                continue;
            };
            if let Node::Dir(e) = &node {
                todo.extend(e.values().copied());
            }
            out.insert(ino, node);
        }
        out
    }

    /// What an inode is on disk: its synced version, or (never synced)
    /// the kind it was created as, empty. A symlink's target is written
    /// with its inode.
    fn on_disk(&self, ino: Ino) -> Option<Node> {
        if let Some(n) = self.durable.get(&ino) {
            return Some(n.clone());
        }
        Some(match self.live.get(&ino)? {
            Node::File { mode, .. } => Node::File {
                data: Vec::new(),
                mode: *mode,
            },
            Node::Dir(_) => Node::Dir(BTreeMap::new()),
            Node::Symlink(t) => Node::Symlink(t.clone()),
        })
    }
}

impl CrashFs {
    /// An empty filesystem: just `/`, synced.
    pub fn new() -> Self {
        let root = Node::Dir(BTreeMap::new());
        let mut live = BTreeMap::new();
        live.insert(ROOT, root.clone());
        let mut durable = BTreeMap::new();
        durable.insert(ROOT, root);
        Self {
            model: Arc::new(Mutex::new(Model {
                live,
                durable,
                next: ROOT,
                steps: 0,
                cut_after: None,
                capacity: None,
                log: Vec::new(),
            })),
        }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        crate::lock::lock(&self.model)
    }

    /// A disk that holds at most `bytes` of file data: a write past it
    /// fails with ENOSPC (the file is created, but stays empty).
    pub fn with_capacity(self, bytes: u64) -> Self {
        self.model().capacity = Some(bytes);
        self
    }

    /// Bytes of file data stored now.
    pub fn used(&self) -> u64 {
        self.model().used()
    }

    /// Let `n` more mutating steps through, then lose the power: every
    /// later step fails and changes nothing.
    pub fn cut_power_after(&self, n: u64) {
        let mut m = self.model();
        m.cut_after = Some(m.steps + n);
    }

    /// Mutating steps made so far.
    pub fn steps(&self) -> u64 {
        self.model().steps
    }

    /// The mutating steps made so far, described.
    pub fn log(&self) -> Vec<String> {
        self.model().log.clone()
    }

    /// The filesystem the next boot finds: the disk after the power cut,
    /// with power (every inode on disk, as `survives` says).
    pub fn after_power_cut(&self, survives: Survives) -> CrashFs {
        let m = self.model();
        let disk = match survives {
            Survives::Everything => m.reachable(|i| m.live.get(&i).cloned()),
            Survives::Synced => m.reachable(|i| m.on_disk(i)),
            Survives::EntriesNotData => m.reachable(|i| match m.live.get(&i)? {
                Node::File { .. } => m.on_disk(i),
                other => Some(other.clone()),
            }),
        };
        CrashFs {
            model: Arc::new(Mutex::new(Model {
                live: disk.clone(),
                durable: disk,
                next: m.next,
                steps: 0,
                cut_after: None,
                capacity: m.capacity,
                log: Vec::new(),
            })),
        }
    }

    /// Every path with what it holds (file contents lossily as text), for
    /// comparing trees and showing them when a test fails.
    pub fn tree(&self) -> BTreeMap<String, String> {
        let m = self.model();
        let mut out = BTreeMap::new();
        let mut todo = vec![(String::new(), ROOT)];
        while let Some((path, ino)) = todo.pop() {
            match m.live.get(&ino) {
                Some(Node::Dir(e)) => {
                    out.insert(format!("{path}/"), String::new());
                    todo.extend(e.iter().map(|(n, i)| (format!("{path}/{n}"), *i)));
                }
                Some(Node::File { data, .. }) => {
                    out.insert(path, String::from_utf8_lossy(data).into_owned());
                }
                Some(Node::Symlink(t)) => {
                    out.insert(path, format!("-> {t}"));
                }
                None => {}
            }
        }
        out
    }
}

impl DurableFs for CrashFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut m = self.model();
        let (dir, name) = m.parent(path)?;
        if m.entries(dir)?.contains_key(&name) {
            return Err(errno(EEXIST));
        }
        m.step(format!("mkdir {}", path.display()))?;
        let ino = m.add(Node::Dir(BTreeMap::new()));
        m.entries_mut(dir)?.insert(name, ino);
        Ok(())
    }

    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        let mut m = self.model();
        let (dir, name) = m.parent(path)?;
        let existing = m.entries(dir)?.get(&name).copied();
        if let Some(ino) = existing
            && !matches!(m.node(ino)?, Node::File { .. })
        {
            return Err(errno(EISDIR));
        }
        m.step(format!("write {} ({} bytes)", path.display(), data.len()))?;
        let ino = match existing {
            Some(ino) => ino,
            None => {
                let ino = m.add(Node::File {
                    data: Vec::new(),
                    mode,
                });
                m.entries_mut(dir)?.insert(name, ino);
                ino
            }
        };
        let old = match m.live.get(&ino) {
            Some(Node::File { data, .. }) => data.len() as u64,
            _ => 0,
        };
        let full = m
            .capacity
            .is_some_and(|cap| m.used() - old + data.len() as u64 > cap);
        let new = if full { Vec::new() } else { data.to_vec() };
        m.live.insert(ino, Node::File { data: new, mode });
        if full { Err(errno(ENOSPC)) } else { Ok(()) }
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut m = self.model();
        let ino = m.lookup(path, true)?;
        m.step(format!("fsync {}", path.display()))?;
        let node = m.node(ino)?.clone();
        m.durable.insert(ino, node);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut m = self.model();
        let ino = m.lookup(path, true)?;
        m.entries(ino)?;
        m.step(format!("fsync dir {}", path.display()))?;
        let node = m.node(ino)?.clone();
        m.durable.insert(ino, node);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut m = self.model();
        let (fdir, fname) = m.parent(from)?;
        let (tdir, tname) = m.parent(to)?;
        let ino = *m.entries(fdir)?.get(&fname).ok_or_else(|| errno(ENOENT))?;
        if let Some(&target) = m.entries(tdir)?.get(&tname) {
            if target == ino {
                return Ok(());
            }
            match (m.node(ino)?, m.node(target)?) {
                (Node::Dir(_), Node::Dir(e)) if !e.is_empty() => return Err(errno(ENOTEMPTY)),
                (Node::Dir(_), Node::Dir(_)) => {}
                (Node::Dir(_), _) => return Err(errno(ENOTDIR)),
                (_, Node::Dir(_)) => return Err(errno(EISDIR)),
                _ => {}
            }
        }
        m.step(format!("rename {} -> {}", from.display(), to.display()))?;
        m.entries_mut(fdir)?.remove(&fname);
        m.entries_mut(tdir)?.insert(tname, ino);
        Ok(())
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        let mut m = self.model();
        let (dir, name) = m.parent(link)?;
        if m.entries(dir)?.contains_key(&name) {
            return Err(errno(EEXIST));
        }
        m.step(format!("symlink {} -> {target}", link.display()))?;
        let ino = m.add(Node::Symlink(target.to_string()));
        m.entries_mut(dir)?.insert(name, ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut m = self.model();
        let (dir, name) = m.parent(path)?;
        let ino = *m.entries(dir)?.get(&name).ok_or_else(|| errno(ENOENT))?;
        if let Node::Dir(_) = m.node(ino)? {
            return Err(errno(EISDIR));
        }
        m.step(format!("unlink {}", path.display()))?;
        m.entries_mut(dir)?.remove(&name);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut m = self.model();
        let (dir, name) = m.parent(path)?;
        if !m.entries(dir)?.contains_key(&name) {
            return Err(errno(ENOENT));
        }
        m.step(format!("rm -r {}", path.display()))?;
        m.entries_mut(dir)?.remove(&name);
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let m = self.model();
        match m.node(m.lookup(path, true)?)? {
            Node::File { data, .. } => Ok(data.clone()),
            _ => Err(errno(EISDIR)),
        }
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        let m = self.model();
        match m.node(m.lookup(path, false)?)? {
            Node::Symlink(t) => Ok(PathBuf::from(t)),
            _ => Err(errno(EINVAL)),
        }
    }

    fn list(&self, path: &Path) -> io::Result<Vec<(String, EntryKind)>> {
        let m = self.model();
        let entries = m.entries(m.lookup(path, true)?)?;
        entries
            .iter()
            .map(|(n, i)| Ok((n.clone(), m.node(*i)?.kind())))
            .collect()
    }

    fn kind(&self, path: &Path) -> Option<EntryKind> {
        let m = self.model();
        let ino = m.lookup(path, false).ok()?;
        m.node(ino).ok().map(Node::kind)
    }

    fn exists(&self, path: &Path) -> bool {
        let m = self.model();
        m.lookup(path, true).is_ok()
    }
}

#[cfg(test)]
mod tests;

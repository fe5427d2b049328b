//! The narrow boundary between machined's logic and the machine: every
//! side effect on the host, and every read of kernel state, is made by a
//! module under here. On a node the root is `/` and changes are syscalls; in
//! dev mode (`--dev-root DIR`) the same calls land in files under DIR, so
//! everything above runs unprivileged; unit tests use [`recording`].
//!
//! - [`Host`]: files under the root (atomic writes, appends, reads) plus a
//!   [`kernel::Kernel`] (host name, sysctls, modules present).
//! - [`mounts`], [`loopdev`], [`blockdev`]: the mount table and STATE.
//! - [`modules`]: `finit_module` from the image's list ([`modules::ModuleLoader`]).
//! - [`kmsg`] and [`console`]: the kernel log, read and written.
//! - [`power`]: sync and reboot(2) ([`power::Power`]).
//! - [`bpf`]: the live BPF probe (`bpf(2)`), one of Cilium's prerequisites.
//! - [`clock`]: the wall clock and whether it is synchronized (`adjtimex(2)`).
//! - [`identity`]: the node's SMBIOS ids and physical links' addresses.
//! - [`signals`]: signals to a service's process group ([`signals::Signals`]).
//! - [`inspect`]: the API's read-only views of /proc, /sys and files.
//! - [`stats`]: the node's statistics files for a metrics scrape.
//! - [`spool`]: an uploaded upgrade bundle, written as it arrives.
//! - [`recording`]: the recording fake of [`kernel::Kernel`],
//!   [`mounts::Mounter`], [`modules::ModuleLoader`], [`power::Power`] and
//!   [`signals::Signals`] (the network executor's netlink seam,
//!   `network::netlink::LinkOps`, has its fake in its unit tests).
//!
//! Outside this module, only `network::netlink` and the DHCP socket task
//! (rtnetlink and UDP), `supervisor::{spawn, reaper, process, cgroup, logs}`
//! (processes, probes, cgroups, output pipes) and `tls`/`state`
//! (machined's own files, in a directory they are handed) touch the host.
//! `tests/boundary.rs` fails when any other module does.

pub mod blockdev;
pub mod bpf;
pub mod clock;
pub mod console;
pub mod crashfs;
pub mod disk;
pub mod durable;
pub mod efivars;
pub mod esp;
pub mod identity;
pub mod inspect;
pub mod kernel;
pub mod kmsg;
pub mod limits;
pub mod loopdev;
pub mod modules;
pub mod mounts;
pub mod power;
pub mod recording;
pub mod signals;
pub mod spool;
pub mod stats;

use kernel::{DevKernel, Kernel, Linux};
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
    kernel: Arc<dyn Kernel>,
}

#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct HostError {
    pub op: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

pub type Result<T> = std::result::Result<T, HostError>;

fn err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HostError + use<> {
    let path = path.display().to_string();
    move |source| HostError { op, path, source }
}

impl Host {
    pub fn node() -> Self {
        Self {
            root: PathBuf::from("/"),
            kernel: Arc::new(Linux),
        }
    }

    pub fn dev(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            kernel: Arc::new(DevKernel::new(&root)),
            root,
        }
    }

    /// Files under `root`, the kernel's knobs from `kernel` (tests pass a
    /// [`recording::RecordingKernel`]).
    pub fn with_kernel(root: impl Into<PathBuf>, kernel: Arc<dyn Kernel>) -> Self {
        Self {
            root: root.into(),
            kernel,
        }
    }

    /// The directory node paths are mapped below (`/` on a node).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Map an absolute node path into this host's root. Only normal
    /// components survive, so `..` can never climb out of a dev root.
    pub fn path(&self, node_path: impl AsRef<Path>) -> PathBuf {
        let mut out = self.root.clone();
        for c in node_path.as_ref().components() {
            if let Component::Normal(n) = c {
                out.push(n);
            }
        }
        out
    }

    pub fn read(&self, node_path: &str) -> Result<Vec<u8>> {
        let p = self.path(node_path);
        fs::read(&p).map_err(err("read", &p))
    }

    /// Write a file atomically: temp file in the same directory, fsync,
    /// rename over the target, fsync the directory. A crash leaves either
    /// the old or the new content, never a torn file.
    pub fn write_atomic(&self, node_path: &str, data: &[u8], mode: u32) -> Result<()> {
        write_atomic(&self.path(node_path), data, mode)
    }

    pub fn append(&self, node_path: &str, data: &[u8], mode: u32) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.path(node_path);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir).map_err(err("create dir", dir))?;
        }
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(mode)
            .open(&p)
            .map_err(err("open", &p))?;
        f.write_all(data).map_err(err("append", &p))?;
        f.sync_all().map_err(err("sync", &p))
    }

    /// The size of the file at `node_path`.
    pub fn file_len(&self, node_path: &str) -> Result<u64> {
        let p = self.path(node_path);
        fs::metadata(&p).map(|m| m.len()).map_err(err("stat", &p))
    }

    pub fn exists(&self, node_path: &str) -> bool {
        self.path(node_path).exists()
    }

    /// The permission bits of a file or directory, `None` when absent or
    /// unreadable (callers treat that as "needs writing").
    pub fn mode(&self, node_path: &str) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(self.path(node_path))
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }

    /// Create a directory (and missing parents) with `mode`, and set `mode`
    /// on it when it already exists with other bits: secrets' directories
    /// must not stay world-readable because an older version made them so.
    pub fn ensure_dir(&self, node_path: &str, mode: u32) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let p = self.path(node_path);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&p)
            .map_err(err("create dir", &p))?;
        let meta = fs::metadata(&p).map_err(err("stat", &p))?;
        if meta.permissions().mode() & 0o7777 != mode {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(err("chmod", &p))?;
        }
        Ok(())
    }

    /// The names in directory `node_path`, sorted; none when it does not
    /// exist.
    pub fn list_dir(&self, node_path: &str) -> Result<Vec<String>> {
        let p = self.path(node_path);
        let entries = match fs::read_dir(&p) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(err("read dir", &p)(e)),
        };
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(err("read dir", &p))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Create directory `node_path` and its parents.
    pub fn create_dir_all(&self, node_path: &str) -> Result<()> {
        let p = self.path(node_path);
        fs::create_dir_all(&p).map_err(err("create dir", &p))
    }

    /// Copy the tree at `from` to `to` (files, directories and their
    /// permission bits; no symlinks), replacing whatever `to` held. The
    /// copy is made beside `to` (`<to>.partial`, removed again when it
    /// fails) and only then replaces `to`, so `to` never holds half a copy.
    pub fn copy_tree(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.path(from), self.path(to));
        let mut partial = dst.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let _ = fs::remove_dir_all(&partial);
        let copied = copy_dir(&src, &partial).and_then(|()| match fs::remove_dir_all(&dst) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err("remove", &dst)(e)),
            _ => fs::rename(&partial, &dst).map_err(err("rename", &dst)),
        });
        if copied.is_err() {
            let _ = fs::remove_dir_all(&partial);
        }
        copied
    }

    /// Remove `node_path`, a file or a whole directory; gone already is fine.
    pub fn remove_all(&self, node_path: &str) -> Result<()> {
        let p = self.path(node_path);
        let removed = match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => fs::remove_dir_all(&p),
            Ok(_) => fs::remove_file(&p),
        };
        removed.map_err(err("remove", &p))
    }

    pub fn set_hostname(&self, name: &str) -> Result<()> {
        self.kernel
            .set_hostname(name)
            .map_err(err("sethostname", Path::new(name)))
    }

    pub fn hostname(&self) -> String {
        self.kernel.hostname()
    }

    /// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`.
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.kernel
            .write_sysctl(key, value)
            .map_err(err("write sysctl", &kernel::sysctl_path(key)))
    }

    pub fn read_sysctl(&self, key: &str) -> Option<String> {
        self.kernel.read_sysctl(key)
    }

    /// The kernel command line (empty when unreadable).
    pub fn cmdline(&self) -> String {
        self.read("/proc/cmdline")
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// This boot's random id (empty when unreadable).
    pub fn boot_id(&self) -> String {
        self.read("/proc/sys/kernel/random/boot_id")
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default()
    }

    /// Whether kernel module `name` (`-` or `_`) is loaded or built in.
    pub fn module_present(&self, name: &str) -> bool {
        self.kernel.module_present(&name.replace('-', "_"))
    }

    /// Load a trivial BPF program: does this kernel accept and JIT it?
    pub fn clock(&self) -> clock::Clock {
        self.kernel.clock()
    }

    pub fn bpf_probe(&self) -> bpf::BpfProbe {
        self.kernel.bpf_probe()
    }

    /// The `statfs(2)` magic of the filesystem at `node_path`.
    pub fn filesystem_magic(&self, node_path: &str) -> Option<u64> {
        self.kernel.filesystem_magic(node_path)
    }
}

fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    let meta = fs::metadata(src).map_err(err("stat", src))?;
    fs::create_dir_all(dst).map_err(err("create dir", dst))?;
    fs::set_permissions(dst, meta.permissions()).map_err(err("chmod", dst))?;
    for entry in fs::read_dir(src).map_err(err("read dir", src))? {
        let entry = entry.map_err(err("read dir", src))?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type().map_err(err("stat", &from))?;
        if kind.is_dir() {
            copy_dir(&from, &to)?;
        } else if kind.is_file() {
            fs::copy(&from, &to).map_err(err("copy", &from))?;
        } else {
            return Err(err("copy", &from)(io::Error::other(
                "neither a file nor a directory",
            )));
        }
    }
    Ok(())
}

/// Replace a file whole on the real filesystem: see
/// [`durable::write_atomic`] (temp file, fsync, rename, fsync of the
/// directory; new directories synced into their parents).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    durable::write_atomic(&durable::RealFs, path, data, mode).map_err(err("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_tree_replaces_the_target_whole_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::dev(dir.path());
        host.create_dir_all("/usr/lib/x/bpf/include").unwrap();
        host.write_atomic("/usr/lib/x/bpf/a.c", b"int a;", 0o644)
            .unwrap();
        host.write_atomic("/usr/lib/x/bpf/include/b.h", b"#define B", 0o444)
            .unwrap();
        // Whatever was at the target before goes.
        host.write_atomic("/var/lib/x/bpf/stale.h", b"old", 0o644)
            .unwrap();
        host.copy_tree("/usr/lib/x/bpf", "/var/lib/x/bpf").unwrap();
        assert_eq!(host.read("/var/lib/x/bpf/a.c").unwrap(), b"int a;");
        assert_eq!(host.mode("/var/lib/x/bpf/include/b.h"), Some(0o444));
        assert!(!host.exists("/var/lib/x/bpf/stale.h"));
        assert!(!host.exists("/var/lib/x/bpf.partial"));
        // The copy is writable where the agent writes (its own new files).
        host.write_atomic("/var/lib/x/bpf/include/features.h", b"x", 0o644)
            .unwrap();
        let missing = host.copy_tree("/nowhere", "/var/lib/y").unwrap_err();
        assert!(missing.to_string().contains("nowhere"), "{missing}");
    }
}

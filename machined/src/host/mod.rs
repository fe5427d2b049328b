//! The narrow boundary between machined's logic and the machine. On a node
//! the root is `/` and changes are syscalls; in dev mode (`--dev-root DIR`) the
//! same calls land in files under DIR, so everything above runs unprivileged.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// PID 1 on a real kernel.
    Node,
    /// Unprivileged, everything under a temp root.
    Dev,
}

#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
    mode: HostMode,
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
            mode: HostMode::Node,
        }
    }

    pub fn dev(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            mode: HostMode::Dev,
        }
    }

    pub fn mode(&self) -> HostMode {
        self.mode
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

    pub fn exists(&self, node_path: &str) -> bool {
        self.path(node_path).exists()
    }

    pub fn set_hostname(&self, name: &str) -> Result<()> {
        match self.mode {
            HostMode::Node => rustix::system::sethostname(name.as_bytes())
                .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))
                .map_err(err("sethostname", Path::new(name))),
            HostMode::Dev => self.write_atomic(
                "/proc/sys/kernel/hostname",
                format!("{name}\n").as_bytes(),
                0o644,
            ),
        }
    }

    pub fn hostname(&self) -> String {
        match self.mode {
            HostMode::Node => rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            HostMode::Dev => self
                .read("/proc/sys/kernel/hostname")
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_else(|_| "localhost".into()),
        }
    }

    /// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`.
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let rel = format!("/proc/sys/{}", key.replace('.', "/"));
        let p = self.path(&rel);
        match self.mode {
            HostMode::Node => fs::write(&p, value.as_bytes()).map_err(err("write sysctl", &p)),
            HostMode::Dev => {
                if let Some(dir) = p.parent() {
                    fs::create_dir_all(dir).map_err(err("create dir", dir))?;
                }
                fs::write(&p, format!("{value}\n")).map_err(err("write sysctl", &p))
            }
        }
    }

    pub fn read_sysctl(&self, key: &str) -> Option<String> {
        let rel = format!("/proc/sys/{}", key.replace('.', "/"));
        self.read(&rel)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
    }
}

pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(err("create dir", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err("create", &tmp))?;
        f.write_all(data).map_err(err("write", &tmp))?;
        f.sync_all().map_err(err("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(err("rename into", path))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("sync dir", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

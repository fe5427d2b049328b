//! The kernel's small knobs behind one trait: host name, sysctls, which
//! modules are present, signals to process groups, power. [`Linux`] makes
//! the syscalls; [`DevKernel`] keeps the same state in files under a dev
//! root; [`super::recording::RecordingKernel`] records calls for tests.

use std::fs;
use std::io;
use std::path::PathBuf;

/// What PID 1 asks of the kernel outside files. Every method is a side
/// effect or a read of kernel state; nothing above this trait makes one.
pub trait Kernel: Send + Sync + std::fmt::Debug {
    fn hostname(&self) -> String;
    fn set_hostname(&self, name: &str) -> io::Result<()>;
    /// `net.ipv4.ip_forward` style keys; `None` when unreadable.
    fn read_sysctl(&self, key: &str) -> Option<String>;
    fn write_sysctl(&self, key: &str, value: &str) -> io::Result<()>;
    /// Whether a module is loaded or built in (`/sys/module/<name>`), so a
    /// config may require it. Names use `_` (as the kernel does).
    fn module_present(&self, name: &str) -> bool;
    /// Load a trivial BPF program and report what the kernel did with it.
    fn bpf_probe(&self) -> super::bpf::BpfProbe;
    /// `statfs(2)` `f_type` of the filesystem at `path` (a node path).
    fn filesystem_magic(&self, path: &str) -> Option<u64>;
    /// The wall clock and whether it is synchronized.
    fn clock(&self) -> super::clock::Clock;
    /// Set this process's `oom_score_adj` (-1000 = never chosen by the
    /// OOM killer, 1000 = chosen first).
    fn set_own_oom_score_adj(&self, score: i32) -> io::Result<()>;
}

/// Where a process's own OOM score adjustment lives, relative to `/`.
const OWN_OOM_SCORE_ADJ: &str = "proc/self/oom_score_adj";

fn statfs_magic(path: &std::path::Path) -> Option<u64> {
    // `f_type` is a signed word; the magics are 32-bit patterns.
    rustix::fs::statfs(path)
        .ok()
        .map(|s| u64::from(s.f_type as u32))
}

/// `net.ipv4.ip_forward` → `proc/sys/net/ipv4/ip_forward` (relative). A key
/// written with `/` is taken as a path, as sysctl(8) does, for names that
/// hold dots themselves (`net/ipv4/conf/eth0.100/forwarding`).
pub fn sysctl_path(key: &str) -> PathBuf {
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    PathBuf::from("proc/sys").join(rel.trim_start_matches('/'))
}

/// The running kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Kernel for Linux {
    fn hostname(&self) -> String {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }

    fn set_hostname(&self, name: &str) -> io::Result<()> {
        rustix::system::sethostname(name.as_bytes())
            .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))
    }

    fn read_sysctl(&self, key: &str) -> Option<String> {
        fs::read_to_string(PathBuf::from("/").join(sysctl_path(key)))
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn write_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        fs::write(PathBuf::from("/").join(sysctl_path(key)), value.as_bytes())
    }

    fn module_present(&self, name: &str) -> bool {
        PathBuf::from("/sys/module").join(name).exists()
    }

    fn bpf_probe(&self) -> super::bpf::BpfProbe {
        super::bpf::probe()
    }

    fn filesystem_magic(&self, path: &str) -> Option<u64> {
        statfs_magic(std::path::Path::new(path))
    }

    fn clock(&self) -> super::clock::Clock {
        super::clock::read()
    }

    fn set_own_oom_score_adj(&self, score: i32) -> io::Result<()> {
        fs::write(
            PathBuf::from("/").join(OWN_OOM_SCORE_ADJ),
            score.to_string(),
        )
    }
}

/// A dev root's stand-in kernel: the host name and sysctls are files under
/// the root (where the API's read endpoint can see them), and every module
/// counts as present: a dev node has no kernel of its own to ask.
#[derive(Debug, Clone)]
pub struct DevKernel {
    root: PathBuf,
}

impl DevKernel {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn hostname_file(&self) -> PathBuf {
        self.root.join("proc/sys/kernel/hostname")
    }
}

impl Kernel for DevKernel {
    fn hostname(&self) -> String {
        fs::read_to_string(self.hostname_file())
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    }

    fn set_hostname(&self, name: &str) -> io::Result<()> {
        super::write_atomic(&self.hostname_file(), format!("{name}\n").as_bytes(), 0o644)
            .map_err(|e| e.source)
    }

    fn read_sysctl(&self, key: &str) -> Option<String> {
        fs::read_to_string(self.root.join(sysctl_path(key)))
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn write_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let p = self.root.join(sysctl_path(key));
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&p, format!("{value}\n"))
    }

    fn module_present(&self, _name: &str) -> bool {
        true
    }

    /// The kernel a dev node's services run on is the host's: probe it.
    fn bpf_probe(&self) -> super::bpf::BpfProbe {
        super::bpf::probe()
    }

    fn filesystem_magic(&self, path: &str) -> Option<u64> {
        statfs_magic(&self.root.join(path.trim_start_matches('/')))
    }

    /// A dev node keeps the host's time.
    fn clock(&self) -> super::clock::Clock {
        super::clock::read()
    }

    /// A dev node is not PID 1 and may not lower its score: the value is
    /// kept under the dev root, like its sysctls.
    fn set_own_oom_score_adj(&self, score: i32) -> io::Result<()> {
        let p = self.root.join(OWN_OOM_SCORE_ADJ);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&p, format!("{score}\n"))
    }
}

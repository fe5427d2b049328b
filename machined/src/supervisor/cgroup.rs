//! One cgroup v2 per service under a root (e.g. `/sys/fs/cgroup/basalt`).
//!
//! When the root is not on a cgroup2 filesystem (tests, a temp dir, a host
//! with cgroup v1 only) the supervisor logs that once and runs without
//! cgroups; memory then shows as `None`.

use crate::metrics::kernel_stats::{self, Pressure};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a node's service cgroups live (PID 1 mounts cgroup2 above it).
pub const NODE_CGROUP_ROOT: &str = "/sys/fs/cgroup/basalt";

/// `CGROUP2_SUPER_MAGIC` from linux/magic.h.
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// The cgroup root in use.
#[derive(Debug)]
pub(crate) struct Cgroups {
    root: PathBuf,
}

/// What a service's cgroup has used, from its cgroup v2 files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceUsage {
    /// `cpu.stat` `usage_usec`, in seconds.
    pub cpu_seconds: Option<f64>,
    pub memory_current: Option<u64>,
    /// The most `memory.current` has been (kernel 5.19 and later).
    pub memory_peak: Option<u64>,
    /// `io.stat`, summed over devices (needs the io controller).
    pub io_read_bytes: Option<u64>,
    pub io_written_bytes: Option<u64>,
    /// cpu, memory and io pressure
    /// ([`kernel_stats::PRESSURE_RESOURCES`] order).
    pub pressure: [Pressure; 3],
}

/// A service cgroup, ready to receive processes.
pub(crate) struct ServiceCgroup {
    /// `cgroup.procs`, opened write-only and close-on-exec, for the spawn hook.
    pub procs: Arc<OwnedFd>,
}

fn is_cgroup2(path: &Path) -> bool {
    // f_type is a signed word on most targets; compare its bit pattern.
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as u64 == CGROUP2_SUPER_MAGIC)
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

impl Cgroups {
    /// Use `root` (created if its parent is cgroup2) or return `None`, logging why.
    pub fn detect(root: Option<&Path>) -> Option<Cgroups> {
        let root = root?;
        let usable = if root.exists() {
            is_cgroup2(root)
        } else {
            root.parent().is_some_and(is_cgroup2) && {
                match fs::create_dir(root) {
                    Ok(()) => true,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => true,
                    Err(e) => {
                        tracing::warn!("cannot create cgroup root {}: {e}", root.display());
                        false
                    }
                }
            }
        };
        if !usable {
            tracing::warn!(
                "{} is not a usable cgroup2 directory: running services without cgroups",
                root.display()
            );
            return None;
        }
        // Memory and IO accounting and pid limits for the service cgroups: best
        // effort, one controller at a time (a write naming a controller the
        // parent does not delegate fails whole), and the parent may delegate
        // neither (then memory.* or pids.* files are absent).
        for dir in root.parent().into_iter().chain([root]) {
            // io: `io.stat` (bytes read and written) for metrics.
            for controller in ["+memory", "+pids", "+io"] {
                if is_cgroup2(dir)
                    && let Err(e) = write_file(&dir.join("cgroup.subtree_control"), controller)
                {
                    tracing::debug!("enabling {controller} in {}: {e}", dir.display());
                }
            }
        }
        Some(Cgroups {
            root: root.to_path_buf(),
        })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Create (or reuse) the service cgroup and apply `memory.max` and
    /// `pids.max` (`None` writes `max`, so a reused cgroup loses an old limit).
    pub fn prepare(
        &self,
        name: &str,
        memory_max: Option<u64>,
        pids_max: Option<u64>,
    ) -> io::Result<ServiceCgroup> {
        let dir = self.dir(name);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        for (file, limit) in [("memory.max", memory_max), ("pids.max", pids_max)] {
            let value = limit.map_or_else(|| "max".to_string(), |m| m.to_string());
            if let Err(e) = write_file(&dir.join(file), &value)
                && limit.is_some()
            {
                tracing::warn!(
                    service = name,
                    "cannot set {file} (controller not available?): {e}"
                );
            }
        }
        let procs = OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?;
        Ok(ServiceCgroup {
            procs: Arc::new(OwnedFd::from(procs)),
        })
    }

    /// `memory.current` of the service cgroup, if accounted.
    pub fn memory_current(&self, name: &str) -> Option<u64> {
        fs::read_to_string(self.dir(name).join("memory.current"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// What the service's cgroup has used so far (files the kernel or the
    /// delegated controllers do not provide are `None`).
    pub fn usage(&self, name: &str) -> ServiceUsage {
        let dir = self.dir(name);
        let read = |file: &str| fs::read_to_string(dir.join(file)).ok();
        let io = read("io.stat").map(|t| kernel_stats::cgroup_io_bytes(&t));
        ServiceUsage {
            cpu_seconds: read("cpu.stat").and_then(|t| kernel_stats::cgroup_cpu_seconds(&t)),
            memory_current: read("memory.current").and_then(|t| kernel_stats::number(&t)),
            memory_peak: read("memory.peak").and_then(|t| kernel_stats::number(&t)),
            io_read_bytes: io.map(|(r, _)| r),
            io_written_bytes: io.map(|(_, w)| w),
            pressure: kernel_stats::PRESSURE_RESOURCES.map(|r| {
                read(&format!("{r}.pressure"))
                    .map(|t| kernel_stats::pressure(&t))
                    .unwrap_or_default()
            }),
        }
    }

    /// Remove the service cgroup; fails harmlessly while processes remain in it.
    pub fn remove(&self, name: &str) {
        if let Err(e) = fs::remove_dir(self.dir(name))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::debug!(service = name, "keeping cgroup: {e}");
        }
    }
}

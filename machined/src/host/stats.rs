//! The node's statistics for a metrics scrape, read from the kernel: the
//! files [`crate::metrics::kernel_stats`] parses, the sizes of the node's
//! filesystems, the kernel release and the image's os-release.
//!
//! Unreadable files come back empty (their metrics are then absent): a
//! scrape reports what it can rather than failing whole.

use std::fs;
use std::path::Path;

/// The resource files of `/proc/pressure`, in
/// [`crate::metrics::kernel_stats::PRESSURE_RESOURCES`] order.
const PRESSURE_FILES: [&str; 3] = [
    "/proc/pressure/cpu",
    "/proc/pressure/memory",
    "/proc/pressure/io",
];

/// The node-wide statistics files, as the kernel printed them.
#[derive(Debug, Clone, Default)]
pub struct NodeStatsText {
    pub stat: String,
    pub meminfo: String,
    pub loadavg: String,
    pub uptime: String,
    pub net_dev: String,
    /// cpu, memory, io.
    pub pressure: [String; 3],
    /// `uname -r`.
    pub kernel_release: String,
    /// The image's `/usr/lib/os-release` (below the host root in dev mode).
    pub os_release: String,
}

fn text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Read every node-wide statistics file; `root` is the host root (for the
/// image's os-release: `/proc` is always the running kernel's).
pub fn node_stats(root: &Path) -> NodeStatsText {
    NodeStatsText {
        stat: text(Path::new("/proc/stat")),
        meminfo: text(Path::new("/proc/meminfo")),
        loadavg: text(Path::new("/proc/loadavg")),
        uptime: text(Path::new("/proc/uptime")),
        net_dev: text(Path::new("/proc/net/dev")),
        pressure: PRESSURE_FILES.map(|p| text(Path::new(p))),
        kernel_release: rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
        os_release: text(&root.join("usr/lib/os-release")),
    }
}

/// The clock ticks per second `/proc/stat` counts in (`USER_HZ`).
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// Size and space available to unprivileged writers of the filesystem
/// holding `path`, in bytes; `None` if it cannot be asked.
pub fn filesystem_bytes(path: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    let block = s.f_frsize.max(1);
    Some((
        s.f_blocks.saturating_mul(block),
        s.f_bavail.saturating_mul(block),
    ))
}

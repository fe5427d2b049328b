//! The mount table PID 1 builds: API filesystems, the read-only root image
//! and the switch into it, writable tmpfs for /run, /tmp, /var, and STATE.
//! [`Mounter`] is the seam for the mounts PID 1 later undoes (STATE), so
//! the boot logic that decides them runs against a recording fake.

use rustix::mount::{MountFlags, UnmountFlags, mount, mount_move, unmount};
use std::ffi::CString;
use std::fs;
use std::io;

/// Mount options as the C string mount(2) wants; none when empty.
fn opts(data: &str) -> Option<CString> {
    if data.is_empty() {
        None
    } else {
        CString::new(data).ok()
    }
}

fn mnt(src: &str, target: &str, fstype: &str, flags: MountFlags, data: &str) {
    let _ = fs::create_dir_all(target);
    if let Err(e) = mount(src, target, fstype, flags, opts(data).as_deref()) {
        // EBUSY: already mounted (e.g. devtmpfs automounted by the kernel).
        if e != rustix::io::Errno::BUSY {
            tracing::warn!("mount {fstype} on {target}: {e}");
        }
    }
}

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

/// Step 1: what every later step needs. Safe to call before logging exists.
pub fn early() {
    mnt("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, "");
    mnt("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, "");
    mnt(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MountFlags::NOSUID,
        "mode=0755",
    );
    mnt(
        "tmpfs",
        "/run",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        "mode=0755",
    );
}

/// Step 3: mount the root image read-only and make it `/`.
pub fn switch_root(image: &str) -> io::Result<()> {
    let fstype = if image.ends_with(".erofs") {
        "erofs"
    } else {
        "squashfs"
    };
    let (loopdev, _hold) = super::loopdev::attach_read_only(image)?;
    switch_root_from(&loopdev, fstype)
}

/// Step 3 from a block device (a root slot on the boot disk): mount it
/// read-only as `fstype` and make it `/`.
pub fn switch_root_from(dev: &str, fstype: &str) -> io::Result<()> {
    fs::create_dir_all("/sysroot")?;
    mount(dev, "/sysroot", fstype, MountFlags::RDONLY, None)
        .map_err(|e| io::Error::other(format!("mount {dev} ({fstype}) on /sysroot: {e}")))?;
    for (dir, mode) in [("/sysroot/tmp", "mode=1777"), ("/sysroot/var", "mode=0755")] {
        mount(
            "tmpfs",
            dir,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            opts(mode).as_deref(),
        )
        .map_err(|e| io::Error::other(format!("tmpfs on {dir}: {e}")))?;
    }
    for dir in ["/dev", "/proc", "/sys", "/run"] {
        let target = format!("/sysroot{dir}");
        mount_move(dir, target.as_str())
            .map_err(|e| io::Error::other(format!("moving {dir}: {e}")))?;
    }
    std::env::set_current_dir("/sysroot")?;
    mount_move(".", "/").map_err(|e| io::Error::other(format!("moving /sysroot to /: {e}")))?;
    rustix::process::chroot(".").map_err(|e| io::Error::other(format!("chroot: {e}")))?;
    std::env::set_current_dir("/")?;
    Ok(())
}

/// A bind mount of `src` on `target` (created).
pub fn bind(src: &str, target: &str) -> io::Result<()> {
    fs::create_dir_all(target)?;
    mount(src, target, "", MountFlags::BIND, None)
        .map_err(|e| io::Error::other(format!("bind {src} on {target}: {e}")))
}

/// The unified cgroup hierarchy (cgroup v2 only: no v1 controllers).
pub const CGROUP2_FS: &str = "/sys/fs/cgroup";
/// The BPF filesystem: pinned maps and programs outlive their loader
/// (Cilium's datapath keeps working while its agent restarts).
pub const BPF_FS: &str = "/sys/fs/bpf";
/// `statfs(2)` `f_type` of cgroup2 and of the BPF filesystem.
pub const CGROUP2_MAGIC: u64 = 0x6367_7270;
pub const BPF_FS_MAGIC: u64 = 0xcafe_4a11;

/// After the switch (or without one): the rest of the API filesystems.
pub fn late() {
    mnt(
        "devpts",
        "/dev/pts",
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        "mode=0620,ptmxmode=0666",
    );
    mnt(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        "mode=1777",
    );
    mnt(
        "cgroup2",
        CGROUP2_FS,
        "cgroup2",
        NOSUID_NODEV_NOEXEC,
        "nsdelegate",
    );
    mnt("bpf", BPF_FS, "bpf", NOSUID_NODEV_NOEXEC, "mode=0700");
    if !std::path::Path::new("/tmp").is_dir() || fs::write("/tmp/.basalt-probe", b"").is_err() {
        mnt(
            "tmpfs",
            "/tmp",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=1777",
        );
    }
    let _ = fs::remove_file("/tmp/.basalt-probe");
    // Targets of the image's /etc/{cni,cri} symlinks: the writable drop-in dirs.
    for dir in ["/run/basalt/etc/cni/net.d", "/run/basalt/etc/cri/conf.d"] {
        let _ = fs::create_dir_all(dir);
    }
    // Memory accounting for the per-service cgroups.
    let _ = fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+memory +pids");
}

/// One mount(2), as the boundary takes it.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub fstype: &'a str,
    pub flags: MountFlags,
    pub data: &'a str,
}

/// Mounting and unmounting filesystems.
pub trait Mounter: Send + Sync {
    /// Create the target directory and mount on it.
    fn mount(&self, spec: &MountSpec<'_>) -> io::Result<()>;
    fn unmount(&self, target: &str) -> io::Result<()>;
}

impl Mounter for super::kernel::Linux {
    fn mount(&self, spec: &MountSpec<'_>) -> io::Result<()> {
        fs::create_dir_all(spec.target)?;
        mount(
            spec.source,
            spec.target,
            spec.fstype,
            spec.flags,
            opts(spec.data).as_deref(),
        )
        .map_err(|e| {
            io::Error::other(format!(
                "mount {} ({}) on {}: {e}",
                spec.source, spec.fstype, spec.target
            ))
        })
    }

    fn unmount(&self, target: &str) -> io::Result<()> {
        unmount(target, UnmountFlags::empty())
            .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))
    }
}

/// Where EPHEMERAL is mounted.
pub const VAR: &str = "/var";

/// EPHEMERAL on /var: container images and their writable layers live
/// there, so it must allow executables, setuid and device nodes.
pub fn ephemeral_spec(dev: &str) -> MountSpec<'_> {
    MountSpec {
        source: dev,
        target: VAR,
        fstype: "ext4",
        flags: MountFlags::empty(),
        data: "",
    }
}

/// STATE's ext4 filesystem: no devices, no setuid, nothing executable.
pub fn state_spec<'a>(dev: &'a str, target: &'a str) -> MountSpec<'a> {
    MountSpec {
        source: dev,
        target,
        fstype: "ext4",
        flags: MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        data: "",
    }
}

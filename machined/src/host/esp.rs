//! The ESP of the boot disk, mounted for the moment machined changes its
//! boot entries (\EFI\Linux) and unmounted again, so a crash at any other
//! time finds a clean FAT. Every change is a write to a temporary name,
//! fsync, then a rename in one directory: the atomic step systemd-boot's
//! boot counting is designed around.

use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

const MOUNT: &str = "/run/basalt/esp";

#[derive(Debug, thiserror::Error)]
#[error("ESP {op} {path}: {source}")]
pub struct EspError {
    pub op: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> EspError + 'a {
    move |source| EspError {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// The boot entries in \EFI\Linux, as the slot logic changes them.
pub trait BootEntries: Send + Sync {
    fn list(&self) -> Result<Vec<String>, EspError>;
    fn rename(&self, from: &str, to: &str) -> Result<(), EspError>;
    fn remove(&self, name: &str) -> Result<(), EspError>;
    /// Copies `len` bytes at `offset` of `src` into entry `name`, durably.
    fn write(&self, name: &str, src: &Path, offset: u64, len: u64) -> Result<(), EspError>;
}

/// The ESP partition `dev`, mounted per operation at /run/basalt/esp.
pub struct Esp {
    pub dev: String,
}

struct Mounted;

impl Mounted {
    fn new(dev: &str) -> Result<Mounted, EspError> {
        let target = Path::new(MOUNT);
        fs::create_dir_all(target).map_err(err("mkdir", target))?;
        mount(
            dev,
            MOUNT,
            "vfat",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        )
        .map_err(|e| EspError {
            op: "mount",
            path: dev.to_string(),
            source: io::Error::from_raw_os_error(e.raw_os_error()),
        })?;
        Ok(Mounted)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = unmount(MOUNT, UnmountFlags::empty()) {
            tracing::warn!("unmounting the ESP at {MOUNT}: {e}");
        }
    }
}

fn uki_dir() -> PathBuf {
    Path::new(MOUNT).join(basalt_api::disk_layout::ESP_UKI_DIR)
}

fn sync_dir(dir: &Path) -> Result<(), EspError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("fsync", dir))
}

impl BootEntries for Esp {
    fn list(&self) -> Result<Vec<String>, EspError> {
        let _m = Mounted::new(&self.dev)?;
        let dir = uki_dir();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(err("list", &dir))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), EspError> {
        let _m = Mounted::new(&self.dev)?;
        let dir = uki_dir();
        fs::rename(dir.join(from), dir.join(to)).map_err(err("rename", &dir.join(from)))?;
        sync_dir(&dir)
    }

    fn remove(&self, name: &str) -> Result<(), EspError> {
        let _m = Mounted::new(&self.dev)?;
        let dir = uki_dir();
        fs::remove_file(dir.join(name)).map_err(err("remove", &dir.join(name)))?;
        sync_dir(&dir)
    }

    fn write(&self, name: &str, src: &Path, offset: u64, len: u64) -> Result<(), EspError> {
        let _m = Mounted::new(&self.dev)?;
        let dir = uki_dir();
        // systemd-boot lists only `*.efi`: a half-written file is never an entry.
        let tmp = dir.join(format!("{name}.part"));
        let mut to = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(err("create", &tmp))?;
        super::disk::copy_range(src, offset, len, &mut to).map_err(err("write", &tmp))?;
        to.sync_all().map_err(err("fsync", &tmp))?;
        fs::rename(&tmp, dir.join(name)).map_err(err("rename", &tmp))?;
        sync_dir(&dir)
    }
}

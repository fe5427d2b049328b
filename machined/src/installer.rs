//! Installing from the ISO: a signed config with `[machine.install]` makes
//! the installer (machined booted from the ISO, whose initramfs carries the
//! disk's first bytes and the root image) write a Basalt disk and reboot
//! into it, with the config and the node's TLS identity already in its
//! STATE, so the installed node answers as the same node.
//!
//! The disk is checked before anything is written: it must exist, be large
//! enough, not be the medium we run from, and be empty (zeros in its first
//! and last MiB) unless `wipe = true`.

use crate::bootdisk::BootDiskError;
use crate::host::Host;
use crate::host::disk::{Disk, DiskError, Disks};
use crate::host::mounts::{Mounter, state_spec};
use crate::state::{SignedDoc, StateStore};
use basalt_api::config::{Install, InstallTarget};
use basalt_api::disk_layout::{self, ALIGN, MIB, STATE_NAME};
use basalt_api::gpt::{SECTOR, Table};
use basalt_api::image_layout::{INSTALL_DISK_HEAD, ROOT_IMAGE};
use std::sync::Arc;
use std::time::Duration;

/// Where the initramfs' `/basalt` stays visible after PID 1 switches into
/// the root image: a bind mount under /run, which moves into the new root
/// with /run (see `pid1`).
pub const MEDIA: &str = "/run/basalt/installer";

/// `path` (under `/basalt` in the initramfs) as seen through [`MEDIA`].
pub fn media_path(path: &str) -> String {
    format!("{MEDIA}{}", path.strip_prefix("/basalt").unwrap_or(path))
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Found before writing: the disk is as it was. `key` is the config
    /// key the refusal is about (`machine.install.disk`,
    /// `machine.install.selector`).
    #[error("{key}: {why}")]
    Refused { key: &'static str, why: String },
    #[error("installing to {disk}: {source}")]
    Disk { disk: String, source: DiskError },
    #[error("installing to {disk}: {source}")]
    Partitions { disk: String, source: BootDiskError },
    #[error("installing to {disk}: {what}")]
    State { disk: String, what: String },
}

/// `/dev/vdb`, or `/dev/vdb (matched by serial = "…")`: which disk a
/// selector chose is news to the operator.
fn chosen(install: &Install, disk: &Disk) -> String {
    match install.target() {
        Some(InstallTarget::Selector(sel)) => format!("{} (matched by {sel})", disk.path()),
        _ => disk.path(),
    }
}

fn refused(key: &'static str, why: String) -> InstallError {
    InstallError::Refused { key, why }
}

/// Where a ISO-booted node keeps what it installs from, and does it.
pub trait Installer: Send + Sync {
    /// Whether `install` can be done: checked before a config is accepted.
    /// Returns the disk it would write, as the plan names it.
    fn check(&self, install: &Install) -> Result<String, InstallError>;
    /// Writes the disk, then the config (and identity) into its STATE.
    fn install(
        &self,
        install: &Install,
        generation: u64,
        doc: &SignedDoc,
    ) -> Result<String, InstallError>;
}

/// The real installer: this machine's disks, the payload in the initramfs.
pub struct DiskInstaller {
    pub disks: Arc<dyn Disks>,
    pub mounter: Arc<dyn Mounter>,
    pub host: Host,
    /// The RAM STATE the ISO runs from (its TLS identity is copied).
    pub ram_state: String,
}

impl DiskInstaller {
    /// An installer if this boot carries the payload (an ISO boot).
    pub fn from_payload(
        host: &Host,
        disks: Arc<dyn Disks>,
        mounter: Arc<dyn Mounter>,
        ram_state: &str,
    ) -> Option<DiskInstaller> {
        (host.exists(&media_path(INSTALL_DISK_HEAD)) && host.exists(&media_path(ROOT_IMAGE))).then(
            || DiskInstaller {
                disks,
                mounter,
                host: host.clone(),
                ram_state: ram_state.to_string(),
            },
        )
    }

    /// The disk `install` names, checked fit to be written.
    fn target(&self, install: &Install) -> Result<Disk, InstallError> {
        let disks = self.disks.list();
        let (key, disk) = match install.target() {
            Some(InstallTarget::Disk(path)) => {
                let key = "machine.install.disk";
                let Some(disk) = disks.iter().find(|d| d.is_named(path)) else {
                    let seen: Vec<String> = disks.iter().map(|d| d.path()).collect();
                    return Err(refused(
                        key,
                        format!(
                            "no disk {path} here (disks: {})",
                            if seen.is_empty() {
                                "none".into()
                            } else {
                                seen.join(", ")
                            }
                        ),
                    ));
                };
                (key, disk)
            }
            Some(InstallTarget::Selector(sel)) => {
                let key = "machine.install.selector";
                (
                    key,
                    select::select(sel, &disks).map_err(|why| refused(key, why))?,
                )
            }
            None => {
                return Err(refused(
                    "machine.install",
                    "set exactly one of `disk` and `selector`".into(),
                ));
            }
        };
        let need = self.needed_bytes()?;
        if disk.size < need {
            return Err(refused(
                key,
                format!(
                    "{} is {} MiB; a Basalt disk needs at least {} MiB",
                    disk.path(),
                    disk.size / MIB,
                    need / MIB
                ),
            ));
        }
        if !install.wipe && !self.is_empty(disk)? {
            return Err(refused(
                key,
                format!(
                    "{} is not empty (its first or last MiB holds data); set machine.install.wipe = true to overwrite it",
                    disk.path()
                ),
            ));
        }
        Ok(disk.clone())
    }

    /// The head's table says how big the disk must be: the layout plus the
    /// trailing MiB for the backup table.
    fn head_table(&self) -> Result<Table, InstallError> {
        let head = self
            .disks
            .head_sectors(
                &self.host.path(media_path(INSTALL_DISK_HEAD)),
                2 + basalt_api::gpt::ENTRY_SECTORS,
            )
            .map_err(|source| InstallError::Disk {
                disk: INSTALL_DISK_HEAD.into(),
                source,
            })?;
        // The head is a disk of its own length as far as the primary table
        // is concerned; only the primary is read from it.
        let size = head.len() as u64 + 64 * SECTOR;
        Table::decode(size, |off, len| {
            head.get(off as usize..off as usize + len)
                .map(<[u8]>::to_vec)
                .ok_or("past the head")
        })
        .map_err(|e| {
            refused(
                "machine.install",
                format!("the installer's payload has no valid GPT: {e}"),
            )
        })
    }

    fn needed_bytes(&self) -> Result<u64, InstallError> {
        Ok(disk_layout::new_disk_size(&self.head_table()?))
    }

    fn is_empty(&self, disk: &Disk) -> Result<bool, InstallError> {
        let dev = disk.path();
        let err = |source| InstallError::Disk {
            disk: dev.clone(),
            source,
        };
        let head = self.disks.read_at(&dev, 0, MIB as usize).map_err(err)?;
        let tail = self
            .disks
            .read_at(&dev, disk.size - MIB, MIB as usize)
            .map_err(err)?;
        Ok(head.iter().chain(&tail).all(|b| *b == 0))
    }
}

impl Installer for DiskInstaller {
    fn check(&self, install: &Install) -> Result<String, InstallError> {
        self.target(install).map(|disk| chosen(install, &disk))
    }

    fn install(
        &self,
        install: &Install,
        generation: u64,
        doc: &SignedDoc,
    ) -> Result<String, InstallError> {
        let disk = self.target(install)?;
        let dev = disk.path();
        let chosen = chosen(install, &disk);
        let derr = |source| InstallError::Disk {
            disk: dev.clone(),
            source,
        };
        let table = self.head_table()?;
        let Some(slot_a) = table.partitions.get(&disk_layout::SLOT_A_NUMBER).cloned() else {
            return Err(refused(
                "machine.install",
                "the installer's payload has no slot A".into(),
            ));
        };
        tracing::info!("installing to {chosen} ({} MiB)", disk.size / MIB);
        // Old signatures go first (a wiped disk's backup GPT, filesystems in
        // the slots and STATE), so nothing stale is found after the reboot.
        let zeros = vec![0u8; MIB as usize];
        self.disks
            .write_at(&dev, disk.size - MIB, &zeros)
            .map_err(derr)?;
        for p in table.partitions.values() {
            self.disks
                .write_at(&dev, p.offset(), &zeros)
                .map_err(derr)?;
        }
        let written = self
            .disks
            .write_zstd(&self.host.path(media_path(INSTALL_DISK_HEAD)), &dev)
            .map_err(derr)?;
        let root = self.host.path(media_path(ROOT_IMAGE));
        let root_len =
            self.host
                .file_len(&media_path(ROOT_IMAGE))
                .map_err(|e| InstallError::State {
                    disk: dev.clone(),
                    what: e.to_string(),
                })?;
        self.disks
            .copy_in_at(&root, 0, root_len, &dev, slot_a.offset())
            .map_err(derr)?;
        // The table again, for this disk's size: the backup at its end.
        self.disks.write_table(&disk, &table).map_err(derr)?;
        self.disks.reread(&disk).map_err(derr)?;
        tracing::info!(
            "wrote {} MiB of boot partitions and a {} MiB root image to {dev}",
            written / MIB,
            root_len / MIB
        );
        self.write_state(&disk, &table, generation, doc)?;
        Ok(format!(
            "installed to {chosen}: slot A, {} MiB free for EPHEMERAL",
            table
                .free_tail(disk.size, ALIGN)
                .map_or(0, |(f, l)| (l + 1 - f) * SECTOR / MIB)
        ))
    }
}

impl DiskInstaller {
    /// STATE on the new disk: an ext4 holding the config and the identity.
    fn write_state(
        &self,
        disk: &Disk,
        table: &Table,
        generation: u64,
        doc: &SignedDoc,
    ) -> Result<(), InstallError> {
        let dev = disk.path();
        let fail = |what: String| InstallError::State {
            disk: dev.clone(),
            what,
        };
        let bd = crate::bootdisk::BootDisk {
            disk: disk.clone(),
            table: table.clone(),
            slot: crate::bootdisk::Slot::A,
            wait: Duration::from_secs(15),
        };
        let state_dev =
            bd.prepare_state(self.disks.as_ref())
                .map_err(|source| InstallError::Partitions {
                    disk: dev.clone(),
                    source,
                })?;
        const TARGET: &str = "/run/basalt/install-state";
        self.mounter
            .mount(&state_spec(&state_dev, TARGET))
            .map_err(|e| fail(format!("mounting {STATE_NAME} {state_dev}: {e}")))?;
        let result = (|| {
            let store =
                StateStore::open(self.host.path(TARGET), false).map_err(|e| fail(e.to_string()))?;
            store
                .commit(generation, doc)
                .map_err(|e| fail(e.to_string()))?;
            self.host
                .copy_tree(&format!("{}/tls", self.ram_state), &format!("{TARGET}/tls"))
                .map_err(|e| fail(format!("copying the TLS identity: {e}")))?;
            self.disks.sync(&state_dev).map_err(|e| fail(e.to_string()))
        })();
        if let Err(e) = self.mounter.unmount(TARGET) {
            tracing::warn!("unmounting {TARGET}: {e}");
        }
        result
    }
}

mod select;

#[cfg(test)]
mod tests;

//! The disk this node booted from (DESIGN.md "Image format"): the root slot
//! its UKI names by GUID, the other slot an upgrade writes, STATE, and
//! EPHEMERAL (/var), which machined makes at first boot in the space after
//! STATE, so one `disk.raw` fills any disk it is written to.
//!
//! Host effects go through [`Disks`]; everything here runs against a fake.

use crate::host::disk::{Disk, DiskError, Disks};
use basalt_api::disk_layout::{
    self, ALIGN, EPHEMERAL_NAME, EPHEMERAL_NUMBER, LINUX_DATA_TYPE, MIN_EPHEMERAL, SLOT_A_NUMBER,
    SLOT_B_NUMBER, STATE_NAME,
};
use basalt_api::gpt::{Guid, Partition, SECTOR, Table};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BootDiskError {
    #[error(
        "no disk has a partition with GUID {guid} (the root slot the UKI names); disks seen: {seen}"
    )]
    NoRoot { guid: Guid, seen: String },
    #[error("partition {n} of disk {disk} did not appear in the device directory")]
    NoDevice { disk: String, n: u32 },
    #[error("disk {0} has no {STATE_NAME} partition")]
    NoState(String),
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// Root slot A or B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn number(self) -> u32 {
        match self {
            Slot::A => SLOT_A_NUMBER,
            Slot::B => SLOT_B_NUMBER,
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    fn of(n: u32) -> Option<Slot> {
        match n {
            SLOT_A_NUMBER => Some(Slot::A),
            SLOT_B_NUMBER => Some(Slot::B),
            _ => None,
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// The boot disk as found at boot.
#[derive(Debug, Clone)]
pub struct BootDisk {
    pub disk: Disk,
    pub table: Table,
    pub slot: Slot,
    /// How long to wait for partition devices (the `wait` given to [`find`]).
    pub wait: Duration,
}

/// How long to wait for the kernel to show a disk or partition: virtio
/// and NVMe probe asynchronously after their modules load.
pub const DEVICE_WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// Finds the disk holding the partition `guid`, waiting up to `wait` for
/// it to appear.
pub fn find(disks: &dyn Disks, guid: Guid, wait: Duration) -> Result<BootDisk, BootDiskError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let mut seen = Vec::new();
        for disk in disks.list() {
            match disks.read_table(&disk) {
                Ok(table) => {
                    if let Some((n, _)) = table.find_unique(guid)
                        && let Some(slot) = Slot::of(n)
                    {
                        return Ok(BootDisk {
                            disk,
                            table,
                            slot,
                            wait,
                        });
                    }
                    seen.push(format!("{} (GPT, no such slot)", disk.name));
                }
                Err(e) => seen.push(format!("{}: {e}", disk.name)),
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(BootDiskError::NoRoot {
                guid,
                seen: if seen.is_empty() {
                    "none".into()
                } else {
                    seen.join("; ")
                },
            });
        }
        std::thread::sleep(POLL);
    }
}

impl BootDisk {
    /// `/dev/…` of partition `n`, waiting for the kernel to create it.
    pub fn device(
        &self,
        disks: &dyn Disks,
        n: u32,
        wait: Duration,
    ) -> Result<String, BootDiskError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Some(p) = disks.partition_path(&self.disk, n) {
                return Ok(p);
            }
            if std::time::Instant::now() >= deadline {
                return Err(BootDiskError::NoDevice {
                    disk: self.disk.name.clone(),
                    n,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// STATE's device, with an ext4 made on it if it has none (a new disk).
    pub fn prepare_state(&self, disks: &dyn Disks) -> Result<String, BootDiskError> {
        let (n, _) = self
            .table
            .find_name(STATE_NAME)
            .ok_or_else(|| BootDiskError::NoState(self.disk.name.clone()))?;
        let dev = self.device(disks, n, self.wait)?;
        ensure_ext4(disks, &dev, STATE_NAME)?;
        Ok(dev)
    }

    /// EPHEMERAL's device: made (partition and ext4) when it does not
    /// exist and at least [`MIN_EPHEMERAL`] is free after the last
    /// partition; `None` when there is no room (then /var stays in RAM).
    pub fn prepare_ephemeral(
        &mut self,
        disks: &dyn Disks,
    ) -> Result<Option<String>, BootDiskError> {
        if let Some((n, _)) = self.table.find_name(EPHEMERAL_NAME) {
            let dev = self.device(disks, n, self.wait)?;
            ensure_ext4(disks, &dev, EPHEMERAL_NAME)?;
            return Ok(Some(dev));
        }
        let Some(grown) = with_ephemeral(&self.table, self.disk.size) else {
            return Ok(None);
        };
        let Some(p) = grown.partitions.get(&EPHEMERAL_NUMBER).cloned() else {
            return Ok(None);
        };
        disks.write_table(&self.disk, &grown)?;
        self.table = grown;
        disks.add_partition(&self.disk, EPHEMERAL_NUMBER, p.offset(), p.size())?;
        tracing::info!(
            "EPHEMERAL: partition {EPHEMERAL_NUMBER} of /dev/{} made, {} MiB",
            self.disk.name,
            p.size() / disk_layout::MIB
        );
        let dev = self.device(disks, EPHEMERAL_NUMBER, self.wait)?;
        disks.mkfs_ext4(&dev, EPHEMERAL_NAME)?;
        Ok(Some(dev))
    }
}

fn ensure_ext4(disks: &dyn Disks, dev: &str, label: &str) -> Result<(), BootDiskError> {
    match disks.ext4_label(dev) {
        Some(_) => Ok(()),
        None => {
            tracing::info!("{label}: {dev} holds no ext4; making one");
            Ok(disks.mkfs_ext4(dev, label)?)
        }
    }
}

/// `table` with EPHEMERAL filling the free tail of a disk of `size` bytes,
/// if that tail is at least [`MIN_EPHEMERAL`].
pub fn with_ephemeral(table: &Table, size: u64) -> Option<Table> {
    if table.partitions.contains_key(&EPHEMERAL_NUMBER) {
        return None;
    }
    let (first, last) = table.free_tail(size, ALIGN)?;
    if (last + 1 - first) * SECTOR < MIN_EPHEMERAL {
        return None;
    }
    let mut t = table.clone();
    t.partitions.insert(
        EPHEMERAL_NUMBER,
        Partition {
            type_guid: LINUX_DATA_TYPE,
            unique_guid: disk_layout::derived(b"ephemeral", &table.disk_guid.0),
            first_lba: first,
            last_lba: last,
            attributes: 0,
            name: EPHEMERAL_NAME.into(),
        },
    );
    Some(t)
}

#[cfg(test)]
mod tests;

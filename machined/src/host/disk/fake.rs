//! Disks as byte buffers, for the boot-disk and slot logic's tests.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Disks as byte buffers; the "kernel" knows the partitions that were in
/// the table when the disk appeared, plus those added with BLKPG.
#[derive(Default)]
pub struct FakeDisks {
    pub disks: Mutex<BTreeMap<String, Vec<u8>>>,
    pub known: Mutex<BTreeSet<(String, u32)>>,
    pub ext4: Mutex<BTreeMap<String, String>>,
    pub log: Mutex<Vec<String>>,
    /// What `list` reports of each disk besides its name and size.
    pub attributes: Mutex<BTreeMap<String, Disk>>,
}

impl FakeDisks {
    pub fn plug(&self, name: &str, table: Option<&Table>, size: u64) {
        let mut bytes = vec![0u8; size as usize];
        if let Some(t) = table {
            let e = t.encode(size).unwrap();
            bytes[..e.primary.len()].copy_from_slice(&e.primary);
            let at = e.backup_offset as usize;
            bytes[at..at + e.backup.len()].copy_from_slice(&e.backup);
            for n in t.partitions.keys() {
                self.known.lock().unwrap().insert((name.into(), *n));
            }
        }
        self.disks.lock().unwrap().insert(name.into(), bytes);
    }
    /// Gives disk `name` (already plugged) the attributes of `like`
    /// (model, serial, wwid, rotational).
    pub fn describe(&self, name: &str, like: Disk) {
        self.attributes.lock().unwrap().insert(name.into(), like);
    }
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Disks for FakeDisks {
    fn list(&self) -> Vec<Disk> {
        let attributes = self.attributes.lock().unwrap();
        self.disks
            .lock()
            .unwrap()
            .iter()
            .map(|(n, b)| Disk {
                name: n.clone(),
                size: b.len() as u64,
                ..attributes.get(n).cloned().unwrap_or_default()
            })
            .collect()
    }
    fn read_table(&self, disk: &Disk) -> Result<Table, DiskError> {
        let disks = self.disks.lock().unwrap();
        let b = &disks[&disk.name];
        Table::decode(disk.size, |off, len| {
            Ok::<_, String>(b[off as usize..off as usize + len].to_vec())
        })
        .map_err(|source| DiskError::Gpt {
            path: disk.path(),
            source,
        })
    }
    fn write_table(&self, disk: &Disk, table: &Table) -> Result<(), DiskError> {
        let e = table.encode(disk.size).map_err(|source| DiskError::Gpt {
            path: disk.path(),
            source,
        })?;
        self.write_at(&disk.path(), 0, &e.primary)?;
        self.write_at(&disk.path(), e.backup_offset, &e.backup)?;
        self.log
            .lock()
            .unwrap()
            .push(format!("write_table {}", disk.name));
        Ok(())
    }
    fn partition_path(&self, disk: &Disk, n: u32) -> Option<String> {
        self.known
            .lock()
            .unwrap()
            .contains(&(disk.name.clone(), n))
            .then(|| format!("/dev/{}{n}", disk.name))
    }
    fn add_partition(&self, disk: &Disk, n: u32, offset: u64, len: u64) -> Result<(), DiskError> {
        self.known.lock().unwrap().insert((disk.name.clone(), n));
        self.log
            .lock()
            .unwrap()
            .push(format!("add_partition {} {n} {offset} {len}", disk.name));
        Ok(())
    }
    fn ext4_label(&self, dev: &str) -> Option<String> {
        self.ext4.lock().unwrap().get(dev).cloned()
    }
    fn mkfs_ext4(&self, dev: &str, label: &str) -> Result<(), DiskError> {
        self.ext4.lock().unwrap().insert(dev.into(), label.into());
        self.log.lock().unwrap().push(format!("mkfs {dev} {label}"));
        Ok(())
    }
    fn write_at(&self, dev: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let name = dev.trim_start_matches("/dev/");
        let mut disks = self.disks.lock().unwrap();
        let b = disks.get_mut(name).unwrap();
        b[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn read_at(&self, dev: &str, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        let name = dev.trim_start_matches("/dev/");
        Ok(self.disks.lock().unwrap()[name][offset as usize..offset as usize + len].to_vec())
    }
    fn sync(&self, _dev: &str) -> Result<(), DiskError> {
        Ok(())
    }
    fn copy_in_at(
        &self,
        src: &Path,
        src_offset: u64,
        len: u64,
        dev: &str,
        dev_offset: u64,
    ) -> Result<(), DiskError> {
        let bytes = std::fs::read(src).unwrap();
        let data = &bytes[src_offset as usize..(src_offset + len) as usize];
        let (disk, offset) = self.extent(dev);
        self.write_at(&format!("/dev/{disk}"), offset + dev_offset, data)?;
        self.log
            .lock()
            .unwrap()
            .push(format!("copy_in {dev}+{dev_offset} {len}"));
        Ok(())
    }
    fn write_zstd(&self, src: &Path, dev: &str) -> Result<u64, DiskError> {
        let data = zstd::decode_all(std::fs::File::open(src).unwrap()).unwrap();
        self.write_at(dev, 0, &data)?;
        self.log
            .lock()
            .unwrap()
            .push(format!("write_zstd {dev} {}", data.len()));
        Ok(data.len() as u64)
    }
    fn head_sectors(&self, src: &Path, sectors: u64) -> Result<Vec<u8>, DiskError> {
        let mut data = zstd::decode_all(std::fs::File::open(src).unwrap()).unwrap();
        data.truncate((sectors * 512) as usize);
        Ok(data)
    }
    fn reread(&self, disk: &Disk) -> Result<(), DiskError> {
        let t = self.read_table(disk)?;
        for n in t.partitions.keys() {
            self.known.lock().unwrap().insert((disk.name.clone(), *n));
        }
        self.log
            .lock()
            .unwrap()
            .push(format!("reread {}", disk.name));
        Ok(())
    }
    fn sha256(&self, dev: &str, len: u64) -> Result<[u8; 32], DiskError> {
        use sha2::Digest;
        let (disk, offset) = self.extent(dev);
        let b = self.read_at(&format!("/dev/{disk}"), offset, len as usize)?;
        Ok(sha2::Sha256::digest(&b).into())
    }
}

impl FakeDisks {
    /// `/dev/vda3` → ("vda", byte offset of partition 3 in vda's table);
    /// `/dev/vda` → ("vda", 0).
    fn extent(&self, dev: &str) -> (String, u64) {
        let name = dev.trim_start_matches("/dev/");
        let Some(split) = name.find(|c: char| c.is_ascii_digit()) else {
            return (name.into(), 0);
        };
        let (disk, n) = name.split_at(split);
        let size = self.disks.lock().unwrap()[disk].len() as u64;
        let t = self
            .read_table(&Disk {
                name: disk.into(),
                size,
                ..Disk::default()
            })
            .unwrap();
        (
            disk.into(),
            t.partitions[&n.parse::<u32>().unwrap()].offset(),
        )
    }
}

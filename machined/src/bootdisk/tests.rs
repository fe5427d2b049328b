use super::*;
use basalt_api::disk_layout::{MIB, new_disk_size, new_table, root_slot_guid};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Disks as byte buffers; the "kernel" knows the partitions that were in
/// the table when the disk appeared, plus those added with BLKPG.
#[derive(Default)]
struct FakeDisks {
    disks: Mutex<BTreeMap<String, Vec<u8>>>,
    known: Mutex<BTreeSet<(String, u32)>>,
    ext4: Mutex<BTreeMap<String, String>>,
    log: Mutex<Vec<String>>,
}

impl FakeDisks {
    fn plug(&self, name: &str, table: Option<&Table>, size: u64) {
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
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Disks for FakeDisks {
    fn list(&self) -> Vec<Disk> {
        self.disks
            .lock()
            .unwrap()
            .iter()
            .map(|(n, b)| Disk {
                name: n.clone(),
                size: b.len() as u64,
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
}

const ROOT: [u8; 32] = [9; 32];

fn basalt_disk(extra: u64) -> (Table, u64) {
    let t = new_table(&ROOT, 8 * MIB, b"seed");
    let size = new_disk_size(&t) + extra;
    (t, size)
}

#[test]
fn the_root_slot_is_found_by_its_guid_among_other_disks() {
    let fake = FakeDisks::default();
    let (t, size) = basalt_disk(0);
    fake.plug("sda", None, 4 * MIB);
    fake.plug("vda", Some(&t), size);
    let bd = find(&fake, root_slot_guid(&ROOT), Duration::ZERO).unwrap();
    assert_eq!((bd.disk.name.as_str(), bd.slot), ("vda", Slot::A));
    assert_eq!(
        bd.device(&fake, bd.slot.number(), Duration::ZERO).unwrap(),
        "/dev/vda2"
    );

    let err = find(&fake, root_slot_guid(&[1; 32]), Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no disk has a partition with GUID"), "{err}");
    assert!(
        err.contains("sda: ") && err.contains("vda (GPT, no such slot)"),
        "{err}"
    );
}

#[test]
fn a_new_disk_gets_state_formatted_and_ephemeral_made_in_the_free_space() {
    let fake = FakeDisks::default();
    let (t, size) = basalt_disk(512 * MIB);
    fake.plug("vda", Some(&t), size);
    let mut bd = find(&fake, root_slot_guid(&ROOT), Duration::ZERO).unwrap();
    assert_eq!(bd.prepare_state(&fake).unwrap(), "/dev/vda4");
    let eph = bd.prepare_ephemeral(&fake).unwrap();
    assert_eq!(eph.as_deref(), Some("/dev/vda5"));
    let log = fake.log();
    assert_eq!(log[0], "mkfs /dev/vda4 STATE");
    assert_eq!(log[1], "write_table vda");
    assert!(
        log[2].starts_with(&format!("add_partition vda 5 {} ", size - 512 * MIB - MIB)),
        "{log:?}"
    );
    assert_eq!(log[3], "mkfs /dev/vda5 EPHEMERAL");
    // The table on the disk now has EPHEMERAL, up to the last whole MiB,
    // and a backup at the disk's end (decode checks both CRCs).
    let on_disk = fake.read_table(&bd.disk).unwrap();
    let p = &on_disk.partitions[&EPHEMERAL_NUMBER];
    assert_eq!(p.size(), 512 * MIB);
    assert_eq!(on_disk, bd.table);

    // The next boot finds both filesystems and changes nothing.
    let mut again = find(&fake, root_slot_guid(&ROOT), Duration::ZERO).unwrap();
    again.prepare_state(&fake).unwrap();
    assert_eq!(
        again.prepare_ephemeral(&fake).unwrap().as_deref(),
        Some("/dev/vda5")
    );
    assert_eq!(fake.log().len(), 4, "{:?}", fake.log());
}

#[test]
fn without_room_after_state_var_stays_in_ram_and_the_disk_is_untouched() {
    let fake = FakeDisks::default();
    let (t, size) = basalt_disk(MIN_EPHEMERAL - MIB);
    fake.plug("vda", Some(&t), size);
    let mut bd = find(&fake, root_slot_guid(&ROOT), Duration::ZERO).unwrap();
    assert_eq!(bd.prepare_ephemeral(&fake).unwrap(), None);
    assert!(fake.log().is_empty(), "{:?}", fake.log());
}

#[test]
fn a_partition_the_kernel_never_shows_is_a_clear_error() {
    let fake = FakeDisks::default();
    let (t, size) = basalt_disk(0);
    fake.plug("vda", Some(&t), size);
    fake.known.lock().unwrap().remove(&("vda".to_string(), 4));
    let bd = find(&fake, root_slot_guid(&ROOT), Duration::ZERO).unwrap();
    let err = bd.prepare_state(&fake).unwrap_err().to_string();
    assert_eq!(err, "partition 4 of disk vda did not appear in the device directory");
}

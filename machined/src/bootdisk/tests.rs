use super::*;
use crate::host::disk::fake::FakeDisks;
use basalt_api::disk_layout::{MIB, new_disk_size, new_table, root_slot_guid};

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
    assert_eq!(
        err,
        "partition 4 of disk vda did not appear in the device directory"
    );
}

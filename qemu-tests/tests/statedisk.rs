//! The blank STATE disk as the tools nobody here wrote see it.

use qemu_tests::statedisk::{PARTITION_START, partition_len};
use std::io::{Read, Seek, SeekFrom};
use std::process::Command;

#[test]
fn state_disk_has_a_gpt_partition_named_state_holding_ext4() {
    let dir = qemu_tests::image::target_dir().join("qemu-runs");
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join(format!("statedisk-test-{}.raw", std::process::id()));
    qemu_tests::statedisk::create(&disk, 64).unwrap();
    let table = Command::new("sgdisk")
        .arg("-p")
        .arg(&disk)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["1", "2048", "129023", "62.0", "MiB", "8300", "STATE"]),
        "{table}"
    );
    let blkid = Command::new("blkid")
        .args(["-p", "-O", &PARTITION_START.to_string(), "-o", "export"])
        .arg(&disk)
        .output()
        .unwrap();
    let blkid = String::from_utf8_lossy(&blkid.stdout);
    assert!(
        blkid.contains("LABEL=STATE") && blkid.contains("TYPE=ext4"),
        "{blkid}"
    );
    // e2fsck, a peer: the filesystem inside the partition (its bytes copied
    // out, no loop device) is clean, checked in full and changed in nothing.
    let part = disk.with_extension("ext4");
    let mut bytes = Vec::new();
    let mut f = std::fs::File::open(&disk).unwrap();
    f.seek(SeekFrom::Start(PARTITION_START)).unwrap();
    f.take(partition_len(64)).read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, partition_len(64));
    std::fs::write(&part, &bytes).unwrap();
    let fsck = Command::new("fsck.ext4")
        .args(["-n", "-f"])
        .arg(&part)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "fsck.ext4 -n -f exited {:?}: {}{}",
        fsck.status.code(),
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    std::fs::remove_file(&part).unwrap();
    std::fs::remove_file(&disk).unwrap();
}

//! The blank STATE disk as the tools nobody here wrote see it.

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
        .args(["-p", "-O", "1048576", "-o", "export"])
        .arg(&disk)
        .output()
        .unwrap();
    let blkid = String::from_utf8_lossy(&blkid.stdout);
    assert!(
        blkid.contains("LABEL=STATE") && blkid.contains("TYPE=ext4"),
        "{blkid}"
    );
    std::fs::remove_file(&disk).unwrap();
}

use super::*;
use crate::disk_layout::{self, MIB};
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::Command;

fn write_disk(
    path: &std::path::Path,
    t: &Table,
    size: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let e = t.encode(size)?;
    let mut f = std::fs::File::create(path)?;
    f.set_len(size)?;
    f.write_all(&e.primary)?;
    f.seek(SeekFrom::Start(e.backup_offset))?;
    f.write_all(&e.backup)?;
    Ok(())
}

fn read_disk(path: &std::path::Path) -> Result<Table, Box<dyn std::error::Error>> {
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    Ok(Table::decode(size, |off, len| {
        let mut b = vec![0u8; len];
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut b)?;
        Ok::<_, std::io::Error>(b)
    })?)
}

fn sgdisk(args: &[&str], disk: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new("sgdisk")
        .args(args)
        .arg(disk)
        .output()
        .map_err(|e| format!("sgdisk (Debian package gdisk) must be installed: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "sgdisk {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(text)
}

#[test]
fn guids_print_parse_and_swap_to_the_mixed_endian_disk_form() -> Result<(), GuidError> {
    let g: Guid = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".parse()?;
    assert_eq!(g.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!(
        g.to_disk(),
        [
            0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
            0xC9, 0x3B
        ]
    );
    assert_eq!(Guid::from_disk(&g.to_disk()), g);
    assert_eq!(g, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".parse()?);
    for bad in [
        "",
        "C12A7328F81F11D2BA4B00A0C93EC93B",
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93",
        "G12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    ] {
        assert!(bad.parse::<Guid>().is_err(), "{bad}");
    }
    Ok(())
}

/// sgdisk, a GPT implementation nobody here wrote, finds nothing wrong with
/// our table and reads back every name, type and GUID.
#[test]
fn sgdisk_verifies_and_reads_a_table_we_wrote() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let disk = dir.path().join("disk.raw");
    let t = disk_layout::new_table(&[1; 32], 8 * MIB, b"test");
    let size = disk_layout::new_disk_size(&t);
    write_disk(&disk, &t, size)?;
    let verify = sgdisk(&["-v"], &disk)?;
    assert!(verify.contains("No problems found"), "{verify}");
    let print = sgdisk(&["-p"], &disk)?;
    assert!(
        print.contains(&format!("Disk identifier (GUID): {}", t.disk_guid)),
        "{print}"
    );
    for (n, p) in &t.partitions {
        let info = sgdisk(&["-i", &n.to_string()], &disk)?;
        assert!(
            info.contains(&format!("Partition GUID code: {}", p.type_guid)),
            "{info}"
        );
        assert!(
            info.contains(&format!("Partition unique GUID: {}", p.unique_guid)),
            "{info}"
        );
        assert!(
            info.contains(&format!("First sector: {} ", p.first_lba)),
            "{info}"
        );
        assert!(
            info.contains(&format!("Last sector: {} ", p.last_lba)),
            "{info}"
        );
        assert!(
            info.contains(&format!("Partition name: '{}'", p.name)),
            "{info}"
        );
    }
    Ok(())
}

/// And the reverse: a table sgdisk wrote decodes to what sgdisk was told.
#[test]
fn we_read_a_table_sgdisk_wrote() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let disk = dir.path().join("disk.raw");
    std::fs::File::create(&disk)?.set_len(64 * MIB)?;
    let unique = "0F2E1D3C-4B5A-4978-8695-A4B3C2D1E0F9";
    sgdisk(
        &[
            "-o",
            "-U",
            "11111111-2222-4333-8444-555555555555",
            "-n",
            "1:2048:+8M",
            "-t",
            "1:EF00",
            "-c",
            "1:EFI",
            "-n",
            "3:0:+16M",
            "-t",
            "3:8304",
            "-c",
            "3:BASALT-B",
            "-u",
            &format!("3:{unique}"),
        ],
        &disk,
    )?;
    let t = read_disk(&disk)?;
    assert_eq!(
        t.disk_guid.to_string(),
        "11111111-2222-4333-8444-555555555555"
    );
    assert_eq!(t.partitions.keys().copied().collect::<Vec<_>>(), [1, 3]);
    let esp = &t.partitions[&1];
    assert_eq!(
        (esp.type_guid, esp.name.as_str(), esp.first_lba, esp.size()),
        (disk_layout::ESP_TYPE, "EFI", 2048, 8 * MIB)
    );
    let b = &t.partitions[&3];
    assert_eq!(
        (b.type_guid, b.unique_guid.to_string(), b.name.as_str()),
        (
            disk_layout::ROOT_X86_64_TYPE,
            unique.to_string(),
            "BASALT-B"
        )
    );
    assert_eq!(t.find_unique(b.unique_guid).map(|(n, _)| n), Some(3));
    // Our encoding of what we read is what sgdisk wrote, byte for byte
    // (but for the protective MBR's boot code area, which both leave zero).
    let ours = t.encode(64 * MIB)?;
    let mut theirs = vec![0u8; ours.primary.len()];
    std::fs::File::open(&disk)?.read_exact(&mut theirs)?;
    assert_eq!(
        ours.primary[512..],
        theirs[512..],
        "primary header and entries"
    );
    Ok(())
}

#[test]
fn a_damaged_primary_falls_back_to_the_backup_and_two_fail_clearly()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let disk = dir.path().join("disk.raw");
    let t = disk_layout::new_table(&[2; 32], 4 * MIB, b"x");
    let size = disk_layout::new_disk_size(&t);
    write_disk(&disk, &t, size)?;
    let mut f = std::fs::OpenOptions::new().write(true).open(&disk)?;
    f.seek(SeekFrom::Start(2 * SECTOR + 5))?;
    f.write_all(b"scribble")?;
    assert_eq!(read_disk(&disk)?, t, "entries CRC caught, backup used");
    f.seek(SeekFrom::Start(size - SECTOR + 40))?;
    f.write_all(b"scribble")?;
    let err = read_disk(&disk)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("primary: entry array CRC mismatch")
            && err.contains("backup: header CRC mismatch"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_table_moves_to_a_larger_disk_and_grows_into_its_free_tail()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let disk = dir.path().join("disk.raw");
    let mut t = disk_layout::new_table(&[3; 32], 4 * MIB, b"y");
    let size = disk_layout::new_disk_size(&t) + 300 * MIB;
    let (first, last) = t
        .free_tail(size, disk_layout::ALIGN)
        .ok_or("no free tail")?;
    t.partitions.insert(
        disk_layout::EPHEMERAL_NUMBER,
        Partition {
            type_guid: disk_layout::LINUX_DATA_TYPE,
            unique_guid: disk_layout::derived(b"ephemeral", b"y"),
            first_lba: first,
            last_lba: last,
            attributes: 0,
            name: disk_layout::EPHEMERAL_NAME.into(),
        },
    );
    write_disk(&disk, &t, size)?;
    let verify = sgdisk(&["-v"], &disk)?;
    assert!(verify.contains("No problems found"), "{verify}");
    assert_eq!(read_disk(&disk)?, t);
    Ok(())
}

#[test]
fn invalid_tables_are_refused_with_the_partition_named() {
    let mut t = disk_layout::new_table(&[4; 32], 4 * MIB, b"z");
    let size = disk_layout::new_disk_size(&t);
    let mut overlapping = t.partitions[&2].clone();
    overlapping.first_lba += 1;
    t.partitions.insert(9, overlapping);
    assert_eq!(t.encode(size).err(), Some(GptError::Overlap(2, 9)));
    t.partitions.remove(&9);
    if let Some(p) = t.partitions.get_mut(&4) {
        p.last_lba = size / SECTOR;
    }
    let err = t
        .encode(size)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.starts_with("partition 4: sectors"), "{err}");
    assert_eq!(t.encode(1000).err(), Some(GptError::Unaligned(1000)));
}

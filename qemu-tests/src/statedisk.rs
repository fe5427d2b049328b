//! A blank STATE disk: a raw GPT image whose one partition is named STATE and
//! holds an empty ext4 labelled STATE. Made with `mkfs.ext4` on a plain file
//! and `sgdisk`: no loop devices, no root.

use anyhow::{Context, Result, bail};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1024 * 1024;

/// Where the STATE partition starts in the disk: sector 2048, 1 MiB in.
pub const PARTITION_START: u64 = 2048 * 512;

/// The size of the STATE partition (and of its ext4) in a disk of `size_mib`.
pub fn partition_len(size_mib: u64) -> u64 {
    (size_mib - 2) * MIB
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub fn create(path: &Path, size_mib: u64) -> Result<()> {
    let part = path.with_extension("part");
    let part_mib = partition_len(size_mib) / MIB;
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "STATE", "-E", "root_owner=0:0"])
        .arg(&part)
        .arg(format!("{part_mib}M")))?;
    let disk = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    disk.set_len(size_mib * MIB)?;
    drop(disk);
    // No -q: sgdisk 1.0.9 accepts it and then silently writes no partition.
    run(Command::new("sgdisk")
        .args([
            "-n",
            &format!("1:2048:+{part_mib}M"),
            "-c",
            "1:STATE",
            "-t",
            "1:8300",
        ])
        .arg(path))?;
    let table = Command::new("sgdisk").arg("-p").arg(path).output()?;
    if !String::from_utf8_lossy(&table.stdout)
        .lines()
        .any(|l| l.trim_end().ends_with("STATE"))
    {
        bail!(
            "sgdisk did not create the STATE partition in {}",
            path.display()
        );
    }
    let data = std::fs::read(&part)?;
    let mut disk = OpenOptions::new().write(true).open(path)?;
    disk.seek(SeekFrom::Start(PARTITION_START))?;
    disk.write_all(&data)?;
    std::fs::remove_file(&part)?;
    Ok(())
}

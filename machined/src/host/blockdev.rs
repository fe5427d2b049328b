//! Find the STATE filesystem: a GPT partition named STATE, or an ext4
//! filesystem labelled STATE, on any block device the kernel knows.

use std::fs;
use std::io::{Read, Seek, SeekFrom};

/// ext4 superblock at 1024; magic 0xEF53 at +0x38; volume name at +0x78.
pub(crate) fn ext4_label(dev: &str) -> Option<String> {
    let mut f = fs::File::open(dev).ok()?;
    let mut sb = [0u8; 256];
    f.seek(SeekFrom::Start(1024)).ok()?;
    f.read_exact(&mut sb).ok()?;
    if sb[0x38..0x3a] != [0x53, 0xEF] {
        return None;
    }
    let name = &sb[0x78..0x88];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// `/dev/<name>` of the first block device whose partition name or ext4
/// label equals `label`.
pub fn find_by_label(label: &str) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/block")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram"))
        .collect();
    names.sort();
    for name in names {
        let uevent =
            fs::read_to_string(format!("/sys/class/block/{name}/uevent")).unwrap_or_default();
        let partname = uevent.lines().find_map(|l| l.strip_prefix("PARTNAME="));
        let dev = format!("/dev/{name}");
        if partname == Some(label) || ext4_label(&dev).as_deref() == Some(label) {
            return Some(dev);
        }
    }
    None
}

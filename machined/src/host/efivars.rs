//! The Boot Loader Interface variables systemd-boot and systemd-stub set
//! (vendor GUID 4a67b082-…): which entry booted, from which ESP, and the
//! file to rename when the boot is judged. Read from efivarfs: a 4-byte
//! attribute word, then a NUL-terminated UTF-16LE string.

use rustix::mount::{MountFlags, mount};
use std::fs;
use std::path::Path;

pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
const LOADER_VENDOR: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// Mounts efivarfs if the machine booted through UEFI; false on a BIOS or
/// `-kernel` boot (no /sys/firmware/efi), where there is nothing to read.
pub fn mount_efivarfs() -> bool {
    if !Path::new("/sys/firmware/efi").is_dir() {
        return false;
    }
    if Path::new(EFIVARS)
        .join(format!("LoaderInfo-{LOADER_VENDOR}"))
        .exists()
    {
        return true;
    }
    match mount(
        "efivarfs",
        EFIVARS,
        "efivarfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    ) {
        Ok(()) => true,
        Err(e) if e == rustix::io::Errno::BUSY => true,
        Err(e) => {
            tracing::warn!("mounting efivarfs on {EFIVARS}: {e}");
            false
        }
    }
}

/// A systemd-boot variable as text, if set.
pub fn loader_string(name: &str) -> Option<String> {
    let raw = fs::read(Path::new(EFIVARS).join(format!("{name}-{LOADER_VENDOR}"))).ok()?;
    decode_utf16_var(&raw)
}

/// The value of an efivarfs file: attributes, then NUL-terminated UTF-16LE.
pub fn decode_utf16_var(raw: &[u8]) -> Option<String> {
    let units: Vec<u16> = raw
        .get(4..)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variable_is_attributes_then_nul_terminated_utf16() {
        let mut raw = vec![6, 0, 0, 0];
        for u in "\\EFI\\Linux\\basalt-2+0-1.efi".encode_utf16().chain([0]) {
            raw.extend(u.to_le_bytes());
        }
        assert_eq!(
            decode_utf16_var(&raw).as_deref(),
            Some("\\EFI\\Linux\\basalt-2+0-1.efi")
        );
        assert_eq!(decode_utf16_var(&[6, 0]), None);
    }
}

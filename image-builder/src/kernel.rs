//! The kernel image: its release string, which names `/lib/modules/<release>`.

use crate::error::{Error, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Reads the kernel release (`uname -r`) from an x86 bzImage's setup header,
/// so the modules directory follows from the image itself rather than from its
/// file name (which a profile may glob or rename).
pub fn release(image: &Path) -> Result<String> {
    let fail = |reason: String| Error::Kernel {
        path: image.to_path_buf(),
        reason,
    };
    let mut f = std::fs::File::open(image).map_err(Error::io("opening", image))?;
    let mut header = [0u8; 0x210];
    f.read_exact(&mut header)
        .map_err(Error::io("reading", image))?;
    // Boot protocol: "HdrS" at 0x202, kernel_version pointer (minus 0x200) at 0x20e.
    if &header[0x202..0x206] != b"HdrS" {
        return Err(fail("not an x86 bzImage (no `HdrS` setup header)".into()));
    }
    let pointer = u16::from_le_bytes([header[0x20e], header[0x20f]]);
    if pointer == 0 {
        return Err(fail(
            "the setup header carries no kernel version string".into(),
        ));
    }
    f.seek(SeekFrom::Start(u64::from(pointer) + 0x200))
        .map_err(Error::io("seeking in", image))?;
    let mut text = [0u8; 256];
    let n = f.read(&mut text).map_err(Error::io("reading", image))?;
    let text = &text[..n];
    let end = text
        .iter()
        .position(|&b| b == 0 || b == b' ')
        .unwrap_or(text.len());
    let release = std::str::from_utf8(&text[..end])
        .map_err(|_| fail("kernel version string is not UTF-8".into()))?;
    if release.is_empty() {
        return Err(fail("empty kernel version string".into()));
    }
    Ok(release.to_string())
}

/// `/lib/modules/<release>`, the directory Debian (and depmod) use.
pub fn default_modules_dir(release: &str) -> PathBuf {
    Path::new("/lib/modules").join(release)
}

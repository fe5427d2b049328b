//! Kernel modules from the image's load list, in order, with finit_module(2):
//! no modprobe, no shell. The list (`/etc/basalt/modules.load`) already puts
//! dependencies first; image-builder computed it from modules.dep.

use std::ffi::CStr;
use std::fs::File;

pub use basalt_api::image_layout::MODULES_LIST as LIST;
/// MODULE_INIT_COMPRESSED_FILE: let the kernel decompress .ko.xz/.ko.zst.
const COMPRESSED: i32 = 4;

/// Load every module in `list` (one absolute path per line). Returns how
/// many loaded; failures are logged and skipped so one bad module cannot
/// stop the boot.
pub fn load_list(list: &str) -> usize {
    let Ok(text) = std::fs::read_to_string(list) else {
        tracing::warn!("no module list at {list}");
        return 0;
    };
    let mut loaded = 0;
    for path in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match load(path) {
            Ok(true) => loaded += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!("module {path}: {e}"),
        }
    }
    loaded
}

/// Ok(false) when the module was already loaded (or built in).
fn load(path: &str) -> std::io::Result<bool> {
    let f = File::open(path)?;
    let flags = if [".xz", ".zst", ".gz"].iter().any(|s| path.ends_with(s)) {
        COMPRESSED
    } else {
        0
    };
    let empty: &CStr = c"";
    match rustix::system::finit_module(&f, empty, flags) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(e) => Err(std::io::Error::from_raw_os_error(e.raw_os_error())),
    }
}

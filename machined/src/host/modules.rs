//! Kernel modules from the image's load list, in order, with finit_module(2):
//! no modprobe, no shell. The list (`/etc/basalt/modules.load`) already puts
//! dependencies first; image-builder computed it from modules.dep.

use std::ffi::CStr;
use std::fs::File;
use std::io;

pub use basalt_api::image_layout::MODULES_LIST as LIST;
/// MODULE_INIT_COMPRESSED_FILE: let the kernel decompress .ko.xz/.ko.zst.
const COMPRESSED: i32 = 4;

/// Loading one module file.
pub trait ModuleLoader {
    /// Ok(false) when the module was already loaded (or built in).
    fn load(&self, path: &str) -> io::Result<bool>;
}

impl ModuleLoader for super::kernel::Linux {
    fn load(&self, path: &str) -> io::Result<bool> {
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
            Err(e) => Err(io::Error::from_raw_os_error(e.raw_os_error())),
        }
    }
}

/// Load every module `list` names (one absolute path per line; blank lines
/// and `#` comments skipped). Returns how many loaded; failures are logged
/// and skipped so one bad module cannot stop the boot.
pub fn load_list(loader: &dyn ModuleLoader, list: &str) -> usize {
    let mut loaded = 0;
    for path in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match loader.load(path) {
            Ok(true) => loaded += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!("module {path}: {e}"),
        }
    }
    loaded
}

#[cfg(test)]
mod tests;

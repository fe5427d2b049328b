//! Deterministic cpio (newc) archives for Linux initramfs images.
//!
//! # Writing
//!
//! Collect entries in an [`Archive`], then write it. Nothing is read from the host until the
//! write, and file contents are streamed, so archives of any size use little memory.
//!
//! ```
//! use initramfs::{Archive, Compression, Reader, write_initramfs};
//!
//! # fn main() -> initramfs::Result<()> {
//! let epoch = 1_700_000_000; // SOURCE_DATE_EPOCH
//! let mut main = Archive::new(epoch);
//! main.add_bytes("/init", b"#!placeholder".to_vec(), 0o755)?; // a leading `/` is dropped
//! main.add_char_device("dev/console", 5, 1, 0o600)?; // `dev` is synthesized, 0755
//! main.add_symlink("sbin/init", "/init")?;
//! // main.add_file("usr/bin/machined", "/host/path/machined", 0o755)?;
//! // main.add_tree("/staging/rootfs", "")?;
//!
//! let mut early = Archive::new(epoch);
//! early.add_bytes("kernel/x86/microcode/GenuineIntel.bin", vec![0u8; 16], 0o644)?;
//!
//! let mut image = Vec::new();
//! write_initramfs(&mut image, Some(&early), &main, Compression::default())?;
//!
//! let paths: Vec<_> = Reader::new(image.as_slice())
//!     .map(|e| e.map(|e| e.path))
//!     .collect::<Result<_, _>>()?;
//! // Early archive first (parents synthesized), then the zstd-compressed main archive.
//! assert_eq!(paths[0].as_os_str(), "kernel");
//! assert_eq!(paths[4].as_os_str(), "dev");
//! assert_eq!(paths.last().unwrap().as_os_str(), "sbin/init");
//! # Ok(())
//! # }
//! ```
//!
//! # What makes the output reproducible
//!
//! * Entries are sorted bytewise by path whatever the insertion order; a parent is a prefix of
//!   its children, so it always precedes them. Missing parents are synthesized (mode 0755).
//! * uid/gid are 0, inode numbers are 1, 2, … in output order, the containing device is 0,
//!   directories' nlink is 2 plus their subdirectories, everything else has nlink 1.
//! * mtimes are `min(mtime, SOURCE_DATE_EPOCH)`, so files touched after the epoch do not
//!   change the output.
//! * gzip headers carry no mtime or name; zstd always uses its multithreaded engine, whose
//!   output does not depend on the number of workers (tested).
//!
//! Paths are stored relative, without `./` (`init`, `dev/console`), as the kernel and GNU
//! `cpio -t` show them. Paths with empty, `.` or `..` components or NUL are rejected, as are
//! duplicates.
//!
//! # Reading
//!
//! [`Reader`] iterates the entries of an initramfs file — uncompressed, zstd or gzip, with
//! several segments concatenated as the kernel accepts — giving metadata and a SHA-256 of
//! each entry's contents. Malformed input is an [`Error::Malformed`] with its byte offset.

mod compress;
mod error;
mod newc;
mod reader;
mod tree;
mod writer;

pub use compress::{
    Codec, Compression, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, InitramfsSummary, default_workers,
    write_initramfs,
};
pub use error::{Error, Result};
pub use reader::{FileType, ReadEntry, Reader, SegmentInfo, read_entries};
pub use tree::write_tree;
pub use writer::{
    Archive, Entry, EntryKind, FileSource, SYNTHESIZED_DIR_PERMISSIONS, WriteSummary,
};

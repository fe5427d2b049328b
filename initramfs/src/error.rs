use std::io;
use std::path::PathBuf;

use crate::reader::SegmentInfo;

/// Everything that can go wrong while building, writing or reading an archive.
///
/// Host file system errors carry the host path, archive errors the archive path, and reader
/// errors the byte offset at which the problem was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An archive path is empty, has empty, `.` or `..` components, contains NUL or is too long.
    #[error("invalid archive path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    /// A symlink target is empty, contains NUL or is too long.
    #[error("invalid symlink target {target:?} for {path}: {reason}")]
    InvalidSymlinkTarget {
        path: String,
        target: String,
        reason: &'static str,
    },

    /// The same archive path was added twice.
    #[error("duplicate archive path {path}")]
    DuplicatePath { path: String },

    /// An entry would be placed below something that is not a directory.
    #[error("cannot add {path}: {ancestor} is not a directory")]
    NotADirectory { path: String, ancestor: String },

    /// A host file system operation failed.
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// newc stores sizes in 32 bits.
    #[error("{}: {size} bytes exceeds the newc limit of 4 GiB - 1", .path.display())]
    FileTooLarge { path: PathBuf, size: u64 },

    /// A host file shrank between `fstat` and the end of the copy; the header already
    /// promised the old size, so the archive would be corrupt.
    #[error("{}: file changed while being archived (expected {expected} bytes, read {actual})", .path.display())]
    FileChanged {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    /// Sockets (and anything else cpio has no representation for) cannot be archived.
    #[error("{}: unsupported file type", .path.display())]
    UnsupportedFileType { path: PathBuf },

    /// Writing the output failed while emitting the named archive entry.
    #[error("cannot write archive entry {entry}: {source}")]
    Write {
        entry: String,
        #[source]
        source: io::Error,
    },

    /// Setting up or finishing the compressor failed.
    #[error("{codec} compressor: {source}")]
    Compress {
        codec: &'static str,
        #[source]
        source: io::Error,
    },

    /// Compression parameters out of range.
    #[error("invalid compression settings: {0}")]
    InvalidCompression(String),

    /// The input is not a well-formed (possibly compressed, possibly concatenated) newc archive.
    /// `offset` counts bytes of the segment's decompressed stream; for uncompressed segments it
    /// is the offset in the input.
    #[error("malformed cpio data at byte {offset} of {segment}: {reason}")]
    Malformed {
        offset: u64,
        segment: SegmentInfo,
        reason: String,
    },

    /// Reading (or decompressing) the input failed.
    #[error("cannot read byte {offset} of {segment}: {source}")]
    Read {
        offset: u64,
        segment: SegmentInfo,
        #[source]
        source: io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

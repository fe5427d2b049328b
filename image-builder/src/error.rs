//! The library's error type. Every variant that involves a file names it, so a
//! failed build says which input (or which profile line) to look at.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A profile problem, already formatted as `file:line:col: key: message`.
    #[error("{0}")]
    Profile(String),

    #[error("{path}: not a usable ELF file: {reason}")]
    Elf { path: PathBuf, reason: String },

    #[error(
        "{binary} needs {library}{}, which was found in none of: {searched}",
        via.as_ref().map(|v| format!(" (through {})", v.display())).unwrap_or_default()
    )]
    MissingLibrary {
        binary: PathBuf,
        library: String,
        /// The library whose `DT_NEEDED` it is, when not the binary itself.
        via: Option<PathBuf>,
        searched: String,
    },

    #[error("kernel modules: {0}")]
    Module(String),

    #[error("kernel {path}: {reason}")]
    Kernel { path: PathBuf, reason: String },

    #[error(
        "refusing `{name}` in the image: shells and interpreters are not allowed (from {origin})"
    )]
    Forbidden { name: String, origin: String },

    #[error("image path {path} is claimed twice: {first} and {second}")]
    Conflict {
        path: String,
        first: String,
        second: String,
    },

    #[error("nix inputs: {0}")]
    Nix(#[from] crate::nix::Error),

    #[error("package {0}")]
    Package(#[from] crate::package::PackageError),

    #[error("OCI image {0}")]
    Oci(String),

    #[error("trust roots: {0}")]
    Trust(String),

    #[error("root image: {0}")]
    RootImage(String),

    #[error("initramfs: {0}")]
    Initramfs(String),

    #[error(transparent)]
    Uki(#[from] crate::uki::UkiError),

    #[error(transparent)]
    Esp(#[from] crate::esp::EspError),

    #[error(transparent)]
    Disk(#[from] crate::disk::DiskError),

    #[error(transparent)]
    Iso(#[from] crate::iso::IsoError),

    #[error("manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },

    #[error("{path}: {reason}")]
    Inspect { path: PathBuf, reason: String },
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

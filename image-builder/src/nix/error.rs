//! One error type for every Nix input failure; each variant names the store path, URL or file.

use std::io;
use std::path::PathBuf;

/// A Nix input could not be read, fetched, verified or unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A string is not `/nix/store/<32 nix-base32 chars>-<name>`.
    #[error("invalid Nix store path {path:?}: {reason}")]
    InvalidStorePath { path: String, reason: String },

    /// A closure file could not be parsed.
    #[error("{}:{line}: {reason}", file.display())]
    ClosureFile {
        file: PathBuf,
        line: usize,
        reason: String,
    },

    /// A trusted public key is not `name:base64(32 bytes)`.
    #[error("invalid trusted Nix public key {key:?}: {reason}")]
    InvalidTrustedKey { key: String, reason: String },

    /// The binary cache URL is not `file://`, `http://` or `https://`, or is malformed.
    #[error("unsupported binary cache URL {url:?}: {reason}")]
    UnsupportedCacheUrl { url: String, reason: String },

    /// The cache serves a different store directory than `/nix/store`.
    #[error("binary cache {cache} has StoreDir {store_dir:?}, expected \"/nix/store\"")]
    WrongStoreDir { cache: String, store_dir: String },

    /// A transport-level failure talking to an HTTP(S) cache. The message
    /// names the innermost cause (e.g. `invalid peer certificate:
    /// UnknownIssuer`), which is what an operator can act on.
    #[error("fetching {url}: {}", innermost(source.as_ref()))]
    Http {
        url: String,
        #[source]
        source: Box<reqwest::Error>,
    },

    /// Reading a response body or a cache file failed midway.
    #[error("reading {url}: {source}")]
    Read {
        url: String,
        #[source]
        source: io::Error,
    },

    /// An HTTP(S) cache answered with a non-success status.
    #[error("fetching {url}: HTTP status {status}")]
    HttpStatus { url: String, status: u16 },

    /// The cache has no `.narinfo` for the store path.
    #[error("{store_path} is not in binary cache {cache} ({url} does not exist)")]
    NotInCache {
        store_path: String,
        cache: String,
        url: String,
    },

    /// A `.narinfo` is malformed.
    #[error("invalid narinfo {url} for {store_path}: {reason}")]
    InvalidNarInfo {
        store_path: String,
        url: String,
        reason: String,
    },

    /// No signature of the `.narinfo` verifies under a trusted key.
    #[error(
        "narinfo {url} for {store_path} is not signed by a trusted key: {detail}; \
         trusted keys: [{}], signatures present by: [{}]",
        trusted.join(", "),
        present.join(", ")
    )]
    Untrusted {
        store_path: String,
        url: String,
        detail: String,
        trusted: Vec<String>,
        present: Vec<String>,
    },

    /// The `.narinfo` uses a compression this builder cannot read.
    #[error("{store_path}: unsupported NAR compression {compression:?} in {url}")]
    UnsupportedCompression {
        store_path: String,
        url: String,
        compression: String,
    },

    /// A downloaded file or a NAR does not have the hash that was promised.
    #[error("{store_path}: {what} mismatch for {url}: expected {expected}, got {got}")]
    HashMismatch {
        store_path: String,
        url: String,
        what: &'static str,
        expected: String,
        got: String,
    },

    /// A downloaded file or a NAR does not have the size that was promised.
    #[error("{store_path}: {what} mismatch for {url}: expected {expected} bytes, got {got}")]
    SizeMismatch {
        store_path: String,
        url: String,
        what: &'static str,
        expected: u64,
        got: u64,
    },

    /// The compressed NAR could not be decompressed.
    #[error("{store_path}: cannot decompress {url} ({compression}): {source}")]
    Decompress {
        store_path: String,
        url: String,
        compression: String,
        #[source]
        source: io::Error,
    },

    /// The NAR stream is not a valid (or not a safe) Nix archive.
    #[error("invalid NAR for {what} at byte {offset}: {reason}")]
    InvalidNar {
        what: String,
        offset: u64,
        reason: String,
    },

    /// The unpack destination already exists; we never merge into or overwrite a store path.
    #[error("{} already exists", path.display())]
    DestinationExists { path: PathBuf },

    /// A local store path could not be read.
    #[error("{store_path}: cannot read {} from the local store: {reason}", path.display())]
    LocalStore {
        store_path: String,
        path: PathBuf,
        reason: String,
    },

    /// Any other I/O failure, with what we were doing and on which file.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The deepest error in a source chain, as text.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

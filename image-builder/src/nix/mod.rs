//! Nix inputs: closures, binary caches (narinfo + NAR), unpacking into the image.
//!
//! The image builder names Nix store paths (or a closure file listing them) and a source: either a
//! local store directory or a binary cache (`file://`, `http://`, `https://`). Every source yields
//! [`NixInput`]s whose NAR hash is known and checked; [`NixInput::unpack_into`] then writes the tree
//! at `<image root>/nix/store/<hash>-<name>`, verifying the NAR hash again while it unpacks.
//!
//! Trust model: a binary cache is untrusted transport. A `.narinfo` counts only if one of its
//! `Sig:` lines verifies under a trusted key, and the signature covers the store path, NAR hash,
//! NAR size and references. `URL`, `FileHash` and `FileSize` are *not* signed, so the NAR content is
//! always checked against the signed `NarHash`/`NarSize`, whatever `FileHash` says.

mod binary_cache;
mod closure;
mod error;
mod input;
mod local_store;
mod nar;
mod narinfo;
mod parallel;
mod store_path;

pub use binary_cache::{BinaryCache, CacheOptions, read_root_certificates};
pub use closure::{ClosureFile, ClosureFormat, parse_closure, read_closure_file};
pub use error::Error;
pub use input::{NarSource, NixInput};
pub use local_store::{LocalStore, nar_hash_of_path};
pub use nar::{UnpackStats, unpack_nar, unpack_nar_at};
// `verify_narinfo` is public for the fuzz target `narinfo` (fuzz/), which
// feeds it narinfos as a binary cache would serve them.
pub use narinfo::{TrustedKeys, VerifiedNarInfo, verify_narinfo};
pub use store_path::{NIX_STORE_DIR, parse_store_path, store_path_string};

/// Re-exported so callers can name hashes and store paths without another dependency.
pub use nix_derivation::{NixHash, StorePath};

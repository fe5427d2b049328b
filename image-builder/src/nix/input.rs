//! A Nix input ready to be put into the image: a store path, its verified NAR hash, and where its
//! NAR comes from.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix_derivation::{NixHash, StorePath};

use super::Error;
use super::nar::{UnpackStats, unpack_into_image};

/// Where the bytes of a [`NixInput`] come from.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum NarSource {
    /// An uncompressed NAR in the fetch cache directory, already checked against the signed
    /// `NarHash` when it was downloaded (and checked again when unpacked).
    NarFile(PathBuf),
    /// A store object in a local store directory, serialised to a NAR while unpacking.
    LocalPath(PathBuf),
}

/// One store path of the image, with what the manifest records about it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NixInput {
    pub store_path: StorePath,
    /// SHA-256 of the store path's NAR serialisation, as in `nix path-info --json`.
    pub nar_hash: NixHash,
    pub nar_size: u64,
    /// References other than itself, when known (from a narinfo or a references-graph closure
    /// file); `None` for a local store path listed without a graph.
    pub references: Option<BTreeSet<StorePath>>,
    pub source: NarSource,
}

impl NixInput {
    /// `sha256:<nix-base32>`, the form of `NarHash:` in narinfos and `nix-store -q --hash`.
    #[must_use]
    pub fn nar_hash_nix32(&self) -> String {
        self.nar_hash.to_nix_nixbase32_string()
    }

    /// `sha256-<base64>`, the form of `narHash` in `nix path-info --json`.
    #[must_use]
    pub fn nar_hash_sri(&self) -> String {
        self.nar_hash.to_sri_string()
    }

    /// Write the store path at `<image_root>/nix/store/<hash>-<name>`, checking the NAR hash and
    /// size while unpacking; on any failure nothing is left at the destination.
    pub fn unpack_into(&self, image_root: &Path) -> Result<UnpackStats, Error> {
        let what = self.store_path.to_string();
        let expected = Some((&self.nar_hash, self.nar_size));
        match &self.source {
            NarSource::NarFile(file) => {
                let f = File::open(file).map_err(|e| Error::io("opening", file, e))?;
                let source = file.display().to_string();
                unpack_into_image(f, image_root, &self.store_path, expected, &what, &source)
            }
            NarSource::LocalPath(path) => {
                let encoder = nix_nar::Encoder::new(path).map_err(|e| Error::LocalStore {
                    store_path: what.clone(),
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let source = path.display().to_string();
                unpack_into_image(
                    encoder,
                    image_root,
                    &self.store_path,
                    expected,
                    &what,
                    &source,
                )
            }
        }
    }
}

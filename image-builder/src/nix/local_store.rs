//! Store paths read straight from a local store directory (`/nix/store` or a chroot store's).
//!
//! There is no daemon or database access: the NAR hash is computed by serialising the tree with
//! `nix-nar`'s encoder, which gives the same bytes as `nix-store --dump` (checked against Nix in
//! the tests). References are not derived from the tree; they come from a closure file when one
//! is given.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nix_derivation::{NixHash, StorePath};
use sha2::{Digest, Sha256};

use super::Error;
use super::closure::ClosureFile;
use super::input::{NarSource, NixInput};
use super::parallel::try_map;
use super::store_path::NIX_STORE_DIR;

/// A directory holding store objects named `<hash>-<name>`.
#[derive(Clone, Debug)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// The machine's own `/nix/store`.
    #[must_use]
    pub fn system() -> Self {
        Self::new(NIX_STORE_DIR)
    }

    /// A store whose objects physically live in `dir` (for a chroot store
    /// `--store local?root=R`, that is `R/nix/store`); their logical paths stay `/nix/store/…`.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where `path` physically is.
    #[must_use]
    pub fn physical_path(&self, path: &StorePath) -> PathBuf {
        self.dir.join(path.to_basename())
    }

    /// Hash one store path.
    pub fn input(&self, path: &StorePath) -> Result<NixInput, Error> {
        let physical = self.physical_path(path);
        std::fs::symlink_metadata(&physical).map_err(|e| Error::LocalStore {
            store_path: path.to_string(),
            path: physical.clone(),
            reason: e.to_string(),
        })?;
        let (nar_hash, nar_size) = nar_hash_of(&physical, &path.to_string())?;
        Ok(NixInput {
            store_path: path.clone(),
            nar_hash,
            nar_size,
            references: None,
            source: NarSource::LocalPath(physical),
        })
    }

    /// Hash several store paths, `parallelism` at a time; results follow `paths`' order.
    pub fn inputs(&self, paths: &[StorePath], parallelism: usize) -> Result<Vec<NixInput>, Error> {
        try_map(paths, parallelism, |p| self.input(p))
    }

    /// Every path of a closure file, with references when the file has a references graph.
    pub fn closure_inputs(
        &self,
        closure: &ClosureFile,
        parallelism: usize,
    ) -> Result<Vec<NixInput>, Error> {
        let mut inputs = self.inputs(&closure.paths, parallelism)?;
        if let Some(graph) = &closure.references {
            for input in &mut inputs {
                let refs: BTreeSet<StorePath> = graph
                    .get(&input.store_path)
                    .map(|r| {
                        r.iter()
                            .filter(|r| **r != input.store_path)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                input.references = Some(refs);
            }
        }
        Ok(inputs)
    }
}

/// NAR hash (sha256) and size of any file tree, as `nix-store --dump PATH | sha256sum` would give.
pub fn nar_hash_of_path(path: &Path) -> Result<(NixHash, u64), Error> {
    nar_hash_of(path, &path.display().to_string())
}

fn nar_hash_of(path: &Path, what: &str) -> Result<(NixHash, u64), Error> {
    let local_err = |reason: String| Error::LocalStore {
        store_path: what.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let mut encoder = nix_nar::Encoder::new(path).map_err(|e| local_err(e.to_string()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match encoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(local_err(e.to_string())),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((NixHash::Sha256(hasher.finalize().into()), size))
}

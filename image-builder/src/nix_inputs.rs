//! Nix store paths in the image: fetched or hashed through [`crate::nix`],
//! unpacked into a scratch directory (NAR hashes checked again), then added
//! to the root tree at `/nix/store/…` like any host file.
//!
//! Binaries from the store keep their `/nix/store` interpreter and RUNPATH,
//! and the store closure is complete by construction, so they are linked
//! into place (`/usr/bin/containerd` → `/nix/store/…/bin/containerd`) without
//! an ELF walk.

use crate::error::{Error, Result};
use crate::manifest::NixInputRecord;
use crate::nix::{BinaryCache, CacheOptions, LocalStore, NixInput, StorePath, TrustedKeys};
use crate::profile::{NixSettings, NixSource};
use crate::tree::{Content, Node, Tree};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Every store path the settings name, closure included, each with its
/// verified NAR hash; sorted by store path.
pub fn collect(settings: &NixSettings) -> Result<Vec<NixInput>> {
    let mut paths: BTreeSet<StorePath> = BTreeSet::new();
    for p in &settings.paths {
        paths.insert(crate::nix::parse_store_path(p)?);
    }
    let closure = match &settings.closure_file {
        Some(f) => Some(crate::nix::read_closure_file(f)?),
        None => None,
    };
    if let Some(c) = &closure {
        paths.extend(c.paths.iter().cloned());
    }
    let paths: Vec<StorePath> = paths.into_iter().collect();
    let mut inputs = match &settings.source {
        NixSource::LocalStore(dir) => {
            let store = LocalStore::new(dir);
            match &closure {
                Some(c) => {
                    let mut inputs = store.closure_inputs(c, parallelism())?;
                    let listed: BTreeSet<&StorePath> = c.paths.iter().collect();
                    let extra: Vec<StorePath> = paths
                        .iter()
                        .filter(|p| !listed.contains(p))
                        .cloned()
                        .collect();
                    inputs.extend(store.inputs(&extra, parallelism())?);
                    inputs
                }
                None => store.inputs(&paths, parallelism())?,
            }
        }
        NixSource::BinaryCache {
            url,
            trusted_public_keys,
            cache_dir,
            ca_certs,
        } => {
            let keys = TrustedKeys::parse(trusted_public_keys)?;
            let options = CacheOptions::default().extra_roots(ca_certs);
            let cache = BinaryCache::open_with(url, keys, cache_dir, &options)?;
            cache.fetch_closure(&paths, parallelism())?
        }
    };
    inputs.sort_by_key(|i| crate::nix::store_path_string(&i.store_path));
    inputs.dedup_by_key(|i| crate::nix::store_path_string(&i.store_path));
    check_closed(&inputs)?;
    Ok(inputs)
}

/// Where references are known, every referenced path must be an input too:
/// a missing one would be a dangling `/nix/store` path at run time.
fn check_closed(inputs: &[NixInput]) -> Result<()> {
    let have: BTreeSet<&StorePath> = inputs.iter().map(|i| &i.store_path).collect();
    for input in inputs {
        for r in input.references.iter().flatten() {
            if !have.contains(r) {
                return Err(Error::Profile(format!(
                    "nix: {} refers to {}, which is not among the inputs (list the whole closure)",
                    crate::nix::store_path_string(&input.store_path),
                    crate::nix::store_path_string(r)
                )));
            }
        }
    }
    Ok(())
}

/// Unpacks every input under `root/nix/store`.
pub fn unpack(inputs: &[NixInput], root: &Path) -> Result<()> {
    for input in inputs {
        input.unpack_into(root)?;
    }
    Ok(())
}

/// Adds the unpacked `root/nix/store` tree to `tree` at `/nix/store`.
pub fn add_unpacked(tree: &mut Tree, root: &Path) -> Result<()> {
    let store = root.join("nix/store");
    let mut queue = vec![store.clone()];
    while let Some(dir) = queue.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(Error::io("reading", &dir))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(Error::io("reading", &dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let host = e.path();
            let rel = host.strip_prefix(root).map_err(|_| {
                Error::io("walking", &host)(std::io::Error::other("outside the unpack root"))
            })?;
            let image = Path::new("/").join(rel);
            let md = std::fs::symlink_metadata(&host)
                .map_err(Error::io("reading metadata of", &host))?;
            let origin = format!("nix input {}", store_path_of(&image));
            let node = if md.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&host).map_err(Error::io("reading symlink", &host))?;
                Node::Symlink {
                    target: target.to_string_lossy().into_owned(),
                }
            } else if md.is_dir() {
                queue.push(host.clone());
                Node::Dir {
                    mode: md.mode() & 0o7777,
                }
            } else {
                Node::File {
                    content: Content::Host(host.clone()),
                    mode: md.mode() & 0o7777,
                }
            };
            tree.insert(&image, node, tree.epoch(), &origin)?;
        }
    }
    Ok(())
}

/// `/nix/store/<hash>-<name>` of any path inside it.
fn store_path_of(image: &Path) -> String {
    image
        .components()
        .take(4)
        .collect::<std::path::PathBuf>()
        .display()
        .to_string()
}

/// The manifest's view of the inputs.
pub fn records(inputs: &[NixInput]) -> Vec<NixInputRecord> {
    inputs
        .iter()
        .map(|i| NixInputRecord {
            store_path: crate::nix::store_path_string(&i.store_path),
            nar_hash: i.nar_hash_sri(),
            nar_size: i.nar_size,
        })
        .collect()
}

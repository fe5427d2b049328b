//! Turning a profile's `[[packages]]` into files for the image: build each
//! component (or find it in the cache) and list its binaries and trees as
//! ordinary installs, so they go through the same checks as host binaries.

use super::{BuildOptions, BuildRecord, PackageError};
use crate::profile::{Install, PackageRef};
use std::path::{Path, PathBuf};

/// Where a component's trees go inside the image: `/usr/lib/<component>/`.
pub fn tree_root(component: &str) -> PathBuf {
    Path::new("/usr/lib").join(component)
}

/// What the image gets from its packages.
#[derive(Debug, Default)]
pub struct ForImage {
    pub binaries: Vec<Install>,
    pub files: Vec<Install>,
    /// One record per component, for the manifest.
    pub records: Vec<BuildRecord>,
}

pub fn for_image(refs: &[PackageRef], opts: &BuildOptions) -> Result<ForImage, PackageError> {
    let mut out = ForImage::default();
    // A component may be listed twice (some binaries in /usr/bin, one
    // where another program looks for it); its trees and record go in once.
    let mut seen = std::collections::BTreeSet::new();
    for r in refs {
        let built = super::build(&r.recipe, opts)?;
        let first = seen.insert(r.recipe.name.clone());
        for name in &r.binaries {
            let source = built.binary(name).ok_or_else(|| PackageError::Output {
                component: r.recipe.name.clone(),
                message: format!(
                    "the cache entry {} has no binary {name}",
                    built.dir.display()
                ),
            })?;
            out.binaries.push(Install {
                source,
                target: r.target.join(name),
                mode: Some(0o755),
                origin: r.origin.clone(),
            });
        }
        if !first {
            continue;
        }
        for tree in &built.record.trees {
            let from = built.dir.join(tree);
            let to = tree_root(&r.recipe.name).join(tree);
            tree_files(&from, &to, &r.origin, &mut out.files)?;
        }
        out.records.push(built.record);
    }
    Ok(out)
}

fn tree_files(
    from: &Path,
    to: &Path,
    origin: &str,
    out: &mut Vec<Install>,
) -> Result<(), PackageError> {
    let mut entries = std::fs::read_dir(from)
        .map_err(super::io_err("read directory", from))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(super::io_err("read directory", from))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            tree_files(&src, &dst, origin, out)?;
        } else {
            out.push(Install {
                source: src,
                target: dst,
                mode: None,
                origin: origin.to_owned(),
            });
        }
    }
    Ok(())
}

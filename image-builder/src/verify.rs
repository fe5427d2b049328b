//! `verify`: check an output directory against its `manifest.json`: every
//! output's sha256 and size, and every file inside the initramfs and inside
//! the root image it carries.

use crate::error::Result;
use crate::manifest::{FileRecord, MANIFEST_NAME, Manifest};
use crate::{initrd, rootfs};
use std::collections::BTreeMap;
use std::path::Path;

/// Checks `dir`; returns one line per mismatch (empty: all good).
pub fn verify(dir: &Path) -> Result<Vec<String>> {
    let manifest = Manifest::read(&dir.join(MANIFEST_NAME))?;
    let mut problems = Vec::new();
    for output in &manifest.outputs {
        let path = dir.join(&output.name);
        match crate::hash::file(&path) {
            Ok((sha, size)) => {
                if sha != output.sha256 || size != output.size {
                    problems.push(format!(
                        "{}: sha256 {sha} size {size}, manifest says sha256 {} size {}",
                        output.name, output.sha256, output.size
                    ));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut extra: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != MANIFEST_NAME && !manifest.outputs.iter().any(|o| &o.name == n))
            .collect();
        extra.sort();
        for n in extra {
            problems.push(format!("{n}: not in the manifest"));
        }
    }
    let Some(initramfs) = manifest.outputs.iter().find(|o| o.kind == "initramfs") else {
        return Ok(problems);
    };
    let initramfs_path = dir.join(&initramfs.name);
    match initrd::list(&initramfs_path) {
        Ok(listed) => compare(
            &initramfs.name,
            &manifest.initramfs.files,
            &listed,
            &mut problems,
        ),
        Err(e) => {
            problems.push(e.to_string());
            return Ok(problems);
        }
    }
    let inner = manifest
        .rootfs
        .path
        .as_deref()
        .unwrap_or(basalt_api::image_layout::ROOT_IMAGE);
    match initrd::read_file(&initramfs_path, inner) {
        Ok(data) => {
            let sha = crate::hash::bytes(&data);
            if sha != manifest.rootfs.sha256 {
                problems.push(format!(
                    "{inner}: sha256 {sha}, manifest says {}",
                    manifest.rootfs.sha256
                ));
            }
            let name = format!("{}:{inner}", initramfs.name);
            match rootfs::list_bytes(&data, Path::new(&name)) {
                Ok(listed) => compare(&name, &manifest.rootfs.files, &listed, &mut problems),
                Err(e) => problems.push(e.to_string()),
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    Ok(problems)
}

/// Reports entries missing on either side or differing in any field.
fn compare(
    image: &str,
    expected: &[FileRecord],
    actual: &[FileRecord],
    problems: &mut Vec<String>,
) {
    let expected: BTreeMap<&str, &FileRecord> =
        expected.iter().map(|r| (r.path.as_str(), r)).collect();
    let actual: BTreeMap<&str, &FileRecord> = actual.iter().map(|r| (r.path.as_str(), r)).collect();
    for (path, want) in &expected {
        match actual.get(path) {
            None => problems.push(format!(
                "{image}: {path} is in the manifest but not in the image"
            )),
            Some(have) if have != want => problems.push(format!(
                "{image}: {path}: image has `{}`, manifest says `{}`",
                have.line(),
                want.line()
            )),
            Some(_) => {}
        }
    }
    for path in actual.keys() {
        if !expected.contains_key(path) {
            problems.push(format!(
                "{image}: {path} is in the image but not in the manifest"
            ));
        }
    }
}

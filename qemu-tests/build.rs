//! A digest of the sources that decide a test image's bytes (image-builder,
//! the cpio writer, the API's disk layout, the image profiles and their
//! files, the locked dependency versions, this crate's image code), given to
//! the harness as `BASALT_IMAGE_CODE`. Images are cached under a key that
//! includes it: every test binary then shares one build of an image instead
//! of building its own, and a change to any of these sources builds anew.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const INPUTS: &[&str] = &[
    "image-builder/src",
    "initramfs/src",
    "api/src",
    "configs/images",
    "Cargo.lock",
    "qemu-tests/src",
];

fn files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
            .map(|e| {
                e.unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
                    .path()
            })
            .collect();
        entries.sort();
        for e in entries {
            files(&e, out);
        }
    } else {
        out.push(p.to_path_buf());
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut h = Sha256::new();
    for input in INPUTS {
        let p = root.join(input);
        println!("cargo:rerun-if-changed={}", p.display());
        let mut all = Vec::new();
        files(&p, &mut all);
        for f in all {
            let rel = f.strip_prefix(&root).unwrap_or(&f);
            h.update(rel.to_string_lossy().as_bytes());
            h.update([0]);
            let bytes =
                std::fs::read(&f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=BASALT_IMAGE_CODE={digest}");
}

//! NARs from a binary cache, unpacked by image-builder
//! (`image_builder::nix::unpack_nar_at`, the unpacker behind every
//! substituted store path) into a scratch directory.
//!
//! Input: a NAR. Seeds are `nix-store --dump` of small trees (files,
//! executables, symlinks, nested and empty directories).
//!
//! Properties:
//! - unpacking never panics;
//! - nothing is written outside the destination: next to it the parent
//!   holds only the destination (on success) or nothing (on failure, which
//!   leaves nothing partial behind), and a canary tree beside the parent is
//!   untouched; the unpacked tree holds only directories, regular files and
//!   symlinks, as many as the unpacker counted (executables too);
//! - what unpacks is what was read: the reported NAR hash and size are
//!   those of the input's first `nar_size` bytes, and `nix-nar`'s encoder
//!   (`nar_hash_of_path`, an independent implementation) dumps the tree to
//!   a NAR with the same hash and size.
#![no_main]

use image_builder::nix::{NixHash, nar_hash_of_path, unpack_nar_at};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[derive(Default, Debug, PartialEq)]
struct Counts {
    files: u64,
    executables: u64,
    symlinks: u64,
    directories: u64,
    /// Names and symlink targets `nix-nar`'s encoder cannot carry.
    non_utf8: bool,
}

fn walk(p: &Path, c: &mut Counts) {
    let meta = fs::symlink_metadata(p).expect("stat inside the unpacked tree");
    let ft = meta.file_type();
    if std::str::from_utf8(p.file_name().map_or(&[][..], |n| n.as_bytes())).is_err() {
        c.non_utf8 = true;
    }
    if ft.is_dir() {
        c.directories += 1;
        for e in fs::read_dir(p).expect("read_dir") {
            walk(&e.expect("dir entry").path(), c);
        }
    } else if ft.is_file() {
        c.files += 1;
        if meta.permissions().mode() & 0o111 != 0 {
            c.executables += 1;
        }
    } else if ft.is_symlink() {
        c.symlinks += 1;
        let target = fs::read_link(p).expect("readlink");
        c.non_utf8 |= target.to_str().is_none();
    } else {
        panic!(
            "{} is neither a directory, a file nor a symlink",
            p.display()
        );
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let root = tempfile::tempdir().expect("scratch directory");
    let canary = root.path().join("canary");
    fs::create_dir(&canary).expect("mkdir");
    fs::write(canary.join("file"), b"canary").expect("write");
    let parent = root.path().join("parent");
    fs::create_dir(&parent).expect("mkdir");
    let dest = parent.join("out");

    let result = unpack_nar_at(data, &dest, None);

    assert_eq!(names(root.path()), ["canary", "parent"]);
    assert_eq!(names(&canary), ["file"]);
    assert_eq!(fs::read(canary.join("file")).expect("read"), b"canary");
    let Ok(stats) = result else {
        assert!(
            names(&parent).is_empty(),
            "a failed unpack left {:?}",
            names(&parent)
        );
        return;
    };
    assert_eq!(names(&parent), ["out"]);
    let mut counts = Counts::default();
    walk(&dest, &mut counts);
    let unpacked = Counts {
        files: stats.regular_files,
        executables: stats.executables,
        symlinks: stats.symlinks,
        directories: stats.directories,
        non_utf8: counts.non_utf8,
    };
    assert_eq!(counts, unpacked, "{stats:?}");

    let size = usize::try_from(stats.nar_size).expect("size");
    let read = data.get(..size).expect("nar_size within the input");
    assert_eq!(stats.nar_hash, NixHash::Sha256(Sha256::digest(read).into()));
    match nar_hash_of_path(&dest) {
        Ok((hash, size)) => {
            assert_eq!(
                (hash, size),
                (stats.nar_hash, stats.nar_size),
                "re-dumped NAR differs"
            );
        }
        Err(e) => assert!(
            counts.non_utf8,
            "nix-nar cannot dump what was unpacked: {e}"
        ),
    }
});

//! Same inputs → same bytes, whatever the insertion order, host mtimes, inodes or zstd workers.

mod common;

use std::fs;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{EPOCH, pseudo_random, run, stage_tree};
use initramfs::{Archive, Compression, write_initramfs, write_tree};

fn build(root: &std::path::Path, compression: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    write_tree(root, EPOCH, compression, &mut out).unwrap();
    out
}

/// Sets the mtime of every file and directory below `root` (not following symlinks' targets).
fn touch_all(root: &std::path::Path, when: SystemTime) {
    for entry in fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            touch_all(&entry.path(), when);
        }
        if !ty.is_symlink() {
            fs::File::open(entry.path())
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
    }
}

#[test]
fn staged_trees_differing_in_order_inodes_and_new_mtimes_give_identical_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    stage_tree(a.path(), false);
    stage_tree(b.path(), true);
    // Newer than the epoch in both trees, but at different times.
    touch_all(
        a.path(),
        UNIX_EPOCH + Duration::from_secs(u64::from(EPOCH) + 10),
    );
    touch_all(b.path(), SystemTime::now());

    for compression in [
        Compression::None,
        Compression::gzip_default(),
        Compression::default(),
    ] {
        let first = build(a.path(), compression);
        assert_eq!(first, build(a.path(), compression), "{compression:?} twice");
        assert_eq!(
            first,
            build(b.path(), compression),
            "{compression:?} a vs b"
        );
    }
}

#[test]
fn mtimes_older_than_the_epoch_are_kept() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    stage_tree(a.path(), false);
    stage_tree(b.path(), false);
    touch_all(a.path(), SystemTime::now());
    touch_all(b.path(), SystemTime::now());
    assert_eq!(
        build(a.path(), Compression::None),
        build(b.path(), Compression::None)
    );
    // An older mtime is real information, so it must show (this is what makes the test above
    // meaningful: the clamp, not some blanket override, hides the newer mtimes).
    fs::File::open(b.path().join("etc/hostname"))
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    assert_ne!(
        build(a.path(), Compression::None),
        build(b.path(), Compression::None)
    );
}

#[test]
fn insertion_order_does_not_matter() {
    let entries: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| {
            (
                format!("d{}/sub{}/f{i}", i % 7, i % 3),
                pseudo_random(i * 13, i as u64),
            )
        })
        .collect();
    let build = |order: &mut dyn Iterator<Item = &(String, Vec<u8>)>| {
        let mut archive = Archive::new(EPOCH);
        for (path, data) in order {
            archive.add_bytes(path, data.clone(), 0o644).unwrap();
        }
        let mut out = Vec::new();
        write_initramfs(&mut out, None, &archive, Compression::default()).unwrap();
        out
    };
    let forward = build(&mut entries.iter());
    assert_eq!(forward, build(&mut entries.iter().rev()));
    assert_eq!(
        forward,
        build(
            &mut entries
                .iter()
                .step_by(2)
                .chain(entries.iter().skip(1).step_by(2))
        )
    );
}

#[test]
fn zstd_output_independent_of_workers_and_decodable_by_zstd() {
    // Several times zstd's job size at level 3, so workers really split the input.
    let mut archive = Archive::new(EPOCH);
    for i in 0..5 {
        archive
            .add_bytes(format!("blob{i}"), pseudo_random(5 << 20, i), 0o644)
            .unwrap();
    }
    let mut plain = Vec::new();
    archive.write_to(&mut plain).unwrap();

    let with_workers = |workers: Option<u32>| {
        let mut out = Vec::new();
        let compression = Compression::Zstd {
            level: 3,
            workers: workers.map(|w| NonZeroU32::new(w).unwrap()),
        };
        write_initramfs(&mut out, None, &archive, compression).unwrap();
        out
    };
    let reference = with_workers(Some(1));
    for workers in [Some(2), Some(3), Some(4), None] {
        assert!(
            reference == with_workers(workers),
            "workers {workers:?} changed the output"
        );
    }
    assert!(
        reference.len() < plain.len() / 2,
        "compressed {} of {}",
        reference.len(),
        plain.len()
    );
    assert!(run("zstd", &["-dc"], None, &reference) == plain);
}

//! Our reader against what we wrote, against GNU cpio's output, and against broken input.

mod common;

use std::io::Write;

use common::{EPOCH, pseudo_random, run, stage_tree, tree_files, tree_symlinks};
use initramfs::{
    Archive, Codec, Compression, Error, FileType, ReadEntry, read_entries, write_initramfs,
};
use sha2::{Digest, Sha256};

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn sample() -> Archive {
    let mut archive = Archive::new(EPOCH);
    archive.add_bytes("init", b"#init".to_vec(), 0o755).unwrap();
    archive
        .add_bytes("etc/os-release", b"ID=basalt\n".to_vec(), 0o644)
        .unwrap();
    archive.add_char_device("dev/console", 5, 1, 0o600).unwrap();
    archive.add_symlink("bin", "usr/bin").unwrap();
    archive
        .insert(
            "usr/share/old",
            initramfs::Entry::bytes(b"old".to_vec(), 0o444).with_mtime(1_000_000_000),
        )
        .unwrap();
    archive
}

fn plain(archive: &Archive) -> Vec<u8> {
    let mut out = Vec::new();
    archive.write_to(&mut out).unwrap();
    out
}

fn malformed(input: &[u8]) -> (u64, String) {
    let result: Result<Vec<ReadEntry>, Error> = read_entries(input);
    match result {
        Err(Error::Malformed { offset, reason, .. }) => (offset, reason),
        other => panic!("expected a malformed-input error, got {other:?}"),
    }
}

#[test]
fn reads_back_what_was_written() {
    let staging = tempfile::tempdir().unwrap();
    stage_tree(staging.path(), false);
    let archive = Archive::from_tree(staging.path(), EPOCH).unwrap();
    let bytes = plain(&archive);
    let entries = read_entries(bytes.as_slice()).unwrap();

    let paths: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
    let expected: Vec<_> = archive.paths().map(|p| p.to_path_buf()).collect();
    assert_eq!(paths, expected);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.ino as usize, i + 1);
        assert_eq!((entry.uid, entry.gid), (0, 0));
        assert!(entry.mtime <= EPOCH);
        assert_eq!(entry.segment.codec, Codec::None);
    }
    let by_path = |p: &str| entries.iter().find(|e| e.path.to_str() == Some(p)).unwrap();
    for (path, data, perm) in tree_files() {
        let e = by_path(path);
        assert_eq!(e.file_type, FileType::Regular);
        assert_eq!(e.permissions(), perm, "{path}");
        assert_eq!(e.size as usize, data.len());
        assert_eq!(e.sha256, sha256(&data), "{path}");
        assert_eq!(e.nlink, 1);
    }
    for (path, target) in tree_symlinks() {
        let e = by_path(path);
        assert_eq!(e.file_type, FileType::Symlink);
        assert_eq!(e.mode, 0o120777);
        assert_eq!(e.symlink_target.as_deref().unwrap().to_str(), Some(target));
        assert_eq!(e.sha256, sha256(target.as_bytes()));
    }
    // `usr` holds bin, lib and share: 2 + 3 links.
    assert_eq!(by_path("usr").nlink, 5);
    assert_eq!(by_path("usr/share/empty").nlink, 2);
    assert_eq!(by_path("usr/share/empty").permissions(), 0o750);
}

#[test]
fn reads_entry_metadata_exactly() {
    let entries = read_entries(plain(&sample()).as_slice()).unwrap();
    let summary: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.path.to_str().unwrap(),
                e.mode,
                e.nlink,
                e.mtime,
                e.size,
                e.rdev_major,
                e.rdev_minor,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("bin", 0o120777, 1, EPOCH, 7, 0, 0),
            ("dev", 0o40755, 2, EPOCH, 0, 0, 0),
            ("dev/console", 0o20600, 1, EPOCH, 0, 5, 1),
            ("etc", 0o40755, 2, EPOCH, 0, 0, 0),
            ("etc/os-release", 0o100644, 1, EPOCH, 10, 0, 0),
            ("init", 0o100755, 1, EPOCH, 5, 0, 0),
            ("usr", 0o40755, 3, EPOCH, 0, 0, 0),
            ("usr/share", 0o40755, 2, EPOCH, 0, 0, 0),
            ("usr/share/old", 0o100444, 1, 1_000_000_000, 3, 0, 0),
        ]
    );
    assert_eq!(entries[2].file_type, FileType::CharDevice);
}

#[test]
fn reads_concatenated_early_and_compressed_main() {
    let mut early = Archive::new(EPOCH);
    early
        .add_bytes(
            "kernel/x86/microcode/AuthenticAMD.bin",
            pseudo_random(777, 9),
            0o644,
        )
        .unwrap();
    let main = sample();
    let main_paths: Vec<_> = main.paths().map(|p| p.to_path_buf()).collect();
    for compression in [
        Compression::None,
        Compression::gzip_default(),
        Compression::default(),
    ] {
        let mut image = Vec::new();
        let summary = write_initramfs(&mut image, Some(&early), &main, compression).unwrap();
        let early_len = summary.early.unwrap().bytes;
        let entries = read_entries(image.as_slice()).unwrap();
        assert_eq!(entries.len(), 4 + main_paths.len(), "{compression:?}");
        let (first, rest) = entries.split_at(4);
        for e in first {
            assert_eq!((e.segment.index, e.segment.codec), (0, Codec::None));
        }
        assert_eq!(first[3].sha256, sha256(&pseudo_random(777, 9)));
        let rest_paths: Vec<_> = rest.iter().map(|e| e.path.clone()).collect();
        assert_eq!(rest_paths, main_paths);
        for e in rest {
            if compression == Compression::None {
                // Two uncompressed archives back to back form one segment.
                assert_eq!(e.segment.index, 0);
            } else {
                assert_eq!(e.segment.index, 1);
                assert_eq!(e.segment.codec, compression.codec());
                assert_eq!(e.segment.file_offset, early_len);
            }
        }
    }
}

#[test]
fn skips_zero_padding_between_and_after_segments() {
    let early = plain(&sample());
    let mut main = Vec::new();
    Compression::default()
        .write_archive(&sample(), &mut main)
        .unwrap();
    let mut gz = Vec::new();
    Compression::gzip_default()
        .write_archive(&sample(), &mut gz)
        .unwrap();

    let mut image = early.clone();
    image.extend_from_slice(&[0; 512]);
    let zstd_at = image.len() as u64;
    image.extend_from_slice(&main);
    image.extend_from_slice(&[0; 3]);
    let gzip_at = image.len() as u64;
    image.extend_from_slice(&gz);
    image.extend_from_slice(&[0; 100]);
    let plain_at = image.len() as u64;
    image.extend_from_slice(&early);
    image.extend_from_slice(&[0; 4]);

    let entries = read_entries(image.as_slice()).unwrap();
    let n = sample().len();
    assert_eq!(entries.len(), 4 * n);
    let segments: Vec<_> = entries
        .chunks(n)
        .map(|c| {
            (
                c[0].segment.index,
                c[0].segment.codec,
                c[0].segment.file_offset,
            )
        })
        .collect();
    assert_eq!(
        segments,
        [
            (0, Codec::None, 0),
            (1, Codec::Zstd, zstd_at),
            (2, Codec::Gzip, gzip_at),
            (3, Codec::None, plain_at),
        ]
    );
    // Offsets of uncompressed entries are positions in the file.
    let last = &entries[3 * n];
    assert_eq!(last.offset, plain_at);
    assert_eq!(&image[last.offset as usize..][..6], b"070701");
}

#[test]
fn reads_gnu_cpio_output() {
    let staging = tempfile::tempdir().unwrap();
    stage_tree(staging.path(), false);
    let names = run(
        "sh",
        &["-c", "find . | LC_ALL=C sort"],
        Some(staging.path()),
        b"",
    );
    let cpio = run(
        "cpio",
        &["-o", "-H", "newc", "--reproducible"],
        Some(staging.path()),
        &names,
    );
    let entries = read_entries(cpio.as_slice()).unwrap();
    // GNU cpio stores `./etc` as `etc` (and `.` as is).
    let listed: Vec<_> = String::from_utf8(names)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("./").unwrap_or(l).to_owned())
        .collect();
    let ours: Vec<_> = entries
        .iter()
        .map(|e| e.path.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ours, listed);
    for (path, data, _) in tree_files() {
        let e = entries
            .iter()
            .find(|e| e.path.to_str() == Some(path))
            .unwrap();
        assert_eq!(e.sha256, sha256(&data), "{path}");
    }
}

#[test]
fn truncated_header_reports_offset() {
    let bytes = plain(&sample());
    let (offset, reason) = malformed(&bytes[..50]);
    assert_eq!(offset, 0);
    assert!(reason.contains("truncated header"), "{reason}");

    // Cut inside the third header.
    let third = read_entries(bytes.as_slice()).unwrap()[2].offset;
    let (offset, reason) = malformed(&bytes[..third as usize + 20]);
    assert_eq!(offset, third);
    assert!(reason.contains("truncated header"), "{reason}");
}

#[test]
fn missing_trailer_is_an_error() {
    let bytes = plain(&sample());
    let trailer_at = bytes.len() - 124; // 110 + "TRAILER!!!\0" + 3 padding
    assert_eq!(&bytes[trailer_at + 110..trailer_at + 120], b"TRAILER!!!");
    let (offset, reason) = malformed(&bytes[..trailer_at]);
    assert_eq!(offset, trailer_at as u64);
    assert!(reason.contains("truncated header"), "{reason}");
}

#[test]
fn bad_magic_and_bad_hex_report_offsets() {
    let bytes = plain(&sample());
    let second = read_entries(bytes.as_slice()).unwrap()[1].offset as usize;

    let mut bad = bytes.clone();
    bad[second..second + 6].copy_from_slice(b"070707");
    let (offset, reason) = malformed(&bad);
    assert_eq!(offset, second as u64);
    assert!(reason.contains("bad magic"), "{reason}");

    let mut bad = bytes.clone();
    let filesize_digit = second + 6 + 8 * 6 + 5;
    bad[filesize_digit] = b'x';
    let (offset, reason) = malformed(&bad);
    assert_eq!(offset, filesize_digit as u64);
    assert!(
        reason.contains("hex") && reason.contains("filesize"),
        "{reason}"
    );

    let mut bad = bytes.clone();
    bad[0] = b'X';
    let (offset, reason) = malformed(&bad);
    assert_eq!(offset, 0);
    assert!(reason.contains("expected a cpio header"), "{reason}");
}

#[test]
fn truncated_contents_and_garbage_after_trailer() {
    let mut archive = Archive::new(EPOCH);
    archive
        .add_bytes("big", pseudo_random(100_000, 3), 0o644)
        .unwrap();
    let bytes = plain(&archive);
    let (offset, reason) = malformed(&bytes[..50_000]);
    assert_eq!(offset, 50_000);
    assert!(reason.contains("truncated contents"), "{reason}");

    let mut junk = bytes.clone();
    let end = junk.len() as u64;
    junk.extend_from_slice(b"\0\0\0\0junk");
    let (offset, reason) = malformed(&junk);
    assert_eq!(offset, end + 4);
    assert!(reason.contains("6a756e6b"), "{reason}");
}

#[test]
fn corrupt_compressed_segment_is_a_read_error() {
    let early = plain(&sample());
    let mut image = early.clone();
    Compression::default()
        .write_archive(&sample(), &mut image)
        .unwrap();
    let len = image.len();
    image[len - 20..].fill(0xaa);
    let err = read_entries(image.as_slice()).unwrap_err();
    match &err {
        Error::Read { segment, .. } | Error::Malformed { segment, .. } => {
            assert_eq!(segment.codec, Codec::Zstd);
            assert_eq!(segment.file_offset, early.len() as u64);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("zstd"), "{err}");
}

#[test]
fn empty_and_unsupported_inputs() {
    let (offset, reason) = malformed(b"");
    assert_eq!(offset, 0);
    assert!(reason.contains("no cpio archive"), "{reason}");
    let (offset, reason) = malformed(b"\0\0\0\0\xfd7zXZ\0rest");
    assert_eq!(offset, 4);
    assert!(reason.contains("xz"), "{reason}");
}

#[test]
fn never_panics_on_truncation_or_corruption() {
    let mut archive = sample();
    archive
        .add_bytes("data", pseudo_random(3000, 5), 0o644)
        .unwrap();
    let bytes = plain(&archive);
    let full = read_entries(bytes.as_slice()).unwrap();
    for cut in 0..bytes.len() {
        // Every proper prefix lacks the trailer, so every one must fail, never panic.
        assert!(read_entries(&bytes[..cut]).is_err(), "prefix {cut}");
    }
    // Readers ignore the `check` field of 070701 headers and the trailer's metadata, so
    // flips there are invisible by design.
    let trailer = bytes.len() as u64 - 124;
    let header_starts: Vec<u64> = full.iter().map(|e| e.offset).chain([trailer]).collect();
    let ignored = |pos: u64| {
        header_starts
            .iter()
            .any(|&h| (h + 102..h + 110).contains(&pos))
            || (trailer + 6..trailer + 94).contains(&pos)
    };
    for pos in 0..bytes.len() {
        if ignored(pos as u64) {
            continue;
        }
        let mut bad = bytes.clone();
        bad[pos] ^= 0x55;
        // Changing a byte must change the result: a different listing or an error.
        if let Ok(entries) = read_entries(bad.as_slice()) {
            assert_ne!(entries, full, "flip at {pos} went unnoticed");
        }
    }
    let mut zst = Vec::new();
    Compression::default()
        .write_archive(&archive, &mut zst)
        .unwrap();
    for cut in 0..zst.len() {
        assert!(read_entries(&zst[..cut]).is_err(), "zstd prefix {cut}");
    }
}

#[test]
fn crc_variant_checksums_are_verified() {
    // GNU cpio writes the crc variant with -H crc.
    let staging = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(staging.path().join("f")).unwrap();
    f.write_all(b"checksummed").unwrap();
    let cpio = run("cpio", &["-o", "-H", "crc"], Some(staging.path()), b"f\n");
    let entries = read_entries(cpio.as_slice()).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].sha256, sha256(b"checksummed"));

    let mut bad = cpio.clone();
    let data_at = 110 + 2; // "f\0" ends 4-aligned
    assert_eq!(&bad[data_at..data_at + 11], b"checksummed");
    bad[data_at] = b'C';
    let (offset, reason) = malformed(&bad);
    assert_eq!(offset, data_at as u64);
    assert!(reason.contains("checksum"), "{reason}");
}

/// Found by the `cpio_reader` fuzz target's seeds: GNU cpio checksums only
/// regular files (a symlink's header says 0), as the kernel checks only them.
#[test]
fn crc_variant_symlinks_and_directories_carry_no_checksum() {
    let staging = tempfile::tempdir().unwrap();
    std::fs::create_dir(staging.path().join("d")).unwrap();
    std::fs::write(staging.path().join("d/f"), b"checksummed").unwrap();
    std::os::unix::fs::symlink("f", staging.path().join("d/link")).unwrap();
    let cpio = run(
        "cpio",
        &["-o", "-H", "crc"],
        Some(staging.path()),
        b"d\nd/f\nd/link\n",
    );
    let entries = read_entries(cpio.as_slice()).unwrap();
    let paths: Vec<_> = entries.iter().map(|e| e.path.to_str().unwrap()).collect();
    assert_eq!(paths, ["d", "d/f", "d/link"]);
    assert_eq!(
        entries[2].symlink_target.as_deref(),
        Some(std::path::Path::new("f"))
    );
    assert_eq!(entries[2].sha256, sha256(b"f"));
}

#[test]
fn malformed_inside_compressed_segment_reports_decompressed_offset() {
    let early = plain(&sample());
    let mut inner = plain(&sample());
    let second = read_entries(inner.as_slice()).unwrap()[1].offset as usize;
    let mtime_digit = second + 6 + 8 * 5;
    inner[mtime_digit] = b'-';
    let mut image = early.clone();
    image.extend_from_slice(&zstd::encode_all(inner.as_slice(), 3).unwrap());
    match read_entries(image.as_slice()) {
        Err(Error::Malformed {
            offset,
            segment,
            reason,
        }) => {
            assert_eq!(offset, mtime_digit as u64);
            assert_eq!(segment.codec, Codec::Zstd);
            assert_eq!(segment.index, 1);
            assert_eq!(segment.file_offset, early.len() as u64);
            assert!(reason.contains("mtime"), "{reason}");
        }
        other => panic!("expected a malformed-input error, got {other:?}"),
    }
}

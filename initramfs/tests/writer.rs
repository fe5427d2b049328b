//! Path rules, parent synthesis, clamping and error reporting of the writer.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::EPOCH;
use initramfs::{Archive, Entry, Error, FileType, read_entries};

fn entries(archive: &Archive) -> Vec<initramfs::ReadEntry> {
    let mut out = Vec::new();
    archive.write_to(&mut out).unwrap();
    read_entries(out.as_slice()).unwrap()
}

#[test]
fn rejects_bad_paths() {
    let mut archive = Archive::new(EPOCH);
    let bad: [&[u8]; 10] = [
        b"", b"/", b"//init", b"a//b", b"a/", b"a/../b", b"..", b"./a", b"a/./b", b"a\0b",
    ];
    for path in bad {
        let err = archive
            .add_bytes(Path::new(OsStr::from_bytes(path)), b"x".to_vec(), 0o644)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidPath { .. }), "{path:?}: {err}");
    }
    let long = "a/".repeat(2048) + "b";
    assert!(matches!(
        archive.add_bytes(&long, b"x".to_vec(), 0o644),
        Err(Error::InvalidPath { .. })
    ));
    assert!(
        archive.is_empty(),
        "a rejected path must not leave parents behind"
    );
    assert!(matches!(
        archive.add_symlink("l", ""),
        Err(Error::InvalidSymlinkTarget { .. })
    ));
}

#[test]
fn duplicates_are_errors_even_with_leading_slash() {
    let mut archive = Archive::new(EPOCH);
    archive.add_bytes("init", b"1".to_vec(), 0o755).unwrap();
    let err = archive
        .add_bytes("/init", b"2".to_vec(), 0o755)
        .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicatePath { path } if path == "init"),
        "{err}"
    );
    archive.add_dir("etc", 0o755).unwrap();
    assert!(matches!(
        archive.add_dir("etc", 0o700),
        Err(Error::DuplicatePath { .. })
    ));
}

#[test]
fn synthesized_parents_and_explicit_replacement() {
    let mut archive = Archive::new(EPOCH);
    archive.add_bytes("a/b/c", b"c".to_vec(), 0o644).unwrap();
    assert_eq!(archive.len(), 3);
    assert!(
        archive.get("a").is_none(),
        "synthesized parents are not explicit entries"
    );
    // An explicit directory may take over a synthesized one, with its own mode and mtime.
    archive
        .insert("a", Entry::directory(0o700).with_mtime(1_234))
        .unwrap();
    assert_eq!(archive.get("/a").unwrap().permissions(), 0o700);

    let read = entries(&archive);
    let modes: Vec<_> = read
        .iter()
        .map(|e| (e.path.to_str().unwrap(), e.mode, e.mtime))
        .collect();
    assert_eq!(
        modes,
        [
            ("a", 0o40700, 1_234),
            ("a/b", 0o40755, EPOCH),
            ("a/b/c", 0o100644, EPOCH)
        ]
    );
}

#[test]
fn nothing_may_live_below_a_non_directory() {
    let mut archive = Archive::new(EPOCH);
    archive
        .add_bytes("etc/hosts", b"h".to_vec(), 0o644)
        .unwrap();
    let err = archive
        .add_bytes("etc/hosts/x", b"x".to_vec(), 0o644)
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotADirectory { ancestor, .. } if ancestor == "etc/hosts"),
        "{err}"
    );
    // `etc` was synthesized as a parent; it cannot become a file now.
    let err = archive.add_symlink("etc", "/elsewhere").unwrap_err();
    assert!(
        matches!(&err, Error::NotADirectory { path, ancestor } if path == "etc/hosts" && ancestor == "etc"),
        "{err}"
    );
    assert_eq!(archive.len(), 2);
}

#[test]
fn mtimes_are_clamped_to_the_epoch() {
    let mut archive = Archive::new(EPOCH);
    archive
        .insert(
            "new",
            Entry::bytes(b"n".to_vec(), 0o644).with_mtime(i64::from(EPOCH) + 1),
        )
        .unwrap();
    archive
        .insert("old", Entry::bytes(b"o".to_vec(), 0o644).with_mtime(5))
        .unwrap();
    archive
        .insert("prehistoric", Entry::fifo(0o600).with_mtime(-5))
        .unwrap();
    archive.add_bytes("unset", b"u".to_vec(), 0o644).unwrap();
    let read = entries(&archive);
    let mtimes: Vec<_> = read.iter().map(|e| e.mtime).collect();
    assert_eq!(mtimes, [EPOCH, 5, 0, EPOCH]);
    assert_eq!(read[2].file_type, FileType::Fifo);
}

#[test]
fn permission_bits_beyond_0o7777_are_dropped() {
    let mut archive = Archive::new(EPOCH);
    archive.add_bytes("f", b"f".to_vec(), 0o170_644).unwrap();
    archive.add_dir("d", 0o041_777).unwrap();
    let read = entries(&archive);
    assert_eq!(read[0].mode, 0o41777);
    assert_eq!(read[1].mode, 0o100644);
}

#[test]
fn host_file_errors_name_the_host_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist");
    let mut archive = Archive::new(EPOCH);
    archive.add_file("usr/bin/x", &missing, 0o755).unwrap();
    let err = archive.write_to(std::io::sink()).unwrap_err();
    assert!(
        matches!(&err, Error::Io { op: "stat", path, .. } if path == &missing),
        "{err}"
    );
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");

    let mut archive = Archive::new(EPOCH);
    archive.add_file("etc", dir.path(), 0o644).unwrap();
    let err = archive.write_to(std::io::sink()).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedFileType { path } if path == dir.path()),
        "{err}"
    );

    let err = Archive::from_tree(&missing, EPOCH).unwrap_err();
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");
}

#[test]
fn output_errors_name_the_entry() {
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut archive = Archive::new(EPOCH);
    // Bigger than the output buffer, so the failure surfaces while this entry is written.
    archive.add_bytes("big", vec![1u8; 4 << 20], 0o644).unwrap();
    let err = archive.write_to(Full).unwrap_err();
    assert!(
        matches!(&err, Error::Write { entry, .. } if entry == "big"),
        "{err}"
    );
}

#[test]
fn host_file_contents_are_streamed_at_write_time() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("blob");
    std::fs::write(&host, b"first").unwrap();
    let mut archive = Archive::new(EPOCH);
    archive.add_file("blob", &host, 0o644).unwrap();
    std::fs::write(&host, b"second version").unwrap();
    let read = entries(&archive);
    assert_eq!(read[0].size, 14);
    let summary = archive.write_to(std::io::sink()).unwrap();
    assert_eq!(summary.entries, 1);
    // 110 header + "blob\0" + 1 pad, 14 data + 2 pad, 124 trailer.
    assert_eq!(summary.bytes, 116 + 16 + 124);
}

//! GNU cpio, zstd and gzip, not our own reader, check what the writer produces.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{EPOCH, cpio_list, run, stage_tree, tree_dirs, tree_files, tree_symlinks};
use initramfs::{Archive, Compression, write_initramfs};

#[test]
fn cpio_lists_exactly_our_entries_in_our_order() {
    let mut archive = Archive::new(EPOCH);
    // Inserted out of order; `a-b` sorts between `a` and `a/c` bytewise.
    archive
        .add_bytes("usr/bin/tool", b"t".to_vec(), 0o755)
        .unwrap();
    archive.add_bytes("/init", b"i".to_vec(), 0o755).unwrap();
    archive.add_bytes("a/c", b"c".to_vec(), 0o644).unwrap();
    archive.add_char_device("dev/console", 5, 1, 0o600).unwrap();
    archive
        .add_bytes("etc/hostname", b"h\n".to_vec(), 0o644)
        .unwrap();
    archive.add_symlink("a-b", "a/c").unwrap();
    let mut cpio = Vec::new();
    archive.write_to(&mut cpio).unwrap();

    let expected = [
        "a",
        "a-b",
        "a/c",
        "dev",
        "dev/console",
        "etc",
        "etc/hostname",
        "init",
        "usr",
        "usr/bin",
        "usr/bin/tool",
    ];
    assert_eq!(cpio_list(&cpio, false), expected);
    let ours: Vec<_> = archive
        .paths()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ours, expected);
}

#[test]
fn cpio_extracts_zstd_archive_of_staged_tree() {
    let staging = tempfile::tempdir().unwrap();
    stage_tree(staging.path(), false);
    // One file keeps an mtime older than the epoch, which must survive; the rest are "now".
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    fs::File::options()
        .write(true)
        .open(staging.path().join("etc/hostname"))
        .unwrap()
        .set_modified(old)
        .unwrap();

    let mut archive = Archive::from_tree(staging.path(), EPOCH).unwrap();
    archive
        .add_bytes("etc/generated", b"in memory\n".to_vec(), 0o640)
        .unwrap();
    let mut zst = Vec::new();
    write_initramfs(&mut zst, None, &archive, Compression::default()).unwrap();

    let cpio = run("zstd", &["-dc"], None, &zst);
    let listed = cpio_list(&cpio, false);
    let ours: Vec<_> = archive
        .paths()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ours);

    let out = tempfile::tempdir().unwrap();
    run(
        "cpio",
        &["-idm", "--no-absolute-filenames"],
        Some(out.path()),
        &cpio,
    );
    let check_file = |path: &str, data: &[u8], perm: u32| {
        let host = out.path().join(path);
        assert_eq!(fs::read(&host).unwrap(), data, "contents of {path}");
        let meta = fs::symlink_metadata(&host).unwrap();
        assert!(meta.is_file(), "{path}");
        assert_eq!(meta.permissions().mode() & 0o7777, perm, "mode of {path}");
    };
    for (path, data, perm) in tree_files() {
        check_file(path, &data, perm);
    }
    check_file("etc/generated", b"in memory\n", 0o640);
    for (path, target) in tree_symlinks() {
        let link = out.path().join(path);
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new(target),
            "target of {path}"
        );
    }
    for (path, perm) in tree_dirs() {
        let meta = fs::metadata(out.path().join(path)).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o7777, perm, "mode of {path}");
    }
    let mtime = |path: &str| fs::symlink_metadata(out.path().join(path)).unwrap().mtime();
    assert_eq!(mtime("etc/hostname"), 1_600_000_000);
    assert_eq!(mtime("usr/bin/tool"), i64::from(EPOCH));
    assert_eq!(mtime("etc/generated"), i64::from(EPOCH));
}

#[test]
fn gzip_archive_decompresses_with_gzip() {
    let staging = tempfile::tempdir().unwrap();
    stage_tree(staging.path(), false);
    let archive = Archive::from_tree(staging.path(), EPOCH).unwrap();
    let mut plain = Vec::new();
    archive.write_to(&mut plain).unwrap();
    let mut gz = Vec::new();
    write_initramfs(&mut gz, None, &archive, Compression::gzip_default()).unwrap();
    // No FNAME flag, zero mtime: nothing about the build host or time leaks in.
    assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
    assert_eq!(run("gzip", &["-dc"], None, &gz), plain);
    assert_eq!(cpio_list(&plain, false).len(), archive.len());
}

#[test]
fn cpio_lists_device_nodes() {
    let mut archive = Archive::new(EPOCH);
    archive
        .add_char_device("/dev/console", 5, 1, 0o600)
        .unwrap();
    archive.add_block_device("dev/vda", 253, 0, 0o660).unwrap();
    archive.add_dir("dev", 0o755).unwrap();
    let mut cpio = Vec::new();
    archive.write_to(&mut cpio).unwrap();

    let lines = cpio_list(&cpio, true);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let fields: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(fields[0][0], "drwxr-xr-x");
    assert_eq!(fields[0].last(), Some(&"dev"));
    assert_eq!(fields[1][0], "crw-------");
    assert_eq!(&fields[1][2..6], ["root", "root", "5,", "1"]);
    assert_eq!(fields[1].last(), Some(&"dev/console"));
    assert_eq!(fields[2][0], "brw-rw----");
    assert_eq!(&fields[2][4..6], ["253,", "0"]);
    assert_eq!(fields[2].last(), Some(&"dev/vda"));
}

#[test]
fn early_archive_is_plain_cpio_followed_by_compressed_main() {
    let mut early = Archive::new(EPOCH);
    early
        .add_bytes(
            "kernel/x86/microcode/GenuineIntel.bin",
            vec![7u8; 1001],
            0o644,
        )
        .unwrap();
    let mut main = Archive::new(EPOCH);
    main.add_bytes("init", b"init".to_vec(), 0o755).unwrap();
    let mut image = Vec::new();
    let summary = write_initramfs(&mut image, Some(&early), &main, Compression::default()).unwrap();
    let early_len = summary.early.unwrap().bytes as usize;
    assert_eq!(summary.output_bytes as usize, image.len());

    // cpio reads the first archive and stops at its trailer; zstd reads the rest.
    assert_eq!(
        cpio_list(&image, false),
        [
            "kernel",
            "kernel/x86",
            "kernel/x86/microcode",
            "kernel/x86/microcode/GenuineIntel.bin"
        ]
    );
    assert_eq!(&image[early_len..early_len + 4], &[0x28, 0xb5, 0x2f, 0xfd]);
    let main_cpio = run("zstd", &["-dc"], None, &image[early_len..]);
    assert_eq!(cpio_list(&main_cpio, false), ["init"]);
}

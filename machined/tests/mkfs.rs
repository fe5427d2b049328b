//! The real mkfs.ext4 (e2fsprogs) through `host::disk::Linux`, which runs
//! it through machined's reaper. Its own test binary: the reaper owns
//! waitpid(-1) in the process it starts in, so tests there that wait on
//! their own children (openssl, promtool) must not share a process with it.

use machined::host::disk::{Disks, Linux, MKFS_EXT4};
use std::fs::File;

/// The label reads back, each of several runs' exits reaches its caller
/// (none lost to the reaper's waitpid(-1)), and a failure carries mkfs's
/// own words.
#[test]
fn mkfs_ext4_runs_through_the_reaper_and_reports_its_failures() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("state.img");
    File::create(&img)
        .and_then(|f| f.set_len(16 << 20))
        .expect("a 16 MiB file");
    let img = img.to_str().unwrap();
    for _ in 0..3 {
        Linux
            .mkfs_ext4(img, "STATE")
            .expect("mkfs.ext4 (e2fsprogs)");
    }
    assert_eq!(Linux.ext4_label(img).as_deref(), Some("STATE"));
    let missing = dir.path().join("no-such-disk");
    let err = Linux
        .mkfs_ext4(missing.to_str().unwrap(), "STATE")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{MKFS_EXT4} -L STATE {}: exit code 1: ",
            missing.display()
        )) && err.contains("does not exist"),
        "{err}"
    );
}

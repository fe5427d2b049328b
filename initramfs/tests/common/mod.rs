//! Shared fixtures for the integration tests: a staged tree and runners for peer tools.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};

pub const EPOCH: u32 = 1_700_000_000;

/// Deterministic, moderately compressible bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            b"abcdefgh\0\x01"[(state >> 60) as usize % 10]
        })
        .collect()
}

/// Files (relative path, contents, permissions) of the staged tree.
pub fn tree_files() -> Vec<(&'static str, Vec<u8>, u32)> {
    vec![
        ("init", b"\x7fELF not really".to_vec(), 0o755),
        ("etc/hostname", b"node-1\n".to_vec(), 0o644),
        ("etc/empty", Vec::new(), 0o600),
        ("usr/bin/tool", pseudo_random(3 * 1024 * 1024 + 3, 1), 0o755),
        ("usr/bin/suid", b"x".to_vec(), 0o4755),
        ("usr/lib/a", b"ab".to_vec(), 0o644),
        ("usr/lib/ab", b"abc".to_vec(), 0o644),
        ("usr/lib/abc", b"abcd".to_vec(), 0o444),
        ("usr/lib/a-b", b"dash".to_vec(), 0o644),
        ("usr/lib/a.b", b"dot".to_vec(), 0o644),
        ("var/private/key", pseudo_random(4093, 2), 0o600),
    ]
}

/// Symlinks (relative path, target) of the staged tree.
pub fn tree_symlinks() -> Vec<(&'static str, &'static str)> {
    vec![
        ("sbin", "usr/bin"),
        ("usr/lib/liblink.so", "abc"),
        (
            "etc/dangling",
            "/nonexistent/target/that/is/long/enough/to/pad",
        ),
    ]
}

/// Directories (relative path, permissions) created explicitly with non-default permissions.
pub fn tree_dirs() -> Vec<(&'static str, u32)> {
    vec![("var/private", 0o700), ("usr/share/empty", 0o750)]
}

/// Stages the tree under `root`, creating entries in forward or reverse order so that
/// directory order and inode numbers differ between two stagings.
pub fn stage_tree(root: &Path, reverse: bool) {
    let mut files = tree_files();
    let mut links = tree_symlinks();
    let mut dirs = tree_dirs();
    if reverse {
        files.reverse();
        links.reverse();
        dirs.reverse();
    }
    for (path, perm) in &dirs {
        fs::create_dir_all(root.join(path)).unwrap();
        fs::set_permissions(root.join(path), fs::Permissions::from_mode(*perm)).unwrap();
    }
    for (path, data, perm) in &files {
        let host = root.join(path);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(&host, data).unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(*perm)).unwrap();
    }
    for (path, target) in &links {
        symlink(target, root.join(path)).unwrap();
    }
}

/// Runs `program args` with `stdin`, returning stdout; panics with stderr on failure.
pub fn run(program: &str, args: &[&str], dir: Option<&Path>, stdin: &[u8]) -> Vec<u8> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut child_stdin = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // cpio may stop reading after the trailer; a broken pipe then is fine.
        let _ = child_stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `cpio -it` (or `-itv`) output lines for an uncompressed archive.
pub fn cpio_list(archive: &[u8], verbose: bool) -> Vec<String> {
    let flags = if verbose { "-itv" } else { "-it" };
    String::from_utf8(run("cpio", &[flags], None, archive))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

//! Archive + zstd -3 of a real tree: ours against `find | sort | cpio | zstd` in the same run.
//!
//! `cargo bench -p initramfs --bench cpio_zstd`; the tree defaults to a copy of
//! /usr/lib/x86_64-linux-gnu and can be changed with `INITRAMFS_BENCH_TREE=/some/dir`.
//! Prints `RESULT name=cpio_zstd ours=<ms>ms peer=<ms>ms ratio=<ours/peer>` (best of 3 each).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use initramfs::{Compression, write_tree};

const RUNS: usize = 3;
const EPOCH: u32 = 1_700_000_000;

fn best_of(mut run: impl FnMut() -> u64) -> (Duration, u64) {
    let mut best = Duration::MAX;
    let mut size = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        size = run();
        best = best.min(start.elapsed());
    }
    (best, size)
}

fn main() {
    let source = std::env::var("INITRAMFS_BENCH_TREE")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu".to_owned());
    let work = tempfile::tempdir().expect("temp dir");
    // A private copy: nothing changes underneath, and both sides read the same files. Hard
    // links are split, since GNU cpio stores linked data once and we store it per name.
    let tree = work.path().join("tree");
    let status = Command::new("cp")
        .args(["-R", "--preserve=mode,timestamps", &source])
        .arg(&tree)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -R {source} failed");

    let ours_out = work.path().join("ours.cpio.zst");
    let (ours, ours_size) = best_of(|| {
        let out = BufWriter::new(File::create(&ours_out).expect("create output"));
        let summary = write_tree(&tree, EPOCH, Compression::default(), out).expect("write_tree");
        summary.output_bytes
    });

    let peer_out = work.path().join("peer.cpio.zst");
    let script = format!(
        "find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | zstd -T0 -3 -q -f -o '{}'",
        peer_out.display()
    );
    let (peer, peer_size) = best_of(|| {
        let status = Command::new("sh")
            .args(["-c", &script])
            .current_dir(&tree)
            .status()
            .expect("run peer pipeline");
        assert!(status.success(), "peer pipeline failed");
        file_len(&peer_out)
    });

    println!(
        "tree={source} ours_bytes={ours_size} peer_bytes={peer_size} cores={}",
        initramfs::default_workers()
    );
    println!(
        "RESULT name=cpio_zstd ours={}ms peer={}ms ratio={:.3}",
        ours.as_millis(),
        peer.as_millis(),
        ours.as_secs_f64() / peer.as_secs_f64()
    );
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

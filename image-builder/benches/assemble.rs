//! Image assembly benchmarks, each measured against a peer tool in the same run.
//!
//! Run with `cargo bench -p image-builder --bench assemble` (needs Debian's nix-bin, cpio and
//! zstd). Ours and the peer run alternately on the same input. Each benchmark prints one line
//! `RESULT name=<name> ours=<ms>ms peer=<ms>ms ratio=<ours/peer>` (medians of wall-clock time;
//! ratio < 1 means we are faster), after the samples, the mean CPU time of each side and the load
//! average on stderr. On a CPU-saturated machine wall time follows CPU time, so a side that spends
//! more CPU to finish sooner on idle cores (our NAR unpack hashes on a second thread) loses there.
//! Not a timed test: nothing here fails on slowness.
//!
//! Environment:
//! - `BASALT_BENCH_NAR_SOURCE`: tree to serialise for the NAR benchmark
//!   (default `/usr/share/doc`, which is thousands of small files, the shape of a closure).
//! - `BASALT_BENCH_CPIO_SOURCE`: tree staged (copied) for the cpio+zstd benchmark
//!   (default `/usr/bin`, a few hundred MiB of binaries, the bulk of an initramfs).
//! - `BASALT_BENCH_ITERATIONS`: runs per side (default 7).
//! - `BASALT_BENCH_ONLY`: `nar_unpack` or `cpio_zstd` to run just one benchmark.
//! - `BASALT_BENCH_DIR`: where outputs are written (default `/dev/shm` when it exists: a tmpfs
//!   measures the tools rather than the disk and its writeback, which on a shared CI machine is
//!   mostly noise).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image_builder::nix::{NixHash, unpack_nar_at};
use sha2::{Digest, Sha256};

/// Our archive clamps mtimes to this; GNU cpio keeps the staged ones (same cost either way).
const SOURCE_DATE_EPOCH: u32 = 1_700_000_000;

fn main() {
    let iterations: usize = std::env::var("BASALT_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
        .max(1);
    let base = std::env::var_os("BASALT_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("basalt-bench-")
        .tempdir_in(&base)
        .expect("temp dir");

    let only = std::env::var("BASALT_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "nar_unpack" {
        nar_unpack(work.path(), iterations);
    }

    if only.is_empty() || only == "cpio_zstd" {
        cpio_zstd(work.path(), iterations);
    }
}

/// Our NAR unpack (hash-verified, as the builder runs it) vs `nix-store --restore` of the same NAR.
fn nar_unpack(work: &Path, iterations: usize) {
    let source = std::env::var_os("BASALT_BENCH_NAR_SOURCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/doc"));
    let nar = work.join("bench.nar");
    let status = Command::new("nix-store")
        .arg("--dump")
        .arg(&source)
        .stdout(File::create(&nar).expect("create NAR file"))
        .stderr(Stdio::inherit())
        .status()
        .expect("run nix-store (apt-get install nix-bin)");
    assert!(
        status.success(),
        "nix-store --dump {} failed",
        source.display()
    );
    let nar_size = fs::metadata(&nar).expect("NAR metadata").len();
    let nar_hash = {
        let mut hasher = Sha256::new();
        let mut reader = BufReader::new(File::open(&nar).expect("open NAR"));
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).expect("read NAR");
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        NixHash::Sha256(hasher.finalize().into())
    };
    eprintln!(
        "nar_unpack: {} -> {:.1} MiB NAR, {iterations} iterations per side, output in {}",
        source.display(),
        nar_size as f64 / (1024.0 * 1024.0),
        work.display()
    );

    let mut ours = Vec::new();
    let mut peer = Vec::new();
    // Alternate the two so page-cache state and background writeback affect both alike; the NAR
    // itself stays in the page cache after the first read.
    for i in 0..iterations {
        let dest = work.join(format!("ours-{i}"));
        let (sample, stats) = measure(|| {
            unpack_nar_at(
                File::open(&nar).expect("open NAR"),
                &dest,
                Some((&nar_hash, nar_size)),
            )
            .expect("our unpack")
        });
        ours.push(sample);
        assert_eq!(stats.nar_size, nar_size);
        settle(&dest);

        let dest = work.join(format!("peer-{i}"));
        let (sample, status) = measure(|| {
            Command::new("nix-store")
                .arg("--restore")
                .arg(&dest)
                .stdin(File::open(&nar).expect("open NAR"))
                .status()
                .expect("run nix-store --restore")
        });
        peer.push(sample);
        assert!(status.success(), "nix-store --restore failed");
        settle(&dest);
    }
    report("nar_unpack", &ours, &peer);
}

/// Our initramfs writer (`initramfs::write_tree`, zstd -3 on every core) vs
/// `find . | sort | cpio -o -H newc --reproducible | zstd -T0 -3` over the same staged tree.
fn cpio_zstd(work: &Path, iterations: usize) {
    let source = std::env::var_os("BASALT_BENCH_CPIO_SOURCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin"));
    // One private staged copy that both sides read: nothing changes underneath, and hard links
    // are split (GNU cpio would store linked data once, we store it per name).
    let tree = work.join("cpio-tree");
    let status = Command::new("cp")
        .args(["-R", "--preserve=mode,timestamps"])
        .arg(&source)
        .arg(&tree)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -R {} failed", source.display());
    let (files, bytes) = tree_size(&tree);
    eprintln!(
        "cpio_zstd: {} -> {files} entries, {:.1} MiB staged, {iterations} iterations per side, \
         {} zstd workers",
        source.display(),
        bytes as f64 / (1024.0 * 1024.0),
        initramfs::default_workers()
    );

    let ours_out = work.join("ours.cpio.zst");
    let peer_out = work.join("peer.cpio.zst");
    let script = format!(
        "find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | zstd -T0 -3 -q > '{}'",
        peer_out.display()
    );
    let mut ours = Vec::new();
    let mut peer = Vec::new();
    let (mut ours_bytes, mut peer_bytes) = (0, 0);
    for _ in 0..iterations {
        let _ = fs::remove_file(&ours_out);
        let (sample, summary) = measure(|| {
            let out = BufWriter::new(File::create(&ours_out).expect("create output"));
            initramfs::write_tree(
                &tree,
                SOURCE_DATE_EPOCH,
                initramfs::Compression::default(),
                out,
            )
            .expect("write_tree")
        });
        ours.push(sample);
        ours_bytes = summary.output_bytes;

        let _ = fs::remove_file(&peer_out);
        let (sample, status) = measure(|| {
            Command::new("sh")
                .arg("-c")
                .arg(&script)
                .current_dir(&tree)
                .status()
                .expect("run sh (apt-get install cpio zstd)")
        });
        peer.push(sample);
        assert!(status.success(), "peer pipeline failed");
        peer_bytes = fs::metadata(&peer_out).map_or(0, |m| m.len());
    }
    // Outside the timed region: our archive holds every staged entry (GNU cpio's also has `.`).
    assert!(peer_bytes > 0, "the peer pipeline wrote nothing");
    let entries = initramfs::read_entries(File::open(&ours_out).expect("open our output"))
        .expect("read back our archive")
        .len() as u64;
    assert_eq!(entries, files, "our archive does not hold the whole tree");
    eprintln!("cpio_zstd: ours {ours_bytes} bytes, peer {peer_bytes} bytes compressed");
    report("cpio_zstd", &ours, &peer);
}

/// Entries below `root` (not counting it) and the bytes of their regular files.
fn tree_size(root: &Path) -> (u64, u64) {
    let (mut entries, mut bytes) = (0, 0);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read staged tree").flatten() {
            let meta = entry.metadata().expect("stat staged entry");
            entries += 1;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len();
            }
        }
    }
    (entries, bytes)
}

/// Delete an output outside the timed region, so the next run starts from the same state.
fn settle(dest: &Path) {
    make_writable(dest);
    let _ = fs::remove_dir_all(dest);
}

fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let _ = fs::set_permissions(
        path,
        fs::Permissions::from_mode(meta.permissions().mode() | 0o200),
    );
    if meta.is_dir() {
        for entry in fs::read_dir(path).into_iter().flatten().flatten() {
            make_writable(&entry.path());
        }
    }
}

/// One timed run: wall-clock time, and the CPU time (user + system) it used in this process
/// and in the children it waited for. On a loaded machine the CPU time is the steadier number:
/// it says what a run would cost on an idle one with as many cores as it can use.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

fn measure<T>(run: impl FnOnce() -> T) -> (Sample, T) {
    let cpu_before = cpu_time();
    let start = Instant::now();
    let value = run();
    let wall = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    (Sample { wall, cpu }, value)
}

/// utime + stime + cutime + cstime of this process, from `/proc/self/stat` (in clock ticks of
/// 10 ms, so only sums over many runs are precise); zero where that is unavailable.
fn cpu_time() -> Duration {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // The fields after the parenthesised command name; utime is the 14th field overall.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn median(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Print the per-run samples and the single `RESULT` line for one benchmark.
fn report(name: &str, ours: &[Sample], peer: &[Sample]) {
    let ms = |v: &[Sample]| {
        v.iter()
            .map(|s| format!("{:.1}", s.wall.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cpu_ms = |v: &[Sample]| {
        v.iter().map(|s| s.cpu).sum::<Duration>().as_secs_f64() * 1000.0 / v.len() as f64
    };
    eprintln!("{name}: ours [{}] ms, peer [{}] ms", ms(ours), ms(peer));
    eprintln!(
        "{name}: mean CPU time ours {:.0} ms, peer {:.0} ms (ratio {:.3}); load average {}",
        cpu_ms(ours),
        cpu_ms(peer),
        cpu_ms(ours) / cpu_ms(peer),
        load_average()
    );
    let (o, p) = (
        median(&mut ours.iter().map(|s| s.wall).collect::<Vec<_>>()),
        median(&mut peer.iter().map(|s| s.wall).collect::<Vec<_>>()),
    );
    println!(
        "RESULT name={name} ours={o:.1}ms peer={p:.1}ms ratio={:.3}",
        o / p
    );
}

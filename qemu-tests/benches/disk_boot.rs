//! Boot to API from `disk.raw` under OVMF (firmware → systemd-boot → UKI →
//! machined mounting its root slot), against the same firmware path booting
//! a busybox UKI (the floor), and against the layout before root-on-disk: a
//! UKI whose initramfs carries the whole root image. All three disks have the
//! same GPT, the same ESP size and the same systemd-boot; only the UKI
//! differs. Today's direct `-kernel`/`-initrd` boot (no firmware) is timed
//! too, as a reference row.
//!
//! Each run boots each variant once, alternating, from QEMU's start to the
//! marker (floor) or the API answering (ours). Ours is timed twice per run:
//! the first boot of a fresh disk (machined makes STATE and EPHEMERAL) and
//! the boot after it (what every later boot costs). `BASALT_BENCH_RUNS`
//! (default 5) sets the number of runs; the medians are reported.

use anyhow::{Context, Result};
use basalt_api::disk_layout::{
    DEFAULT_SLOT_SIZE, ESP_BOOT_LOADER, ESP_LOADER_CONF, ESP_SIZE, ESP_UKI_DIR, LOADER_CONF,
};
use basalt_api::upgrade::Sha256Digest;
use image_builder::profile::{DEFAULT_STUB, DEFAULT_SYSTEMD_BOOT};
use image_builder::{disk, esp, uki};
use qemu_tests::vm::{UefiBoot, Vm, VmOptions, sparse_copy};
use qemu_tests::{admin_key, image};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MARKER: &str = "BUSYBOX-INIT-READY";
const TIMEOUT: Duration = Duration::from_secs(300);
/// The profile's default command line (configs/images/debian.toml).
const CMDLINE: &str = "console=ttyS0 panic=10";

fn sha256(path: &Path) -> Result<[u8; 32]> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Sha256Digest::of_reader(f)?.0.0)
}

/// The busybox floor's initramfs: /init prints the marker and powers off.
fn busybox_initramfs(dir: &Path) -> Result<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    anyhow::ensure!(
        busybox.exists(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    let mut a = initramfs::Archive::new(1);
    a.add_file("bin/busybox", busybox, 0o755)?;
    a.add_bytes(
        "init",
        format!("#!/bin/busybox sh\n/bin/busybox echo {MARKER}\n/bin/busybox poweroff -f\n")
            .into_bytes(),
        0o755,
    )?;
    a.add_char_device("dev/console", 5, 1, 0o600)?;
    let out = dir.join("busybox.cpio");
    initramfs::Compression::None.write_archive(&a, std::fs::File::create(&out)?)?;
    Ok(out)
}

/// A disk laid out as image-builder lays out disk.raw (ESP, slots A and B,
/// STATE) whose ESP holds systemd-boot and one UKI of `kernel`, `initrd`
/// and `cmdline`. Slot A holds `root`, as on the real disk.
fn uefi_disk(
    dir: &Path,
    name: &str,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    root: &Path,
) -> Result<PathBuf> {
    let uki_path = dir.join(format!("{name}.efi"));
    uki::write(
        Path::new(DEFAULT_STUB),
        uki::Sections {
            osrel: format!("ID={name}\nNAME={name}\nVERSION_ID=0.1.0\n").into_bytes(),
            cmdline: cmdline.as_bytes().to_vec(),
            initrd: uki::Source::File(initrd.to_path_buf()),
            linux: uki::Source::File(kernel.to_path_buf()),
        },
        &uki_path,
    )?;
    let conf = dir.join("loader.conf");
    std::fs::write(&conf, LOADER_CONF)?;
    let files = esp::Files::from([
        (
            ESP_BOOT_LOADER.to_string(),
            PathBuf::from(DEFAULT_SYSTEMD_BOOT),
        ),
        (ESP_LOADER_CONF.to_string(), conf),
        (format!("{ESP_UKI_DIR}/{name}-0.1.0.efi"), uki_path.clone()),
    ]);
    let esp_path = dir.join(format!("{name}-esp.img"));
    esp::write(&esp_path, ESP_SIZE, &files, 0x0ba5_a170, 1)?;
    let out = dir.join(format!("{name}-disk.raw"));
    disk::write(
        &disk::DiskInputs {
            root_image: root,
            root_sha256: sha256(root)?,
            uki_sha256: sha256(&uki_path)?,
            esp_image: &esp_path,
            slot_size: DEFAULT_SLOT_SIZE,
        },
        &out,
    )?;
    std::fs::remove_file(&esp_path)?;
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// QEMU start to `basaltctl`'s client answering.
fn to_api(img: &image::Image, name: &str, opts: &VmOptions) -> Result<f64> {
    let t = Instant::now();
    let mut vm = Vm::boot(img, name, opts)?;
    let fp = vm.fingerprint(1, TIMEOUT)?;
    vm.client(&fp, admin_key(), TIMEOUT)?;
    Ok(t.elapsed().as_secs_f64())
}

fn uefi(disk: &Path) -> VmOptions {
    VmOptions {
        uefi: Some(UefiBoot::DiskInPlace(disk.to_path_buf())),
        ..VmOptions::default()
    }
}

struct Samples {
    floor: Vec<f64>,
    first: Vec<f64>,
    steady: Vec<f64>,
    initramfs_root: Vec<f64>,
    direct: Vec<f64>,
}

fn main() -> Result<()> {
    let runs: usize = std::env::var("BASALT_BENCH_RUNS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("BASALT_BENCH_RUNS")?
        .unwrap_or(5);
    let img = image::debian_media()?;
    let dir = image::target_dir().join("qemu-runs/bench-disk-boot");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let root = img.dir.join("root.squashfs");
    let floor_disk = uefi_disk(
        &dir,
        "busybox",
        &img.kernel,
        &busybox_initramfs(&dir)?,
        "console=ttyS0 panic=-1",
        &root,
    )?;
    // The full initramfs (root image inside) and no basalt.root=: machined
    // mounts the root image from the initramfs, as a -kernel boot does.
    let initramfs_disk = uefi_disk(
        &dir,
        "initramfs-root",
        &img.kernel,
        &img.initramfs,
        CMDLINE,
        &root,
    )?;
    let mut s = Samples {
        floor: vec![],
        first: vec![],
        steady: vec![],
        initramfs_root: vec![],
        direct: vec![],
    };
    // One boot of the floor first, not counted: the first VM after an image
    // build finds OVMF and the disks cold in the page cache.
    {
        let warm = dir.join("warm-up.raw");
        sparse_copy(&floor_disk, &warm, 1 << 30)?;
        let mut vm = Vm::boot(img, "bench-uefi-warm-up", &uefi(&warm))?;
        vm.wait_console(MARKER, 1, TIMEOUT)?;
    }
    for run in 0..runs {
        // Each boot gets a fresh copy, made before the clock starts.
        let copy = |from: &Path, name: &str| -> Result<PathBuf> {
            let to = dir.join(format!("{name}-run.raw"));
            sparse_copy(from, &to, 1 << 30)?;
            Ok(to)
        };
        let floor = copy(&floor_disk, "busybox")?;
        let t = Instant::now();
        let mut vm = Vm::boot(img, "bench-uefi-busybox", &uefi(&floor))?;
        vm.wait_console(MARKER, 1, TIMEOUT)?;
        s.floor.push(t.elapsed().as_secs_f64());
        drop(vm);

        let ours = copy(&img.disk(), "disk")?;
        s.first
            .push(to_api(img, "bench-uefi-disk-first", &uefi(&ours))?);
        s.steady.push(to_api(img, "bench-uefi-disk", &uefi(&ours))?);

        let initramfs = copy(&initramfs_disk, "initramfs-root")?;
        s.initramfs_root
            .push(to_api(img, "bench-uefi-initramfs-root", &uefi(&initramfs))?);

        s.direct
            .push(to_api(img, "bench-direct-kernel", &VmOptions::default())?);
        eprintln!(
            "run {}: floor {:.2}s, disk first {:.2}s, disk {:.2}s, initramfs root {:.2}s, -kernel {:.2}s",
            run + 1,
            s.floor[run],
            s.first[run],
            s.steady[run],
            s.initramfs_root[run],
            s.direct[run]
        );
    }
    let floor = median(s.floor.clone());
    let first = median(s.first.clone());
    let steady = median(s.steady.clone());
    let initramfs = median(s.initramfs_root.clone());
    let direct = median(s.direct.clone());
    println!(
        "accel={} runs={runs} floor={:.2?}s disk_first={:.2?}s disk={:.2?}s initramfs_root={:.2?}s direct_kernel={:.2?}s",
        qemu_tests::accel::accel(&img.kernel),
        s.floor,
        s.first,
        s.steady,
        s.initramfs_root,
        s.direct
    );
    println!(
        "root on disk saves {:.2}s a boot over the root image in the UKI's initramfs ({:.1} MB initramfs vs {:.1} MB)",
        initramfs - steady,
        std::fs::metadata(&img.initramfs)?.len() as f64 / 1e6,
        small_initrd_mb(img)?,
    );
    println!(
        "RESULT name=uefi_disk_first_boot_to_api ours={first:.2}s peer={floor:.2}s ratio={:.2}",
        first / floor
    );
    println!(
        "RESULT name=uefi_initramfs_root_boot_to_api ours={initramfs:.2}s peer={floor:.2}s ratio={:.2}",
        initramfs / floor
    );
    println!(
        "RESULT name=direct_kernel_boot_to_api ours={direct:.2}s peer={floor:.2}s ratio={:.2}",
        direct / floor
    );
    println!(
        "RESULT name=uefi_disk_boot_to_api ours={steady:.2}s peer={floor:.2}s ratio={:.2}",
        steady / floor
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The size of the disk UKI's `.initrd`: the UKI minus what the others add
/// is not exact, so read the section table with objdump (binutils).
fn small_initrd_mb(img: &image::Image) -> Result<f64> {
    let out = std::process::Command::new("objdump")
        .arg("-h")
        .arg(img.dir.join(image_builder::media::UKI_NAME))
        .output()
        .context("objdump (binutils)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let size = text
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.nth(1) == Some(".initrd")).then(|| f.next().map(str::to_string))?
        })
        .context("no .initrd section in uki.efi")?;
    Ok(u64::from_str_radix(&size, 16)? as f64 / 1e6)
}

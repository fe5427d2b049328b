//! Booting like a real machine (issue 13): UEFI firmware (OVMF) on q35, no
//! `-kernel`/`-append`. The firmware finds systemd-boot on the ESP, which
//! starts the UKI; its stub hands the kernel its initramfs and command line;
//! machined runs as PID 1 and serves the API. Three media, all from one
//! build of configs/images/debian.toml:
//!
//! * `disk.raw` as a virtio disk (grown by 1 GiB, as a real disk is larger);
//! * `basalt.iso` as a CD-ROM (El Torito, platform UEFI);
//! * the same ISO file as a plain disk (the appended ESP partition), which
//!   is what `dd` to a USB stick gives.

use basalt_api::disk_layout::{self, root_slot_guid};
use basalt_api::route::Route;
use basalt_api::rpc::{
    ApplyMode, ApplyRequest, ApplyResponse, NodeMode, RollbackResponse, Status, UpgradeResponse,
};
use basalt_api::upgrade::UPGRADE_NAMESPACE;
use basalt_api::{CONFIG_NAMESPACE, sshsig};
use basaltctl::client::NodeClient;
use qemu_tests::vm::{SerialDisk, UefiBoot, Vm, VmOptions};
use qemu_tests::{admin_key, image};
use std::time::{Duration, Instant};

/// OVMF adds 10–20 s under TCG to a boot that takes about a minute.
const BOOT: Duration = Duration::from_secs(300);

/// Boots `media`, waits for machined's API; returns the VM, the API's
/// answer and how long boot-to-API took.
fn boot(name: &str, media: UefiBoot) -> (Vm, Status, Duration) {
    boot_with(
        name,
        VmOptions {
            uefi: Some(media),
            ..VmOptions::default()
        },
    )
}

/// [`boot`] with more options than the medium.
fn boot_with(name: &str, opts: VmOptions) -> (Vm, Status, Duration) {
    let img = image::debian_media().expect("the debian image with disk and ISO");
    let started = Instant::now();
    let mut vm = Vm::boot(img, name, &opts).expect("boot");
    let fp = vm.fingerprint(1, BOOT).expect("fingerprint on the console");
    let client = vm.client(&fp, admin_key(), BOOT).expect("API");
    let status: Status = client.get("/v1/status").expect("status");
    let took = started.elapsed();
    eprintln!("{name}: OVMF boot to API in {:.1} s", took.as_secs_f64());
    assert_eq!(status.tls_fingerprint, fp);
    assert_eq!(status.mode, NodeMode::Maintenance, "a fresh node");
    let version: serde_json::Value = client.get("/v1/version").expect("version");
    assert_eq!(version["api"], "v1", "{version}");
    (vm, status, took)
}

/// What the console shows of the path firmware → systemd-boot → UKI →
/// machined, and the command line the UKI carried.
fn assert_booted_by_firmware(vm: &Vm, cmdline: &str) {
    let console = vm.console();
    assert!(
        console.contains("BdsDxe: starting Boot"),
        "OVMF started a boot option:\n{}",
        vm.console_tail(40)
    );
    // systemd-stub hands the initramfs over by this device path; a direct
    // kernel boot (QEMU's -initrd) never prints it.
    assert!(
        console.contains("EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path"),
        "{}",
        vm.console_tail(40)
    );
    let line = console
        .lines()
        .find(|l| l.contains("Kernel command line: "))
        .expect("the kernel prints its command line");
    assert!(
        line.trim_end()
            .ends_with(&format!("Kernel command line: {cmdline}")),
        "the UKI's .cmdline, nothing else: {line}"
    );
    assert!(
        console.contains("Run /init as init process"),
        "machined is PID 1"
    );
}

fn root_guid(img: &image::Image) -> basalt_api::gpt::Guid {
    let manifest =
        image_builder::manifest::Manifest::read(&img.dir.join("manifest.json")).expect("manifest");
    let mut root_sha = [0u8; 32];
    for (i, b) in root_sha.iter_mut().enumerate() {
        *b = u8::from_str_radix(&manifest.rootfs.sha256[2 * i..2 * i + 2], 16).expect("hex");
    }
    root_slot_guid(&root_sha)
}

fn worker(generation: u64) -> String {
    include_str!("../../configs/worker.toml")
        .replace(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRBnXLtUn61qn3ftZ0PoOixOodqYhzuC1OWicDtwZPQ ops@example",
            &admin_key().public().to_openssh(),
        )
        .replace("generation = 1", &format!("generation = {generation}"))
}

fn apply(c: &NodeClient, doc: &str) {
    let r: ApplyResponse = c
        .post(
            "/v1/apply",
            &ApplyRequest {
                config: doc.to_string(),
                signatures: sshsig::sign(&admin_key(), CONFIG_NAMESPACE, doc.as_bytes()),
                mode: ApplyMode::Auto,
                dry_run: false,
                try_timeout_secs: None,
            },
        )
        .expect("apply");
    assert!(!r.reboot_required, "{r:?}");
}

/// Waits until `status` satisfies `done`, printing what it saw.
fn wait_status(c: &NodeClient, within: Duration, done: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + within;
    loop {
        match c.get::<Status>("/v1/status") {
            Ok(s) if done(&s) => return s,
            Ok(s) if Instant::now() > deadline => panic!("gave up waiting; last status {s:?}"),
            Err(e) if Instant::now() > deadline => panic!("gave up waiting: {e}"),
            _ => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

/// An empty directory for one story's bundles (removed at its end: each
/// bundle is tens of MB, and CI machines are short of disk).
fn bundle_dir(story: &str) -> std::path::PathBuf {
    let dir = image::target_dir().join("upgrade-bundles").join(story);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bundle dir");
    dir
}

/// The image at `v`'s UKI and root image, as a bundle signed by `key` in
/// `namespace` (unsigned when `None`).
fn bundle(
    dir: &std::path::Path,
    img: &image::Image,
    version: &str,
    counter: u64,
    sign_as: Option<&str>,
) -> std::path::PathBuf {
    bundle_of(dir, img, img, version, counter, sign_as)
}

/// A bundle of `uki_img`'s UKI and `root_img`'s root image.
fn bundle_of(
    dir: &std::path::Path,
    uki_img: &image::Image,
    root_img: &image::Image,
    version: &str,
    counter: u64,
    sign_as: Option<&str>,
) -> std::path::PathBuf {
    use basalt_api::upgrade::bundle::{PayloadSource, write_bundle};
    use basalt_api::upgrade::manifest::{Arch, Format, Payload};
    use basalt_api::upgrade::{Manifest, Sha256Digest, Version};
    let uki = uki_img.dir.join("uki.efi");
    let root = root_img.dir.join("root.squashfs");
    let payload = |p: &std::path::Path| {
        let (sha256, size) =
            Sha256Digest::of_reader(std::fs::File::open(p).expect("payload")).expect("hash");
        Payload { size, sha256 }
    };
    let m = Manifest {
        format: Format,
        version: Version::try_from(version.to_string()).expect("version"),
        counter,
        arch: Arch::try_from("x86_64".to_string()).expect("arch"),
        uki: payload(&uki),
        root: payload(&root),
    };
    let text = m.to_toml();
    let sig = sign_as.map_or_else(String::new, |ns| {
        sshsig::sign(&admin_key(), ns, text.as_bytes())
    });
    let out = dir.join(format!(
        "{version}-{counter}-{}.bundle",
        sign_as.unwrap_or("unsigned")
    ));
    let mut f = std::fs::File::create(&out).expect("bundle file");
    let (mut u, mut r) = (
        std::fs::File::open(&uki).expect("uki"),
        std::fs::File::open(&root).expect("root"),
    );
    write_bundle(
        &mut f,
        text.as_bytes(),
        sig.as_bytes(),
        PayloadSource {
            reader: &mut u,
            size: m.uki.size,
        },
        PayloadSource {
            reader: &mut r,
            size: m.root.size,
        },
        0,
    )
    .expect("write bundle");
    out
}

fn upgrade(c: &NodeClient, bundle: &std::path::Path) -> Result<UpgradeResponse, String> {
    c.post_file(
        &Route::Upgrade { stage: false },
        bundle,
        Duration::from_secs(600),
    )
    .map_err(|e| e.to_string())
}

/// Boot number `boot` of `vm` runs 0.2.0 from slot B and blesses its
/// entry once healthy; returns its fingerprint, a client and that status.
fn blessed_on_b(vm: &mut Vm, boot: usize) -> (String, NodeClient, Status) {
    let fp = vm.fingerprint(boot, BOOT).expect("boots the new entry");
    let admin = vm.client(&fp, admin_key(), BOOT).expect("API on B");
    let s = wait_status(&admin, BOOT, |s| {
        s.boot.as_ref().is_some_and(|b| b.assessment == "blessed")
    });
    let b = s.boot.clone().expect("boot");
    assert_eq!(
        (b.slot.as_str(), b.version.as_deref(), b.entry.as_deref()),
        ("B", Some("0.2.0"), Some("basalt-0.2.0.efi"))
    );
    (fp, admin, s)
}

/// The first boot of disk.raw: machined mounts slot A named by the UKI and
/// makes STATE and EPHEMERAL.
fn assert_first_disk_boot(vm: &Vm, img: &image::Image, status: &Status) {
    assert_booted_by_firmware(
        vm,
        &format!(
            "console=ttyS0 panic=10 {}{}",
            disk_layout::ROOT_ARG,
            root_guid(img)
        ),
    );
    let console = vm.console();
    for said in [
        "switched into the read-only root: slot A (/dev/vda2) of /dev/vda",
        "EPHEMERAL: partition 5 of /dev/vda made",
        "EPHEMERAL /dev/vda5 mounted at /var",
        "STATE: /dev/vda4 holds no ext4; making one",
    ] {
        assert!(console.contains(said), "{said}:\n{}", vm.console_tail(40));
    }
    assert_eq!(status.state, "/var/lib/basalt/state", "STATE on the disk");
    let boot = status.boot.clone().expect("a disk boot reports itself");
    assert_eq!(
        (boot.disk.as_str(), boot.slot.as_str(), boot.var.as_str()),
        ("/dev/vda", "A", "/dev/vda5")
    );
    assert_eq!(boot.entry.as_deref(), Some("basalt-0.1.0.efi"));
    assert_eq!(
        boot.assessment, "blessed",
        "the first entry carries no counter"
    );
}

/// disk.raw under OVMF, one machine's life: slot A boots and takes a
/// config; bad bundles are refused and change nothing; a good one is
/// written to slot B, boots with the config and TLS identity kept on STATE,
/// is blessed once healthy, and a reboot stays on it; `rollback` returns to
/// A. (One VM for all of it: each OVMF boot is half a minute of CI.)
#[test]
fn disk_raw_boots_a_upgrades_to_b_keeps_config_and_identity_and_rolls_back() {
    let img = image::debian_media().expect("image");
    let next = image::debian_media_version("0.2.0").expect("image 0.2.0");
    let dir = bundle_dir("a-to-b");
    let (mut vm, status, _) = boot("upgrade", UefiBoot::Disk(img.disk()));
    assert_first_disk_boot(&vm, img, &status);
    let first_fp = status.tls_fingerprint.clone();
    let admin = vm.client(&first_fp, admin_key(), BOOT).expect("API");
    apply(&admin, &worker(1));
    wait_status(&admin, BOOT, |s| s.ready);

    for (b, want) in [
        (bundle(&dir, &next, "0.2.0", 1, None), "not signed"),
        (
            bundle(&dir, &next, "0.2.0", 1, Some(CONFIG_NAMESPACE)),
            "basalt-upgrade",
        ),
        (
            bundle(&dir, img, "0.1.0", 1, Some(UPGRADE_NAMESPACE)),
            "does not sort after the running 0.1.0",
        ),
    ] {
        let err = upgrade(&admin, &b).expect_err("refused");
        assert!(err.contains(want), "{}: {err}", b.display());
    }
    // Tampered: one byte of the root image changed after signing.
    let good = bundle(&dir, &next, "0.2.0", 1, Some(UPGRADE_NAMESPACE));
    let tampered = dir.join("tampered.bundle");
    let mut bytes = std::fs::read(&good).expect("bundle");
    let at = bytes.len() - 2048;
    bytes[at] ^= 0xff;
    std::fs::write(&tampered, bytes).expect("write");
    let err = upgrade(&admin, &tampered).expect_err("refused");
    assert!(err.contains("sha256") || err.contains("digest"), "{err}");
    let s: Status = admin.get("/v1/status").expect("status");
    assert_eq!(s.boot_id, status.boot_id, "no reboot");
    assert_eq!(
        s.boot.as_ref().map(|b| b.entry.clone()),
        Some(Some("basalt-0.1.0.efi".into()))
    );

    let r = upgrade(&admin, &good).expect("the signed bundle");
    assert_eq!(
        (r.version.as_str(), r.counter, r.slot.as_str()),
        ("0.2.0", 1, "B")
    );
    let (fp, admin, s) = blessed_on_b(&mut vm, 2);
    assert_eq!(fp, first_fp, "the TLS identity lives on STATE");
    assert_eq!(s.generation, 1, "the config came along in STATE");
    assert!(
        vm.console().contains("healthy: blessed basalt-0.2.0.efi"),
        "{}",
        vm.console_tail(30)
    );
    // The same counter again is refused; a reboot stays on B.
    let err = upgrade(&admin, &good).expect_err("counter 1 is installed");
    assert!(err.contains("counter"), "{err}");
    let _: serde_json::Value = admin
        .post("/v1/reboot", &serde_json::json!({}))
        .expect("reboot");
    let fp = vm.fingerprint(3, BOOT).expect("third boot");
    assert_eq!(fp, first_fp, "the TLS identity lives on STATE");
    let admin = vm.client(&fp, admin_key(), BOOT).expect("API");
    let s: Status = admin.get("/v1/status").expect("status");
    assert_eq!((s.generation, s.hostname.as_str()), (1, "worker-1"));
    assert_eq!(
        vm.console().matches("holds no ext4; making one").count(),
        1,
        "STATE is made once"
    );
    let b = s.boot.expect("boot");
    assert_eq!((b.slot.as_str(), b.assessment.as_str()), ("B", "blessed"));
    // The operator returns to 0.1.0 (`basaltctl rollback`): B's entry is
    // marked bad, so systemd-boot starts A's, and the node says why.
    let r: RollbackResponse = admin
        .post("/v1/rollback", &serde_json::json!({}))
        .expect("rollback");
    assert_eq!((r.slot.as_str(), r.rebooting), ("A", true), "{r:?}");
    let fp = vm.fingerprint(4, BOOT).expect("boots A again");
    let admin = vm.client(&fp, admin_key(), BOOT).expect("API on A");
    let s: Status = admin.get("/v1/status").expect("status");
    let b = s.boot.expect("boot");
    assert_eq!(
        (b.slot.as_str(), b.version.as_deref(), b.entry.as_deref()),
        ("A", Some("0.1.0"), Some("basalt-0.1.0.efi"))
    );
    let why = b.last_upgrade.unwrap_or_default();
    assert!(
        why.contains("rolled back from 0.2.0 by request"),
        "status says: {why}"
    );
    assert_eq!(s.generation, 1, "the config is still there");
    assert_eq!(vm.panic_line(), None);
    // Bundles are tens of MB each; CI machines are short of disk.
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_iso_boots_as_a_cd_under_ovmf() {
    let img = image::debian_media().expect("image");
    let (vm, _, _) = boot("iso-cd", UefiBoot::Cdrom(img.iso()));
    assert_booted_by_firmware(&vm, "console=ttyS0 panic=10");
    assert!(
        vm.console()
            .contains("switched into the read-only root /basalt/root.squashfs"),
        "the ISO's UKI carries the root image:\n{}",
        vm.console_tail(40)
    );
}

#[test]
fn the_iso_written_to_a_disk_boots_under_ovmf() {
    let img = image::debian_media().expect("image");
    let (vm, _, _) = boot("iso-disk", UefiBoot::Disk(img.iso()));
    assert_booted_by_firmware(&vm, "console=ttyS0 panic=10");
    assert!(
        vm.console()
            .contains("switched into the read-only root /basalt/root.squashfs"),
        "{}",
        vm.console_tail(40)
    );
}

/// A blank sparse file of `len` bytes under the target dir, for a VM disk.
fn blank_disk(name: &str, len: u64) -> std::path::PathBuf {
    let path = image::target_dir().join("qemu-images").join(name);
    let _ = std::fs::remove_file(&path);
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(len))
        .expect("a blank disk");
    path
}

/// Signs and applies `doc` for an install; the node's refusal as an error.
fn apply_install(c: &NodeClient, doc: &str, dry_run: bool) -> Result<ApplyResponse, String> {
    c.post(
        "/v1/apply",
        &ApplyRequest {
            config: doc.to_string(),
            signatures: sshsig::sign(&admin_key(), CONFIG_NAMESPACE, doc.as_bytes()),
            mode: ApplyMode::Auto,
            dry_run,
            try_timeout_secs: None,
        },
    )
    .map_err(|e| e.to_string())
}

/// The installer: the ISO boots (a blank disk does not); beside the target
/// sits a decoy of the same size, first on the bus (`vda`). A selector that
/// matches no disk, and one that matches both, are refused with the disks
/// listed; one that names the target by serial writes it (`vdb`), and the
/// VM comes back from it as the same node with the same config. The decoy
/// is still all zeros.
#[test]
fn the_iso_installs_to_the_disk_its_selector_matches_and_the_node_comes_back_from_it() {
    let img = image::debian_media().expect("image");
    let disk = blank_disk("iso-install-disk.raw", 4 << 30);
    let decoy = blank_disk("iso-install-decoy.raw", 4 << 30);
    let (mut vm, status, _) = boot_with(
        "iso-install",
        VmOptions {
            uefi: Some(UefiBoot::Installer {
                iso: img.iso(),
                disk: disk.clone(),
            }),
            boot_serial: Some("basalt-target".into()),
            serial_disks: vec![SerialDisk {
                file: decoy.clone(),
                serial: "basalt-decoy".into(),
            }],
            ..VmOptions::default()
        },
    );
    assert!(
        vm.console()
            .contains("installer: a config with [machine.install]"),
        "{}",
        vm.console_tail(30)
    );
    assert_eq!(status.boot, None, "the ISO is not a disk boot");
    let admin = vm
        .client(&status.tls_fingerprint, admin_key(), BOOT)
        .expect("API");
    let install = |selector: &str| {
        format!(
            "{}\n[machine.install]\n[machine.install.selector]\n{selector}",
            worker(1)
        )
    };
    let seen = [
        "/dev/vda: 4.00 GiB (4294967296 B), type virtio, model none, serial \"basalt-decoy\", wwid none",
        "/dev/vdb: 4.00 GiB (4294967296 B), type virtio, model none, serial \"basalt-target\", wwid none",
    ];
    let err = apply_install(
        &admin,
        &install("serial = \"no-such-disk\"\nsize = \">= 3GiB\"\n"),
        false,
    )
    .expect_err("no disk has that serial");
    assert_eq!(
        err,
        format!(
            "409: machine.install.selector: no disk matches (size >= 3GiB, serial = \"no-such-disk\"); the disks here: {}",
            seen.join("; ")
        )
    );
    let err =
        apply_install(&admin, &install("size = \">= 3GiB\"\n"), false).expect_err("two match");
    assert_eq!(
        err,
        format!(
            "409: machine.install.selector: 2 disks match (size >= 3GiB) and an install needs exactly one; add `serial` or `wwid` to say which: {}",
            seen.join("; ")
        )
    );
    let s: Status = admin.get("/v1/status").expect("status");
    assert_eq!(s.generation, 0, "a refused install applies nothing");
    let target = install("serial = \"basalt-target\"\nsize = \">= 3GiB\"\n");
    let r = apply_install(&admin, &target, true).expect("a dry run");
    assert_eq!(
        r.plan.last().map(String::as_str),
        Some(
            "would install to /dev/vdb (matched by size >= 3GiB, serial = \"basalt-target\") (reboot into it)"
        ),
        "{:?}",
        r.plan
    );
    let r = apply_install(&admin, &target, false).expect("apply with machine.install.selector");
    assert!(r.reboot_required, "{r:?}");
    assert!(
        r.plan.iter().any(|p| p.starts_with(
            "installed to /dev/vdb (matched by size >= 3GiB, serial = \"basalt-target\"): slot A"
        )),
        "{:?}",
        r.plan
    );
    let fp = vm.fingerprint(2, BOOT).expect("boots from the disk");
    assert_eq!(
        fp, status.tls_fingerprint,
        "the identity was installed with the config"
    );
    let admin = vm
        .client(&fp, admin_key(), BOOT)
        .expect("API from the disk");
    let s: Status = admin.get("/v1/status").expect("status");
    assert_eq!((s.generation, s.hostname.as_str()), (1, "worker-1"));
    let b = s.boot.expect("a disk boot now");
    assert_eq!(
        (b.disk.as_str(), b.slot.as_str(), b.assessment.as_str()),
        ("/dev/vdb", "A", "blessed")
    );
    assert!(
        vm.console()
            .contains("switched into the read-only root: slot A (/dev/vdb2) of /dev/vdb"),
        "{}",
        vm.console_tail(30)
    );
    assert_eq!(vm.panic_line(), None);
    drop(vm);
    assert_all_zeros(&decoy);
    let _ = std::fs::remove_file(&disk);
    let _ = std::fs::remove_file(&decoy);
}

/// Every byte of the file at `path` is zero.
fn assert_all_zeros(path: &std::path::Path) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
            panic!("{} has data at byte {}", path.display(), at + i as u64);
        }
        at += n as u64;
    }
    assert_eq!(at, 4 << 30, "{} was read whole", path.display());
}

/// An upgrade that never becomes healthy, built on purpose: a correctly
/// signed bundle whose UKI names a root image the bundle does not carry
/// (0.3.0's UKI, 0.1.0's root). Its machined cannot find its root and
/// reboots; systemd-boot tries it three times, then falls back to 0.1.0,
/// which says in `status` what happened.
#[test]
fn an_upgrade_that_never_becomes_healthy_rolls_back_by_itself() {
    let img = image::debian_media().expect("image");
    let broken = image::debian_media_version("0.3.0").expect("image 0.3.0");
    let dir = bundle_dir("never-healthy");
    let (mut vm, status, _) = boot("rollback", UefiBoot::Disk(img.disk()));
    let admin = vm
        .client(&status.tls_fingerprint, admin_key(), BOOT)
        .expect("API");
    let b = bundle_of(&dir, &broken, img, "0.3.0", 5, Some(UPGRADE_NAMESPACE));
    let r = upgrade(&admin, &b).expect("a signed bundle is accepted");
    assert_eq!(r.version, "0.3.0");
    // Three failed tries, then the old entry: allow each a full OVMF boot.
    let fp = vm
        .fingerprint(2, Duration::from_secs(900))
        .expect("back on 0.1.0");
    assert_eq!(fp, status.tls_fingerprint);
    let console = vm.console();
    let tries = console
        .matches("basalt: FATAL: root slot: no disk has a partition with GUID")
        .count();
    assert_eq!(
        tries,
        3,
        "systemd-boot tries a new entry three times:\n{}",
        vm.console_tail(60)
    );
    let admin = vm.client(&fp, admin_key(), BOOT).expect("API");
    let s: Status = admin.get("/v1/status").expect("status");
    let b = s.boot.expect("boot");
    assert_eq!(
        (b.slot.as_str(), b.entry.as_deref()),
        ("A", Some("basalt-0.1.0.efi"))
    );
    let said = b.last_upgrade.unwrap_or_default();
    assert!(
        said.starts_with("upgrade to 0.3.0 failed (3 boots tried, entry basalt-0.3.0+0-3.efi); rolled back to 0.1.0"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Power lost while an upgrade is written (QEMU killed as machined writes
/// slot B): the disk still boots 0.1.0 from slot A, and the same upgrade
/// can be written again.
#[test]
fn killing_the_machine_while_an_upgrade_is_written_leaves_a_booting() {
    let img = image::debian_media().expect("image");
    let next = image::debian_media_version("0.2.0").expect("image 0.2.0");
    let dir = bundle_dir("killed");
    let disk = image::target_dir()
        .join("qemu-images")
        .join("killed-disk.raw");
    let _ = std::fs::remove_file(&disk);
    qemu_tests::vm::sparse_copy(&img.disk(), &disk, qemu_tests::vm::DISK_GROWTH)
        .expect("disk copy");
    let good = bundle(&dir, &next, "0.2.0", 1, Some(UPGRADE_NAMESPACE));

    let (mut vm, status, _) = boot("killed", UefiBoot::DiskInPlace(disk.clone()));
    let fp = status.tls_fingerprint.clone();
    let admin = vm.client(&fp, admin_key(), BOOT).expect("API");
    drop(admin);
    let sender = vm.client(&fp, admin_key(), BOOT).expect("API");
    let sending = {
        let good = good.clone();
        std::thread::spawn(move || upgrade(&sender, &good))
    };
    vm.wait_console("bytes of root image to slot B", 1, BOOT)
        .expect("machined starts writing slot B");
    let console_path = vm.console_path.clone();
    drop(vm);
    let console = std::fs::read_to_string(&console_path).expect("the killed VM's console");
    assert!(
        !console.contains("upgrade to 0.2.0 written"),
        "QEMU was killed too late: the upgrade was complete"
    );
    assert!(
        sending.join().expect("upload thread").is_err(),
        "the upload never got an answer"
    );

    let (mut vm, s, _) = boot("killed-again", UefiBoot::DiskInPlace(disk.clone()));
    assert!(
        !vm.console().contains("upgrade to 0.2.0 written"),
        "this boot wrote nothing"
    );
    assert!(
        vm.console().contains(
            "upgrade spool: removed /var/lib/basalt/upgrade-spool/bundle.tar, left by an upload cut off"
        ),
        "the cut-off upload's spool file is gone at boot:\n{}",
        vm.console_tail(30)
    );
    assert_eq!(s.tls_fingerprint, fp, "the same node");
    let b = s.boot.expect("boot");
    assert_eq!(
        (b.slot.as_str(), b.entry.as_deref(), b.version.as_deref()),
        ("A", Some("basalt-0.1.0.efi"), Some("0.1.0"))
    );
    let admin = vm.client(&fp, admin_key(), BOOT).expect("API");
    let r: UpgradeResponse = admin
        .post_file(
            &Route::Upgrade { stage: true },
            &good,
            Duration::from_secs(600),
        )
        .expect("the same upgrade, written again (staged)");
    assert_eq!((r.slot.as_str(), r.staged), ("B", true));
    // Staged: the node keeps running A until something reboots it (an
    // unstaged upgrade reboots 2 s after its answer).
    std::thread::sleep(Duration::from_secs(8));
    let now: Status = admin.get("/v1/status").expect("status after staging");
    assert_eq!(now.boot_id, s.boot_id, "a staged upgrade does not reboot");
    let _: serde_json::Value = admin
        .post("/v1/reboot", &serde_json::json!({}))
        .expect("reboot");
    blessed_on_b(&mut vm, 2);
    drop(vm);
    let _ = std::fs::remove_file(&disk);
    let _ = std::fs::remove_dir_all(&dir);
}

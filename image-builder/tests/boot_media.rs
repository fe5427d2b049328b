//! The bootable outputs (uki.efi, disk.raw, basalt.iso) of a small profile,
//! read back by the tools that know those formats: objdump/objcopy
//! (binutils) for the PE sections, sgdisk for the GPT, fsck.fat and mtools
//! for the ESP, unsquashfs for the root slot, xorriso for El Torito, GNU
//! cpio and zstd for the initramfs and the installer's payload. Booting them
//! is qemu-tests' job (tests/disk_boot.rs).

mod common;

use basalt_api::disk_layout::{self, root_slot_guid};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const ALL: &str = r#"["kernel", "initramfs", "rootfs", "uki", "disk", "iso"]"#;
const SLOT_MIB: u64 = 64;

fn media_profile(dir: &Path) -> PathBuf {
    mini_profile(
        dir,
        &format!("[disk]\nslot_size_mib = {SLOT_MIB}\n\n[output]\nartifacts = {ALL}\n"),
    )
}

/// The profile with `version = "${BASALT_IMAGE_VERSION:-…}"` at the top.
fn versioned(profile: &Path) -> PathBuf {
    let text = std::fs::read_to_string(profile).unwrap();
    let text = text.replacen(
        "name = \"mini\"\n",
        "name = \"mini\"\nversion = \"${BASALT_IMAGE_VERSION:-0.0.1}\"\n",
        1,
    );
    let p = profile.with_file_name("versioned.toml");
    std::fs::write(&p, text).unwrap();
    p
}

struct Built {
    dir: PathBuf,
    out: PathBuf,
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let dir = scratch("media-");
        let out = dir.join("out");
        build_ok(
            cli().env("BASALT_IMAGE_VERSION", "7.1.0"),
            &versioned(&media_profile(&dir)),
            &out,
        );
        Built { dir, out }
    })
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let o = sh(cmd, args);
    assert!(o.status.success(), "{cmd} {args:?}: {}", stderr(&o));
    stdout(&o)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// `objcopy -O binary --only-section=<name>`: the section's bytes.
fn section(uki: &Path, name: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!("section{name}"));
    ok(
        "objcopy",
        &[
            "-O",
            "binary",
            &format!("--only-section={name}"),
            s(uki),
            s(&out),
        ],
    );
    std::fs::read(&out).unwrap()
}

/// (size, vma) of each section `objdump -h` lists, by name.
fn objdump_sections(uki: &Path) -> Vec<(String, u64, u64)> {
    ok("objdump", &["-h", s(uki)])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 7 && f[0].parse::<u32>().is_ok()).then(|| {
                (
                    f[1].to_string(),
                    u64::from_str_radix(f[2], 16).unwrap(),
                    u64::from_str_radix(f[3], 16).unwrap(),
                )
            })
        })
        .collect()
}

#[test]
fn the_uki_holds_our_sections_after_the_stubs_as_binutils_reads_them() {
    let b = built();
    let uki = b.out.join("uki.efi");
    let listed = objdump_sections(&uki);
    let names: Vec<&str> = listed.iter().map(|(n, _, _)| n.as_str()).collect();
    let n = names.len();
    assert_eq!(
        &names[n - 4..],
        [".osrel", ".cmdline", ".initrd", ".linux"],
        "{listed:?}"
    );
    assert!(names.contains(&".sdmagic"), "the stub's own sections stay");
    // Each VMA is past the previous section and on the stub's 0x200 grid.
    for w in listed.windows(2) {
        let (prev, cur) = (&w[0], &w[1]);
        assert!(cur.2 >= prev.2 + prev.1, "{prev:?} then {cur:?}");
    }
    for (_, _, vma) in &listed[n - 4..] {
        assert_eq!(vma % 0x200, 0);
    }

    let kernel = std::fs::read(b.out.join("vmlinuz")).unwrap();
    let linux = section(&uki, ".linux", &b.dir);
    assert!(linux == kernel, ".linux is the kernel, byte for byte");
    assert_eq!(listed[n - 1].1, kernel.len() as u64);

    let root = std::fs::read(b.out.join("root.squashfs")).unwrap();
    let cmdline = String::from_utf8(section(&uki, ".cmdline", &b.dir)).unwrap();
    assert_eq!(
        cmdline,
        format!(
            "console=ttyS0 panic=10 {}{}",
            disk_layout::ROOT_ARG,
            root_slot_guid(&sha256(&root))
        )
    );
    let osrel = String::from_utf8(section(&uki, ".osrel", &b.dir)).unwrap();
    assert!(osrel.contains("\nID=basalt\n"), "{osrel}");
    assert!(osrel.contains("\nVERSION_ID=7.1.0\n"), "{osrel}");
    assert!(osrel.contains("\nIMAGE_VERSION=7.1.0\n"), "{osrel}");

    // The disk's initramfs: /init and /etc/basalt, but no root image.
    let initrd = section(&uki, ".initrd", &b.dir);
    assert_eq!(listed[n - 2].1, initrd.len() as u64);
    let listing = cpio_list(&initrd, &b.dir.join("disk-initrd"));
    assert!(listing.iter().any(|p| p == "init"), "{listing:?}");
    assert!(listing.iter().any(|p| p == "etc/basalt/trust.toml"));
    assert!(
        !listing.iter().any(|p| p.contains("root.squashfs")),
        "{listing:?}"
    );
}

/// GNU cpio's listing of one (zstd-compressed or plain) newc archive.
fn cpio_list(data: &[u8], tmp: &Path) -> Vec<String> {
    std::fs::write(tmp, data).unwrap();
    let plain = tmp.with_extension("cpio");
    let text = if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ok("zstd", &["-dqf", s(tmp), "-o", s(&plain)]);
        plain
    } else {
        tmp.to_path_buf()
    };
    let o = Command::new("cpio")
        .args(["-t", "--quiet", "-F", s(&text)])
        .output()
        .unwrap();
    assert!(o.status.success(), "cpio -t: {}", stderr(&o));
    stdout(&o).lines().map(str::to_string).collect()
}

#[test]
fn the_disk_has_a_clean_gpt_the_esp_and_the_root_image_in_slot_a() {
    let b = built();
    let disk = b.out.join("disk.raw");
    let v = ok("sgdisk", &["-v", s(&disk)]);
    assert!(v.contains("No problems found"), "{v}");
    let p = ok("sgdisk", &["-p", s(&disk)]);
    for name in ["EFI", "BASALT-A", "BASALT-B", "STATE"] {
        assert!(p.contains(name), "{p}");
    }
    let root = std::fs::read(b.out.join("root.squashfs")).unwrap();
    let info = ok("sgdisk", &["-i", "2", s(&disk)]);
    let guid = root_slot_guid(&sha256(&root)).to_string();
    assert!(
        info.contains(&guid),
        "slot A is named by the root image: {info}"
    );

    // Sparse: far less allocated than its length.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&disk).unwrap();
    assert!(
        md.blocks() * 512 < md.len() / 4,
        "{} bytes allocated of {}",
        md.blocks() * 512,
        md.len()
    );

    let data = std::fs::read(&disk).unwrap();
    let esp_at = disk_layout::ALIGN as usize;
    let slot_a = esp_at + disk_layout::ESP_SIZE as usize;
    assert!(data[slot_a..slot_a + root.len()] == root[..]);
    assert!(
        data[slot_a + root.len()..slot_a + (SLOT_MIB << 20) as usize]
            .iter()
            .all(|b| *b == 0)
    );
    let extract = b.dir.join("slot-a.img");
    std::fs::write(&extract, &data[slot_a..slot_a + root.len()]).unwrap();
    let sq = ok("unsquashfs", &["-s", s(&extract)]);
    assert!(sq.contains("Found a valid SQUASHFS"), "{sq}");

    let esp = b.dir.join("esp.img");
    std::fs::write(&esp, &data[esp_at..slot_a]).unwrap();
    check_esp(&esp, &b.out.join("uki.efi"), "basalt-7.1.0.efi", &b.dir);
}

/// fsck.fat finds nothing; mtools reads back systemd-boot, loader.conf and
/// the UKI, byte for byte.
fn check_esp(esp: &Path, uki: &Path, uki_name: &str, dir: &Path) {
    let fsck = sh("fsck.fat", &["-n", s(esp)]);
    assert!(
        fsck.status.success(),
        "fsck.fat -n: {}{}",
        stdout(&fsck),
        stderr(&fsck)
    );
    // Nothing but its banner and the summary: any finding adds lines.
    let out = stdout(&fsck);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() == 2 && lines[1].contains(" files, "),
        "fsck.fat -n found problems:\n{out}"
    );
    let listing = ok("mdir", &["-i", s(esp), "-/", "-b", "::"]);
    assert!(
        listing.contains(&format!("::/EFI/Linux/{uki_name}")),
        "{listing}"
    );
    let conf = ok("mtype", &["-i", s(esp), "::/loader/loader.conf"]);
    assert_eq!(conf, disk_layout::LOADER_CONF);
    for (inner, host) in [
        (
            "::/EFI/BOOT/BOOTX64.EFI".to_string(),
            PathBuf::from("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"),
        ),
        (format!("::/EFI/Linux/{uki_name}"), uki.to_path_buf()),
    ] {
        let copy = dir.join("mcopy.out");
        let _ = std::fs::remove_file(&copy);
        ok("mcopy", &["-i", s(esp), &inner, s(&copy)]);
        assert!(
            std::fs::read(&copy).unwrap() == std::fs::read(&host).unwrap(),
            "{inner} differs from {}",
            host.display()
        );
    }
}

#[test]
fn the_iso_boots_by_uefi_el_torito_and_carries_root_and_installer_payload() {
    let b = built();
    let iso = b.out.join("basalt.iso");
    let report = sh(
        "xorriso",
        &["-indev", s(&iso), "-report_el_torito", "plain"],
    );
    let text = stdout(&report) + &stderr(&report);
    assert!(
        text.lines()
            .any(|l| l.starts_with("El Torito boot img") && l.contains("UEFI")),
        "{text}"
    );
    // The appended ESP: MBR partition 2, type 0xEF.
    let data = std::fs::read(&iso).unwrap();
    let entry = &data[446 + 16..446 + 32];
    assert_eq!(entry[4], 0xef, "MBR partition 2 type");
    let start = u32::from_le_bytes(entry[8..12].try_into().unwrap()) as usize * 512;
    let len = u32::from_le_bytes(entry[12..16].try_into().unwrap()) as usize * 512;
    let esp = b.dir.join("iso-esp.img");
    std::fs::write(&esp, &data[start..start + len]).unwrap();
    // The ISO's UKI, extracted, then checked like the disk's.
    let uki = b.dir.join("iso-uki.efi");
    ok(
        "mcopy",
        &["-i", s(&esp), "::/EFI/Linux/basalt-7.1.0.efi", s(&uki)],
    );
    check_esp(&esp, &uki, "basalt-7.1.0.efi", &b.dir);
    let cmdline = String::from_utf8(section(&uki, ".cmdline", &b.dir)).unwrap();
    assert_eq!(cmdline, "console=ttyS0 panic=10", "no root slot on the ISO");

    // .initrd = a plain cpio with the installer's payload, then the full
    // initramfs (root image inside) exactly as the initramfs output.
    let initrd = section(&uki, ".initrd", &b.dir);
    let full = std::fs::read(b.out.join("initramfs.cpio.zst")).unwrap();
    assert!(initrd.ends_with(&full), "the full initramfs closes .initrd");
    let head = &initrd[..initrd.len() - full.len()];
    let listing = cpio_list(head, &b.dir.join("iso-head"));
    assert!(
        listing
            .iter()
            .any(|p| p == "basalt/install/disk-head.img.zst"),
        "{listing:?}"
    );
    let x = b.dir.join("x");
    std::fs::create_dir_all(&x).unwrap();
    let o = Command::new("cpio")
        .args(["-idm", "--quiet", "-F", s(&b.dir.join("iso-head"))])
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let payload = x.join("basalt/install/disk-head.img.zst");
    let plain = b.dir.join("disk-head.img");
    ok("zstd", &["-dqf", s(&payload), "-o", s(&plain)]);
    let disk = std::fs::read(b.out.join("disk.raw")).unwrap();
    let slot_a = (disk_layout::ALIGN + disk_layout::ESP_SIZE) as usize;
    assert!(
        std::fs::read(&plain).unwrap() == disk[..slot_a],
        "the payload is disk.raw up to slot A"
    );
}

#[test]
fn two_builds_are_byte_identical_and_versions_name_the_uki() {
    let b = built();
    let again = b.dir.join("again");
    build_ok(
        cli().env("BASALT_IMAGE_VERSION", "7.1.0"),
        &versioned(&media_profile(&b.dir)),
        &again,
    );
    for f in ["uki.efi", "disk.raw", "basalt.iso", "manifest.json"] {
        assert!(
            std::fs::read(b.out.join(f)).unwrap() == std::fs::read(again.join(f)).unwrap(),
            "{f} differs between two builds"
        );
    }
    let m = manifest(&b.out);
    for (name, kind) in [
        ("uki.efi", "uki"),
        ("disk.raw", "disk"),
        ("basalt.iso", "iso"),
    ] {
        let rec = m.outputs.iter().find(|o| o.name == name).expect(name);
        assert_eq!(rec.kind, kind);
        assert_eq!(rec.size, std::fs::metadata(b.out.join(name)).unwrap().len());
    }
    let verify = run(Command::new(bin()).arg("verify").arg(&b.out));
    assert!(verify.status.success(), "{}", stdout(&verify));

    // Another version: another .osrel and UKI file name.
    let v2 = b.dir.join("v2");
    build_ok(
        cli().env("BASALT_IMAGE_VERSION", "7.2.0"),
        &versioned(&media_profile(&b.dir)),
        &v2,
    );
    let osrel = String::from_utf8(section(&v2.join("uki.efi"), ".osrel", &b.dir)).unwrap();
    assert!(osrel.contains("\nVERSION_ID=7.2.0\n"), "{osrel}");
    let disk = std::fs::read(v2.join("disk.raw")).unwrap();
    let esp = b.dir.join("v2-esp.img");
    let at = disk_layout::ALIGN as usize;
    std::fs::write(&esp, &disk[at..at + disk_layout::ESP_SIZE as usize]).unwrap();
    check_esp(&esp, &v2.join("uki.efi"), "basalt-7.2.0.efi", &b.dir);
}

#[test]
fn bad_versions_and_oversized_roots_are_refused_clearly() {
    let dir = scratch("media-bad-");
    let profile = versioned(&media_profile(&dir));
    // (An empty value takes the `:-` default, as in a shell.)
    for bad in ["1+2", "-1", "a b", "x/y"] {
        let o = run(cli().env("BASALT_IMAGE_VERSION", bad).args([
            "build",
            "--profile",
            s(&profile),
            "--out",
            s(&dir.join("o")),
        ]));
        assert!(!o.status.success(), "version {bad:?} was accepted");
        assert!(stderr(&o).contains("version"), "{}", stderr(&o));
        assert!(!dir.join("o").exists());
    }
    // A kernel in the root image makes it larger than a 1 MiB slot.
    let big = mini_profile(
        &dir,
        &format!(
            "[[files]]\nsource = \"/boot/vmlinuz-*\"\ntarget = \"/boot/\"\n\n[disk]\nslot_size_mib = 1\n\n[output]\nartifacts = {ALL}\n"
        ),
    );
    let o = run(cli().args(["build", "--profile", s(&big), "--out", s(&dir.join("o"))]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("larger than a root slot"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("o").exists(), "a failed build leaves nothing");
}

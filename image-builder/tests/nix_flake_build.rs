//! The contract between the Nix flake and `image-builder`, proven with a real, offline Nix 2.8
//! build, plus the checks CI can make on the flake without nixpkgs.
//!
//! `nix/image.nix` is the node image derivation the flake's `node-image` uses: image-builder is
//! the builder itself, the profile comes from `nix/profile.nix`, and the payload's closure comes
//! from `closureInfo` or `exportReferencesGraph`. Both files use builtins only, so here
//! `nix/tests/contract.nix` builds that very derivation in a private store, with a statically
//! linked image-builder (`-C target-feature=+crt-static`, built once by cargo and imported into
//! the store) as the builder, a stand-in kernel, and a three-path payload with references. Then
//! Nix, unsquashfs, cpio and zstd check the result: manifest, `image-builder verify`, store paths
//! in the root image as Nix built them, `/init` and modules in the initramfs, three closure
//! routes giving the same bytes, and `nix-build --check` rebuilding bit for bit.
//!
//! The same derivation also builds the flake's `node-disk` (uki.efi + disk.raw) and `node-iso`
//! (basalt.iso) with the arguments `nix/node-image.nix` gives it: systemd-stub and systemd-boot
//! from a systemd store path (here the host's systemd-boot-efi files at nixpkgs' layout), a
//! version, and xorriso's bin directory as the builder's PATH. sgdisk, mtools, objdump/objcopy
//! and xorriso read those back.
//!
//! Needs root and Debian's `nix-bin` (chroot-store builds run in Nix's sandbox), plus
//! squashfs-tools, cpio, zstd, systemd-boot-efi, gdisk, mtools, binutils and xorriso:
//! `scripts/install-deps`. Nothing outside the fixture directory (under cargo's target tmp dir)
//! is written but the static build in the target dir.

mod nix_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use image_builder::manifest::Manifest;
use image_builder::nix::{ClosureFormat, StorePath, parse_store_path, read_closure_file};
use nix_support::{describe_tree, make_writable, nix_command, run};
use sha2::{Digest, Sha256};

const KERNEL_RELEASE: &str = "6.1.0-basalt-contract";
/// Debian's systemd-boot-efi: the stand-in for nixpkgs' `${systemd}/lib/systemd/boot/efi`.
const HOST_EFI: &str = "/usr/lib/systemd/boot/efi";
const EFI_STUB: &str = "linuxx64.efi.stub";
const SYSTEMD_BOOT: &str = "systemd-bootx64.efi";
/// `version` of the disk and iso attributes in nix/tests/contract.nix (not image-builder's own,
/// so a profile that dropped it would show).
const MEDIA_VERSION: &str = "7.3.1";
/// Their `slotSizeMib`.
const MEDIA_SLOT_MIB: u64 = 16;
const SOURCE_DATE_EPOCH: u32 = 1_700_000_000;
const NIX_CONF: &str = "build-users-group =\nsubstituters =\nsandbox = false\n\
                        extra-sandbox-paths = /bin /lib /lib64 /usr\n\
                        experimental-features = nix-command flakes\n";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("image-builder sits in the workspace")
        .to_path_buf()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The admin key baked into the contract images (the public half only matters).
fn admin_line() -> String {
    basalt_api::sshkey::PrivateKey::from_seed(&[0x4e; 32], "nix-contract-admin")
        .public()
        .to_openssh()
}

// ---- the statically linked image-builder --------------------------------------------------

/// `cargo build --release -p image-builder --target <host triple>` with `+crt-static`, into the
/// target dir these tests were built in (so cargo's own freshness check is the cache: a second
/// run costs a second). `--target` keeps the flag off build scripts and proc macros.
fn static_image_builder() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("CARGO_TARGET_TMPDIR is <target>/tmp")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let started = std::time::Instant::now();
        let out = Command::new(&cargo)
            .current_dir(repo_root())
            .args(["build", "--release", "--locked", "-p", "image-builder"])
            .args(["--target", &triple])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cargo:?}: {e}"));
        assert!(
            out.status.success(),
            "static build of image-builder failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "nix_flake_build: static image-builder ready in {:.1?}",
            started.elapsed()
        );
        let bin = target_dir.join(&triple).join("release/image-builder");
        let data = fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let elf = goblin::elf::Elf::parse(&data).expect("image-builder is an ELF file");
        assert!(
            elf.interpreter.is_none() && elf.libraries.is_empty(),
            "{} is not statically linked (interpreter {:?}, libraries {:?})",
            bin.display(),
            elf.interpreter,
            elf.libraries
        );
        bin
    })
}

// ---- the private store and the contract build -----------------------------------------------

struct Contract {
    dir: PathBuf,
    store_root: PathBuf,
    /// A copy of the static binary, imported by `builtins.path`.
    image_builder: PathBuf,
    kernel_src: PathBuf,
    /// Holds lib/systemd/boot/efi/ (copies of [`HOST_EFI`]'s stub and systemd-boot).
    systemd_src: PathBuf,
    /// `nix-build` output of each attribute of `nix/tests/contract.nix` built up front.
    out: BTreeMap<&'static str, StorePath>,
}

/// Built up front, in one `nix-build` run.
const ATTRS: &[&str] = &[
    "data",
    "lib",
    "app",
    "closure-info",
    "image-graph",
    "image-registration",
    "image-store-paths",
    "image-disk",
    "image-iso",
];

impl Contract {
    fn store_uri(&self) -> String {
        format!("local?root={}", self.store_root.display())
    }

    fn physical(&self, p: &StorePath) -> PathBuf {
        self.store_root.join("nix/store").join(p.to_basename())
    }

    fn output(&self, attr: &str) -> PathBuf {
        self.physical(&self.out[attr])
    }

    /// `nix-build nix/tests/contract.nix` with the fixture's arguments; `extra` goes first.
    fn nix_build(&self, extra: &[&str], attrs: &[&str]) -> Command {
        let mut c = nix_command(&self.dir, "nix-build");
        c.args(["--store", &self.store_uri(), "--no-out-link"])
            .args(extra)
            .arg(repo_root().join("nix/tests/contract.nix"))
            .args(["--arg", "imageBuilderSrc"])
            .arg(path_expr(
                self.image_builder
                    .parent()
                    .and_then(Path::parent)
                    .expect("<dir>/bin/image-builder"),
            ))
            .args(["--arg", "kernelSrc"])
            .arg(path_expr(&self.kernel_src))
            .args(["--argstr", "kernelRelease", KERNEL_RELEASE])
            .args(["--arg", "systemdSrc"])
            .arg(path_expr(&self.systemd_src))
            .args(["--argstr", "admin", &admin_line()])
            .args(["--arg", "sourceDateEpoch", &SOURCE_DATE_EPOCH.to_string()]);
        for a in attrs {
            c.args(["-A", a]);
        }
        c
    }

    fn nix_store(&self, args: &[&str]) -> String {
        let mut c = nix_command(&self.dir, "nix-store");
        c.args(["--store", &self.store_uri()]).args(args);
        run(c)
    }

    /// `nix-store -qR <app>`, sorted: the payload's closure as Nix knows it.
    fn app_closure(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .nix_store(&["-qR", &self.out["app"].to_string()])
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }
}

/// A Nix expression for an absolute path, safe for any characters in it.
fn path_expr(p: &Path) -> String {
    let s = p.to_str().expect("UTF-8 path");
    format!("/. + {}", serde_json::to_string(s).expect("json string"))
}

fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(build_contract)
}

fn build_contract() -> Contract {
    for tool in ["nix-build", "nix-store", "nix-instantiate"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "`{tool}` is missing: run scripts/install-deps (nix-bin)"
        );
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nix-flake-build");
    if dir.exists() {
        make_writable(&dir);
        fs::remove_dir_all(&dir).expect("remove the previous fixture");
    }
    for sub in ["conf", "home", "image-builder/bin"] {
        fs::create_dir_all(dir.join(sub)).expect("fixture dirs");
    }
    fs::write(dir.join("conf/nix.conf"), NIX_CONF).expect("nix.conf");
    let image_builder = dir.join("image-builder/bin/image-builder");
    // The release profile keeps line tables; without them the binary is a fifth of the size,
    // which is what the images (it is /init and a store path in them) are packed from.
    let strip = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(&image_builder)
        .arg(static_image_builder())
        .status()
        .expect("strip (binutils; scripts/install-deps)");
    assert!(strip.success(), "strip failed");
    let kernel_src = dir.join("kernel");
    write_kernel_stand_in(&kernel_src);
    let systemd_src = dir.join("systemd");
    let efi = systemd_src.join("lib/systemd/boot/efi");
    fs::create_dir_all(&efi).expect("systemd stand-in dirs");
    for f in [EFI_STUB, SYSTEMD_BOOT] {
        let host = Path::new(HOST_EFI).join(f);
        fs::copy(&host, efi.join(f)).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (systemd-boot-efi; scripts/install-deps)",
                host.display()
            )
        });
    }

    let mut contract = Contract {
        store_root: dir.join("root"),
        dir,
        image_builder,
        kernel_src,
        systemd_src,
        out: BTreeMap::new(),
    };
    let started = std::time::Instant::now();
    let printed = run(contract.nix_build(&[], ATTRS));
    let paths: Vec<&str> = printed.lines().collect();
    assert_eq!(paths.len(), ATTRS.len(), "nix-build printed {printed}");
    for (attr, p) in ATTRS.iter().zip(paths) {
        let p = parse_store_path(p).unwrap_or_else(|e| panic!("{attr}: {p}: {e}"));
        contract.out.insert(attr, p);
    }
    // The imported binary is a source, not a derivation: find it in app's closure.
    let imported = contract
        .app_closure()
        .into_iter()
        .find(|p| p.ends_with("-image-builder-static"))
        .expect("app refers to the imported image-builder");
    let imported = parse_store_path(&imported).expect("store path");
    contract.out.insert("image-builder", imported);
    eprintln!(
        "nix_flake_build: contract built by Nix in {:.1?}",
        started.elapsed()
    );
    contract
}

/// A file shaped like an x86 bzImage as far as image-builder reads one (the setup header's
/// `HdrS` magic and kernel_version pointer), and a depmod tree with a dependency.
fn write_kernel_stand_in(dir: &Path) {
    let mut image = vec![0u8; 0x800];
    image[0x202..0x206].copy_from_slice(b"HdrS");
    let at = 0x300usize;
    let pointer = u16::try_from(at - 0x200).expect("fits");
    image[0x20e..0x210].copy_from_slice(&pointer.to_le_bytes());
    let version = format!("{KERNEL_RELEASE} (nix@basalt) #1 SMP\0");
    image[at..at + version.len()].copy_from_slice(version.as_bytes());
    let modules = dir.join("lib/modules").join(KERNEL_RELEASE);
    fs::create_dir_all(modules.join("kernel/drivers/misc")).expect("modules dir");
    fs::create_dir_all(modules.join("kernel/lib")).expect("modules dir");
    fs::write(dir.join("bzImage"), image).expect("bzImage");
    fs::write(
        modules.join("modules.dep"),
        "kernel/drivers/misc/basalt-dummy.ko: kernel/lib/basalt_dep.ko\nkernel/lib/basalt_dep.ko:\n",
    )
    .expect("modules.dep");
    fs::write(
        modules.join("kernel/drivers/misc/basalt-dummy.ko"),
        "dummy module\n",
    )
    .expect("ko");
    fs::write(
        modules.join("kernel/lib/basalt_dep.ko"),
        "dependency module\n",
    )
    .expect("ko");
}

fn manifest(dir: &Path) -> Manifest {
    let text = fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json parses as image-builder's Manifest")
}

fn image_builder_cli(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .args(args)
        .arg(dir)
        .output()
        .expect("run image-builder")
}

/// `nix path-info`'s view: store path → (narHash SRI, narSize, references).
fn path_info(c: &Contract, root: &StorePath) -> BTreeMap<String, (String, u64, BTreeSet<String>)> {
    let mut cmd = nix_command(&c.dir, "nix");
    cmd.args(["--store", &c.store_uri(), "path-info", "--json", "-r"])
        .arg(root.to_string());
    nix_support::parse_path_info(&run(cmd))
}

// ---- the tests -------------------------------------------------------------------------------

#[test]
fn nix_builds_the_image_with_image_builder_as_the_builder() {
    let c = contract();
    let out = c.output("image-graph");
    let m = manifest(&out);
    assert_eq!(m.profile, "nix-contract");
    assert_eq!(m.source_date_epoch, SOURCE_DATE_EPOCH);
    assert_eq!(m.kernel_release, KERNEL_RELEASE);
    let names: Vec<&str> = m.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["initramfs.cpio.zst", "root.squashfs", "vmlinuz"]);
    for o in &m.outputs {
        let data = fs::read(out.join(&o.name)).expect("output file");
        assert_eq!(o.sha256, sha256_hex(&data), "{}", o.name);
        assert_eq!(o.size, data.len() as u64, "{}", o.name);
    }
    assert_eq!(
        fs::read(out.join("vmlinuz")).expect("vmlinuz"),
        fs::read(c.kernel_src.join("bzImage")).expect("bzImage")
    );

    // Every store path of the closure, with the NAR hash and size Nix itself records.
    let info = path_info(c, &c.out["app"]);
    let recorded: Vec<&str> = m.nix_inputs.iter().map(|i| i.store_path.as_str()).collect();
    assert_eq!(recorded, c.app_closure());
    assert_eq!(recorded.len(), 4, "app, lib, data, image-builder");
    for i in &m.nix_inputs {
        let (nar_hash, nar_size, _) = &info[&i.store_path];
        assert_eq!(&i.nar_hash, nar_hash, "{}", i.store_path);
        assert_eq!(i.nar_size, *nar_size, "{}", i.store_path);
    }

    // image-builder's own verify agrees, and does notice a changed byte.
    let ok = image_builder_cli(&["verify"], &out);
    assert!(
        ok.status.success(),
        "verify {}: {}{}",
        out.display(),
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let copy = tempfile::tempdir().expect("tempdir");
    for o in &m.outputs {
        fs::copy(out.join(&o.name), copy.path().join(&o.name)).expect("copy");
    }
    fs::copy(out.join("manifest.json"), copy.path().join("manifest.json")).expect("copy");
    let squashfs = copy.path().join("root.squashfs");
    let mut data = fs::read(&squashfs).expect("read");
    let last = data.len() - 1;
    data[last] ^= 0xff;
    make_writable(copy.path());
    fs::write(&squashfs, data).expect("write");
    let bad = image_builder_cli(&["verify"], copy.path());
    assert_eq!(
        bad.status.code(),
        Some(1),
        "verify must refuse a changed root.squashfs"
    );
}

#[test]
fn root_image_holds_the_store_paths_as_nix_built_them() {
    let c = contract();
    let out = c.output("image-graph");
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("root");
    let status = Command::new("unsquashfs")
        .args(["-no-xattrs", "-quiet", "-d"])
        .arg(&root)
        .arg(out.join("root.squashfs"))
        .stdout(Stdio::null())
        .status()
        .expect("unsquashfs (squashfs-tools; scripts/install-deps)");
    assert!(status.success(), "unsquashfs failed");
    for p in c.app_closure() {
        let p = parse_store_path(&p).expect("store path");
        let in_image = root.join("nix/store").join(p.to_basename());
        assert_eq!(
            describe_tree(&in_image),
            describe_tree(&c.physical(&p)),
            "{p} in the root image differs from the store"
        );
    }
    let app = c.out["app"].to_string();
    assert_eq!(
        fs::read_link(root.join("usr/bin/basalt-app")).expect("usr/bin/basalt-app link"),
        Path::new(&format!("{app}/bin/basalt-app"))
    );
    assert_eq!(
        fs::read_link(root.join("etc/app.conf")).expect("etc/app.conf link"),
        Path::new(&format!("{app}/etc/app.conf"))
    );
    // The executable behind the link is the static binary Nix ran as the builder.
    let image_builder = c.out["image-builder"].to_string();
    assert_eq!(
        fs::read_link(root.join(format!("{}/bin/basalt-app", &app[1..]))).expect("app link"),
        Path::new(&format!("{image_builder}/bin/image-builder"))
    );
    let trust = fs::read_to_string(root.join("etc/basalt/trust.toml")).expect("trust.toml");
    assert!(trust.contains(&admin_line()), "{trust}");
}

#[test]
fn initramfs_holds_init_and_modules_in_dependency_order() {
    let c = contract();
    let out = c.output("image-graph");
    let initramfs = out.join("initramfs.cpio.zst");
    // GNU cpio, not our reader, unpacks the archive (zstd -dc | cpio -idm):
    // the peer is the judge of what is in it.
    let unpacked_dir = tempfile::tempdir().expect("tempdir");
    let unpacked = unpacked_dir.path();
    let mut zstd = Command::new("zstd")
        .args(["-dc"])
        .arg(&initramfs)
        .stdout(Stdio::piped())
        .spawn()
        .expect("zstd (scripts/install-deps)");
    let cpio = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames", "-D"])
        .arg(unpacked)
        .stdin(zstd.stdout.take().expect("zstd stdout"))
        .output()
        .expect("cpio (scripts/install-deps)");
    assert!(
        zstd.wait().expect("wait for zstd").success(),
        "zstd -dc failed"
    );
    assert!(
        cpio.status.success(),
        "{}",
        String::from_utf8_lossy(&cpio.stderr)
    );

    let init = unpacked.join("init");
    assert!(
        fs::symlink_metadata(&init).expect("/init").is_file(),
        "/init is a regular file"
    );
    assert_eq!(
        sha256_hex(&fs::read(&init).expect("read /init")),
        sha256_hex(&fs::read(&c.image_builder).expect("binary")),
        "/init is the static binary imported into the store"
    );
    let modules = format!("/usr/lib/modules/{KERNEL_RELEASE}");
    let load_order = format!(
        "{modules}/kernel/lib/basalt_dep.ko\n{modules}/kernel/drivers/misc/basalt-dummy.ko\n"
    );
    for ko in load_order.lines() {
        assert!(
            unpacked.join(&ko[1..]).is_file(),
            "{ko} missing from the initramfs"
        );
    }
    // modules.load lists dependencies first.
    assert_eq!(
        fs::read_to_string(unpacked.join("etc/basalt/modules.load")).expect("modules.load"),
        load_order
    );
}

#[test]
fn closure_info_layout_is_what_nixpkgs_closure_info_writes() {
    let c = contract();
    let ci = c.output("closure-info");
    let closure = c.app_closure();
    let info = path_info(c, &c.out["app"]);

    let store_paths: BTreeSet<String> = fs::read_to_string(ci.join("store-paths"))
        .expect("store-paths")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(store_paths, closure.iter().cloned().collect());
    let total: u64 = fs::read_to_string(ci.join("total-nar-size"))
        .expect("total-nar-size")
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(total, info.values().map(|(_, size, _)| size).sum::<u64>());

    // registration: path, narHash, narSize, "", count, references — what `nix-store
    // --load-db` reads. Nix must accept it, and image-builder must read its graph.
    let registration = ci.join("registration");
    let parsed = read_closure_file(&registration).expect("image-builder reads registration");
    assert_eq!(parsed.format, ClosureFormat::ReferencesGraph);
    let parsed_paths: Vec<String> = parsed.paths.iter().map(ToString::to_string).collect();
    assert_eq!(parsed_paths, closure);
    let graph = parsed.references.expect("references");
    for (path, (_, _, refs)) in &info {
        let p = parse_store_path(path).expect("store path");
        let got: BTreeSet<String> = graph[&p].iter().map(ToString::to_string).collect();
        assert_eq!(&got, refs, "references of {path}");
    }
    let text = fs::read_to_string(&registration).expect("registration");
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let path = lines[i];
        let nix_hash = c.nix_store(&["-q", "--hash", path]);
        assert_eq!(lines[i + 1], nix_hash.trim(), "narHash of {path}");
        assert_eq!(lines[i + 2], info[path].1.to_string(), "narSize of {path}");
        assert_eq!(lines[i + 3], "", "deriver of {path}");
        let n: usize = lines[i + 4].parse().expect("reference count");
        i += 5 + n;
    }
    // A fresh Nix database loads it as is (the format closureInfo promises).
    let db = tempfile::tempdir().expect("tempdir");
    let mut load = nix_command(&c.dir, "nix-store");
    load.args(["--load-db", "--store"])
        .arg(format!("local?root={}", db.path().display()))
        .stdin(fs::File::open(&registration).expect("open"));
    run(load);
}

#[test]
fn every_closure_route_gives_the_same_bytes() {
    let c = contract();
    let routes = ["image-graph", "image-registration", "image-store-paths"];
    let hashes: Vec<String> = routes
        .iter()
        .map(|r| c.nix_store(&["-q", "--hash", &c.out[r].to_string()]))
        .collect();
    assert!(
        hashes.iter().all(|h| h == &hashes[0]),
        "NAR hashes differ: {routes:?} → {hashes:?}"
    );
    assert_eq!(
        describe_tree(&c.output("image-graph")),
        describe_tree(&c.output("image-store-paths"))
    );
}

#[test]
fn nix_rebuilds_the_image_bit_for_bit() {
    let c = contract();
    // `--check` builds again and compares the new output with the registered one byte for
    // byte; any difference fails with "may not be deterministic".
    let printed = run(c.nix_build(&["--check"], &["image-registration"]));
    assert_eq!(printed.trim(), c.out["image-registration"].to_string());
}

#[test]
fn a_closure_missing_what_the_profile_installs_fails_the_build() {
    let c = contract();
    let out = c
        .nix_build(&[], &["image-incomplete"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("nix-build");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build must fail:\n{log}");
    assert!(
        log.contains("is not inside any of the Nix inputs"),
        "image-builder should name the missing input:\n{log}"
    );
}

// ---- node-disk and node-iso: the bootable media, read back by their peers -------------------

/// Runs a host tool (from `scripts/install-deps`) and returns its stdout; fails on a non-zero exit.
fn peer(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/install-deps): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// One row of `sgdisk -p`: number, first and last sector, name.
struct GptRow {
    number: u32,
    first: u64,
    last: u64,
    name: String,
}

/// `sgdisk -p` parsed: the logical sector size and the partition rows.
fn sgdisk_print(disk: &Path) -> (u64, Vec<GptRow>) {
    let text = peer("sgdisk", &["-p", path_str(disk)]);
    let sector = text
        .lines()
        // "Sector size (logical): 512 bytes" for an image file; "(logical/physical): 512/4096
        // bytes" for a device.
        .find_map(|l| l.strip_prefix("Sector size (logical"))
        .and_then(|rest| rest.split_once("): "))
        .and_then(|(_, n)| n.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sector size in sgdisk -p:\n{text}"));
    let rows = text
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .map(|l| {
            // Number  Start (sector)  End (sector)  Size  Code  Name
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 7, "sgdisk -p row: {l:?}");
            GptRow {
                number: f[0].parse().expect("number"),
                first: f[1].parse().expect("start"),
                last: f[2].parse().expect("end"),
                name: f[6..].join(" "),
            }
        })
        .collect();
    (sector, rows)
}

/// The `basalt.root=PARTUUID=` GUID of a UKI's command line, upper case as sgdisk prints it.
fn root_partuuid(cmdline: &str) -> String {
    cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix(basalt_api::disk_layout::ROOT_ARG))
        .unwrap_or_else(|| panic!("no {} in {cmdline:?}", basalt_api::disk_layout::ROOT_ARG))
        .to_ascii_uppercase()
}

/// The manifest lists exactly `names` (sorted), each with the file's sha256 and size.
fn assert_outputs(out: &Path, names: &[&str]) {
    let m = manifest(out);
    assert_eq!(m.profile, "nix-contract");
    let listed: Vec<&str> = m.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(listed, names);
    for o in &m.outputs {
        let (hex, size) = sha256_file(&out.join(&o.name));
        assert_eq!(o.sha256, hex, "{}", o.name);
        assert_eq!(o.size, size, "{}", o.name);
    }
    let mut present: Vec<String> = fs::read_dir(out)
        .expect("read output")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.push("manifest.json".into());
    expected.sort();
    assert_eq!(present, expected, "files in {}", out.display());
}

/// sha256 (hex, by coreutils' sha256sum) and length of a file (disk.raw is hundreds of MB,
/// mostly holes: not read into memory).
fn sha256_file(path: &Path) -> (String, u64) {
    let sum = peer("sha256sum", &[path_str(path)]);
    let hex = sum.split_whitespace().next().expect("sha256sum output");
    let len = fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    (hex.to_owned(), len)
}

#[test]
fn node_disk_is_a_gpt_disk_sgdisk_accepts_with_the_four_partitions() {
    let c = contract();
    let out = c.output("image-disk");
    assert_outputs(&out, &["disk.raw", "uki.efi"]);
    let disk = out.join("disk.raw");
    let verify = peer("sgdisk", &["-v", path_str(&disk)]);
    assert!(
        verify.contains("No problems found."),
        "sgdisk -v:\n{verify}"
    );
    let (sector, rows) = sgdisk_print(&disk);
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["EFI", "BASALT-A", "BASALT-B", "STATE"]);
    assert_eq!(
        rows.iter().map(|r| r.number).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // The profile's slotSizeMib reached image-builder: both slots are that size.
    for r in &rows[1..3] {
        assert_eq!(
            (r.last + 1 - r.first) * sector,
            MEDIA_SLOT_MIB << 20,
            "{}",
            r.name
        );
    }
    // The disk's UKI boots slot A, which holds the root image.
    let uki = out.join("uki.efi");
    let cmdline = String::from_utf8(uki_section(&uki, ".cmdline")).expect("utf8 cmdline");
    let slot_a = peer("sgdisk", &["-i", "2", path_str(&disk)]);
    let guid = slot_a
        .lines()
        .find_map(|l| l.strip_prefix("Partition unique GUID: "))
        .unwrap_or_else(|| panic!("sgdisk -i 2:\n{slot_a}"));
    assert_eq!(root_partuuid(&cmdline), guid.trim());
}

#[test]
fn node_disk_esp_holds_systemd_boot_and_the_uki_as_mtools_reads_it() {
    let c = contract();
    let out = c.output("image-disk");
    let disk = out.join("disk.raw");
    let (sector, rows) = sgdisk_print(&disk);
    let esp = rows
        .iter()
        .find(|r| r.name == "EFI")
        .expect("EFI partition");
    let image = format!("{}@@{}", path_str(&disk), esp.first * sector);
    let boot = peer("mdir", &["-b", "-i", &image, "::/EFI/BOOT"]);
    assert_eq!(boot.trim(), "::/EFI/BOOT/BOOTX64.EFI");
    let uki_name = format!("basalt-{MEDIA_VERSION}.efi");
    let linux = peer("mdir", &["-b", "-i", &image, "::/EFI/Linux"]);
    assert_eq!(linux.trim(), format!("::/EFI/Linux/{uki_name}"));

    let work = tempfile::tempdir().expect("tempdir");
    let copied = |inside: &str| {
        let to = work.path().join(inside.replace('/', "_"));
        peer(
            "mcopy",
            &["-n", "-i", &image, &format!("::/{inside}"), path_str(&to)],
        );
        fs::read(&to).expect("copied file")
    };
    let systemd = c.systemd_src.join("lib/systemd/boot/efi");
    assert!(
        copied("EFI/BOOT/BOOTX64.EFI") == fs::read(systemd.join(SYSTEMD_BOOT)).expect("read"),
        "BOOTX64.EFI is the systemd stand-in's systemd-boot, byte for byte"
    );
    assert!(
        copied(&format!("EFI/Linux/{uki_name}")) == fs::read(out.join("uki.efi")).expect("read"),
        "the ESP's UKI is the output's uki.efi, byte for byte"
    );
    assert_eq!(
        String::from_utf8(copied("loader/loader.conf")).expect("utf8"),
        basalt_api::disk_layout::LOADER_CONF
    );
}

/// `objcopy -O binary --only-section=<name>`: a UKI section's bytes.
fn uki_section(uki: &Path, name: &str) -> Vec<u8> {
    let work = tempfile::tempdir().expect("tempdir");
    let to = work.path().join("section");
    peer(
        "objcopy",
        &[
            "-O",
            "binary",
            &format!("--only-section={name}"),
            path_str(uki),
            path_str(&to),
        ],
    );
    fs::read(&to).expect("section")
}

#[test]
fn node_disk_uki_is_the_stub_with_our_sections_as_binutils_reads_it() {
    let c = contract();
    let uki = c.output("image-disk").join("uki.efi");
    let headers = peer("objdump", &["-h", path_str(&uki)]);
    let names: Vec<&str> = headers
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 7 && f[0].parse::<u32>().is_ok()).then(|| f[1])
        })
        .collect();
    assert!(names.len() > 4, "objdump -h:\n{headers}");
    assert_eq!(
        names[names.len() - 4..],
        [".osrel", ".cmdline", ".initrd", ".linux"],
        "objdump -h:\n{headers}"
    );
    assert!(names.contains(&".sdmagic"), "the stub's own sections stay");
    assert!(
        uki_section(&uki, ".linux") == fs::read(c.kernel_src.join("bzImage")).expect("bzImage"),
        ".linux is the kernel store path's bzImage, byte for byte"
    );
    let osrel = String::from_utf8(uki_section(&uki, ".osrel")).expect("utf8 .osrel");
    assert!(
        osrel
            .lines()
            .any(|l| l == format!("VERSION_ID={MEDIA_VERSION}")),
        "the profile's version reaches os-release:\n{osrel}"
    );
}

#[test]
fn node_iso_has_a_uefi_el_torito_boot_image_as_xorriso_reads_it() {
    let c = contract();
    let out = c.output("image-iso");
    assert_outputs(&out, &["basalt.iso"]);
    let iso = out.join("basalt.iso");
    let report = peer(
        "xorriso",
        &["-indev", path_str(&iso), "-report_el_torito", "plain"],
    );
    // "El Torito boot img :   1  UEFI  y   none  0x0000  0x00      0    <lba>"
    let images: Vec<&str> = report
        .lines()
        .filter_map(|l| l.strip_prefix("El Torito boot img :"))
        .collect();
    assert_eq!(images.len(), 1, "one boot image:\n{report}");
    // Fields: index, platform, bootable, emulation, load segment, system type, …
    let f: Vec<&str> = images[0].split_whitespace().collect();
    assert_eq!(f.get(1), Some(&"UEFI"), "{}", images[0]);
    assert_eq!(f.get(2), Some(&"y"), "bootable: {}", images[0]);
    assert_eq!(f.get(3), Some(&"none"), "no emulation: {}", images[0]);
}

/// `nix show-derivation` of the derivation that built `attr`.
fn derivation_of(c: &Contract, attr: &str) -> serde_json::Value {
    let drv = c.nix_store(&["-q", "--deriver", &c.out[attr].to_string()]);
    let mut show = nix_command(&c.dir, "nix");
    show.args(["--store", &c.store_uri(), "show-derivation"])
        .arg(drv.trim());
    let all: serde_json::Value = serde_json::from_str(&run(show)).expect("json");
    all.get(drv.trim())
        .unwrap_or_else(|| panic!("{drv} in {all}"))
        .clone()
}

/// The media's boot binaries and xorriso come from store paths, as the flake's do. Were the
/// profile to drop `[boot]`, this sandbox would still find Debian's defaults under /usr (a real
/// Nix sandbox has no /usr) and the outputs would not change, so only the derivation can tell.
/// (Without `path` the iso build fails: Nix sets PATH=/path-not-set.)
#[test]
fn node_disk_and_iso_take_boot_binaries_and_xorriso_from_the_store() {
    let c = contract();
    let systemd_boot = fs::read(
        c.systemd_src
            .join("lib/systemd/boot/efi")
            .join(SYSTEMD_BOOT),
    )
    .expect("systemd-boot stand-in");
    let host = fs::read(Path::new(HOST_EFI).join(SYSTEMD_BOOT)).expect("host systemd-boot");
    assert!(systemd_boot == host, "the stand-in is the host's file");
    for (attr, artifacts) in [
        ("image-disk", vec!["uki", "disk"]),
        ("image-iso", vec!["iso"]),
    ] {
        let drv = derivation_of(c, attr);
        assert_eq!(
            drv["builder"],
            format!("{}/bin/image-builder", c.out["image-builder"]),
            "{attr}"
        );
        // PATH is xorriso's bin directory, and xorriso an input of the build.
        let path = drv["env"]["PATH"].as_str().expect("PATH");
        let xorriso = path.strip_suffix("/bin").expect("<xorriso>/bin");
        assert!(
            xorriso.ends_with("-xorriso-stand-in"),
            "{attr}: PATH={path}"
        );
        let inputs = drv["inputDrvs"].as_object().expect("inputDrvs");
        let xorriso_drv = inputs
            .keys()
            .find(|d| d.ends_with("-xorriso-stand-in.drv"))
            .unwrap_or_else(|| panic!("{attr}: xorriso is not an input: {inputs:?}"));
        assert_eq!(
            c.nix_store(&["-q", "--outputs", xorriso_drv]).trim(),
            xorriso
        );
        assert_eq!(
            fs::read_link(
                c.physical(&parse_store_path(xorriso).expect("store path"))
                    .join("bin/xorriso")
            )
            .expect("bin/xorriso"),
            Path::new("/usr/bin/xorriso")
        );

        // The profile names the systemd store path's stub and systemd-boot, and refers to it.
        let args: Vec<&str> = drv["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string arg"))
            .collect();
        assert_eq!(args[..2], ["build", "--profile"], "{attr}");
        let profile_path = parse_store_path(args[2]).expect("profile store path");
        let systemd = c
            .nix_store(&["-q", "--references", args[2]])
            .lines()
            .find(|r| r.ends_with("-systemd-stand-in"))
            .unwrap_or_else(|| panic!("{attr}: the profile does not refer to systemd"))
            .to_owned();
        let text = fs::read_to_string(c.physical(&profile_path)).expect("profile");
        let profile: toml::Table = toml::from_str(&text).expect("the profile is TOML");
        assert_eq!(profile["version"].as_str(), Some(MEDIA_VERSION), "{attr}");
        let efi = format!("{systemd}/lib/systemd/boot/efi");
        assert_eq!(
            profile["boot"]["stub"].as_str(),
            Some(format!("{efi}/{EFI_STUB}").as_str()),
            "{attr}"
        );
        assert_eq!(
            profile["boot"]["systemd_boot"].as_str(),
            Some(format!("{efi}/{SYSTEMD_BOOT}").as_str()),
            "{attr}"
        );
        let listed: Vec<&str> = profile["output"]["artifacts"]
            .as_array()
            .expect("artifacts")
            .iter()
            .map(|a| a.as_str().expect("artifact"))
            .collect();
        assert_eq!(listed, artifacts, "{attr}");
    }
}

#[test]
fn nix_rebuilds_the_disk_and_the_iso_bit_for_bit() {
    let c = contract();
    let printed = run(c.nix_build(&["--check"], &["image-disk", "image-iso"]));
    let paths: Vec<&str> = printed.lines().collect();
    assert_eq!(
        paths,
        [
            c.out["image-disk"].to_string(),
            c.out["image-iso"].to_string()
        ]
    );
}

// ---- the flake itself, as far as this machine can check it ----------------------------------

/// Every `.nix` file in the repository, outside build output and VCS directories.
fn nix_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry"))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let ty = e.file_type().expect("file type");
            if ty.is_dir() {
                if name == "target" || name.starts_with('.') || name == "result" {
                    continue;
                }
                walk(&e.path(), out);
            } else if ty.is_file() && name.ends_with(".nix") {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_root(), &mut out);
    out
}

/// A temporary directory that may hold read-only store objects.
struct Scratch(tempfile::TempDir);

impl Drop for Scratch {
    fn drop(&mut self) {
        make_writable(self.0.path());
    }
}

/// A scratch Nix environment for evaluation-only commands (never the machine's `/nix`).
fn scratch_nix() -> (Scratch, impl Fn(&str) -> Command) {
    let dir = Scratch(tempfile::tempdir().expect("tempdir"));
    let dir_path = dir.0.path();
    fs::create_dir_all(dir_path.join("conf")).expect("conf");
    fs::write(dir_path.join("conf/nix.conf"), NIX_CONF).expect("nix.conf");
    let root = dir_path.join("root");
    let base = dir_path.to_path_buf();
    let cmd = move |program: &str| {
        let mut c = nix_command(&base, program);
        c.args(["--store", &format!("local?root={}", root.display())]);
        c
    };
    (dir, cmd)
}

#[test]
fn every_nix_file_in_the_repository_parses() {
    let files = nix_files();
    let root = repo_root();
    let rel: BTreeSet<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&root)
                .expect("in repo")
                .display()
                .to_string()
        })
        .collect();
    for needed in [
        "flake.nix",
        "nix/basalt.nix",
        "nix/checks.nix",
        "nix/devshell.nix",
        "nix/apps.nix",
        "nix/image.nix",
        "nix/node-image.nix",
        "nix/profile.nix",
        "nix/tests/contract.nix",
    ] {
        assert!(rel.contains(needed), "{needed} missing; found {rel:?}");
    }
    let (_scratch, nix) = scratch_nix();
    for f in &files {
        // Nix 2.8's parser also resolves every variable: a typo outside `with` fails here.
        let out = nix("nix-instantiate")
            .arg("--parse")
            .arg(f)
            .output()
            .expect("nix-instantiate (nix-bin)");
        assert!(
            out.status.success(),
            "{} does not parse: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn flake_lock_pins_the_input_flake_nix_names() {
    let root = repo_root();
    let (_scratch, nix) = scratch_nix();
    // Evaluating the flake's top level needs no inputs: its nixpkgs URL, and the inputs the
    // outputs function takes.
    let mut eval = nix("nix-instantiate");
    eval.args(["--eval", "--strict", "--json", "--expr"]).arg(format!(
        "let f = import {}; in {{ url = f.inputs.nixpkgs.url; inputs = builtins.attrNames f.inputs; \
         args = builtins.attrNames (builtins.functionArgs f.outputs); }}",
        root.join("flake.nix").display()
    ));
    let flake: serde_json::Value = serde_json::from_str(&run(eval)).expect("json");
    assert_eq!(flake["inputs"], serde_json::json!(["nixpkgs"]));
    assert_eq!(flake["args"], serde_json::json!(["nixpkgs", "self"]));
    let url = flake["url"].as_str().expect("url");
    let branch = url
        .strip_prefix("github:NixOS/nixpkgs/")
        .unwrap_or_else(|| panic!("nixpkgs comes from GitHub: {url}"));
    assert!(
        branch.starts_with("nixos-") && branch[6..].split('.').all(|p| p.parse::<u32>().is_ok()),
        "nixpkgs follows a release branch (nixos-YY.MM), not {branch}"
    );

    let lock: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("flake.lock")).expect("flake.lock"))
            .expect("flake.lock is JSON");
    assert_eq!(lock["version"], 7);
    let root_node = lock["root"].as_str().expect("root");
    let node_name = lock["nodes"][root_node]["inputs"]["nixpkgs"]
        .as_str()
        .expect("root input nixpkgs");
    let node = &lock["nodes"][node_name];
    let original = &node["original"];
    assert_eq!(original["type"], "github");
    assert_eq!(original["owner"], "NixOS");
    assert_eq!(original["repo"], "nixpkgs");
    assert_eq!(
        original["ref"], branch,
        "flake.lock follows flake.nix's branch"
    );
    let locked = &node["locked"];
    assert_eq!(locked["type"], "github");
    assert_eq!(locked["repo"], "nixpkgs");
    let rev = locked["rev"].as_str().expect("rev");
    assert!(
        rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
        "a full commit: {rev}"
    );
    let nar_hash = locked["narHash"].as_str().expect("narHash");
    let b64 = nar_hash.strip_prefix("sha256-").expect("SRI sha256");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(raw.len(), 32, "{nar_hash}");
    assert!(locked["lastModified"].as_u64().is_some());

    // Nix itself takes the lock as it is: with the flake (flake.nix, flake.lock, nix/) copied
    // on its own, offline and forbidden to write the lock file, `nix flake metadata` must not
    // need to lock anything again (a lock that disagrees with flake.nix would make it fetch).
    let copy = tempfile::tempdir().expect("tempdir");
    fs::copy(root.join("flake.nix"), copy.path().join("flake.nix")).expect("copy flake.nix");
    fs::copy(root.join("flake.lock"), copy.path().join("flake.lock")).expect("copy flake.lock");
    copy_tree(&root.join("nix"), &copy.path().join("nix"));
    let mut metadata = nix("nix");
    metadata
        .args([
            "flake",
            "metadata",
            "--json",
            "--offline",
            "--no-write-lock-file",
        ])
        .arg(format!("path:{}", copy.path().display()));
    let meta: serde_json::Value = serde_json::from_str(&run(metadata)).expect("metadata json");
    assert_eq!(meta["locks"]["nodes"][node_name]["locked"], *locked);
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).expect("copy");
        }
    }
}

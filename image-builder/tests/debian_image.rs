//! The Debian profile built from this host, checked with the tools that
//! will consume it: GNU cpio, unsquashfs, ldd, modprobe.
//!
//! The image is built once for this test binary and shared.

mod common;

use common::*;
use image_builder::manifest::{FileKind, FileRecord, Manifest};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

struct Built {
    out: PathBuf,
    manifest: Manifest,
    /// `cpio -idm` of the initramfs.
    initramfs_dir: PathBuf,
    /// `unsquashfs -d` of the root image taken from that extraction.
    rootfs_dir: PathBuf,
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let base = scratch("ib-debian-");
        let out = base.join("out");
        let motd = base.join("motd");
        std::fs::write(&motd, MOTD).unwrap();
        build_ok(&mut cli(), &debian_with_motd(&base, &motd), &out);
        let manifest = manifest(&out);
        let initramfs_dir = base.join("initramfs");
        std::fs::create_dir(&initramfs_dir).unwrap();
        let cpio = decompress_into(
            "cpio",
            &["-idm", "--quiet", "--no-absolute-filenames"],
            &out,
            Some(&initramfs_dir),
        );
        assert!(cpio.status.success(), "cpio -idm: {}", stderr(&cpio));
        let rootfs_dir = base.join("rootfs");
        let image = initramfs_dir.join("basalt/root.squashfs");
        let o = sh(
            "unsquashfs",
            &[
                "-n",
                "-d",
                rootfs_dir.to_str().unwrap(),
                image.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "unsquashfs: {}", stderr(&o));
        Built {
            out,
            manifest,
            initramfs_dir,
            rootfs_dir,
        }
    })
}

/// A root-image input the reproducibility test can touch without touching
/// the host's own files.
const MOTD: &str = "Basalt: no shell here.\n";

/// The Debian profile plus `/etc/motd` from `motd`, written into `dir`; its
/// components still come from the repository's packages/.
fn debian_with_motd(dir: &Path, motd: &Path) -> PathBuf {
    let mut text = format!(
        "packages_dir = \"{}\"\n",
        common::repo_root().join("packages").display()
    );
    text.push_str(&std::fs::read_to_string(debian_profile()).unwrap());
    text.push_str(&format!(
        "\n[[files]]\nsource = \"{}\"\ntarget = \"/etc/motd\"\n",
        motd.display()
    ));
    let p = dir.join("debian-motd.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `zstd -dc initramfs.cpio.zst | <cmd> <args>`, in `dir`.
fn decompress_into(
    cmd: &str,
    args: &[&str],
    out: &Path,
    dir: Option<&Path>,
) -> std::process::Output {
    let mut zstd = Command::new("zstd")
        .args(["-dc"])
        .arg(out.join("initramfs.cpio.zst"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("zstd");
    let mut c = Command::new(cmd);
    c.args(args).stdin(zstd.stdout.take().expect("pipe"));
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let o = c.output().expect(cmd);
    assert!(zstd.wait().expect("zstd").success());
    o
}

fn manifest_paths(files: &[FileRecord]) -> BTreeSet<String> {
    files.iter().map(|f| f.path.clone()).collect()
}

fn by_path(files: &[FileRecord]) -> BTreeMap<String, FileRecord> {
    files.iter().map(|f| (f.path.clone(), f.clone())).collect()
}

/// Follows symlinks inside an image (as the kernel would after the root
/// switch) to the entry `path` names.
fn resolve<'a>(files: &'a BTreeMap<String, FileRecord>, path: &str) -> Option<&'a FileRecord> {
    let mut path = path.to_string();
    for _ in 0..40 {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut prefix = String::new();
        let mut redirected = None;
        for (i, part) in parts.iter().enumerate() {
            prefix.push('/');
            prefix.push_str(part);
            let rec = files.get(&prefix)?;
            if rec.kind == FileKind::Symlink {
                let target = rec.target.clone()?;
                let base = if target.starts_with('/') {
                    target
                } else {
                    let parent = &prefix[..prefix.rfind('/').unwrap_or(0)];
                    format!("{parent}/{target}")
                };
                let rest = parts[i + 1..].join("/");
                redirected = Some(normalize(&format!("{base}/{rest}")));
                break;
            }
        }
        match redirected {
            Some(p) => path = p,
            None => return files.get(&normalize(&path)),
        }
    }
    None
}

fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

/// The host file an in-image file was copied from; `None` for generated ones.
/// A binary built from packages/: its file in the package cache.
fn package_source(image_path: &str) -> Option<PathBuf> {
    use image_builder::package::{BuildOptions, entry_dir};
    let (dir, name) = image_path.rsplit_once('/')?;
    if dir != "/usr/bin" && dir != "/opt/cni/bin" {
        return None;
    }
    built().manifest.components.iter().find_map(|c| {
        c.binaries.iter().any(|b| b.name == name).then(|| {
            entry_dir(
                &BuildOptions::default_cache_dir(),
                &c.component,
                &c.version,
                &c.key,
            )
            .join("bin")
            .join(name)
        })
    })
}

fn host_source(image_path: &str) -> Option<PathBuf> {
    if image_path == "/init" {
        return Some(fixture().machined.clone());
    }
    if image_path == "/etc/motd" {
        return Some(built().out.parent().unwrap().join("motd"));
    }
    if image_path.starts_with("/etc/basalt/")
        || image_path == "/usr/lib/os-release"
        || image_path == "/basalt/root.squashfs"
    {
        return None;
    }
    if let Some(built) = package_source(image_path) {
        return Some(built);
    }
    if let Some(m) = image_path.strip_prefix("/usr/lib/modules/") {
        return Some(Path::new("/lib/modules").join(m));
    }
    Some(PathBuf::from(image_path))
}

/// Every regular file under `root`, as absolute in-image paths.
fn walk(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut queue = vec![root.to_path_buf()];
    while let Some(dir) = queue.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            let rel = format!("/{}", e.path().strip_prefix(root).unwrap().display());
            if ft.is_dir() {
                queue.push(e.path());
            }
            out.insert(rel, e.path());
        }
    }
    out
}

fn check_extracted_against_sources(root: &Path, files: &[FileRecord]) {
    let listed = walk(root);
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        manifest_paths(files),
        "extracted tree != manifest"
    );
    let mut compared = 0;
    for rec in files.iter().filter(|f| f.kind == FileKind::File) {
        let extracted = std::fs::read(&listed[&rec.path]).unwrap();
        assert_eq!(Some(extracted.len() as u64), rec.size, "{}", rec.path);
        assert_eq!(
            Some(image_builder::hash::bytes(&extracted)),
            rec.sha256,
            "{}: sha256 differs from the manifest",
            rec.path
        );
        if let Some(src) = host_source(&rec.path) {
            let source = std::fs::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
            assert!(
                source == extracted,
                "{} differs from its source {}",
                rec.path,
                src.display()
            );
            compared += 1;
        }
        let md = std::fs::metadata(&listed[&rec.path]).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            format!("{:04o}", md.mode() & 0o7777),
            rec.mode,
            "{}: mode",
            rec.path
        );
        assert!(
            md.mtime() <= EPOCH.parse::<i64>().unwrap(),
            "{}: mtime {} is after SOURCE_DATE_EPOCH",
            rec.path,
            md.mtime()
        );
    }
    assert!(
        compared > 5,
        "compared only {compared} files with their sources"
    );
    for rec in files.iter().filter(|f| f.kind == FileKind::Symlink) {
        let target = std::fs::read_link(&listed[&rec.path]).unwrap();
        assert_eq!(
            Some(target.to_string_lossy().into_owned()),
            rec.target,
            "{}",
            rec.path
        );
    }
}

#[test]
fn two_builds_at_different_times_are_byte_identical() {
    let first = built();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The same inputs with new mtimes at other paths (machined for the
    // initramfs, motd for the root image), the profile in another directory,
    // the output in another temp dir.
    let dir = scratch("ib-repro-");
    let machined = dir.join("machined-copy");
    std::fs::copy(&fixture().machined, &machined).unwrap();
    let motd = dir.join("motd-copy");
    std::fs::write(&motd, MOTD).unwrap();
    for touched in [&machined, &motd] {
        std::fs::File::options()
            .write(true)
            .open(touched)
            .unwrap()
            .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
            .unwrap();
    }
    let profile = debian_with_motd(&dir, &motd);
    let out = dir.join("second");
    build_ok(cli().env("BASALT_MACHINED", &machined), &profile, &out);

    let names = |d: &Path| -> BTreeSet<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(&first.out), names(&out));
    assert_eq!(
        names(&out),
        BTreeSet::from([
            "basalt.iso".into(),
            "disk.raw".into(),
            "initramfs.cpio.zst".into(),
            "manifest.json".into(),
            "root.squashfs".into(),
            "uki.efi".into(),
            "vmlinuz".into()
        ])
    );
    for name in names(&out) {
        let a = std::fs::read(first.out.join(&name)).unwrap();
        let b = std::fs::read(out.join(&name)).unwrap();
        assert!(a == b, "{name} differs between the two builds");
    }
}

#[test]
fn gnu_cpio_lists_exactly_the_manifest_initramfs() {
    let b = built();
    let o = decompress_into("cpio", &["-it", "--quiet"], &b.out, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: BTreeSet<String> = stdout(&o).lines().map(absolute).collect();
    assert_eq!(listed, manifest_paths(&b.manifest.initramfs.files));
    assert!(
        listed.contains("/init")
            && listed.contains("/basalt/root.squashfs")
            && listed.contains("/etc/basalt/modules.load")
    );
}

#[test]
fn cpio_extraction_equals_the_sources() {
    let b = built();
    check_extracted_against_sources(&b.initramfs_dir, &b.manifest.initramfs.files);
    let image = std::fs::read(b.initramfs_dir.join("basalt/root.squashfs")).unwrap();
    assert_eq!(image_builder::hash::bytes(&image), b.manifest.rootfs.sha256);
    let init = std::fs::read(b.initramfs_dir.join("init")).unwrap();
    assert!(
        init == std::fs::read(&fixture().machined).unwrap(),
        "/init is not machined"
    );
}

#[test]
fn unsquashfs_lists_exactly_the_manifest_rootfs() {
    let b = built();
    let image = b.initramfs_dir.join("basalt/root.squashfs");
    let o = sh("unsquashfs", &["-l", "-n", image.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: BTreeSet<String> = stdout(&o)
        .lines()
        .filter_map(|l| l.strip_prefix("squashfs-root"))
        .filter(|l| !l.is_empty())
        .map(absolute)
        .collect();
    assert_eq!(listed, manifest_paths(&b.manifest.rootfs.files));
}

#[test]
fn unsquashfs_extraction_equals_the_sources() {
    let b = built();
    check_extracted_against_sources(&b.rootfs_dir, &b.manifest.rootfs.files);
}

/// `ldd` lines: (what it needs, the host path ld.so picked).
fn ldd(binary: &Path) -> Vec<(String, PathBuf)> {
    let o = sh("ldd", &[binary.to_str().unwrap()]);
    let text = stdout(&o);
    // glibc's ldd says "not a dynamic executable" on stderr (exit 1) for a
    // static binary such as the Go-built CNI plugins, "statically linked" on
    // stdout for a static-pie.
    if stderr(&o).contains("not a dynamic executable") || text.contains("statically linked") {
        return Vec::new();
    }
    assert!(
        o.status.success(),
        "ldd {}: {}",
        binary.display(),
        stderr(&o)
    );
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.split(" (0x").next().unwrap_or(line);
        if let Some((name, path)) = line.split_once(" => ") {
            assert!(
                path.starts_with('/'),
                "ldd {}: unresolved {line}",
                binary.display()
            );
            out.push((name.to_string(), PathBuf::from(path)));
        } else if line.starts_with('/') {
            out.push((line.to_string(), PathBuf::from(line)));
        }
    }
    out
}

#[test]
fn elf_closures_match_ldd() {
    let b = built();
    let files = by_path(&b.manifest.rootfs.files);
    let binaries: Vec<&FileRecord> = b
        .manifest
        .rootfs
        .files
        .iter()
        .filter(|f| {
            f.kind == FileKind::File
                && (f.path.starts_with("/usr/bin/")
                    || f.path.starts_with("/usr/sbin/")
                    || f.path.starts_with("/opt/cni/bin/"))
        })
        .collect();
    let names: BTreeSet<&str> = binaries.iter().map(|f| f.path.as_str()).collect();
    for must in [
        "/usr/bin/containerd",
        "/usr/bin/containerd-shim-runc-v2",
        "/usr/bin/runc",
        "/usr/sbin/mkfs.ext4",
        "/usr/sbin/e2fsck",
        "/opt/cni/bin/bridge",
    ] {
        assert!(names.contains(must), "{must} missing from the root image");
    }
    let mut wanted_libs = BTreeSet::new();
    for bin in &binaries {
        let host = host_source(&bin.path).unwrap();
        for (name, path) in ldd(&host) {
            let rec = resolve(&files, path.to_str().unwrap()).unwrap_or_else(|| {
                panic!(
                    "{}: ldd says it loads {name} from {}, absent from the image",
                    bin.path,
                    path.display()
                )
            });
            assert_eq!(rec.kind, FileKind::File, "{}", path.display());
            let (sha, _) = image_builder::hash::file(&path).unwrap();
            assert_eq!(
                rec.sha256.as_deref(),
                Some(sha.as_str()),
                "{}: {} differs from the host's",
                bin.path,
                path.display()
            );
            wanted_libs.insert(
                std::fs::canonicalize(&path)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    // runc comes from packages/ now, linked statically with libseccomp, so
    // no dynamic libseccomp.so is expected; e2fsprogs still is dynamic.
    for lib in ["libc.so.6", "ld-linux-x86-64.so.2", "libext2fs.so"] {
        assert!(
            wanted_libs.iter().any(|l| l.contains(lib)),
            "ldd found no {lib}; is the host as expected?"
        );
    }
    // Nothing more than ldd asked for: every file outside the binaries,
    // mount points and generated files is one of those libraries.
    let extra: Vec<&str> = b
        .manifest
        .rootfs
        .files
        .iter()
        .filter(|f| f.kind == FileKind::File)
        .map(|f| f.path.as_str())
        .filter(|p| {
            !names.contains(p)
                && !p.starts_with("/etc/basalt/")
                && !["/usr/lib/os-release", "/etc/motd"].contains(p)
        })
        .filter(|p| !wanted_libs.contains(*p))
        .collect();
    assert!(extra.is_empty(), "files no binary needs: {extra:?}");
    // The soname paths ld.so searches exist in the image.
    for soname in [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/libext2fs.so.2",
    ] {
        assert!(
            resolve(&files, soname).is_some(),
            "{soname} does not resolve in the image"
        );
    }

    // /init's closure is in the initramfs (the stand-in is dynamic).
    let initramfs = by_path(&b.manifest.initramfs.files);
    for (name, path) in ldd(&fixture().machined) {
        assert!(
            resolve(&initramfs, path.to_str().unwrap()).is_some(),
            "/init needs {name} ({}), absent from the initramfs",
            path.display()
        );
    }
}

/// `modprobe --show-depends`: the `.ko` paths it would insert, in order.
fn modprobe(release: &str, module: &str) -> Vec<String> {
    let o = sh("modprobe", &["--show-depends", "-S", release, module]);
    assert!(o.status.success(), "modprobe {module}: {}", stderr(&o));
    stdout(&o)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("insmod "))
        .map(|p| p.trim().to_string())
        .collect()
}

#[test]
fn module_closure_matches_modprobe() {
    let b = built();
    let f = fixture();
    let env = |name: &str| match name {
        "BASALT_ADMIN_PUB" => Some(f.admin_pub.to_string_lossy().into_owned()),
        "BASALT_MACHINED" => Some(f.machined.to_string_lossy().into_owned()),
        _ => None,
    };
    let profile = image_builder::profile::load(
        &debian_profile(),
        &image_builder::LoadOptions {
            env: &env,
            machined: None,
        },
    )
    .unwrap();
    let release = &b.manifest.kernel_release;
    let modules_dir = Path::new("/lib/modules").join(release);
    let index = image_builder::kmod::ModuleIndex::load(&modules_dir).unwrap();
    for module in &profile.kernel.modules {
        let ours: BTreeSet<String> = index
            .plan(std::slice::from_ref(module))
            .unwrap()
            .load_order
            .iter()
            .map(|rel| modules_dir.join(rel).to_string_lossy().into_owned())
            .collect();
        let theirs: BTreeSet<String> = modprobe(release, module).into_iter().collect();
        assert_eq!(
            ours, theirs,
            "module {module}: ours vs modprobe --show-depends"
        );
    }
    let ext4 = index.plan(&["ext4".to_string()]).unwrap().load_order;
    for dep in ["jbd2.ko", "mbcache.ko", "crc16.ko"] {
        assert!(
            ext4.iter().any(|p| p.ends_with(dep)),
            "ext4 should pull {dep}: {ext4:?}"
        );
    }

    // The list in the image: every file present, dependencies before dependents.
    let list = std::fs::read_to_string(b.initramfs_dir.join("etc/basalt/modules.load")).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines.len() > 20, "{list}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with(&format!("/usr/lib/modules/{release}/")) && l.ends_with(".ko")),
        "{list}"
    );
    assert_eq!(
        lines.iter().collect::<BTreeSet<_>>().len(),
        lines.len(),
        "duplicates in {list}"
    );
    let position: BTreeMap<String, usize> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.replacen("/usr/lib/modules", "/lib/modules", 1), i))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        assert!(
            b.initramfs_dir.join(line.trim_start_matches('/')).is_file(),
            "{line} is not in the initramfs"
        );
        let host = line.replacen("/usr/lib/modules", "/lib/modules", 1);
        let name = Path::new(&host)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".ko", "");
        for dep in modprobe(release, &name) {
            assert!(
                position.get(&dep).is_some_and(|&p| p <= i),
                "{line} is listed before its dependency {dep}"
            );
        }
    }
    let rootfs_list =
        std::fs::read_to_string(b.rootfs_dir.join("etc/basalt/modules.load")).unwrap();
    assert_eq!(list, rootfs_list);
}

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ash", "busybox"];

#[test]
fn no_shell_or_interpreter_in_either_image() {
    let b = built();
    for root in [&b.initramfs_dir, &b.rootfs_dir] {
        let all = walk(root);
        assert!(all.len() > 30);
        for (path, host) in &all {
            let mut names = vec![
                Path::new(path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ];
            let md = std::fs::symlink_metadata(host).unwrap();
            if md.file_type().is_symlink() {
                names.push(
                    std::fs::read_link(host)
                        .unwrap()
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            } else if md.is_file() {
                let mut head = [0u8; 2];
                let n = std::io::Read::read(&mut std::fs::File::open(host).unwrap(), &mut head)
                    .unwrap();
                assert!(!(n == 2 && &head == b"#!"), "{path} is a script");
            }
            for n in names {
                assert!(
                    !SHELLS.contains(&n.as_str())
                        && !n.starts_with("python")
                        && !n.starts_with("perl"),
                    "{path} ({n}) is a shell or interpreter"
                );
            }
        }
    }
}

#[test]
fn trust_roots_are_in_both_images() {
    let b = built();
    let a = std::fs::read_to_string(b.initramfs_dir.join("etc/basalt/trust.toml")).unwrap();
    let r = std::fs::read_to_string(b.rootfs_dir.join("etc/basalt/trust.toml")).unwrap();
    assert_eq!(a, r);
    let v: toml::Table = toml::from_str(&a).unwrap();
    assert_eq!(
        v["admins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect::<Vec<_>>(),
        [fixture().admin_line.as_str()]
    );
    assert!(v["readers"].as_array().unwrap().is_empty());
    assert_eq!(v["threshold"].as_integer(), Some(1));
    assert_eq!(v.len(), 3, "{a}");
    let key =
        basalt_api::sshkey::PublicKey::from_openssh(v["admins"][0].as_str().unwrap()).unwrap();
    assert!(key.same_key(&fixture().admin.public()));
    // The image's floor, next to its roots: no minimum generation in this
    // profile, and SOURCE_DATE_EPOCH as the build time.
    let a = std::fs::read_to_string(b.initramfs_dir.join("etc/basalt/image-policy.toml")).unwrap();
    let r = std::fs::read_to_string(b.rootfs_dir.join("etc/basalt/image-policy.toml")).unwrap();
    assert_eq!(a, r);
    let policy = basalt_api::scope::ImagePolicy::from_toml(&a).unwrap();
    assert_eq!(policy.min_generation, 0);
    assert_eq!(policy.built_at, EPOCH.parse::<i64>().unwrap());
}

#[test]
fn inspect_lists_what_the_manifest_says() {
    let b = built();
    let o = run(cli()
        .arg("inspect")
        .arg("--json")
        .arg(b.out.join("initramfs.cpio.zst")));
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: Vec<FileRecord> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed, b.manifest.initramfs.files);
    let o = run(cli()
        .arg("inspect")
        .arg(b.initramfs_dir.join("basalt/root.squashfs")));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let containerd = b
        .manifest
        .rootfs
        .files
        .iter()
        .find(|f| f.path == "/usr/bin/containerd")
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.ends_with(" /usr/bin/containerd"))
        .expect("containerd listed");
    assert!(
        line.contains(containerd.sha256.as_deref().unwrap()),
        "{line}"
    );
    let mut report = std::io::stderr();
    let _ = writeln!(
        report,
        "initramfs {} bytes, root image {} bytes",
        b.manifest.initramfs.size, b.manifest.rootfs.size
    );
}

//! Profiles that must be refused, and the CLI around small builds: errors
//! with file, line and key; no shells; failed builds leave nothing; verify,
//! inspect and SOURCE_DATE_EPOCH.

mod common;

use common::*;
use std::path::Path;

/// Runs `build` on `profile` and returns its stderr, insisting it failed.
fn build_fails(profile: &Path, out: &Path) -> String {
    let o = run(cli()
        .args(["build", "--profile"])
        .arg(profile)
        .arg("--out")
        .arg(out));
    assert!(
        !o.status.success(),
        "build of {} should have failed",
        profile.display()
    );
    assert!(!out.exists(), "a failed build left {}", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial") || n.contains("old-build"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    stderr(&o)
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn unknown_key_is_an_error_with_line_and_key() {
    let dir = scratch("ib-prof-");
    let f = fixture();
    let p = write(
        &dir,
        "typo.toml",
        &format!(
            "name = \"t\"\n\n[kernel]\nimage = \"/boot/vmlinuz-*\"\nmodulez = [\"loop\"]\n\n[machined]\npath = \"{}\"\n\n[trust]\nadmins = [\"{}\"]\n",
            f.machined.display(),
            f.admin_line
        ),
    );
    let err = build_fails(&p, &dir.join("out"));
    assert!(err.contains("typo.toml:5:1"), "{err}");
    assert!(
        err.contains("kernel")
            && err.contains("unknown field `modulez`")
            && err.contains("expected one of"),
        "{err}"
    );
}

#[test]
fn wrong_type_is_an_error_with_line_and_key() {
    let dir = scratch("ib-prof-");
    let p = mini_profile(&dir, "");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("[trust]\n", "[trust]\nthreshold = \"one\"\n");
    std::fs::write(&p, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("threshold"))
        .unwrap()
        + 1;
    let err = build_fails(&p, &dir.join("out"));
    assert!(err.contains(&format!("mini.toml:{line}:13")), "{err}");
    assert!(
        err.contains("trust.threshold")
            && err.contains("invalid type")
            && err.contains("expected u32"),
        "{err}"
    );
}

#[test]
fn missing_file_is_an_error_with_line_and_key() {
    let dir = scratch("ib-prof-");
    let p = mini_profile(
        &dir,
        "[[binaries]]\nsource = \"/usr/bin/true\"\n\n[[binaries]]\nsource = \"/nonexistent/tool\"\n",
    );
    let text = std::fs::read_to_string(&p).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("/nonexistent/tool"))
        .unwrap()
        + 1;
    let err = build_fails(&p, &dir.join("out"));
    assert!(
        err.contains(&format!("mini.toml:{line}:10: binaries[1].source")),
        "{err}"
    );
    assert!(err.contains("/nonexistent/tool: no such file"), "{err}");
}

#[test]
fn unset_variable_and_kernel_glob_errors() {
    let dir = scratch("ib-prof-");
    let p = mini_profile(&dir, "");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("/boot/vmlinuz-*", "${BASALT_TEST_SURELY_UNSET}/vmlinuz"),
    )
    .unwrap();
    let err = build_fails(&p, &dir.join("out"));
    assert!(
        err.contains("mini.toml:4:9: kernel.image")
            && err.contains("BASALT_TEST_SURELY_UNSET is not set"),
        "{err}"
    );

    std::fs::write(&p, text.replace("/boot/vmlinuz-*", "/boot/*")).unwrap();
    let err = build_fails(&p, &dir.join("out"));
    assert!(err.contains("expected exactly one kernel image"), "{err}");
    std::fs::write(
        &p,
        text.replace("/boot/vmlinuz-*", "/boot/no-such-kernel-*"),
    )
    .unwrap();
    let err = build_fails(&p, &dir.join("out"));
    assert!(err.contains("matches no file"), "{err}");
}

#[test]
fn missing_machined_says_how_to_get_one() {
    let dir = scratch("ib-prof-");
    let p = mini_profile(&dir, "");
    let text = std::fs::read_to_string(&p).unwrap();
    let path_line = text
        .lines()
        .find(|l| l.starts_with("path = "))
        .unwrap()
        .to_string();
    std::fs::write(
        &p,
        text.replace(
            &path_line,
            "path = \"${BASALT_MACHINED:-target/release/machined}\"",
        ),
    )
    .unwrap();
    let o = run(cli()
        .env_remove("BASALT_MACHINED")
        .args(["build", "--profile"])
        .arg(&p)
        .arg("--out")
        .arg(dir.join("out")));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("machined.path") && err.contains("target/release/machined: no such file"),
        "{err}"
    );
    assert!(err.contains("cargo build --release -p machined"), "{err}");

    let o = run(cli()
        .args(["build", "--machined", "/nonexistent/machined", "--profile"])
        .arg(&p)
        .arg("--out")
        .arg(dir.join("out")));
    assert!(
        !o.status.success() && stderr(&o).contains("/nonexistent/machined"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_trust_keys_are_refused() {
    let dir = scratch("ib-prof-");
    let p = mini_profile(&dir, "");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace(&fixture().admin_line, "ssh-ed25519 AAAAnotbase64!"),
    )
    .unwrap();
    let err = build_fails(&p, &dir.join("out"));
    assert!(
        err.contains("trust.admins[0]") && err.contains("expected an OpenSSH ed25519 public key"),
        "{err}"
    );

    std::fs::write(&p, text.replace("[trust]\n", "[trust]\nthreshold = 2\n")).unwrap();
    let err = build_fails(&p, &dir.join("out"));
    assert!(
        err.contains("trust.threshold") && err.contains("between 1 and the 1 admin key"),
        "{err}"
    );
}

#[test]
fn shells_and_interpreters_are_refused_naming_them() {
    let dir = scratch("ib-shell-");
    let p = mini_profile(&dir, "[[binaries]]\nsource = \"/bin/bash\"\n");
    let err = build_fails(&p, &dir.join("out"));
    assert!(
        err.contains("refusing `bash`") && err.contains("binaries[0]") && err.contains("/bin/bash"),
        "{err}"
    );

    // A python3 (whatever its contents) under its own name.
    let fake = dir.join("python3");
    std::fs::copy("/usr/bin/true", &fake).unwrap();
    let p = mini_profile(
        &dir,
        &format!(
            "[[binaries]]\nsource = \"{}\"\ntarget = \"/usr/bin/python3\"\n",
            fake.display()
        ),
    );
    let err = build_fails(&p, &dir.join("out"));
    assert!(
        err.contains("refusing `python3`") && err.contains("/usr/bin/python3"),
        "{err}"
    );

    // A harmless name that is a symlink to a shell on the host.
    let link = dir.join("helper");
    std::os::unix::fs::symlink("/usr/bin/dash", &link).unwrap();
    let p = mini_profile(
        &dir,
        &format!(
            "[[binaries]]\nsource = \"{}\"\ntarget = \"/usr/bin/helper\"\n",
            link.display()
        ),
    );
    let err = build_fails(&p, &dir.join("out"));
    assert!(
        err.contains("refusing `dash`") && err.contains("/usr/bin/helper"),
        "{err}"
    );

    // A script needs an interpreter, so it is refused too.
    let script = write(&dir, "hello", "#!/usr/bin/env python3\nprint('hi')\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let p = mini_profile(
        &dir,
        &format!(
            "[[files]]\nsource = \"{}\"\ntarget = \"/usr/bin/hello\"\n",
            script.display()
        ),
    );
    let err = build_fails(&p, &dir.join("out"));
    assert!(err.contains("script /usr/bin/hello"), "{err}");
}

/// Copies `binary` with one DT_NEEDED name overwritten in place (same length).
fn patch_needed(binary: &str, from: &str, to: &str, dest: &Path) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(binary).unwrap();
    let needle = format!("{from}\0");
    let mut hits = 0;
    let mut i = 0;
    while let Some(pos) = bytes[i..]
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
    {
        let at = i + pos;
        bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
        hits += 1;
        i = at + needle.len();
    }
    assert!(hits > 0, "{from} not found in {binary}");
    std::fs::write(dest, bytes).unwrap();
    std::fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn missing_library_names_the_binary_and_the_library() {
    let dir = scratch("ib-elf-");
    let broken = dir.join("e2fsck-broken");
    patch_needed(
        "/usr/sbin/e2fsck",
        "libext2fs.so.2",
        "libabsent.so.2",
        &broken,
    );
    // The loader agrees that this binary cannot run.
    let ldd = sh("ldd", &[broken.to_str().unwrap()]);
    assert!(
        stdout(&ldd).contains("libabsent.so.2 => not found"),
        "{}",
        stdout(&ldd)
    );

    let p = mini_profile(
        &dir,
        &format!(
            "[[binaries]]\nsource = \"{}\"\ntarget = \"/usr/sbin/e2fsck\"\n",
            broken.display()
        ),
    );
    let err = build_fails(&p, &dir.join("out"));
    assert!(
        err.contains(&format!("{} needs libabsent.so.2", broken.display())),
        "{err}"
    );
    assert!(
        err.contains("/usr/lib/x86_64-linux-gnu"),
        "should list where it looked: {err}"
    );
}

#[test]
fn static_init_brings_no_libraries() {
    let dir = scratch("ib-static-");
    let src = write(&dir, "init.rs", "fn main() {}\n");
    let init = dir.join("init-static");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let o = std::process::Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "opt-level=0",
            "-o",
        ])
        .arg(&init)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "rustc: {}", stderr(&o));
    let info = image_builder::elf::read_info(&init).unwrap().unwrap();
    assert!(info.is_static(), "{info:?}");

    let p = mini_profile(&dir, "");
    let out = dir.join("out");
    let o = run(cli()
        .args(["build", "--machined"])
        .arg(&init)
        .arg("--profile")
        .arg(&p)
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let m = manifest(&out);
    let paths: Vec<&str> = m.initramfs.files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/lib") || p.contains("x86_64-linux-gnu")),
        "{paths:?}"
    );
    let init_rec = m
        .initramfs
        .files
        .iter()
        .find(|f| f.path == "/init")
        .unwrap();
    assert_eq!(
        init_rec.sha256,
        Some(image_builder::hash::file(&init).unwrap().0)
    );
}

#[test]
fn verify_reports_tampering_and_exits_1() {
    let dir = scratch("ib-verify-");
    let p = mini_profile(
        &dir,
        "[output]\nartifacts = [\"kernel\", \"initramfs\", \"rootfs\"]\n",
    );
    let out = dir.join("out");
    build_ok(&mut cli(), &p, &out);
    let o = run(cli().arg("verify").arg(&out));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(out.join("root.squashfs").is_file());

    // A flipped byte in an output.
    let mut kernel = std::fs::read(out.join("vmlinuz")).unwrap();
    kernel[1000] ^= 0xff;
    std::fs::write(out.join("vmlinuz"), &kernel).unwrap();
    // A file the manifest claims differently inside the root image.
    let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let files = m["rootfs"]["files"].as_array_mut().unwrap();
    let trust = files
        .iter_mut()
        .find(|f| f["path"] == "/etc/basalt/trust.toml")
        .unwrap();
    trust["sha256"] = serde_json::Value::String("0".repeat(64));
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&m).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join("stray"), b"x").unwrap();

    let o = run(cli().arg("verify").arg(&out));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report = stdout(&o);
    assert!(report.contains("MISMATCH vmlinuz: sha256"), "{report}");
    assert!(report.contains("/etc/basalt/trust.toml"), "{report}");
    assert!(report.contains("stray: not in the manifest"), "{report}");
    assert!(!report.contains("initramfs.cpio.zst: sha256"), "{report}");
}

#[test]
fn source_date_epoch_from_env_or_flag_and_output_replacement() {
    let dir = scratch("ib-epoch-");
    let p = mini_profile(&dir, "[output]\ncompression = \"gzip\"\n");
    let out = dir.join("out");
    build_ok(cli().env("SOURCE_DATE_EPOCH", "12345"), &p, &out);
    let m = manifest(&out);
    assert_eq!(m.source_date_epoch, 12345);
    let entries =
        initramfs::read_entries(std::fs::File::open(out.join("initramfs.cpio.gz")).unwrap())
            .unwrap();
    assert!(entries.len() > 10);
    assert!(
        entries
            .iter()
            .all(|e| e.mtime <= 12345 && e.uid == 0 && e.gid == 0),
        "mtime/uid not clamped"
    );
    assert!(entries.iter().any(|e| e.mtime == 12345));

    // The flag wins over the environment; a previous build is replaced whole.
    let o = run(cli()
        .env("SOURCE_DATE_EPOCH", "12345")
        .args(["build", "--source-date-epoch", "777", "--profile"])
        .arg(&p)
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(manifest(&out).source_date_epoch, 777);
    let entries =
        initramfs::read_entries(std::fs::File::open(out.join("initramfs.cpio.gz")).unwrap())
            .unwrap();
    assert!(entries.iter().all(|e| e.mtime <= 777));

    // Unset: the documented default.
    build_ok(cli().env_remove("SOURCE_DATE_EPOCH"), &p, &out);
    assert_eq!(
        manifest(&out).source_date_epoch,
        image_builder::assemble::DEFAULT_SOURCE_DATE_EPOCH
    );

    // A directory that is not a previous build is never replaced.
    let precious = dir.join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), b"keep me").unwrap();
    let o = run(cli()
        .args(["build", "--profile"])
        .arg(&p)
        .arg("--out")
        .arg(&precious));
    assert!(
        !o.status.success() && stderr(&o).contains("refusing to replace"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(precious.join("notes.txt")).unwrap(),
        b"keep me"
    );
}

#[test]
fn baked_config_must_be_signed_by_the_trust_roots() {
    let dir = scratch("ib-config-");
    let doc_path = repo_root().join("configs/worker.toml");
    let doc = std::fs::read(&doc_path).unwrap();
    let config = dir.join("worker.toml");
    std::fs::write(&config, &doc).unwrap();
    let p = mini_profile(
        &dir,
        &format!("[config]\npath = \"{}\"\n", config.display()),
    );

    // No signature file at all.
    let err = build_fails(&p, &dir.join("out"));
    assert!(
        err.contains("config.path") && err.contains("worker.toml.sig: no such file"),
        "{err}"
    );

    // Signed by someone else.
    let stranger = basalt_api::sshkey::PrivateKey::from_seed(&[9u8; 32], "stranger");
    std::fs::write(
        dir.join("worker.toml.sig"),
        basalt_api::sshsig::sign(&stranger, basalt_api::CONFIG_NAMESPACE, &doc),
    )
    .unwrap();
    let err = build_fails(&p, &dir.join("out"));
    assert!(err.contains("baked config"), "{err}");

    // Signed by the admin: baked into both images, byte for byte.
    std::fs::write(
        dir.join("worker.toml.sig"),
        basalt_api::sshsig::sign(&fixture().admin, basalt_api::CONFIG_NAMESPACE, &doc),
    )
    .unwrap();
    let out = dir.join("out");
    build_ok(&mut cli(), &p, &out);
    let m = manifest(&out);
    let want = image_builder::hash::bytes(&doc);
    for files in [&m.initramfs.files, &m.rootfs.files] {
        let rec = files
            .iter()
            .find(|f| f.path == "/etc/basalt/config.toml")
            .expect("config baked");
        assert_eq!(rec.sha256.as_deref(), Some(want.as_str()));
        assert_eq!(rec.mode, "0600");
        assert!(
            files
                .iter()
                .any(|f| f.path == "/etc/basalt/config.toml.sig")
        );
    }
}

/// `[trust] min_generation` and `SOURCE_DATE_EPOCH` become the image's
/// floor (`/etc/basalt/image-policy.toml`), which a baked config must clear
/// like any config applied later.
#[test]
fn the_image_floor_is_written_and_binds_the_baked_config() {
    let dir = scratch("ib-floor-");
    let doc = std::fs::read(repo_root().join("configs/worker.toml")).unwrap();
    let config = dir.join("worker.toml");
    std::fs::write(&config, &doc).unwrap();
    std::fs::write(
        dir.join("worker.toml.sig"),
        basalt_api::sshsig::sign(&fixture().admin, basalt_api::CONFIG_NAMESPACE, &doc),
    )
    .unwrap();
    let profile = |min: u64| {
        mini_profile(
            &dir,
            &format!(
                "min_generation = {min}\n\n[config]\npath = \"{}\"\n",
                config.display()
            ),
        )
    };
    let err = build_fails(&profile(2), &dir.join("out"));
    assert!(
        err.contains("baked config")
            && err.contains("generation 1 is below this image's minimum generation 2"),
        "{err}"
    );
    let out = dir.join("out");
    build_ok(&mut cli(), &profile(1), &out);
    let want = basalt_api::scope::ImagePolicy {
        min_generation: 1,
        built_at: EPOCH.parse().unwrap(),
    }
    .to_toml();
    let m = manifest(&out);
    for files in [&m.initramfs.files, &m.rootfs.files] {
        let rec = files
            .iter()
            .find(|f| f.path == basalt_api::image_layout::IMAGE_POLICY)
            .expect("image policy in both images");
        assert_eq!(
            rec.sha256.as_deref(),
            Some(image_builder::hash::bytes(want.as_bytes()).as_str())
        );
        assert_eq!(rec.mode, "0644");
    }
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["build", "--help"],
        vec!["inspect", "--help"],
        vec!["verify", "--help"],
    ] {
        let o = run(cli().args(&args));
        assert!(o.status.success(), "{args:?}");
        assert!(
            stdout(&o).contains("Usage: image-builder"),
            "{args:?}: {}",
            stdout(&o)
        );
    }
    let o = run(cli().args(["build", "--help"]));
    assert!(stdout(&o).contains("SOURCE_DATE_EPOCH") && stdout(&o).contains("--machined"));
}

#[test]
fn nix_store_paths_go_to_nix_store_with_their_nar_hash() {
    let dir = scratch("ib-nix-");
    let store = dir.join("nix/store");
    let hello = store.join("0123456789abcdfghijklmnpqrsvwxyz-hello-1.0");
    std::fs::create_dir_all(hello.join("bin")).unwrap();
    std::fs::copy("/usr/bin/true", hello.join("bin/hello")).unwrap();
    std::os::unix::fs::symlink("hello", hello.join("bin/hi")).unwrap();
    let store_path = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-1.0";
    let p = mini_profile(
        &dir,
        &format!(
            "[nix]\nstore = \"{}\"\npaths = [\"{store_path}\"]\n\n[[binaries]]\nsource = \"{store_path}/bin/hello\"\ntarget = \"/usr/bin/hello\"\n",
            store.display()
        ),
    );
    let out = dir.join("out");
    build_ok(&mut cli(), &p, &out);
    let m = manifest(&out);
    let (hash, size) = image_builder::nix::nar_hash_of_path(&hello).unwrap();
    assert_eq!(m.nix_inputs.len(), 1);
    assert_eq!(m.nix_inputs[0].store_path, store_path);
    assert_eq!(m.nix_inputs[0].nar_hash, hash.to_sri_string());
    assert_eq!(m.nix_inputs[0].nar_size, size);
    let files: std::collections::BTreeMap<&str, &image_builder::manifest::FileRecord> = m
        .rootfs
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let bin = files[format!("{store_path}/bin/hello").as_str()];
    assert_eq!(
        bin.sha256,
        Some(
            image_builder::hash::file(Path::new("/usr/bin/true"))
                .unwrap()
                .0
        )
    );
    assert_eq!(bin.mode, "0555", "NAR executables are 0555");
    assert_eq!(
        files[format!("{store_path}/bin/hi").as_str()]
            .target
            .as_deref(),
        Some("hello")
    );
    assert_eq!(
        files["/usr/bin/hello"].target.as_deref(),
        Some(format!("{store_path}/bin/hello").as_str())
    );

    // A store path holding a shell is refused like any other.
    let bash = store.join("zyxwvsrqpnmlkjihgfdcba9876543210-bash-5.2");
    std::fs::create_dir_all(bash.join("bin")).unwrap();
    std::fs::copy("/usr/bin/true", bash.join("bin/bash")).unwrap();
    let p = mini_profile(
        &dir,
        &format!(
            "[nix]\nstore = \"{}\"\npaths = [\"{store_path}\", \"/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-bash-5.2\"]\n",
            store.display()
        ),
    );
    let err = build_fails(&p, &dir.join("out2"));
    assert!(
        err.contains("refusing `bash`")
            && err.contains("nix input /nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-bash-5.2"),
        "{err}"
    );

    // A binary from a store path that is not an input.
    let p = mini_profile(
        &dir,
        &format!(
            "[nix]\nstore = \"{}\"\npaths = [\"{store_path}\"]\n\n[[binaries]]\nsource = \"/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-bash-5.2/bin/x\"\ntarget = \"/usr/bin/x\"\n",
            store.display()
        ),
    );
    let err = build_fails(&p, &dir.join("out3"));
    assert!(err.contains("is not inside any of the Nix inputs"), "{err}");
}

#[test]
fn missing_library_of_a_library_names_both() {
    let dir = scratch("ib-elf2-");
    // A libext2fs whose own DT_NEEDED cannot be found, searched before the system one.
    patch_needed(
        "/usr/lib/x86_64-linux-gnu/libext2fs.so.2",
        "libcom_err.so.2",
        "libabsent.so.22",
        &dir.join("libext2fs.so.2"),
    );
    let mut resolver = image_builder::elf::Resolver::default();
    resolver.system_dirs.insert(0, dir.clone());
    let mut tree = image_builder::tree::Tree::new(1);
    let err = resolver
        .add_binary(
            &mut tree,
            Path::new("/usr/sbin/e2fsck"),
            Path::new("/usr/sbin/e2fsck"),
            None,
            "test",
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "/usr/sbin/e2fsck needs libabsent.so.22 (through {}/libext2fs.so.2)",
            dir.display()
        )),
        "{err}"
    );

    // Without the trap, the same call succeeds and brings the real libraries.
    let mut tree = image_builder::tree::Tree::new(1);
    let report = image_builder::elf::Resolver::default()
        .add_binary(
            &mut tree,
            Path::new("/usr/sbin/e2fsck"),
            Path::new("/usr/sbin/e2fsck"),
            None,
            "test",
        )
        .unwrap();
    assert!(
        report
            .libraries
            .iter()
            .any(|l| l.ends_with("libcom_err.so.2.1")),
        "{report:?}"
    );
}

#[test]
fn log_piped_to_a_file_has_no_colour_escapes() {
    let dir = scratch("ib-log-");
    let p = mini_profile(&dir, "");
    // stderr is a pipe here, as when a build is logged to a file.
    let o = build_ok(
        cli().env("RUST_LOG", "image_builder=info"),
        &p,
        &dir.join("out"),
    );
    let log = stderr(&o);
    assert!(log.contains("build complete"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a piped log: {log:?}"
    );
}

//! Shared by the image-builder integration tests: the CLI binary, a test
//! admin key, stand-in machined binaries and small profiles.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A fixed epoch, earlier than any file touched during the tests, so clamping is visible.
pub const EPOCH: &str = "1700000000";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_image-builder")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn debian_profile() -> PathBuf {
    repo_root().join("configs/images/debian.toml")
}

/// Files every test binary shares for its whole run.
pub struct Fixture {
    pub dir: PathBuf,
    pub admin_pub: PathBuf,
    pub admin_line: String,
    pub admin: basalt_api::sshkey::PrivateKey,
    /// A copy of `/usr/bin/true`: a dynamic stand-in for machined (which
    /// does not exist yet), so `/init` brings an ELF closure.
    pub machined: PathBuf,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = scratch("fixture-");
        let admin = basalt_api::sshkey::PrivateKey::from_seed(&[7u8; 32], "test-admin@basalt");
        let admin_line = admin.public().to_openssh();
        let admin_pub = dir.join("admin.pub");
        std::fs::write(&admin_pub, format!("# test admin\n{admin_line}\n")).expect("write key");
        let machined = dir.join("machined");
        std::fs::copy("/usr/bin/true", &machined).expect("copy /usr/bin/true");
        Fixture {
            dir,
            admin_pub,
            admin_line,
            admin,
            machined,
        }
    })
}

/// Where this test binary's files go: under cargo's per-target temp dir,
/// emptied when the binary starts, so runs never pile up image copies.
fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let binary = module_path!().split("::").next().unwrap_or("tests");
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("image-builder-{binary}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create scratch root");
        root
    })
}

/// A fresh directory that stays until the next run of this test binary.
pub fn scratch(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch_root())
        .expect("tempdir")
        .keep()
}

/// `image-builder` with the test environment: admin key, stand-in machined, fixed epoch.
pub fn cli() -> Command {
    let f = fixture();
    let mut c = Command::new(bin());
    c.env("BASALT_ADMIN_PUB", &f.admin_pub)
        .env("BASALT_MACHINED", &f.machined)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("RUST_LOG", "image_builder=warn");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run image-builder")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds `profile` into `out` and insists it worked.
pub fn build_ok(cmd: &mut Command, profile: &Path, out: &Path) -> Output {
    let o = run(cmd
        .args(["build", "--profile"])
        .arg(profile)
        .arg("--out")
        .arg(out));
    assert!(
        o.status.success(),
        "build of {} failed:\n{}",
        profile.display(),
        stderr(&o)
    );
    o
}

/// A small profile (one module, no binaries) for fast CLI tests; `extra` is
/// appended verbatim, so it may add `[[binaries]]` and the like.
pub fn mini_profile(dir: &Path, extra: &str) -> PathBuf {
    let f = fixture();
    let text = format!(
        r#"name = "mini"

[kernel]
image = "/boot/vmlinuz-*"
modules = ["vfat"]

[machined]
path = "{machined}"

[trust]
admins = ["{admin}"]

{extra}
"#,
        machined = f.machined.display(),
        admin = f.admin_line,
    );
    let p = dir.join("mini.toml");
    std::fs::write(&p, text).expect("write profile");
    p
}

pub fn manifest(out: &Path) -> image_builder::manifest::Manifest {
    image_builder::manifest::Manifest::read(&out.join("manifest.json")).expect("manifest")
}

/// Paths as GNU cpio / unsquashfs print them, made absolute like the manifest's.
pub fn absolute(listed: &str) -> String {
    let p = listed.trim_start_matches("./").trim_start_matches('/');
    format!("/{p}")
}

pub fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

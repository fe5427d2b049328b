//! OCI image archives from static binaries: byte-identical across builds
//! (whatever the binary file's own metadata), and a plain ustar that GNU
//! tar reads as the image layout containerd imports. (The import and a
//! container run with the real containerd are in
//! machined/tests/containerd_images.rs.)

use image_builder::oci::{self, OciImage};
use std::path::{Path, PathBuf};
use std::process::Command;

/// packages/pause built static, as scripts/test builds it for the images.
fn static_pause() -> PathBuf {
    // As configs/images/node.toml names them.
    let dir = std::env::var_os("BASALT_STATIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
                .join("x86_64-unknown-linux-gnu/release")
        });
    let p = dir.join("pause");
    assert!(
        p.is_file(),
        "{} is missing: run `CARGO_ENCODED_RUSTFLAGS=-Ctarget-feature=+crt-static cargo build \
         --release --target x86_64-unknown-linux-gnu -p pause -p echo` (scripts/test does)",
        p.display()
    );
    p
}

fn image(binary: &Path) -> OciImage {
    OciImage {
        name: "registry.k8s.io/pause:3.10.2".into(),
        binary: binary.to_owned(),
        path: "/pause".into(),
        entrypoint: vec!["/pause".into()],
        origin: "test".into(),
    }
}

const EPOCH: u32 = 1_700_000_000;

#[test]
fn two_builds_are_byte_identical() {
    let t = tempfile::tempdir().unwrap();
    // Two copies with different mtimes and modes: neither may leak in.
    let a = t.path().join("a");
    let b = t.path().join("b");
    std::fs::copy(static_pause(), &a).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::copy(static_pause(), &b).unwrap();
    std::fs::set_permissions(&b, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let first = oci::write(&image(&a), EPOCH, &t.path().join("1.tar")).unwrap();
    let second = oci::write(&image(&b), EPOCH, &t.path().join("2.tar")).unwrap();
    assert_eq!(first.manifest_digest, second.manifest_digest);
    assert!(first.bytes == second.bytes, "archives differ across builds");
    // The epoch is an input: another one is another archive.
    let other = oci::archive(&image(&a), EPOCH + 1).unwrap();
    assert!(other.bytes != first.bytes);
}

#[test]
fn gnu_tar_reads_the_layout_with_fixed_owner_and_mtime() {
    let t = tempfile::tempdir().unwrap();
    let tar = t.path().join("pause.tar");
    let archive = oci::write(&image(&static_pause()), EPOCH, &tar).unwrap();
    let out = Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvf"])
        .arg(&tar)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 7, "{listing}");
    for l in &lines {
        assert!(l.contains(" 0/0 "), "{l}");
        assert!(l.contains("2023-11-14 22:13:20"), "{l}");
    }
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(names[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(names[5..], ["index.json", "oci-layout"]);

    let x = t.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("index.json")).unwrap()).unwrap();
    let m = &index["manifests"][0];
    assert_eq!(m["digest"], archive.manifest_digest.as_str());
    assert_eq!(
        m["annotations"]["io.containerd.image.name"],
        "registry.k8s.io/pause:3.10.2"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        "3.10.2"
    );
    assert_eq!(m["platform"]["architecture"], "amd64");
    // The manifest's layer is a tar holding the binary, executable.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            x.join("blobs/sha256")
                .join(archive.manifest_digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(
            x.join("blobs/sha256")
                .join(layer.trim_start_matches("sha256:")),
        )
        .output()
        .unwrap();
    let layer_listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        layer_listing.starts_with("-rwxr-xr-x 0/0") && layer_listing.trim_end().ends_with(" pause"),
        "{layer_listing}"
    );
}

#[test]
fn a_dynamic_binary_is_refused_naming_it() {
    let e = oci::archive(&image(Path::new("/usr/bin/tar")), EPOCH)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("/usr/bin/tar") && e.contains("dynamically linked") && e.contains("crt-static"),
        "{e}"
    );
}

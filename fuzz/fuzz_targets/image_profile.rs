//! Image profiles (`image_builder::profile`): the TOML that names every
//! input of an image.
//!
//! Input: a profile. Seeds are the shipped `configs/images/*.toml`, and
//! copies whose paths point into this target's fixture directory.
//!
//! Every input goes through phase one (`check_schema`: syntax and schema).
//! The whole of `parse` (expansion, globbing, reading key files, checking
//! inputs exist) runs only when the profile cannot reach outside the
//! fixture: no string holds `..`, `$` or `~`, and none starts with `/`
//! except where it names a place in the image (`target`, an OCI image's
//! `name`, `path`, `entrypoint`). Otherwise a fuzzed glob such as `/**`
//! would walk the host's whole file system.
//!
//! Properties:
//! - nothing panics;
//! - every error is a profile error located in the text: it starts with
//!   the profile's file name and `:LINE:COL: ` (LINE and COL inside the
//!   text), or with the file name, `: ` and the TOML path of the key;
//! - phase one accepts whatever the whole parse accepts.
#![no_main]

use image_builder::Error;
use image_builder::profile::{self, LoadOptions};
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FILE: &str = "profile.toml";

/// A small tree the contained profiles may name: a kernel, machined, a key
/// file, a config and its signature, two binaries (not valid ones: only
/// paths matter here). One fixed directory, rewritten by every process, so
/// runs leave nothing new behind.
fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("basalt-fuzz-image-profile");
        let files: &[(&str, &[u8])] = &[
            ("boot/vmlinuz-6.1.0-fuzz", b"not a kernel"),
            ("target/release/machined", b"\x7fELF"),
            ("keys/admin.pub", b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9bef+Zt2mX6dOnr9MtAyUTybUPD2cDiyYg5Qu/z1rg admin\n"),
            ("worker.toml", b"generation = 1\n"),
            ("worker.toml.sig", b"-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----\n"),
            ("usr/sbin/mkfs.ext4", b"\x7fELF"),
            ("usr/sbin/e2fsck", b"\x7fELF"),
            ("motd", b"hello\n"),
            ("packages/.keep", b""),
        ];
        for (path, data) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, data).expect("write");
        }
        dir
    })
}

/// Whether every string of `value` (reached by `key` under `table`) stays
/// inside the fixture.
fn contained(value: &toml::Value, table: &str, key: &str) -> bool {
    match value {
        toml::Value::String(s) => {
            let image_side = key == "target"
                || (table == "oci_images" && matches!(key, "name" | "path" | "entrypoint"));
            !s.contains("..") && !s.contains(['$', '~']) && (image_side || !s.starts_with('/'))
        }
        toml::Value::Array(items) => items.iter().all(|v| contained(v, table, key)),
        toml::Value::Table(t) => t.iter().all(|(k, v)| contained(v, key, k)),
        _ => true,
    }
}

fn check_located(e: &Error, text: &str, file: &Path) {
    let Error::Profile(msg) = e else {
        panic!("not a profile error: {e}");
    };
    let rest = msg
        .strip_prefix(&format!("{}:", file.display()))
        .unwrap_or_else(|| panic!("error does not name the file: {msg}"));
    if let Some(keyed) = rest.strip_prefix(' ') {
        assert!(keyed.contains(": "), "no key path: {msg}");
        return;
    }
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("{msg}"));
    let col: usize = parts
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{msg}"));
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        (1..=lines.len()).contains(&line),
        "line {line} of {}: {msg}",
        lines.len()
    );
    assert!(
        (1..=lines[line - 1].chars().count() + 1).contains(&col),
        "{msg}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file: PathBuf = fixture().join(FILE);
    let schema = profile::check_schema(text, &file);
    if let Err(e) = &schema {
        check_located(e, text, &file);
    }
    let Ok(table) = text.parse::<toml::Table>() else {
        assert!(schema.is_err(), "phase one accepted what is not TOML");
        return;
    };
    if !table.iter().all(|(k, v)| contained(v, "", k)) {
        return;
    }
    let no_env = |_: &str| None;
    let options = LoadOptions {
        env: &no_env,
        machined: None,
    };
    match profile::parse(text, &file, &options) {
        Ok(_) => assert!(schema.is_ok(), "parse accepted what phase one refused"),
        Err(e) => check_located(&e, text, &file),
    }
});

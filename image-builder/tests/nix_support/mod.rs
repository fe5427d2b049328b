//! Shared setup for the `nix_*` tests: a private, offline Nix 2.8 store built from scratch.
//!
//! Nothing touches the machine's `/nix`: every Nix command runs against a chroot store
//! (`--store local?root=<tmp>/root`, objects at `<tmp>/root/nix/store`, state at
//! `<tmp>/root/nix/var`) with its own configuration directory and HOME. Nix builds for a chroot
//! store always run in a sandbox (mount namespace + chroot), which needs root (or unprivileged user
//! namespaces); `extra-sandbox-paths` exposes the host's `/bin/sh` and coreutils to the builders,
//! so no nixpkgs is needed. The nix.conf used:
//!
//! ```text
//! build-users-group =
//! substituters =
//! sandbox = false
//! extra-sandbox-paths = /bin /lib /lib64 /usr
//! experimental-features = nix-command flakes
//! ```
#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use image_builder::nix::{StorePath, parse_store_path};
use sha2::{Digest, Sha256};

pub const KEY_NAME: &str = "basalt-test-key-1";

/// Store paths built by the fixture derivation; `main` references `lib` (through an absolute
/// symlink) and the four `dep-*`, and `dep-a` references `lib` too.
pub const DERIVATIONS: &str = r#"
let
  common = { system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/bin:/usr/bin"; };
  lib = derivation (common // { name = "basalt-lib"; args = [ "-c" "echo lib > $out" ]; });
  dep = n: extra: derivation (common // {
    name = "basalt-dep-${n}";
    args = [ "-c" "mkdir $out && echo ${n} ${extra} > $out/data" ];
  });
  a = dep "a" "${lib}";
  b = dep "b" "";
  c = dep "c" "";
  d = dep "d" "";
  main = derivation (common // {
    name = "basalt-main";
    args = [ "-c" ''
      set -e
      mkdir -p $out/bin $out/share/empty $out/sub/deeper
      echo hello > $out/file
      printf '#!/bin/sh\necho hi\n' > $out/bin/tool
      chmod +x $out/bin/tool
      ln -s ../file $out/bin/link
      ln -s ${lib} $out/lib-link
      echo ${a} ${b} ${c} ${d} > $out/sub/refs
      seq 1 60000 > $out/sub/deeper/big
      printf 'x' > $out/sub/deeper/odd-size
    '' ];
  });
  graph = derivation (common // {
    name = "basalt-graph";
    exportReferencesGraph = [ "closure" main ];
    args = [ "-c" "cp closure $out" ];
  });
in { inherit main graph; }
"#;

pub struct NixFixture {
    pub dir: PathBuf,
    pub store_root: PathBuf,
    pub public_key: String,
    pub secret_key_file: PathBuf,
    /// `/nix/store/…-basalt-main`.
    pub main: StorePath,
    /// The `exportReferencesGraph` output (a file) describing main's closure.
    pub graph_file: PathBuf,
    /// `nix copy` destinations by compression: "xz", "zstd", "none".
    pub caches: BTreeMap<&'static str, PathBuf>,
}

impl NixFixture {
    pub fn store_uri(&self) -> String {
        format!("local?root={}", self.store_root.display())
    }

    /// A Nix CLI command against the private store and configuration.
    pub fn cmd(&self, program: &str) -> Command {
        nix_command(&self.dir, program)
    }

    /// Run `nix --store … <args>` and return stdout.
    pub fn nix(&self, args: &[&str]) -> String {
        let mut c = self.cmd("nix");
        c.args(["--extra-experimental-features", "nix-command flakes"])
            .args(["--store", &self.store_uri()])
            .args(args);
        run(c)
    }

    /// Run `nix-store --store … <args>` and return stdout.
    pub fn nix_store(&self, args: &[&str]) -> String {
        let mut c = self.cmd("nix-store");
        c.args(["--store", &self.store_uri()]).args(args);
        run(c)
    }

    /// Where a store path physically is in the private store.
    pub fn physical(&self, p: &StorePath) -> PathBuf {
        self.store_root.join("nix/store").join(p.to_basename())
    }

    /// `nix-store -qR main`, sorted.
    pub fn closure(&self) -> Vec<StorePath> {
        let mut v: Vec<StorePath> = self
            .nix_store(&["-qR", &self.main.to_string()])
            .lines()
            .map(|l| parse_store_path(l).expect("nix printed a store path"))
            .collect();
        v.sort();
        v
    }

    /// narHash (SRI), narSize and references of each path, from `nix path-info --json -r`.
    pub fn path_info(&self) -> BTreeMap<String, (String, u64, Vec<String>)> {
        let json = self.nix(&["path-info", "--json", "-r", &self.main.to_string()]);
        parse_path_info(&json)
    }

    /// `nix-store --dump <path> | nix-store --restore <dest>`: the reference unpack. `--dump`
    /// serialises a filesystem path, so it is given the object's physical location.
    pub fn restore_with_nix(&self, p: &StorePath, dest: &Path) {
        let nar = self.dir.join(format!("{}.dump.nar", p.to_basename()));
        let mut c = self.cmd("nix-store");
        c.arg("--dump").arg(self.physical(p));
        fs::write(&nar, run_bytes(c)).expect("write nar");
        nix_restore(&self.dir, &nar, dest);
    }
}

/// The fixture, built once per test binary.
pub fn fixture() -> &'static NixFixture {
    static FIXTURE: OnceLock<NixFixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

/// A Nix command with configuration and home isolated under `dir`.
pub fn nix_command(dir: &Path, program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("NIX_CONF_DIR", dir.join("conf"))
        .env("HOME", dir.join("home"))
        .env("XDG_CACHE_HOME", dir.join("home/.cache"))
        .env("XDG_CONFIG_HOME", dir.join("home/.config"))
        .env("XDG_DATA_HOME", dir.join("home/.local/share"))
        .env("NIX_PATH", "")
        .env_remove("NIX_REMOTE");
    c
}

/// `nix-store --restore dest < nar`.
pub fn nix_restore(dir: &Path, nar: &Path, dest: &Path) {
    let mut c = nix_command(dir, "nix-store");
    c.arg("--restore")
        .arg(dest)
        .stdin(fs::File::open(nar).expect("open nar"));
    run(c);
}

pub fn run(c: Command) -> String {
    String::from_utf8(run_bytes(c)).expect("utf8")
}

pub fn run_bytes(mut c: Command) -> Vec<u8> {
    let out = c
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?} (is nix-bin installed?): {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn build_fixture() -> NixFixture {
    // Shared by every test of the binary and kept after it (statics are never dropped), so it
    // lives under cargo's per-target temp directory, one per test binary, rebuilt on each run.
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "nix-test".to_owned());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nix-fixture-{binary}"));
    if dir.exists() {
        make_writable(&dir);
        fs::remove_dir_all(&dir).expect("remove the previous fixture");
    }
    fs::create_dir_all(&dir).expect("fixture dir");
    fs::create_dir_all(dir.join("conf")).expect("conf");
    fs::create_dir_all(dir.join("home")).expect("home");
    fs::write(
        dir.join("conf/nix.conf"),
        "build-users-group =\nsubstituters =\nsandbox = false\n\
         extra-sandbox-paths = /bin /lib /lib64 /usr\n\
         experimental-features = nix-command flakes\n",
    )
    .expect("nix.conf");
    let store_root = dir.join("root");
    let secret_key_file = dir.join("secret-key");
    let public_file = dir.join("public-key");
    let mut keygen = nix_command(&dir, "nix-store");
    keygen
        .args(["--generate-binary-cache-key", KEY_NAME])
        .arg(&secret_key_file)
        .arg(&public_file);
    run(keygen);
    let public_key = fs::read_to_string(&public_file)
        .expect("public key")
        .trim()
        .to_owned();
    fs::write(dir.join("drv.nix"), DERIVATIONS).expect("drv.nix");

    let mut fx = NixFixture {
        dir: dir.clone(),
        store_root,
        public_key,
        secret_key_file,
        main: parse_store_path("/nix/store/00000000000000000000000000000000-x").expect("x"),
        graph_file: PathBuf::new(),
        caches: BTreeMap::new(),
    };
    let build = |attr: &str| -> StorePath {
        let mut c = fx.cmd("nix-build");
        c.args(["--store", &fx.store_uri(), "--no-out-link", "-A", attr])
            .arg(dir.join("drv.nix"));
        let out = run(c);
        parse_store_path(out.trim()).expect("nix-build printed a store path")
    };
    let main = build("main");
    let graph = build("graph");
    fx.main = main;
    fx.graph_file = fx.physical(&graph);
    for compression in ["xz", "zstd", "none"] {
        let cache = dir.join(format!("cache-{compression}"));
        let to = format!(
            "file://{}?secret-key={}&compression={compression}",
            cache.display(),
            fx.secret_key_file.display()
        );
        fx.nix(&["copy", "--to", &to, &fx.main.to_string()]);
        fx.caches.insert(compression, cache);
    }
    fx
}

/// Store objects are read-only; make a tree removable again.
pub fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = meta.permissions().mode() | 0o200;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    if meta.is_dir() {
        for e in fs::read_dir(path).into_iter().flatten().flatten() {
            make_writable(&e.path());
        }
    }
}

/// Recursive description of a tree: type, contents, exec bit, symlink target, for comparison.
pub fn describe_tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, path: &Path, out: &mut Vec<(String, String)>) {
    let rel = path
        .strip_prefix(root)
        .expect("under root")
        .display()
        .to_string();
    let meta = fs::symlink_metadata(path).expect("metadata");
    let desc = if meta.file_type().is_symlink() {
        format!(
            "symlink -> {}",
            fs::read_link(path).expect("readlink").display()
        )
    } else if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for e in entries {
            walk(root, &e, out);
        }
        "directory".to_owned()
    } else {
        let exec = meta.permissions().mode() & 0o100 != 0;
        let contents = fs::read(path).expect("read");
        let digest: String = Sha256::digest(&contents)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("regular exec={exec} len={} sha256={digest}", contents.len())
    };
    out.push((rel, desc));
}

/// Every entry under `dir`, for "nothing was left behind" assertions.
pub fn list_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd {
            let p = e.expect("entry").path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(list_all(&p));
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// `nix path-info --json` output → store path → (narHash, narSize, references),
/// collected into whatever set or list the caller compares with.
pub fn parse_path_info<R: FromIterator<String>>(json: &str) -> BTreeMap<String, (String, u64, R)> {
    let v: serde_json::Value = serde_json::from_str(json).expect("path-info json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|o| {
            let refs = o["references"]
                .as_array()
                .expect("references")
                .iter()
                .map(|r| r.as_str().expect("string").to_owned())
                .collect();
            (
                o["path"].as_str().expect("path").to_owned(),
                (
                    o["narHash"].as_str().expect("narHash").to_owned(),
                    o["narSize"].as_u64().expect("narSize"),
                    refs,
                ),
            )
        })
        .collect()
}

/// The path of a plain HTTP/1.1 request line, after consuming its headers
/// (what the tests' tiny cache servers need, over TCP or TLS).
pub fn read_request_path(reader: &mut impl std::io::BufRead) -> Option<String> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    Some(path)
}

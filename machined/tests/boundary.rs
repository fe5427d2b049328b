//! `lib.rs` claims every side effect on the host goes through the boundary
//! modules. This keeps the claim true: machined's logic modules name no
//! syscall crate, no `unsafe`, no /proc, /sys or /dev path and no direct
//! filesystem call.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// The boundary: the only sources allowed to touch the host.
const BOUNDARY: &[&str] = &[
    "host/",
    // rtnetlink and the DHCP client's UDP socket.
    "network/netlink.rs",
    "network/dhcp_link.rs",
    // Processes: spawn, reap, signal, probe, cgroups, output pipes.
    "supervisor/spawn.rs",
    "supervisor/reaper.rs",
    "supervisor/process.rs",
    // The HTTP(S) readiness probe: the CA and client PEMs it reads at each
    // probe (they are reissued while services run), and its connection.
    "supervisor/http_probe.rs",
    "supervisor/cgroup.rs",
    "supervisor/logs.rs",
    // machined's own files, in a directory it is handed.
    "state.rs",
    "tls.rs",
    // The binary's edge.
    "main.rs",
];

const FORBIDDEN: &[&str] = &[
    "rustix::",
    "libc::",
    "nix::",
    "unsafe",
    "\"/proc",
    "\"/sys",
    "\"/dev/",
    "std::fs",
    "tokio::fs",
    " fs::",
    "(fs::",
    "std::process::Command",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `pat` in `code`, not as the tail of a longer name (`unix::` is not `nix::`).
fn mentions(code: &str, pat: &str) -> bool {
    code.match_indices(pat).any(|(i, _)| {
        !pat.starts_with(|c: char| c.is_alphanumeric())
            || !code[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn the_pattern_match_is_by_name() {
    assert!(mentions("use nix::sys;", "nix::"));
    assert!(!mentions("use tokio::signal::unix::{signal};", "nix::"));
    assert!(mentions("let _ = fs::read(p);", " fs::"));
}

#[test]
fn logic_modules_touch_the_host_only_through_the_boundary() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut logic = 0;
    let mut found = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        // Unit tests may use the real filesystem for their temp dirs.
        if BOUNDARY.iter().any(|b| rel.starts_with(b)) || rel.ends_with("tests.rs") {
            continue;
        }
        logic += 1;
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for pat in FORBIDDEN {
                if mentions(code, pat) {
                    found.push(format!("{rel}:{}: {pat}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        logic >= 20,
        "only {logic} logic modules found under {}",
        src.display()
    );
    assert!(
        found.is_empty(),
        "host access outside the boundary:\n{}",
        found.join("\n")
    );
}

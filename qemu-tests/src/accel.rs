//! TCG unless a quick probe proves KVM really runs guests here (on some
//! hosts /dev/kvm exists but hangs).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `kvm` or `tcg`; `BASALT_QEMU_ACCEL` overrides the probe.
pub fn accel(kernel: &Path) -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| match std::env::var("BASALT_QEMU_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        Ok("tcg") => "tcg",
        _ if kvm_boots(kernel) => "kvm",
        _ => "tcg",
    })
}

/// Boot the kernel with KVM for a few seconds and look for its banner.
fn kvm_boots(kernel: &Path) -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    let Ok(mut child) = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-m",
            "256",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let mut out = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while let Some(Ok(n)) = out.as_mut().map(|o| o.read(&mut buf)) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("Linux version") {
                let _ = tx.send(());
                return;
            }
        }
    });
    let start = Instant::now();
    let ok = rx.recv_timeout(Duration::from_secs(5)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "qemu-tests: KVM probe {} after {:?}",
        if ok { "booted" } else { "failed" },
        start.elapsed()
    );
    ok
}

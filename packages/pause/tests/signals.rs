//! pause exits 0 on SIGTERM and SIGINT, like upstream's, and keeps running
//! through SIGCHLD.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn signal(pid: u32, sig: i32) {
    let st = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn exits_zero_on(sig: i32) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pause"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The warning (not PID 1 here) comes once the signals are blocked.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("pause should be the first process"), "{line}");
    // A stray SIGCHLD is reaped, not fatal.
    signal(child.id(), libc::SIGCHLD);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        child.try_wait().unwrap().is_none(),
        "pause exited on SIGCHLD"
    );
    signal(child.id(), sig);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(rest.contains("Shutting down, got signal"), "{rest}");
}

#[test]
fn exits_zero_on_sigterm() {
    exits_zero_on(libc::SIGTERM);
}

#[test]
fn exits_zero_on_sigint() {
    exits_zero_on(libc::SIGINT);
}

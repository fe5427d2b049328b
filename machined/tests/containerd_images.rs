//! The OCI archives image-builder bakes into a node, with the real
//! containerd 2.4.2, ctr and runc: imported into the CRI namespace under
//! their names, and the echo image runs and answers HTTP.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod packaged;

use image_builder::oci::{self, OciImage};
use machined::containerd::{K8S_NAMESPACE, PAUSE_IMAGE};
use packaged::Containerd;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const ECHO_IMAGE: &str = "registry.basalt.test/echo:1";

fn archive(dir: &Path, name: &str, binary: &str) -> (std::path::PathBuf, String) {
    let image = OciImage {
        name: name.into(),
        binary: packaged::static_binary(binary),
        path: format!("/{binary}"),
        entrypoint: vec![format!("/{binary}")],
        origin: "test".into(),
    };
    let out = dir.join(oci::file_name(name));
    let a = oci::write(&image, 1_700_000_000, &out).unwrap();
    (out, a.manifest_digest)
}

#[test]
fn baked_archives_import_under_their_names_and_echo_runs() {
    let d = Containerd::start();
    let (pause_tar, pause_digest) = archive(d.root.path(), PAUSE_IMAGE, "pause");
    let (echo_tar, _) = archive(d.root.path(), ECHO_IMAGE, "echo");
    for tar in [&pause_tar, &echo_tar] {
        d.ctr_ok(&[
            "-n",
            K8S_NAMESPACE,
            "images",
            "import",
            tar.to_str().unwrap(),
        ]);
    }
    let ls = d.ctr_ok(&["-n", K8S_NAMESPACE, "images", "ls"]);
    let pause_line = ls
        .lines()
        .find(|l| l.starts_with(&format!("{PAUSE_IMAGE} ")))
        .unwrap_or_else(|| panic!("no {PAUSE_IMAGE}:\n{ls}"));
    assert!(pause_line.contains(&pause_digest), "{pause_line}");
    assert!(pause_line.contains("linux/amd64"), "{pause_line}");
    assert!(ls.contains(ECHO_IMAGE), "{ls}");

    // The CRI plugin sees it too (what the kubelet asks for).
    let check = d.ctr_ok(&["-n", K8S_NAMESPACE, "images", "check"]);
    assert!(
        check
            .lines()
            .any(|l| l.starts_with(PAUSE_IMAGE) && l.contains("complete")),
        "{check}"
    );

    // Run echo with runc, in the host's network namespace, on a free port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let id = format!("echo-{}", std::process::id());
    d.ctr_ok(&[
        "-n",
        K8S_NAMESPACE,
        "run",
        "-d",
        "--net-host",
        "--env",
        &format!("PORT={port}"),
        ECHO_IMAGE,
        &id,
    ]);
    let started = Instant::now();
    let answer = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                break out;
            }
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "echo never listened on {port}: {e}\n{}",
                    d.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    eprintln!("echo answered after {:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("request: GET /ping HTTP/1.1"), "{answer}");
    assert!(answer.contains("basalt echo"), "{answer}");
    d.ctr_ok(&["-n", K8S_NAMESPACE, "task", "kill", "-s", "SIGKILL", &id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d
        .ctr(&["-n", K8S_NAMESPACE, "task", "delete", &id])
        .status
        .code()
        != Some(0)
    {
        assert!(Instant::now() < deadline, "task {id} never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    d.ctr_ok(&["-n", K8S_NAMESPACE, "containers", "delete", &id]);
}

//! `machine.registries` with the real peers: machined writes the hosts
//! directory, containerd 2.4.2's `ctr images pull --hosts-dir` reads it and
//! pulls a `docker.io` name through the mirror, a real distribution
//! registry (packages/distribution) on 127.0.0.1 that holds the image
//! under the upstream's path. The registry's access log proves the pull
//! went to the mirror (Docker Hub has no such repository).

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod packaged;

use basalt_api::config::{Registries, RegistryMirror};
use image_builder::oci::{self, OciImage};
use machined::containerd::{self, K8S_NAMESPACE};
use machined::host::Host;
use packaged::Containerd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Registry {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: &std::path::Path) -> (Registry, u16) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = dir.join("registry.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(packaged::binary("distribution", "registry"))
        .arg("serve")
        .arg(&config)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut r = Registry { child, log };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(st) = r.child.try_wait().unwrap() {
            panic!(
                "registry exited ({st}):\n{}",
                std::fs::read_to_string(&r.log).unwrap()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "registry never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (r, port)
}

#[test]
fn a_docker_io_pull_goes_through_the_configured_mirror() {
    let d = Containerd::start();
    let (registry, port) = start_registry(d.root.path());

    // Put the echo image into the mirror as docker.io/basalt-test/echo:1
    // would be: repository path basalt-test/echo.
    let local = "registry.basalt.test/echo:1";
    let archive = d.root.path().join("echo.tar");
    oci::write(
        &OciImage {
            name: local.into(),
            binary: packaged::static_binary("echo"),
            path: "/echo".into(),
            entrypoint: vec!["/echo".into()],
            origin: "test".into(),
        },
        1_700_000_000,
        &archive,
    )
    .unwrap();
    let staged = format!("127.0.0.1:{port}/basalt-test/echo:1");
    d.ctr_ok(&[
        "-n",
        "staging",
        "images",
        "import",
        archive.to_str().unwrap(),
    ]);
    d.ctr_ok(&["-n", "staging", "images", "tag", local, &staged]);
    d.ctr_ok(&["-n", "staging", "images", "push", "--plain-http", &staged]);
    let pushed = d.ctr_ok(&["-n", "staging", "images", "ls"]);

    // machined's hosts directory, where containerd's CRI config points.
    let host = Host::dev(d.root.path());
    let mut registries = Registries::default();
    registries.mirrors.insert(
        "docker.io".into(),
        RegistryMirror {
            endpoints: vec![format!("http://127.0.0.1:{port}")],
            skip_verify: false,
            ca: None,
        },
    );
    machined::registries::converge(&registries, &host, containerd::CERTS_D).unwrap();
    let certs_d = host.path(containerd::CERTS_D);

    let started = Instant::now();
    d.ctr_ok(&[
        "-n",
        K8S_NAMESPACE,
        "images",
        "pull",
        "--hosts-dir",
        certs_d.to_str().unwrap(),
        "docker.io/basalt-test/echo:1",
    ]);
    eprintln!("pulled through the mirror in {:?}", started.elapsed());
    let ls = d.ctr_ok(&["-n", K8S_NAMESPACE, "images", "ls"]);
    let line = ls
        .lines()
        .find(|l| l.starts_with("docker.io/basalt-test/echo:1 "))
        .unwrap_or_else(|| panic!("not pulled:\n{ls}"));
    // The same image as pushed (same manifest digest).
    let digest = line.split_whitespace().nth(2).unwrap();
    assert!(pushed.contains(digest), "{line}\n{pushed}");
    let log = std::fs::read_to_string(&registry.log).unwrap();
    assert!(
        log.contains("/v2/basalt-test/echo/manifests/1") && log.contains("ns=docker.io"),
        "the mirror saw no pull:\n{log}"
    );

    // Mirrors removed from the config: the hosts file is gone.
    machined::registries::converge(&Registries::default(), &host, containerd::CERTS_D).unwrap();
    assert!(!certs_d.join("docker.io").exists());
}

//! The API under load and under a slow client: many concurrent readers are all
//! served, and a client dribbling its headers is cut off without starving others.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod any_cert;
#[path = "../../api/tests/cases/mod.rs"]
mod cases;

use any_cert::AnyCert;
use rustls::pki_types::ServerName;

use basalt_api::rpc::{NodeMode, Status};
use basaltctl::client::NodeClient;
use machined::devmode::{self, DevOptions, RunningNode};
use machined::server::Limits;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn start(limits: Limits) -> (tokio::runtime::Runtime, tempfile::TempDir, RunningNode) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/basalt")).unwrap();
    std::fs::write(
        root.path().join("etc/basalt/trust.toml"),
        format!("admins = [\"{}\"]\n", cases::key(1).public().to_openssh()),
    )
    .unwrap();
    let node = rt
        .block_on(devmode::start(DevOptions {
            root: root.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            limits,
            services: Vec::new(),
        }))
        .unwrap();
    (rt, root, node)
}

#[test]
fn two_hundred_concurrent_status_requests_all_succeed() {
    let (_rt, _root, node) = start(Limits::default());
    let client = Arc::new(
        NodeClient::new(
            &node.addr.to_string(),
            Some(node.fingerprint.clone()),
            Arc::new(cases::key(1)),
        )
        .unwrap(),
    );
    let barrier = Arc::new(std::sync::Barrier::new(200));
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let (c, b) = (Arc::clone(&client), Arc::clone(&barrier));
            std::thread::spawn(move || {
                b.wait();
                c.get::<Status>("/v1/status").map(|s| s.mode)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().ok() == Some(&NodeMode::Maintenance))
    );
}

#[test]
fn slow_headers_are_cut_off_while_others_are_served() {
    let header_timeout = Duration::from_secs(2);
    let (_rt, _root, node) = start(Limits {
        header_timeout,
        ..Limits::default()
    });
    let addr = node.addr;
    let slow = std::thread::spawn(move || {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
        tls.sock
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let started = Instant::now();
        for b in b"GET /v1/status HTTP/1.1\r\nHost: node\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n"
            .iter()
        {
            if tls.write_all(&[*b]).and_then(|_| tls.flush()).is_err() {
                return started.elapsed();
            }
            let mut buf = [0u8; 256];
            match tls.read(&mut buf) {
                Ok(0) => return started.elapsed(),
                Ok(_) => return started.elapsed(), // a 408 response, then close
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return started.elapsed(),
            }
            std::thread::sleep(Duration::from_millis(900));
        }
        panic!("server never cut the slow client off");
    });
    // Meanwhile an ordinary client is served promptly.
    let client = NodeClient::new(
        &addr.to_string(),
        Some(node.fingerprint.clone()),
        Arc::new(cases::key(1)),
    )
    .unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        client.get::<Status>("/v1/status").unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "status took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let cut_after = slow.join().unwrap();
    assert!(
        cut_after >= header_timeout - Duration::from_millis(200),
        "cut off too early: {cut_after:?}"
    );
    assert!(
        cut_after < header_timeout + Duration::from_secs(3),
        "cut off too late: {cut_after:?}"
    );
}

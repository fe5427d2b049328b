//! machined's HTTPS API in-process (dev mode), driven by basaltctl's client:
//! authentication, every bad input of the foundation table, apply modes.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../api/tests/cases/mod.rs"]
mod cases;

use basalt_api::request;
use basalt_api::route::Route;
use basalt_api::rpc::{
    ApplyMode, ApplyRequest, ApplyResponse, Concern, NodeMode, Resource, ResourceState, Status,
};
use basaltctl::client::{ClientError, NodeClient};
use cases::{edit, key, sign, worker};
use machined::devmode::{self, DevOptions, RunningNode};
use machined::server::Limits;
use machined::supervisor::ServiceSpec;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A dev node on its own runtime; tests are plain blocking code, as basaltctl is.
struct Dev {
    node: Option<RunningNode>,
    rt: tokio::runtime::Runtime,
    root: tempfile::TempDir,
}

fn trust_roots(root: &Path) {
    trust_roots_with(root, 1)
}

/// Image trust roots: admins keys 1 and 2, reader key 3, `threshold` of 2.
fn trust_roots_with(root: &Path, threshold: usize) {
    let dir = root.join("etc/basalt");
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "admins = [\"{}\", \"{}\"]\nreaders = [\"{}\"]\nthreshold = {threshold}\n",
        key(1).public().to_openssh(),
        key(2).public().to_openssh(),
        key(3).public().to_openssh()
    );
    std::fs::write(dir.join("trust.toml"), text).unwrap();
}

fn boot_at(rt: &tokio::runtime::Runtime, root: &Path, limits: Limits) -> RunningNode {
    boot_with(rt, root, limits, Vec::new(), "127.0.0.1:0")
}

fn boot_with(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    limits: Limits,
    services: Vec<ServiceSpec>,
    listen: &str,
) -> RunningNode {
    rt.block_on(devmode::start(DevOptions {
        root: root.to_path_buf(),
        listen: listen.parse().unwrap(),
        limits,
        services,
    }))
    .unwrap()
}

fn dev(limits: Limits) -> Dev {
    dev_with(limits, Vec::new())
}

fn dev_with(limits: Limits, services: Vec<ServiceSpec>) -> Dev {
    dev_on(limits, services, "127.0.0.1:0")
}

fn dev_on(limits: Limits, services: Vec<ServiceSpec>, listen: &str) -> Dev {
    dev_prepared(limits, services, listen, |_| {})
}

/// A dev node whose root `prepare` fills (image files, firmware ids)
/// before it boots.
fn dev_prepared(
    limits: Limits,
    services: Vec<ServiceSpec>,
    listen: &str,
    prepare: impl FnOnce(&Path),
) -> Dev {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    trust_roots(root.path());
    prepare(root.path());
    let node = boot_with(&rt, root.path(), limits, services, listen);
    Dev {
        node: Some(node),
        rt,
        root,
    }
}

impl Dev {
    fn node(&self) -> &RunningNode {
        self.node.as_ref().unwrap()
    }

    fn client(&self, k: u8) -> NodeClient {
        let n = self.node();
        NodeClient::new(
            &n.addr.to_string(),
            Some(n.fingerprint.clone()),
            Arc::new(key(k)),
        )
        .unwrap()
    }

    /// Every file and symlink in STATE with its bytes.
    fn state_snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        snapshot(&self.root.path().join("var/lib/basalt/state"), "", &mut out);
        out
    }
}

fn snapshot(dir: &Path, rel: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = format!("{rel}/{}", e.file_name().to_string_lossy());
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if meta.file_type().is_symlink() {
            out.insert(
                name,
                std::fs::read_link(e.path())
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            );
        } else if meta.is_dir() {
            snapshot(&e.path(), &name, out);
        } else {
            out.insert(name, std::fs::read(e.path()).unwrap());
        }
    }
}

/// The worker example administered by keys 1 and 2, read by key 3 (the
/// table's policy and the image roots of these tests).
fn worker_with_reader() -> String {
    let k = |n: u8| key(n).public().to_openssh();
    let doc = edit(
        &worker(),
        &format!("  \"{}\",\n", k(1)),
        &format!("  \"{}\",\n  \"{}\",\n", k(1), k(2)),
    );
    edit(&doc, "readers = []", &format!("readers = [\"{}\"]", k(3)))
}

fn apply_req(doc: &str, sig: &str, mode: ApplyMode) -> ApplyRequest {
    ApplyRequest {
        config: doc.to_string(),
        signatures: sig.to_string(),
        mode,
        dry_run: false,
        try_timeout_secs: None,
    }
}

/// Client code is blocking, like the CLI; this keeps the tests' shape plain.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    f()
}

fn with_generation(doc: &str, g: u64) -> String {
    edit(doc, "generation = 1", &format!("generation = {g}"))
}

fn api_status(e: &ClientError) -> u16 {
    e.status()
        .unwrap_or_else(|| panic!("not an API error: {e}"))
}

#[test]
fn auth_matrix() {
    let d = dev(Limits {
        nonce_ttl: Duration::from_millis(300),
        ..Limits::default()
    });
    let (admin, reader, stranger) = (d.client(1), d.client(3), d.client(9));
    let doc = worker();
    let body = serde_json::to_vec(&apply_req(&doc, &sign(1, &doc), ApplyMode::Auto)).unwrap();
    blocking(move || {
        // No signature at all.
        let e = admin
            .send_raw("GET", "/v1/status", vec![], None, None)
            .unwrap_err();
        assert_eq!(api_status(&e), 401);
        assert!(e.to_string().contains("not signed"), "{e}");
        // A key the node does not know.
        let e = stranger.get::<Status>("/v1/status").unwrap_err();
        assert_eq!(api_status(&e), 401);
        assert!(e.to_string().contains("is not trusted by this node"), "{e}");
        // A reader reads, but may not apply.
        assert_eq!(
            reader.get::<Status>("/v1/status").unwrap().mode,
            NodeMode::Maintenance
        );
        let e = reader.send("POST", "/v1/apply", body.clone()).unwrap_err();
        assert_eq!(api_status(&e), 403);
        assert!(
            e.to_string()
                .contains("reader key; this call needs an admin"),
            "{e}"
        );
        // A captured request replayed verbatim.
        let nonce = admin.nonce().unwrap();
        let sig = request::sign(&key(1), "GET", "/v1/status", b"", &nonce);
        admin
            .send_raw("GET", "/v1/status", vec![], Some(&nonce), Some(&sig))
            .unwrap();
        let e = admin
            .send_raw("GET", "/v1/status", vec![], Some(&nonce), Some(&sig))
            .unwrap_err();
        assert_eq!(api_status(&e), 401);
        assert!(e.to_string().contains("unknown or already used"), "{e}");
        // A signature for one request does not authorise another.
        let nonce = admin.nonce().unwrap();
        let sig = request::sign(&key(1), "GET", "/v1/status", b"", &nonce);
        let e = admin
            .send_raw("POST", "/v1/reboot", vec![], Some(&nonce), Some(&sig))
            .unwrap_err();
        assert_eq!(api_status(&e), 401);
        // A nonce the node never issued, and an expired one.
        let sig = request::sign(&key(1), "GET", "/v1/status", b"", "made-up");
        let e = admin
            .send_raw("GET", "/v1/status", vec![], Some("made-up"), Some(&sig))
            .unwrap_err();
        assert!(e.to_string().contains("unknown or already used"), "{e}");
        let nonce = admin.nonce().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let sig = request::sign(&key(1), "GET", "/v1/status", b"", &nonce);
        let e = admin
            .send_raw("GET", "/v1/status", vec![], Some(&nonce), Some(&sig))
            .unwrap_err();
        assert_eq!(api_status(&e), 401);
        assert!(e.to_string().contains("expired"), "{e}");
        // The admin applies.
        let r: ApplyResponse = serde_json::from_slice(
            &admin
                .send("POST", "/v1/apply", body)
                .unwrap()
                .bytes()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.generation, 1);
        let s = admin.get::<Status>("/v1/status").unwrap();
        assert_eq!(
            (s.mode.as_str(), s.generation, s.hostname.as_str()),
            ("configured", 1, "worker-1")
        );
    });
}

#[test]
fn every_bad_input_is_refused_and_changes_nothing() {
    let d = dev(Limits::default());
    let admin = d.client(1);
    // Start from a configured node (generation 1) whose trust section matches
    // the table's policy, so refusals must leave real state alone.
    let good = worker_with_reader();
    let sig = sign(1, &good);
    let c = d.client(1);
    blocking(move || {
        c.post::<_, ApplyResponse>("/v1/apply", &apply_req(&good, &sig, ApplyMode::Auto))
            .unwrap()
    });
    let before = d.state_snapshot();
    let hostname = std::fs::read(d.root.path().join("proc/sys/kernel/hostname")).unwrap();

    let mut requests = Vec::new();
    for c in cases::config_cases() {
        // Raise the generation where the case leaves it intact, so only the defect is refused.
        let doc = if c.doc.contains("generation = 1\n") {
            with_generation(&c.doc, 2)
        } else {
            c.doc.clone()
        };
        let sig = sign(1, &doc);
        requests.push((c.name.to_string(), doc, sig, c.message.to_string()));
    }
    let mut skipped = 0;
    for c in cases::sig_cases() {
        // Cases needing another trust policy or current generation:
        // signature_cases_on_nodes_with_their_policy_and_generation.
        if c.policy.threshold() != 1 || c.current != 0 {
            skipped += 1;
            continue;
        }
        let sig = String::from_utf8_lossy(&c.sig).into_owned();
        requests.push((c.name.to_string(), c.doc.clone(), sig, c.message.clone()));
    }
    // Replays: generation 1 again, and an older one.
    let replay = worker();
    requests.push((
        "replayed generation".into(),
        replay.clone(),
        sign(1, &replay),
        "generation 1 is not newer than the node's current generation 1".into(),
    ));
    assert!(requests.len() >= 50, "only {} cases", requests.len());
    assert!(skipped <= 3);

    let failures = blocking(move || {
        let mut failures = Vec::new();
        for (name, doc, sig, message) in requests {
            match admin
                .post::<_, ApplyResponse>("/v1/apply", &apply_req(&doc, &sig, ApplyMode::Auto))
            {
                Ok(_) => failures.push(format!("{name}: accepted")),
                Err(e) if !e.to_string().contains(&message) => {
                    failures.push(format!("{name}: expected …{message}…, got {e}"))
                }
                Err(e) if !matches!(e.status(), Some(400 | 403 | 409)) => {
                    failures.push(format!("{name}: status {e}"))
                }
                Err(_) => {}
            }
        }
        failures
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(d.state_snapshot(), before, "STATE changed");
    assert_eq!(
        std::fs::read(d.root.path().join("proc/sys/kernel/hostname")).unwrap(),
        hostname
    );
}

#[test]
fn dry_run_changes_nothing_and_try_rolls_back() {
    let d = dev(Limits::default());
    let admin = Arc::new(d.client(1));
    let g1 = worker();
    let g2 = edit(
        &with_generation(&g1, 2),
        "hostname = \"worker-1\"",
        "hostname = \"worker-try\"",
    );
    let (s1, s2) = (sign(1, &g1), sign(1, &g2));
    let a = Arc::clone(&admin);
    let snap = blocking(move || {
        a.post::<_, ApplyResponse>("/v1/apply", &apply_req(&g1, &s1, ApplyMode::Auto))
            .unwrap();
        let mut dry = apply_req(&g2, &s2, ApplyMode::Auto);
        dry.dry_run = true;
        let plan = a.post::<_, ApplyResponse>("/v1/apply", &dry).unwrap();
        assert!(
            plan.plan
                .iter()
                .any(|s| s == "set hostname worker-try (was worker-1)"),
            "{:?}",
            plan.plan
        );
        assert_eq!(a.get::<Status>("/v1/status").unwrap().generation, 1);
        let mut req = apply_req(&g2, &s2, ApplyMode::Try);
        req.try_timeout_secs = Some(1);
        a.post::<_, ApplyResponse>("/v1/apply", &req).unwrap();
        let s = a.get::<Status>("/v1/status").unwrap();
        assert_eq!((s.generation, s.hostname.as_str()), (2, "worker-try"));
        assert!(s.try_pending_secs.is_some());
        (g2, s2)
    });
    std::thread::sleep(Duration::from_millis(2000));
    let a = Arc::clone(&admin);
    blocking(move || {
        let s = a.get::<Status>("/v1/status").unwrap();
        assert_eq!(
            (s.generation, s.hostname.as_str(), s.try_pending_secs),
            (1, "worker-1", None)
        );
        // The abandoned generation may be tried again, and confirmed this time.
        let (g2, s2) = snap;
        let mut req = apply_req(&g2, &s2, ApplyMode::Try);
        req.try_timeout_secs = Some(1);
        a.post::<_, ApplyResponse>("/v1/apply", &req).unwrap();
        a.post::<_, serde_json::Value>("/v1/apply/confirm", &serde_json::json!({}))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(a.get::<Status>("/v1/status").unwrap().generation, 2);
    });
}

#[test]
fn staged_applies_at_next_boot() {
    let mut d = dev(Limits::default());
    let admin = d.client(1);
    let g1 = worker();
    let g2 = edit(
        &with_generation(&g1, 2),
        "hostname = \"worker-1\"",
        "hostname = \"worker-staged\"",
    );
    let (s1, s2) = (sign(1, &g1), sign(1, &g2));
    blocking(move || {
        admin
            .post::<_, ApplyResponse>("/v1/apply", &apply_req(&g1, &s1, ApplyMode::Auto))
            .unwrap();
        admin
            .post::<_, ApplyResponse>("/v1/apply", &apply_req(&g2, &s2, ApplyMode::Staged))
            .unwrap();
        let s = admin.get::<Status>("/v1/status").unwrap();
        assert_eq!(
            (s.generation, s.staged_generation, s.hostname.as_str()),
            (1, Some(2), "worker-1")
        );
    });
    // "Reboot": stop this node, boot another from the same root.
    let fp = d.node().fingerprint.clone();
    d.node.take().unwrap().stop();
    d.node = Some(boot_at(&d.rt, d.root.path(), Limits::default()));
    assert_eq!(d.node().fingerprint, fp, "TLS identity persists in STATE");
    let admin = d.client(1);
    blocking(move || {
        let s = admin.get::<Status>("/v1/status").unwrap();
        assert_eq!(
            (s.generation, s.staged_generation, s.hostname.as_str()),
            (2, None, "worker-staged")
        );
    });
}

#[test]
fn pinning_refuses_another_certificate() {
    let d = dev(Limits::default());
    let n = d.node();
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
    let c = NodeClient::new(&n.addr.to_string(), Some(wrong), Arc::new(key(1))).unwrap();
    let tofu = NodeClient::new(&n.addr.to_string(), None, Arc::new(key(1))).unwrap();
    let fp = n.fingerprint.clone();
    blocking(move || {
        let e = c.get::<Status>("/v1/status").unwrap_err();
        assert!(e.to_string().contains("is pinned"), "{e}");
        tofu.get::<Status>("/v1/status").unwrap();
        assert_eq!(tofu.seen_fingerprint(), Some(fp));
    });
}

/// `openssl s_client` against the API: what a real client is offered and
/// refused. Spawned through machined's reaper, which this process runs for
/// the dev node and which would otherwise take the child's exit status.
fn s_client(addr: &str, args: &[&str]) -> (bool, String) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", addr, "-servername", "basalt"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, exit) = machined::supervisor::spawn_reaped(&mut cmd)
        .expect("openssl must be installed (Debian: openssl)");
    let mut text = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let exit = exit.blocking_recv().expect("openssl's exit");
    (exit.success(), text + &err)
}

#[test]
fn the_api_speaks_tls_1_3_only_to_openssl() {
    let d = dev(Limits::default());
    let addr = d.node().addr.to_string();
    // Each TLS 1.3 suite rustls offers is accepted...
    for suite in [
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_128_GCM_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ] {
        let (ok, text) = s_client(&addr, &["-tls1_3", "-ciphersuites", suite]);
        assert!(ok, "{suite}: {text}");
        assert!(
            text.contains("New, TLSv1.3, Cipher is") && text.contains(suite),
            "{suite}: {text}"
        );
    }
    // ...with an ECDSA P-256 certificate, the one `status` pins.
    let (_, text) = s_client(&addr, &["-tls1_3"]);
    assert!(
        text.contains("ECDSA") || text.contains("id-ecPublicKey"),
        "{text}"
    );
    // TLS 1.2 and older are refused at the handshake, whatever the suite.
    for old in ["-tls1_2", "-tls1_1", "-tls1"] {
        let (ok, text) = s_client(&addr, &[old]);
        assert!(!ok, "{old} was accepted: {text}");
        assert!(
            // rustls answers 1.2 with "protocol version"; OpenSSL 3's 1.1
            // and 1.0 offers carry no suite it shares: "handshake failure".
            (text.contains("alert protocol version") || text.contains("alert handshake failure"))
                && text.contains("Cipher is (NONE)"),
            "{old}: {text}"
        );
    }
}

#[test]
fn services_start_with_a_config_and_are_managed_through_the_api() {
    let svc = ServiceSpec::new(
        "greeter",
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo hello from greeter; exec sleep 1000".into(),
        ],
    );
    let d = dev_with(Limits::default(), vec![svc]);
    let admin = d.client(1);
    let doc = worker_with_reader();
    let sig = sign(1, &doc);
    // Maintenance mode: no services yet.
    let list: serde_json::Value = admin.get("/v1/services").unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
    admin
        .post::<_, ApplyResponse>("/v1/apply", &apply_req(&doc, &sig, ApplyMode::Auto))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let pid = loop {
        let list: serde_json::Value = admin.get("/v1/services").unwrap();
        let g = &list[0];
        if g["state"] == "running" && g["pid"].is_u64() {
            break g["pid"].as_u64().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "greeter never ran: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let logs = admin
        .send("GET", "/v1/logs/greeter", vec![])
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(logs, "hello from greeter\n");
    // Follow: the existing line, then the line printed after a restart.
    let stream = admin
        .send("GET", "/v1/logs/greeter?follow=1", vec![])
        .unwrap();
    let mut lines = std::io::BufReader::new(stream).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "hello from greeter");
    admin
        .post::<_, serde_json::Value>("/v1/services/greeter/restart", &serde_json::json!({}))
        .unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "hello from greeter");
    let list: serde_json::Value = admin.get("/v1/services").unwrap();
    assert_ne!(list[0]["pid"].as_u64(), Some(pid), "{list}");
    let e = admin
        .post::<_, serde_json::Value>("/v1/services/nope/restart", &serde_json::json!({}))
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    // Readers see services but cannot restart them.
    let reader = d.client(3);
    let e = reader
        .post::<_, serde_json::Value>("/v1/services/greeter/restart", &serde_json::json!({}))
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    d.rt.block_on(d.node().node.supervisor().stop_all());
}

#[test]
fn metrics_are_served_unauthenticated_where_the_config_says() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dev(Limits::default());
    let admin = d.client(1);
    let doc = edit(
        &worker(),
        "listen = \"127.0.0.1:9100\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    admin
        .post::<_, ApplyResponse>(
            "/v1/apply",
            &apply_req(&doc, &sign(1, &doc), ApplyMode::Auto),
        )
        .unwrap();
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let m = get("/metrics");
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(m.contains("\nbasalt_config_generation 1\n"), "{m}");
    assert!(
        !m.contains("PRIVATE")
            && !m.contains(
                cases::key(1)
                    .public()
                    .to_openssh()
                    .split(' ')
                    .nth(1)
                    .unwrap()
            )
    );
    assert!(
        get("/v1/status").starts_with("HTTP/1.1 404"),
        "only metrics are unauthenticated"
    );
}

#[test]
fn reset_wipes_state_and_reboots_into_maintenance() {
    let mut d = dev(Limits::default());
    let admin = d.client(1);
    let doc = worker_with_reader();
    admin
        .post::<_, ApplyResponse>(
            "/v1/apply",
            &apply_req(&doc, &sign(1, &doc), ApplyMode::Auto),
        )
        .unwrap();
    let e = d
        .client(3)
        .post::<_, serde_json::Value>("/v1/reset", &serde_json::json!({}))
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "readers cannot reset");
    admin
        .post::<_, serde_json::Value>("/v1/reset", &serde_json::json!({}))
        .unwrap();
    assert!(
        d.state_snapshot().is_empty(),
        "{:?}",
        d.state_snapshot().keys().collect::<Vec<_>>()
    );
    let ev = d.node.as_mut().unwrap().power.try_recv().unwrap();
    assert_eq!(ev, machined::node::PowerEvent::Reboot);
    // "Reboot": a new identity, maintenance mode, image roots trusted again.
    let fp = d.node().fingerprint.clone();
    d.node.take().unwrap().stop();
    d.node = Some(boot_at(&d.rt, d.root.path(), Limits::default()));
    assert_ne!(d.node().fingerprint, fp);
    let s: Status = d.client(1).get("/v1/status").unwrap();
    assert_eq!((s.mode.as_str(), s.generation), ("maintenance", 0));
}

/// The signature cases `every_bad_input_is_refused_and_changes_nothing`
/// cannot send to its node: each gets a node whose trust roots and running
/// generation are the case's own.
#[test]
fn signature_cases_on_nodes_with_their_policy_and_generation() {
    let cases: Vec<_> = cases::sig_cases()
        .into_iter()
        .filter(|c| c.policy.threshold() != 1 || c.current != 0)
        .collect();
    assert!(cases.len() >= 3, "only {} such cases", cases.len());
    let mut failures = Vec::new();
    for c in cases {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        trust_roots_with(root.path(), c.policy.threshold());
        let d = Dev {
            node: Some(boot_at(&rt, root.path(), Limits::default())),
            rt,
            root,
        };
        let admin = d.client(1);
        if c.current > 0 {
            // Run generation `current` under the same policy, signed by both admins.
            let doc = with_generation(&worker_with_reader(), c.current);
            let doc = edit(
                &doc,
                "threshold = 1",
                &format!("threshold = {}", c.policy.threshold()),
            );
            let sig = sign(1, &doc) + &sign(2, &doc);
            admin
                .post::<_, ApplyResponse>("/v1/apply", &apply_req(&doc, &sig, ApplyMode::Auto))
                .unwrap_or_else(|e| panic!("{}: reaching generation {}: {e}", c.name, c.current));
        }
        let before = d.state_snapshot();
        let sig = String::from_utf8_lossy(&c.sig).into_owned();
        match admin.post::<_, ApplyResponse>("/v1/apply", &apply_req(&c.doc, &sig, ApplyMode::Auto))
        {
            Ok(_) => failures.push(format!("{}: accepted", c.name)),
            Err(e) if !e.to_string().contains(&c.message) => {
                failures.push(format!("{}: expected …{}…, got {e}", c.name, c.message))
            }
            Err(e) if !matches!(e.status(), Some(403 | 409)) => {
                failures.push(format!("{}: status {e}", c.name))
            }
            Err(_) => {}
        }
        assert_eq!(d.state_snapshot(), before, "{}: STATE changed", c.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An image's baked config (`/etc/basalt/config.toml` + `.sig`) applies
/// at first boot with an empty STATE, checked like any apply.
#[test]
fn a_baked_config_applies_at_first_boot_and_only_when_trusted() {
    let bake = |signer: u8, generation: u64| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        trust_roots(root.path());
        let doc = with_generation(&worker_with_reader(), generation);
        let etc = root.path().join("etc/basalt");
        std::fs::write(etc.join("config.toml"), &doc).unwrap();
        std::fs::write(etc.join("config.toml.sig"), sign(signer, &doc)).unwrap();
        let node = boot_at(&rt, root.path(), Limits::default());
        Dev {
            node: Some(node),
            rt,
            root,
        }
    };
    let d = bake(1, 3);
    let s: Status = d.client(1).get("/v1/status").unwrap();
    assert_eq!((s.mode.as_str(), s.generation), ("configured", 3));
    assert_eq!(
        std::fs::read_to_string(d.root.path().join("proc/sys/kernel/hostname")).unwrap(),
        "worker-1\n"
    );
    assert!(
        d.state_snapshot().contains_key("/current"),
        "persisted in STATE"
    );
    // A later boot runs STATE's config; the baked one does not apply again
    // (and could not: its generation is not newer).
    let root = d.root;
    if let Some(n) = d.node {
        n.stop();
    }
    let again = boot_at(&d.rt, root.path(), Limits::default());
    let c = NodeClient::new(
        &again.addr.to_string(),
        Some(again.fingerprint.clone()),
        Arc::new(key(1)),
    )
    .unwrap();
    let s: Status = c.get("/v1/status").unwrap();
    assert_eq!(s.generation, 3);

    // Signed by a key the image does not trust: maintenance mode, STATE empty.
    let d = bake(9, 1);
    let s: Status = d.client(1).get("/v1/status").unwrap();
    assert_eq!((s.mode.as_str(), s.generation), ("maintenance", 0));
    assert!(!s.ready);
    assert!(!d.state_snapshot().contains_key("/current"));
}

/// `GET /v1/resources`: every controller's resources, desired next to
/// observed; and `ready` with its reason.
#[test]
fn resources_are_listed_per_controller_and_ready_says_why_not() {
    let d = dev(Limits::default());
    let reader = d.client(3);
    let s: Status = reader.get("/v1/status").unwrap();
    assert!(!s.ready);
    assert_eq!(
        s.not_ready.as_deref(),
        Some("no config yet (maintenance mode)")
    );
    // Port 0: other tests of this binary may hold 9100 at the same time.
    let doc = edit(&worker_with_reader(), "127.0.0.1:9100", "127.0.0.1:0");
    d.client(1)
        .post::<_, ApplyResponse>(
            "/v1/apply",
            &apply_req(&doc, &sign(1, &doc), ApplyMode::Auto),
        )
        .unwrap();
    let s: Status = reader.get("/v1/status").unwrap();
    assert!(s.ready, "{:?}", s.not_ready);
    assert_eq!(s.not_ready, None);

    let list: Vec<serde_json::Value> = reader.get("/v1/resources").unwrap();
    let find = |controller: &str, id: &str| {
        list.iter()
            .find(|r| r["controller"] == controller && r["id"] == id)
            .unwrap_or_else(|| panic!("no {controller}/{id} in {list:?}"))
            .clone()
    };
    let cfg = find("config", "machine-config");
    assert_eq!(
        (cfg["kind"].as_str(), cfg["generation"].as_u64()),
        (Some("config"), Some(1))
    );
    let host = find("kernel", "hostname");
    assert_eq!(
        (host["desired"].as_str(), host["observed"].as_str()),
        (Some("worker-1"), Some("worker-1"))
    );
    assert_eq!(
        find("kernel", "sysctl/net.ipv4.ip_forward")["in_sync"],
        true
    );
    let motd = find("files", "/var/lib/basalt-example/motd");
    assert_eq!(
        (motd["in_sync"].as_bool(), motd["op"].as_str()),
        (Some(true), Some("create"))
    );
    let resolv = find("dns", "/run/basalt/resolv.conf");
    assert_eq!(resolv["in_sync"], true);
    assert_eq!(
        resolv["desired"]["nameservers"],
        serde_json::json!(["10.0.2.3"])
    );
    let m = find("metrics", "listener");
    assert_eq!(m["observed"], "127.0.0.1:0", "{m}");
    assert!(list.iter().all(|r| r["in_sync"] == true), "{list:?}");
}

/// `GET /v1/resources` through basaltctl's client reads as basalt-api's
/// [`Resource`]: before a config only the config resource is out of sync;
/// after one, the kernel and DNS resources it asks for are in sync.
#[test]
fn resources_read_as_the_api_type_and_are_in_sync_after_apply() {
    let d = dev(Limits::default());
    let reader = d.client(3);
    let before: Vec<Resource> = reader.call(&Route::Resources).unwrap();
    let cfg = before
        .iter()
        .find(|r| r.controller == Concern::Config)
        .unwrap();
    assert!(!cfg.in_sync, "{cfg:?}");

    let doc = edit(&worker_with_reader(), "127.0.0.1:9100", "127.0.0.1:0");
    d.client(1)
        .call_with::<_, ApplyResponse>(
            &Route::Apply,
            &apply_req(&doc, &sign(1, &doc), ApplyMode::Auto),
        )
        .unwrap();
    let list: Vec<Resource> = reader.call(&Route::Resources).unwrap();
    let of = |c: Concern| list.iter().filter(move |r| r.controller == c);
    assert!(
        of(Concern::Kernel).any(|r| r.id == "hostname"
            && r.state
                == ResourceState::Hostname {
                    desired: Some("worker-1".into()),
                    observed: "worker-1".into(),
                }),
        "{list:#?}"
    );
    assert!(
        of(Concern::Kernel).any(|r| matches!(
            &r.state,
            ResourceState::Sysctl { desired, observed }
                if observed.as_deref() == Some(desired.as_str())
        )),
        "{list:#?}"
    );
    let dns: Vec<&Resource> = of(Concern::Dns).collect();
    assert_eq!(dns.len(), 1, "{list:#?}");
    let ResourceState::ResolvConf { desired } = &dns[0].state else {
        panic!("{:?}", dns[0]);
    };
    assert_eq!(
        desired.nameservers,
        ["10.0.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
    for r in of(Concern::Kernel).chain(of(Concern::Dns)) {
        assert!(r.in_sync, "{r:?}");
    }
    assert!(list.iter().all(|r| r.in_sync), "{list:#?}");
}

/// The Kubernetes endpoints on a node without a config: bootstrap and
/// kubeconfig are admin-only and say clearly why they cannot be served
/// (409: apply a config first); health is readable by readers and names
/// what fails, and basaltctl's wait gives up on it after its timeout.
#[test]
fn kubernetes_endpoints_are_authorised_and_say_why_they_cannot_serve_yet() {
    use basalt_api::rpc::{BootstrapResponse, HealthReport, KubeconfigRequest, KubeconfigResponse};
    use basaltctl::kube::{self, HealthError};
    let d = dev(Limits::default());
    let (admin, reader) = (d.client(1), d.client(3));
    let req = KubeconfigRequest {
        server: None,
        user: "admin".into(),
    };
    blocking(move || {
        let e = admin
            .call::<BootstrapResponse>(&Route::Bootstrap)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "409: this node has no config yet: apply a control-plane config first"
        );
        let e = admin
            .call_with::<_, KubeconfigResponse>(&Route::Kubeconfig, &req)
            .unwrap_err();
        assert_eq!(api_status(&e), 409, "{e}");
        assert!(e.to_string().contains("no config yet"), "{e}");
        // A credential and a cluster-wide change: readers may do neither.
        for e in [
            reader
                .call::<BootstrapResponse>(&Route::Bootstrap)
                .unwrap_err(),
            reader
                .call_with::<_, KubeconfigResponse>(&Route::Kubeconfig, &req)
                .unwrap_err(),
        ] {
            assert_eq!(api_status(&e), 403, "{e}");
        }
        // The node checks the request itself too, not only basaltctl.
        let e = admin
            .post::<_, KubeconfigResponse>(
                "/v1/kubeconfig",
                &serde_json::json!({"user": "admin", "server": "http://10.0.0.1:6443"}),
            )
            .unwrap_err();
        assert_eq!(api_status(&e), 400, "{e}");
        assert!(e.to_string().contains("is not an API server URL"), "{e}");
        let e = admin
            .post::<_, KubeconfigResponse>("/v1/kubeconfig", &serde_json::json!({"usr": "x"}))
            .unwrap_err();
        assert_eq!(api_status(&e), 400, "{e}");

        let report: HealthReport = reader.call(&Route::Health).unwrap();
        assert!(!report.all_ok());
        // No config, no components to check: the one failing check says so.
        let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["config"]);
        let started = std::time::Instant::now();
        let e = kube::wait_for_node(
            &reader,
            Duration::from_millis(600),
            Duration::from_millis(200),
            |_| {},
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        match &e {
            HealthError::TimedOut { failing, .. } => assert_eq!(failing.len(), 1),
            other => panic!("{other}"),
        }
        let text = e.to_string();
        assert!(
            text.starts_with(
                "not healthy after 600ms; failing: config (no config applied (maintenance mode))"
            ),
            "{text}"
        );
    });
}

/// A node on an IPv6-only network must be configurable, one on IPv4 too:
/// the API's wildcard socket takes both (machined binds `[::]:50443` the
/// same way, through `machined::listen`), and so does a metrics listener
/// configured as `[::]:port`.
#[test]
fn signed_calls_and_metrics_work_over_ipv6_and_ipv4_on_one_socket() {
    let d = dev_on(Limits::default(), Vec::new(), "[::]:0");
    let n = d.node();
    let client = |host: &str| {
        NodeClient::new(
            &format!("{host}:{}", n.addr.port()),
            Some(n.fingerprint.clone()),
            Arc::new(key(1)),
        )
        .unwrap()
    };
    for host in ["[::1]", "127.0.0.1"] {
        let status: Status = client(host).get("/v1/status").unwrap();
        assert_eq!(status.mode, NodeMode::Maintenance, "over {host}");
    }
    let port = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let doc = edit(
        &worker(),
        "listen = \"127.0.0.1:9100\"",
        &format!("listen = \"[::]:{port}\""),
    );
    client("[::1]")
        .post::<_, ApplyResponse>(
            "/v1/apply",
            &apply_req(&doc, &sign(1, &doc), ApplyMode::Auto),
        )
        .unwrap();
    for host in ["::1", "127.0.0.1"] {
        use std::io::{Read, Write};
        let ip: std::net::IpAddr = host.parse().unwrap();
        let mut s = std::net::TcpStream::connect((ip, port)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(
            out.contains("basalt_config_generation 1"),
            "over {host}: {out}"
        );
    }
    d.rt.block_on(d.node().node.supervisor().stop_all());
}

/// Old signed configs cannot be replayed where they do not belong. The
/// image's floor (`image-policy.toml`) holds on an empty STATE, as after a
/// reset or a fresh install; `[scope]` pins a config to machines and to a
/// time. Each refusal names its reason and leaves STATE as it was, and
/// `status` shows what a scope is matched against.
#[test]
fn old_configs_are_refused_by_the_image_floor_and_their_scope() {
    // Built 2026-06-01; refuses generations below 3.
    const BUILT_AT: i64 = 1_780_272_000;
    let d = dev_prepared(Limits::default(), Vec::new(), "127.0.0.1:0", |root| {
        let write = |p: &str, text: &str| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "etc/basalt/image-policy.toml",
            &format!("min_generation = 3\nbuilt_at = {BUILT_AT}\n"),
        );
        write(
            "sys/class/dmi/id/product_uuid",
            "3F2504E0-4F89-11D3-9A0C-0305E82C3301\n",
        );
        write("sys/class/dmi/id/product_serial", "CZ1234ABCD\n");
        write("sys/class/net/eth0/address", "52:54:00:ab:cd:ef\n");
        write("sys/class/net/eth0/device/vendor", "0x1af4\n");
    });
    let admin = d.client(1);

    let s: Status = admin.get("/v1/status").unwrap();
    assert_eq!(
        s.identity.to_string(),
        "system_uuid 3f2504e0-4f89-11d3-9a0c-0305e82c3301, serial CZ1234ABCD, macs [\"52:54:00:ab:cd:ef\"]"
    );
    assert_eq!(s.min_generation, 3);
    let time = s.trusted_time.unwrap();
    assert!(time.at_least >= BUILT_AT, "{time:?}");

    let scoped = |g: u64, scope: &str| {
        let doc = with_generation(&worker(), g);
        edit(
            &doc,
            &format!("generation = {g}\n"),
            &format!("generation = {g}\n\n[scope]\n{scope}\n"),
        )
    };
    let before = d.state_snapshot();
    for (name, doc, message) in [
        (
            "a generation below the image's floor",
            with_generation(&worker(), 2),
            "generation 2 is below this image's minimum generation 3",
        ),
        (
            "another machine's UUID",
            scoped(
                3,
                "system_uuids = [\"3f2504e0-4f89-11d3-9a0c-0305e82c3302\"]",
            ),
            "this config is not for this node: it selects system_uuids",
        ),
        (
            "another serial and MAC",
            scoped(
                3,
                "serials = [\"CZ1234ABCE\"]\nmacs = [\"52:54:00:ab:cd:00\"]",
            ),
            "has system_uuid 3f2504e0-4f89-11d3-9a0c-0305e82c3301, serial CZ1234ABCD",
        ),
        (
            "expired before the image was built",
            scoped(3, "not_after = 2026-01-01T00:00:00Z"),
            "scope.not_after 2026-01-01T00:00:00Z has passed: the node's time is at least 2026-",
        ),
        (
            "not an instant",
            scoped(3, "not_after = 2099-01-01"),
            "scope.not_after",
        ),
    ] {
        let e = admin
            .post::<_, ApplyResponse>(
                "/v1/apply",
                &apply_req(&doc, &sign(1, &doc), ApplyMode::Auto),
            )
            .unwrap_err();
        assert!(e.to_string().contains(message), "{name}: {e}");
        assert!(matches!(e.status(), Some(400 | 409)), "{name}: {e}");
        assert_eq!(d.state_snapshot(), before, "{name}: STATE changed");
    }
    let s: Status = admin.get("/v1/status").unwrap();
    assert_eq!((s.mode.as_str(), s.generation), ("maintenance", 0));

    // Its own machine, in time (an offset is an instant too).
    let doc = scoped(
        3,
        "not_after = 2099-01-01T00:00:00+01:00\nserials = [\"CZ1234ABCD\"]",
    );
    let r: ApplyResponse = admin
        .post(
            "/v1/apply",
            &apply_req(&doc, &sign(1, &doc), ApplyMode::Auto),
        )
        .unwrap();
    assert_eq!(r.generation, 3);
}

/// Secrets cannot be read through the API however the path is spelled: a
/// symlink into them, a `/proc` magic link, a bind mount of STATE; a reader
/// key reads only its allow-list.
#[test]
fn secrets_are_not_readable_however_the_path_is_spelled() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test bind-mounts: run it as root, as scripts/test and CI do"
    );
    let d = dev(Limits::default());
    let (admin, reader) = (d.client(1), d.client(3));
    let doc = worker_with_reader();
    admin
        .post::<_, ApplyResponse>(
            "/v1/apply",
            &apply_req(&doc, &sign(1, &doc), ApplyMode::Auto),
        )
        .unwrap();
    let root = d.root.path();
    let write = |p: &str, text: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "var/lib/kubelet/pki/kubelet-client-current.pem",
        "KUBELET-KEY",
    );
    write("var/log/boot.log", "not a secret");
    write("etc/motd", "hello");
    std::os::unix::fs::symlink(
        "../var/lib/kubelet/pki/kubelet-client-current.pem",
        root.join("etc/innocent"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("mnt/copy")).unwrap();
    let state = root.join("var/lib/basalt/state");
    let status = std::process::Command::new("mount")
        .args(["--bind"])
        .arg(&state)
        .arg(root.join("mnt/copy"))
        .status()
        .unwrap();
    assert!(status.success(), "mount --bind");
    let stored: Vec<String> = std::fs::read_dir(root.join("mnt/copy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let read = |c: &NodeClient, p: &str| c.get::<serde_json::Value>(&format!("/v1/read?path={p}"));
    let mut refused = vec![
        "/var/lib/kubelet/pki/kubelet-client-current.pem".to_string(),
        "/etc/innocent".into(),
        "/proc/1/environ".into(),
        "/proc/self/fd/0".into(),
        "/var/lib/basalt/state/tls/key.pem".into(),
    ];
    refused.extend(stored.iter().map(|f| format!("/mnt/copy/{f}")));
    for p in &refused {
        for c in [&admin, &reader] {
            let e = read(c, p).unwrap_err();
            assert_eq!(e.status(), Some(403), "{p}: {e}");
        }
    }
    let e = read(&reader, "/var/log/boot.log").unwrap_err();
    assert!(e.to_string().contains("needs an admin"), "{e}");
    assert_eq!(
        read(&admin, "/var/log/boot.log").unwrap()["content"],
        "not a secret"
    );
    assert_eq!(read(&reader, "/etc/motd").unwrap()["content"], "hello");
    let _ = std::process::Command::new("umount")
        .arg(root.join("mnt/copy"))
        .status();
}

// Issue 14, item 4: secrets never leave the node. A control-plane config
// whose every `Secret` field holds a value of its own (the join token a
// recognisable one, the keys as `basaltctl config gen` makes them), the PKI
// machined issues from it in STATE, and two services that print all of it
// (as a component at high verbosity would); then every output an operator
// can get is grepped for every one of those values.

/// The join token: `[a-z0-9]{6}.[a-z0-9]{16}`, recognisable.
const CANARY_TOKEN: &str = "cnry42.s3cr3tc4n4ryt0k3";
/// Secrets a config carries outside its `Secret` fields: a registry
/// credential in a CRI drop-in, a Kubernetes Secret among the manifests.
const REGISTRY_PASSWORD: &str = "canary-registry-password-7f3a9c";
const MANIFEST_SECRET: &str = "canary-inline-manifest-secret-41d2";
/// Shorter lines of a PEM body (its last) are no secret by themselves.
const MIN_CANARY: usize = 16;

/// machined's own log, as its tracing subscriber writes it, at debug (which
/// includes every line the services print).
fn capture_machined_log() -> Arc<std::sync::Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Sink(Arc::clone(&buf));
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("the only test in this binary that installs a subscriber");
    buf
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `basaltctl config gen --role controlplane`, with the canary token, key 3
/// as a reader, metrics on `metrics_port`, and the two non-`Secret` secrets.
fn canary_config(metrics_port: u16) -> String {
    use basalt_api::config::{MachineConfig, Role};
    use basaltctl::template::{Shape, generate};
    let shape = Shape {
        hostname: Some("cp-1"),
        ..Shape::default()
    };
    let admin = key(1).public();
    let doc = generate(
        Role::Controlplane,
        "canary",
        "https://10.0.0.10:6443",
        &admin,
        shape,
    )
    .unwrap();
    let generated = MachineConfig::parse(doc.as_bytes()).unwrap();
    let token = generated.cluster.token.expose();
    let doc = edit(
        &doc,
        &format!("token = \"{token}\""),
        &format!("token = \"{CANARY_TOKEN}\""),
    );
    let doc = edit(
        &doc,
        "readers = []",
        &format!("readers = [\"{}\"]", key(3).public().to_openssh()),
    );
    let doc = edit(
        &doc,
        "# [machine.metrics]\n# listen = \"0.0.0.0:9100\"",
        &format!("[machine.metrics]\nlisten = \"127.0.0.1:{metrics_port}\""),
    );
    let doc = edit(
        &doc,
        "[machine.kubelet]",
        &format!(
            "[[machine.files]]\npath = \"/etc/cri/conf.d/20-registry-auth.toml\"\nmode = 0o600\ncontent = '''\n[plugins.\"io.containerd.cri.v1.images\".registry.configs.\"registry.example.org\".auth]\nusername = \"basalt\"\npassword = \"{REGISTRY_PASSWORD}\"\n'''\n\n[machine.kubelet]"
        ),
    );
    edit(
        &doc,
        "\n[trust]",
        &format!(
            "\n[[cluster.inline_manifests]]\nname = \"registry-secret\"\ncontents = \"\"\"\napiVersion: v1\nkind: Secret\nmetadata:\n  name: registry\n  namespace: default\nstringData:\n  password: {MANIFEST_SECRET}\n\"\"\"\n\n[trust]"
        ),
    )
}

/// The Kubernetes PKI as machined issues it for this config, into STATE.
fn issue_pki(root: &Path, doc: &str) {
    use basalt_api::config::{MachineConfig, Role};
    use machined::kubernetes::{layout::Layout, pki};
    let cfg = MachineConfig::parse(doc.as_bytes()).unwrap();
    let node = pki::NodeIdentity {
        name: "cp-1".into(),
        ips: vec!["10.0.0.10".parse().unwrap()],
    };
    pki::converge(
        &machined::host::Host::dev(root),
        &Layout::new(devmode::STATE_DIR),
        &cfg.cluster,
        Role::Controlplane,
        &node,
        std::time::SystemTime::now(),
    )
    .unwrap();
}

/// The body lines of every private-key PEM block in `text`.
fn private_key_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN") {
            inside = line.contains("PRIVATE KEY");
        } else if line.starts_with("-----END") {
            inside = false;
        } else if inside && line.len() >= MIN_CANARY {
            out.push(line.to_string());
        }
    }
    out
}

/// Every secret value the node holds, as it could be printed: the
/// config's `Secret`s (the token, its secret half, each key's PEM lines),
/// the two others, and in STATE the private keys machined issued, the
/// kubeconfigs' embedded keys (base64 and decoded) and the API's TLS key.
fn canaries(doc: &str, state: &Path) -> std::collections::BTreeSet<String> {
    use base64::Engine;
    let mut out = std::collections::BTreeSet::new();
    out.insert(CANARY_TOKEN.to_string());
    out.insert(CANARY_TOKEN.split_once('.').unwrap().1.to_string());
    out.insert(REGISTRY_PASSWORD.to_string());
    out.insert(MANIFEST_SECRET.to_string());
    out.extend(private_key_lines(doc));
    let mut files = BTreeMap::new();
    snapshot(state, "", &mut files);
    for (name, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        out.extend(private_key_lines(&text));
        if name.ends_with(".kubeconfig") {
            let k: serde_json::Value = serde_json::from_str(&text).unwrap();
            for u in k["users"].as_array().unwrap() {
                if let Some(data) = u["user"]["client-key-data"].as_str() {
                    out.insert(data.to_string());
                    let pem = base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .unwrap();
                    out.extend(private_key_lines(&String::from_utf8_lossy(&pem)));
                }
            }
        }
    }
    out
}

/// A service that prints every secret in `dir` and stays up.
fn printing_service(name: &str, dir: &Path) -> ServiceSpec {
    ServiceSpec::new(
        name,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("cat {}/*; exec sleep 1000", dir.display()),
        ],
    )
}

/// A text endpoint's answer, or the error the caller gets.
fn text_answer(c: &NodeClient, path: &str) -> String {
    match c.send("GET", path, vec![]) {
        Ok(r) => r.text().unwrap(),
        Err(e) => format!("error: {e}"),
    }
}

fn json_answer(c: &NodeClient, path: &str) -> String {
    match c.get::<serde_json::Value>(path) {
        Ok(v) => v.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

/// The first `n` lines of a followed log.
fn followed(c: &NodeClient, service: &str, n: usize) -> String {
    match c.send("GET", &format!("/v1/logs/{service}?follow=1"), vec![]) {
        Ok(r) => std::io::BufReader::new(r)
            .lines()
            .take(n)
            .map(|l| l.unwrap() + "\n")
            .collect(),
        Err(e) => format!("error: {e}"),
    }
}

/// Every file below `dir` as a node path below `prefix`.
fn node_files(dir: &Path, prefix: &str) -> Vec<String> {
    let mut files = BTreeMap::new();
    if dir.exists() {
        snapshot(dir, "", &mut files);
    }
    files.keys().map(|f| format!("{prefix}{f}")).collect()
}

/// Everything a caller with `c` can get from the node, as (what, text).
fn outputs_of(d: &Dev, who: &str, c: &NodeClient, log_lines: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for route in [
        "version",
        "status",
        "services",
        "resources",
        "health",
        "network",
        "mounts",
        "processes",
    ] {
        out.push((
            format!("{who} GET /v1/{route}"),
            json_answer(c, &format!("/v1/{route}")),
        ));
    }
    for route in ["metrics", "dmesg", "config"] {
        let text = text_answer(c, &format!("/v1/{route}"));
        out.push((format!("{who} GET /v1/{route}"), text));
    }
    for s in d.node().node.supervisor().list() {
        let text = text_answer(c, &format!("/v1/logs/{}", s.name));
        out.push((format!("{who} logs {}", s.name), text));
        let text = followed(c, &s.name, log_lines);
        out.push((format!("{who} logs -f {}", s.name), text));
    }
    // Every file a reader may read (and an admin, with the rest of /etc).
    let root = d.root.path();
    let mut readable = node_files(&root.join("etc"), "/etc");
    readable.extend(node_files(&root.join("run/basalt"), "/run/basalt"));
    for path in readable {
        let text = json_answer(c, &Route::Read { path: path.clone() }.path_and_query());
        out.push((format!("{who} read {path}"), text));
    }
    out
}

/// What an admin alone can get: apply's answer (a dry run's too) and a
/// minted kubeconfig.
fn admin_outputs(admin: &NodeClient, doc: &str) -> Vec<(String, String)> {
    use basalt_api::rpc::KubeconfigRequest;
    let mut req = apply_req(doc, &sign(1, doc), ApplyMode::Auto);
    req.dry_run = true;
    let dry = admin.post::<_, serde_json::Value>("/v1/apply", &req);
    let kubeconfig = admin.post::<_, serde_json::Value>(
        "/v1/kubeconfig",
        &KubeconfigRequest {
            server: None,
            user: "ops".into(),
        },
    );
    [
        ("admin apply --dry-run", dry),
        ("admin kubeconfig", kubeconfig),
    ]
    .into_iter()
    .map(|(what, r)| {
        let text = r.map_or_else(|e| format!("error: {e}"), |v| v.to_string());
        (what.to_string(), text)
    })
    .collect()
}

/// The unauthenticated metrics listener.
fn metrics_listener(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A support bundle of `nodes` (name, client) as basaltctl writes it,
/// unpacked by the peers (`zstd -d`, then GNU `tar -x`): each file by its
/// path in the bundle.
fn unpacked_bundle(nodes: &[(&str, &NodeClient)]) -> BTreeMap<String, Vec<u8>> {
    use basaltctl::support;
    let dir = tempfile::tempdir().unwrap();
    let bundles: Vec<support::NodeBundle> = nodes
        .iter()
        .map(|(name, c)| support::collect(c, name, &mut |_| {}))
        .collect();
    let out = dir.path().join("bundle.tar.zst");
    let written = support::write_bundle(&out, &bundles, false).unwrap();
    let tar = dir.path().join("bundle.tar");
    peer(
        std::process::Command::new("zstd")
            .args(["-d", "-q"])
            .arg(&out)
            .arg("-o")
            .arg(&tar),
    );
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    peer(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&x),
    );
    let mut files = BTreeMap::new();
    snapshot(&x, "", &mut files);
    let files: BTreeMap<String, Vec<u8>> = files
        .into_iter()
        .map(|(p, b)| (p.trim_start_matches('/').to_string(), b))
        .collect();
    let listed: Vec<&str> = written.members.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        listed,
        "what basaltctl says it wrote is what tar unpacks"
    );
    files
}

/// Run a peer tool, which must be installed (scripts/install-deps), through
/// machined's reaper (see [`s_client`]); its stdout.
fn peer(cmd: &mut std::process::Command) -> String {
    use std::io::Read;
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, exit) = machined::supervisor::spawn_reaped(cmd)
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/install-deps installs it)"));
    let mut out = String::new();
    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    let reading = std::thread::spawn(move || {
        stderr.read_to_string(&mut err).unwrap();
        err
    });
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let err = reading.join().unwrap();
    let exit = exit.blocking_recv().expect("the peer's exit");
    assert!(exit.success(), "{cmd:?}: {exit:?}: {err}");
    out
}

/// Wait until each service printed `lines` lines.
fn wait_for_output(admin: &NodeClient, services: &[&str], lines: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for s in services {
        loop {
            let text = text_answer(admin, &format!("/v1/logs/{s}"));
            if text.lines().count() >= lines {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{s} printed only: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn no_output_of_the_node_carries_a_secret() {
    let machined_log = capture_machined_log();
    let metrics_port = free_port();
    let doc = canary_config(metrics_port);
    // What the services print: the config's secrets, the registry password
    // and STATE's keys.
    let printed = tempfile::tempdir().unwrap();
    // A reader may follow kube-scheduler's log; `leaky` is anyone's name.
    let services = vec![
        printing_service("kube-scheduler", printed.path()),
        printing_service("leaky", printed.path()),
    ];
    let d = dev_prepared(Limits::default(), services, "127.0.0.1:0", |root| {
        issue_pki(root, &doc)
    });
    let state = d.root.path().join("var/lib/basalt/state");
    let canaries = canaries(&doc, &state);
    assert!(canaries.len() > 60, "{} canaries", canaries.len());
    // As containerd prints its CRI config (drop-ins included) at start.
    let mut leak = format!("{CANARY_TOKEN}\npassword = \"{REGISTRY_PASSWORD}\"\n");
    let cfg = basalt_api::config::MachineConfig::parse(doc.as_bytes()).unwrap();
    let c = &cfg.cluster;
    for k in [
        &c.ca_key,
        &c.etcd_ca_key,
        &c.front_proxy_ca_key,
        &c.service_account_key,
    ] {
        leak.push_str(k.as_ref().unwrap().expose());
    }
    for (name, bytes) in d.state_snapshot() {
        if name.ends_with(".key") || name.ends_with(".kubeconfig") || name.ends_with("key.pem") {
            leak.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    std::fs::write(printed.path().join("secrets"), &leak).unwrap();
    let (admin, reader) = (d.client(1), d.client(3));
    let applied = admin
        .post::<_, serde_json::Value>(
            "/v1/apply",
            &apply_req(&doc, &sign(1, &doc), ApplyMode::Auto),
        )
        .unwrap();
    let lines = leak.lines().count();
    wait_for_output(&admin, &["kube-scheduler", "leaky"], lines);

    let mut outputs = vec![("admin apply".to_string(), applied.to_string())];
    outputs.extend(admin_outputs(&admin, &doc));
    outputs.extend(outputs_of(&d, "admin", &admin, lines));
    outputs.extend(outputs_of(&d, "reader", &reader, lines));
    outputs.push(("metrics listener".into(), metrics_listener(metrics_port)));
    // A support bundle of each role, built by basaltctl's code and unpacked
    // by the zstd and GNU tar CLIs: every member joins the outputs.
    let node = d.node().addr.to_string();
    let bundles = [("admin", &admin), ("reader", &reader)].map(|(who, c)| {
        let members = unpacked_bundle(&[(node.as_str(), c)]);
        assert!(members.len() > 12, "{who}: {:?}", members.keys());
        members
    });
    for (who, members) in ["admin", "reader"].iter().zip(&bundles) {
        outputs.extend(members.iter().map(|(path, bytes)| {
            (
                format!("{who} bundle {path}"),
                String::from_utf8_lossy(bytes).into_owned(),
            )
        }));
    }
    let log = String::from_utf8_lossy(&machined_log.lock().unwrap()).into_owned();
    outputs.push(("machined's log".into(), log));

    let leaks: Vec<(&str, &str)> = outputs
        .iter()
        .flat_map(|(what, text)| {
            canaries
                .iter()
                .filter(|c| text.contains(c.as_str()))
                .map(move |c| (what.as_str(), c.as_str()))
        })
        .collect();
    let leaking: std::collections::BTreeSet<&str> = leaks.iter().map(|(w, _)| *w).collect();
    assert!(
        leaks.is_empty(),
        "{} leaks in {leaking:?}, first: {:?}",
        leaks.len(),
        &leaks[..leaks.len().min(5)]
    );

    // The outputs above are real: the services printed, redacted; a reader
    // gets kube-scheduler's log but not `leaky`'s; the capture saw them.
    let get = |what: &str| &outputs.iter().find(|(w, _)| w == what).unwrap().1;
    let admin_leaky = get("admin logs leaky");
    assert_eq!(admin_leaky.lines().count(), lines, "{admin_leaky}");
    assert!(admin_leaky.contains("<redacted>"), "{admin_leaky}");
    assert!(get("reader logs kube-scheduler").contains("<redacted>"));
    assert!(get("reader logs -f kube-scheduler").contains("<redacted>"));
    assert!(
        get("reader logs leaky").contains("403"),
        "{}",
        get("reader logs leaky")
    );
    assert!(get("machined's log").contains("<redacted>"));
    // The bundles hold the real thing: the logs each role may read, the
    // config with its secrets and payloads redacted, the refusals listed.
    let in_bundle = |who: &str, member: &str| get(&format!("{who} bundle {node}/{member}"));
    assert!(in_bundle("admin", "logs/leaky.log").contains("<redacted>"));
    assert!(in_bundle("reader", "logs/kube-scheduler.log").contains("<redacted>"));
    let config = in_bundle("reader", "config.toml");
    assert!(
        config.contains("token = \"<redacted>\"") && config.contains("name = \"registry-secret\""),
        "{config}"
    );
    assert_eq!(config, in_bundle("admin", "config.toml"));
    let errors = in_bundle("reader", "errors.txt");
    assert!(errors.contains("logs/leaky.log: 403: "), "{errors}");
    assert!(!bundles[1].contains_key(&format!("{node}/logs/leaky.log")));
    assert!(get("metrics listener").starts_with("HTTP/1.1 200"));
    assert!(get("reader read /etc/basalt/trust.toml").contains("readers"));
    // A credential minted for the admin: a fresh key, none of the node's.
    assert!(get("admin kubeconfig").contains("client-key-data"));

    // No role reads a secret's file, however the policy names it.
    let mut secret_files = node_files(&state, devmode::STATE_DIR);
    secret_files.push("/etc/cri/conf.d/20-registry-auth.toml".into());
    assert!(secret_files.len() > 20, "{secret_files:?}");
    for path in &secret_files {
        for c in [&admin, &reader] {
            let e = c
                .get::<serde_json::Value>(&Route::Read { path: path.clone() }.path_and_query())
                .unwrap_err();
            assert_eq!(e.status(), Some(403), "{path}: {e}");
        }
    }
    d.rt.block_on(d.node().node.supervisor().stop_all());
}

/// machined writes the services' captured output to the kernel log under
/// its own facility; readers' `dmesg` leaves it out (it is the services'
/// log, which readers may not all read), admins' keeps it. Records written
/// to the real /dev/kmsg, as machined writes them.
#[test]
fn readers_dmesg_leaves_out_what_services_printed() {
    use std::io::Write;
    let d = dev(Limits::default());
    let (admin, reader) = (d.client(1), d.client(3));
    let marker = format!(
        "basalt-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let service_prio = u32::from(machined::log_policy::SERVICE_OUTPUT_FACILITY) << 3 | 6;
    let mut kmsg = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .expect("/dev/kmsg: run as root, as scripts/test and CI do");
    kmsg.write_all(format!("<6>machined: own line {marker}\n").as_bytes())
        .unwrap();
    kmsg.write_all(format!("<{service_prio}>machined: service line {marker}\n").as_bytes())
        .unwrap();
    let dmesg = |c: &NodeClient| text_answer(c, "/v1/dmesg");
    let (all, read) = (dmesg(&admin), dmesg(&reader));
    assert!(all.contains(&format!("own line {marker}")), "{all}");
    assert!(all.contains(&format!("service line {marker}")), "{all}");
    assert!(read.contains(&format!("own line {marker}")), "{read}");
    assert!(!read.contains(&format!("service line {marker}")), "{read}");
}

/// The worker example with key 3 as a reader, its metrics on a free port.
fn reader_worker() -> String {
    edit(
        &worker_with_reader(),
        "listen = \"127.0.0.1:9100\"",
        &format!("listen = \"127.0.0.1:{}\"", free_port()),
    )
}

/// What image-builder puts in every root: os-release, and the symlink to it.
fn image_files(root: &Path) {
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(
        root.join("usr/lib/os-release"),
        "NAME=Basalt\nID=basalt\nVERSION_ID=0.1.0\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
}

/// `GET /v1/config` gives readers and admins the running config, which
/// parses back as the applied one with its secrets and its free-form
/// payloads (file contents, manifests) redacted and nothing else changed;
/// a support bundle of a configured node, a node in maintenance mode and an
/// address nobody answers holds one directory each, with every section the
/// first node gives, as GNU tar lists it.
#[test]
fn a_support_bundle_holds_every_section_of_each_node_and_the_config_round_trips() {
    use basalt_api::config::MachineConfig;
    use basalt_api::secret::{REDACTED, Secret};
    let greeter = ServiceSpec::new(
        "greeter",
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo hello from greeter; exec sleep 1000".into(),
        ],
    );
    let a = dev_prepared(Limits::default(), vec![greeter], "127.0.0.1:0", image_files);
    let b = dev(Limits::default());
    let (admin, reader) = (a.client(1), a.client(3));
    let doc = edit(
        &reader_worker(),
        "\n[trust]",
        "\n[[cluster.inline_manifests]]\nname = \"apps\"\ncontents = \"kind: Namespace\"\n\n[trust]",
    );
    admin
        .post::<_, ApplyResponse>(
            "/v1/apply",
            &apply_req(&doc, &sign(1, &doc), ApplyMode::Auto),
        )
        .unwrap();
    wait_for_output(&admin, &["greeter"], 1);

    // The config round trip, for either role.
    let served = text_answer(&admin, "/v1/config");
    assert_eq!(served, text_answer(&reader, "/v1/config"));
    let got: MachineConfig = toml::from_str(&served).unwrap_or_else(|e| panic!("{e}\n{served}"));
    let mut want = MachineConfig::parse(doc.as_bytes()).unwrap();
    assert!(!want.machine.files.is_empty() && !want.cluster.inline_manifests.is_empty());
    want.cluster.token = Secret::new(REDACTED);
    for f in &mut want.machine.files {
        f.content = REDACTED.into();
    }
    for m in &mut want.cluster.inline_manifests {
        m.contents = REDACTED.into();
    }
    assert_eq!(got, want, "{served}");
    let e = b.client(1).send("GET", "/v1/config", vec![]).unwrap_err();
    assert_eq!(api_status(&e), 404, "{e}");

    let closed = format!("127.0.0.1:{}", free_port());
    let nobody = NodeClient::new(&closed, None, Arc::new(key(1))).unwrap();
    let (na, nb) = (a.node().addr.to_string(), b.node().addr.to_string());
    let bundle = unpacked_bundle(&[(&na, &admin), (&nb, &b.client(1)), (&closed, &nobody)]);
    // Listed by GNU tar itself, from the compressed bundle.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.tar.zst");
    let nodes: Vec<_> = [(&na, &admin), (&closed, &nobody)]
        .iter()
        .map(|(n, c)| basaltctl::support::collect(c, n, &mut |_| {}))
        .collect();
    basaltctl::support::write_bundle(&path, &nodes, false).unwrap();
    let listed = peer(
        std::process::Command::new("tar")
            .arg("--zstd")
            .arg("-tf")
            .arg(&path),
    );
    let members: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{na}/")))
        .collect();
    assert_eq!(
        members,
        [
            "",
            "config.toml",
            "dmesg.txt",
            "errors.txt",
            "files/",
            "files/etc/",
            "files/etc/basalt/",
            "files/etc/basalt/trust.toml",
            "files/etc/os-release",
            "health.json",
            "logs/",
            "logs/greeter.log",
            "metrics.txt",
            "mounts.json",
            "network.json",
            "processes.json",
            "resources.json",
            "services.json",
            "status.json",
            "version.json",
        ],
        "{listed}"
    );
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.starts_with(&format!("{closed}/")))
            .collect::<Vec<_>>(),
        [format!("{closed}/"), format!("{closed}/errors.txt")],
        "{listed}"
    );

    let member = |node: &str, m: &str| {
        let bytes = bundle
            .get(&format!("{node}/{m}"))
            .unwrap_or_else(|| panic!("{node}/{m} is not in {:?}", bundle.keys()));
        String::from_utf8_lossy(bytes).into_owned()
    };
    assert_eq!(member(&na, "logs/greeter.log"), "hello from greeter\n");
    assert_eq!(member(&na, "config.toml"), served);
    assert!(member(&na, "files/etc/os-release").contains("ID=basalt"));
    let status: Status = serde_json::from_str(&member(&na, "status.json")).unwrap();
    assert_eq!((status.mode, status.generation), (NodeMode::Configured, 1));
    let services: Vec<basalt_api::rpc::ServiceStatus> =
        serde_json::from_str(&member(&na, "services.json")).unwrap();
    assert_eq!(services[0].name, "greeter");
    assert!(member(&na, "metrics.txt").contains("basalt_config_generation 1"));
    // What the dev root does not have is listed, not fatal.
    assert!(
        member(&na, "errors.txt").contains("files/proc/version: 404: "),
        "{}",
        member(&na, "errors.txt")
    );
    // The node in maintenance mode: everything but a config.
    let status: Status = serde_json::from_str(&member(&nb, "status.json")).unwrap();
    assert_eq!(status.mode, NodeMode::Maintenance);
    assert!(!bundle.contains_key(&format!("{nb}/config.toml")));
    assert!(member(&nb, "errors.txt").contains("config.toml: 404: no config applied yet"));
    // Nobody at the third address: one line says so.
    let errors = member(&closed, "errors.txt");
    assert!(
        errors.starts_with(&format!(
            "node not reached (nothing was collected): connecting to {closed}"
        )) && errors.lines().count() == 1,
        "{errors}"
    );
    a.rt.block_on(a.node().node.supervisor().stop_all());
}

/// Reads of several nodes at once (`--node a,b,c`), through basaltctl's
/// fan-out: each node's answer under its own name, a node that fails
/// reported under its name while the others still answer, and the whole
/// command failing.
#[test]
fn several_nodes_answer_at_once_each_labelled_and_one_failing_fails_the_command() {
    use basaltctl::fanout::{self, Layout};
    let (a, b) = (dev(Limits::default()), dev(Limits::default()));
    let closed = format!("127.0.0.1:{}", free_port());
    let (na, nb) = (a.node().addr.to_string(), b.node().addr.to_string());
    let nodes = vec![na.clone(), closed.clone(), nb.clone()];
    let client = |n: &str| -> NodeClient {
        match [&a, &b]
            .into_iter()
            .find(|d| d.node().addr.to_string() == n)
        {
            Some(d) => d.client(3),
            None => NodeClient::new(n, None, Arc::new(key(3))).unwrap(),
        }
    };
    let answers = fanout::on_each(&nodes, |n| {
        client(n)
            .call::<Status>(&Route::Status)
            .map_err(|e| e.to_string())
    });
    let text = |s: &Status| format!("mode {}\ntls {}\n", s.mode, s.tls_fingerprint);
    let r = fanout::render(false, &answers, text, Layout::Lines);
    let w = na.len().max(nb.len());
    let (fa, fb) = (&a.node().fingerprint, &b.node().fingerprint);
    assert_eq!(
        r.stdout,
        format!(
            "{na:<w$}  mode maintenance\n{na:<w$}  tls {fa}\n{nb:<w$}  mode maintenance\n{nb:<w$}  tls {fb}\n"
        )
    );
    assert!(
        r.stderr
            .starts_with(&format!("{closed}: error: connecting to {closed}"))
            && r.stderr.lines().count() == 1,
        "{}",
        r.stderr
    );
    assert_eq!(r.failed, Some(format!("1 of 3 nodes failed: {closed}")));

    // JSON: each node's object carries its node; the failure its error.
    let r = fanout::render(true, &answers, text, Layout::Lines);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let objects = v.as_array().unwrap();
    assert_eq!(objects.len(), 3, "{v}");
    assert_eq!(
        (
            objects[0]["node"].as_str(),
            objects[0]["tls_fingerprint"].as_str()
        ),
        (Some(na.as_str()), Some(fa.as_str()))
    );
    assert_eq!(objects[1]["node"].as_str(), Some(closed.as_str()));
    assert!(
        objects[1]["error"]
            .as_str()
            .unwrap()
            .contains("connecting to"),
        "{v}"
    );
    assert_eq!(
        (
            objects[2]["node"].as_str(),
            objects[2]["tls_fingerprint"].as_str()
        ),
        (Some(nb.as_str()), Some(fb.as_str()))
    );

    // A table: one header behind NODE, each row behind its node.
    let answers = fanout::on_each(&[na.clone(), nb.clone()], |n| {
        client(n)
            .call::<Vec<basalt_api::rpc::Mount>>(&Route::Mounts)
            .map_err(|e| e.to_string())
    });
    let table = |m: &Vec<basalt_api::rpc::Mount>| {
        let mut out = "TARGET TYPE\n".to_string();
        for m in m {
            out.push_str(&format!("{} {}\n", m.target, m.fstype));
        }
        out
    };
    let r = fanout::render(false, &answers, table, Layout::Table);
    assert_eq!(r.failed, None);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], format!("{:<w$}  TARGET TYPE", "NODE"));
    assert_eq!(
        lines.iter().filter(|l| l.contains("TARGET TYPE")).count(),
        1
    );
    for n in [&na, &nb] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{n:<w$}  / "))),
            "{n} has no / mount: {}",
            r.stdout
        );
    }
}

// ---- Signed A/B upgrades ---------------------------------------------------

mod upgrade_support {
    use basalt_api::sshsig;
    use basalt_api::upgrade::bundle::{PayloadSource, write_bundle};
    use basalt_api::upgrade::manifest::{Arch, Format, Payload};
    use basalt_api::upgrade::{Extent, Manifest, Sha256Digest, UPGRADE_NAMESPACE, Version};
    use machined::upgrade::{SlotWriter, UpgradeError, UpgradeOutcome, VerifiedBundle};
    use std::path::Path;
    use std::sync::Mutex;

    /// What the fake slot writer was handed: counter, stage, and the bytes
    /// at the payloads' offsets in the spool file.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Install {
        pub counter: u64,
        pub stage: bool,
        pub uki: Vec<u8>,
        pub root: Vec<u8>,
    }

    /// A slot writer that records what reaches it.
    pub struct RecordingSlots {
        pub installed: u64,
        pub installs: Mutex<Vec<Install>>,
        pub rollbacks: Mutex<usize>,
    }

    impl RecordingSlots {
        pub fn new(installed: u64) -> Self {
            Self {
                installed,
                installs: Mutex::new(Vec::new()),
                rollbacks: Mutex::new(0),
            }
        }
    }

    fn read_at(path: &Path, e: Extent) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(path).unwrap();
        f.seek(SeekFrom::Start(e.offset)).unwrap();
        let mut out = vec![0; e.size as usize];
        f.read_exact(&mut out).unwrap();
        out
    }

    impl SlotWriter for RecordingSlots {
        fn installed_counter(&self) -> u64 {
            self.installed
        }
        fn install(
            &self,
            bundle: &VerifiedBundle,
            spool: &Path,
            stage: bool,
        ) -> Result<UpgradeOutcome, UpgradeError> {
            let p = bundle.payloads();
            self.installs.lock().unwrap().push(Install {
                counter: bundle.manifest().manifest().counter,
                stage,
                uki: read_at(spool, p.uki),
                root: read_at(spool, p.root),
            });
            Ok(UpgradeOutcome {
                slot: "B".into(),
                reboot: !stage,
            })
        }
        fn rollback(&self) -> Result<UpgradeOutcome, UpgradeError> {
            *self.rollbacks.lock().unwrap() += 1;
            Ok(UpgradeOutcome {
                slot: "A".into(),
                reboot: true,
            })
        }
    }

    pub fn random(n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        getrandom::fill(&mut v).unwrap();
        v
    }

    pub fn manifest(uki: &[u8], root: &[u8], counter: u64, arch: &str) -> Manifest {
        let payload = |b: &[u8]| Payload {
            size: b.len() as u64,
            sha256: Sha256Digest::of_reader(b).unwrap().0,
        };
        Manifest {
            format: Format,
            version: Version::try_from("0.3.0".to_string()).unwrap(),
            counter,
            arch: Arch::try_from(arch.to_string()).unwrap(),
            uki: payload(uki),
            root: payload(root),
        }
    }

    pub fn bundle(manifest: &[u8], sigs: &[u8], uki: &[u8], root: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut u, mut r) = (uki, root);
        write_bundle(
            &mut out,
            manifest,
            sigs,
            PayloadSource {
                reader: &mut u,
                size: uki.len() as u64,
            },
            PayloadSource {
                reader: &mut r,
                size: root.len() as u64,
            },
            0,
        )
        .unwrap();
        out
    }

    pub fn signed(m: &Manifest, signer: u8, ns: &str, uki: &[u8], root: &[u8]) -> Vec<u8> {
        let text = m.to_toml();
        let sig = sshsig::sign(&super::key(signer), ns, text.as_bytes());
        bundle(text.as_bytes(), sig.as_bytes(), uki, root)
    }

    pub fn upgrade_ns() -> &'static str {
        UPGRADE_NAMESPACE
    }
}

impl Dev {
    fn spool_entries(&self) -> Vec<String> {
        let dir = self.node().node.upgrade_spool_dir();
        match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn send_bundle(
        &self,
        k: u8,
        bytes: &[u8],
        stage: bool,
    ) -> Result<basalt_api::rpc::UpgradeResponse, ClientError> {
        let file = self.root.path().join("upload.tar");
        std::fs::write(&file, bytes).unwrap();
        self.client(k)
            .post_file(&Route::Upgrade { stage }, &file, Duration::from_secs(60))
    }
}

#[test]
fn upgrade_a_good_bundle_reaches_the_slot_writer_once_with_its_payloads() {
    use upgrade_support::*;
    let mut d = dev(Limits::default());
    let slots = Arc::new(upgrade_support::RecordingSlots::new(5));
    assert!(d.node().node.attach_slots(slots.clone()));
    let (uki, root) = (random(3000), random(70_001));
    let m = manifest(&uki, &root, 6, std::env::consts::ARCH);
    let b = signed(&m, 1, upgrade_ns(), &uki, &root);

    let r = d.send_bundle(1, &b, true).unwrap();
    assert_eq!(
        (
            r.version.as_str(),
            r.counter,
            r.slot.as_str(),
            r.staged,
            r.rebooting
        ),
        ("0.3.0", 6, "B", true, false)
    );
    assert_eq!(r.signers.len(), 1);
    let installs = slots.installs.lock().unwrap().clone();
    assert_eq!(
        installs,
        vec![upgrade_support::Install {
            counter: 6,
            stage: true,
            uki: uki.clone(),
            root: root.clone(),
        }]
    );
    assert!(d.spool_entries().is_empty(), "{:?}", d.spool_entries());
    // Staged: no reboot asked for.
    assert!(d.node.as_mut().unwrap().power.try_recv().is_err());

    // Not staged: the writer says reboot, and the node does.
    let r = d.send_bundle(2, &b, false).unwrap();
    assert!(r.rebooting);
    assert_eq!(slots.installs.lock().unwrap().len(), 2);
    // After a moment: the answer goes out first.
    let ev = (0..100)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            d.node.as_mut().unwrap().power.try_recv().ok()
        })
        .unwrap();
    assert_eq!(ev, machined::node::PowerEvent::Reboot);
    assert!(d.spool_entries().is_empty());
}

#[test]
fn upgrade_refusals_never_reach_the_slot_writer_and_leave_no_spool() {
    use upgrade_support::*;
    let d = dev(Limits {
        max_upgrade_body: 200_000,
        ..Limits::default()
    });
    let slots = Arc::new(upgrade_support::RecordingSlots::new(5));
    d.node().node.attach_slots(slots.clone());
    let arch = std::env::consts::ARCH;
    let (uki, root) = (random(3000), random(70_001));
    let good = manifest(&uki, &root, 6, arch);
    let text = good.to_toml();
    let mut tampered = signed(&good, 1, upgrade_ns(), &uki, &root);
    let at = tampered.len() - 1024 - 200;
    tampered[at] ^= 0xff;
    let good_bundle = signed(&good, 1, upgrade_ns(), &uki, &root);
    let other_arch = if arch == "x86_64" {
        "aarch64"
    } else {
        "x86_64"
    };
    let cases: Vec<(&str, u8, Vec<u8>, u16, String)> = vec![
        (
            "unsigned",
            1,
            bundle(text.as_bytes(), b"", &uki, &root),
            403,
            "the bundle is not signed".into(),
        ),
        (
            "config namespace",
            1,
            signed(&good, 1, basalt_api::CONFIG_NAMESPACE, &uki, &root),
            403,
            "namespace `basalt-config` is not `basalt-upgrade`".into(),
        ),
        (
            "api namespace",
            1,
            signed(&good, 1, request::API_NAMESPACE, &uki, &root),
            403,
            "namespace `basalt-api` is not `basalt-upgrade`".into(),
        ),
        (
            "untrusted signer",
            1,
            signed(&good, 9, upgrade_ns(), &uki, &root),
            403,
            "is not a trusted admin key".into(),
        ),
        (
            "equal counter",
            1,
            signed(
                &manifest(&uki, &root, 5, arch),
                1,
                upgrade_ns(),
                &uki,
                &root,
            ),
            400,
            "bundle counter 5 is not above this node's installed counter 5".into(),
        ),
        (
            "older counter",
            1,
            signed(
                &manifest(&uki, &root, 2, arch),
                1,
                upgrade_ns(),
                &uki,
                &root,
            ),
            400,
            "bundle counter 2 is not above".into(),
        ),
        (
            "wrong arch",
            1,
            signed(
                &manifest(&uki, &root, 6, other_arch),
                1,
                upgrade_ns(),
                &uki,
                &root,
            ),
            400,
            format!("bundle is for {other_arch} but this node is {arch}"),
        ),
        (
            "hash mismatch",
            1,
            tampered,
            400,
            "root.squashfs has sha256".into(),
        ),
        (
            "size mismatch",
            1,
            signed(&good, 1, upgrade_ns(), &uki, &root[..70_000]),
            400,
            "root.squashfs is 70000 bytes but the signed manifest says 70001".into(),
        ),
        (
            "truncated",
            1,
            good_bundle[..good_bundle.len() - 3000].to_vec(),
            400,
            "root.squashfs: the file ends at byte".into(),
        ),
        (
            "not a tar",
            1,
            b"hello".to_vec(),
            400,
            "manifest.toml: the file ends at byte 5".into(),
        ),
        (
            "reader key",
            3,
            good_bundle.clone(),
            403,
            "is a reader key; this call needs an admin".into(),
        ),
        (
            "stranger key",
            9,
            good_bundle.clone(),
            401,
            "is not trusted by this node".into(),
        ),
        (
            "over the limit",
            1,
            signed(&good, 1, upgrade_ns(), &uki, &random(300_000)),
            413,
            "upgrade bundle over 200000 bytes".into(),
        ),
    ];
    for (what, k, bytes, status, want) in cases {
        let e = d.send_bundle(k, &bytes, false).unwrap_err();
        assert_eq!(api_status(&e), status, "{what}: {e}");
        assert!(
            e.to_string().contains(&want),
            "{what}: {e}\n  should contain: {want}"
        );
        assert!(
            slots.installs.lock().unwrap().is_empty(),
            "{what} reached install"
        );
        assert!(
            d.spool_entries().is_empty(),
            "{what}: {:?}",
            d.spool_entries()
        );
    }
    // The same good bundle afterwards is installed: nothing above broke the route.
    d.send_bundle(1, &good_bundle, true).unwrap();
    assert_eq!(slots.installs.lock().unwrap().len(), 1);
}

#[test]
fn upgrade_request_signature_covers_the_streamed_body() {
    use upgrade_support::*;
    let d = dev(Limits::default());
    let slots = Arc::new(upgrade_support::RecordingSlots::new(0));
    d.node().node.attach_slots(slots.clone());
    let (uki, root) = (random(100), random(200));
    let b = signed(
        &manifest(&uki, &root, 1, std::env::consts::ARCH),
        1,
        upgrade_ns(),
        &uki,
        &root,
    );
    let client = d.client(1);
    let nonce = client.nonce().unwrap();
    let path = Route::Upgrade { stage: true }.path_and_query();
    // Signed over other bytes than those sent.
    let sig = request::sign(&key(1), "POST", &path, b"other body", &nonce);
    let e = client
        .send_raw("POST", &path, b.clone(), Some(&nonce), Some(&sig))
        .unwrap_err();
    assert_eq!(api_status(&e), 401, "{e}");
    assert!(e.to_string().contains("bad request signature"), "{e}");
    assert!(slots.installs.lock().unwrap().is_empty());
    assert!(d.spool_entries().is_empty());
    // Signed over these bytes, through the same raw path: accepted.
    let nonce = client.nonce().unwrap();
    let sig = request::sign(&key(1), "POST", &path, &b, &nonce);
    client
        .send_raw("POST", &path, b, Some(&nonce), Some(&sig))
        .unwrap();
    assert_eq!(slots.installs.lock().unwrap().len(), 1);
}

#[test]
fn upgrade_and_rollback_without_ab_slots_say_why() {
    use upgrade_support::*;
    let mut d = dev(Limits::default());
    let (uki, root) = (random(100), random(200));
    let b = signed(
        &manifest(&uki, &root, 1, std::env::consts::ARCH),
        1,
        upgrade_ns(),
        &uki,
        &root,
    );
    for e in [
        d.send_bundle(1, &b, false).unwrap_err(),
        d.client(1)
            .call::<basalt_api::rpc::RollbackResponse>(&Route::Rollback)
            .unwrap_err(),
    ] {
        assert_eq!(api_status(&e), 409, "{e}");
        assert!(
            e.to_string()
                .contains("this node does not boot from a disk with A/B slots; upgrades need the disk image (disk.raw) or an installed node"),
            "{e}"
        );
    }
    assert!(d.spool_entries().is_empty());
    // With slots: rollback reaches the writer and the node reboots.
    let slots = Arc::new(upgrade_support::RecordingSlots::new(0));
    d.node().node.attach_slots(slots.clone());
    let r: basalt_api::rpc::RollbackResponse = d.client(1).call(&Route::Rollback).unwrap();
    assert_eq!((r.slot.as_str(), r.rebooting), ("A", true));
    assert_eq!(*slots.rollbacks.lock().unwrap(), 1);
    let ev = (0..100)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            d.node.as_mut().unwrap().power.try_recv().ok()
        })
        .unwrap();
    assert_eq!(ev, machined::node::PowerEvent::Reboot);
    // Readers may not roll back.
    let e = d
        .client(3)
        .call::<basalt_api::rpc::RollbackResponse>(&Route::Rollback)
        .unwrap_err();
    assert_eq!(api_status(&e), 403);
    assert_eq!(*slots.rollbacks.lock().unwrap(), 1);
}

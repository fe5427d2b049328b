//! What an operator does with a Basalt node, on a real kernel under QEMU,
//! through the API only (basaltctl's client), never a shell.

use basalt_api::rpc::{ApplyMode, ApplyRequest, ApplyResponse, Status};
use basalt_api::{CONFIG_NAMESPACE, sshsig};
use basaltctl::client::NodeClient;
use qemu_tests::image;
use qemu_tests::vm::{FINGERPRINT_LINE, FirmwareIds, Vm, VmOptions, console_message};
use qemu_tests::{admin_key, reader_key, stranger_key};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(180);
const WORKER: &str = include_str!("../../configs/worker.toml");
const EXAMPLE_ADMIN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRBnXLtUn61qn3ftZ0PoOixOodqYhzuC1OWicDtwZPQ ops@example";

/// The example worker config, administered by the test admin and read by the test reader.
fn worker(generation: u64) -> String {
    WORKER
        .replace(EXAMPLE_ADMIN, &admin_key().public().to_openssh())
        .replace(
            "readers = []",
            &format!("readers = [\"{}\"]", reader_key().public().to_openssh()),
        )
        .replace("generation = 1", &format!("generation = {generation}"))
}

/// `doc` with a `[scope]` table holding `body`.
fn scoped(doc: &str, body: &str) -> String {
    let at = doc.find("\n[machine]\n").expect("a [machine] table");
    format!("{}\n[scope]\n{body}\n{}", &doc[..at], &doc[at..])
}

fn apply(
    c: &NodeClient,
    doc: &str,
    sig: &str,
) -> Result<ApplyResponse, basaltctl::client::ClientError> {
    c.post(
        "/v1/apply",
        &ApplyRequest {
            config: doc.to_string(),
            signatures: sig.to_string(),
            mode: ApplyMode::Auto,
            dry_run: false,
            try_timeout_secs: None,
        },
    )
}

fn sign(key: &basalt_api::sshkey::PrivateKey, doc: &str) -> String {
    sshsig::sign(key, CONFIG_NAMESPACE, doc.as_bytes())
}

fn boot(name: &str, opts: &VmOptions) -> (Vm, String, NodeClient) {
    boot_image(image::debian().expect("node image"), name, opts)
}

fn boot_image(img: &image::Image, name: &str, opts: &VmOptions) -> (Vm, String, NodeClient) {
    let mut vm = Vm::boot(img, name, opts).expect("boot");
    let fp = vm.fingerprint(1, BOOT).expect("fingerprint on the console");
    let client = vm.client(&fp, admin_key(), BOOT).expect("API");
    (vm, fp, client)
}

fn read(c: &NodeClient, path: &str) -> String {
    let v: serde_json::Value = c
        .get(&format!("/v1/read?path={path}"))
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    v["content"].as_str().unwrap_or_default().to_string()
}

#[test]
fn boots_into_maintenance_and_pins_the_console_fingerprint() {
    let (mut vm, fp, client) = boot("maintenance", &VmOptions::default());
    let s: Status = client.get("/v1/status").unwrap();
    assert_eq!(s.mode, basalt_api::rpc::NodeMode::Maintenance);
    assert_eq!(s.generation, 0);
    assert_eq!(
        s.tls_fingerprint, fp,
        "status reports the certificate it serves"
    );
    assert_eq!(s.state, "ram", "no STATE disk attached");
    // A client pinned to any other certificate refuses to talk.
    let wrong = NodeClient::new(
        &vm.addr(),
        Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        std::sync::Arc::new(admin_key()),
    )
    .unwrap();
    assert!(
        wrong
            .get::<Status>("/v1/status")
            .unwrap_err()
            .to_string()
            .contains("is pinned")
    );
    // The read-only root and no shell.
    let mounts: serde_json::Value = client.get("/v1/mounts").unwrap();
    let root = mounts
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["target"] == "/")
        .expect("a / mount")
        .clone();
    assert_eq!(root["fstype"], "squashfs", "{root}");
    assert!(
        root["options"]
            .as_str()
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{root}"
    );
    // /usr is part of the read-only root: nothing writable is mounted over it.
    assert!(
        !mounts.as_array().unwrap().iter().any(|m| m["target"]
            .as_str()
            .is_some_and(|t| t == "/usr" || t.starts_with("/usr/"))),
        "{mounts}"
    );
    let osr: serde_json::Value = client.get("/v1/read?path=/usr/lib/os-release").unwrap();
    assert!(
        osr["content"].as_str().unwrap().contains("ID=basalt"),
        "{osr}"
    );
    for shell in [
        "/bin/sh",
        "/usr/bin/sh",
        "/bin/bash",
        "/usr/bin/busybox",
        "/usr/bin/python3",
    ] {
        let e = client
            .get::<serde_json::Value>(&format!("/v1/read?path={shell}"))
            .unwrap_err();
        assert_eq!(e.status(), Some(404), "{shell}: {e}");
    }
    let _ = vm.wait_console("basalt:", 1, Duration::from_secs(1));
}

#[test]
fn applies_a_signed_worker_config_and_refuses_bad_ones() {
    let (_vm, _fp, admin) = boot(
        "apply",
        &VmOptions {
            firmware: Some(FirmwareIds {
                uuid: "3F2504E0-4F89-11D3-9A0C-0305E82C3301".into(),
                serial: "BASALT-QEMU-1".into(),
            }),
            ..VmOptions::default()
        },
    );
    // The ids a `[scope]` selector matches, as the guest kernel reads them
    // from QEMU's SMBIOS tables and its NIC (QEMU's default MAC).
    let s: Status = admin.get("/v1/status").unwrap();
    assert_eq!(
        s.identity.to_string(),
        "system_uuid 3f2504e0-4f89-11d3-9a0c-0305e82c3301, serial BASALT-QEMU-1, macs [\"52:54:00:12:34:56\"]"
    );
    // Scoped to this machine by its serial, valid until 2099; with a
    // registry credential in a CRI drop-in, which the support bundle below
    // must not carry.
    let doc = scoped(
        &with_registry_password(&worker(1)),
        "not_after = 2099-01-01T00:00:00Z\nserials = [\"BASALT-QEMU-1\"]",
    );
    let r = apply(&admin, &doc, &sign(&admin_key(), &doc)).unwrap();
    assert_eq!(r.generation, 1);
    let s: Status = admin.get("/v1/status").unwrap();
    assert_eq!(
        (s.mode.as_str(), s.generation, s.hostname.as_str()),
        ("configured", 1, "worker-1")
    );

    // DHCP from QEMU, the static route, DNS, sysctls, the file under /var.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let net: serde_json::Value = admin.get("/v1/network").unwrap();
        let eth0 = net["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "eth0")
            .cloned();
        let has_addr = eth0.as_ref().is_some_and(|l| {
            l["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "10.0.2.15/24")
        });
        let has_route = net["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["destination"] == "192.168.100.0/24" && r["gateway"] == "10.0.2.2");
        if has_addr && has_route {
            break;
        }
        assert!(Instant::now() < deadline, "network never converged: {net}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(read(&admin, "/etc/resolv.conf").contains("nameserver 10.0.2.3"));
    assert_eq!(read(&admin, "/proc/sys/net/ipv4/ip_forward").trim(), "1");
    assert_eq!(read(&admin, "/proc/sys/vm/max_map_count").trim(), "262144");
    assert_eq!(
        read(&admin, "/var/lib/basalt-example/motd"),
        "managed by basalt\n"
    );
    assert_eq!(read(&admin, "/proc/sys/kernel/hostname").trim(), "worker-1");

    // Refusals leave the node as it is.
    let before: Status = admin.get("/v1/status").unwrap();
    let next = worker(2).replace("worker-1", "worker-2");
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        (
            "bad signature",
            next.clone(),
            sign(&admin_key(), &worker(2)),
            403,
            "does not match these bytes",
        ),
        (
            "untrusted key",
            next.clone(),
            sign(&stranger_key(), &next),
            403,
            "is not a trusted admin key",
        ),
        (
            "replayed generation",
            doc.clone(),
            sign(&admin_key(), &doc),
            409,
            "is not newer",
        ),
        (
            "for another machine",
            scoped(
                &next,
                "system_uuids = [\"3f2504e0-4f89-11d3-9a0c-0305e82c3302\"]",
            ),
            sign(
                &admin_key(),
                &scoped(
                    &next,
                    "system_uuids = [\"3f2504e0-4f89-11d3-9a0c-0305e82c3302\"]",
                ),
            ),
            409,
            "this config is not for this node",
        ),
    ];
    for (name, d, s, status, msg) in cases {
        let e = apply(&admin, &d, &s).unwrap_err();
        assert_eq!(e.status(), Some(status), "{name}: {e}");
        assert!(e.to_string().contains(msg), "{name}: {e}");
    }
    let reader = NodeClient::new(
        &_vm.addr(),
        Some(before.tls_fingerprint.clone()),
        std::sync::Arc::new(reader_key()),
    )
    .unwrap();
    let e = apply(&reader, &next, &sign(&admin_key(), &next)).unwrap_err();
    assert_eq!(e.status(), Some(403), "reader applying: {e}");
    let after: Status = admin.get("/v1/status").unwrap();
    assert_eq!(
        (after.generation, after.config_sha256, after.hostname),
        (before.generation, before.config_sha256, before.hostname)
    );
    support_bundles_hold_every_section_and_no_secret(&_vm, &admin, &reader, &doc);
}

const REGISTRY_PASSWORD: &str = "qemu-canary-registry-password-5be1";

/// `doc` with a CRI drop-in holding registry credentials.
fn with_registry_password(doc: &str) -> String {
    let file = format!(
        "[[machine.files]]\npath = \"/etc/cri/conf.d/20-registry-auth.toml\"\nmode = 0o600\nop = \"overwrite\"\ncontent = '''\n[plugins.\"io.containerd.cri.v1.images\".registry.configs.\"registry.example.org\".auth]\nusername = \"basalt\"\npassword = \"{REGISTRY_PASSWORD}\"\n'''\n\n[machine.kubelet]"
    );
    assert!(doc.contains("[machine.kubelet]"));
    doc.replacen("[machine.kubelet]", &file, 1)
}

/// `basaltctl support` against the configured VM, with an admin key and
/// with a reader key (basaltctl's own code, as the command runs it), read
/// by the peers (`tar --zstd` lists it, `zstd -dc | tar -x` unpacks it):
/// every section is there, the refusals are listed, and no member holds the
/// config's token, its secret half or the registry password.
fn support_bundles_hold_every_section_and_no_secret(
    vm: &Vm,
    admin: &NodeClient,
    reader: &NodeClient,
    doc: &str,
) {
    use basaltctl::support;
    use std::process::Command;
    let cfg = basalt_api::config::MachineConfig::parse(doc.as_bytes()).unwrap();
    let token = cfg.cluster.token.expose().to_string();
    let secrets = [
        token.clone(),
        token.split_once('.').unwrap().1.to_string(),
        REGISTRY_PASSWORD.to_string(),
    ];
    // containerd's log has its start (with its CRI config) before the
    // bundle is taken.
    let deadline = Instant::now() + Duration::from_secs(120);
    let containerd_log = loop {
        let log = admin
            .send("GET", "/v1/logs/containerd", vec![])
            .map(|r| r.text().unwrap_or_default())
            .unwrap_or_default();
        if log.contains("containerd.sock") {
            break log;
        }
        assert!(Instant::now() < deadline, "containerd never served: {log}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let node = vm.addr();
    for (who, client) in [("admin", admin), ("reader", reader)] {
        let dir = vm.dir().join(format!("support-{who}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("support.tar.zst");
        let started = Instant::now();
        let bundle = support::collect(client, &node, &mut |_| {});
        assert_eq!(bundle.unreachable, None, "{who}");
        let written = support::write_bundle(&out, &[bundle], false).unwrap();
        eprintln!(
            "support bundle ({who} key) of the QEMU node: {} files, {} bytes compressed, {} unpacked, in {:.1}s",
            written.members.len(),
            written.compressed,
            written.unpacked(),
            started.elapsed().as_secs_f64()
        );
        let run = |cmd: &mut Command| {
            let o = cmd.output().expect("tar and zstd (scripts/install-deps)");
            assert!(
                o.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let listed = run(Command::new("tar").arg("--zstd").arg("-tf").arg(&out));
        let x = dir.join("x");
        std::fs::create_dir(&x).unwrap();
        run(Command::new("sh").arg("-c").arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            out.display(),
            x.display()
        )));
        let member = |m: &str| std::fs::read_to_string(x.join(&node).join(m));
        let services: Vec<basalt_api::rpc::ServiceStatus> =
            serde_json::from_str(&member("services.json").unwrap()).unwrap();
        assert!(
            services.iter().any(|s| s.name == "containerd"),
            "{services:?}"
        );
        let mut want: Vec<String> = [
            "version.json",
            "status.json",
            "services.json",
            "health.json",
            "resources.json",
            "network.json",
            "mounts.json",
            "processes.json",
            "metrics.txt",
            "dmesg.txt",
            "config.toml",
            "files/etc/os-release",
            "files/etc/basalt/trust.toml",
            "files/etc/basalt/image-policy.toml",
            "files/etc/basalt/modules.load",
            "files/proc/version",
            "files/proc/cmdline",
            "files/proc/meminfo",
            "files/etc/resolv.conf",
        ]
        .map(String::from)
        .to_vec();
        if who == "admin" {
            want.extend(services.iter().map(|s| format!("logs/{}.log", s.name)));
        }
        for m in &want {
            assert!(
                listed.lines().any(|l| l == format!("{node}/{m}")),
                "{who}: no {m} in\n{listed}"
            );
        }
        assert!(
            member("files/etc/os-release")
                .unwrap()
                .contains("ID=basalt")
        );
        let status: Status = serde_json::from_str(&member("status.json").unwrap()).unwrap();
        assert_eq!(
            (status.generation, status.hostname.as_str()),
            (1, "worker-1")
        );
        let config = member("config.toml").unwrap();
        assert!(
            config.contains("token = \"<redacted>\"") && config.contains("20-registry-auth.toml"),
            "{config}"
        );
        if who == "reader" {
            let errors = member("errors.txt").unwrap();
            assert!(errors.contains("logs/containerd.log: 403: "), "{errors}");
        } else {
            let log = member("logs/containerd.log").unwrap();
            assert!(log.starts_with(&containerd_log), "{log}");
        }
        // No member carries a secret: GNU grep over the unpacked tree (which
        // does find what was redacted in their place).
        let redacted = Command::new("grep")
            .arg("-rlF")
            .arg("<redacted>")
            .arg(&x)
            .output()
            .unwrap();
        assert_eq!(redacted.status.code(), Some(0), "{who}: nothing redacted?");
        for s in &secrets {
            let found = Command::new("grep")
                .arg("-rlF")
                .arg(s)
                .arg(&x)
                .output()
                .unwrap();
            assert_eq!(
                found.status.code(),
                Some(1),
                "{who}: a secret in {}",
                String::from_utf8_lossy(&found.stdout)
            );
        }
    }
}

#[test]
fn containerd_runs_and_is_restarted_after_a_kill() {
    let (_vm, _fp, admin) = boot("containerd", &VmOptions::default());
    let doc = worker(1);
    apply(&admin, &doc, &sign(&admin_key(), &doc)).unwrap();
    let running = |admin: &NodeClient| -> Option<(u64, u64)> {
        let list: serde_json::Value = admin.get("/v1/services").ok()?;
        let c = list
            .as_array()?
            .iter()
            .find(|s| s["name"] == "containerd")?
            .clone();
        (c["state"] == "running" && c["ready"] == true).then(|| {
            (
                c["pid"].as_u64().unwrap_or(0),
                c["restarts"].as_u64().unwrap_or(0),
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let (pid, restarts) = loop {
        if let Some(r) = running(&admin) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "containerd never became ready: {}",
            admin.get::<serde_json::Value>("/v1/services").unwrap()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Ready means `ctr version` (in the image, run by machined) got an answer
    // over containerd's socket; its log shows it serving.
    let logs = admin
        .send("GET", "/v1/logs/containerd", vec![])
        .unwrap()
        .text()
        .unwrap();
    assert!(logs.contains("containerd.sock"), "{logs}");
    // Its own cgroup, with memory accounted by the kernel.
    let cg = read(&admin, &format!("/proc/{pid}/cgroup"));
    assert_eq!(cg.trim(), "0::/basalt/containerd", "{cg}");
    // A fork bomb in it stops at its pids.max, not at the node's pid_max.
    let pids_max = read(&admin, "/sys/fs/cgroup/basalt/containerd/pids.max");
    assert_eq!(
        pids_max.trim(),
        machined::supervisor::DEFAULT_PIDS_MAX.to_string()
    );
    // The OOM killer never picks PID 1; the services it starts are fair game.
    assert_eq!(read(&admin, "/proc/1/oom_score_adj").trim(), "-1000");
    assert_eq!(
        read(&admin, &format!("/proc/{pid}/oom_score_adj")).trim(),
        "0",
        "containerd inherited PID 1's OOM shield"
    );
    let list: serde_json::Value = admin.get("/v1/services").unwrap();
    let mem = list[0]["memory_current"].as_u64().unwrap_or(0);
    assert!(mem > 1024 * 1024, "memory.current of containerd: {list}");
    admin
        .post::<_, serde_json::Value>("/v1/services/containerd/kill", &serde_json::json!({}))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some((p, r)) = running(&admin)
            && p != pid
            && r > restarts
        {
            break;
        }
        assert!(Instant::now() < deadline, "containerd not restarted");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn config_survives_reboot_on_state_and_shutdown_powers_off() {
    let dir = image::target_dir().join("qemu-runs");
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join(format!("state-{}.raw", std::process::id()));
    qemu_tests::statedisk::create(&disk, 96).unwrap();
    let opts = VmOptions {
        disks: vec![disk.clone()],
        ..VmOptions::default()
    };
    let (mut vm, fp, admin) = boot("persist", &opts);
    let s: Status = admin.get("/v1/status").unwrap();
    assert_eq!(
        s.state, "/var/lib/basalt/state",
        "STATE disk found by label"
    );
    let doc = worker(1);
    apply(&admin, &doc, &sign(&admin_key(), &doc)).unwrap();
    let boot_id = admin.get::<Status>("/v1/status").unwrap().boot_id;
    admin
        .post::<_, serde_json::Value>("/v1/reboot", &serde_json::json!({}))
        .unwrap();
    let fp2 = vm.fingerprint(2, BOOT).expect("second boot");
    assert_eq!(fp2, fp, "the TLS identity lives on STATE");
    // An orderly reboot (services stopped, STATE unmounted, reboot(2)), not
    // the panic hook's: that reboots too.
    let console = vm.console();
    // Where machined's lines say it.
    let said = |needle: &str| -> Vec<usize> {
        let mut at = 0;
        let mut out = Vec::new();
        for line in console.split_inclusive('\n') {
            if console_message(line).starts_with(needle) {
                out.push(at);
            }
            at += line.len();
        }
        out
    };
    let (stop, now, second) = (
        said("INFO Reboot: stopping services").first().copied(),
        said("INFO Reboot now").first().copied(),
        said(FINGERPRINT_LINE).get(1).copied(),
    );
    assert!(
        stop.is_some() && stop < now && now < second,
        "no orderly reboot before the second boot (stop {stop:?}, reboot {now:?}, boot 2 {second:?})"
    );
    assert_eq!(vm.panic_line(), None);
    let admin = vm.client(&fp2, admin_key(), BOOT).unwrap();
    let s: Status = admin.get("/v1/status").unwrap();
    assert_eq!(
        (s.mode.as_str(), s.generation, s.hostname.as_str()),
        ("configured", 1, "worker-1")
    );
    assert_ne!(s.boot_id, boot_id, "it really rebooted");
    admin
        .post::<_, serde_json::Value>("/v1/shutdown", &serde_json::json!({}))
        .unwrap();
    let status = vm.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(status.success(), "QEMU exit status {status}");
    let _ = std::fs::remove_file(&disk);
}

/// `doc` with its example file's content replaced (and overwritten, so
/// each apply may change it).
fn with_motd(doc: &str, content: &str) -> String {
    let doc = doc.replace(
        "content = \"managed by basalt\\n\"",
        &format!("content = \"{content}\""),
    );
    doc.replace("op = \"create\"", "op = \"overwrite\"")
}

/// A STATE disk with room for one large config but not two: the apply
/// that cannot be persisted is refused through the API (507, saying so),
/// the running config stays (status, its file, after a reboot), the node
/// keeps serving and takes a config that fits.
#[test]
fn a_full_state_disk_refuses_the_apply_and_keeps_the_old_config() {
    let dir = image::target_dir().join("qemu-runs");
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join(format!("tiny-state-{}.raw", std::process::id()));
    // A 2 MiB ext4: about 900 KiB free once its journal is made.
    qemu_tests::statedisk::create(&disk, 4).unwrap();
    let opts = VmOptions {
        disks: vec![disk.clone()],
        ..VmOptions::default()
    };
    let (mut vm, fp, admin) = boot("tinystate", &opts);
    let s: Status = admin.get("/v1/status").unwrap();
    assert_eq!(
        s.state, "/var/lib/basalt/state",
        "STATE disk found by label"
    );

    let first = with_motd(&worker(1), &"a".repeat(550 * 1024));
    apply(&admin, &first, &sign(&admin_key(), &first)).expect("one large config fits");
    let sha = |d: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(d.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let kept = |admin: &NodeClient| {
        let s: Status = admin.get("/v1/status").unwrap();
        assert_eq!(
            (s.generation, s.config_sha256.clone()),
            (1, Some(sha(&first))),
            "the running config changed"
        );
        let motd = read(admin, "/var/lib/basalt-example/motd");
        assert!(
            motd.len() == 550 * 1024 && motd.starts_with("aaaa"),
            "{} bytes",
            motd.len()
        );
    };
    kept(&admin);

    let second = with_motd(&worker(2), &"b".repeat(550 * 1024));
    let e = apply(&admin, &second, &sign(&admin_key(), &second)).unwrap_err();
    assert_eq!(e.status(), Some(507), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("no space left") && msg.contains("not persisted"),
        "{msg}"
    );
    kept(&admin);
    // Still serving, and retrying changes nothing.
    let e = apply(&admin, &second, &sign(&admin_key(), &second)).unwrap_err();
    assert_eq!(e.status(), Some(507), "{e}");
    kept(&admin);

    // A reboot finds the same identity and the old config.
    admin
        .post::<_, serde_json::Value>("/v1/reboot", &serde_json::json!({}))
        .unwrap();
    let fp2 = vm.fingerprint(2, BOOT).expect("second boot");
    assert_eq!(fp2, fp, "the TLS identity lives on STATE");
    let admin = vm.client(&fp2, admin_key(), BOOT).unwrap();
    kept(&admin);

    // A config that fits is taken: the failed one left no debris behind.
    let small = with_motd(&worker(2), "small");
    apply(&admin, &small, &sign(&admin_key(), &small)).expect("a small config fits");
    let s: Status = admin.get("/v1/status").unwrap();
    assert_eq!((s.generation, s.config_sha256), (2, Some(sha(&small))));
    assert_eq!(read(&admin, "/var/lib/basalt-example/motd"), "small");
    assert_eq!(vm.panic_line(), None);
    admin
        .post::<_, serde_json::Value>("/v1/shutdown", &serde_json::json!({}))
        .unwrap();
    let status = vm.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(status.success(), "QEMU exit status {status}");
    let _ = std::fs::remove_file(&disk);
}

/// Unattended first boot: an image with a baked, signed config and no
/// STATE comes up configured, without any apply (Talos' embedded config).
#[test]
fn a_baked_config_applies_at_first_boot_without_an_apply() {
    let doc = worker(4);
    let sig = sign(&admin_key(), &doc);
    let img = image::debian_with_config(&image::Baked {
        config: &doc,
        signature: &sig,
    })
    .expect("node image with a baked config");
    let (mut vm, _fp, admin) = boot_image(img, "baked", &VmOptions::default());
    let s: Status = admin.get("/v1/status").unwrap();
    assert_eq!(
        (
            s.mode.as_str(),
            s.generation,
            s.hostname.as_str(),
            s.state.as_str()
        ),
        ("configured", 4, "worker-1", "ram")
    );
    assert!(
        vm.console()
            .contains("applied the image's baked config /etc/basalt/config.toml, generation 4"),
        "{}",
        vm.console_tail(40)
    );
    assert_eq!(read(&admin, "/proc/sys/vm/max_map_count").trim(), "262144");
    // Still the same rules as an apply: an older generation is refused.
    let old = worker(3);
    let e = apply(&admin, &old, &sign(&admin_key(), &old)).unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");

    // RAM mode: an orderly shutdown that unmounts nothing it never mounted.
    admin
        .post::<_, serde_json::Value>("/v1/shutdown", &serde_json::json!({}))
        .unwrap();
    let status = vm.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(status.success(), "QEMU exit status {status}");
    let console = vm.console();
    assert!(
        console.contains("Shutdown: stopping services"),
        "{}",
        vm.console_tail(40)
    );
    assert!(
        !console.contains("unmounting /var/lib/basalt/state"),
        "{}",
        vm.console_tail(40)
    );
}

//! basaltctl against the real OpenSSH: keys and SSHSIG signatures must
//! interoperate both ways with `ssh-keygen`, and the config round trip must hold.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_basaltctl");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("spawn basaltctl")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "basaltctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fail(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        !out.status.success(),
        "basaltctl {args:?} unexpectedly succeeded"
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ssh_keygen(dir: &Path, args: &[&str], stdin: Option<&Path>) -> Output {
    let mut cmd = Command::new("ssh-keygen");
    cmd.current_dir(dir).args(args);
    if let Some(f) = stdin {
        cmd.stdin(std::fs::File::open(dir.join(f)).expect("stdin file"));
    }
    cmd.output()
        .expect("ssh-keygen must be installed (openssh-client)")
}

/// `ssh-keygen -l`'s fingerprint of a public key file.
fn peer_fingerprint(dir: &Path, pubfile: &str) -> String {
    let out = ssh_keygen(dir, &["-l", "-f", pubfile], None);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    Env { _tmp: tmp, dir }
}

/// A worker config administered by `admin.pub`.
fn worker(e: &Env) {
    ok(
        &e.dir,
        &["keys", "gen", "--out", "admin", "--comment", "ops@test"],
    );
    ok(
        &e.dir,
        &[
            "config",
            "gen",
            "--role",
            "worker",
            "--cluster-name",
            "lab",
            "--endpoint",
            "https://10.0.0.10:6443",
            "--admin-key",
            "admin.pub",
            "--out",
            "w.toml",
        ],
    );
}

#[test]
fn keys_gen_is_read_by_ssh_keygen_and_refuses_overwrite() {
    let e = env();
    let printed = ok(
        &e.dir,
        &["keys", "gen", "--out", "k", "--comment", "alice@lab"],
    );
    assert_eq!(printed.trim(), peer_fingerprint(&e.dir, "k.pub"));
    let mode = std::fs::metadata(e.dir.join("k"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // ssh-keygen derives the public key from our private key file.
    let y = ssh_keygen(&e.dir, &["-y", "-f", "k"], None);
    assert!(y.status.success(), "{}", String::from_utf8_lossy(&y.stderr));
    let ours = std::fs::read_to_string(e.dir.join("k.pub")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&y.stdout)
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>(),
        ours.split_whitespace().take(2).collect::<Vec<_>>()
    );
    let before = std::fs::read(e.dir.join("k")).unwrap();
    assert!(
        fail(&e.dir, &["keys", "gen", "--out", "k"])
            .contains("already exists; refusing to overwrite")
    );
    assert_eq!(std::fs::read(e.dir.join("k")).unwrap(), before);
}

#[test]
fn ssh_keygen_verifies_our_signature() {
    let e = env();
    worker(&e);
    ok(&e.dir, &["config", "sign", "--key", "admin", "w.toml"]);
    let key = std::fs::read_to_string(e.dir.join("admin.pub")).unwrap();
    std::fs::write(e.dir.join("allowed"), format!("ops {key}")).unwrap();
    let out = ssh_keygen(
        &e.dir,
        &[
            "-Y",
            "verify",
            "-f",
            "allowed",
            "-I",
            "ops",
            "-n",
            "basalt-config",
            "-s",
            "w.toml.sig",
        ],
        Some(Path::new("w.toml")),
    );
    assert!(
        out.status.success(),
        "ssh-keygen rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Good \"basalt-config\" signature for ops")
    );
    // ... and it would reject the same signature over other bytes.
    std::fs::write(e.dir.join("other"), b"other bytes").unwrap();
    let out = ssh_keygen(
        &e.dir,
        &[
            "-Y",
            "verify",
            "-f",
            "allowed",
            "-I",
            "ops",
            "-n",
            "basalt-config",
            "-s",
            "w.toml.sig",
        ],
        Some(Path::new("other")),
    );
    assert!(!out.status.success());
}

#[test]
fn we_verify_ssh_keygen_signatures_and_read_its_keys() {
    let e = env();
    worker(&e);
    let made = ssh_keygen(
        &e.dir,
        &[
            "-q", "-t", "ed25519", "-N", "", "-C", "bob@lab", "-f", "bob",
        ],
        None,
    );
    assert!(made.status.success());
    let signed = ssh_keygen(
        &e.dir,
        &["-Y", "sign", "-n", "basalt-config", "-f", "bob", "w.toml"],
        None,
    );
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let out = ok(
        &e.dir,
        &["config", "verify", "--trust", "bob.pub", "w.toml"],
    );
    assert!(
        out.contains(&format!(
            "signed by {} (bob@lab)",
            peer_fingerprint(&e.dir, "bob.pub")
        )),
        "{out}"
    );

    // Our signer reads ssh-keygen's private key format too; two admins, threshold 2.
    ok(&e.dir, &["config", "sign", "--key", "bob", "w.toml"]);
    let both = format!(
        "{}{}",
        std::fs::read_to_string(e.dir.join("bob.pub")).unwrap(),
        std::fs::read_to_string(e.dir.join("admin.pub")).unwrap()
    );
    std::fs::write(e.dir.join("both.pub"), both).unwrap();
    let out = fail(
        &e.dir,
        &[
            "config",
            "verify",
            "--trust",
            "both.pub",
            "--threshold",
            "2",
            "w.toml",
        ],
    );
    assert!(out.contains("already signed (counted once)"), "{out}");
    ok(&e.dir, &["config", "sign", "--key", "admin", "w.toml"]);
    let out = ok(
        &e.dir,
        &[
            "config",
            "verify",
            "--trust",
            "both.pub",
            "--threshold",
            "2",
            "w.toml",
        ],
    );
    assert_eq!(out.matches("signed by").count(), 2, "{out}");
}

#[test]
fn peer_signatures_we_must_refuse() {
    let e = env();
    worker(&e);
    for (algo, name, msg) in [
        (
            "rsa",
            "rsa",
            "only ssh-ed25519 signatures are accepted, got rsa-sha2-512",
        ),
        (
            "ecdsa",
            "ec",
            "only ssh-ed25519 signatures are accepted, got ecdsa-sha2-nistp256",
        ),
    ] {
        let g = ssh_keygen(&e.dir, &["-q", "-t", algo, "-N", "", "-f", name], None);
        assert!(g.status.success());
        let _ = std::fs::remove_file(e.dir.join("w.toml.sig"));
        assert!(
            ssh_keygen(
                &e.dir,
                &["-Y", "sign", "-n", "basalt-config", "-f", name, "w.toml"],
                None
            )
            .status
            .success()
        );
        let out = fail(
            &e.dir,
            &["config", "verify", "--trust", "admin.pub", "w.toml"],
        );
        assert!(
            out.contains(msg) || out.contains(&msg.replace("rsa-sha2-512", "ssh-rsa")),
            "{algo}: {out}"
        );
        // A non-ed25519 key cannot even be trusted.
        let out = fail(
            &e.dir,
            &[
                "config",
                "verify",
                "--trust",
                &format!("{name}.pub"),
                "w.toml",
            ],
        );
        assert!(out.contains("only ssh-ed25519 keys are accepted"), "{out}");
    }
    // A good ed25519 key but the namespace of another tool.
    let _ = std::fs::remove_file(e.dir.join("w.toml.sig"));
    assert!(
        ssh_keygen(
            &e.dir,
            &["-Y", "sign", "-n", "file", "-f", "admin", "w.toml"],
            None
        )
        .status
        .success()
    );
    let out = fail(
        &e.dir,
        &["config", "verify", "--trust", "admin.pub", "w.toml"],
    );
    assert!(
        out.contains("namespace `file` is not `basalt-config`"),
        "{out}"
    );
}

#[test]
fn generated_configs_validate_sign_and_verify() {
    let e = env();
    ok(&e.dir, &["keys", "gen", "--out", "admin"]);
    for role in ["worker", "controlplane"] {
        let file = format!("{role}.toml");
        ok(
            &e.dir,
            &[
                "config",
                "gen",
                "--role",
                role,
                "--cluster-name",
                "lab",
                "--endpoint",
                "https://cp.lab:6443",
                "--admin-key",
                "admin.pub",
                "--out",
                &file,
            ],
        );
        let mode = std::fs::metadata(e.dir.join(&file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "configs hold secrets");
        ok(&e.dir, &["config", "validate", &file]);
        ok(&e.dir, &["config", "sign", "--key", "admin", &file]);
        let out = ok(&e.dir, &["config", "verify", "--trust", "admin.pub", &file]);
        assert!(out.contains("OK, generation 1"));
        // The node has already applied generation 1.
        let out = fail(
            &e.dir,
            &[
                "config",
                "verify",
                "--trust",
                "admin.pub",
                "--current-generation",
                "1",
                &file,
            ],
        );
        assert!(
            out.contains("is not newer than the node's current generation 1"),
            "{out}"
        );
    }
    let text = std::fs::read_to_string(e.dir.join("controlplane.toml")).unwrap();
    assert!(text.contains("BEGIN PRIVATE KEY") && text.contains("etcd_ca_cert"));
    let diff = ok(
        &e.dir,
        &["config", "diff", "worker.toml", "controlplane.toml"],
    );
    assert!(
        diff.contains("~ cluster.token: <redacted> -> <redacted> (changed)"),
        "{diff}"
    );
    assert!(diff.contains("+ cluster.ca_key = \"<redacted>\""), "{diff}");
    assert!(!diff.contains("PRIVATE KEY"), "diff leaked a key: {diff}");
    assert!(diff.contains("~ machine.role: \"worker\" -> \"controlplane\""));
}

#[test]
fn validate_reports_file_line_col_path() {
    let e = env();
    worker(&e);
    let text = std::fs::read_to_string(e.dir.join("w.toml")).unwrap();
    std::fs::write(
        e.dir.join("bad.toml"),
        text.replace("role = \"worker\"", "role = \"worker\"\nhostnme = \"x\""),
    )
    .unwrap();
    let out = run(&e.dir, &["config", "validate", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let line = text.lines().position(|l| l.starts_with("role =")).unwrap() + 2;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("bad.toml:{line}:1: machine.hostnme: unknown key")),
        "{err}"
    );
    // Signing refuses invalid documents and writes no signature.
    fail(&e.dir, &["config", "sign", "--key", "admin", "bad.toml"]);
    assert!(!e.dir.join("bad.toml.sig").exists());
}

#[test]
fn examples_validate_and_completions_print() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for f in ["configs/worker.toml", "configs/controlplane.toml"] {
        ok(&root, &["config", "validate", f]);
    }
    for shell in ["bash", "zsh", "fish"] {
        assert!(ok(&root, &["completions", shell]).contains("basaltctl"));
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn kubeconfig_refuses_to_overwrite_or_a_bad_server_before_asking_the_node() {
    let e = env();
    std::fs::write(e.dir.join("kc"), "mine").unwrap();
    // No node listens there: the refusals come before any request.
    let node = format!("127.0.0.1:{}", closed_port());
    let base = [
        "--node",
        node.as_str(),
        "--key",
        "missing-key",
        "kubeconfig",
    ];
    let err = fail(&e.dir, &[&base[..], &["--out", "kc"]].concat());
    assert!(
        err.contains("kc already exists; refusing to overwrite it (pass --force to replace it)"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(e.dir.join("kc")).unwrap(), "mine");
    let err = fail(
        &e.dir,
        &[&base[..], &["--server", "http://127.0.0.1:6443"]].concat(),
    );
    assert!(
        err.contains("server `http://127.0.0.1:6443` is not an API server URL; expected https://"),
        "{err}"
    );
    // --force needs --out.
    let err = fail(&e.dir, &[&base[..], &["--force"]].concat());
    assert!(err.contains("--out"), "{err}");
    let help = ok(&e.dir, &["kubeconfig", "--help"]);
    assert!(help.contains("The node mints it"), "{help}");
    assert!(help.contains("mode 0600"), "{help}");
}

#[test]
fn health_gives_up_after_its_timeout_with_a_non_zero_exit() {
    let e = env();
    ok(&e.dir, &["keys", "gen", "--out", "admin"]);
    let node = format!("127.0.0.1:{}", closed_port());
    let started = std::time::Instant::now();
    let out = run(
        &e.dir,
        &[
            "--node",
            &node,
            "--key",
            "admin",
            "--fingerprint",
            "SHA256:x",
            "health",
            "--timeout",
            "1s",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: not healthy after 1s; last attempt: connecting to"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let err = fail(&e.dir, &["health", "--timeout", "soon"]);
    assert!(err.contains("`soon` is not a duration"), "{err}");
}

/// Two loopback addresses nothing listens on, `127.0.0.1:P1,127.0.0.1:P2`.
fn two_closed_nodes() -> (String, String) {
    // Held together, so the two ports differ.
    let l: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let a = l[0].local_addr().unwrap().to_string();
    let b = l[1].local_addr().unwrap().to_string();
    (a, b)
}

/// Reads take several nodes; each failure is labelled with its node (in
/// text on stderr, in JSON as that node's object), and the command fails
/// naming them. Writes refuse several nodes before asking any. (Labelled
/// answers of live nodes: machined/tests/api.rs.)
#[test]
fn several_nodes_each_failure_is_labelled_and_the_command_fails() {
    let e = env();
    ok(&e.dir, &["keys", "gen", "--out", "admin"]);
    let (a, b) = two_closed_nodes();
    let nodes = format!("{a},{b}");
    let out = run(&e.dir, &["--node", &nodes, "--key", "admin", "services"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with(&format!("{a}: error: connecting to {a}")),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("{b}: error: connecting to {b}")),
        "{err}"
    );
    assert_eq!(lines[2], format!("error: 2 of 2 nodes failed: {a}, {b}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    // The same through BASALT_NODE, as JSON: one object per node.
    let out = Command::new(BIN)
        .current_dir(&e.dir)
        .env("BASALT_NODE", &nodes)
        .args(["--key", "admin", "-o", "json", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let objects = v.as_array().unwrap();
    assert_eq!(objects.len(), 2, "{v}");
    for (o, n) in objects.iter().zip([&a, &b]) {
        assert_eq!(o["node"].as_str(), Some(n.as_str()), "{v}");
        assert!(
            o["error"].as_str().unwrap().contains("connecting to"),
            "{v}"
        );
    }

    for (args, says) in [
        (
            vec!["--node", &nodes, "reboot"],
            "acts on one node at a time; --node names 2".to_string(),
        ),
        (
            vec!["--node", &format!("{a},,{b}"), "status"],
            "an empty node name".to_string(),
        ),
        (
            vec!["--node", &format!("{a},{a}"), "status"],
            format!("--node names {a} twice"),
        ),
    ] {
        let args = [&args[..], &["--key", "admin"]].concat();
        let err = fail(&e.dir, &args);
        assert!(err.contains(&says), "{args:?}: {err}");
        assert!(!err.contains("connecting"), "{args:?} asked a node: {err}");
    }
}

/// `support` with nodes that do not answer still writes its bundle, one
/// directory each with an errors.txt saying why, as the peers (zstd, GNU
/// tar) read it; prints what it wrote; fails naming the nodes; and never
/// replaces a bundle without --force.
#[test]
fn support_writes_what_it_could_and_fails_naming_the_nodes_it_could_not_reach() {
    let e = env();
    ok(&e.dir, &["keys", "gen", "--out", "admin"]);
    let (a, b) = two_closed_nodes();
    let nodes = format!("{a},{b}");
    let args = [
        "--node",
        &nodes,
        "--key",
        "admin",
        "support",
        "--out",
        "b.tar.zst",
    ];
    let out = run(&e.dir, &args);
    assert!(!out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains(&format!("  {a}/errors.txt\n")), "{stdout}");
    assert!(
        stdout.contains("wrote b.tar.zst: 2 files from 2 nodes, "),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("{a}: error: connecting to {a}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "error: 2 of 2 nodes could not be reached: {a}, {b}"
        )),
        "{stderr}"
    );
    let listed = Command::new("tar")
        .current_dir(&e.dir)
        .args(["--zstd", "-tf", "b.tar.zst"])
        .output()
        .expect("GNU tar and zstd (scripts/install-deps)");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    // In path order, whatever the order on the command line.
    let (first, second) = if a < b { (&a, &b) } else { (&b, &a) };
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        format!("{first}/\n{first}/errors.txt\n{second}/\n{second}/errors.txt\n")
    );
    let errors = Command::new("tar")
        .current_dir(&e.dir)
        .args(["--zstd", "-xOf", "b.tar.zst", &format!("{b}/errors.txt")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&errors.stdout).starts_with(&format!(
            "node not reached (nothing was collected): connecting to {b}"
        )),
        "{errors:?}"
    );
    let before = std::fs::read(e.dir.join("b.tar.zst")).unwrap();
    let err = fail(&e.dir, &args);
    assert!(
        err.contains("b.tar.zst exists; pass --force to replace it"),
        "{err}"
    );
    assert!(!err.contains("connecting"), "asked the nodes first: {err}");
    assert_eq!(std::fs::read(e.dir.join("b.tar.zst")).unwrap(), before);
}

// ---- Upgrade bundles against GNU tar and ssh-keygen -------------------------

fn tar(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("tar")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("GNU tar must be installed");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn random_file(dir: &Path, name: &str, len: usize) {
    let mut v = vec![0u8; len];
    getrandom::fill(&mut v).unwrap();
    std::fs::write(dir.join(name), v).unwrap();
}

/// A UKI and a root image (random bytes), an unsigned bundle `b.tar` made
/// with SOURCE_DATE_EPOCH, and the basaltctl admin key `admin`.
fn upgrade_env() -> Env {
    let e = env();
    random_file(&e.dir, "uki.efi", 5000);
    random_file(&e.dir, "root.squashfs", 70_001);
    create(&e.dir, "b.tar", "7");
    ok(
        &e.dir,
        &["keys", "gen", "--out", "admin", "--comment", "ops@test"],
    );
    e
}

fn create(dir: &Path, out: &str, counter: &str) {
    let status = Command::new(BIN)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "upgrade",
            "create",
            "--uki",
            "uki.efi",
            "--root",
            "root.squashfs",
            "--version",
            "0.3.0",
            "--counter",
            counter,
            "--out",
            out,
        ])
        .output()
        .unwrap()
        .status;
    assert!(status.success());
}

fn trust_toml(dir: &Path, pubs: &[&str], threshold: usize) {
    let keys: Vec<String> = pubs
        .iter()
        .map(|p| format!("{:?}", std::fs::read_to_string(dir.join(p)).unwrap().trim()))
        .collect();
    std::fs::write(
        dir.join("trust.toml"),
        format!("admins = [{}]\nthreshold = {threshold}\n", keys.join(", ")),
    )
    .unwrap();
}

#[test]
fn upgrade_create_is_read_by_gnu_tar_and_reproducible() {
    let e = upgrade_env();
    let listing = tar(&e.dir, &["tvf", "b.tar"]);
    let members: Vec<(String, String)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[5].to_string(), f[2].to_string())
        })
        .collect();
    let manifest_len = {
        let dir = e.dir.join("x");
        std::fs::create_dir(&dir).unwrap();
        tar(&dir, &["xf", "../b.tar"]);
        for name in ["uki.efi", "root.squashfs"] {
            assert_eq!(
                std::fs::read(dir.join(name)).unwrap(),
                std::fs::read(e.dir.join(name)).unwrap()
            );
        }
        let m = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
        assert!(
            m.starts_with("format = \"basalt-upgrade/1\"\nversion = \"0.3.0\"\ncounter = 7\n"),
            "{m}"
        );
        m.len().to_string()
    };
    assert_eq!(
        members,
        [
            ("manifest.toml".to_string(), manifest_len),
            ("manifest.toml.sig".into(), "0".into()),
            ("uki.efi".into(), "5000".into()),
            ("root.squashfs".into(), "70001".into()),
        ]
    );
    assert!(
        listing.lines().all(|l| l.starts_with("-rw-r--r-- 0/0")),
        "{listing}"
    );
    // The same inputs, the same bytes.
    create(&e.dir, "again.tar", "7");
    assert_eq!(
        std::fs::read(e.dir.join("b.tar")).unwrap(),
        std::fs::read(e.dir.join("again.tar")).unwrap()
    );
    let out = fail(
        &e.dir,
        &[
            "upgrade",
            "create",
            "--uki",
            "uki.efi",
            "--root",
            "root.squashfs",
            "--version",
            "0.3.0",
            "--counter",
            "8",
            "--out",
            "b.tar",
        ],
    );
    assert!(out.contains("refusing to overwrite"), "{out}");
    let out = fail(
        &e.dir,
        &[
            "upgrade",
            "create",
            "--uki",
            "uki.efi",
            "--root",
            "root.squashfs",
            "--version",
            "0.3 0",
            "--counter",
            "8",
            "--out",
            "c.tar",
        ],
    );
    assert!(
        out.contains("--version: version `0.3 0` contains ' '"),
        "{out}"
    );
}

#[test]
fn upgrade_sign_k_of_n_then_verify() {
    let e = upgrade_env();
    ok(&e.dir, &["keys", "gen", "--out", "second"]);
    trust_toml(&e.dir, &["admin.pub", "second.pub"], 2);
    let out = fail(
        &e.dir,
        &["upgrade", "verify", "--trust", "trust.toml", "b.tar"],
    );
    assert!(out.contains("the bundle is not signed"), "{out}");
    ok(&e.dir, &["upgrade", "sign", "--key", "admin", "b.tar"]);
    let out = fail(
        &e.dir,
        &["upgrade", "verify", "--trust", "trust.toml", "b.tar"],
    );
    assert!(out.contains("1 of 2 required signature(s)"), "{out}");
    let signed = ok(&e.dir, &["upgrade", "sign", "--key", "second", "b.tar"]);
    assert!(signed.contains("(2 signature(s))"), "{signed}");
    let out = ok(
        &e.dir,
        &["upgrade", "verify", "--trust", "trust.toml", "b.tar"],
    );
    assert!(
        out.contains("version 0.3.0\ncounter 7\narch x86_64\n"),
        "{out}"
    );
    assert_eq!(out.matches("signed by").count(), 2, "{out}");
    // Still a tar GNU tar reads, payloads unchanged.
    assert!(
        tar(&e.dir, &["tf", "b.tar"])
            .starts_with("manifest.toml\nmanifest.toml.sig\nuki.efi\nroot.squashfs\n")
    );
    // No temporary file left next to it.
    let names: Vec<String> = std::fs::read_dir(&e.dir)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("signing"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // A payload changed after signing: sign refuses, verify names it.
    let mut bytes = std::fs::read(e.dir.join("b.tar")).unwrap();
    let at = bytes.len() - 1024 - 300;
    bytes[at] ^= 1;
    std::fs::write(e.dir.join("b.tar"), bytes).unwrap();
    let out = fail(
        &e.dir,
        &["upgrade", "verify", "--trust", "trust.toml", "b.tar"],
    );
    assert!(out.contains("root.squashfs has sha256"), "{out}");
    let out = fail(&e.dir, &["upgrade", "sign", "--key", "admin", "b.tar"]);
    assert!(out.contains("root.squashfs has sha256"), "{out}");
}

/// `ssh-keygen -Y sign` over manifest.toml, packed by GNU tar.
fn gnu_bundle(dir: &Path, key: &str, namespace: &str, out: &str) {
    let out_sign = ssh_keygen(
        dir,
        &["-Y", "sign", "-n", namespace, "-f", key, "manifest.toml"],
        None,
    );
    assert!(
        out_sign.status.success(),
        "{}",
        String::from_utf8_lossy(&out_sign.stderr)
    );
    tar(
        dir,
        &[
            "--format=ustar",
            "--owner=0",
            "--group=0",
            "--mtime=@1700000000",
            "-cf",
            out,
            "manifest.toml",
            "manifest.toml.sig",
            "uki.efi",
            "root.squashfs",
        ],
    );
}

#[test]
fn upgrade_bundles_interoperate_with_ssh_keygen_and_gnu_tar() {
    let e = upgrade_env();
    let out = ssh_keygen(
        &e.dir,
        &["-q", "-t", "ed25519", "-N", "", "-C", "peer", "-f", "peer"],
        None,
    );
    assert!(out.status.success());
    trust_toml(&e.dir, &["peer.pub", "admin.pub"], 1);
    tar(&e.dir, &["xf", "b.tar", "manifest.toml"]);

    // ssh-keygen's signature in a GNU tar bundle: accepted.
    gnu_bundle(&e.dir, "peer", "basalt-upgrade", "gnu.tar");
    let out = ok(
        &e.dir,
        &["upgrade", "verify", "--trust", "trust.toml", "gnu.tar"],
    );
    assert!(out.contains("gnu.tar: OK"), "{out}");
    assert!(
        out.contains(&format!(
            "signed by {} (peer)",
            peer_fingerprint(&e.dir, "peer.pub")
        )),
        "{out}"
    );

    // ssh-keygen's signature in the config namespace: refused.
    std::fs::remove_file(e.dir.join("manifest.toml.sig")).unwrap();
    gnu_bundle(&e.dir, "peer", "basalt-config", "config-ns.tar");
    let out = fail(
        &e.dir,
        &[
            "upgrade",
            "verify",
            "--trust",
            "trust.toml",
            "config-ns.tar",
        ],
    );
    assert!(
        out.contains("namespace `basalt-config` is not `basalt-upgrade`"),
        "{out}"
    );

    // Our signature: ssh-keygen verifies it in basalt-upgrade, and refuses
    // it as a config signature.
    ok(&e.dir, &["upgrade", "sign", "--key", "admin", "b.tar"]);
    let dir = e.dir.join("ours");
    std::fs::create_dir(&dir).unwrap();
    tar(
        &dir,
        &["xf", "../b.tar", "manifest.toml", "manifest.toml.sig"],
    );
    let key = std::fs::read_to_string(e.dir.join("admin.pub")).unwrap();
    std::fs::write(dir.join("allowed"), format!("ops {key}")).unwrap();
    let verify = |ns: &str| {
        ssh_keygen(
            &dir,
            &[
                "-Y",
                "verify",
                "-f",
                "allowed",
                "-I",
                "ops",
                "-n",
                ns,
                "-s",
                "manifest.toml.sig",
            ],
            Some(Path::new("manifest.toml")),
        )
    };
    let good = verify("basalt-upgrade");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        String::from_utf8_lossy(&good.stdout).contains("Good \"basalt-upgrade\" signature for ops")
    );
    assert!(!verify("basalt-config").status.success());
}

//! The PKI against a temp root, checked by real peers where it matters:
//! `openssl verify`/`x509` for chains, SANs, EKUs and subjects, `openssl
//! pkey` for sa.pub, and the real kubectl for every kubeconfig.

use super::*;
use basalt_api::config::Cni;
use rcgen::BasicConstraints;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const TOKEN: &str = "abcdef.0123456789abcdef";

struct TestCa {
    cert: String,
    key: String,
}

fn make_ca(cn: &str) -> TestCa {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(86_400)).into();
    params.not_after = (now + Duration::from_secs(10 * 365 * 86_400)).into();
    let cert = params.self_signed(&key).unwrap();
    TestCa {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    host: Host,
    layout: Layout,
    cluster: Cluster,
    node: NodeIdentity,
}

fn cluster() -> Cluster {
    let (ca, etcd, fp) = (
        make_ca("kubernetes"),
        make_ca("etcd-ca"),
        make_ca("front-proxy-ca"),
    );
    let sa = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    Cluster {
        name: "demo".into(),
        endpoint: "https://k8s.example.test:6443".into(),
        token: Secret::new(TOKEN),
        ca_cert: ca.cert,
        ca_key: Some(Secret::new(ca.key)),
        etcd_ca_cert: Some(etcd.cert),
        etcd_ca_key: Some(Secret::new(etcd.key)),
        front_proxy_ca_cert: Some(fp.cert),
        front_proxy_ca_key: Some(Secret::new(fp.key)),
        service_account_key: Some(Secret::new(sa.serialize_pem())),
        pod_subnets: vec![Cidr::v4([10, 244, 0, 0], 16)],
        service_subnets: vec![Cidr::v4([10, 96, 0, 0], 12)],
        cni: Cni::default(),
        inline_manifests: vec![],
        allow_scheduling_on_control_plane: false,
        dns_domain: "cluster.local".into(),
    }
}

fn worker_cluster() -> Cluster {
    let mut c = cluster();
    c.ca_key = None;
    c.etcd_ca_cert = None;
    c.etcd_ca_key = None;
    c.front_proxy_ca_cert = None;
    c.front_proxy_ca_key = None;
    c.service_account_key = None;
    c
}

fn fixture(cluster: Cluster) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    Fixture {
        host: Host::dev(&root),
        root,
        _dir: dir,
        layout: Layout::new("/var/lib/basalt/state"),
        cluster,
        node: NodeIdentity {
            name: "cp-1".into(),
            ips: vec!["10.0.2.14".parse().unwrap()],
        },
    }
}

impl Fixture {
    fn converge(&self, role: Role, now: SystemTime) -> Vec<PkiChange> {
        converge(
            &self.host,
            &self.layout,
            &self.cluster,
            role,
            &self.node,
            now,
        )
        .unwrap()
    }

    fn plan(&self, role: Role, now: SystemTime) -> Vec<PkiChange> {
        plan(
            &self.host,
            &self.layout,
            &self.cluster,
            role,
            &self.node,
            now,
        )
        .unwrap()
    }

    fn real(&self, node_path: &Path) -> PathBuf {
        self.host.path(node_path)
    }

    /// Every file under the root, with its mtime.
    fn files(&self) -> BTreeMap<PathBuf, SystemTime> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, SystemTime>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.insert(
                        p.clone(),
                        std::fs::metadata(&p).unwrap().modified().unwrap(),
                    );
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &mut out);
        out
    }

    fn read(&self, node_path: &Path) -> String {
        std::fs::read_to_string(self.real(node_path)).unwrap()
    }
}

fn names(changes: &[PkiChange]) -> BTreeSet<String> {
    changes.iter().map(|c| c.name.clone()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

const SAN_LEAVES: &[&str] = &[
    "apiserver",
    "etcd-server",
    "etcd-peer",
    "controller-manager-serving",
    "scheduler-serving",
    "kubelet-serving",
];
const OTHER_LEAVES: &[&str] = &[
    "apiserver-kubelet-client",
    "apiserver-etcd-client",
    "front-proxy-client",
];
const KUBECONFIGS: &[&str] = &[
    "controller-manager.kubeconfig",
    "scheduler.kubeconfig",
    "admin.kubeconfig",
    "kubelet.kubeconfig",
    // The cluster of these tests runs Cilium (the default CNI).
    "cilium-operator.kubeconfig",
];
const CP_FILES: &[&str] = &[
    "ca.crt",
    "ca.key",
    "etcd-ca.crt",
    "front-proxy-ca.crt",
    "sa.key",
    "sa.pub",
];

fn all_cp_names() -> BTreeSet<String> {
    SAN_LEAVES
        .iter()
        .chain(OTHER_LEAVES)
        .chain(KUBECONFIGS)
        .chain(CP_FILES)
        .map(|s| s.to_string())
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl(args: &[&str]) -> String {
    run(Command::new("openssl").args(args))
}

fn kubectl() -> PathBuf {
    let dir = Path::new("/root/.cache/basalt/packages");
    let found = std::fs::read_dir(dir).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("kubernetes-v1.37.2-"))
            })
            .map(|p| p.join("bin/kubectl"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no kubectl under {}/kubernetes-v1.37.2-*/bin: run `image-builder package kubernetes` first",
            dir.display()
        )
    })
}

fn kubectl_view(file: &Path, jsonpath: &str) -> String {
    run(Command::new(kubectl()).args([
        "config",
        "view",
        "--kubeconfig",
        &file.to_string_lossy(),
        "--raw",
        "-o",
        &format!("jsonpath={jsonpath}"),
    ]))
}

/// The client certificate embedded in a kubeconfig, written next to it.
fn embedded_cert(f: &Fixture, kubeconfig_path: &Path) -> PathBuf {
    let parsed = kubeconfig::parse(f.read(kubeconfig_path).as_bytes()).unwrap();
    let out = f.root.join(format!("{}.crt", file_name(kubeconfig_path)));
    std::fs::write(&out, parsed.client_cert_pem.unwrap()).unwrap();
    out
}

fn leaf_pairs(l: &Layout) -> Vec<(&'static str, &CertPair, &CertPair)> {
    vec![
        ("apiserver", &l.apiserver, &l.ca),
        (
            "apiserver-kubelet-client",
            &l.apiserver_kubelet_client,
            &l.ca,
        ),
        (
            "apiserver-etcd-client",
            &l.apiserver_etcd_client,
            &l.etcd_ca,
        ),
        (
            "front-proxy-client",
            &l.front_proxy_client,
            &l.front_proxy_ca,
        ),
        ("etcd-server", &l.etcd_server, &l.etcd_ca),
        ("etcd-peer", &l.etcd_peer, &l.etcd_ca),
        (
            "controller-manager-serving",
            &l.controller_manager_serving,
            &l.ca,
        ),
        ("scheduler-serving", &l.scheduler_serving, &l.ca),
        ("kubelet-serving", &l.kubelet_serving, &l.ca),
    ]
}

#[test]
fn control_plane_gets_every_file_once_then_nothing() {
    let f = fixture(cluster());
    let now = SystemTime::now();
    assert_eq!(names(&f.plan(Role::Controlplane, now)), all_cp_names());
    let first = f.converge(Role::Controlplane, now);
    assert_eq!(names(&first), all_cp_names());
    assert!(first.iter().all(|c| c.reason == "missing"), "{first:?}");

    let before = f.files();
    assert!(f.plan(Role::Controlplane, now).is_empty());
    assert_eq!(f.converge(Role::Controlplane, now), vec![]);
    // A minute later too: nothing is time-stamped per converge.
    let later = now + Duration::from_secs(60);
    assert_eq!(f.converge(Role::Controlplane, later), vec![]);
    assert_eq!(
        f.files(),
        before,
        "a converge with nothing to do rewrote files"
    );

    // Every file 0600, every directory 0700.
    for path in before.keys() {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    for dir in [
        f.real(&f.layout.pki_dir),
        f.real(f.layout.ca.cert.parent().unwrap()),
    ] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    // The CA key is there (the controller-manager signs with it), the
    // etcd and front-proxy CA keys are not.
    assert_eq!(
        f.read(&f.layout.ca.key),
        f.cluster.ca_key.as_ref().unwrap().expose()
    );
    assert!(!f.real(&f.layout.etcd_ca.key).exists());
    assert!(!f.real(&f.layout.front_proxy_ca.key).exists());
}

#[test]
fn openssl_verifies_every_leaf_against_its_ca() {
    let f = fixture(cluster());
    f.converge(Role::Controlplane, SystemTime::now());
    for (name, pair, ca) in leaf_pairs(&f.layout) {
        let out = openssl(&[
            "verify",
            "-CAfile",
            &f.real(&ca.cert).to_string_lossy(),
            &f.real(&pair.cert).to_string_lossy(),
        ]);
        assert!(out.trim_end().ends_with(": OK"), "{name}: {out}");
        // The key is the certificate's.
        let from_cert = openssl(&[
            "x509",
            "-noout",
            "-pubkey",
            "-in",
            &f.real(&pair.cert).to_string_lossy(),
        ]);
        let from_key = openssl(&[
            "pkey",
            "-pubout",
            "-in",
            &f.real(&pair.key).to_string_lossy(),
        ]);
        assert_eq!(from_cert, from_key, "{name}: key and certificate differ");
    }
    let ca = f.real(&f.layout.ca.cert);
    for kc in [
        &f.layout.controller_manager_kubeconfig,
        &f.layout.scheduler_kubeconfig,
        &f.layout.admin_kubeconfig,
        &f.layout.kubelet_kubeconfig,
    ] {
        let cert = embedded_cert(&f, kc);
        let out = openssl(&[
            "verify",
            "-CAfile",
            &ca.to_string_lossy(),
            &cert.to_string_lossy(),
        ]);
        assert!(out.trim_end().ends_with(": OK"), "{}: {out}", kc.display());
    }
    // And a leaf does not verify against another of the node's CAs.
    let wrong = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            &f.real(&f.layout.etcd_ca.cert).to_string_lossy(),
            &f.real(&f.layout.apiserver.cert).to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
}

/// `openssl x509 -noout -ext subjectAltName,extendedKeyUsage -subject`.
fn describe(path: &Path) -> String {
    openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName,extendedKeyUsage",
        "-subject",
        "-nameopt",
        "RFC2253",
        "-in",
        &path.to_string_lossy(),
    ])
}

/// The SAN entries openssl prints (`DNS:x`, `IP Address:y`), sorted.
fn openssl_sans(text: &str) -> BTreeSet<String> {
    let mut lines = text.lines();
    let mut out = BTreeSet::new();
    while let Some(line) = lines.next() {
        if line.contains("Subject Alternative Name")
            && let Some(next) = lines.next()
        {
            out.extend(next.split(',').map(|s| s.trim().to_string()));
        }
    }
    out
}

fn eku_line(text: &str) -> String {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.contains("Extended Key Usage") {
            return lines.next().unwrap_or_default().trim().to_string();
        }
    }
    String::new()
}

fn subject_line(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn openssl_shows_the_expected_sans_usages_and_subjects() {
    let f = fixture(cluster());
    f.converge(Role::Controlplane, SystemTime::now());
    let l = &f.layout;
    let node_local = set(&[
        "DNS:cp-1",
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:10.0.2.14",
    ]);

    let api = describe(&f.real(&l.apiserver.cert));
    let mut want = node_local.clone();
    want.extend(set(&[
        "DNS:k8s.example.test",
        "IP Address:10.96.0.1",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]));
    assert_eq!(openssl_sans(&api), want, "{api}");
    assert_eq!(eku_line(&api), "TLS Web Server Authentication", "{api}");
    assert_eq!(subject_line(&api), "CN=kube-apiserver");

    let cases: &[(&CertPair, Option<BTreeSet<String>>, &str, &str)] = &[
        (
            &l.apiserver_kubelet_client,
            None,
            "TLS Web Client Authentication",
            "CN=kube-apiserver-kubelet-client,O=system:masters",
        ),
        (
            &l.apiserver_etcd_client,
            None,
            "TLS Web Client Authentication",
            "CN=kube-apiserver-etcd-client,O=system:masters",
        ),
        (
            &l.front_proxy_client,
            None,
            "TLS Web Client Authentication",
            "CN=front-proxy-client",
        ),
        (
            &l.etcd_server,
            Some(node_local.clone()),
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "CN=cp-1",
        ),
        (
            &l.etcd_peer,
            Some(node_local.clone()),
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "CN=cp-1",
        ),
        (
            &l.controller_manager_serving,
            Some(node_local.clone()),
            "TLS Web Server Authentication",
            "CN=kube-controller-manager",
        ),
        (
            &l.scheduler_serving,
            Some(node_local.clone()),
            "TLS Web Server Authentication",
            "CN=kube-scheduler",
        ),
        (
            &l.kubelet_serving,
            Some(set(&["DNS:cp-1", "IP Address:10.0.2.14"])),
            "TLS Web Server Authentication",
            "CN=system:node:cp-1,O=system:nodes",
        ),
    ];
    for (pair, sans, eku, subject) in cases {
        let text = describe(&f.real(&pair.cert));
        assert_eq!(
            &openssl_sans(&text),
            &sans.clone().unwrap_or_default(),
            "{text}"
        );
        assert_eq!(eku_line(&text), *eku, "{text}");
        assert_eq!(subject_line(&text), *subject, "{text}");
    }

    for (kc, subject) in [
        (
            &l.controller_manager_kubeconfig,
            "CN=system:kube-controller-manager",
        ),
        (&l.scheduler_kubeconfig, "CN=system:kube-scheduler"),
        (&l.admin_kubeconfig, "CN=basalt:machined,O=system:masters"),
        (&l.kubelet_kubeconfig, "CN=system:node:cp-1,O=system:nodes"),
    ] {
        let text = describe(&embedded_cert(&f, kc));
        assert_eq!(subject_line(&text), subject, "{text}");
        assert_eq!(eku_line(&text), "TLS Web Client Authentication", "{text}");
        assert!(openssl_sans(&text).is_empty(), "{text}");
    }
}

#[test]
fn sa_pub_is_the_public_half_of_sa_key() {
    let f = fixture(cluster());
    f.converge(Role::Controlplane, SystemTime::now());
    let pub_path = f.real(&f.layout.service_account_pub);
    assert!(
        f.read(&f.layout.service_account_pub)
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    let parsed = openssl(&["pkey", "-pubin", "-in", &pub_path.to_string_lossy()]);
    let derived = openssl(&[
        "pkey",
        "-pubout",
        "-in",
        &f.real(&f.layout.service_account_key).to_string_lossy(),
    ]);
    assert_eq!(parsed, derived);
    assert_eq!(
        f.read(&f.layout.service_account_key),
        f.cluster.service_account_key.as_ref().unwrap().expose()
    );
}

#[test]
fn kubectl_loads_every_kubeconfig() {
    let f = fixture(cluster());
    f.converge(Role::Controlplane, SystemTime::now());
    let l = &f.layout;
    for (kc, user) in [
        (
            &l.controller_manager_kubeconfig,
            "system:kube-controller-manager",
        ),
        (&l.scheduler_kubeconfig, "system:kube-scheduler"),
        (&l.admin_kubeconfig, "basalt:machined"),
        (&l.kubelet_kubeconfig, "system:node:cp-1"),
    ] {
        let path = f.real(kc);
        assert_eq!(
            kubectl_view(&path, "{.clusters[0].cluster.server}"),
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            kubectl_view(&path, "{.current-context}"),
            format!("{user}@demo")
        );
        assert_eq!(kubectl_view(&path, "{.users[0].name}"), user);
        let ca = kubectl_view(&path, "{.clusters[0].cluster.certificate-authority-data}");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(ca)
                .unwrap(),
            f.cluster.ca_cert.as_bytes()
        );
        let cert = kubectl_view(&path, "{.users[0].user.client-certificate-data}");
        let key = kubectl_view(&path, "{.users[0].user.client-key-data}");
        assert!(!cert.is_empty() && !key.is_empty(), "{}", path.display());
    }

    let w = fixture(worker_cluster());
    w.converge(Role::Worker, SystemTime::now());
    let path = w.real(&w.layout.kubelet_bootstrap_kubeconfig);
    assert_eq!(
        kubectl_view(&path, "{.clusters[0].cluster.server}"),
        "https://k8s.example.test:6443"
    );
    assert_eq!(kubectl_view(&path, "{.users[0].user.token}"), TOKEN);
    assert_eq!(
        kubectl_view(&path, "{.current-context}"),
        "kubelet-bootstrap@demo"
    );
}

use base64::Engine as _;

#[test]
fn new_node_ips_reissue_only_certificates_that_carry_them() {
    let mut f = fixture(cluster());
    let now = SystemTime::now();
    f.converge(Role::Controlplane, now);
    let before = f.files();
    f.node.ips = vec!["10.0.2.15".parse().unwrap()];
    let changes = f.converge(Role::Controlplane, now);
    assert_eq!(names(&changes), set(SAN_LEAVES), "{changes:?}");
    for c in &changes {
        assert_eq!(c.reason, "SANs changed: +10.0.2.15, -10.0.2.14", "{c}");
    }
    let after = f.files();
    let rewritten: BTreeSet<String> = after
        .iter()
        .filter(|(p, t)| before.get(*p) != Some(t))
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut want = BTreeSet::new();
    for leaf in SAN_LEAVES {
        want.insert(format!("{leaf}.crt"));
        want.insert(format!("{leaf}.key"));
    }
    assert_eq!(rewritten, want);
    assert_eq!(f.converge(Role::Controlplane, now), vec![]);
}

#[test]
fn a_new_cluster_ca_reissues_everything_it_signs_and_nothing_else() {
    let mut f = fixture(cluster());
    let now = SystemTime::now();
    f.converge(Role::Controlplane, now);
    let ca = make_ca("kubernetes");
    f.cluster.ca_cert = ca.cert;
    f.cluster.ca_key = Some(Secret::new(ca.key));
    let changes = f.converge(Role::Controlplane, now);
    let by_name: BTreeMap<_, _> = changes
        .iter()
        .map(|c| (c.name.as_str(), c.reason.as_str()))
        .collect();
    let mut want: BTreeMap<&str, &str> = [
        ("apiserver", "issued by a different CA"),
        ("apiserver-kubelet-client", "issued by a different CA"),
        ("controller-manager-serving", "issued by a different CA"),
        ("scheduler-serving", "issued by a different CA"),
        ("kubelet-serving", "issued by a different CA"),
        ("ca.crt", "content changed"),
        ("ca.key", "content changed"),
    ]
    .into();
    for kc in KUBECONFIGS {
        want.insert(kc, "issued by a different CA");
    }
    assert_eq!(by_name, want);
    for (name, pair, ca) in leaf_pairs(&f.layout) {
        let out = openssl(&[
            "verify",
            "-CAfile",
            &f.real(&ca.cert).to_string_lossy(),
            &f.real(&pair.cert).to_string_lossy(),
        ]);
        assert!(out.trim_end().ends_with(": OK"), "{name}: {out}");
    }
    assert_eq!(f.converge(Role::Controlplane, now), vec![]);

    // The etcd CA alone: only what it signs.
    let etcd = make_ca("etcd-ca");
    f.cluster.etcd_ca_cert = Some(etcd.cert);
    f.cluster.etcd_ca_key = Some(Secret::new(etcd.key));
    let changes = f.converge(Role::Controlplane, now);
    assert_eq!(
        names(&changes),
        set(&[
            "etcd-ca.crt",
            "etcd-server",
            "etcd-peer",
            "apiserver-etcd-client"
        ])
    );
}

#[test]
fn leaves_are_reissued_when_a_third_of_their_life_remains() {
    let f = fixture(cluster());
    let now = SystemTime::now();
    f.converge(Role::Controlplane, now);
    let day = Duration::from_secs(86_400);
    assert!(f.plan(Role::Controlplane, now + 200 * day).is_empty());
    let late = f.plan(Role::Controlplane, now + 250 * day);
    let mut want = all_cp_names();
    for file in CP_FILES {
        want.remove(*file);
    }
    assert_eq!(names(&late), want);
    for c in &late {
        assert_eq!(c.reason, "expires in 115 days", "{c}");
    }
    let expired = f.plan(Role::Controlplane, now + 400 * day);
    assert!(expired.iter().all(|c| c.reason == "expired"), "{expired:?}");
    // The clock went back before the leaves' start.
    let past = f.plan(Role::Controlplane, now - 2 * day);
    assert!(
        past.iter().all(|c| c.reason.starts_with("not valid yet")),
        "{past:?}"
    );
    assert_eq!(names(&past), want);

    assert_eq!(renew_before(365 * 86_400), 365 * 86_400 / 3);
    assert_eq!(renew_before(60 * 86_400), 30 * 86_400);
}

#[test]
fn damaged_files_are_noticed_and_repaired() {
    let f = fixture(cluster());
    let now = SystemTime::now();
    f.converge(Role::Controlplane, now);
    let l = &f.layout;
    std::fs::remove_file(f.real(&l.apiserver.key)).unwrap();
    std::fs::write(f.real(&l.etcd_peer.cert), "garbage").unwrap();
    std::fs::set_permissions(f.real(&l.ca.cert), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(f.real(&l.pki_dir), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Another valid key: the pair no longer matches.
    std::fs::copy(
        f.real(&l.scheduler_serving.key),
        f.real(&l.controller_manager_serving.key),
    )
    .unwrap();
    std::fs::write(f.real(&l.admin_kubeconfig), "{").unwrap();

    let changes: BTreeMap<String, String> = f
        .converge(Role::Controlplane, now)
        .into_iter()
        .map(|c| (c.name, c.reason))
        .collect();
    assert_eq!(changes["apiserver"], "key missing");
    assert!(
        changes["etcd-peer"].starts_with("unparsable"),
        "{changes:?}"
    );
    assert_eq!(changes["ca.crt"], "mode 0644, want 0600");
    assert_eq!(
        changes["controller-manager-serving"],
        "key does not match the certificate"
    );
    assert!(
        changes["admin.kubeconfig"].starts_with("unparsable"),
        "{changes:?}"
    );
    assert_eq!(changes.len(), 5, "{changes:?}");
    let mode = |p: &Path| std::fs::metadata(f.real(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&l.ca.cert), 0o600);
    assert_eq!(mode(&l.pki_dir), 0o700);
    assert_eq!(f.converge(Role::Controlplane, now), vec![]);
}

#[test]
fn kubeconfig_server_and_token_changes_are_noticed() {
    let mut f = fixture(worker_cluster());
    let now = SystemTime::now();
    assert_eq!(
        names(&f.converge(Role::Worker, now)),
        set(&["ca.crt", "kubelet-bootstrap.kubeconfig"])
    );
    f.cluster.token = Secret::new("zyxwvu.0123456789abcdef");
    let changes = f.converge(Role::Worker, now);
    assert_eq!(
        changes,
        vec![PkiChange {
            name: "kubelet-bootstrap.kubeconfig".into(),
            reason: "bootstrap token changed".into()
        }]
    );
    f.cluster.endpoint = "https://10.0.0.10:6443".into();
    let changes = f.converge(Role::Worker, now);
    assert_eq!(
        changes[0].reason,
        "server changed: https://k8s.example.test:6443 → https://10.0.0.10:6443"
    );
    assert_eq!(f.converge(Role::Worker, now), vec![]);
}

#[test]
fn a_worker_holds_no_keys() {
    let f = fixture(worker_cluster());
    let changes = f.converge(Role::Worker, SystemTime::now());
    assert_eq!(
        names(&changes),
        set(&["ca.crt", "kubelet-bootstrap.kubeconfig"])
    );
    let files: Vec<PathBuf> = f.files().into_keys().collect();
    assert_eq!(
        files,
        vec![
            f.real(&f.layout.kubelet_bootstrap_kubeconfig),
            f.real(&f.layout.ca.cert),
        ]
    );
    assert_eq!(f.read(&f.layout.ca.cert), f.cluster.ca_cert);
    // A control-plane secret in a worker's plan would be an error upstream
    // (config validation); here it is simply not used.
    let cp = fixture(cluster());
    let changes = cp.converge(Role::Worker, SystemTime::now());
    assert_eq!(
        names(&changes),
        set(&["ca.crt", "kubelet-bootstrap.kubeconfig"])
    );
}

#[test]
fn a_ca_key_of_another_ca_is_refused_and_nothing_is_written() {
    let mut f = fixture(cluster());
    f.cluster.ca_key = Some(Secret::new(make_ca("other").key));
    let err = converge(
        &f.host,
        &f.layout,
        &f.cluster,
        Role::Controlplane,
        &f.node,
        SystemTime::now(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`cluster.ca_key`"), "{text}");
    assert!(text.contains("does not match `cluster.ca_cert`"), "{text}");
    assert!(f.files().is_empty(), "{:?}", f.files());
    assert!(!f.root.join("var").exists());
    assert!(
        plan(
            &f.host,
            &f.layout,
            &f.cluster,
            Role::Controlplane,
            &f.node,
            SystemTime::now()
        )
        .is_err()
    );

    // Same for the other CAs, each named by its own key.
    let mut f = fixture(cluster());
    f.cluster.front_proxy_ca_key = Some(Secret::new(make_ca("other").key));
    let err = converge(
        &f.host,
        &f.layout,
        &f.cluster,
        Role::Controlplane,
        &f.node,
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("`cluster.front_proxy_ca_key`"),
        "{err}"
    );

    // And a key that is not a key at all.
    let mut f = fixture(cluster());
    f.cluster.service_account_key = Some(Secret::new(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ));
    let err = converge(
        &f.host,
        &f.layout,
        &f.cluster,
        Role::Controlplane,
        &f.node,
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("`cluster.service_account_key`"),
        "{err}"
    );
    assert!(f.files().is_empty());

    // A control-plane node without a CA key.
    let mut f = fixture(cluster());
    f.cluster.ca_key = None;
    let err = converge(
        &f.host,
        &f.layout,
        &f.cluster,
        Role::Controlplane,
        &f.node,
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::Missing {
                key: "cluster.ca_key"
            }
        ),
        "{err}"
    );
}

/// A CA made by openssl, as an operator (or kubeadm) would bring it: `rsa`
/// gives a PKCS#1 `RSA PRIVATE KEY`, else a SEC1 `EC PRIVATE KEY`.
fn openssl_ca(dir: &Path, name: &str, rsa: bool) -> TestCa {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    let key_s = key.to_string_lossy();
    if rsa {
        openssl(&["genrsa", "-traditional", "-out", &key_s, "2048"]);
    } else {
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &key_s,
        ]);
    }
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &key_s,
        "-subj",
        &format!("/O=Example Corp/CN={name}"),
        "-days",
        "3650",
        "-out",
        &cert.to_string_lossy(),
    ]);
    TestCa {
        cert: std::fs::read_to_string(cert).unwrap(),
        key: std::fs::read_to_string(key).unwrap(),
    }
}

#[test]
fn cas_and_keys_made_by_openssl_work_too() {
    let dir = tempfile::tempdir().unwrap();
    let ca = openssl_ca(dir.path(), "kubernetes", true);
    let etcd = openssl_ca(dir.path(), "etcd-ca", false);
    assert!(ca.key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(etcd.key.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let sa = dir.path().join("sa.key");
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        &sa.to_string_lossy(),
        "2048",
    ]);

    let mut c = cluster();
    c.ca_cert = ca.cert;
    c.ca_key = Some(Secret::new(ca.key));
    c.etcd_ca_cert = Some(etcd.cert);
    c.etcd_ca_key = Some(Secret::new(etcd.key));
    c.service_account_key = Some(Secret::new(std::fs::read_to_string(&sa).unwrap()));
    let f = fixture(c);
    let now = SystemTime::now();
    assert_eq!(names(&f.converge(Role::Controlplane, now)), all_cp_names());
    assert_eq!(f.converge(Role::Controlplane, now), vec![]);
    for (name, pair, ca) in leaf_pairs(&f.layout) {
        let out = openssl(&[
            "verify",
            "-CAfile",
            &f.real(&ca.cert).to_string_lossy(),
            &f.real(&pair.cert).to_string_lossy(),
        ]);
        assert!(out.trim_end().ends_with(": OK"), "{name}: {out}");
    }
    let cert = embedded_cert(&f, &f.layout.admin_kubeconfig);
    let out = openssl(&[
        "verify",
        "-CAfile",
        &f.real(&f.layout.ca.cert).to_string_lossy(),
        &cert.to_string_lossy(),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");
    // sa.key as given (PKCS#1), sa.pub its public half.
    assert!(
        f.read(&f.layout.service_account_key)
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    assert_eq!(
        openssl(&[
            "pkey",
            "-pubin",
            "-in",
            &f.real(&f.layout.service_account_pub).to_string_lossy()
        ]),
        openssl(&["pkey", "-pubout", "-in", &sa.to_string_lossy()])
    );

    // A key of the right form but for another CA is still refused.
    let mut bad = f.cluster.clone();
    bad.etcd_ca_key = Some(Secret::new(openssl_ca(dir.path(), "other", false).key));
    let err = plan(&f.host, &f.layout, &bad, Role::Controlplane, &f.node, now).unwrap_err();
    assert!(err.to_string().contains("`cluster.etcd_ca_key`"), "{err}");
}

#[test]
fn keys_that_are_not_keys_are_named() {
    for (pem, want) in [
        ("nothing", "not PEM"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "PEM block is `CERTIFICATE`",
        ),
        (
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
            "a curve machined cannot tell",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "not a usable private key",
        ),
    ] {
        let err = key_pair(pem).err().unwrap();
        assert!(err.contains(want), "{pem}: {err}");
    }
}

#[test]
fn admin_kubeconfig_is_fresh_and_trusted() {
    let c = cluster();
    let now = SystemTime::now();
    let text = admin_kubeconfig(&c, "demo", "https://10.0.0.10:6443", "alice", now).unwrap();
    let again = admin_kubeconfig(&c, "demo", "https://10.0.0.10:6443", "alice", now).unwrap();
    assert_ne!(text, again, "every call issues a new key");

    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("admin.kubeconfig");
    std::fs::write(&kc, &text).unwrap();
    assert_eq!(
        kubectl_view(&kc, "{.clusters[0].cluster.server}"),
        "https://10.0.0.10:6443"
    );
    assert_eq!(
        kubectl_view(&kc, "{.current-context}"),
        "basalt:admin:alice@demo"
    );

    let parsed = kubeconfig::parse(text.as_bytes()).unwrap();
    let cert = dir.path().join("admin.crt");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&cert, parsed.client_cert_pem.unwrap()).unwrap();
    std::fs::write(&ca, &c.ca_cert).unwrap();
    let out = openssl(&[
        "verify",
        "-CAfile",
        &ca.to_string_lossy(),
        &cert.to_string_lossy(),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");
    let text = describe(&cert);
    assert_eq!(
        subject_line(&text),
        "CN=basalt:admin:alice,O=system:masters"
    );
    assert_eq!(eku_line(&text), "TLS Web Client Authentication");
    let end = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &(364 * 86_400).to_string(),
        "-in",
        &cert.to_string_lossy(),
    ]);
    assert!(end.contains("will not expire"), "{end}");

    let mut bad = cluster();
    bad.ca_key = Some(Secret::new(make_ca("other").key));
    let err = admin_kubeconfig(&bad, "demo", "https://x:6443", "alice", now).unwrap_err();
    assert!(err.to_string().contains("`cluster.ca_key`"), "{err}");
    assert!(admin_kubeconfig(&c, "demo", "https://x:6443", "", now).is_err());
    assert!(admin_kubeconfig(&worker_cluster(), "demo", "https://x:6443", "bob", now).is_err());
}

#[test]
fn changes_read_as_plan_lines() {
    let c = |name: &str, reason: &str| {
        PkiChange {
            name: name.into(),
            reason: reason.into(),
        }
        .to_string()
    };
    assert_eq!(
        c("apiserver", "missing"),
        "issue certificate apiserver (missing)"
    );
    assert_eq!(
        c("ca.crt", "content changed"),
        "write ca.crt (content changed)"
    );
    assert_eq!(
        c("admin.kubeconfig", "expires in 12 days"),
        "write kubeconfig admin.kubeconfig (expires in 12 days)"
    );
}

#[test]
fn endpoint_hosts_and_service_ips() {
    assert_eq!(
        endpoint_host("https://10.0.0.10:6443").unwrap(),
        San::Ip("10.0.0.10".parse().unwrap())
    );
    assert_eq!(
        endpoint_host("https://[fd00::10]:6443/").unwrap(),
        San::Ip("fd00::10".parse().unwrap())
    );
    assert_eq!(
        endpoint_host("https://API.Example.test").unwrap(),
        San::Dns("api.example.test".into())
    );
    assert_eq!(
        endpoint_host("HTTPS://10.0.0.10").unwrap(),
        San::Ip("10.0.0.10".parse().unwrap())
    );
    assert!(endpoint_host("é").is_err());
    let err = endpoint_host("http://x").unwrap_err();
    assert!(err.to_string().contains("cluster.endpoint"), "{err}");
    assert!(endpoint_host("https://:6443").is_err());

    assert_eq!(
        first_ip(&Cidr::v4([10, 96, 0, 0], 12)),
        "10.96.0.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        first_ip(&Cidr::v4([10, 96, 3, 7], 12)),
        "10.96.0.1".parse::<IpAddr>().unwrap()
    );
    let v6: Cidr = "fd00:10:96::/112".parse().unwrap();
    assert_eq!(first_ip(&v6), "fd00:10:96::1".parse::<IpAddr>().unwrap());
}

#[test]
fn an_ipv6_node_and_service_range_land_in_the_sans() {
    let mut f = fixture(cluster());
    f.node.ips.push("fd00::14".parse().unwrap());
    f.cluster
        .service_subnets
        .push("fd00:10:96::/112".parse().unwrap());
    f.converge(Role::Controlplane, SystemTime::now());
    let sans = openssl_sans(&describe(&f.real(&f.layout.apiserver.cert)));
    assert!(sans.contains("IP Address:FD00:0:0:0:0:0:0:14"), "{sans:?}");
    assert!(sans.contains("IP Address:FD00:10:96:0:0:0:0:1"), "{sans:?}");
    assert_eq!(f.converge(Role::Controlplane, SystemTime::now()), vec![]);
}

// ---------------------------------------------------------------------------
// The real control plane: etcd and kube-apiserver started on loopback with
// exactly the files converge wrote, and kubectl talking to it with each
// kubeconfig. This is where Go's verifier (issuer bytes, AKI, EKUs, IP and
// DNS SANs) and the apiserver's flags (sa.key/sa.pub, front-proxy,
// etcd client auth) judge the PKI.

/// A binary from `image-builder package <package>`'s cache, or a loud failure.
fn packaged(package: &str, binary: &str) -> PathBuf {
    let dir = Path::new("/root/.cache/basalt/packages");
    std::fs::read_dir(dir)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}-v")))
                })
                .map(|p| p.join("bin").join(binary))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "no {binary} under {}/{package}-v*/bin: run `image-builder package {package}` first",
                dir.display()
            )
        })
}

/// Kills (SIGKILL through the handle) and reaps a child this test started.
struct Running(std::process::Child, &'static str, PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn start(name: &'static str, bin: PathBuf, args: &[String], log: PathBuf) -> Running {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Running(child, name, log)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.2).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn etcd_kube_apiserver_and_kubectl_accept_the_pki() {
    let etcd_bin = packaged("etcd", "etcd");
    let apiserver_bin = packaged("kubernetes", "kube-apiserver");
    let kubectl_bin = kubectl();

    let mut f = fixture(cluster());
    // The apiserver listens on loopback here; the node's own address is
    // 127.0.0.1 as far as its certificates go.
    f.node.ips = vec!["127.0.0.1".parse().unwrap()];
    f.converge(Role::Controlplane, SystemTime::now());
    let l = &f.layout;
    let p = |path: &Path| f.real(path).to_string_lossy().into_owned();
    let (client, peer, metrics, secure) = (free_port(), free_port(), free_port(), free_port());

    let etcd = Running::start(
        "etcd",
        etcd_bin,
        &[
            "--name=cp-1".into(),
            format!("--data-dir={}", f.root.join("etcd").display()),
            format!("--listen-client-urls=https://127.0.0.1:{client}"),
            format!("--advertise-client-urls=https://127.0.0.1:{client}"),
            format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"),
            format!("--initial-cluster=cp-1=https://127.0.0.1:{peer}"),
            format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"),
            format!("--cert-file={}", p(&l.etcd_server.cert)),
            format!("--key-file={}", p(&l.etcd_server.key)),
            format!("--trusted-ca-file={}", p(&l.etcd_ca.cert)),
            "--client-cert-auth=true".into(),
            format!("--peer-cert-file={}", p(&l.etcd_peer.cert)),
            format!("--peer-key-file={}", p(&l.etcd_peer.key)),
            format!("--peer-trusted-ca-file={}", p(&l.etcd_ca.cert)),
            "--peer-client-cert-auth=true".into(),
        ],
        f.root.join("etcd.log"),
    );
    let apiserver = Running::start(
        "kube-apiserver",
        apiserver_bin,
        &[
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            // A loopback advertise address is refused by the endpoint
            // reconciler; this test needs no `kubernetes` Endpoints.
            "--endpoint-reconciler-type=none".into(),
            format!("--secure-port={secure}"),
            format!("--etcd-servers=https://127.0.0.1:{client}"),
            format!("--etcd-cafile={}", p(&l.etcd_ca.cert)),
            format!("--etcd-certfile={}", p(&l.apiserver_etcd_client.cert)),
            format!("--etcd-keyfile={}", p(&l.apiserver_etcd_client.key)),
            format!("--tls-cert-file={}", p(&l.apiserver.cert)),
            format!("--tls-private-key-file={}", p(&l.apiserver.key)),
            format!("--client-ca-file={}", p(&l.ca.cert)),
            format!("--kubelet-certificate-authority={}", p(&l.ca.cert)),
            format!(
                "--kubelet-client-certificate={}",
                p(&l.apiserver_kubelet_client.cert)
            ),
            format!(
                "--kubelet-client-key={}",
                p(&l.apiserver_kubelet_client.key)
            ),
            format!("--proxy-client-cert-file={}", p(&l.front_proxy_client.cert)),
            format!("--proxy-client-key-file={}", p(&l.front_proxy_client.key)),
            format!(
                "--requestheader-client-ca-file={}",
                p(&l.front_proxy_ca.cert)
            ),
            "--requestheader-allowed-names=front-proxy-client".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p(&l.service_account_pub)),
            format!(
                "--service-account-signing-key-file={}",
                p(&l.service_account_key)
            ),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-bootstrap-token-auth=true".into(),
            format!("--cert-dir={}", f.root.join("apiserver-certs").display()),
        ],
        f.root.join("kube-apiserver.log"),
    );
    let server = format!("https://127.0.0.1:{secure}");
    let kubectl = |kubeconfig: &Path, extra: &[&str], args: &[&str]| {
        Command::new(&kubectl_bin)
            .arg(format!("--kubeconfig={}", f.real(kubeconfig).display()))
            .arg(format!("--server={server}"))
            .args(extra)
            .args(args)
            .output()
            .unwrap()
    };

    // Ready once etcd accepted the apiserver's client certificate and the
    // apiserver's post-start hooks ran; up to two minutes on a busy machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let out = kubectl(&l.admin_kubeconfig, &[], &["get", "--raw=/readyz"]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kube-apiserver not ready: {}\n--- {} ---\n{}\n--- {} ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            apiserver.1,
            apiserver.log_tail(),
            etcd.1,
            etcd.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let whoami = |kubeconfig: &Path, extra: &[&str]| {
        let out = kubectl(
            kubeconfig,
            extra,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
            ],
        );
        assert!(
            out.status.success(),
            "{}: {}",
            kubeconfig.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(whoami(&l.admin_kubeconfig, &[]).starts_with("basalt:machined [\"system:masters\""));
    assert!(
        whoami(&l.controller_manager_kubeconfig, &[])
            .starts_with("system:kube-controller-manager ")
    );
    assert!(whoami(&l.scheduler_kubeconfig, &[]).starts_with("system:kube-scheduler "));
    assert!(whoami(&l.kubelet_kubeconfig, &[]).starts_with("system:node:cp-1 [\"system:nodes\""));

    // A worker's bootstrap kubeconfig: the token authenticates once its
    // Secret exists, and the apiserver's certificate holds for the cluster
    // endpoint's name (dialled here on loopback).
    let out = kubectl(
        &l.admin_kubeconfig,
        &[],
        &[
            "-n",
            "kube-system",
            "create",
            "secret",
            "generic",
            "bootstrap-token-abcdef",
            "--type=bootstrap.kubernetes.io/token",
            "--from-literal=token-id=abcdef",
            "--from-literal=token-secret=0123456789abcdef",
            "--from-literal=usage-bootstrap-authentication=true",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A worker of this cluster: the same CA certificate, no keys.
    let mut worker = f.cluster.clone();
    worker.ca_key = None;
    let w = Fixture {
        cluster: worker,
        ..fixture(worker_cluster())
    };
    w.converge(Role::Worker, SystemTime::now());
    let out = Command::new(&kubectl_bin)
        .arg(format!(
            "--kubeconfig={}",
            w.real(&w.layout.kubelet_bootstrap_kubeconfig).display()
        ))
        .arg(format!("--server={server}"))
        .arg("--tls-server-name=k8s.example.test")
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "system:bootstrap:abcdef"
    );

    // A service-account token signed with sa.key verifies with sa.pub.
    let out = kubectl(
        &l.admin_kubeconfig,
        &[],
        &["-n", "default", "create", "serviceaccount", "probe"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(
        &l.admin_kubeconfig,
        &[],
        &["-n", "default", "create", "token", "probe"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let sa_kubeconfig = f.root.join("sa.kubeconfig");
    let text = Kubeconfig {
        cluster_name: "demo",
        server: &server,
        ca_pem: &f.cluster.ca_cert,
        user: "probe",
        credential: Credential::Token(&token),
    }
    .render()
    .unwrap();
    std::fs::write(&sa_kubeconfig, text).unwrap();
    let out = Command::new(&kubectl_bin)
        .arg(format!("--kubeconfig={}", sa_kubeconfig.display()))
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "system:serviceaccount:default:probe"
    );
    drop(apiserver);
    drop(etcd);
}

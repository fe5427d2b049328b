//! The table of bad inputs shared by the api tests and machined's API tests:
//! each case is a document (and signatures) with the error an operator sees.
#![allow(dead_code)]

use basalt_api::CONFIG_NAMESPACE;
use basalt_api::sshkey::PrivateKey;
use basalt_api::sshsig;
use basalt_api::trust::TrustRoots;
use base64::Engine;

pub const WORKER: &str = include_str!("../../../configs/worker.toml");
pub const CONTROLPLANE: &str = include_str!("../../../configs/controlplane.toml");
pub const EXAMPLE_ADMIN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIRBnXLtUn61qn3ftZ0PoOixOodqYhzuC1OWicDtwZPQ ops@example";

pub fn key(n: u8) -> PrivateKey {
    PrivateKey::from_seed(&[n; 32], &format!("key{n}"))
}

/// Replace `from` (which must occur) with `to`.
pub fn edit(doc: &str, from: &str, to: &str) -> String {
    assert!(doc.contains(from), "fixture no longer contains {from:?}");
    doc.replacen(from, to, 1)
}

/// The worker example, administered by key 1.
/// `doc` with a `[cluster.cni.cilium]` table holding `body`.
fn cilium(doc: &str, body: &str) -> String {
    edit(
        doc,
        "kube_proxy_replacement = true\n",
        &format!("kube_proxy_replacement = true\n[cluster.cni.cilium]\n{body}"),
    )
}

/// `doc` with a `[machine.install]` table holding `body`, at its end.
fn install(doc: &str, body: &str) -> String {
    format!("{doc}\n[machine.install]\n{body}")
}

pub fn worker() -> String {
    let doc = edit(WORKER, EXAMPLE_ADMIN, &key(1).public().to_openssh());
    // Tests listen on loopback only.
    edit(
        &doc,
        "listen = \"0.0.0.0:9100\"",
        "listen = \"127.0.0.1:9100\"",
    )
}

pub struct ConfigCase {
    pub name: &'static str,
    pub doc: String,
    pub path: &'static str,
    pub message: &'static str,
    /// Text on the line the error must point at.
    pub line_of: Option<&'static str>,
}

fn case(name: &'static str, doc: String, path: &'static str, message: &'static str) -> ConfigCase {
    ConfigCase {
        name,
        doc,
        path,
        message,
        line_of: None,
    }
}

fn at(mut c: ConfigCase, line_text: &'static str) -> ConfigCase {
    c.line_of = Some(line_text);
    c
}

pub fn config_cases() -> Vec<ConfigCase> {
    let w = worker();
    let cp = CONTROLPLANE.to_string();
    let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDHX7 rsa@example";
    let ecdsa =
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGx= ec@example";
    vec![
        at(
            case(
                "malformed TOML",
                edit(&w, "generation = 1", "generation = "),
                "(syntax)",
                "invalid TOML",
            ),
            "generation =",
        ),
        at(
            case(
                "duplicate key",
                edit(&w, "generation = 1", "generation = 1\ngeneration = 2"),
                "(syntax)",
                "duplicate key",
            ),
            "generation = 2",
        ),
        at(
            case(
                "unknown top-level key",
                edit(&w, "generation = 1", "generation = 1\ncolour = \"red\""),
                "colour",
                "unknown key; expected one of `version`, `generation`",
            ),
            "colour",
        ),
        at(
            case(
                "unknown nested key",
                edit(&w, "hostname = \"worker-1\"", "hostnme = \"worker-1\""),
                "machine.hostnme",
                "unknown key",
            ),
            "hostnme",
        ),
        at(
            case(
                "wrong type",
                edit(&w, "generation = 1", "generation = \"one\""),
                "generation",
                "invalid type: string \"one\", expected u64",
            ),
            "generation = \"one\"",
        ),
        case(
            "negative generation",
            edit(&w, "generation = 1", "generation = -3"),
            "generation",
            "expected u64",
        ),
        at(
            case(
                "unsupported version",
                edit(&w, "version = 1", "version = 2"),
                "version",
                "unsupported config version 2",
            ),
            "version = 2",
        ),
        case(
            "generation zero",
            edit(&w, "generation = 1", "generation = 0"),
            "generation",
            "must be at least 1",
        ),
        case(
            "unknown role",
            edit(&w, "role = \"worker\"", "role = \"master\""),
            "machine.role",
            "unknown variant `master`, expected `controlplane` or `worker`",
        ),
        case(
            "missing required key",
            edit(&w, "token = ", "# token = "),
            "cluster.token",
            "required key is missing",
        ),
        at(
            case(
                "bad hostname",
                edit(&w, "hostname = \"worker-1\"", "hostname = \"-bad-\""),
                "machine.hostname",
                "is not an RFC 1123 host name",
            ),
            "hostname = \"-bad-\"",
        ),
        at(
            case(
                "bad CIDR",
                edit(&w, "addresses = []", "addresses = [\"10.0.0.300/24\"]"),
                "machine.network.interfaces[0].addresses[0]",
                "is not a CIDR",
            ),
            "10.0.0.300/24",
        ),
        case(
            "address without prefix",
            edit(&w, "addresses = []", "addresses = [\"10.0.0.5\"]"),
            "machine.network.interfaces[0].addresses[0]",
            "has no prefix length",
        ),
        case(
            "bad MAC",
            edit(
                &cp,
                "mac = \"52:54:00:12:34:56\"",
                "mac = \"52:54:00:12:34\"",
            ),
            "machine.network.interfaces[0].mac",
            "is not a MAC address",
        ),
        case(
            "interface without selector",
            edit(&w, "name = \"eth0\"", ""),
            "machine.network.interfaces[0]",
            "set `name` or `mac`",
        ),
        case(
            "duplicate interface",
            edit(
                &w,
                "[machine.network]\n",
                "[[machine.network.interfaces]]\nname = \"eth0\"\n\n[machine.network]\n",
            ),
            "machine.network.interfaces[1].name",
            "interface `eth0` is configured twice",
        ),
        at(
            case(
                "route family mismatch",
                edit(&w, "via = \"10.0.2.2\"", "via = \"fe80::1\""),
                "machine.network.interfaces[0].routes[0].via",
                "not the same address family",
            ),
            "fe80::1",
        ),
        at(
            case(
                "MTU too small",
                edit(&w, "mtu = 1500", "mtu = 20"),
                "machine.network.interfaces[0].mtu",
                "20 is out of range; expected 68..=65535",
            ),
            "mtu = 20",
        ),
        case(
            "nameserver not an IP",
            edit(
                &w,
                "nameservers = [\"10.0.2.3\"]",
                "nameservers = [\"dns.google\"]",
            ),
            "machine.network.nameservers[0]",
            "invalid IP address syntax",
        ),
        at(
            case(
                "file path traversal",
                edit(
                    &w,
                    "/var/lib/basalt-example/motd",
                    "/var/lib/../../etc/shadow",
                ),
                "machine.files[0].path",
                "contains `..`",
            ),
            "/etc/shadow",
        ),
        case(
            "file outside writable prefixes",
            edit(&w, "/var/lib/basalt-example/motd", "/etc/passwd"),
            "machine.files[0].path",
            "outside the writable prefixes",
        ),
        case(
            "relative file path",
            edit(&w, "/var/lib/basalt-example/motd", "var/motd"),
            "machine.files[0].path",
            "is not absolute",
        ),
        case(
            "unnormalised file path",
            edit(&w, "/var/lib/basalt-example/motd", "/var//motd"),
            "machine.files[0].path",
            "not normalised",
        ),
        case(
            "file mode too large",
            edit(&w, "mode = 0o644", "mode = 0o17777"),
            "machine.files[0].mode",
            "0o17777 is not a file mode",
        ),
        case(
            "unknown file op",
            edit(&w, "op = \"create\"", "op = \"delete\""),
            "machine.files[0].op",
            "unknown variant `delete`",
        ),
        case(
            "bad sysctl name",
            edit(&w, "\"vm.max_map_count\"", "\"vm..max_map_count\""),
            "machine.sysctls.\"vm..max_map_count\"",
            "is not a sysctl name",
        ),
        case(
            "bad taint",
            edit(
                &w,
                "node_taints = {}",
                "node_taints = { \"dedicated\" = \"infra:Never\" }",
            ),
            "machine.kubelet.node_taints.dedicated",
            "is not a taint; expected `value:Effect`",
        ),
        case(
            "taint without effect",
            edit(
                &w,
                "node_taints = {}",
                "node_taints = { \"dedicated\" = \"infra\" }",
            ),
            "machine.kubelet.node_taints.dedicated",
            "Effect one of NoSchedule, PreferNoSchedule, NoExecute",
        ),
        case(
            "control-plane taint while scheduling is allowed there",
            edit(
                &edit(
                    &cp,
                    "allow_scheduling_on_control_plane = false",
                    "allow_scheduling_on_control_plane = true",
                ),
                "node_taints = {}",
                "node_taints = { \"node-role.kubernetes.io/control-plane\" = \":NoSchedule\" }",
            ),
            "machine.kubelet.node_taints.\"node-role.kubernetes.io/control-plane\"",
            "contradicts cluster.allow_scheduling_on_control_plane = true",
        ),
        at(
            case(
                "protected kubelet flag",
                edit(
                    &w,
                    "extra_args = { \"max-pods\" = \"110\"",
                    "extra_args = { \"kubeconfig\" = \"/tmp/k\"",
                ),
                "machine.kubelet.extra_args.kubeconfig",
                "`kubeconfig` is set by machined and cannot be overridden: machined generates the kubelet's credentials",
            ),
            "\"kubeconfig\" = ",
        ),
        case(
            "kubelet node-ip flag",
            edit(
                &w,
                "extra_args = { \"max-pods\" = \"110\"",
                "extra_args = { \"node-ip\" = \"10.0.0.5\"",
            ),
            "machine.kubelet.extra_args.node-ip",
            "set machine.kubelet.node_ip_subnets instead",
        ),
        case(
            "kubelet flag not on the allow-list",
            edit(
                &w,
                "extra_args = { \"max-pods\" = \"110\"",
                "extra_args = { \"feature-gates\" = \"X=true\"",
            ),
            "machine.kubelet.extra_args.feature-gates",
            "is not a kubelet flag a config may set; allowed: max-pods,",
        ),
        case(
            "kubelet flag with dashes",
            edit(
                &w,
                "extra_args = { \"max-pods\" = \"110\"",
                "extra_args = { \"--max-pods\" = \"110\"",
            ),
            "machine.kubelet.extra_args.--max-pods",
            "write it without leading dashes",
        ),
        case(
            "kubelet integer flag out of range",
            edit(
                &w,
                "extra_args = { \"max-pods\" = \"110\"",
                "extra_args = { \"max-pods\" = \"lots\"",
            ),
            "machine.kubelet.extra_args.max-pods",
            "`lots` is not valid for max-pods; expected an integer in 1..=10000",
        ),
        case(
            "kubelet duration flag",
            edit(
                &w,
                "extra_args = { \"max-pods\" = \"110\"",
                "extra_args = { \"node-status-update-frequency\" = \"10 seconds\"",
            ),
            "machine.kubelet.extra_args.node-status-update-frequency",
            "expected a duration such as 10s",
        ),
        at(
            case(
                "node-role label",
                edit(
                    &w,
                    "node_labels = { ",
                    "node_labels = { \"node-role.kubernetes.io/worker\" = \"\", ",
                ),
                "machine.kubelet.node_labels.\"node-role.kubernetes.io/worker\"",
                "NodeRestriction admission plugin refuses them",
            ),
            "node-role.kubernetes.io/worker",
        ),
        case(
            "k8s.io label",
            edit(
                &w,
                "node_labels = { ",
                "node_labels = { \"example.k8s.io/x\" = \"y\", ",
            ),
            "machine.kubelet.node_labels.\"example.k8s.io/x\"",
            "use your own prefix (e.g. example.com/x)",
        ),
        case(
            "label the kubelet sets",
            edit(
                &w,
                "node_labels = { ",
                "node_labels = { \"kubernetes.io/hostname\" = \"x\", ",
            ),
            "machine.kubelet.node_labels.\"kubernetes.io/hostname\"",
            "is set by the kubelet itself",
        ),
        case(
            "label prefix not a DNS subdomain",
            edit(
                &w,
                "node_labels = { ",
                "node_labels = { \"Example.com/x\" = \"y\", ",
            ),
            "machine.kubelet.node_labels.\"Example.com/x\"",
            "prefix `Example.com` is not a lowercase DNS subdomain",
        ),
        case(
            "label name too long",
            edit(
                &w,
                "node_labels = { ",
                &format!(
                    "node_labels = {{ \"example.com/{}\" = \"y\", ",
                    "n".repeat(64)
                ),
            ),
            "machine.kubelet.node_labels.\"example.com/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\"",
            "must be 1–63 characters",
        ),
        case(
            "label value too long",
            edit(&w, "\"lab-a\"", &format!("\"{}\"", "v".repeat(64))),
            "machine.kubelet.node_labels.\"topology.kubernetes.io/zone\"",
            "label value `vvvv",
        ),
        case(
            "native routing without its CIDR",
            cilium(&w, "routing_mode = \"native\"\n"),
            "cluster.cni.cilium.native_routing_cidr",
            "required with routing_mode = \"native\"",
        ),
        case(
            "native routing CIDR outside the pod subnets",
            cilium(
                &w,
                "routing_mode = \"native\"\nnative_routing_cidr = \"192.168.0.0/16\"\n",
            ),
            "cluster.cni.cilium.native_routing_cidr",
            "does not contain the pod subnet(s) 10.244.0.0/16",
        ),
        case(
            "native routing CIDR narrower than the pod subnet",
            cilium(
                &w,
                "routing_mode = \"native\"\nnative_routing_cidr = \"10.244.1.0/24\"\n",
            ),
            "cluster.cni.cilium.native_routing_cidr",
            "does not contain the pod subnet(s) 10.244.0.0/16",
        ),
        case(
            "native routing CIDR with host bits",
            cilium(
                &w,
                "routing_mode = \"native\"\nnative_routing_cidr = \"10.244.0.1/16\"\n",
            ),
            "cluster.cni.cilium.native_routing_cidr",
            "has host bits set; did you mean 10.244.0.0/16?",
        ),
        case(
            "tunnel protocol with native routing",
            cilium(
                &w,
                "routing_mode = \"native\"\nnative_routing_cidr = \"10.244.0.0/16\"\ntunnel_protocol = \"geneve\"\n",
            ),
            "cluster.cni.cilium.tunnel_protocol",
            "only with routing_mode = \"tunnel\"",
        ),
        at(
            case(
                "unknown tunnel protocol",
                cilium(&w, "tunnel_protocol = \"gre\"\n"),
                "cluster.cni.cilium.tunnel_protocol",
                "unknown variant `gre`",
            ),
            "tunnel_protocol = ",
        ),
        case(
            "MTU out of range",
            cilium(&w, "mtu = 70000\n"),
            "cluster.cni.cilium.mtu",
            "outside 1280..=9000",
        ),
        case(
            "Cilium settings with the bridge CNI",
            edit(
                &cilium(&w, "mtu = 1400\n"),
                "name = \"cilium\"",
                "name = \"bridge\"",
            ),
            "cluster.cni.cilium",
            "only with cluster.cni.name = \"cilium\"",
        ),
        case(
            "Cilium without kube-proxy replacement",
            edit(
                &w,
                "kube_proxy_replacement = true",
                "kube_proxy_replacement = false",
            ),
            "cluster.cni.kube_proxy_replacement",
            "Basalt ships no kube-proxy",
        ),
        at(
            case(
                "bad DNS domain",
                edit(
                    &w,
                    "dns_domain = \"cluster.local\"",
                    "dns_domain = \"Cluster_Local.\"",
                ),
                "cluster.dns_domain",
                "is not a DNS domain",
            ),
            "dns_domain = ",
        ),
        case(
            "controlplane without CA key",
            without_key(&cp, "ca_key"),
            "cluster.ca_key",
            "required for role controlplane",
        ),
        case(
            "bootstrap token with a short secret",
            edit(&w, "y72voy7hog6e1duh\"", "y72voy7hog6e1du\""),
            "cluster.token",
            "expected [a-z0-9]{6}.[a-z0-9]{16} (value redacted)",
        ),
        case(
            "bootstrap token in upper case",
            edit(&w, "token = \"ppm0l3", "token = \"PPM0L3"),
            "cluster.token",
            "not a bootstrap token",
        ),
        case(
            "endpoint not a URL",
            edit(&w, "https://10.0.0.10:6443", "10.0.0.10:6443"),
            "cluster.endpoint",
            "https",
        ),
        case(
            "bad metrics address",
            edit(&w, "listen = \"127.0.0.1:9100\"", "listen = \"anywhere\""),
            "machine.metrics.listen",
            "invalid socket address syntax",
        ),
        case(
            "plain-http endpoint",
            edit(&w, "https://10.0.0.10:6443", "http://10.0.0.10:6443"),
            "cluster.endpoint",
            "must be https://",
        ),
        case(
            "bad bootstrap token",
            edit(&w, "token = \"", "token = \"X"),
            "cluster.token",
            "not a bootstrap token",
        ),
        case(
            "CA cert not PEM",
            edit(
                &w,
                "-----BEGIN CERTIFICATE-----\nMII",
                "-----BEGIN CERTIFICATE-----\n!!!",
            ),
            "cluster.ca_cert",
            "not a PEM CERTIFICATE block",
        ),
        case(
            "overlapping subnets",
            edit(
                &w,
                "pod_subnets = [\"10.244.0.0/16\"]",
                "pod_subnets = [\"10.96.0.0/16\"]",
            ),
            "cluster.pod_subnets[0]",
            "pod subnet 10.96.0.0/16 overlaps service subnet 10.96.0.0/12",
        ),
        case(
            "subnet with host bits",
            edit(
                &w,
                "pod_subnets = [\"10.244.0.0/16\"]",
                "pod_subnets = [\"10.244.0.1/16\"]",
            ),
            "cluster.pod_subnets[0]",
            "has host bits set; did you mean 10.244.0.0/16?",
        ),
        case(
            "worker with CA key",
            edit(&w, "pod_subnets", "ca_key = \"x\"\npod_subnets"),
            "cluster.ca_key",
            "a worker must not carry control-plane secrets",
        ),
        case(
            "controlplane without etcd key",
            without_key(&cp, "etcd_ca_key"),
            "cluster.etcd_ca_key",
            "required for role controlplane",
        ),
        case(
            "RSA admin key",
            edit(&w, "admins = [\n", &format!("admins = [\n  \"{rsa}\",\n")),
            "trust.admins[0]",
            "only ssh-ed25519 keys are accepted, got ssh-rsa",
        ),
        case(
            "ECDSA admin key",
            edit(&w, "admins = [\n", &format!("admins = [\n  \"{ecdsa}\",\n")),
            "trust.admins[0]",
            "got ecdsa-sha2-nistp256",
        ),
        case(
            "threshold above admins",
            edit(&w, "threshold = 1", "threshold = 2"),
            "trust.threshold",
            "2 is out of range; expected 1..=1",
        ),
        case(
            "no admins",
            edit(
                &w,
                &format!("  \"{}\",\n", key(1).public().to_openssh()),
                "",
            ),
            "trust.admins",
            "at least one admin key is required",
        ),
        case(
            "duplicate admin",
            edit(
                &w,
                "readers = []",
                &format!("readers = [\"{}\"]", key(1).public().to_openssh()),
            ),
            "trust.readers[0]",
            "is listed twice",
        ),
        case(
            "duplicate inline manifest",
            edit(
                &cp,
                "[trust]",
                "[[cluster.inline_manifests]]\nname = \"namespace-apps\"\ncontents = \"x: 1\"\n\n[trust]",
            ),
            "cluster.inline_manifests[1].name",
            "defined twice",
        ),
        case(
            "install without a disk",
            install(&w, "wipe = true\n"),
            "machine.install",
            "say which disk to install to: `disk = \"/dev/vda\"`, or a [machine.install.selector] table",
        ),
        at(
            case(
                "install with a disk and a selector",
                install(
                    &w,
                    "disk = \"/dev/vda\"\n[machine.install.selector]\nserial = \"s1\"\n",
                ),
                "machine.install.selector",
                "set only one of `disk` and `selector`",
            ),
            "[machine.install.selector]",
        ),
        at(
            case(
                "install disk not under /dev",
                install(&w, "disk = \"vda\"\n"),
                "machine.install.disk",
                "`vda` is not a device path; expected e.g. /dev/vda",
            ),
            "disk = \"vda\"",
        ),
        at(
            case(
                "empty disk selector",
                install(&w, "[machine.install.selector]\n"),
                "machine.install.selector",
                "an empty selector matches every disk; set at least one of size, model, serial, wwid, type",
            ),
            "[machine.install.selector]",
        ),
        at(
            case(
                "selector size without a comparison",
                install(&w, "[machine.install.selector]\nsize = \"8GiB\"\n"),
                "machine.install.selector.size",
                "`8GiB` has no comparison; write one of >=, <=, >, <, = before the size, e.g. \">= 8GiB\"",
            ),
            "size = \"8GiB\"",
        ),
        at(
            case(
                "selector size without a unit",
                install(&w, "[machine.install.selector]\nsize = \">= 8\"\n"),
                "machine.install.selector.size",
                "no unit is not a unit; write the size with one of B, KiB, MiB, GiB, TiB, KB, MB, GB, TB",
            ),
            "size = \">= 8\"",
        ),
        case(
            "selector size as a number",
            install(&w, "[machine.install.selector]\nsize = 8\n"),
            "machine.install.selector.size",
            "invalid type: integer `8`, expected a string",
        ),
        at(
            case(
                "unknown selector type",
                install(&w, "[machine.install.selector]\ntype = \"usb\"\n"),
                "machine.install.selector.type",
                "unknown variant `usb`, expected one of `ssd`, `hdd`, `nvme`, `virtio`",
            ),
            "type = \"usb\"",
        ),
        at(
            case(
                "unknown selector key",
                install(&w, "[machine.install.selector]\nlabel = \"x\"\n"),
                "machine.install.selector.label",
                "unknown key; expected one of `size`, `model`, `serial`, `wwid`, `type`",
            ),
            "label = \"x\"",
        ),
        at(
            case(
                "empty selector serial",
                install(
                    &w,
                    "[machine.install.selector]\nsize = \">= 1GiB\"\nserial = \"\"\n",
                ),
                "machine.install.selector.serial",
                "an empty value never matches",
            ),
            "serial = \"\"",
        ),
        at(
            case(
                "selector model with spaces around",
                install(
                    &w,
                    "[machine.install.selector]\nmodel = \" QEMU HARDDISK \"\n",
                ),
                "machine.install.selector.model",
                "has leading or trailing spaces, which never match (machined trims what the disk reports); write \"QEMU HARDDISK\"",
            ),
            "model = ",
        ),
        at(
            case(
                "wildcard in a selector wwid",
                install(&w, "[machine.install.selector]\nwwid = \"naa.5000*\"\n"),
                "machine.install.selector.wwid",
                "`*` is a wildcard only in `model`; wwid matches exactly",
            ),
            "wwid = ",
        ),
        case(
            "document over 1 MiB",
            format!("{w}\n#{}\n", "x".repeat(1024 * 1024)),
            "(document)",
            "the limit is 1048576 bytes",
        ),
    ]
}

/// Drop a `key = '''…'''` multi-line entry entirely.
pub fn without_key(doc: &str, key: &str) -> String {
    let start = doc.find(&format!("\n{key} = '''")).expect("key present") + 1;
    let body = start + key.len() + 7;
    let end = body + doc[body..].find("'''\n").expect("closing quotes") + 4;
    format!("{}{}", &doc[..start], &doc[end..])
}

pub fn policy(admins: &[u8], readers: &[u8], threshold: usize) -> TrustRoots {
    TrustRoots::new(
        admins.iter().map(|n| key(*n).public()).collect(),
        readers.iter().map(|n| key(*n).public()).collect(),
        threshold,
    )
    .expect("test trust roots are valid")
}

pub fn sign(n: u8, doc: &str) -> String {
    sshsig::sign(&key(n), CONFIG_NAMESPACE, doc.as_bytes())
}

/// An SSHSIG blob whose key and signature claim another algorithm.
fn foreign_sig(algo: &str) -> String {
    fn s(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    let mut key = Vec::new();
    s(&mut key, algo.as_bytes());
    s(&mut key, &[1, 0, 1]);
    let mut sig = Vec::new();
    s(&mut sig, algo.as_bytes());
    s(&mut sig, &[0; 64]);
    let mut blob = b"SSHSIG".to_vec();
    blob.extend_from_slice(&1u32.to_be_bytes());
    s(&mut blob, &key);
    s(&mut blob, CONFIG_NAMESPACE.as_bytes());
    s(&mut blob, b"");
    s(&mut blob, b"sha512");
    s(&mut blob, &sig);
    let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
    format!("-----BEGIN SSH SIGNATURE-----\n{b64}\n-----END SSH SIGNATURE-----\n")
}

pub struct SigCase {
    pub name: &'static str,
    pub doc: String,
    pub sig: Vec<u8>,
    pub policy: TrustRoots,
    pub current: u64,
    pub message: String,
}

pub fn sig_cases() -> Vec<SigCase> {
    let doc = worker();
    let good = sign(1, &doc);
    let mk = |name, sig: String, message: &str| SigCase {
        name,
        doc: doc.clone(),
        sig: sig.into_bytes(),
        policy: policy(&[1, 2], &[3], 1),
        current: 0,
        message: message.to_string(),
    };
    let mut corrupted = good.clone().into_bytes();
    corrupted[60] = if corrupted[60] == b'A' { b'B' } else { b'A' };
    let fp = |n: u8| key(n).public().fingerprint();
    vec![
        mk(
            "signature over other bytes",
            sign(1, &doc.replace("worker-1", "worker-2")),
            &format!("signature by {} does not match these bytes", fp(1)),
        ),
        mk(
            "wrong namespace",
            sshsig::sign(&key(1), "file", doc.as_bytes()),
            "namespace `file` is not `basalt-config`",
        ),
        mk(
            "untrusted key",
            sign(9, &doc),
            &format!("{} is not a trusted admin key", fp(9)),
        ),
        mk(
            "reader key signing",
            sign(3, &doc),
            "is a reader key; readers cannot sign configs",
        ),
        SigCase {
            policy: policy(&[1, 2], &[], 2),
            ..mk(
                "same signer twice to fake a threshold",
                sign(1, &doc) + &sign(1, &doc),
                "1 of 2 required signature(s)",
            )
        },
        mk(
            "truncated armor",
            good[..good.len() - 40].to_string(),
            "missing `-----END SSH SIGNATURE-----`",
        ),
        mk(
            "corrupted armor",
            good.replace(
                "-----BEGIN SSH SIGNATURE-----\n",
                "-----BEGIN SSH SIGNATURE-----\n*",
            ),
            "invalid base64",
        ),
        SigCase {
            sig: corrupted,
            ..mk("corrupted signature bytes", String::new(), "block 1:")
        },
        mk(
            "RSA signature",
            foreign_sig("ssh-rsa"),
            "only ssh-ed25519 signatures are accepted, got ssh-rsa",
        ),
        mk(
            "ECDSA signature",
            foreign_sig("ecdsa-sha2-nistp256"),
            "got ecdsa-sha2-nistp256",
        ),
        mk(
            "empty signature file",
            String::new(),
            "no `-----BEGIN SSH SIGNATURE-----` block",
        ),
        mk(
            "text before the block",
            format!("hello\n{good}"),
            "expected `-----BEGIN SSH SIGNATURE-----`",
        ),
        SigCase {
            current: 1,
            ..mk(
                "replayed generation",
                good.clone(),
                "generation 1 is not newer than the node's current generation 1",
            )
        },
        SigCase {
            current: 7,
            ..mk(
                "rolled-back generation",
                good.clone(),
                "generation 1 is not newer than the node's current generation 7",
            )
        },
        SigCase {
            doc: format!("{doc}#{}\n", "x".repeat(1024 * 1024)),
            ..mk("document over 1 MiB", good.clone(), "document is 10")
        },
        mk(
            "signature file over 1 MiB",
            good.repeat(4000),
            "signature file is",
        ),
        SigCase {
            doc: edit(&doc, "mtu = 1500", "mtu = 20"),
            sig: sign(1, &edit(&doc, "mtu = 1500", "mtu = 20")).into_bytes(),
            ..mk(
                "validly signed but invalid config",
                String::new(),
                "20 is out of range",
            )
        },
    ]
}

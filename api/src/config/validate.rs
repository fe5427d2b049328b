//! Semantic rules: what a well-typed config must also satisfy to be applied.

use super::locate::{TomlPath, p};
use super::{
    Cidr, Cluster, CniName, File, Install, MachineConfig, Role, RoutingMode, VERSION,
    WRITABLE_PREFIXES,
};
use crate::sshkey::PublicKey;
use crate::trust::TrustRootsError;
use std::collections::HashSet;

type Problems = Vec<(TomlPath, String)>;

pub(super) fn validate(c: &MachineConfig) -> Problems {
    let mut out = Problems::new();
    if c.version != VERSION {
        out.push((
            p(&["version"]),
            format!(
                "unsupported config version {}; this node understands version {VERSION}",
                c.version
            ),
        ));
    }
    if c.generation == 0 {
        out.push((p(&["generation"]), "must be at least 1".into()));
    }
    for (key, index, problem) in crate::scope::validate(&c.scope) {
        let at = p(&["scope", key]);
        out.push((index.map_or(at.clone(), |i| at.index(i)), problem));
    }
    machine(c, &mut out);
    cluster(&c.cluster, c.machine.role, &mut out);
    trust(c, &mut out);
    out
}

fn machine(c: &MachineConfig, out: &mut Problems) {
    let m = &c.machine;
    if let Some(h) = &m.hostname
        && let Err(e) = hostname(h)
    {
        out.push((p(&["machine", "hostname"]), e));
    }
    if let Some(i) = &m.install {
        install(i, out);
    }
    network(c, out);
    for (i, s) in m.time.servers.iter().enumerate() {
        if s.parse::<std::net::IpAddr>().is_err() && hostname(s).is_err() {
            out.push((
                p(&["machine", "time", "servers"]).index(i),
                format!("`{s}` is neither an IP address nor a host name"),
            ));
        }
    }
    for (key, value) in &m.sysctls {
        let at = p(&["machine", "sysctls"]).key(key);
        let key_ok = !key.is_empty()
            && key.split(['.', '/']).all(|part| {
                !part.is_empty()
                    && part != ".."
                    && part
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_-*".contains(ch))
            });
        if !key_ok {
            out.push((
                at.clone(),
                format!("`{key}` is not a sysctl name like net.ipv4.ip_forward"),
            ));
        }
        if value.is_empty() || value.contains(['\n', '\0']) {
            out.push((at, "value must be a non-empty single line".into()));
        }
    }
    for (i, name) in m.kernel.modules.iter().enumerate() {
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            out.push((
                p(&["machine", "kernel", "modules"]).index(i),
                format!("`{name}` is not a module name (letters, digits, `_`, `-`)"),
            ));
        }
    }
    files(&m.files, out);
    kubelet(c, out);
    super::registries::validate(&m.registries, &p(&["machine", "registries"]), out);
}

/// Exactly one of `disk` and `selector`; a path under /dev; a selector that
/// says something, in values a disk can report.
fn install(i: &Install, out: &mut Problems) {
    let at = p(&["machine", "install"]);
    match (&i.disk, &i.selector) {
        (None, None) => out.push((
            at.clone(),
            "say which disk to install to: `disk = \"/dev/vda\"`, or a [machine.install.selector] table (e.g. serial = \"…\", size = \">= 8GiB\")".into(),
        )),
        (Some(_), Some(_)) => out.push((
            at.key("selector"),
            "set only one of `disk` and `selector`: remove `disk` to choose the disk by this selector, or remove this table to install to `disk`".into(),
        )),
        _ => {}
    }
    if let Some(disk) = &i.disk
        && (!disk.starts_with("/dev/") || disk.contains(".."))
    {
        out.push((
            at.key("disk"),
            format!("`{disk}` is not a device path; expected e.g. /dev/vda or /dev/disk/by-id/…"),
        ));
    }
    let Some(s) = &i.selector else { return };
    let at = at.key("selector");
    if s.is_empty() {
        out.push((
            at.clone(),
            "an empty selector matches every disk; set at least one of size, model, serial, wwid, type".into(),
        ));
    }
    for (key, value) in [
        ("model", &s.model),
        ("serial", &s.serial),
        ("wwid", &s.wwid),
    ] {
        let Some(v) = value else { continue };
        let problem = if v.trim().is_empty() {
            Some("an empty value never matches (a disk that reports none has none to compare); remove the key or write what the disk reports".to_string())
        } else if v.trim() != v {
            Some(format!(
                "`{v}` has leading or trailing spaces, which never match (machined trims what the disk reports); write {:?}",
                v.trim()
            ))
        } else if v.chars().any(char::is_control) {
            Some("control characters never match; write the value on one line".to_string())
        } else if key != "model" && v.contains('*') {
            Some(format!(
                "`*` is a wildcard only in `model`; {key} matches exactly: write the whole {key} the disk reports"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            out.push((at.key(key), problem));
        }
    }
}

fn network(c: &MachineConfig, out: &mut Problems) {
    let net = &c.machine.network;
    let base = p(&["machine", "network", "interfaces"]);
    let mut names = HashSet::new();
    let mut macs = HashSet::new();
    for (i, iface) in net.interfaces.iter().enumerate() {
        let at = base.index(i);
        match (&iface.name, &iface.mac) {
            (None, None) => out.push((
                at.clone(),
                "set `name` or `mac` to say which link this is".into(),
            )),
            (Some(_), Some(_)) => out.push((at.clone(), "set only one of `name` and `mac`".into())),
            _ => {}
        }
        if let Some(name) = &iface.name {
            if name.is_empty()
                || name.len() > 15
                || name.contains(['/', ':'])
                || name.chars().any(|ch| ch.is_whitespace() || ch.is_control())
                || name == "."
                || name == ".."
            {
                out.push((
                    at.key("name"),
                    format!(
                        "`{name}` is not a Linux interface name (1–15 chars, no `/`, `:` or spaces)"
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                out.push((
                    at.key("name"),
                    format!("interface `{name}` is configured twice"),
                ));
            }
        }
        if let Some(mac) = &iface.mac
            && !macs.insert(*mac)
        {
            out.push((
                at.key("mac"),
                format!("interface {mac} is configured twice"),
            ));
        }
        let mut seen = HashSet::new();
        for (j, a) in iface.addresses.iter().enumerate() {
            if !seen.insert(*a) {
                out.push((
                    at.key("addresses").index(j),
                    format!("address {a} is listed twice"),
                ));
            }
        }
        for (j, r) in iface.routes.iter().enumerate() {
            if let Some(via) = r.via
                && via.is_ipv4() != r.to.is_ipv4()
            {
                out.push((
                    at.key("routes").index(j).key("via"),
                    format!("gateway {via} is not the same address family as {}", r.to),
                ));
            }
        }
        if let Some(mtu) = iface.mtu {
            let min = if iface.addresses.iter().any(|a| !a.is_ipv4()) {
                1280
            } else {
                68
            };
            if !(min..=65535).contains(&mtu) {
                out.push((
                    at.key("mtu"),
                    format!("{mtu} is out of range; expected {min}..=65535"),
                ));
            }
        }
    }
    for (i, d) in net.search_domains.iter().enumerate() {
        if let Err(e) = hostname(d) {
            out.push((p(&["machine", "network", "search_domains"]).index(i), e));
        }
    }
}

fn files(files: &[File], out: &mut Problems) {
    let mut seen = HashSet::new();
    for (i, f) in files.iter().enumerate() {
        let at = p(&["machine", "files"]).index(i);
        if let Err(e) = writable_path(&f.path) {
            out.push((at.key("path"), e));
        } else if !seen.insert(f.path.as_str()) {
            out.push((
                at.key("path"),
                format!("`{}` is written by two entries", f.path),
            ));
        }
        if f.mode > 0o7777 {
            out.push((
                at.key("mode"),
                format!("{:#o} is not a file mode; expected at most 0o7777", f.mode),
            ));
        }
    }
}

/// Absolute, normalised, and inside a writable prefix.
fn writable_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` is not absolute"));
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    let parts: Vec<&str> = path[1..].split('/').collect();
    if parts.contains(&"..") {
        return Err(format!("`{path}` contains `..`"));
    }
    if path.ends_with('/') || parts.iter().any(|s| s.is_empty() || *s == ".") {
        return Err(format!(
            "`{path}` is not normalised (empty or `.` components, or a trailing `/`)"
        ));
    }
    if !WRITABLE_PREFIXES
        .iter()
        .any(|pre| path.starts_with(pre) && path.len() > pre.len())
    {
        return Err(format!(
            "`{path}` is outside the writable prefixes ({}); the rest of the system is read-only",
            WRITABLE_PREFIXES.join(", ")
        ));
    }
    Ok(())
}

/// What a kubelet flag's value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeletArgValue {
    /// A decimal integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// `true` or `false`.
    Bool,
    /// A Go duration such as `10s`, `1m30s`, `2h`.
    Duration,
    /// One token of printable ASCII without spaces: quantities (`10Mi`),
    /// lists (`cpu=100m,memory=1Gi`), eviction signals (`memory.available<100Mi`).
    Token,
}

/// A kubelet flag `machine.kubelet.extra_args` may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeletArg {
    pub name: &'static str,
    pub value: KubeletArgValue,
}

const fn arg(name: &'static str, value: KubeletArgValue) -> KubeletArg {
    KubeletArg { name, value }
}

const fn int(min: i64, max: i64) -> KubeletArgValue {
    KubeletArgValue::Int { min, max }
}

/// The kubelet flags a config may set: tuning of capacity, garbage
/// collection, eviction, reservations, logging and API rates. Nothing here
/// changes who the kubelet is, what it trusts, or where its files live;
/// those are [`KUBELET_PROTECTED_ARGS`]. Another flag is refused until it
/// is reviewed and added here.
pub const KUBELET_EXTRA_ARGS: &[KubeletArg] = &[
    arg("max-pods", int(1, 10_000)),
    arg("pod-max-pids", int(-1, 4_194_304)),
    arg("v", int(0, 10)),
    arg("image-gc-high-threshold", int(0, 100)),
    arg("image-gc-low-threshold", int(0, 100)),
    arg("image-minimum-gc-age", KubeletArgValue::Duration),
    arg("eviction-hard", KubeletArgValue::Token),
    arg("eviction-soft", KubeletArgValue::Token),
    arg("eviction-soft-grace-period", KubeletArgValue::Token),
    arg("eviction-minimum-reclaim", KubeletArgValue::Token),
    arg(
        "eviction-pressure-transition-period",
        KubeletArgValue::Duration,
    ),
    arg("kube-reserved", KubeletArgValue::Token),
    arg("system-reserved", KubeletArgValue::Token),
    arg("node-status-update-frequency", KubeletArgValue::Duration),
    arg("serialize-image-pulls", KubeletArgValue::Bool),
    arg("max-parallel-image-pulls", int(1, 1000)),
    arg("registry-qps", int(0, 10_000)),
    arg("registry-burst", int(0, 10_000)),
    arg("event-qps", int(0, 10_000)),
    arg("event-burst", int(0, 10_000)),
    arg("kube-api-qps", int(0, 10_000)),
    arg("kube-api-burst", int(0, 10_000)),
    arg("container-log-max-size", KubeletArgValue::Token),
    arg("container-log-max-files", int(2, 1000)),
];

const CREDENTIALS: &str = "machined generates the kubelet's credentials and certificates";
const AUTH: &str = "it decides who may call the kubelet's API; machined sets it secure";
const STATIC_PODS: &str =
    "static pods bypass the API server's admission; run workloads through Kubernetes";

/// Kubelet flags machined sets itself, each with the reason a config may
/// not override it (and, where there is one, the config key to use).
pub const KUBELET_PROTECTED_ARGS: &[(&str, &str)] = &[
    ("config", "machined writes the kubelet's configuration file"),
    ("kubeconfig", CREDENTIALS),
    ("bootstrap-kubeconfig", CREDENTIALS),
    ("cert-dir", CREDENTIALS),
    ("tls-cert-file", CREDENTIALS),
    ("tls-private-key-file", CREDENTIALS),
    ("client-ca-file", CREDENTIALS),
    ("rotate-certificates", CREDENTIALS),
    ("rotate-server-certificates", CREDENTIALS),
    ("anonymous-auth", AUTH),
    ("authorization-mode", AUTH),
    ("authentication-token-webhook", AUTH),
    ("read-only-port", AUTH),
    (
        "container-runtime-endpoint",
        "machined runs containerd and points the kubelet at its socket",
    ),
    (
        "root-dir",
        "the kubelet's state lives where machined mounts it (/var/lib/kubelet)",
    ),
    (
        "volume-plugin-dir",
        "the root filesystem is read-only; machined chooses the plugin directory",
    ),
    ("cgroup-driver", "machined sets it to match containerd's"),
    ("cgroup-root", "machined owns the cgroup tree"),
    ("pod-manifest-path", STATIC_PODS),
    ("manifest-url", STATIC_PODS),
    ("node-ip", "set machine.kubelet.node_ip_subnets instead"),
    ("hostname-override", "set machine.hostname instead"),
    ("node-labels", "set machine.kubelet.node_labels instead"),
    (
        "register-with-taints",
        "set machine.kubelet.node_taints instead",
    ),
    ("cluster-domain", "set cluster.dns_domain instead"),
    (
        "cluster-dns",
        "machined derives it from cluster.service_subnets",
    ),
];

fn kubelet_arg(key: &str, value: &str) -> Result<(), String> {
    if key.starts_with('-')
        || key.is_empty()
        || !key
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
    {
        return Err(format!(
            "`{key}` is not a kubelet flag name; write it without leading dashes, e.g. max-pods"
        ));
    }
    if let Some((_, why)) = KUBELET_PROTECTED_ARGS.iter().find(|(k, _)| *k == key) {
        return Err(format!(
            "`{key}` is set by machined and cannot be overridden: {why}"
        ));
    }
    let Some(spec) = KUBELET_EXTRA_ARGS.iter().find(|a| a.name == key) else {
        let names: Vec<&str> = KUBELET_EXTRA_ARGS.iter().map(|a| a.name).collect();
        return Err(format!(
            "`{key}` is not a kubelet flag a config may set; allowed: {}",
            names.join(", ")
        ));
    };
    let ok = match spec.value {
        KubeletArgValue::Int { min, max } => {
            value.parse::<i64>().is_ok_and(|n| (min..=max).contains(&n))
        }
        KubeletArgValue::Bool => value == "true" || value == "false",
        KubeletArgValue::Duration => go_duration(value),
        KubeletArgValue::Token => {
            !value.is_empty()
                && !value.starts_with('-')
                && value.chars().all(|c| c.is_ascii_graphic())
        }
    };
    if ok {
        return Ok(());
    }
    Err(match spec.value {
        KubeletArgValue::Int { min, max } => {
            format!("`{value}` is not valid for {key}; expected an integer in {min}..={max}")
        }
        KubeletArgValue::Bool => {
            format!("`{value}` is not valid for {key}; expected true or false")
        }
        KubeletArgValue::Duration => format!(
            "`{value}` is not valid for {key}; expected a duration such as 10s, 1m30s or 2h"
        ),
        KubeletArgValue::Token => format!(
            "`{value}` is not valid for {key}; expected one word of printable ASCII without spaces, e.g. cpu=100m,memory=1Gi"
        ),
    })
}

/// Go's `time.ParseDuration` syntax, unsigned: `1h2m3.5s`, `300ms`.
fn go_duration(v: &str) -> bool {
    let mut rest = v;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty()
            || number.starts_with('.')
            || number.ends_with('.')
            || number.matches('.').count() > 1
        {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(*u))
            .max_by_key(|u| u.len())
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

fn kubelet(c: &MachineConfig, out: &mut Problems) {
    let k = &c.machine.kubelet;
    let base = p(&["machine", "kubelet"]);
    for (key, value) in &k.extra_args {
        if let Err(e) = kubelet_arg(key, value) {
            out.push((base.key("extra_args").key(key), e));
        }
    }
    for (key, value) in &k.node_labels {
        let at = base.key("node_labels").key(key);
        if let Err(e) = label_key(key).and_then(|()| kubelet_may_set_label(key)) {
            out.push((at.clone(), e));
        }
        if !label_value(value) {
            out.push((at, format!("label value `{value}` is not valid: at most 63 characters of letters, digits, `-`, `_` and `.`, beginning and ending with a letter or digit (or empty)")));
        }
    }
    for (key, value) in &k.node_taints {
        let at = base.key("node_taints").key(key);
        if let Err(e) = label_key(key) {
            out.push((at.clone(), e));
        }
        let ok = value.rsplit_once(':').is_some_and(|(v, effect)| {
            label_value(v) && ["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        });
        if !ok {
            out.push((at.clone(), format!("`{value}` is not a taint; expected `value:Effect` (or `:Effect`) with a label value and Effect one of NoSchedule, PreferNoSchedule, NoExecute")));
        }
        if key == super::CONTROL_PLANE_TAINT_KEY
            && c.machine.role == Role::Controlplane
            && c.cluster.allow_scheduling_on_control_plane
        {
            out.push((
                at,
                "contradicts cluster.allow_scheduling_on_control_plane = true: remove this taint or set that key to false".into(),
            ));
        }
    }
}

/// A Kubernetes qualified name: `[prefix/]name`, the prefix a lowercase DNS
/// subdomain of at most 253 characters, the name at most 63 characters of
/// letters, digits, `-`, `_` and `.`, alphanumeric at both ends.
fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((pre, name)) => (Some(pre), name),
        None => (None, key),
    };
    if let Some(pre) = prefix {
        let lower = pre
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if pre.is_empty() || pre.len() > 253 || !lower || hostname(pre).is_err() {
            return Err(format!(
                "`{key}`: prefix `{pre}` is not a lowercase DNS subdomain of at most 253 characters, e.g. example.com"
            ));
        }
    }
    if name.is_empty() || name.len() > 63 || !label_value(name) {
        return Err(format!(
            "`{key}` is not a label key: the name{} must be 1–63 characters of letters, digits, `-`, `_` and `.`, beginning and ending with a letter or digit",
            if prefix.is_some() {
                " after the `/`"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// Labels under `kubernetes.io` and `k8s.io` a kubelet may register its node
/// with. The kubelet refuses to start with any other (`--node-labels`), as
/// the NodeRestriction admission plugin would refuse them;
/// `node-role.kubernetes.io/*` is among those: the control plane, not the
/// node, assigns roles.
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];
const KUBELET_LABELS: &[&str] = &[
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "beta.kubernetes.io/instance-type",
];
/// Labels the kubelet sets itself from the machine.
const KUBELET_OWN_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

fn kubelet_may_set_label(key: &str) -> Result<(), String> {
    let Some((ns, name)) = key.split_once('/') else {
        return Ok(());
    };
    let within = |domain: &str| ns == domain || ns.ends_with(&format!(".{domain}"));
    if !(within("kubernetes.io") || within("k8s.io")) {
        return Ok(());
    }
    if KUBELET_OWN_LABELS.contains(&key) {
        return Err(format!(
            "`{key}` is set by the kubelet itself from the machine; remove it"
        ));
    }
    if KUBELET_LABELS.contains(&key) || KUBELET_LABEL_NAMESPACES.iter().any(|d| within(d)) {
        return Ok(());
    }
    Err(format!(
        "`{key}`: a kubelet may not register its node with labels under kubernetes.io or k8s.io (the kubelet refuses to start with them and the API server's NodeRestriction admission plugin refuses them), except under kubelet.kubernetes.io/ and node.kubernetes.io/ and topology.kubernetes.io/region|zone; use your own prefix (e.g. example.com/{name}) or label the node through the Kubernetes API (kubectl label node)"
    ))
}

fn label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            && v.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && v.ends_with(|ch: char| ch.is_ascii_alphanumeric()))
}

/// RFC 1123 host name: dot-separated labels of 1–63 letters, digits and
/// hyphens, not starting or ending with a hyphen; at most 253 characters.
pub fn hostname(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{h}` is not an RFC 1123 host name (labels of letters, digits and `-`, 1–63 chars each)"
        ))
    }
}

fn cluster(c: &Cluster, role: Role, out: &mut Problems) {
    let at = |k: &str| p(&["cluster", k]);
    if c.name.len() > 63 || hostname(&c.name).is_err() || c.name.contains('.') {
        out.push((
            at("name"),
            format!(
                "`{}` is not a DNS label (letters, digits, `-`, ≤63 chars)",
                c.name
            ),
        ));
    }
    match url::Url::parse(&c.endpoint) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()) => {}
        Ok(u) if u.scheme() != "https" => out.push((
            at("endpoint"),
            format!(
                "`{}` uses {}; the API server endpoint must be https://",
                c.endpoint,
                u.scheme()
            ),
        )),
        _ => out.push((
            at("endpoint"),
            format!(
                "`{}` is not a URL; expected e.g. https://10.0.0.10:6443",
                c.endpoint
            ),
        )),
    }
    if !bootstrap_token(c.token.expose()) {
        out.push((
            at("token"),
            "not a bootstrap token; expected [a-z0-9]{6}.[a-z0-9]{16} (value redacted)".into(),
        ));
    }
    pem(&c.ca_cert, &["CERTIFICATE"], &at("ca_cert"), out);
    let cp_secrets: [(&str, Option<&str>, &[&str]); 6] = [
        ("ca_key", c.ca_key.as_ref().map(|s| s.expose()), KEY_TAGS),
        ("etcd_ca_cert", c.etcd_ca_cert.as_deref(), &["CERTIFICATE"]),
        (
            "etcd_ca_key",
            c.etcd_ca_key.as_ref().map(|s| s.expose()),
            KEY_TAGS,
        ),
        (
            "front_proxy_ca_cert",
            c.front_proxy_ca_cert.as_deref(),
            &["CERTIFICATE"],
        ),
        (
            "front_proxy_ca_key",
            c.front_proxy_ca_key.as_ref().map(|s| s.expose()),
            KEY_TAGS,
        ),
        (
            "service_account_key",
            c.service_account_key.as_ref().map(|s| s.expose()),
            KEY_TAGS,
        ),
    ];
    for (key, value, tags) in cp_secrets {
        match (role, value) {
            (Role::Controlplane, None) => out.push((
                at(key),
                "required for role controlplane; `basaltctl config gen --role controlplane` creates it".to_string(),
            )),
            (Role::Worker, Some(_)) => out.push((
                at(key),
                "a worker must not carry control-plane secrets; workers join with the bootstrap token: remove it".into(),
            )),
            (_, Some(v)) => pem(v, tags, &at(key), out),
            (Role::Worker, None) => {}
        }
    }
    let d = &c.dns_domain;
    if hostname(d).is_err() || d.chars().any(|ch| ch.is_ascii_uppercase()) {
        out.push((
            at("dns_domain"),
            format!(
                "`{d}` is not a DNS domain: lowercase labels of letters, digits and `-` separated by dots, no trailing dot, e.g. cluster.local"
            ),
        ));
    }
    subnets(c, out);
    cni(c, out);
    inline_manifests(c, out);
}

/// Each inline manifest named (a DNS subdomain, once) and not empty.
fn inline_manifests(c: &Cluster, out: &mut Problems) {
    let at = |k: &str| p(&["cluster", k]);
    let mut names = HashSet::new();
    for (i, m) in c.inline_manifests.iter().enumerate() {
        let mat = at("inline_manifests").index(i);
        if m.name.is_empty() || hostname(&m.name).is_err() {
            out.push((
                mat.key("name"),
                format!("`{}` is not a manifest name (DNS subdomain)", m.name),
            ));
        } else if !names.insert(m.name.as_str()) {
            out.push((
                mat.key("name"),
                format!("manifest `{}` is defined twice", m.name),
            ));
        }
        if m.contents.trim().is_empty() {
            out.push((mat.key("contents"), "manifest is empty".into()));
        }
    }
}

const KEY_TAGS: &[&str] = &["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"];

fn pem(value: &str, tags: &[&str], at: &TomlPath, out: &mut Problems) {
    let secret = tags.iter().any(|t| t.contains("PRIVATE"));
    match ::pem::parse(value.trim()) {
        Ok(block) if tags.contains(&block.tag()) && !block.contents().is_empty() => {}
        Ok(block) => out.push((
            at.clone(),
            format!(
                "PEM block is `{}`; expected {}",
                block.tag(),
                tags.join(" or ")
            ),
        )),
        Err(e) if secret => out.push((
            at.clone(),
            format!("not a PEM {} block ({e}); value redacted", tags[0]),
        )),
        Err(e) => out.push((at.clone(), format!("not a PEM {} block: {e}", tags[0]))),
    }
}

fn bootstrap_token(t: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
    };
    t.split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

fn subnets(c: &Cluster, out: &mut Problems) {
    let lists: [(&str, &Vec<Cidr>); 2] = [
        ("pod_subnets", &c.pod_subnets),
        ("service_subnets", &c.service_subnets),
    ];
    for (key, list) in lists {
        if list.is_empty() {
            out.push((
                p(&["cluster", key]),
                "at least one subnet is required".into(),
            ));
        }
        for (i, s) in list.iter().enumerate() {
            if s.0.trunc() != s.0 {
                out.push((
                    p(&["cluster", key]).index(i),
                    format!("{s} has host bits set; did you mean {}?", s.0.trunc()),
                ));
            }
        }
    }
    for (i, pod) in c.pod_subnets.iter().enumerate() {
        for svc in &c.service_subnets {
            if pod.overlaps(svc) {
                out.push((
                    p(&["cluster", "pod_subnets"]).index(i),
                    format!("pod subnet {pod} overlaps service subnet {svc}"),
                ));
            }
        }
    }
}

/// Pods' MTU: from IPv6's minimum link MTU up to jumbo frames.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 1280..=9000;

fn cni(c: &Cluster, out: &mut Problems) {
    let at = p(&["cluster", "cni"]);
    if c.cni.name == CniName::Cilium && !c.cni.kube_proxy_replacement {
        out.push((
            at.key("kube_proxy_replacement"),
            "Basalt ships no kube-proxy: with Cilium, Services work only through its kube-proxy replacement; remove this line (or bring your own CNI with name = \"none\")".into(),
        ));
    }
    if c.cni.name == CniName::Cilium && !c.pod_subnets.iter().any(|p| p.0.addr().is_ipv4()) {
        out.push((
            p(&["cluster", "pod_subnets"]),
            "Cilium runs IPv4 here: at least one IPv4 pod subnet is required".into(),
        ));
    }
    let Some(cilium) = &c.cni.cilium else { return };
    let at = at.key("cilium");
    if c.cni.name != CniName::Cilium {
        out.push((
            at.clone(),
            "Cilium settings apply only with cluster.cni.name = \"cilium\"; remove this table"
                .into(),
        ));
    }
    match cilium.routing_mode {
        RoutingMode::Native => {
            if cilium.tunnel_protocol.is_some() {
                out.push((
                    at.key("tunnel_protocol"),
                    "only with routing_mode = \"tunnel\"; native routing encapsulates nothing"
                        .into(),
                ));
            }
            let key = at.key("native_routing_cidr");
            match &cilium.native_routing_cidr {
                None => out.push((
                    key,
                    "required with routing_mode = \"native\": the IPv4 CIDR your network routes to pods (usually the pod subnets)".into(),
                )),
                Some(cidr) if !cidr.0.addr().is_ipv4() => out.push((
                    key,
                    format!("{cidr} is not IPv4; Cilium's native-routing CIDR is an IPv4 one"),
                )),
                Some(cidr) if cidr.0.trunc() != cidr.0 => out.push((
                    key,
                    format!("{cidr} has host bits set; did you mean {}?", cidr.0.trunc()),
                )),
                Some(cidr) => {
                    let outside: Vec<String> = c
                        .pod_subnets
                        .iter()
                        .filter(|pod| pod.0.addr().is_ipv4() && !cidr.0.contains(&pod.0.trunc()))
                        .map(ToString::to_string)
                        .collect();
                    if !outside.is_empty() {
                        out.push((
                            key,
                            format!(
                                "{cidr} does not contain the pod subnet(s) {}; pods' traffic there would be masqueraded instead of routed",
                                outside.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        RoutingMode::Tunnel => {
            if cilium.native_routing_cidr.is_some() {
                out.push((
                    at.key("native_routing_cidr"),
                    "only with routing_mode = \"native\"".into(),
                ));
            }
        }
    }
    if let Some(mtu) = cilium.mtu
        && !MTU_RANGE.contains(&mtu)
    {
        out.push((
            at.key("mtu"),
            format!(
                "{mtu} is outside {}..={}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ),
        ));
    }
}

fn trust(c: &MachineConfig, out: &mut Problems) {
    let t = &c.trust;
    let mut seen: Vec<PublicKey> = Vec::new();
    for (list, keys) in [("admins", &t.admins), ("readers", &t.readers)] {
        for (i, k) in keys.iter().enumerate() {
            let at = p(&["trust", list]).index(i);
            match PublicKey::from_openssh(k) {
                Ok(key) => {
                    if let Some(prev) = seen.iter().find(|s| s.same_key(&key)) {
                        out.push((
                            at,
                            TrustRootsError::Duplicate {
                                fingerprint: prev.fingerprint(),
                            }
                            .to_string(),
                        ));
                    } else {
                        seen.push(key);
                    }
                }
                Err(e) => out.push((at, e.to_string())),
            }
        }
    }
    match crate::trust::check_threshold(t.threshold, t.admins.len()) {
        Ok(()) => {}
        Err(e @ TrustRootsError::NoAdmins) => out.push((p(&["trust", "admins"]), e.to_string())),
        Err(e) => out.push((p(&["trust", "threshold"]), e.to_string())),
    }
}

//! Semantic rules: what a well-typed config must also satisfy to be applied.

use super::locate::{TomlPath, p};
use super::{Cidr, Cluster, File, MachineConfig, Role, VERSION, WRITABLE_PREFIXES};
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
    if let Some(i) = &m.install
        && (!i.disk.starts_with("/dev/") || i.disk.contains(".."))
    {
        out.push((
            p(&["machine", "install", "disk"]),
            format!(
                "`{}` is not a device path; expected e.g. /dev/vda or /dev/disk/by-id/…",
                i.disk
            ),
        ));
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

fn kubelet(c: &MachineConfig, out: &mut Problems) {
    let k = &c.machine.kubelet;
    let base = p(&["machine", "kubelet"]);
    for key in k.extra_args.keys() {
        if key.starts_with('-')
            || key.is_empty()
            || !key
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        {
            out.push((
                base.key("extra_args").key(key),
                format!("`{key}` is not a kubelet flag name; write it without leading dashes, e.g. max-pods"),
            ));
        }
    }
    for (key, value) in &k.node_labels {
        let at = base.key("node_labels").key(key);
        if let Err(e) = label_key(key) {
            out.push((at.clone(), e));
        }
        if !label_value(value) {
            out.push((at, format!("`{value}` is not a label value (≤63 chars, alphanumeric, `-_.`, alphanumeric at both ends)")));
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
            out.push((at, format!("`{value}` is not a taint; expected `value:Effect` with Effect one of NoSchedule, PreferNoSchedule, NoExecute")));
        }
    }
}

fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((pre, name)) => (Some(pre), name),
        None => (None, key),
    };
    if let Some(pre) = prefix
        && (pre.len() > 253 || hostname(pre).is_err())
    {
        return Err(format!("`{key}`: prefix `{pre}` is not a DNS subdomain"));
    }
    if name.is_empty() || !label_value(name) {
        return Err(format!(
            "`{key}` is not a label key (name ≤63 chars, alphanumeric and `-_.`)"
        ));
    }
    Ok(())
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
pub(crate) fn hostname(h: &str) -> Result<(), String> {
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
    subnets(c, out);
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

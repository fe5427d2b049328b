//! `machine.registries`: where containerd pulls from. Nodes cannot assume a
//! public registry, so each upstream host may name mirrors; machined turns
//! them into containerd's `hosts.toml` files (one directory per upstream
//! host under the CRI plugin's `registry.config_path`).
//!
//! ```toml
//! [machine.registries.mirrors."docker.io"]
//! endpoints = ["http://10.0.2.2:5000"]   # tried in order, then docker.io itself
//! skip_verify = false                    # optional: don't check the mirrors' TLS certificates
//! ca = """-----BEGIN CERTIFICATE-----
//! …"""                                   # optional: PEM CA(s) the https mirrors are signed by
//! ```
//!
//! The upstream key is a registry host (`docker.io`, `registry.k8s.io`,
//! `10.0.0.5:5000`), or `_default` for every host without its own entry.

use super::locate::TomlPath;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// containerd's name for "every other registry".
pub const DEFAULT_HOST: &str = "_default";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    /// Upstream host → its mirrors.
    #[serde(default)]
    pub mirrors: BTreeMap<String, RegistryMirror>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryMirror {
    /// `http[s]://host[:port][/path]`, tried in order before the upstream.
    pub endpoints: Vec<String>,
    /// Accept any TLS certificate from the mirrors.
    #[serde(default)]
    pub skip_verify: bool,
    /// PEM certificate(s) of the CA the https mirrors' certificates chain to.
    pub ca: Option<String>,
}

/// Why `host` cannot be an upstream key.
pub fn check_upstream(host: &str) -> Result<(), String> {
    if host == DEFAULT_HOST {
        return Ok(());
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    let name_ok =
        name.parse::<std::net::Ipv4Addr>().is_ok() || super::validate::hostname(name).is_ok();
    if port_ok && name_ok {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a registry host (a host name or IPv4 address, optional :port, or `{DEFAULT_HOST}`)"
        ))
    }
}

/// Why `url` cannot be a mirror endpoint.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?;
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    if authority == DEFAULT_HOST || check_upstream(authority).is_err() {
        return Err(format!(
            "`{url}`: `{authority}` is not a host name or IPv4 address with optional :port"
        ));
    }
    // The path goes into a TOML string and a URL: plain characters only.
    let path_ok = path.is_none_or(|p| {
        p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~/".contains(c))
    });
    if !path_ok {
        return Err(format!(
            "`{url}`: the path may hold only letters, digits and -._~/"
        ));
    }
    Ok(())
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

pub(super) fn validate(r: &Registries, base: &TomlPath, out: &mut Vec<(TomlPath, String)>) {
    let base = base.key("mirrors");
    for (host, m) in &r.mirrors {
        let at = base.key(host);
        if let Err(e) = check_upstream(host) {
            out.push((at.clone(), e));
        }
        if m.endpoints.is_empty() {
            out.push((
                at.key("endpoints"),
                "list at least one mirror, e.g. [\"http://10.0.2.2:5000\"]".into(),
            ));
        }
        for (i, e) in m.endpoints.iter().enumerate() {
            if let Err(msg) = check_endpoint(e) {
                out.push((at.key("endpoints").index(i), msg));
            }
            if m.endpoints[..i].contains(e) {
                out.push((
                    at.key("endpoints").index(i),
                    format!("`{e}` is listed twice"),
                ));
            }
        }
        if let Some(ca) = &m.ca {
            let blocks = ca.matches(PEM_BEGIN).count();
            if blocks == 0 || blocks != ca.matches(PEM_END).count() {
                out.push((
                    at.key("ca"),
                    format!("expected PEM certificates ({PEM_BEGIN} … {PEM_END})"),
                ));
            }
            if m.endpoints.iter().all(|e| e.starts_with("http://")) {
                out.push((
                    at.key("ca"),
                    "no https:// endpoint would use this CA".into(),
                ));
            }
        }
    }
}

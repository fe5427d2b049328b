//! What of the node's logs an API caller gets, per role: the one place the
//! server asks (`GET /v1/logs/{service}`, with or without `follow`, and
//! `GET /v1/dmesg`). The read policy on files is its neighbour,
//! [`crate::host::inspect::read_allowed`].
//!
//! Two rules, both needed:
//!
//! 1. **Every line, for every role, has the node's known secrets redacted**
//!    ([`KnownSecrets`]): the config's `Secret` values (the join token and
//!    its secret half, the CA and service-account keys) and the private keys
//!    and tokens machined finds in STATE (the PKI it generated, the
//!    kubeconfigs, the kubelet's keys, the API's TLS key). Service output is
//!    redacted as it is captured, so the ring, machined's own log and the
//!    kernel log never hold these values, and again as it is served (a key
//!    learnt after a line was captured). An admin can apply configs but is
//!    still not handed a key over the API: "no role can read private keys".
//! 2. **Readers get the logs only of services whose output cannot carry a
//!    secret machined does not know** ([`audience`]). Redaction only finds
//!    values machined holds; a Kubernetes Secret or a service-account token
//!    the kubelet fetches and logs (`v` up to 10 is a kubelet flag a config
//!    may set: client-go prints response bodies from 8) is not among them.
//!    etcd stores Secrets, the API server serves them, the controller-manager
//!    mints tokens, the kubelet fetches them, containerd is handed pull
//!    secrets; kube-scheduler (RBAC: no Secrets) and Cilium's agent and
//!    operator (no Secrets in their RBAC: no L7 proxy, ingress or
//!    encryption) cannot print one. Every other service, including one added
//!    later and not listed here, is admins' only: deny by default.
//!
//! The kernel log is the same story: machined writes captured service
//! lines (shown on the console with `basalt.log=debug`) under their own
//! syslog facility, [`SERVICE_OUTPUT_FACILITY`], and readers' `dmesg` leaves
//! those records out, so it is not a way around rule 2.
//!
//! This is what Talos does with its reader role (logs, no secrets) minus
//! Talos's trust in every component's output; redaction alone would be a
//! deny-list of what machined happens to know, which a security review
//! would not accept for output machined does not control.

use crate::auth::Role;
use crate::host::Host;
use crate::kubernetes::{cilium, components};
use basalt_api::config::MachineConfig;
use basalt_api::secret::REDACTED;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

/// Who may read a service's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogAudience {
    /// Readers and admins.
    Readers,
    /// Admins only.
    Admins,
}

/// The services readers may follow: their output cannot carry a secret
/// (see the module comment for each).
const READER_LOGS: &[&str] = &[components::SCHEDULER, cilium::AGENT, cilium::OPERATOR];

/// Whose eyes `service`'s log is for. Unknown names are admins'.
pub fn audience(service: &str) -> LogAudience {
    if READER_LOGS.contains(&service) {
        LogAudience::Readers
    } else {
        LogAudience::Admins
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the log of {0} may carry cluster secrets: a reader key may read only the logs of {readers}; this needs an admin",
    readers = READER_LOGS.join(", ")
)]
pub struct AdminsOnly(pub String);

/// Whether `role` may read `service`'s log.
pub fn may_read_log(role: Role, service: &str) -> Result<(), AdminsOnly> {
    match (role, audience(service)) {
        (Role::Admin, _) | (Role::Reader, LogAudience::Readers) => Ok(()),
        (Role::Reader, LogAudience::Admins) => Err(AdminsOnly(service.to_string())),
    }
}

/// The tracing target of captured service output (machined's log shows
/// it at debug).
pub const SERVICE_TARGET: &str = "service";

/// The syslog facility (LOG_LOCAL0) of the kernel log records that carry a
/// service's captured output; machined's own lines are LOG_USER's, the
/// kernel's LOG_KERN's.
pub const SERVICE_OUTPUT_FACILITY: u8 = 16;

/// Whether `role` sees a kernel log record of `facility`.
pub fn may_see_kernel_record(role: Role, facility: u8) -> bool {
    role == Role::Admin || facility != SERVICE_OUTPUT_FACILITY
}

/// Shorter values are not redacted: a PEM block's last line can be a few
/// characters, which say nothing about the key and occur everywhere.
const MIN_SECRET: usize = 8;

/// The secret values this node knows, and their redaction. Only grows:
/// a secret rotated away is still a secret in yesterday's log.
#[derive(Debug, Default)]
pub struct KnownSecrets {
    /// Longest first, so that a token goes whole before its secret half.
    values: RwLock<Arc<Vec<String>>>,
}

impl KnownSecrets {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Add `values` (short ones are ignored).
    pub fn learn(&self, values: impl IntoIterator<Item = String>) {
        let mut guard = self.values.write().unwrap_or_else(|e| e.into_inner());
        let mut all: BTreeSet<String> = guard.iter().cloned().collect();
        let before = all.len();
        all.extend(values.into_iter().filter(|v| v.len() >= MIN_SECRET));
        if all.len() == before {
            return;
        }
        let mut sorted: Vec<String> = all.into_iter().collect();
        sorted.sort_by_key(|v| std::cmp::Reverse(v.len()));
        *guard = Arc::new(sorted);
    }

    fn snapshot(&self) -> Arc<Vec<String>> {
        Arc::clone(&self.values.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// `text` with every known value replaced by `<redacted>`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let values = self.snapshot();
        let mut out = Cow::Borrowed(text);
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), REDACTED));
            }
        }
        out
    }
}

/// The values of a config's `Secret` fields, as they may be printed: whole,
/// the join token's secret half, each PEM key's lines; and the registry
/// credentials it writes into CRI drop-ins (containerd prints its whole CRI
/// config when it starts).
pub fn config_secrets(cfg: &MachineConfig) -> Vec<String> {
    let mut out = cfg.registry_credentials();
    for (path, secret) in cfg.cluster.secrets() {
        let Some(value) = secret.map(|s| s.expose()) else {
            continue;
        };
        out.push(value.to_string());
        // The token's id is public (its Secret's name); the rest is not.
        if let Some((_, half)) = value.split_once('.').filter(|_| path == "cluster.token") {
            out.push(half.to_string());
        }
        out.extend(private_keys(value));
    }
    out
}

/// Each private-key PEM block in `text`: every body line, the body on one
/// line, and the block base64-encoded whole (as kubeconfigs embed it).
pub fn private_keys(text: &str) -> Vec<String> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let Some(end_at) = block.find("-----END ") else {
            break;
        };
        let end_line = block[end_at..]
            .find('\n')
            .map_or(block.len(), |n| end_at + n);
        let header = block.lines().next().unwrap_or_default();
        if header.contains("PRIVATE KEY") {
            let body: Vec<&str> = block[..end_at]
                .lines()
                .skip(1)
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.contains(':'))
                .collect();
            out.extend(body.iter().map(|l| l.to_string()));
            out.push(body.concat());
            let pem = &block[..end_line];
            let engine = base64::engine::general_purpose::STANDARD;
            out.push(engine.encode(pem));
            out.push(engine.encode(format!("{}\n", pem.trim_end())));
        }
        rest = &block[end_line..];
    }
    out
}

/// The secrets in one of machined's files: private keys (PEM, or embedded
/// in a kubeconfig) and kubeconfig tokens.
pub fn file_secrets(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = private_keys(&text);
    if let Ok(k) = crate::kubernetes::kubeconfig::parse(bytes) {
        if let Some(key) = k.client_key_pem {
            out.extend(private_keys(&String::from_utf8_lossy(&key)));
        }
        if let Some(token) = k.token {
            if let Some((_, half)) = token.split_once('.') {
                out.push(half.to_string());
            }
            out.push(token);
        }
    }
    out
}

/// At most this many entries are looked at below a directory (a symlink
/// loop ends here).
const MAX_ENTRIES: usize = 10_000;

/// Every secret in the files below `dir` (a node path), but for the
/// directories named in `skip` (etcd's data: the cluster's own, not keys
/// machined or the kubelet wrote). Unreadable files are passed over: this
/// feeds redaction, which a missing file cannot weaken.
pub fn secrets_below(host: &Host, dir: &str, skip: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_string()];
    let mut seen = 0usize;
    while let Some(d) = todo.pop() {
        let Ok(names) = host.list_dir(&d) else {
            continue;
        };
        for name in names {
            seen += 1;
            if seen > MAX_ENTRIES {
                return out;
            }
            let p = format!("{}/{name}", d.trim_end_matches('/'));
            if skip.contains(&p) {
                continue;
            }
            if host.list_dir(&p).is_ok() {
                todo.push(p);
            } else if let Ok(bytes) = host.read(&p) {
                out.extend(file_secrets(&bytes));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

//! Semantic diff of two configs: compares meaning (defaults applied, order of
//! keys and comments ignored), never prints a secret.

use crate::config::MachineConfig;
use crate::secret::REDACTED;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added {
        path: String,
        value: String,
    },
    Removed {
        path: String,
        value: String,
    },
    Changed {
        path: String,
        old: String,
        new: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added { path, value } => write!(f, "+ {path} = {value}"),
            Change::Removed { path, value } => write!(f, "- {path} = {value}"),
            Change::Changed { path, old, new } => write!(f, "~ {path}: {old} -> {new}"),
        }
    }
}

/// Changes from `old` to `new`, sorted by path.
pub fn diff(old: &MachineConfig, new: &MachineConfig) -> Vec<Change> {
    let (a, b) = (flatten(old), flatten(new));
    let mut out = Vec::new();
    for (path, va) in &a {
        match b.get(path) {
            None => out.push(Change::Removed {
                path: path.clone(),
                value: va.clone(),
            }),
            Some(vb) if vb != va => out.push(Change::Changed {
                path: path.clone(),
                old: va.clone(),
                new: vb.clone(),
            }),
            _ => {}
        }
    }
    for (path, vb) in &b {
        if !a.contains_key(path) {
            out.push(Change::Added {
                path: path.clone(),
                value: vb.clone(),
            });
        }
    }
    // Secrets serialise as `<redacted>`, so compare their real values here.
    for ((path, sa), (_, sb)) in secrets(old).into_iter().zip(secrets(new)) {
        if let (Some(x), Some(y)) = (sa, sb)
            && x != y
        {
            out.push(Change::Changed {
                path: path.to_string(),
                old: REDACTED.into(),
                new: format!("{REDACTED} (changed)"),
            });
        }
    }
    out.sort_by(|x, y| key(x).cmp(key(y)));
    out
}

fn key(c: &Change) -> &str {
    match c {
        Change::Added { path, .. }
        | Change::Removed { path, .. }
        | Change::Changed { path, .. } => path,
    }
}

fn secrets(c: &MachineConfig) -> [(&'static str, Option<&str>); 5] {
    c.cluster
        .secrets()
        .map(|(path, s)| (path, s.map(crate::secret::Secret::expose)))
}

fn flatten(c: &MachineConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // Serialising our own derived types to a TOML value cannot fail; an empty
    // map only hides the diff rather than crashing the caller.
    if let Ok(v) = toml::Value::try_from(c) {
        walk(&v, String::new(), &mut out);
    }
    out
}

fn walk(v: &toml::Value, path: String, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let seg = if k
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
                {
                    k.clone()
                } else {
                    format!("{k:?}")
                };
                let p = if path.is_empty() {
                    seg
                } else {
                    format!("{path}.{seg}")
                };
                walk(v, p, out);
            }
        }
        toml::Value::Array(a) if a.iter().any(|x| x.is_table()) => {
            for (i, v) in a.iter().enumerate() {
                walk(v, format!("{path}[{i}]"), out);
            }
        }
        toml::Value::String(s) if s.contains('\n') => {
            out.insert(path, summarize(s));
        }
        other => {
            out.insert(path, other.to_string());
        }
    }
}

/// Multi-line values (PEM, manifests, file contents) as one line: their first
/// line, line count and a short digest, so a change is visible but brief.
fn summarize(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(s.as_bytes());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let first = s.lines().next().unwrap_or_default();
    format!("{first:?}… ({} lines, sha256 {short}…)", s.lines().count())
}

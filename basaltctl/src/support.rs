//! `basaltctl support`: what a maintainer asks for in a bug report, from one
//! node or several, in one `.tar.zst`, read through the node API only (an
//! operator has no shell): version, status, services, health, resources,
//! network, mounts, processes, metrics, the kernel log, the running config
//! (secrets redacted by the node), each service's log ring, and what the
//! image says about itself.
//!
//! The bundle holds nothing the API does not already give the caller's key,
//! and the API gives no role a secret (machined's `log_policy` and
//! `MachineConfig::redacted`): machined's API tests build a bundle of a node
//! whose config and STATE are full of canaries and grep it for every one.
//!
//! Layout: one directory per node (`<node>/status.json`,
//! `<node>/logs/<service>.log`, `<node>/files/etc/os-release`, …), members
//! in path order. A section the node refuses or fails (a reader key may not
//! read most services' logs) becomes a line of `<node>/errors.txt` instead
//! of failing the bundle.

use crate::client::{ClientError, NodeClient};
use crate::fanout::error_chain as chain;
use basalt_api::route::Route;
use basalt_api::rpc::{FileContent, ServiceStatus};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The JSON sections: member name and endpoint.
fn json_sections() -> Vec<(&'static str, Route)> {
    vec![
        ("status.json", Route::Status),
        ("services.json", Route::Services),
        ("health.json", Route::Health),
        ("resources.json", Route::Resources),
        ("network.json", Route::Network),
        ("mounts.json", Route::Mounts),
        ("processes.json", Route::Processes),
    ]
}

/// The text sections: member name and endpoint.
fn text_sections() -> Vec<(&'static str, Route)> {
    vec![
        ("config.toml", Route::Config),
        ("metrics.txt", Route::Metrics),
        ("dmesg.txt", Route::Dmesg { follow: false }),
    ]
}

/// Files read through `GET /v1/read` into `files/<path>`: what the image
/// records about itself (its os-release, trust roots, config floor and
/// build time, kernel modules), then the kernel and the host's state.
/// All are readable by reader keys.
pub const FILES: &[&str] = &[
    "/etc/os-release",
    basalt_api::image_layout::TRUST_ROOTS,
    basalt_api::image_layout::IMAGE_POLICY,
    basalt_api::image_layout::MODULES_LIST,
    "/proc/version",
    "/proc/cmdline",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/meminfo",
    "/proc/pressure/cpu",
    "/proc/pressure/memory",
    "/proc/pressure/io",
    "/etc/resolv.conf",
    "/etc/hosts",
];

/// One file of a node's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Below the node's directory, e.g. `logs/containerd.log`.
    pub path: String,
    pub data: Vec<u8>,
}

/// What one node gave.
#[derive(Debug, Clone)]
pub struct NodeBundle {
    /// The node as the operator named it.
    pub node: String,
    pub members: Vec<Member>,
    /// `<section>: <why>` for each section the node did not give.
    pub errors: Vec<String>,
    /// Set when the node could not be reached at all (nothing else was
    /// asked).
    pub unreachable: Option<String>,
}

impl NodeBundle {
    /// A node that could not even be asked (e.g. no client for it).
    pub fn unreachable(node: &str, why: String) -> Self {
        Self {
            node: node.to_string(),
            members: Vec::new(),
            errors: Vec::new(),
            unreachable: Some(why),
        }
    }
}

/// How far a collection is: `done` of `total` sections (the total grows
/// once the services are known), now at `section`.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub done: usize,
    pub total: usize,
    pub section: &'a str,
}

/// Whether an error means the node is not there (every further request
/// would fail the same way, each after a timeout).
fn unreachable(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Transport { .. } | ClientError::FingerprintMismatch { .. }
    )
}

/// A file name from a service name: letters, digits, `.`, `_` and `-`;
/// never `.` or `..`.
fn file_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.starts_with('.') || clean.is_empty() {
        format!("_{clean}")
    } else {
        clean
    }
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Ask `client`'s node for every section, reporting each step to
/// `progress`. Never fails: what the node does not give is in the errors.
pub fn collect(
    client: &NodeClient,
    node: &str,
    progress: &mut dyn FnMut(Progress<'_>),
) -> NodeBundle {
    let mut b = NodeBundle {
        node: node.to_string(),
        members: Vec::new(),
        errors: Vec::new(),
        unreachable: None,
    };
    let mut total = 1 + json_sections().len() + text_sections().len() + FILES.len();
    let mut done = 0;
    let mut step = |section: &str, total: usize| {
        progress(Progress {
            done,
            total,
            section,
        });
        done += 1;
    };
    // First the cheapest answer, which says whether the node is there.
    step("version.json", total);
    match client.call::<serde_json::Value>(&Route::Version) {
        Ok(v) => b.add("version.json", pretty(&v)),
        Err(e) if unreachable(&e) => {
            b.unreachable = Some(chain(&e));
            return b;
        }
        Err(e) => b.errors.push(format!("version.json: {}", chain(&e))),
    }
    let mut services = Vec::new();
    for (name, route) in json_sections() {
        step(name, total);
        match client.call::<serde_json::Value>(&route) {
            Ok(v) => {
                if route == Route::Services {
                    match serde_json::from_value::<Vec<ServiceStatus>>(v.clone()) {
                        Ok(list) => services = list.into_iter().map(|s| s.name).collect(),
                        Err(e) => b.errors.push(format!("logs: the service list: {e}")),
                    }
                    total += services.len();
                }
                b.add(name, pretty(&v));
            }
            Err(e) => b.errors.push(format!("{name}: {}", chain(&e))),
        }
    }
    for (name, route) in text_sections() {
        step(name, total);
        b.text(client, name, &route);
    }
    for path in FILES {
        let name = format!("files{path}");
        step(&name, total);
        match client.call::<FileContent>(&Route::Read {
            path: path.to_string(),
        }) {
            Ok(f) => match file_bytes(&f) {
                Ok(data) => b.add(&name, data),
                Err(e) => b.errors.push(format!("{name}: {e}")),
            },
            Err(e) => b.errors.push(format!("{name}: {}", chain(&e))),
        }
    }
    for service in services {
        let name = format!("logs/{}.log", file_name(&service));
        step(&name, total);
        let route = Route::Logs {
            service,
            follow: false,
        };
        b.text(client, &name, &route);
    }
    step("done", total);
    b
}

/// A file's bytes as the node holds them.
fn file_bytes(f: &FileContent) -> Result<Vec<u8>, String> {
    use base64::Engine;
    if f.binary {
        base64::engine::general_purpose::STANDARD
            .decode(&f.content)
            .map_err(|e| format!("the node's base64: {e}"))
    } else {
        Ok(f.content.clone().into_bytes())
    }
}

impl NodeBundle {
    fn add(&mut self, path: &str, data: Vec<u8>) {
        self.members.push(Member {
            path: path.to_string(),
            data,
        });
    }

    /// A text endpoint's whole answer as member `name`.
    fn text(&mut self, client: &NodeClient, name: &str, route: &Route) {
        let body = client
            .open_text(route)
            .map_err(|e| chain(&e))
            .and_then(|r| {
                r.bytes()
                    .map_err(|e| format!("reading the answer: {}", chain(&e)))
            });
        match body {
            Ok(bytes) => self.add(name, bytes.to_vec()),
            Err(e) => self.errors.push(format!("{name}: {e}")),
        }
    }

    /// `errors.txt`: why each missing section is missing.
    fn errors_txt(&self) -> Option<Vec<u8>> {
        let mut lines: Vec<String> = self
            .unreachable
            .iter()
            .map(|e| format!("node not reached (nothing was collected): {e}"))
            .collect();
        lines.extend(self.errors.iter().cloned());
        (!lines.is_empty()).then(|| {
            lines
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                .into_bytes()
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    #[error("{0} exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`write_bundle`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Every file member (directories left out) and its size, in order.
    pub members: Vec<(String, u64)>,
    /// The size of the bundle on disk.
    pub compressed: u64,
}

impl Written {
    /// The size of every member together.
    pub fn unpacked(&self) -> u64 {
        self.members.iter().map(|(_, n)| n).sum()
    }
}

/// The directory name of each node: its name with what a path cannot
/// hold replaced, made unique.
pub fn node_dirs(nodes: &[NodeBundle]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    nodes
        .iter()
        .map(|n| {
            let base: String = n
                .node
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-:[]".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let base = if base.starts_with('.') || base.is_empty() {
                format!("_{base}")
            } else {
                base
            };
            let mut name = base.clone();
            let mut i = 2;
            while !seen.insert(name.clone()) {
                name = format!("{base}-{i}");
                i += 1;
            }
            name
        })
        .collect()
}

/// Every entry of the bundle, in path order: a directory is `None`.
/// `errors` is each node's `errors.txt`, if it has one.
fn entries<'a>(
    nodes: &'a [NodeBundle],
    errors: &'a [Option<Vec<u8>>],
) -> Vec<(String, Option<&'a [u8]>)> {
    let mut files: Vec<(String, Option<&[u8]>)> = Vec::new();
    for ((dir, n), e) in node_dirs(nodes).into_iter().zip(nodes).zip(errors) {
        files.push((format!("{dir}/"), None));
        for m in &n.members {
            files.push((format!("{dir}/{}", m.path), Some(m.data.as_slice())));
        }
        if let Some(e) = e {
            files.push((format!("{dir}/errors.txt"), Some(e.as_slice())));
        }
    }
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for (path, _) in &files {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            at += i + 1;
            dirs.insert(path[..at].to_string());
        }
    }
    files.retain(|(p, d)| d.is_some() || !dirs.contains(p));
    files.extend(dirs.into_iter().map(|d| (d, None)));
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// Write `nodes` to `out` as a zstd-compressed tar; refuses to replace an
/// existing `out` unless `force`. A failed write removes what it began.
pub fn write_bundle(
    out: &Path,
    nodes: &[NodeBundle],
    force: bool,
) -> Result<Written, SupportError> {
    let io = |source| SupportError::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    if force {
        open.create(true).truncate(true);
    } else {
        open.create_new(true);
    }
    let file = open.open(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            SupportError::Exists(out.to_path_buf())
        } else {
            io(e)
        }
    })?;
    let result = write_tar(file, nodes);
    match result {
        Ok(members) => {
            let compressed = std::fs::metadata(out).map_err(io)?.len();
            Ok(Written {
                members,
                compressed,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(out);
            Err(io(e))
        }
    }
}

fn write_tar(file: std::fs::File, nodes: &[NodeBundle]) -> std::io::Result<Vec<(String, u64)>> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let errors: Vec<Option<Vec<u8>>> = nodes.iter().map(NodeBundle::errors_txt).collect();
    let mut tar = tar::Builder::new(zstd::Encoder::new(file, 0)?);
    let mut written = Vec::new();
    for (path, data) in entries(nodes, &errors) {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        match data {
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, &path, data)?;
                written.push((path, data.len() as u64));
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, &path, std::io::empty())?;
            }
        }
    }
    let file = tar.into_inner()?.finish()?;
    file.sync_all()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, members: &[&str], errors: &[&str]) -> NodeBundle {
        NodeBundle {
            node: name.into(),
            members: members
                .iter()
                .map(|p| Member {
                    path: p.to_string(),
                    data: p.as_bytes().to_vec(),
                })
                .collect(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
            unreachable: None,
        }
    }

    #[test]
    fn entries_are_in_path_order_with_their_directories() {
        let nodes = [
            node(
                "b",
                &["status.json", "logs/x.log", "files/etc/os-release"],
                &[],
            ),
            node("a:50443", &["version.json"], &[]),
        ];
        let errors = [None, Some(b"x: 403\n".to_vec())];
        let paths: Vec<String> = entries(&nodes, &errors)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            paths,
            [
                "a:50443/",
                "a:50443/errors.txt",
                "a:50443/version.json",
                "b/",
                "b/files/",
                "b/files/etc/",
                "b/files/etc/os-release",
                "b/logs/",
                "b/logs/x.log",
                "b/status.json",
            ]
        );
    }

    #[test]
    fn names_cannot_leave_their_directory_and_stay_unique() {
        assert_eq!(file_name("../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_name("kube-apiserver"), "kube-apiserver");
        let nodes = [
            node("a/b", &[], &[]),
            node("a?b", &[], &[]),
            node("..", &[], &[]),
        ];
        assert_eq!(node_dirs(&nodes), ["a_b", "a_b-2", "_.."]);
    }

    #[test]
    fn an_existing_bundle_is_kept_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b.tar.zst");
        std::fs::write(&out, "mine").unwrap();
        let e = write_bundle(&out, &[node("a", &["x"], &[])], false).unwrap_err();
        assert!(matches!(e, SupportError::Exists(_)), "{e}");
        assert_eq!(std::fs::read(&out).unwrap(), b"mine");
        let w = write_bundle(&out, &[node("a", &["x"], &["y.json: 403: no"])], true).unwrap();
        let names: Vec<&str> = w.members.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["a/errors.txt", "a/x"]);
        assert_eq!(w.compressed, std::fs::metadata(&out).unwrap().len());
    }
}

//! Read-only views of the machine for the API: mounts, processes, network,
//! files, metrics. All reads, no side effects.

use super::Host;
use basalt_api::rpc::{FileContent, KernelRoute, LinkReport, Mount, NetworkReport, Process};
use std::fs;
use std::path::{Component, Path, PathBuf};

pub const READ_LIMIT: u64 = 1024 * 1024;

pub fn mounts() -> std::io::Result<Vec<Mount>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            // id parent major:minor root target options [optional…] - fstype source superopts
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fstype = post.next()?.to_string();
            let source = post.next()?.to_string();
            Some(Mount {
                source,
                target: unescape(pre.get(4)?),
                fstype,
                options: pre.get(5)?.to_string(),
            })
        })
        .collect())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

pub fn processes() -> Vec<Process> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<Process> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(process)
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

fn process(pid: u32) -> Option<Process> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: split at the last ')'.
    let (head, tail) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut fields = tail.split_whitespace();
    let state = fields.next()?.to_string();
    let ppid = fields.next()?.parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command = if cmdline.is_empty() {
        format!("[{comm}]")
    } else {
        String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ")
    };
    Some(Process {
        pid,
        ppid,
        state,
        command,
        rss_bytes: rss_bytes(pid).unwrap_or(0),
    })
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn network() -> NetworkReport {
    let mut links: Vec<LinkReport> = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    let attr = |a: &str| {
                        fs::read_to_string(e.path().join(a))
                            .unwrap_or_default()
                            .trim()
                            .to_string()
                    };
                    Some(LinkReport {
                        mac: attr("address"),
                        mtu: attr("mtu").parse().unwrap_or(0),
                        up: attr("operstate") == "up"
                            || attr("flags")
                                .trim_start_matches("0x")
                                .parse::<u32>()
                                .is_ok_and(|f| f & 1 == 1),
                        addresses: Vec::new(),
                        name,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(link) = links.iter_mut().find(|l| l.name == a.interface_name) else {
                continue;
            };
            let addr = a.address.as_ref();
            let prefix = a.netmask.as_ref().map(prefix_len).unwrap_or(0);
            if let Some(v4) = addr.and_then(|s| s.as_sockaddr_in()) {
                link.addresses.push(format!("{}/{prefix}", v4.ip()));
            } else if let Some(v6) = addr.and_then(|s| s.as_sockaddr_in6()) {
                link.addresses.push(format!("{}/{prefix}", v6.ip()));
            }
        }
    }
    links.sort_by(|a, b| a.name.cmp(&b.name));
    NetworkReport {
        links,
        routes: routes_v4(),
        controller: None,
    }
}

fn prefix_len(mask: &nix::sys::socket::SockaddrStorage) -> u32 {
    if let Some(v4) = mask.as_sockaddr_in() {
        u32::from(v4.ip()).count_ones()
    } else if let Some(v6) = mask.as_sockaddr_in6() {
        u128::from(v6.ip()).count_ones()
    } else {
        0
    }
}

/// `/proc/net/route`: little-endian hex addresses.
fn routes_v4() -> Vec<KernelRoute> {
    let text = fs::read_to_string("/proc/net/route").unwrap_or_default();
    let ip = |h: &str| {
        u32::from_str_radix(h, 16)
            .ok()
            .map(|v| std::net::Ipv4Addr::from(v.swap_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (iface, dest, gw, metric, mask) = (
                f.first()?,
                ip(f.get(1)?)?,
                ip(f.get(2)?)?,
                f.get(6)?,
                ip(f.get(7)?)?,
            );
            Some(KernelRoute {
                destination: format!("{dest}/{}", u32::from(mask).count_ones()),
                gateway: (!gw.is_unspecified()).then(|| gw.to_string()),
                interface: iface.to_string(),
                metric: metric.parse().unwrap_or(0),
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("path must be absolute and must not contain `..`")]
    BadPath,
    #[error("{0} holds node secrets and cannot be read through the API")]
    Secret(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is {size} bytes; the read limit is {READ_LIMIT}")]
    TooLarge { path: String, size: u64 },
    #[error("{0} is not a regular file")]
    NotFile(String),
}

impl ReadError {
    pub fn status(&self) -> u16 {
        match self {
            ReadError::BadPath | ReadError::TooLarge { .. } | ReadError::NotFile(_) => 400,
            ReadError::Secret(_) => 403,
            ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 404,
            ReadError::Io { .. } => 500,
        }
    }
}

pub fn read_file(host: &Host, state_dir: &Path, path: &str) -> Result<FileContent, ReadError> {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(ReadError::BadPath);
    }
    let real = host.path(p);
    let canonical = fs::canonicalize(&real).map_err(|source| ReadError::Io {
        path: path.to_string(),
        source,
    })?;
    let state = fs::canonicalize(state_dir).unwrap_or_else(|_| PathBuf::from(state_dir));
    if canonical.starts_with(&state) {
        return Err(ReadError::Secret(path.to_string()));
    }
    let meta = fs::metadata(&canonical).map_err(|source| ReadError::Io {
        path: path.to_string(),
        source,
    })?;
    if !meta.is_file() {
        return Err(ReadError::NotFile(path.to_string()));
    }
    if meta.len() > READ_LIMIT {
        return Err(ReadError::TooLarge {
            path: path.to_string(),
            size: meta.len(),
        });
    }
    let data = fs::read(&canonical).map_err(|source| ReadError::Io {
        path: path.to_string(),
        source,
    })?;
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let (content, binary) = match String::from_utf8(data) {
        Ok(s) => (s, false),
        Err(e) => (
            base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
            true,
        ),
    };
    Ok(FileContent {
        path: path.to_string(),
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
        content,
        binary,
    })
}

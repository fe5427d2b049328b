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
    #[error(
        "{0}: a reader key may read only /proc, /sys, /etc and machined's generated files under /run/basalt; this needs an admin"
    )]
    NotForReaders(String),
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
            ReadError::Secret(_) | ReadError::NotForReaders(_) => 403,
            ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 404,
            ReadError::Io { .. } => 500,
        }
    }
}

/// Who is reading: admins may read every file but the secrets, readers
/// only the allow-list ([`READER_ROOTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Admin,
    Reader,
}

/// Where node secrets live outside STATE (which is always one of them, RAM
/// or disk: the config with the join token and CA keys, the API's TLS key,
/// the Kubernetes PKI and service-account key, the kubeconfigs, the
/// kubelet's bootstrap token and certificates, etcd's data):
/// the kubelet's root (pods' Secret and service-account token volumes),
/// container filesystems, the image's baked config (join token, CA keys),
/// and containerd's CRI drop-ins, where registry credentials go (the
/// config's `machine.files` may write them; `/etc/cri/conf.d` is the
/// image's symlink to the writable directory under /run/basalt).
pub const SECRET_PATHS: &[&str] = &[
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/run/containerd",
    basalt_api::image_layout::BAKED_CONFIG,
    "/etc/cri/conf.d",
    "/run/basalt/etc/cri/conf.d",
];

/// Kernel files that are secrets or a way around a policy: memory (as an
/// ELF core, and a crashed kernel's), and the kernel log, which holds the
/// services' captured output that readers' `dmesg` leaves out (and whose
/// reads consume it and wait for more).
const KERNEL_SECRETS: &[&str] = &["/proc/kcore", "/proc/vmcore", "/proc/kmsg"];

/// What a reader key may read (checked on the resolved path).
pub const READER_ROOTS: &[&str] = &[
    "/proc",
    "/sys",
    "/etc",
    "/run/basalt",
    "/usr/lib/os-release",
];

/// Entries under `/proc/<pid>/` (and `/proc/<pid>/task/<tid>/`) that expose
/// a process's secrets or open a door to other files: its environment,
/// memory, open files, and the magic links to its root, cwd and binary.
const PROC_SECRETS: &[&str] = &["environ", "mem", "fd", "map_files", "root", "cwd", "exe"];

/// Whether a node path names a secret as spelled: STATE, [`SECRET_PATHS`],
/// a process's secret-bearing `/proc` entries, [`KERNEL_SECRETS`].
pub fn is_secret(p: &Path, state: &Path) -> bool {
    p.starts_with(state)
        || SECRET_PATHS.iter().any(|s| p.starts_with(s))
        || proc_secret(p)
        || KERNEL_SECRETS.iter().any(|k| p == Path::new(k))
}

/// The policy on node paths, spelled as requested and as resolved (symlinks
/// and `/proc` magic links followed). `state` is the STATE directory.
pub fn read_allowed(
    who: Reader,
    requested: &Path,
    resolved: &Path,
    state: &Path,
) -> Result<(), ReadError> {
    if is_secret(requested, state) || is_secret(resolved, state) {
        return Err(ReadError::Secret(requested.display().to_string()));
    }
    if who == Reader::Reader && !READER_ROOTS.iter().any(|r| resolved.starts_with(r)) {
        return Err(ReadError::NotForReaders(requested.display().to_string()));
    }
    Ok(())
}

/// `/proc/<pid>/<entry>` or `/proc/<pid>/task/<tid>/<entry>` with a
/// secret-bearing entry (`<pid>` includes `self` and `thread-self`).
fn proc_secret(p: &Path) -> bool {
    let parts: Vec<&str> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    let entry = match parts.as_slice() {
        ["proc", _, "task", _, entry, ..] => entry,
        ["proc", _, entry, ..] => entry,
        _ => return false,
    };
    PROC_SECRETS.contains(entry)
}

/// One line of `/proc/self/mountinfo`: which filesystem (`dev`), which of
/// its directories (`root`) is mounted where (`target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub dev: String,
    pub root: PathBuf,
    pub target: PathBuf,
}

pub fn mount_points(mountinfo: &str) -> Vec<MountPoint> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some(MountPoint {
                dev: f.get(2)?.to_string(),
                root: PathBuf::from(unescape(f.get(3)?)),
                target: PathBuf::from(unescape(f.get(4)?)),
            })
        })
        .collect()
}

/// A resolved path as (filesystem, path inside it): the same file has the
/// same location however it is mounted, bind mounts included. The mount
/// that covers `path` is the deepest, and of equals the latest.
pub fn fs_location(mounts: &[MountPoint], path: &Path) -> Option<(String, PathBuf)> {
    let m = mounts
        .iter()
        .filter(|m| path.starts_with(&m.target))
        .max_by_key(|m| m.target.components().count())?;
    let m = mounts
        .iter()
        .rev()
        .find(|x| x.target == m.target)
        .unwrap_or(m);
    let inner = path.strip_prefix(&m.target).ok()?;
    Some((m.dev.clone(), m.root.join(inner)))
}

/// Whether `file` lies, on its filesystem, inside one of `secrets` (all
/// resolved host paths): catches a secret reached through another mount of
/// its filesystem.
pub fn inside_on_disk(mounts: &[MountPoint], file: &Path, secrets: &[PathBuf]) -> bool {
    let Some((dev, inner)) = fs_location(mounts, file) else {
        return false;
    };
    secrets.iter().any(|s| {
        fs_location(mounts, s)
            .is_some_and(|(sdev, sinner)| sdev == dev && inner.starts_with(sinner))
    })
}

pub fn read_file(
    host: &Host,
    state_dir: &Path,
    who: Reader,
    path: &str,
) -> Result<FileContent, ReadError> {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(ReadError::BadPath);
    }
    let root = fs::canonicalize(host.root()).unwrap_or_else(|_| host.root().to_path_buf());
    let state = fs::canonicalize(state_dir).unwrap_or_else(|_| PathBuf::from(state_dir));
    // The policy speaks node paths: in dev mode, strip the dev root.
    let node_path = |real: &Path| {
        real.strip_prefix(&root)
            .map(|rel| Path::new("/").join(rel))
            .unwrap_or_else(|_| real.to_path_buf())
    };
    // As spelled, before anything is resolved (a secret need not exist to
    // be refused as one).
    if is_secret(p, &node_path(&state)) {
        return Err(ReadError::Secret(path.to_string()));
    }
    let real = host.path(p);
    let canonical = fs::canonicalize(&real).map_err(|source| ReadError::Io {
        path: path.to_string(),
        source,
    })?;
    read_allowed(who, p, &node_path(&canonical), &node_path(&state))?;
    // The same bytes through another mount (a bind mount of STATE or of a
    // directory in it, or of the kubelet's): refused by where they are on
    // their filesystem. Without a mount table nothing can be read safely.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|source| ReadError::Io {
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    let mounts = mount_points(&mountinfo);
    let secrets: Vec<PathBuf> = std::iter::once(state.clone())
        .chain(
            SECRET_PATHS
                .iter()
                .filter_map(|s| fs::canonicalize(host.path(s)).ok()),
        )
        .collect();
    if inside_on_disk(&mounts, &canonical, &secrets) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "/var/lib/basalt/state";

    fn allowed(who: Reader, requested: &str, resolved: &str) -> Result<(), String> {
        read_allowed(
            who,
            Path::new(requested),
            Path::new(resolved),
            Path::new(STATE),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn secrets_are_refused_to_every_role_however_spelled() {
        for (requested, resolved) in [
            (
                "/var/lib/basalt/state/kubernetes/ca.key",
                "/var/lib/basalt/state/kubernetes/ca.key",
            ),
            // A symlink elsewhere that resolves into a secret.
            (
                "/etc/innocent",
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
            ),
            ("/etc/basalt/config.toml", "/etc/basalt/config.toml"),
            ("/proc/1/environ", "/proc/1/environ"),
            ("/proc/self/task/7/environ", "/proc/7/task/7/environ"),
            ("/proc/self/mem", "/proc/42/mem"),
            // Magic links: refused as spelled, whatever they resolve to.
            ("/proc/1/fd/3", "/memfd:x (deleted)"),
            ("/proc/1/root/etc/hostname", "/etc/hostname"),
            ("/proc/1/cwd/x", "/x"),
            ("/proc/kcore", "/proc/kcore"),
            ("/proc/kmsg", "/proc/kmsg"),
            // Registry credentials in a CRI drop-in, through the image's
            // symlink and at its target.
            (
                "/etc/cri/conf.d/20-auth.toml",
                "/run/basalt/etc/cri/conf.d/20-auth.toml",
            ),
            (
                "/run/basalt/etc/cri/conf.d/20-auth.toml",
                "/run/basalt/etc/cri/conf.d/20-auth.toml",
            ),
        ] {
            for who in [Reader::Admin, Reader::Reader] {
                let e = allowed(who, requested, resolved).unwrap_err();
                assert!(e.contains("holds node secrets"), "{requested}: {e}");
            }
        }
    }

    #[test]
    fn ram_state_under_the_readers_run_basalt_is_refused() {
        let ram = Path::new("/run/basalt/state");
        let key = Path::new("/run/basalt/state/kubernetes/pki/sa.key");
        for who in [Reader::Admin, Reader::Reader] {
            let e = read_allowed(who, key, key, ram).unwrap_err();
            assert!(matches!(e, ReadError::Secret(_)), "{e}");
        }
        let resolv = Path::new("/run/basalt/resolv.conf");
        read_allowed(Reader::Reader, resolv, resolv, ram).unwrap();
    }

    #[test]
    fn readers_get_the_allow_list_admins_the_rest() {
        for p in [
            "/proc/1/status",
            "/sys/class/net/eth0/address",
            "/etc/os-release",
        ] {
            allowed(Reader::Reader, p, p).unwrap();
        }
        allowed(
            Reader::Reader,
            "/etc/resolv.conf",
            "/run/basalt/resolv.conf",
        )
        .unwrap();
        let e = allowed(Reader::Reader, "/var/log/x", "/var/log/x").unwrap_err();
        assert!(e.contains("needs an admin"), "{e}");
        // A symlink under /etc out of the allow-list is judged where it leads.
        let e = allowed(Reader::Reader, "/etc/x", "/var/lib/cilium/state").unwrap_err();
        assert!(e.contains("needs an admin"), "{e}");
        allowed(Reader::Admin, "/var/log/x", "/var/log/x").unwrap();
    }

    #[test]
    fn a_file_is_located_on_its_filesystem_through_bind_mounts() {
        // 8:1 mounted at /; its /state directory also bind-mounted at
        // /var/lib/basalt/state and at /mnt/copy; tmpfs over /run.
        let mounts = mount_points(
            "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
             30 22 8:1 /state /var/lib/basalt/state rw - ext4 /dev/sda1 rw\n\
             31 22 0:25 / /run rw - tmpfs tmpfs rw\n\
             32 22 8:1 /state/kubernetes /mnt/copy rw - ext4 /dev/sda1 rw\n\
             33 22 8:1 /srv/with\\040space /mnt/sp rw - ext4 /dev/sda1 rw\n",
        );
        assert_eq!(
            fs_location(&mounts, Path::new("/mnt/copy/ca.key")),
            Some(("8:1".into(), PathBuf::from("/state/kubernetes/ca.key")))
        );
        assert_eq!(
            fs_location(&mounts, Path::new("/mnt/sp/f")),
            Some(("8:1".into(), PathBuf::from("/srv/with space/f")))
        );
        let secrets = [PathBuf::from("/var/lib/basalt/state")];
        for (file, secret) in [
            ("/mnt/copy/ca.key", true),
            ("/state/kubernetes/ca.key", true),
            ("/var/lib/basalt/state/config", true),
            ("/etc/hostname", false),
            ("/run/state/x", false),
        ] {
            assert_eq!(
                inside_on_disk(&mounts, Path::new(file), &secrets),
                secret,
                "{file}"
            );
        }
    }
}

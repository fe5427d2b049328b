//! Make the machine match a config: hostname, sysctls, files, DNS, hosts.
//! Preconditions are checked by [`check`] before anything is persisted, so
//! an apply that would fail halfway is refused up front instead.

use crate::host::{Host, HostError};
use basalt_api::config::{FileOp, MachineConfig};

pub const RESOLV_CONF: &str = "/run/basalt/resolv.conf";
pub const HOSTS: &str = "/run/basalt/hosts";

/// One human-readable step per change between `old` and `new`.
pub fn plan(old: Option<&MachineConfig>, new: &MachineConfig, host: &Host) -> (Vec<String>, bool) {
    let mut steps = Vec::new();
    let mut reboot = false;
    if let Some(old) = old {
        if old.machine.role != new.machine.role {
            steps.push(format!(
                "role {:?} -> {:?} (reboot)",
                old.machine.role, new.machine.role
            ));
            reboot = true;
        }
        if old.machine.install != new.machine.install {
            steps.push("install settings changed (reboot)".into());
            reboot = true;
        }
    }
    if let Some(h) = &new.machine.hostname {
        let cur = host.hostname();
        if &cur != h {
            steps.push(format!("set hostname {h} (was {cur})"));
        }
    }
    for (k, v) in &new.machine.sysctls {
        if host.read_sysctl(k).as_deref() != Some(v.as_str()) {
            steps.push(format!("sysctl {k} = {v}"));
        }
    }
    for f in &new.machine.files {
        let current = host.read(&f.path).ok();
        let change = match f.op {
            FileOp::Append
                if current
                    .as_deref()
                    .is_some_and(|c| c.ends_with(f.content.as_bytes())) =>
            {
                None
            }
            _ if current.as_deref() == Some(f.content.as_bytes()) => None,
            op => Some(format!("{op:?}").to_lowercase()),
        };
        if let Some(op) = change {
            steps.push(format!(
                "{op} {} (mode {:o}, {} bytes)",
                f.path,
                f.mode,
                f.content.len()
            ));
        }
    }
    let resolv = resolv_conf(new);
    if host.read(RESOLV_CONF).ok().as_deref() != Some(resolv.as_bytes()) {
        steps.push(format!(
            "resolv.conf: nameservers [{}]",
            new.machine
                .network
                .nameservers
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for m in &new.machine.kernel.modules {
        if !old.is_some_and(|o| o.machine.kernel.modules.contains(m)) {
            steps.push(format!("require kernel module {m}"));
        }
    }
    if steps.is_empty() {
        steps.push("no changes".into());
    }
    (steps, reboot)
}

#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    #[error(
        "machine.files: {path} exists and op is \"create\"; use op = \"overwrite\" to replace it"
    )]
    Exists { path: String },
    #[error(
        "machine.kernel.modules: {name} is not loaded and this image does not provide it; add it to the image profile's [kernel] modules"
    )]
    Module { name: String },
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Refuse configs whose files cannot be written as asked.
pub fn check(new: &MachineConfig, host: &Host) -> Result<(), ConvergeError> {
    // Modules ship in the initramfs and are loaded at boot from the image's
    // list; a config can only ask for one the image provides.
    if host.mode() == crate::host::HostMode::Node {
        for m in &new.machine.kernel.modules {
            let name = m.replace('-', "_");
            if !host.exists(&format!("/sys/module/{name}")) {
                return Err(ConvergeError::Module { name: m.clone() });
            }
        }
    }
    for f in &new.machine.files {
        if f.op == FileOp::Create
            && let Ok(existing) = host.read(&f.path)
            && existing != f.content.as_bytes()
        {
            return Err(ConvergeError::Exists {
                path: f.path.clone(),
            });
        }
    }
    Ok(())
}

pub fn converge(cfg: &MachineConfig, host: &Host) -> Result<(), ConvergeError> {
    let m = &cfg.machine;
    if let Some(h) = &m.hostname {
        host.set_hostname(h)?;
    }
    for (k, v) in &m.sysctls {
        host.write_sysctl(k, v)?;
    }
    for f in &m.files {
        match f.op {
            FileOp::Append => {
                let done = host
                    .read(&f.path)
                    .is_ok_and(|c| c.ends_with(f.content.as_bytes()));
                if !done {
                    host.append(&f.path, f.content.as_bytes(), f.mode)?;
                }
            }
            FileOp::Create | FileOp::Overwrite => {
                host.write_atomic(&f.path, f.content.as_bytes(), f.mode)?
            }
        }
    }
    host.write_atomic(RESOLV_CONF, resolv_conf(cfg).as_bytes(), 0o644)?;
    let name = m.hostname.clone().unwrap_or_else(|| host.hostname());
    host.write_atomic(HOSTS, hosts(&name).as_bytes(), 0o644)?;
    Ok(())
}

pub fn resolv_conf(cfg: &MachineConfig) -> String {
    let net = &cfg.machine.network;
    let mut out = String::from("# generated by machined from the machine config\n");
    for ns in &net.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !net.search_domains.is_empty() {
        out.push_str(&format!("search {}\n", net.search_domains.join(" ")));
    }
    out
}

pub fn hosts(hostname: &str) -> String {
    format!("# generated by machined\n127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {hostname}\n")
}

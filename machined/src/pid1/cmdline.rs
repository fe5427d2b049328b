//! `basalt.*` kernel arguments.

use std::collections::BTreeMap;

/// `basalt.root=`: a root image file in the initramfs (the kernel+initramfs
/// and ISO boots), or `PARTUUID=<guid>`, the disk slot a UKI names (see
/// `basalt_api::disk_layout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootArg {
    Image(String),
    Slot(basalt_api::gpt::Guid),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArgs {
    /// Where the root comes from (`basalt.root=`).
    pub root: RootArg,
    /// Label of the STATE partition/filesystem (`basalt.state=`).
    pub state_label: String,
    /// `basalt.bless_timeout=<seconds>`: how long a trial boot has to
    /// become healthy (see `crate::slots`).
    pub bless_timeout: std::time::Duration,
    /// `basalt.log=debug|info|warn`.
    pub log: String,
    /// Arguments we did not recognise, reported once at boot.
    pub unknown: Vec<String>,
}

impl Default for BootArgs {
    fn default() -> Self {
        Self {
            root: RootArg::Image(basalt_api::image_layout::ROOT_IMAGE.into()),
            state_label: "STATE".into(),
            log: "info".into(),
            bless_timeout: crate::slots::BLESS_TIMEOUT,
            unknown: Vec::new(),
        }
    }
}

/// Parse `/proc/cmdline`; non-`basalt.` words belong to the kernel and are ignored.
pub fn parse(cmdline: &str) -> BootArgs {
    let mut args = BootArgs::default();
    let kv: BTreeMap<&str, &str> = cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("basalt."))
        .map(|w| w.split_once('=').unwrap_or((w, "")))
        .collect();
    for (k, v) in kv {
        match k {
            "root" => match v.strip_prefix("PARTUUID=") {
                Some(g) => match g.parse() {
                    Ok(guid) => args.root = RootArg::Slot(guid),
                    Err(e) => args.unknown.push(format!("basalt.root: {e}")),
                },
                None => args.root = RootArg::Image(v.to_string()),
            },
            "state" => args.state_label = v.to_string(),
            "log" => args.log = v.to_string(),
            "bless_timeout" => match v.parse() {
                Ok(s) => args.bless_timeout = std::time::Duration::from_secs(s),
                Err(_) => args
                    .unknown
                    .push(format!("basalt.bless_timeout={v} (not seconds)")),
            },
            _ => args.unknown.push(format!("basalt.{k}")),
        }
    }
    args
}

#[cfg(test)]
mod tests;

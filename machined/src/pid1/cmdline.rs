//! `basalt.*` kernel arguments.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArgs {
    /// Root image inside the initramfs (`basalt.root=`).
    pub root_image: String,
    /// Label of the STATE partition/filesystem (`basalt.state=`).
    pub state_label: String,
    /// `basalt.log=debug|info|warn`.
    pub log: String,
    /// Arguments we did not recognise, reported once at boot.
    pub unknown: Vec<String>,
}

impl Default for BootArgs {
    fn default() -> Self {
        Self {
            root_image: basalt_api::image_layout::ROOT_IMAGE.into(),
            state_label: "STATE".into(),
            log: "info".into(),
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
            "root" => args.root_image = v.to_string(),
            "state" => args.state_label = v.to_string(),
            "log" => args.log = v.to_string(),
            _ => args.unknown.push(format!("basalt.{k}")),
        }
    }
    args
}

#[cfg(test)]
mod tests;

//! The running config as it may be shown to an API caller (`GET
//! /v1/config`) and put into a support bundle: everything an operator or a
//! maintainer needs to see what the node was told, nothing that is or may
//! be a secret.
//!
//! Three kinds of values go:
//! - every [`Secret`] field ([`Cluster::secrets`] lists them);
//! - free-form payloads the node cannot read for secrets: the contents of
//!   `machine.files` (registry credentials in CRI drop-ins, but just as well
//!   an application's token under `/var`) and of `cluster.inline_manifests`
//!   (a Kubernetes `Secret` is a manifest like any other). Their paths,
//!   modes and names stay; the files themselves are readable through
//!   `GET /v1/read` where its policy allows;
//! - the password of a URL (`cluster.endpoint`), and any private-key PEM
//!   block in any string, whatever field a later schema puts it in.

use super::{Cluster, MachineConfig};
use crate::secret::{REDACTED, Secret};

impl MachineConfig {
    /// This config with every secret or possibly secret value replaced by
    /// [`REDACTED`] (see the module comment). Parses back as a config
    /// (not a valid one: the token is no token).
    pub fn redacted(&self) -> MachineConfig {
        let mut out = self.clone();
        let hide = |s: &mut Secret| *s = Secret::new(REDACTED);
        let c: &mut Cluster = &mut out.cluster;
        hide(&mut c.token);
        for key in [
            &mut c.ca_key,
            &mut c.etcd_ca_key,
            &mut c.front_proxy_ca_key,
            &mut c.service_account_key,
        ] {
            key.iter_mut().for_each(hide);
        }
        c.endpoint = without_password(&c.endpoint);
        for m in &mut c.inline_manifests {
            m.contents = REDACTED.into();
        }
        for f in &mut out.machine.files {
            f.content = REDACTED.into();
        }
        out
    }

    /// [`MachineConfig::redacted`] as TOML, with any private-key PEM block
    /// left in a string replaced as well.
    pub fn redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let mut value = toml::Value::try_from(self.redacted())?;
        scrub_private_keys(&mut value);
        toml::to_string(&value)
    }
}

/// `url` with its password, if it has one, replaced.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.password().is_some() => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let at = rest.find('@').unwrap_or(0);
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:{REDACTED}{}", &rest[at..])
        }
        _ => url.to_string(),
    }
}

fn scrub_private_keys(v: &mut toml::Value) {
    match v {
        toml::Value::String(s) => {
            if let Some(clean) = without_private_keys(s) {
                *s = clean;
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(scrub_private_keys),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| scrub_private_keys(v)),
        _ => {}
    }
}

/// `text` with each `-----BEGIN … PRIVATE KEY-----` block (to its END line,
/// or to the end of the text if it has none) replaced; None if it has none.
fn without_private_keys(text: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN ";
    if !text.contains("PRIVATE KEY") {
        return None;
    }
    let mut out = String::new();
    let mut rest = text;
    let mut found = false;
    while let Some(start) = rest.find(BEGIN) {
        let header_end = rest[start..].find('\n').map_or(rest.len(), |n| start + n);
        if !rest[start..header_end].contains("PRIVATE KEY") {
            out.push_str(&rest[..header_end]);
            rest = &rest[header_end..];
            continue;
        }
        found = true;
        out.push_str(&rest[..start]);
        out.push_str(REDACTED);
        let end = match rest[start..].find("-----END ") {
            Some(e) => {
                let e = start + e;
                // Past the END line's closing dashes.
                rest[e + 9..]
                    .find("-----")
                    .map_or(rest.len(), |n| e + 9 + n + 5)
            }
            None => rest.len(),
        };
        rest = &rest[end..];
    }
    out.push_str(rest);
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBkN0wSBKX1dJZ1c7bqTu3KsBfhkWyqxnP4V5Rq6vR9y\n-----END PRIVATE KEY-----\n";

    #[test]
    fn private_key_blocks_go_and_certificates_stay() {
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let text = format!("a\n{cert}{KEY}b\n");
        assert_eq!(
            without_private_keys(&text).unwrap(),
            format!("a\n{cert}{REDACTED}\nb\n")
        );
        assert_eq!(without_private_keys(cert), None);
        // Cut short: everything from BEGIN goes.
        assert_eq!(
            without_private_keys("x -----BEGIN EC PRIVATE KEY-----\nAAAA").unwrap(),
            format!("x {REDACTED}")
        );
    }

    #[test]
    fn a_url_keeps_everything_but_its_password() {
        assert_eq!(
            without_password("https://ops:hunter2@10.0.0.10:6443/x"),
            format!("https://ops:{REDACTED}@10.0.0.10:6443/x")
        );
        assert_eq!(
            without_password("https://10.0.0.10:6443"),
            "https://10.0.0.10:6443"
        );
    }

    #[test]
    fn every_secret_the_config_lists_is_redacted() {
        let doc = include_str!("../../../configs/controlplane.toml");
        let cfg = MachineConfig::parse(doc.as_bytes()).unwrap();
        assert!(cfg.cluster.secrets().iter().all(|(_, s)| s.is_some()));
        let r = cfg.redacted();
        for (path, s) in r.cluster.secrets() {
            assert_eq!(s.map(Secret::expose), Some(REDACTED), "{path}");
        }
        let text = cfg.redacted_toml().unwrap();
        for (path, s) in cfg.cluster.secrets() {
            let value = s.unwrap().expose();
            let line = value.lines().nth(1).unwrap_or(value);
            assert!(!text.contains(line), "{path} in {text}");
        }
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let back: MachineConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}

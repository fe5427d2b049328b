//! Kubeconfig files for the components and machined itself.
//!
//! They are written as JSON: every JSON document is YAML, client-go loads
//! them unchanged, and machined needs no YAML dependency. Credentials are
//! embedded (`*-data`, base64 PEM) so a kubeconfig is one self-contained
//! file that is written atomically, never half-updated next to its cert.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// How the kubeconfig's user authenticates.
pub enum Credential<'a> {
    /// A client certificate and its key (PEM).
    ClientCert { cert_pem: &'a str, key_pem: &'a str },
    /// A bearer token (the kubelet's bootstrap token).
    Token(&'a str),
}

/// What a kubeconfig is for: one cluster, one user, one context.
pub struct Kubeconfig<'a> {
    pub cluster_name: &'a str,
    pub server: &'a str,
    /// The CA bundle the client trusts for `server` (PEM).
    pub ca_pem: &'a str,
    pub user: &'a str,
    pub credential: Credential<'a>,
}

impl Kubeconfig<'_> {
    /// The file's bytes: deterministic for the same inputs, so an unchanged
    /// kubeconfig compares equal byte for byte and is never rewritten.
    pub fn render(&self) -> Result<String, serde_json::Error> {
        let user = match self.credential {
            Credential::ClientCert { cert_pem, key_pem } => json!({
                "client-certificate-data": STANDARD.encode(cert_pem),
                "client-key-data": STANDARD.encode(key_pem),
            }),
            Credential::Token(token) => json!({ "token": token }),
        };
        let context = format!("{}@{}", self.user, self.cluster_name);
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": self.cluster_name,
                "cluster": {
                    "server": self.server,
                    "certificate-authority-data": STANDARD.encode(self.ca_pem),
                },
            }],
            "users": [{ "name": self.user, "user": user }],
            "contexts": [{
                "name": context,
                "context": { "cluster": self.cluster_name, "user": self.user },
            }],
            "current-context": context,
            "preferences": {},
        });
        let mut text = serde_json::to_string_pretty(&doc)?;
        text.push('\n');
        Ok(text)
    }
}

/// The parts of a kubeconfig machined checks before deciding to rewrite it,
/// read through `current-context` as client-go does.
#[derive(Debug, Default)]
pub struct Parsed {
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    pub token: Option<String>,
}

/// Read back a kubeconfig machined wrote. The error says what is missing
/// or malformed; callers reissue rather than fail on it.
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let current = doc
        .get("current-context")
        .and_then(Value::as_str)
        .ok_or("no current-context")?;
    let context = named(&doc, "contexts", current, "context")?;
    let cluster_name = context
        .get("cluster")
        .and_then(Value::as_str)
        .ok_or("context has no cluster")?;
    let user_name = context
        .get("user")
        .and_then(Value::as_str)
        .ok_or("context has no user")?;
    let cluster = named(&doc, "clusters", cluster_name, "cluster")?;
    let user = named(&doc, "users", user_name, "user")?;
    let data = |v: &Value, key: &str| -> Result<Option<Vec<u8>>, String> {
        match v.get(key).and_then(Value::as_str) {
            None => Ok(None),
            Some(b64) => STANDARD
                .decode(b64)
                .map(Some)
                .map_err(|e| format!("{key} is not base64: {e}")),
        }
    };
    Ok(Parsed {
        server: cluster
            .get("server")
            .and_then(Value::as_str)
            .ok_or("cluster has no server")?
            .to_string(),
        ca_pem: data(cluster, "certificate-authority-data")?
            .ok_or("cluster has no certificate-authority-data")?,
        client_cert_pem: data(user, "client-certificate-data")?,
        client_key_pem: data(user, "client-key-data")?,
        token: user
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// `doc[list][i][field]` for the entry whose `name` is `name`.
fn named<'a>(doc: &'a Value, list: &str, name: &str, field: &str) -> Result<&'a Value, String> {
    doc.get(list)
        .and_then(Value::as_array)
        .and_then(|entries| {
            entries
                .iter()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        })
        .and_then(|e| e.get(field))
        .ok_or_else(|| format!("no {list} entry named `{name}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(credential: Credential<'_>) -> String {
        Kubeconfig {
            cluster_name: "demo",
            server: "https://127.0.0.1:6443",
            ca_pem: "CA PEM\n",
            user: "system:kube-scheduler",
            credential,
        }
        .render()
        .unwrap()
    }

    #[test]
    fn what_is_rendered_reads_back() {
        let text = sample(Credential::ClientCert {
            cert_pem: "CERT",
            key_pem: "KEY",
        });
        assert_eq!(
            text,
            sample(Credential::ClientCert {
                cert_pem: "CERT",
                key_pem: "KEY",
            }),
            "deterministic"
        );
        let p = parse(text.as_bytes()).unwrap();
        assert_eq!(p.server, "https://127.0.0.1:6443");
        assert_eq!(p.ca_pem, b"CA PEM\n");
        assert_eq!(p.client_cert_pem.as_deref(), Some(&b"CERT"[..]));
        assert_eq!(p.client_key_pem.as_deref(), Some(&b"KEY"[..]));
        assert_eq!(p.token, None);

        let p = parse(sample(Credential::Token("abcdef.0123456789abcdef")).as_bytes()).unwrap();
        assert_eq!(p.token.as_deref(), Some("abcdef.0123456789abcdef"));
        assert_eq!(p.client_cert_pem, None);
    }

    #[test]
    fn entries_are_found_through_the_current_context() {
        let doc = json!({
            "current-context": "b",
            "contexts": [
                {"name": "a", "context": {"cluster": "one", "user": "u"}},
                {"name": "b", "context": {"cluster": "two", "user": "u"}},
            ],
            "clusters": [
                {"name": "one", "cluster": {"server": "https://one", "certificate-authority-data": "QQ=="}},
                {"name": "two", "cluster": {"server": "https://two", "certificate-authority-data": "Qg=="}},
            ],
            "users": [{"name": "u", "user": {"token": "t"}}],
        });
        let p = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(p.server, "https://two");
        assert_eq!(p.ca_pem, b"B");
    }

    #[test]
    fn broken_kubeconfigs_say_what_is_wrong() {
        assert!(parse(b"{").unwrap_err().starts_with("not JSON"));
        assert_eq!(parse(b"{}").unwrap_err(), "no current-context");
        let doc = json!({
            "current-context": "x",
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": "https://c", "certificate-authority-data": "!!"}}],
            "users": [{"name": "u", "user": {}}],
        });
        let err = parse(doc.to_string().as_bytes()).unwrap_err();
        assert!(
            err.contains("certificate-authority-data is not base64"),
            "{err}"
        );
        let doc = json!({
            "current-context": "x",
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [],
            "users": [],
        });
        assert_eq!(
            parse(doc.to_string().as_bytes()).unwrap_err(),
            "no clusters entry named `c`"
        );
    }
}

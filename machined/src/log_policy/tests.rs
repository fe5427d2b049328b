use super::*;
use crate::kubernetes::kubeconfig::{Credential, Kubeconfig};

/// The published example key of configs/controlplane.toml (`ca_key`).
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg+h4XBgs38rf+ZrTt
owLC7ZqW85nDnQf4dVR37+ihvC6hRANCAASn3/x1N5sSbm9lHprqndeDLmDLPkAO
Hv/e0ctz0EeDoNQ4q1PIqenWsKVDtJh4g7vHUNh/ukvuD1xzE/qQLela
-----END PRIVATE KEY-----
";
const CERT_LINE: &str = "MIIBbjCCARSgAwIBAgIUF071KgBFORBZhvgMVpkqD2LOLr8wCgYIKoZIzj0EAwIw";

#[test]
fn readers_get_only_the_logs_that_cannot_carry_secrets() {
    for s in ["kube-scheduler", "cilium-agent", "cilium-operator"] {
        may_read_log(Role::Reader, s).unwrap();
    }
    for s in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kubelet",
        "containerd",
        "a-service-added-later",
    ] {
        let e = may_read_log(Role::Reader, s).unwrap_err().to_string();
        assert!(e.contains("needs an admin"), "{s}: {e}");
        may_read_log(Role::Admin, s).unwrap();
    }
}

#[test]
fn readers_do_not_see_service_output_in_the_kernel_log() {
    assert!(!may_see_kernel_record(
        Role::Reader,
        SERVICE_OUTPUT_FACILITY
    ));
    assert!(may_see_kernel_record(Role::Admin, SERVICE_OUTPUT_FACILITY));
    for kernel_or_machined in [0, 1] {
        assert!(may_see_kernel_record(Role::Reader, kernel_or_machined));
    }
}

#[test]
fn known_values_are_redacted_however_they_are_printed() {
    let known = KnownSecrets::new();
    known.learn(private_keys(KEY));
    known.learn(["abcdef.0123456789abcdef".into(), "0123456789abcdef".into()]);
    // Too short to mean anything: ignored.
    known.learn(["abc".into()]);
    let line = |s: &str| known.redact(s).into_owned();
    assert_eq!(
        line("token abcdef.0123456789abcdef and its half 0123456789abcdef"),
        "token <redacted> and its half <redacted>"
    );
    assert_eq!(line("abc is not secret"), "abc is not secret");
    // The PEM as printed, JSON-escaped on one line, and base64-encoded.
    let escaped = serde_json::to_string(KEY).unwrap();
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(KEY)
    };
    for printed in [KEY.to_string(), escaped, b64] {
        let out = line(&printed);
        for body in KEY.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!out.contains(body), "{body} in {out}");
        }
        assert!(out.contains(REDACTED), "{out}");
    }
    // A certificate is not a secret.
    assert_eq!(line(CERT_LINE), CERT_LINE);
}

#[test]
fn kubeconfig_keys_and_tokens_are_found() {
    let with_key = Kubeconfig {
        cluster_name: "c",
        server: "https://10.0.0.1:6443",
        ca_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        user: "u",
        credential: Credential::ClientCert {
            cert_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            key_pem: KEY,
        },
    }
    .render()
    .unwrap();
    let found = file_secrets(with_key.as_bytes());
    let known = KnownSecrets::new();
    known.learn(found);
    let out = known.redact(&with_key);
    assert!(!out.contains("client-key-data\": \"LS0t"), "{out}");
    assert!(out.contains("client-key-data\": \"<redacted>\""), "{out}");
    let with_token = Kubeconfig {
        credential: Credential::Token("abcdef.0123456789abcdef"),
        cluster_name: "c",
        server: "https://10.0.0.1:6443",
        ca_pem: "",
        user: "u",
    }
    .render()
    .unwrap();
    let found = file_secrets(with_token.as_bytes());
    assert!(found.contains(&"abcdef.0123456789abcdef".to_string()));
    assert!(found.contains(&"0123456789abcdef".to_string()));
}

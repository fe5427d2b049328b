//! Signed API requests. Every call to a node carries an SSHSIG signature
//! (namespace `basalt-api`) over the method, path, body digest and a nonce the
//! node issued. Freshness comes from the single-use nonce, not from clocks: a
//! new node may not know the time.

use crate::sshkey::PrivateKey;
use crate::sshsig::{self, SigError, SshSig};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

pub const API_NAMESPACE: &str = "basalt-api";
pub const NONCE_HEADER: &str = "x-basalt-nonce";
pub const SIGNATURE_HEADER: &str = "x-basalt-signature";
pub const API_PORT: u16 = 50443;

/// The exact bytes a client signs for one request.
pub fn canonical(method: &str, path_and_query: &str, body: &[u8], nonce: &str) -> Vec<u8> {
    canonical_digest(method, path_and_query, &Sha256::digest(body).into(), nonce)
}

/// [`canonical`] from the body's SHA-256, for bodies hashed as they stream
/// (an upgrade bundle is not held in memory).
pub fn canonical_digest(
    method: &str,
    path_and_query: &str,
    body_sha256: &[u8; 32],
    nonce: &str,
) -> Vec<u8> {
    let digest: String = body_sha256.iter().map(|b| format!("{b:02x}")).collect();
    format!("basalt-request-v1\n{method}\n{path_and_query}\n{digest}\n{nonce}\n").into_bytes()
}

/// The header value: the SSHSIG armor's base64 body on one line.
pub fn sign(
    key: &PrivateKey,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    nonce: &str,
) -> String {
    sign_digest(
        key,
        method,
        path_and_query,
        &Sha256::digest(body).into(),
        nonce,
    )
}

/// [`sign`] from the body's SHA-256 (a body streamed from a file).
pub fn sign_digest(
    key: &PrivateKey,
    method: &str,
    path_and_query: &str,
    body_sha256: &[u8; 32],
    nonce: &str,
) -> String {
    let armored = sshsig::sign(
        key,
        API_NAMESPACE,
        &canonical_digest(method, path_and_query, body_sha256, nonce),
    );
    armored
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestAuthError {
    #[error("signature header is not base64")]
    Encoding,
    #[error("{0}")]
    Signature(#[from] SigError),
    #[error("signature namespace is `{0}`, expected `{API_NAMESPACE}`")]
    Namespace(String),
}

/// Parse a signature header and check it over this request; returns the
/// signature (and so the key) for the caller's authorisation decision.
pub fn verify(
    header: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    nonce: &str,
) -> Result<SshSig, RequestAuthError> {
    verify_digest(
        header,
        method,
        path_and_query,
        &Sha256::digest(body).into(),
        nonce,
    )
}

/// The signature header parsed, its namespace checked, not yet verified:
/// who claims to sign (a node looks at the key before it accepts a large
/// body, and verifies once the body's digest is known).
pub fn parse_header(header: &str) -> Result<SshSig, RequestAuthError> {
    let blob = STANDARD
        .decode(header.trim())
        .map_err(|_| RequestAuthError::Encoding)?;
    let armored = format!(
        "-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n",
        STANDARD.encode(blob)
    );
    let mut sigs = sshsig::parse_blocks(&armored)?;
    let sig = sigs.pop().ok_or(SigError::NoBlocks)?;
    if sig.namespace != API_NAMESPACE {
        return Err(RequestAuthError::Namespace(sig.namespace));
    }
    Ok(sig)
}

/// [`verify`] from the body's SHA-256.
pub fn verify_digest(
    header: &str,
    method: &str,
    path_and_query: &str,
    body_sha256: &[u8; 32],
    nonce: &str,
) -> Result<SshSig, RequestAuthError> {
    let sig = parse_header(header)?;
    sig.verify(&canonical_digest(
        method,
        path_and_query,
        body_sha256,
        nonce,
    ))?;
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_bind_every_field() {
        let key = PrivateKey::from_seed(&[4; 32], "");
        let h = sign(&key, "POST", "/v1/apply", b"{}", "n1");
        let sig = verify(&h, "POST", "/v1/apply", b"{}", "n1").unwrap();
        assert!(sig.key.same_key(&key.public()));
        for (m, p, b, n) in [
            ("GET", "/v1/apply", &b"{}"[..], "n1"),
            ("POST", "/v1/reboot", b"{}", "n1"),
            ("POST", "/v1/apply", b"{ }", "n1"),
            ("POST", "/v1/apply", b"{}", "n2"),
        ] {
            assert!(verify(&h, m, p, b, n).is_err(), "{m} {p} {n}");
        }
        let other_ns = sshsig::sign(&key, "basalt-config", &canonical("GET", "/", b"", "n"));
        let header: String = other_ns
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(matches!(
            verify(&header, "GET", "/", b"", "n"),
            Err(RequestAuthError::Namespace(_))
        ));
    }
}

//! Fresh cluster secrets for `config gen`: the bootstrap token and the
//! control plane's certificate authorities and service-account key.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use std::time::{SystemTime, UNIX_EPOCH};

/// `[a-z0-9]{6}.[a-z0-9]{16}`, as kubeadm expects.
pub fn bootstrap_token() -> Result<String> {
    Ok(format!("{}.{}", random_lower(6)?, random_lower(16)?))
}

fn random_lower(n: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("system random source: {e}"))?;
        // Reject bytes ≥ 252 so every symbol is equally likely (252 = 7 × 36).
        out.extend(
            b.iter()
                .filter(|x| **x < 252)
                .map(|x| ALPHABET[(*x % 36) as usize] as char)
                .take(n - out.len()),
        );
    }
    Ok(out)
}

pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed ECDSA P-256 CA valid for ten years from the start of this year.
pub fn ca(common_name: &str) -> Result<Ca> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let cert = params
        .self_signed(&key)
        .with_context(|| format!("self-signing CA {common_name}"))?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The key kube-apiserver signs service-account tokens with (ECDSA P-256, PKCS#8 PEM).
pub fn service_account_key() -> Result<String> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .context("generating service-account key")?
        .serialize_pem())
}

fn current_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1970 + (secs / 31_556_952) as i32
}

//! The node's TLS identity: a self-signed certificate made on first boot,
//! kept in STATE, and pinned by operators through its SHA-256 fingerprint.

use crate::host::durable::{self, DurableFs};
use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the node certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a PEM {what}")]
    Pem { path: String, what: &'static str },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

pub struct Identity {
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

/// `SHA256:<base64>` of the certificate's DER, the form `basaltctl` pins.
pub use basalt_api::tls_pin::fingerprint;

impl Identity {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// Load `dir/cert.pem` + `dir/key.pem` from `fs` (STATE's), or create
    /// them on first boot. Each file is replaced whole and synced, the key
    /// first: a power cut while creating leaves no certificate, so the
    /// next boot makes a new pair rather than serving a half.
    pub fn load_or_create(
        fs: &dyn DurableFs,
        dir: &Path,
        hostname: &str,
    ) -> Result<Self, TlsError> {
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        if fs.exists(&cert_path) && fs.exists(&key_path) {
            return Ok(Self {
                cert_der: read_pem(fs, &cert_path, "CERTIFICATE")?,
                key_der: read_pem(fs, &key_path, "PRIVATE KEY")?,
            });
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params =
            rcgen::CertificateParams::new(vec![hostname.to_string(), "localhost".to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("basalt node {hostname}"));
        // Pinned by fingerprint, so validity dates carry no trust; make them
        // wide so a node with a wrong clock still serves.
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2200, 1, 1);
        let cert = params.self_signed(&key)?;
        for (path, pem, mode) in [
            (&key_path, key.serialize_pem(), 0o600),
            (&cert_path, cert.pem(), 0o644),
        ] {
            durable::write_atomic(fs, path, pem.as_bytes(), mode).map_err(|source| {
                TlsError::Write {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        }
        Ok(Self {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }

    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )?;
        Ok(Arc::new(config))
    }
}

fn read_pem(fs: &dyn DurableFs, path: &Path, tag: &'static str) -> Result<Vec<u8>, TlsError> {
    let bytes = fs.read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let ok = text.contains(&format!("BEGIN {tag}"));
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()
        .filter(|_| ok)
        .ok_or(TlsError::Pem {
            path: path.display().to_string(),
            what: tag,
        })
}

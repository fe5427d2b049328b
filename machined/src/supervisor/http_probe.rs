//! The HTTP readiness probe of the Kubernetes components: `GET <path>`,
//! ready on a 200. Over TLS (`/readyz`, `/healthz` of the control plane) the
//! server is verified against a CA file, never skipped, optionally with a
//! client certificate; plain HTTP only for loopback endpoints such as the
//! kubelet's healthz.
//!
//! The PEM files are read at every probe: machined reissues certificates
//! while services run, and a probe must use what is on disk now.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Responses are small (`ok`, a readiness report); read at most this much.
const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// `host:port` to connect to.
    pub address: String,
    /// Request path, e.g. `/readyz`.
    pub path: String,
    /// TLS and how to verify the server; `None` is plain HTTP.
    pub tls: Option<TlsVerify>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsVerify {
    /// The name the server certificate must carry (an IP or DNS name).
    pub server_name: String,
    /// PEM CA bundle the server certificate must chain to.
    pub ca: PathBuf,
    /// PEM client certificate and key, when the server wants one.
    pub client: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("reading {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("`{0}` is not a valid server name")]
    ServerName(String),
    #[error("{address}: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("{address}: no answer within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("{address}{path}: HTTP {status}: {body}")]
    Status {
        address: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{address}: not an HTTP response")]
    Malformed { address: String },
}

impl HttpProbe {
    /// One probe: Ok with the body on HTTP 200.
    pub async fn check(&self, within: Duration) -> Result<String, ProbeError> {
        match tokio::time::timeout(within, self.request()).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout {
                address: self.address.clone(),
                timeout: within,
            }),
        }
    }

    fn tls_config(tls: &TlsVerify) -> Result<rustls::ClientConfig, ProbeError> {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|source| ProbeError::File {
                path: p.clone(),
                source,
            })
        };
        let pem_err = |p: &PathBuf, e: &dyn std::fmt::Display| ProbeError::Pem {
            path: p.clone(),
            message: e.to_string(),
        };
        let mut roots = rustls::RootCertStore::empty();
        let ca = read(&tls.ca)?;
        for cert in CertificateDer::pem_slice_iter(&ca) {
            let cert = cert.map_err(|e| pem_err(&tls.ca, &e))?;
            roots.add(cert).map_err(|e| pem_err(&tls.ca, &e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        Ok(match &tls.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read(cert)?;
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain)
                    .collect::<Result<_, _>>()
                    .map_err(|e| pem_err(cert, &e))?;
                let key_pem = read(key)?;
                let key_der =
                    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| pem_err(key, &e))?;
                builder.with_client_auth_cert(chain, key_der)?
            }
        })
    }

    async fn request(&self) -> Result<String, ProbeError> {
        let io = |source| ProbeError::Io {
            address: self.address.clone(),
            source,
        };
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(io)?;
        let Some(tls) = &self.tls else {
            return self.exchange(tcp, "127.0.0.1").await;
        };
        let config = Self::tls_config(tls)?;
        let name = ServerName::try_from(tls.server_name.clone())
            .map_err(|_| ProbeError::ServerName(tls.server_name.clone()))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(io)?;
        self.exchange(stream, &tls.server_name).await
    }

    async fn exchange(
        &self,
        mut stream: impl AsyncRead + AsyncWrite + Unpin,
        host: &str,
    ) -> Result<String, ProbeError> {
        let io = |source| ProbeError::Io {
            address: self.address.clone(),
            source,
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: machined\r\nConnection: close\r\n\r\n",
            self.path
        );
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut response = Vec::new();
        let mut limited = (&mut stream).take(MAX_RESPONSE as u64);
        // A server may close without close_notify after `Connection: close`;
        // what arrived before that still counts.
        if let Err(e) = limited.read_to_end(&mut response).await
            && response.is_empty()
        {
            return Err(io(e));
        }
        self.parse(&response)
    }

    fn parse(&self, response: &[u8]) -> Result<String, ProbeError> {
        let text = String::from_utf8_lossy(response);
        let malformed = || ProbeError::Malformed {
            address: self.address.clone(),
        };
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(malformed)?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(malformed)?;
        let body = body.trim().to_string();
        if status == 200 {
            Ok(body)
        } else {
            Err(ProbeError::Status {
                address: self.address.clone(),
                path: self.path.clone(),
                status,
                body: body.chars().take(300).collect(),
            })
        }
    }
}

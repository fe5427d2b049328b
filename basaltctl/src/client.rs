//! The node API client: TLS pinned to the node's certificate fingerprint,
//! every request signed with the operator's ed25519 key over a fresh nonce.

use basalt_api::request::{self, NONCE_HEADER, SIGNATURE_HEADER};
use basalt_api::route::{Method, Route};
use basalt_api::rpc::{EmptyRequest, ErrorResponse, NonceResponse};
use basalt_api::sshkey::PrivateKey;
use basalt_api::tls_pin::fingerprint;
use basalt_api::upgrade::Sha256Digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "node {node} presented certificate {got}, but {expected} is pinned: if the node was reinstalled, remove its line from known_nodes; otherwise this may be an attack"
    )]
    FingerprintMismatch {
        node: String,
        expected: String,
        got: String,
    },
    #[error("connecting to {node}: {source}")]
    Transport {
        node: String,
        source: reqwest::Error,
    },
    #[error("{status}: {message}")]
    Api { status: u16, message: String },
    #[error("decoding the node's answer: {0}")]
    Decode(String),
    #[error("reading {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Accepts exactly one certificate (by fingerprint), or on first use any
/// certificate, remembering what it saw so the caller can pin it.
#[derive(Debug)]
struct PinVerifier {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(got.clone());
        }
        match &self.expected {
            Some(want) if *want != got => Err(rustls::Error::General(format!(
                "certificate fingerprint {got} is not the pinned {want}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub struct NodeClient {
    base: String,
    node: String,
    http: reqwest::blocking::Client,
    key: Arc<PrivateKey>,
    verifier: Arc<PinVerifier>,
}

impl NodeClient {
    /// `node` is `host:port`; `pin` the expected certificate fingerprint, or
    /// None to trust on first use (read [`NodeClient::seen_fingerprint`] after).
    pub fn new(node: &str, pin: Option<String>, key: Arc<PrivateKey>) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinVerifier {
            // Fingerprints are often pasted from a serial console (trailing \r).
            expected: pin.map(|p| p.trim().to_string()),
            seen: Mutex::new(None),
            provider: Arc::clone(&provider),
        });
        let transport = |source| ClientError::Transport {
            node: node.to_string(),
            source,
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClientError::Decode(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let http = reqwest::blocking::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(transport)?;
        Ok(Self {
            base: format!("https://{node}"),
            node: node.to_string(),
            http,
            key,
            verifier,
        })
    }

    /// The certificate fingerprint seen on the last connection.
    pub fn seen_fingerprint(&self) -> Option<String> {
        self.verifier.seen.lock().ok().and_then(|s| s.clone())
    }

    fn transport(&self, source: reqwest::Error) -> ClientError {
        if let (Some(want), Some(got)) = (&self.verifier.expected, self.seen_fingerprint())
            && *want != got
        {
            return ClientError::FingerprintMismatch {
                node: self.node.clone(),
                expected: want.clone(),
                got,
            };
        }
        ClientError::Transport {
            node: self.node.clone(),
            source,
        }
    }

    pub fn nonce(&self) -> Result<String, ClientError> {
        let r = self
            .http
            .get(format!("{}{}", self.base, Route::Nonce.path_and_query()))
            .send()
            .map_err(|e| self.transport(e))?;
        Ok(decode::<NonceResponse>(r)?.nonce)
    }

    /// Send a signed request and return the raw response (for streaming).
    pub fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let nonce = self.nonce()?;
        let sig = request::sign(&self.key, method, path_and_query, &body, &nonce);
        self.send_raw(method, path_and_query, body, Some(&nonce), Some(&sig))
    }

    /// Send with explicit auth headers (tests use this to replay or forge).
    pub fn send_raw(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
        nonce: Option<&str>,
        signature: Option<&str>,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let mut req = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(n) = nonce {
            req = req.header(NONCE_HEADER, n);
        }
        if let Some(s) = signature {
            req = req.header(SIGNATURE_HEADER, s);
        }
        let r = req.send().map_err(|e| self.transport(e))?;
        if r.status().is_success() {
            Ok(r)
        } else {
            let status = r.status().as_u16();
            let text = r.text().unwrap_or_default();
            let message = serde_json::from_str::<ErrorResponse>(&text)
                .map(|e| e.error)
                .unwrap_or(text);
            Err(ClientError::Api { status, message })
        }
    }

    /// POST a file as the body, streamed from disk (an upgrade bundle may
    /// be gigabytes): read once for its sha256, which the request signature
    /// covers, then again as it is sent. `timeout` bounds the whole upload.
    pub fn post_file<T: DeserializeOwned>(
        &self,
        route: &Route,
        file: &std::path::Path,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let io = |source| ClientError::File {
            path: file.display().to_string(),
            source,
        };
        let f = std::fs::File::open(file).map_err(io)?;
        let (digest, len) = Sha256Digest::of_reader(std::io::BufReader::new(f)).map_err(io)?;
        let digest = digest.0;
        let f = std::fs::File::open(file).map_err(io)?;
        let path_and_query = route.path_and_query();
        let nonce = self.nonce()?;
        let sig = request::sign_digest(&self.key, "POST", &path_and_query, &digest, &nonce);
        let r = self
            .http
            .post(format!("{}{path_and_query}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
            .header(NONCE_HEADER, nonce)
            .header(SIGNATURE_HEADER, sig)
            .timeout(timeout)
            .body(reqwest::blocking::Body::sized(f, len))
            .send()
            .map_err(|e| self.transport(e))?;
        decode(r)
    }

    /// Call a JSON endpoint that takes no body (a GET, or a POST such as
    /// reboot that sends [`EmptyRequest`]).
    pub fn call<T: DeserializeOwned>(&self, route: &Route) -> Result<T, ClientError> {
        match route.method() {
            Method::Get => self.get(&route.path_and_query()),
            Method::Post => self.post(&route.path_and_query(), &EmptyRequest {}),
        }
    }

    /// Call a POST endpoint with its typed body.
    pub fn call_with<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        route: &Route,
        body: &B,
    ) -> Result<T, ClientError> {
        self.post(&route.path_and_query(), body)
    }

    /// Start a text endpoint (logs, dmesg, metrics) and return the response
    /// to stream from.
    pub fn open_text(&self, route: &Route) -> Result<reqwest::blocking::Response, ClientError> {
        self.send(route.method().as_str(), &route.path_and_query(), Vec::new())
    }

    pub fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, ClientError> {
        decode(self.send("GET", path_and_query, Vec::new())?)
    }

    pub fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        decode(self.send("POST", path, body)?)
    }
}

fn decode<T: DeserializeOwned>(r: reqwest::blocking::Response) -> Result<T, ClientError> {
    let status = r.status().as_u16();
    let text = r.text().map_err(|e| ClientError::Decode(e.to_string()))?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_str::<ErrorResponse>(&text)
            .map(|e| e.error)
            .unwrap_or(text);
        return Err(ClientError::Api { status, message });
    }
    serde_json::from_str(&text).map_err(|e| ClientError::Decode(format!("{e}: {text}")))
}

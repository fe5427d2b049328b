//! Who is calling: every request is signed by an admin or reader key over a
//! nonce this node issued. Nonces are single-use and expire on the monotonic
//! clock, so replay protection never depends on wall-clock time.

use basalt_api::request::{self, RequestAuthError};
use basalt_api::trust::TrustPolicy;
use base64::Engine;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const NONCE_TTL: Duration = Duration::from_secs(60);
const MAX_OUTSTANDING: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Reader,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "request is not signed: send {} and {} headers (get a nonce from GET /v1/nonce)",
        request::NONCE_HEADER,
        request::SIGNATURE_HEADER
    )]
    Unsigned,
    #[error("nonce is unknown or already used; get a fresh one from GET /v1/nonce")]
    UnknownNonce,
    #[error("nonce expired; get a fresh one from GET /v1/nonce")]
    ExpiredNonce,
    #[error("bad request signature: {0}")]
    BadSignature(#[from] RequestAuthError),
    #[error("key {0} is not trusted by this node")]
    UnknownKey(String),
    #[error("key {0} is a reader key; this call needs an admin")]
    Forbidden(String),
}

impl AuthError {
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Forbidden(_) => 403,
            _ => 401,
        }
    }
}

pub struct Nonces {
    ttl: Duration,
    inner: Mutex<NonceTable>,
}

impl Default for Nonces {
    fn default() -> Self {
        Self::new(NONCE_TTL)
    }
}

#[derive(Default)]
struct NonceTable {
    issued: HashMap<String, Instant>,
    order: VecDeque<String>,
}

impl Nonces {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::default(),
        }
    }

    pub fn issue(&self) -> Result<String, getrandom::Error> {
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw)?;
        let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while t.order.len() >= MAX_OUTSTANDING {
            if let Some(old) = t.order.pop_front() {
                t.issued.remove(&old);
            }
        }
        t.issued.insert(nonce.clone(), Instant::now());
        t.order.push_back(nonce.clone());
        Ok(nonce)
    }

    /// Use up a nonce. Each one authenticates exactly one request.
    pub fn consume(&self, nonce: &str) -> Result<(), AuthError> {
        self.consume_at(nonce, Instant::now())
    }

    fn consume_at(&self, nonce: &str, now: Instant) -> Result<(), AuthError> {
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let issued = t.issued.remove(nonce).ok_or(AuthError::UnknownNonce)?;
        t.order.retain(|n| n != nonce);
        if now.duration_since(issued) > self.ttl {
            return Err(AuthError::ExpiredNonce);
        }
        Ok(())
    }

    #[cfg(test)]
    fn backdate(&self, nonce: &str, by: Duration) {
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = t.issued.get_mut(nonce) {
            *at -= by;
        }
    }
}

pub struct Caller {
    pub role: Role,
    pub fingerprint: String,
}

/// Check a request's signature and nonce against the node's trust policy.
/// The signature is checked before the nonce is consumed, so garbage cannot
/// burn other clients' nonces.
pub fn authenticate(
    policy: &TrustPolicy,
    nonces: &Nonces,
    nonce: Option<&str>,
    signature: Option<&str>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<Caller, AuthError> {
    let (Some(nonce), Some(signature)) = (nonce, signature) else {
        return Err(AuthError::Unsigned);
    };
    let sig = request::verify(signature, method, path_and_query, body, nonce)?;
    let fingerprint = sig.key.fingerprint();
    let role = if policy.is_admin(&sig.key) {
        Role::Admin
    } else if policy.is_reader(&sig.key) {
        Role::Reader
    } else {
        return Err(AuthError::UnknownKey(fingerprint));
    };
    nonces.consume(nonce)?;
    Ok(Caller { role, fingerprint })
}

#[cfg(test)]
mod tests;

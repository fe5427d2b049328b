//! Who is calling: every request is signed by an admin or reader key over a
//! nonce this node issued. Nonces are single-use and expire on the monotonic
//! clock, so replay protection never depends on wall-clock time.

use basalt_api::request::{self, RequestAuthError};
use basalt_api::trust::TrustRoots;
use base64::Engine;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const NONCE_TTL: Duration = Duration::from_secs(60);
/// How many verified requests can be remembered at once (each for one nonce
/// lifetime). Only callers with a trusted key can add to it.
const MAX_REMEMBERED: usize = 65_536;

/// Nonce layout: issued-at (ms since this process's epoch, big endian),
/// 16 random bytes, then an HMAC-SHA256 tag over both, cut to 16 bytes.
const STAMP_LEN: usize = 8;
const RANDOM_LEN: usize = 16;
const TAG_LEN: usize = 16;
const NONCE_LEN: usize = STAMP_LEN + RANDOM_LEN + TAG_LEN;

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
    #[error("too many signed requests in the last minute; retry shortly")]
    Busy,
    #[error("bad request signature: {0}")]
    BadSignature(#[from] RequestAuthError),
    #[error("key {0} is not trusted by this node")]
    UnknownKey(String),
    #[error("key {0} is a reader key; this call needs an admin")]
    Forbidden(String),
}

impl AuthError {
    /// A fixed name for the refusal (a metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Unsigned => "unsigned",
            AuthError::UnknownNonce => "unknown_nonce",
            AuthError::ExpiredNonce => "expired_nonce",
            AuthError::Busy => "busy",
            AuthError::BadSignature(_) => "bad_signature",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::Forbidden(_) => "forbidden",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            AuthError::Forbidden(_) => 403,
            AuthError::Busy => 503,
            _ => 401,
        }
    }
}

/// Single-use nonces that cost the node nothing to hand out.
///
/// A nonce is self-authenticating: it carries when it was issued (on the
/// monotonic clock, so wall-clock time plays no part) and a MAC under a key
/// that never leaves this process. Issuing one stores nothing, so a stranger
/// asking for nonces as fast as it can cannot push anybody else's out of a
/// table. Only a nonce that came with a *verified* signature of a trusted key
/// is remembered, until it would have expired anyway, to refuse its replay.
pub struct Nonces {
    ttl: Duration,
    epoch: Instant,
    key: ring::hmac::Key,
    used: Mutex<HashMap<[u8; RANDOM_LEN], Instant>>,
}

impl Nonces {
    pub fn new(ttl: Duration) -> Result<Self, ring::error::Unspecified> {
        let rng = ring::rand::SystemRandom::new();
        Ok(Self {
            ttl,
            epoch: Instant::now(),
            key: ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)?,
            used: Mutex::default(),
        })
    }

    pub fn issue(&self) -> Result<String, getrandom::Error> {
        self.issue_at(Instant::now())
    }

    fn issue_at(&self, now: Instant) -> Result<String, getrandom::Error> {
        let mut raw = [0u8; NONCE_LEN];
        let stamp = u64::try_from(now.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        raw[..STAMP_LEN].copy_from_slice(&stamp.to_be_bytes());
        getrandom::fill(&mut raw[STAMP_LEN..STAMP_LEN + RANDOM_LEN])?;
        let tag = ring::hmac::sign(&self.key, &raw[..STAMP_LEN + RANDOM_LEN]);
        raw[STAMP_LEN + RANDOM_LEN..].copy_from_slice(&tag.as_ref()[..TAG_LEN]);
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
    }

    /// Use up a nonce. Each one authenticates exactly one request. Call only
    /// once the request's signature has been verified against a trusted key.
    pub fn consume(&self, nonce: &str) -> Result<(), AuthError> {
        self.consume_at(nonce, Instant::now())
    }

    /// Whether a nonce is one of ours and unexpired, without using it up
    /// (a replay is still caught when it is consumed).
    pub fn check(&self, nonce: &str) -> Result<(), AuthError> {
        let (issued, _) = self.open(nonce)?;
        if Instant::now() > issued + self.ttl {
            return Err(AuthError::ExpiredNonce);
        }
        Ok(())
    }

    fn consume_at(&self, nonce: &str, now: Instant) -> Result<(), AuthError> {
        let (issued, random) = self.open(nonce)?;
        let expires = issued + self.ttl;
        if now > expires {
            return Err(AuthError::ExpiredNonce);
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.contains_key(&random) {
            return Err(AuthError::UnknownNonce);
        }
        if used.len() >= MAX_REMEMBERED {
            used.retain(|_, until| *until >= now);
            if used.len() >= MAX_REMEMBERED {
                return Err(AuthError::Busy);
            }
        }
        used.insert(random, expires);
        Ok(())
    }

    /// Check the tag and return when the nonce was issued and its random part.
    fn open(&self, nonce: &str) -> Result<(Instant, [u8; RANDOM_LEN]), AuthError> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| AuthError::UnknownNonce)?;
        if raw.len() != NONCE_LEN {
            return Err(AuthError::UnknownNonce);
        }
        let (signed, tag) = raw.split_at(STAMP_LEN + RANDOM_LEN);
        // Compare the truncated tag in constant time.
        let want = ring::hmac::sign(&self.key, signed);
        if !constant_time_eq(&want.as_ref()[..TAG_LEN], tag) {
            return Err(AuthError::UnknownNonce);
        }
        let mut stamp = [0u8; STAMP_LEN];
        stamp.copy_from_slice(&signed[..STAMP_LEN]);
        let issued = self
            .epoch
            .checked_add(Duration::from_millis(u64::from_be_bytes(stamp)))
            .ok_or(AuthError::UnknownNonce)?;
        let mut random = [0u8; RANDOM_LEN];
        random.copy_from_slice(&signed[STAMP_LEN..]);
        Ok((issued, random))
    }

    /// How many verified requests are remembered now (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub struct Caller {
    pub role: Role,
    pub fingerprint: String,
}

/// Check a request's signature and nonce against the node's trust policy.
/// The signature is checked before the nonce is consumed, so garbage cannot
/// burn other clients' nonces.
pub fn authenticate(
    policy: &TrustRoots,
    nonces: &Nonces,
    nonce: Option<&str>,
    signature: Option<&str>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<Caller, AuthError> {
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(body).into();
    authenticate_digest(
        policy,
        nonces,
        nonce,
        signature,
        method,
        path_and_query,
        &digest,
    )
}

/// Before a large body is accepted: the request carries one of our unexpired
/// nonces and a signature header by an admin key of `policy`. Nothing is
/// verified yet (the signature covers the body's digest); this only keeps
/// strangers from making the node store a body at all.
pub fn precheck_admin(
    policy: &TrustRoots,
    nonces: &Nonces,
    nonce: Option<&str>,
    signature: Option<&str>,
) -> Result<(), AuthError> {
    let (Some(nonce), Some(signature)) = (nonce, signature) else {
        return Err(AuthError::Unsigned);
    };
    nonces.check(nonce)?;
    let sig = request::parse_header(signature)?;
    let fingerprint = sig.key.fingerprint();
    if policy.is_admin(&sig.key) {
        Ok(())
    } else if policy.is_reader(&sig.key) {
        Err(AuthError::Forbidden(fingerprint))
    } else {
        Err(AuthError::UnknownKey(fingerprint))
    }
}

/// [`authenticate`] from the body's SHA-256 (a body streamed to a file).
pub fn authenticate_digest(
    policy: &TrustRoots,
    nonces: &Nonces,
    nonce: Option<&str>,
    signature: Option<&str>,
    method: &str,
    path_and_query: &str,
    body_sha256: &[u8; 32],
) -> Result<Caller, AuthError> {
    let (Some(nonce), Some(signature)) = (nonce, signature) else {
        return Err(AuthError::Unsigned);
    };
    let sig = request::verify_digest(signature, method, path_and_query, body_sha256, nonce)?;
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

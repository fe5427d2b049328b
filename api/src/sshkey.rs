//! OpenSSH ed25519 keys: the one-line public format (`ssh-ed25519 AAAA… comment`),
//! the `openssh-key-v1` private format, and `SHA256:` fingerprints exactly as
//! `ssh-keygen -l` prints them. Only ed25519 is accepted anywhere in Basalt; other
//! algorithms are recognised only to say so clearly.

use crate::wire::{Reader, WireError, Writer};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

pub const ED25519: &str = "ssh-ed25519";
const PRIVATE_MAGIC: &[u8] = b"openssh-key-v1\0";
const PRIVATE_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const PRIVATE_END: &str = "-----END OPENSSH PRIVATE KEY-----";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("empty public key")]
    Empty,
    #[error("only ssh-ed25519 keys are accepted, got {0}")]
    Unsupported(String),
    #[error("key data is not valid base64")]
    Base64,
    #[error("key type field says {inner} but the line says {outer}")]
    TypeMismatch { outer: String, inner: String },
    #[error("malformed key blob: {0}")]
    Wire(#[from] WireError),
    #[error("ed25519 public key must be 32 bytes, got {0}")]
    Length(usize),
    #[error("not a valid ed25519 point")]
    Point,
    #[error("not an OpenSSH private key (expected a `{PRIVATE_BEGIN}` block)")]
    NotPrivateKey,
    #[error(
        "the private key is encrypted (cipher {0}); basaltctl reads only unencrypted keys: sign with `ssh-keygen -Y sign -n basalt-config` instead"
    )]
    Encrypted(String),
    #[error("private key file holds {0} keys; expected exactly one")]
    KeyCount(u32),
    #[error("private key check bytes differ: wrong passphrase or corrupted file")]
    CheckInt,
    #[error("private key does not match its public half")]
    Mismatch,
    #[error("system random source failed: {0}")]
    Random(String),
}

/// A trusted (or to-be-trusted) ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    comment: String,
}

impl PublicKey {
    /// Parse one `authorized_keys`-style line: `ssh-ed25519 BASE64 [comment]`.
    pub fn from_openssh(line: &str) -> Result<Self, KeyError> {
        let mut parts = line.split_whitespace();
        let algo = parts.next().ok_or(KeyError::Empty)?;
        if algo != ED25519 {
            return Err(KeyError::Unsupported(algo.to_string()));
        }
        let data = parts.next().ok_or(KeyError::Base64)?;
        let blob = STANDARD.decode(data).map_err(|_| KeyError::Base64)?;
        let comment = parts.collect::<Vec<_>>().join(" ");
        let mut key = Self::from_blob(&blob)?;
        key.comment = comment;
        Ok(key)
    }

    /// Parse the wire blob (`string "ssh-ed25519", string key`).
    pub fn from_blob(blob: &[u8]) -> Result<Self, KeyError> {
        let mut r = Reader::new(blob);
        let algo = r.utf8()?;
        if algo != ED25519 {
            return Err(KeyError::Unsupported(algo.to_string()));
        }
        let raw = r.string()?;
        r.finish()?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = raw.try_into().map_err(|_| KeyError::Length(raw.len()))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Point)?;
        Ok(Self {
            key,
            comment: String::new(),
        })
    }

    pub fn blob(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.string(ED25519.as_bytes()).string(self.key.as_bytes());
        w.into_bytes()
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// `SHA256:<unpadded base64>`, the form `ssh-keygen -l` prints.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(self.blob()))
        )
    }

    /// The one-line OpenSSH form, with the comment if any.
    pub fn to_openssh(&self) -> String {
        let b64 = STANDARD.encode(self.blob());
        if self.comment.is_empty() {
            format!("{ED25519} {b64}")
        } else {
            format!("{ED25519} {b64} {}", self.comment)
        }
    }

    /// Same key material, ignoring the comment.
    pub fn same_key(&self, other: &PublicKey) -> bool {
        self.key == other.key
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_openssh())
    }
}

/// Parse a file of public keys, one per line; `#` comments and blank lines skipped.
/// Errors carry the 1-based line number.
pub fn parse_key_list(text: &str) -> Result<Vec<PublicKey>, (usize, KeyError)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .map(|(i, l)| PublicKey::from_openssh(l.trim()).map_err(|e| (i + 1, e)))
        .collect()
}

/// An ed25519 signing key with its comment. Debug never shows the secret.
pub struct PrivateKey {
    signing: SigningKey,
    comment: String,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(<redacted>, {})", self.public().fingerprint())
    }
}

impl PrivateKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(comment: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
            comment: comment.to_string(),
        })
    }

    pub fn from_seed(seed: &[u8; 32], comment: &str) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
            comment: comment.to_string(),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.signing.verifying_key(),
            comment: self.comment.clone(),
        }
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Parse an unencrypted `openssh-key-v1` file as `ssh-keygen -t ed25519 -N ''` writes it.
    pub fn from_openssh(text: &str) -> Result<Self, KeyError> {
        let body = text
            .trim()
            .strip_prefix(PRIVATE_BEGIN)
            .and_then(|rest| rest.trim_end().strip_suffix(PRIVATE_END))
            .ok_or(KeyError::NotPrivateKey)?;
        let b64: String = body.split_whitespace().collect();
        let raw = STANDARD.decode(b64).map_err(|_| KeyError::Base64)?;
        let rest = raw
            .strip_prefix(PRIVATE_MAGIC)
            .ok_or(KeyError::NotPrivateKey)?;
        let mut r = Reader::new(rest);
        let cipher = r.utf8()?;
        let kdf = r.utf8()?;
        let _kdf_options = r.string()?;
        if cipher != "none" || kdf != "none" {
            return Err(KeyError::Encrypted(cipher.to_string()));
        }
        let count = r.u32()?;
        if count != 1 {
            return Err(KeyError::KeyCount(count));
        }
        let public = PublicKey::from_blob(r.string()?)?;
        let private = r.string()?;
        r.finish()?;

        let mut p = Reader::new(private);
        if p.u32()? != p.u32()? {
            return Err(KeyError::CheckInt);
        }
        let algo = p.utf8()?;
        if algo != ED25519 {
            return Err(KeyError::Unsupported(algo.to_string()));
        }
        let pub_raw = p.string()?;
        let secret = p.string()?;
        let comment = p.utf8()?.to_string();
        // The remainder is padding 1, 2, 3, … up to the cipher block size.
        let padding = p.remaining();
        if padding.len() >= 8
            || padding
                .iter()
                .enumerate()
                .any(|(i, b)| *b as usize != i + 1)
        {
            return Err(KeyError::Wire(WireError::Trailing(padding.len())));
        }
        if secret.len() != 64 {
            return Err(KeyError::Length(secret.len()));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&secret[..32]);
        let key = Self::from_seed(&seed, &comment);
        let derived = key.signing.verifying_key();
        if derived.as_bytes() != pub_raw
            || &secret[32..] != derived.as_bytes()
            || !public.key.eq(&derived)
        {
            return Err(KeyError::Mismatch);
        }
        Ok(key)
    }

    /// Serialise as an unencrypted `openssh-key-v1` file that `ssh-keygen` reads.
    pub fn to_openssh(&self) -> Result<String, KeyError> {
        let mut check = [0u8; 4];
        getrandom::fill(&mut check).map_err(|e| KeyError::Random(e.to_string()))?;
        let public = self.signing.verifying_key();
        let mut secret = Vec::with_capacity(64);
        secret.extend_from_slice(self.signing.as_bytes());
        secret.extend_from_slice(public.as_bytes());

        let mut private = Writer::new();
        private
            .raw(&check)
            .raw(&check)
            .string(ED25519.as_bytes())
            .string(public.as_bytes())
            .string(&secret)
            .string(self.comment.as_bytes());
        let mut private = private.into_bytes();
        let mut pad = 1u8;
        while !private.len().is_multiple_of(8) {
            private.push(pad);
            pad += 1;
        }

        let mut w = Writer::new();
        w.raw(PRIVATE_MAGIC)
            .string(b"none")
            .string(b"none")
            .string(b"")
            .u32(1)
            .string(&self.public().blob())
            .string(&private);
        Ok(armor(PRIVATE_BEGIN, PRIVATE_END, &w.into_bytes()))
    }
}

/// Base64 body wrapped at 70 columns between marker lines, as OpenSSH writes it.
pub(crate) fn armor(begin: &str, end: &str, data: &[u8]) -> String {
    let b64 = STANDARD.encode(data);
    let mut out = String::with_capacity(b64.len() + b64.len() / 70 + begin.len() + end.len() + 4);
    out.push_str(begin);
    out.push('\n');
    for chunk in b64.as_bytes().chunks(70) {
        // base64 output is ASCII, so any byte split is a char boundary.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(end);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_round_trip() {
        let key = PrivateKey::from_seed(&[7; 32], "op@example");
        let text = key.to_openssh().unwrap();
        let back = PrivateKey::from_openssh(&text).unwrap();
        assert!(back.public().same_key(&key.public()));
        assert_eq!(back.public().comment(), "op@example");
    }

    #[test]
    fn public_key_round_trip_and_rejects_rsa() {
        let key = PrivateKey::from_seed(&[9; 32], "c").public();
        let line = key.to_openssh();
        assert_eq!(PublicKey::from_openssh(&line).unwrap(), key);
        assert_eq!(
            PublicKey::from_openssh("ssh-rsa AAAAB3NzaC1yc2E= x"),
            Err(KeyError::Unsupported("ssh-rsa".into()))
        );
    }
}

//! OpenSSH SSHSIG detached signatures (PROTOCOL.sshsig), ed25519 only.
//!
//! A signature file may hold several armored blocks, one per signer; each is
//! parsed and checked on its own so one bad block names itself.

use crate::sshkey::{ED25519, PrivateKey, PublicKey, armor};
use crate::wire::{Reader, WireError, Writer};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signature as EdSignature;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256, Sha512};

const MAGIC: &[u8] = b"SSHSIG";
const VERSION: u32 = 1;
const BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const END: &str = "-----END SSH SIGNATURE-----";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("no `{BEGIN}` block found")]
    NoBlocks,
    #[error("block {block}: {reason}")]
    Armor { block: usize, reason: String },
    #[error("block {block}: malformed signature: {source}")]
    Wire { block: usize, source: WireError },
    #[error("block {block}: not an SSHSIG blob (bad magic)")]
    Magic { block: usize },
    #[error("block {block}: unsupported SSHSIG version {version}")]
    Version { block: usize, version: u32 },
    #[error("block {block}: only ssh-ed25519 signatures are accepted, got {algorithm}")]
    Algorithm { block: usize, algorithm: String },
    #[error("block {block}: bad public key: {reason}")]
    Key { block: usize, reason: String },
    #[error("block {block}: unsupported hash algorithm {hash}")]
    Hash { block: usize, hash: String },
    #[error("block {block}: signature by {fingerprint} does not match these bytes")]
    Mismatch { block: usize, fingerprint: String },
}

/// One parsed signature block, not yet checked against any data.
#[derive(Debug, Clone)]
pub struct SshSig {
    /// 1-based position of the block in its file, for error messages.
    pub block: usize,
    pub key: PublicKey,
    pub namespace: String,
    hash: HashAlg,
    signature: EdSignature,
}

#[derive(Debug, Clone, Copy)]
enum HashAlg {
    Sha256,
    Sha512,
}

impl HashAlg {
    fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha512 => "sha512",
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => Sha256::digest(data).to_vec(),
            HashAlg::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// The bytes that are actually signed: magic, namespace, reserved, hash name, H(message).
fn signed_data(namespace: &str, hash: HashAlg, message: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(MAGIC)
        .string(namespace.as_bytes())
        .string(b"")
        .string(hash.name().as_bytes())
        .string(&hash.digest(message));
    w.into_bytes()
}

/// Sign `message` under `namespace` and return one armored block (sha512, as ssh-keygen does).
pub fn sign(key: &PrivateKey, namespace: &str, message: &[u8]) -> String {
    let hash = HashAlg::Sha512;
    let sig = key
        .signing_key()
        .sign(&signed_data(namespace, hash, message));
    let mut sig_blob = Writer::new();
    sig_blob.string(ED25519.as_bytes()).string(&sig.to_bytes());

    let mut w = Writer::new();
    w.raw(MAGIC)
        .u32(VERSION)
        .string(&key.public().blob())
        .string(namespace.as_bytes())
        .string(b"")
        .string(hash.name().as_bytes())
        .string(&sig_blob.into_bytes());
    armor(BEGIN, END, &w.into_bytes())
}

/// Split a signature file into its armored blocks and parse each.
pub fn parse_blocks(text: &str) -> Result<Vec<SshSig>, SigError> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    while let Some(line) = lines.next() {
        let block = out.len() + 1;
        if line != BEGIN {
            return Err(SigError::Armor {
                block,
                reason: format!("expected `{BEGIN}`, found `{}`", shorten(line)),
            });
        }
        let mut b64 = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l == END {
                closed = true;
                break;
            }
            b64.push_str(l);
        }
        if !closed {
            return Err(SigError::Armor {
                block,
                reason: format!("missing `{END}` (truncated file?)"),
            });
        }
        let blob = STANDARD.decode(&b64).map_err(|e| SigError::Armor {
            block,
            reason: format!("invalid base64: {e}"),
        })?;
        out.push(parse_blob(block, &blob)?);
    }
    if out.is_empty() {
        return Err(SigError::NoBlocks);
    }
    Ok(out)
}

fn parse_blob(block: usize, blob: &[u8]) -> Result<SshSig, SigError> {
    let wire = |source| SigError::Wire { block, source };
    let mut r = Reader::new(blob);
    if r.raw(MAGIC.len()).map_err(wire)? != MAGIC {
        return Err(SigError::Magic { block });
    }
    let version = r.u32().map_err(wire)?;
    if version != VERSION {
        return Err(SigError::Version { block, version });
    }
    let key_blob = r.string().map_err(wire)?;
    let key = PublicKey::from_blob(key_blob).map_err(|e| match e {
        crate::sshkey::KeyError::Unsupported(algorithm) => SigError::Algorithm { block, algorithm },
        other => SigError::Key {
            block,
            reason: other.to_string(),
        },
    })?;
    let namespace = r.utf8().map_err(wire)?.to_string();
    let _reserved = r.string().map_err(wire)?;
    let hash = match r.utf8().map_err(wire)? {
        "sha512" => HashAlg::Sha512,
        "sha256" => HashAlg::Sha256,
        other => {
            return Err(SigError::Hash {
                block,
                hash: other.to_string(),
            });
        }
    };
    let sig_blob = r.string().map_err(wire)?;
    r.finish().map_err(wire)?;

    let mut s = Reader::new(sig_blob);
    let algorithm = s.utf8().map_err(wire)?;
    if algorithm != ED25519 {
        return Err(SigError::Algorithm {
            block,
            algorithm: algorithm.to_string(),
        });
    }
    let raw = s.string().map_err(wire)?;
    s.finish().map_err(wire)?;
    let bytes: [u8; 64] = raw.try_into().map_err(|_| SigError::Key {
        block,
        reason: format!("ed25519 signature must be 64 bytes, got {}", raw.len()),
    })?;
    Ok(SshSig {
        block,
        key,
        namespace,
        hash,
        signature: EdSignature::from_bytes(&bytes),
    })
}

impl SshSig {
    /// This signature as one armored block again, as [`sign`] writes it (the
    /// reserved field, which no signer fills, is written empty). The fuzz
    /// target `sshsig_armor` checks that whatever parses re-encodes to a
    /// block that parses to the same signature.
    pub fn to_armor(&self) -> String {
        let mut sig_blob = Writer::new();
        sig_blob
            .string(ED25519.as_bytes())
            .string(&self.signature.to_bytes());
        let mut w = Writer::new();
        w.raw(MAGIC)
            .u32(VERSION)
            .string(&self.key.blob())
            .string(self.namespace.as_bytes())
            .string(b"")
            .string(self.hash.name().as_bytes())
            .string(&sig_blob.into_bytes());
        armor(BEGIN, END, &w.into_bytes())
    }

    /// Check this signature over `message` (its own namespace is part of what was signed).
    pub fn verify(&self, message: &[u8]) -> Result<(), SigError> {
        let data = signed_data(&self.namespace, self.hash, message);
        self.key
            .verifying_key()
            .verify_strict(&data, &self.signature)
            .map_err(|_| SigError::Mismatch {
                block: self.block,
                fingerprint: self.key.fingerprint(),
            })
    }
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = PrivateKey::from_seed(&[1; 32], "");
        let armored = sign(&key, "basalt-config", b"hello");
        let sigs = parse_blocks(&armored).unwrap();
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].namespace, "basalt-config");
        sigs[0].verify(b"hello").unwrap();
        assert!(matches!(
            sigs[0].verify(b"hellO"),
            Err(SigError::Mismatch { block: 1, .. })
        ));
    }

    #[test]
    fn re_armoring_gives_back_what_sign_wrote() {
        let key = PrivateKey::from_seed(&[1; 32], "");
        let armored = sign(&key, "basalt-config", b"hello");
        let sigs = parse_blocks(&armored).unwrap();
        assert_eq!(sigs[0].to_armor(), armored);
    }

    #[test]
    fn several_blocks() {
        let a = PrivateKey::from_seed(&[1; 32], "");
        let b = PrivateKey::from_seed(&[2; 32], "");
        let text = sign(&a, "n", b"x") + &sign(&b, "n", b"x");
        let sigs = parse_blocks(&text).unwrap();
        assert_eq!(sigs.len(), 2);
        assert!(sigs[1].key.same_key(&b.public()));
    }
}

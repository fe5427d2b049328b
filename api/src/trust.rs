//! The trust policy a node applies to a signed document: which admin keys may
//! sign, how many distinct admins must agree, and which keys may only read.

use crate::sshkey::PublicKey;
use crate::sshsig::{self, SigError};
use crate::{CONFIG_NAMESPACE, MAX_DOCUMENT_BYTES};
use std::fmt;

#[derive(Debug, Clone)]
pub struct TrustPolicy {
    pub admins: Vec<PublicKey>,
    pub readers: Vec<PublicKey>,
    /// Distinct admin signatures required (k of n).
    pub threshold: usize,
}

/// Someone whose valid signature counted towards the threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub fingerprint: String,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("document is {0} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes")]
    DocumentTooLarge(usize),
    #[error("signature file is {0} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes")]
    SignatureTooLarge(usize),
    #[error("signature file: {0}")]
    Signature(#[from] SigError),
    #[error("{}", threshold_message(*.have, *.need, .notes))]
    Threshold {
        have: usize,
        need: usize,
        /// Why each signature that did not count was set aside.
        notes: Vec<String>,
    },
    #[error("trust policy threshold {threshold} is impossible with {admins} admin key(s)")]
    Policy { threshold: usize, admins: usize },
}

fn threshold_message(have: usize, need: usize, notes: &[String]) -> String {
    let mut msg = format!(
        "{have} of {need} required signature(s) from distinct trusted admin keys in namespace `{CONFIG_NAMESPACE}`"
    );
    for n in notes {
        msg.push_str("; ");
        msg.push_str(n);
    }
    msg
}

impl TrustPolicy {
    pub fn new(admins: Vec<PublicKey>, readers: Vec<PublicKey>, threshold: usize) -> Self {
        Self {
            admins,
            readers,
            threshold,
        }
    }

    pub fn is_admin(&self, key: &PublicKey) -> bool {
        self.admins.iter().any(|a| a.same_key(key))
    }

    pub fn is_reader(&self, key: &PublicKey) -> bool {
        self.readers.iter().any(|r| r.same_key(key))
    }

    /// Verify the detached signatures over the exact document bytes, before
    /// anything parses the document. Every block must be well formed and every
    /// signature must verify (a forged block is an attack, not noise); then
    /// only signatures by distinct admins in the config namespace count.
    pub fn verify_document(
        &self,
        document: &[u8],
        signatures: &[u8],
    ) -> Result<Vec<Signer>, VerifyError> {
        if document.len() > MAX_DOCUMENT_BYTES {
            return Err(VerifyError::DocumentTooLarge(document.len()));
        }
        if signatures.len() > MAX_DOCUMENT_BYTES {
            return Err(VerifyError::SignatureTooLarge(signatures.len()));
        }
        if self.threshold == 0 || self.threshold > self.admins.len() {
            return Err(VerifyError::Policy {
                threshold: self.threshold,
                admins: self.admins.len(),
            });
        }
        let text = std::str::from_utf8(signatures).map_err(|_| SigError::Armor {
            block: 1,
            reason: "signature file is not text".into(),
        })?;
        let blocks = sshsig::parse_blocks(text)?;

        let mut counted: Vec<Signer> = Vec::new();
        let mut notes = Vec::new();
        for sig in &blocks {
            let fp = sig.key.fingerprint();
            if sig.namespace != CONFIG_NAMESPACE {
                notes.push(format!(
                    "block {}: namespace `{}` is not `{CONFIG_NAMESPACE}`",
                    sig.block, sig.namespace
                ));
                continue;
            }
            sig.verify(document)?;
            if counted.iter().any(|s| s.fingerprint == fp) {
                notes.push(format!(
                    "block {}: {fp} already signed (counted once)",
                    sig.block
                ));
            } else if self.is_admin(&sig.key) {
                let comment = self
                    .admins
                    .iter()
                    .find(|a| a.same_key(&sig.key))
                    .map(|a| a.comment().to_string())
                    .unwrap_or_default();
                counted.push(Signer {
                    fingerprint: fp,
                    comment,
                });
            } else if self.is_reader(&sig.key) {
                notes.push(format!(
                    "block {}: {fp} is a reader key; readers cannot sign configs",
                    sig.block
                ));
            } else {
                notes.push(format!(
                    "block {}: {fp} is not a trusted admin key",
                    sig.block
                ));
            }
        }
        if counted.len() < self.threshold {
            return Err(VerifyError::Threshold {
                have: counted.len(),
                need: self.threshold,
                notes,
            });
        }
        Ok(counted)
    }
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.comment.is_empty() {
            f.write_str(&self.fingerprint)
        } else {
            write!(f, "{} ({})", self.fingerprint, self.comment)
        }
    }
}

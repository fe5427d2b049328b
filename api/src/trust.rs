//! The trust roots a node applies to a signed document: which admin keys may
//! sign, how many distinct admins must agree (k of n), and which keys may only
//! read. [`TrustRoots`] is the only owner of the k-of-n rule: an image's
//! `trust.toml`, a config's `[trust]` table and an image profile's `[trust]`
//! all go through [`TrustRoots::new`] (or [`check_threshold`] when only the
//! counts are known yet).

use crate::sshkey::{KeyError, PublicKey};
use crate::sshsig::{self, SigError};
use crate::{CONFIG_NAMESPACE, MAX_DOCUMENT_BYTES};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Admin and reader keys plus the threshold, valid by construction: the
/// threshold is within `1..=admins`, and no key is listed twice (a duplicate
/// would make `n` count one admin twice).
#[derive(Debug, Clone)]
pub struct TrustRoots {
    admins: Vec<PublicKey>,
    readers: Vec<PublicKey>,
    /// Distinct admin signatures required (k of n).
    threshold: usize,
}

/// Why a set of keys and a threshold are not usable trust roots.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustRootsError {
    #[error("at least one admin key is required, or nobody can ever change this node")]
    NoAdmins,
    #[error("{threshold} is out of range; expected 1..={admins} (the number of admins)")]
    Threshold { threshold: usize, admins: usize },
    #[error("key {fingerprint} is listed twice")]
    Duplicate { fingerprint: String },
    #[error("{list}[{index}]: {source}")]
    Key {
        list: &'static str,
        index: usize,
        source: KeyError,
    },
    #[error("{0}")]
    Toml(String),
}

/// The k-of-n rule on its own, for validators that report every problem of a
/// document before the keys themselves are known to parse.
pub fn check_threshold(threshold: usize, admins: usize) -> Result<(), TrustRootsError> {
    if admins == 0 {
        return Err(TrustRootsError::NoAdmins);
    }
    if threshold == 0 || threshold > admins {
        return Err(TrustRootsError::Threshold { threshold, admins });
    }
    Ok(())
}

/// The on-disk shape of trust roots: an image's `/etc/basalt/trust.toml` and
/// a config's `[trust]` table share it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustTable {
    pub admins: Vec<String>,
    #[serde(default)]
    pub readers: Vec<String>,
    #[serde(default = "default_threshold")]
    pub threshold: usize,
}

fn default_threshold() -> usize {
    1
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
    #[error("{}", threshold_message(*.have, *.need, .namespace, .notes))]
    Threshold {
        have: usize,
        need: usize,
        /// The SSHSIG namespace the signatures had to carry.
        namespace: &'static str,
        /// Why each signature that did not count was set aside.
        notes: Vec<String>,
    },
    #[error("this node has no trust roots, so it accepts no signed document")]
    NoTrustRoots,
}

fn threshold_message(have: usize, need: usize, namespace: &str, notes: &[String]) -> String {
    let mut msg = format!(
        "{have} of {need} required signature(s) from distinct trusted admin keys in namespace `{namespace}`"
    );
    for n in notes {
        msg.push_str("; ");
        msg.push_str(n);
    }
    msg
}

impl TrustRoots {
    /// Trust roots from parsed keys: fails unless `1 <= threshold <= admins`
    /// and every key is distinct across both lists.
    pub fn new(
        admins: Vec<PublicKey>,
        readers: Vec<PublicKey>,
        threshold: usize,
    ) -> Result<Self, TrustRootsError> {
        check_threshold(threshold, admins.len())?;
        let all: Vec<&PublicKey> = admins.iter().chain(&readers).collect();
        for (i, k) in all.iter().enumerate() {
            if all[..i].iter().any(|prev| prev.same_key(k)) {
                return Err(TrustRootsError::Duplicate {
                    fingerprint: k.fingerprint(),
                });
            }
        }
        Ok(Self {
            admins,
            readers,
            threshold,
        })
    }

    /// Roots that trust nobody: every signature check fails with
    /// [`VerifyError::NoTrustRoots`]. What a node runs with when its image
    /// carries no usable trust roots, so the API still answers and says why.
    pub fn none() -> Self {
        Self {
            admins: Vec::new(),
            readers: Vec::new(),
            threshold: 1,
        }
    }

    /// Trust roots from OpenSSH public key lines.
    pub fn from_table(table: &TrustTable) -> Result<Self, TrustRootsError> {
        let parse = |list: &'static str, keys: &[String]| {
            keys.iter()
                .enumerate()
                .map(|(index, k)| {
                    PublicKey::from_openssh(k).map_err(|source| TrustRootsError::Key {
                        list,
                        index,
                        source,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Self::new(
            parse("admins", &table.admins)?,
            parse("readers", &table.readers)?,
            table.threshold,
        )
    }

    /// Parse a trust roots file (`/etc/basalt/trust.toml`, see
    /// [`crate::image_layout::TRUST_ROOTS`]).
    pub fn from_toml(text: &str) -> Result<Self, TrustRootsError> {
        let table: TrustTable =
            toml::from_str(text).map_err(|e| TrustRootsError::Toml(e.to_string()))?;
        Self::from_table(&table)
    }

    /// The table [`TrustRoots::from_table`] reads back, keys in OpenSSH form.
    pub fn to_table(&self) -> TrustTable {
        let lines = |keys: &[PublicKey]| keys.iter().map(PublicKey::to_openssh).collect();
        TrustTable {
            admins: lines(&self.admins),
            readers: lines(&self.readers),
            threshold: self.threshold,
        }
    }

    /// The trust roots file [`TrustRoots::from_toml`] reads.
    pub fn to_toml(&self) -> Result<String, TrustRootsError> {
        toml::to_string(&self.to_table()).map_err(|e| TrustRootsError::Toml(e.to_string()))
    }

    pub fn admins(&self) -> &[PublicKey] {
        &self.admins
    }

    pub fn readers(&self) -> &[PublicKey] {
        &self.readers
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    pub fn is_admin(&self, key: &PublicKey) -> bool {
        self.admins.iter().any(|a| a.same_key(key))
    }

    pub fn is_reader(&self, key: &PublicKey) -> bool {
        self.readers.iter().any(|r| r.same_key(key))
    }

    /// Verify a config's detached signatures ([`TrustRoots::verify_signed`]
    /// in the config namespace).
    pub fn verify_document(
        &self,
        document: &[u8],
        signatures: &[u8],
    ) -> Result<Vec<Signer>, VerifyError> {
        self.verify_signed(CONFIG_NAMESPACE, document, signatures)
    }

    /// Verify the detached signatures over the exact document bytes, before
    /// anything parses the document. Every block must be well formed and every
    /// signature must verify (a forged block is an attack, not noise); then
    /// only signatures by distinct admins in `namespace` count, so a
    /// signature made for one purpose (a config, an upgrade) never counts
    /// for another.
    pub fn verify_signed(
        &self,
        namespace: &'static str,
        document: &[u8],
        signatures: &[u8],
    ) -> Result<Vec<Signer>, VerifyError> {
        if document.len() > MAX_DOCUMENT_BYTES {
            return Err(VerifyError::DocumentTooLarge(document.len()));
        }
        if signatures.len() > MAX_DOCUMENT_BYTES {
            return Err(VerifyError::SignatureTooLarge(signatures.len()));
        }
        if self.admins.is_empty() {
            return Err(VerifyError::NoTrustRoots);
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
            if sig.namespace != namespace {
                notes.push(format!(
                    "block {}: namespace `{}` is not `{namespace}`",
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
                    "block {}: {fp} is a reader key; readers cannot sign configs or upgrades",
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
                namespace,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sshkey::PrivateKey;

    fn key(n: u8) -> PublicKey {
        PrivateKey::from_seed(&[n; 32], &format!("key{n}")).public()
    }

    #[test]
    fn threshold_must_be_within_one_to_the_number_of_admins() {
        assert_eq!(
            TrustRoots::new(vec![key(1), key(2)], vec![], 3).unwrap_err(),
            TrustRootsError::Threshold {
                threshold: 3,
                admins: 2
            }
        );
        assert!(matches!(
            TrustRoots::new(vec![key(1)], vec![], 0),
            Err(TrustRootsError::Threshold { threshold: 0, .. })
        ));
        assert_eq!(
            TrustRoots::new(vec![], vec![key(1)], 1).unwrap_err(),
            TrustRootsError::NoAdmins
        );
        let roots = TrustRoots::new(vec![key(1), key(2)], vec![key(3)], 2).unwrap();
        assert_eq!((roots.admins().len(), roots.threshold()), (2, 2));
    }

    #[test]
    fn a_key_counts_once_across_both_lists() {
        for (admins, readers) in [(vec![key(1), key(1)], vec![]), (vec![key(1)], vec![key(1)])] {
            assert!(matches!(
                TrustRoots::new(admins, readers, 1),
                Err(TrustRootsError::Duplicate { .. })
            ));
        }
    }

    #[test]
    fn trust_toml_round_trips_and_is_checked() {
        let roots = TrustRoots::new(vec![key(1), key(2)], vec![key(3)], 2).unwrap();
        let text = roots.to_toml().unwrap();
        let back = TrustRoots::from_toml(&text).unwrap();
        assert_eq!(back.to_table(), roots.to_table());

        let bad = text.replace("threshold = 2", "threshold = 5");
        assert_eq!(
            TrustRoots::from_toml(&bad).unwrap_err().to_string(),
            "5 is out of range; expected 1..=2 (the number of admins)"
        );
        let unknown = format!("{text}extra = 1\n");
        assert!(matches!(
            TrustRoots::from_toml(&unknown),
            Err(TrustRootsError::Toml(_))
        ));
        let garbled = text.replacen("ssh-ed25519 ", "ssh-ed25519 !", 1);
        assert!(matches!(
            TrustRoots::from_toml(&garbled),
            Err(TrustRootsError::Key {
                list: "admins",
                index: 0,
                ..
            })
        ));
    }

    #[test]
    fn no_roots_verify_nothing() {
        let signer = PrivateKey::from_seed(&[1; 32], "k");
        let sig = sshsig::sign(&signer, CONFIG_NAMESPACE, b"doc");
        assert_eq!(
            TrustRoots::none().verify_document(b"doc", sig.as_bytes()),
            Err(VerifyError::NoTrustRoots)
        );
    }
}

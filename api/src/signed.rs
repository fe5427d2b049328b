//! Verify-then-parse: the only way a node turns bytes into a config it will apply.

use crate::config::{ConfigErrors, MachineConfig};
use crate::scope::{ImagePolicy, NodeIdentity, TimeSource, TrustedTime, rfc3339};
use crate::trust::{Signer, TrustRoots, VerifyError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedConfigError {
    #[error("signature check failed: {0}")]
    Signature(#[from] VerifyError),
    #[error("config is invalid:\n{0}")]
    Invalid(ConfigErrors),
    #[error(
        "generation {generation} is not newer than the node's current generation {current}; raise `generation` (replayed or rolled-back config?)"
    )]
    Replay { generation: u64, current: u64 },
    #[error(
        "generation {generation} is below this image's minimum generation {minimum} (the image refuses configs older than itself, even after a reset); sign one with generation ≥ {minimum}"
    )]
    BelowImageMinimum { generation: u64, minimum: u64 },
    #[error(
        "scope: this config is not for this node: it selects {selector}; this node has {node} (see `basaltctl status`)"
    )]
    NotThisNode { selector: String, node: String },
    #[error(
        "scope.not_after {not_after} has passed: the node's time is at least {now} ({basis}); sign a new config"
    )]
    Expired {
        not_after: String,
        now: String,
        /// Where `now` comes from.
        basis: TimeSource,
    },
}

/// A config whose signatures met the policy and whose contents are valid.
#[derive(Debug, Clone)]
pub struct VerifiedConfig {
    pub config: MachineConfig,
    pub signers: Vec<Signer>,
}

/// What a config is checked against besides its own bytes.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// Who may sign it.
    pub trust: &'a TrustRoots,
    /// The generation the node runs (0: none yet).
    pub current_generation: u64,
    /// The image's floor.
    pub image: ImagePolicy,
    /// The node that would apply it; `None` for an offline check
    /// (basaltctl, image-builder), which cannot judge `[scope]`.
    pub node: Option<(&'a NodeIdentity, TrustedTime)>,
}

impl<'a> Admission<'a> {
    /// Signatures, contents and generations only: no node to compare with.
    pub fn offline(trust: &'a TrustRoots, current_generation: u64) -> Self {
        Self {
            trust,
            current_generation,
            image: ImagePolicy::default(),
            node: None,
        }
    }
}

/// Check signatures over the raw bytes first (the parser never sees
/// untrusted input), then parse and validate, then refuse stale
/// generations, then what `[scope]` and the image allow.
pub fn verify_and_parse(
    document: &[u8],
    signatures: &[u8],
    admission: &Admission<'_>,
) -> Result<VerifiedConfig, SignedConfigError> {
    let signers = admission.trust.verify_document(document, signatures)?;
    let config = MachineConfig::parse(document).map_err(SignedConfigError::Invalid)?;
    if config.generation <= admission.current_generation {
        return Err(SignedConfigError::Replay {
            generation: config.generation,
            current: admission.current_generation,
        });
    }
    if config.generation < admission.image.min_generation {
        return Err(SignedConfigError::BelowImageMinimum {
            generation: config.generation,
            minimum: admission.image.min_generation,
        });
    }
    if let Some((identity, time)) = admission.node {
        if !config.scope.selects(identity) {
            return Err(SignedConfigError::NotThisNode {
                selector: config.scope.describe_selector(),
                node: identity.to_string(),
            });
        }
        if let Some(not_after) = config.scope.not_after_unix()
            && time.at_least > not_after
        {
            return Err(SignedConfigError::Expired {
                not_after: rfc3339(not_after),
                now: rfc3339(time.at_least),
                basis: time.source,
            });
        }
    }
    Ok(VerifiedConfig { config, signers })
}

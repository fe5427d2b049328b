//! Verify-then-parse: the only way a node turns bytes into a config it will apply.

use crate::config::{ConfigErrors, MachineConfig};
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
}

/// A config whose signatures met the policy and whose contents are valid.
#[derive(Debug, Clone)]
pub struct VerifiedConfig {
    pub config: MachineConfig,
    pub signers: Vec<Signer>,
}

/// Check signatures over the raw bytes first (the parser never sees
/// untrusted input), then parse and validate, then refuse stale generations.
/// `current_generation` is 0 for a node that has never applied a config.
pub fn verify_and_parse(
    document: &[u8],
    signatures: &[u8],
    policy: &TrustRoots,
    current_generation: u64,
) -> Result<VerifiedConfig, SignedConfigError> {
    let signers = policy.verify_document(document, signatures)?;
    let config = MachineConfig::parse(document).map_err(SignedConfigError::Invalid)?;
    if config.generation <= current_generation {
        return Err(SignedConfigError::Replay {
            generation: config.generation,
            current: current_generation,
        });
    }
    Ok(VerifiedConfig { config, signers })
}

//! Signed A/B upgrade bundles: the format ([`bundle`]), the manifest
//! ([`manifest`]), and the checks a node makes before it writes anything:
//! signatures under the image's trust roots in their own namespace
//! ([`TrustRoots::verify_upgrade`]), then counter and architecture
//! ([`check_install`]), then each payload's size and sha256
//! ([`bundle::BundleReader::check_payloads`]).

pub mod bundle;
pub mod manifest;

pub use bundle::{BundleError, BundleReader, Extent, Head, Payloads};
pub use manifest::{Manifest, ManifestError, Sha256Digest, Version};

use crate::trust::{Signer, TrustRoots, VerifyError};

/// The SSHSIG namespace of an upgrade manifest's signatures: distinct from
/// [`crate::CONFIG_NAMESPACE`] and [`crate::request::API_NAMESPACE`], so
/// a signature made for a config or a request never installs a system,
/// and the reverse.
pub const UPGRADE_NAMESPACE: &str = "basalt-upgrade";

/// Why a bundle's manifest was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeVerifyError {
    #[error(
        "the bundle is not signed (manifest.toml.sig is empty): sign it with `basaltctl upgrade sign --key KEY BUNDLE`"
    )]
    Unsigned,
    #[error("upgrade signature check failed: {0}")]
    Signature(#[from] VerifyError),
    #[error("the signed manifest is invalid: {0}")]
    Manifest(#[from] ManifestError),
}

/// A manifest whose signatures met the trust roots' threshold in
/// [`UPGRADE_NAMESPACE`]; only [`TrustRoots::verify_upgrade`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    manifest: Manifest,
    signers: Vec<Signer>,
}

impl VerifiedManifest {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }
}

impl TrustRoots {
    /// Check the signatures over the exact manifest bytes (k distinct admins,
    /// namespace [`UPGRADE_NAMESPACE`]) before parsing them.
    pub fn verify_upgrade(
        &self,
        manifest: &[u8],
        signatures: &[u8],
    ) -> Result<VerifiedManifest, UpgradeVerifyError> {
        if signatures.iter().all(u8::is_ascii_whitespace) {
            return Err(UpgradeVerifyError::Unsigned);
        }
        let signers = self.verify_signed(UPGRADE_NAMESPACE, manifest, signatures)?;
        Ok(VerifiedManifest {
            manifest: Manifest::parse(manifest)?,
            signers,
        })
    }
}

/// Why a node refuses a verified bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "bundle counter {counter} is not above this node's installed counter {installed} (an older or replayed bundle?); build one with --counter {}",
        installed.saturating_add(1)
    )]
    NotNewer { counter: u64, installed: u64 },
    #[error("bundle is for {bundle} but this node is {node}; build one with --arch {node}")]
    WrongArch { bundle: String, node: String },
}

/// Whether this node may install `verified`: a counter above the
/// installed one, and its own architecture.
pub fn check_install(
    verified: &VerifiedManifest,
    installed_counter: u64,
    arch: &str,
) -> Result<(), Refusal> {
    let m = verified.manifest();
    if m.arch.as_str() != arch {
        return Err(Refusal::WrongArch {
            bundle: m.arch.to_string(),
            node: arch.to_string(),
        });
    }
    if m.counter <= installed_counter {
        return Err(Refusal::NotNewer {
            counter: m.counter,
            installed: installed_counter,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

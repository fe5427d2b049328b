//! Signed A/B upgrades, the node's side: a bundle streamed into the spool
//! ([`upload`]), verified there ([`verify_spooled`]: signatures under the
//! image's trust roots, counter, architecture, then each payload's size and
//! sha256), and only then handed to a [`SlotWriter`], which writes the
//! inactive slot. A refused bundle never reaches the writer.

pub mod upload;

use crate::host::spool;
use crate::node::Node;
use basalt_api::rpc::{RollbackResponse, UpgradeResponse};
use basalt_api::trust::TrustRoots;
use basalt_api::upgrade::{
    BundleError, BundleReader, Payloads, Refusal, UpgradeVerifyError, VerifiedManifest,
    check_install,
};
use std::path::Path;
use std::sync::Arc;

/// Where an uploaded bundle is spooled (on `/var`: the disk's EPHEMERAL
/// partition on a node that boots from disk).
pub const SPOOL_DIR: &str = "/var/lib/basalt/upgrade-spool";

/// What a node answers when it has no A/B slots.
pub const NO_SLOTS: &str = "this node does not boot from a disk with A/B slots; upgrades need the disk image (disk.raw) or an installed node";

/// Writes verified bundles to the disk's slots and switches between them.
pub trait SlotWriter: Send + Sync {
    /// The counter of the running system's last installed bundle (0 if none).
    fn installed_counter(&self) -> u64;
    /// Write the verified bundle into the inactive slot; `stage` = do not reboot.
    fn install(
        &self,
        bundle: &VerifiedBundle,
        spool: &Path,
        stage: bool,
    ) -> Result<UpgradeOutcome, UpgradeError>;
    fn rollback(&self) -> Result<UpgradeOutcome, UpgradeError>;
}

/// How long after answering an upgrade or rollback the node reboots.
const REBOOT_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// What a [`SlotWriter`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeOutcome {
    /// The slot the next boot uses, as the writer names it (`A`, `B`).
    pub slot: String,
    /// machined should reboot into it now (false when staged).
    pub reboot: bool,
}

/// A spooled bundle that passed every check: its manifest and where its
/// payloads lie in the spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBundle {
    manifest: VerifiedManifest,
    payloads: Payloads,
}

impl VerifiedBundle {
    pub fn manifest(&self) -> &VerifiedManifest {
        &self.manifest
    }

    /// `uki.efi` and `root.squashfs`: (offset, size) in the spool file.
    pub fn payloads(&self) -> Payloads {
        self.payloads
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{NO_SLOTS}")]
    NoSlots,
    #[error(
        "another upgrade is being received or installed on this node; try again once it is done"
    )]
    Busy,
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Verify(#[from] UpgradeVerifyError),
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("reading the spooled bundle {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
    /// The slot writer failed (the disk, the boot entries).
    #[error("{0}")]
    Slot(String),
}

impl UpgradeError {
    pub fn status(&self) -> u16 {
        match self {
            UpgradeError::NoSlots | UpgradeError::Busy => 409,
            UpgradeError::Verify(UpgradeVerifyError::Manifest(_)) => 400,
            UpgradeError::Verify(_) => 403,
            UpgradeError::Bundle(BundleError::Io { .. }) => 500,
            UpgradeError::Bundle(_) | UpgradeError::Refused(_) => 400,
            UpgradeError::Spool { .. } | UpgradeError::Slot(_) => 500,
        }
    }
}

/// Check a spooled bundle, in the order that costs least for a bad one:
/// the head members, the manifest's signatures (`trust`), counter and
/// architecture, then each payload's size and sha256, read through once.
pub fn verify_spooled(
    path: &Path,
    trust: &TrustRoots,
    installed_counter: u64,
    arch: &str,
) -> Result<VerifiedBundle, UpgradeError> {
    let file = spool::open_read(path).map_err(|source| UpgradeError::Spool {
        path: path.display().to_string(),
        source,
    })?;
    let (reader, head) = BundleReader::open(file)?;
    let manifest = trust.verify_upgrade(&head.manifest, &head.signatures)?;
    check_install(&manifest, installed_counter, arch)?;
    let payloads = reader.check_payloads(manifest.manifest())?;
    Ok(VerifiedBundle { manifest, payloads })
}

impl Node {
    /// Give the node its slot writer (a node that booted from an A/B
    /// disk); without one the upgrade routes answer [`NO_SLOTS`].
    /// False if one was attached already (the first is kept).
    pub fn attach_slots(&self, writer: Arc<dyn SlotWriter>) -> bool {
        self.slots.set(writer).is_ok()
    }

    pub fn slots(&self) -> Option<Arc<dyn SlotWriter>> {
        self.slots.get().cloned()
    }

    /// Where uploads are spooled (below the dev root in dev mode).
    pub fn upgrade_spool_dir(&self) -> std::path::PathBuf {
        self.host.path(SPOOL_DIR)
    }

    /// At boot: drop what an upload cut off by a crash left in the spool.
    pub async fn clear_upgrade_spool(&self) {
        let dir = self.upgrade_spool_dir();
        match spool::clear(&dir).await {
            Ok(removed) => {
                for p in removed {
                    tracing::info!(
                        "upgrade spool: removed {}, left by an upload cut off",
                        p.display()
                    );
                }
            }
            Err(e) => tracing::warn!("clearing the upgrade spool {}: {e}", dir.display()),
        }
    }

    /// Verify a spooled bundle against the image's trust roots and, if it
    /// passes, have the slot writer install it; reboot if it says so.
    pub async fn install_upgrade(
        &self,
        spooled: &spool::SpoolFile,
        stage: bool,
    ) -> Result<UpgradeResponse, UpgradeError> {
        let slots = self.slots().ok_or(UpgradeError::NoSlots)?;
        let trust = self.config.image_trust().clone();
        let path = spooled.path().to_path_buf();
        let work = tokio::task::spawn_blocking(move || {
            let bundle = verify_spooled(
                &path,
                &trust,
                slots.installed_counter(),
                std::env::consts::ARCH,
            )?;
            let m = bundle.manifest().manifest();
            tracing::info!(
                "upgrade bundle {} (counter {}) verified; writing the inactive slot",
                m.version,
                m.counter
            );
            let outcome = slots.install(&bundle, &path, stage)?;
            Ok::<_, UpgradeError>((bundle, outcome))
        });
        let (bundle, outcome) = work
            .await
            .map_err(|e| UpgradeError::Slot(format!("the install task failed: {e}")))??;
        let m = bundle.manifest().manifest();
        tracing::info!(
            "upgrade {} (counter {}) written to slot {}{}",
            m.version,
            m.counter,
            outcome.slot,
            if outcome.reboot {
                "; rebooting into it"
            } else {
                "; it boots at the next reboot"
            }
        );
        if outcome.reboot {
            // The answer must reach the client first: a reboot right away
            // raced it (the client saw the connection drop).
            self.request_power_after(crate::node::PowerEvent::Reboot, REBOOT_DELAY);
        }
        Ok(UpgradeResponse {
            version: m.version.to_string(),
            counter: m.counter,
            slot: outcome.slot,
            staged: stage,
            rebooting: outcome.reboot,
            signers: bundle
                .manifest()
                .signers()
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
    }

    /// Boot the previous slot again.
    pub async fn rollback_slot(&self) -> Result<RollbackResponse, UpgradeError> {
        let slots = self.slots().ok_or(UpgradeError::NoSlots)?;
        let outcome = tokio::task::spawn_blocking(move || slots.rollback())
            .await
            .map_err(|e| UpgradeError::Slot(format!("the rollback task failed: {e}")))??;
        tracing::warn!("rollback: slot {} boots next", outcome.slot);
        if outcome.reboot {
            // The answer must reach the client first: a reboot right away
            // raced it (the client saw the connection drop).
            self.request_power_after(crate::node::PowerEvent::Reboot, REBOOT_DELAY);
        }
        Ok(RollbackResponse {
            slot: outcome.slot,
            rebooting: outcome.reboot,
        })
    }
}

//! The config controller: the applied machine config (desired state of
//! every other controller), STATE (persisted generations), the `try`
//! timer, and who may sign the next one. Apply's verify and persist
//! steps live here; planning and converging are the other controllers'.

pub mod admission;

use super::resources::{Concern, Resource, ResourceState};
use crate::state::{SignedDoc, Slot, StateError, StateStore};
use basalt_api::config::MachineConfig;
use basalt_api::scope::{ImagePolicy, NodeIdentity, TrustedTime};
use basalt_api::signed::{Admission, SignedConfigError, VerifiedConfig, verify_and_parse};
use basalt_api::trust::TrustRoots;
use sha2::{Digest, Sha256};
use std::time::Instant;

/// The config an image may carry (image-builder's `[config]`): applied at
/// first boot when STATE holds none.
pub use basalt_api::image_layout::BAKED_CONFIG;
pub use basalt_api::image_layout::BAKED_CONFIG_SIGNATURES as BAKED_CONFIG_SIG;

/// The running config, verified.
#[derive(Debug, Clone)]
pub struct Applied {
    pub config: MachineConfig,
    pub sha256: String,
    pub signers: Vec<String>,
    /// The config's own trust section, parsed once: every API request is
    /// authenticated against it.
    policy: Option<TrustRoots>,
}

impl Applied {
    fn new(config: MachineConfig, document: &[u8], signers: Vec<String>) -> Self {
        Self {
            sha256: sha256_hex(document),
            signers,
            policy: config.trust_roots().ok(),
            config,
        }
    }
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The config controller's state; the node holds it under one async lock
/// so that applies run one at a time.
#[derive(Debug, Default)]
pub struct ConfigState {
    pub current: Option<Applied>,
    /// A `try` apply waiting for confirmation: its generation and deadline.
    pub pending_try: Option<(u64, Instant)>,
}

pub struct ConfigController {
    pub store: StateStore,
    image_trust: TrustRoots,
    /// The image's floor: lowest generation, build time.
    pub image_policy: ImagePolicy,
}

impl ConfigController {
    pub fn new(store: StateStore, image_trust: TrustRoots, image_policy: ImagePolicy) -> Self {
        Self {
            store,
            image_trust,
            image_policy,
        }
    }

    /// The image's trust roots: who may sign the first config, and upgrades.
    pub fn image_trust(&self) -> &TrustRoots {
        &self.image_trust
    }

    /// At boot: promote a staged config, then load the current one. A
    /// stored config that no longer parses is reported and skipped: the
    /// node stays in maintenance mode rather than trusting it.
    pub fn load_at_boot(&self) -> ConfigState {
        match self.store.promote_staged() {
            Ok(true) => tracing::info!("staged config promoted to current"),
            Ok(false) => {}
            Err(e) => tracing::error!("promoting staged config: {e}"),
        }
        ConfigState {
            current: self.load_current(),
            pending_try: None,
        }
    }

    fn load_current(&self) -> Option<Applied> {
        match self.store.load(Slot::Current) {
            Ok(Some(doc)) => load_trusted(&doc, &self.image_trust),
            Ok(None) => None,
            Err(e) => {
                tracing::error!("reading STATE: {e}");
                None
            }
        }
    }

    /// Admins and readers of the running config, or the image's trust
    /// roots in maintenance mode.
    pub fn policy(&self, state: &ConfigState) -> TrustRoots {
        state
            .current
            .as_ref()
            .and_then(|c| c.policy.clone())
            .unwrap_or_else(|| self.image_trust.clone())
    }

    /// Verify a signed document against the running trust policy, the
    /// generation (anti-replay, anti-rollback), the image's floor, and its
    /// `[scope]` (this node, this time).
    pub fn verify(
        &self,
        state: &ConfigState,
        config: &[u8],
        signatures: &[u8],
        node: (&NodeIdentity, TrustedTime),
    ) -> Result<VerifiedConfig, SignedConfigError> {
        let trust = self.policy(state);
        let admission = Admission {
            trust: &trust,
            current_generation: state.current.as_ref().map_or(0, |c| c.config.generation),
            image: self.image_policy,
            node: Some(node),
        };
        verify_and_parse(config, signatures, &admission)
    }

    /// Persist `doc` as the current generation.
    pub fn commit(
        &self,
        state: &mut ConfigState,
        config: MachineConfig,
        doc: &SignedDoc,
        signers: Vec<String>,
    ) -> Result<(), StateError> {
        self.store.commit(config.generation, doc)?;
        state.current = Some(Applied::new(config, &doc.config, signers));
        Ok(())
    }

    /// Back to the previous generation (a `try` that was not confirmed).
    pub fn rollback(&self, state: &mut ConfigState) -> Result<(), StateError> {
        self.store.rollback()?;
        state.current = self.load_current();
        Ok(())
    }

    pub fn resources(&self, state: &ConfigState) -> Vec<Resource> {
        let cur = state.current.as_ref();
        vec![Resource::new(
            Concern::Config,
            "machine-config",
            cur.is_some() && state.pending_try.is_none(),
            ResourceState::Config {
                generation: cur.map_or(0, |c| c.config.generation),
                sha256: cur.map(|c| c.sha256.clone()),
                staged_generation: self.store.generation(Slot::Staged),
                try_pending: state.pending_try.is_some(),
            },
        )]
    }
}

/// A stored config was verified when it was applied; STATE is machined's
/// own storage. Re-verify to name the signers, but a config whose signers
/// were rotated out by that very config still loads.
fn load_trusted(doc: &SignedDoc, image: &TrustRoots) -> Option<Applied> {
    let config = match MachineConfig::parse(&doc.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("stored config is invalid, ignoring it:\n{e}");
            return None;
        }
    };
    let own = config.trust_roots().ok();
    let signers = [own.as_ref(), Some(image)]
        .into_iter()
        .flatten()
        .find_map(|p| p.verify_document(&doc.config, &doc.signatures).ok())
        .map(|s| s.iter().map(|x| x.to_string()).collect())
        .unwrap_or_else(|| vec!["(verified at apply; signer keys since rotated)".to_string()]);
    Some(Applied::new(config, &doc.config, signers))
}

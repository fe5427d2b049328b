//! The [`SlotWriter`] of a disk-booted node: upgrades and rollbacks on its
//! boot disk and ESP, and the anti-rollback counter kept in STATE.

use super::{BootEntry, Payload, SlotError, install, rollback};
use crate::bootdisk::BootDisk;
use crate::host::Host;
use crate::host::disk::Disks;
use crate::host::esp::BootEntries;
use crate::upgrade::{SlotWriter, UpgradeError, UpgradeOutcome, VerifiedBundle};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// `upgrade.json` in STATE: the counter of the last upgrade that booted
/// healthy, and the one written but not yet blessed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub installed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub counter: u64,
    pub version: String,
}

pub struct DiskSlots {
    pub disks: Arc<dyn Disks>,
    pub esp: Arc<dyn BootEntries>,
    pub disk: Mutex<BootDisk>,
    pub entry: BootEntry,
    /// A counted boot not yet blessed: no upgrade on top of it.
    pub trial: AtomicBool,
    pub host: Host,
    /// Node path of `upgrade.json`.
    pub counters_path: String,
}

impl DiskSlots {
    pub fn counters(&self) -> Counters {
        self.host
            .read(&self.counters_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, c: &Counters) {
        let bytes = serde_json::to_vec_pretty(c).unwrap_or_default();
        if let Err(e) = self.host.write_atomic(&self.counters_path, &bytes, 0o600) {
            tracing::error!("recording the upgrade counter: {e}");
        }
    }

    /// Called once this boot is blessed: a pending upgrade to the running
    /// version is now the installed one.
    pub fn blessed(&self, version: &str) {
        self.trial.store(false, Ordering::SeqCst);
        let mut c = self.counters();
        if let Some(p) = c.pending.take_if(|p| p.version == version) {
            c.installed = c.installed.max(p.counter);
            self.save(&c);
        }
    }
}

fn slot_error(e: SlotError) -> UpgradeError {
    UpgradeError::Slot(e.to_string())
}

impl SlotWriter for DiskSlots {
    fn installed_counter(&self) -> u64 {
        self.counters().installed
    }

    fn install(
        &self,
        bundle: &VerifiedBundle,
        spool: &Path,
        stage: bool,
    ) -> Result<UpgradeOutcome, UpgradeError> {
        let m = bundle.manifest().manifest();
        let p = bundle.payloads();
        let payload = Payload {
            spool,
            version: m.version.as_str(),
            uki: (p.uki.offset, p.uki.size),
            root: (p.root.offset, p.root.size),
            root_sha256: m.root.sha256.0,
        };
        let mut disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        let done = install(
            self.disks.as_ref(),
            self.esp.as_ref(),
            &mut disk,
            &self.entry,
            self.trial.load(Ordering::SeqCst),
            &payload,
        )
        .map_err(slot_error)?;
        let mut c = self.counters();
        c.pending = Some(Pending {
            counter: m.counter,
            version: m.version.as_str().to_string(),
        });
        self.save(&c);
        Ok(UpgradeOutcome {
            slot: done.slot.to_string(),
            reboot: !stage,
        })
    }

    fn rollback(&self) -> Result<UpgradeOutcome, UpgradeError> {
        let previous = rollback(self.esp.as_ref(), &self.entry).map_err(slot_error)?;
        tracing::warn!("rolling back to {}", previous.file_name());
        let disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        Ok(UpgradeOutcome {
            slot: disk.slot.other().to_string(),
            reboot: true,
        })
    }
}

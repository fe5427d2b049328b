//! A/B slots and boot assessment on a disk-booted node.
//!
//! systemd-boot tries a new entry `basalt-<v>+3.efi` up to three times
//! (renaming it before each start) and falls back to the previous entry
//! once no tries are left. machined judges each counted boot: once the node
//! is healthy (API up, configured services ready) it blesses the entry
//! (renames it without the counter, the file `LoaderBootCountPath` names);
//! if the node is not healthy in time it marks the entry bad and reboots, so
//! the previous one boots at once. An old system that finds a newer entry
//! marked bad reports that the upgrade failed and it rolled back.

use crate::host::esp::BootEntries;
use basalt_api::disk_layout::{BootCounter, UkiName};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// What this boot is, from systemd-boot's variables and the ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    /// The entry that booted (`LoaderEntrySelected`, its name before
    /// systemd-boot's rename), if systemd-boot booted us.
    pub selected: Option<UkiName>,
    /// The file to rename when this boot is judged (`LoaderBootCountPath`):
    /// present only on a counted (trial) boot.
    pub counted: Option<UkiName>,
}

impl BootEntry {
    /// From the two variables' values (`\EFI\Linux\basalt-2+0-1.efi`).
    pub fn from_vars(selected: Option<&str>, count_path: Option<&str>) -> BootEntry {
        let file = |p: &str| UkiName::parse(p.rsplit(['\\', '/']).next().unwrap_or(p));
        BootEntry {
            selected: selected.and_then(file),
            counted: count_path.and_then(file),
        }
    }

    /// The running image's version, as its entry names it.
    pub fn version(&self) -> Option<&str> {
        self.counted
            .as_ref()
            .or(self.selected.as_ref())
            .map(|n| n.version.as_str())
    }

    /// The running entry's file name on the ESP now.
    pub fn file_name(&self) -> Option<String> {
        self.counted
            .as_ref()
            .or(self.selected.as_ref())
            .map(UkiName::file_name)
    }
}

/// How this boot stands with boot counting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Assessment {
    /// A blessed entry (or no systemd-boot): nothing to judge.
    NotCounted,
    /// A trial boot waiting to be judged, with the tries systemd-boot has left.
    Trial {
        tries_left: u32,
    },
    Blessed,
    /// Judged bad: the previous entry boots next.
    MarkedBad {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error(transparent)]
    Esp(#[from] crate::host::esp::EspError),
    #[error(transparent)]
    Disk(#[from] crate::host::disk::DiskError),
    #[error(transparent)]
    BootDisk(#[from] crate::bootdisk::BootDiskError),
    /// Checked before anything is written: the node is unchanged.
    #[error("{0}")]
    Refused(String),
    /// Found after writing began (a read-back mismatch): the inactive slot
    /// holds no bootable entry, the running system is untouched.
    #[error("{0}")]
    Failed(String),
}

/// A verified upgrade's parts, in the spool file the API wrote.
#[derive(Debug, Clone)]
pub struct Payload<'a> {
    pub spool: &'a std::path::Path,
    pub version: &'a str,
    /// (offset, size) of the UKI in the spool file.
    pub uki: (u64, u64),
    /// (offset, size) of the root image in the spool file.
    pub root: (u64, u64),
    pub root_sha256: [u8; 32],
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub slot: crate::bootdisk::Slot,
    /// False when the new UKI boots the running root image (same digest):
    /// nothing was written to a slot.
    pub root_written: bool,
    /// The new entry's file name (`basalt-<v>+3.efi`).
    pub entry: String,
}

/// Writes an upgrade: the root image into the inactive slot (unless it is
/// the running one), then the UKI as a counted entry, last, so that until
/// that rename nothing the firmware can see has changed. Refuses before
/// writing anything when the upgrade could not boot or be told apart.
pub fn install(
    disks: &dyn crate::host::disk::Disks,
    esp: &dyn BootEntries,
    bd: &mut crate::bootdisk::BootDisk,
    running: &BootEntry,
    trial_pending: bool,
    p: &Payload<'_>,
) -> Result<Installed, SlotError> {
    use basalt_api::disk_layout::{derived, root_slot_guid};
    let refuse = |m: String| Err(SlotError::Refused(m));
    let Some(running_name) = running.file_name() else {
        return refuse("this boot was not started by systemd-boot, so an upgrade could not be tried and fall back; boot the node from its disk".into());
    };
    let running_version = running.version().unwrap_or_default();
    if trial_pending {
        return refuse(format!(
            "the running entry {running_name} is still on trial; wait until it is blessed (status)"
        ));
    }
    if version_cmp(p.version, running_version) != Ordering::Greater {
        return refuse(format!(
            "version {} does not sort after the running {running_version}: systemd-boot would never choose it",
            p.version
        ));
    }
    let target = bd.slot.other();
    let n = target.number();
    let Some(part) = bd.table.partitions.get(&n).cloned() else {
        return refuse(format!(
            "the boot disk has no slot {target} (partition {n})"
        ));
    };
    if p.root.1 > part.size() {
        return refuse(format!(
            "the root image is {} bytes; slot {target} holds {}",
            p.root.1,
            part.size()
        ));
    }
    let new_guid = root_slot_guid(&p.root_sha256);
    let running_guid = bd
        .table
        .partitions
        .get(&bd.slot.number())
        .map(|r| r.unique_guid);
    // Only the running entry stays: the old fallback names the slot we are
    // about to overwrite.
    for e in esp.list()? {
        if e != running_name && UkiName::parse(&e).is_some() {
            esp.remove(&e)?;
        }
    }
    let root_written = running_guid != Some(new_guid);
    if root_written {
        let dev = bd.device(disks, n, bd.wait)?;
        // While it is written the slot answers to no UKI's GUID.
        set_slot_guid(
            disks,
            bd,
            n,
            derived(b"slot being written", &bd.table.disk_guid.0),
        )?;
        tracing::info!(
            "writing {} bytes of root image to slot {target} ({dev})",
            p.root.1
        );
        disks.copy_in_at(p.spool, p.root.0, p.root.1, &dev, 0)?;
        if disks.sha256(&dev, p.root.1)? != p.root_sha256 {
            return Err(SlotError::Failed(format!(
                "slot {target} ({dev}) does not read back the root image written to it"
            )));
        }
        set_slot_guid(disks, bd, n, new_guid)?;
    }
    let entry = trial_name(p.version).file_name();
    esp.write(&entry, p.spool, p.uki.0, p.uki.1)?;
    tracing::info!(
        "upgrade to {} written: slot {target}, entry {entry}",
        p.version
    );
    Ok(Installed {
        slot: target,
        root_written,
        entry,
    })
}

fn set_slot_guid(
    disks: &dyn crate::host::disk::Disks,
    bd: &mut crate::bootdisk::BootDisk,
    n: u32,
    guid: basalt_api::gpt::Guid,
) -> Result<(), SlotError> {
    let mut t = bd.table.clone();
    if let Some(p) = t.partitions.get_mut(&n) {
        p.unique_guid = guid;
    }
    disks.write_table(&bd.disk, &t)?;
    bd.table = t;
    Ok(())
}

/// Returns to the previous entry: the running one is marked bad (so it
/// sorts last) and the newest other good entry boots next.
pub fn rollback(esp: &dyn BootEntries, running: &BootEntry) -> Result<UkiName, SlotError> {
    let (Some(name), Some(version)) = (running.file_name(), running.version()) else {
        return Err(SlotError::Refused(
            "this boot was not started by systemd-boot; there is no entry to return from".into(),
        ));
    };
    let entries = esp.list()?;
    let Some(previous) = previous_entry(&entries, version) else {
        return Err(SlotError::Refused(format!(
            "no previous boot entry to return to (entries: {})",
            entries.join(", ")
        )));
    };
    let current = UkiName::parse(&name).unwrap_or_else(|| UkiName::new(version, None));
    esp.rename(&name, &current.marked_bad().file_name())?;
    Ok(previous)
}

/// Blesses the counted entry: the same name without the counter.
pub fn bless(esp: &dyn BootEntries, counted: &UkiName) -> Result<UkiName, SlotError> {
    let blessed = counted.blessed();
    esp.rename(&counted.file_name(), &blessed.file_name())?;
    Ok(blessed)
}

/// Marks the counted entry bad: no tries left, so it sorts last.
pub fn mark_bad(esp: &dyn BootEntries, counted: &UkiName) -> Result<UkiName, SlotError> {
    let bad = counted.marked_bad();
    esp.rename(&counted.file_name(), &bad.file_name())?;
    Ok(bad)
}

/// What a system that is running `running` learns from the ESP's entries:
/// a newer entry marked bad is an upgrade that failed and rolled back.
pub fn rolled_back(entries: &[String], running: &str) -> Option<String> {
    entries
        .iter()
        .filter_map(|e| UkiName::parse(e))
        .filter(|n| n.is_bad() && version_cmp(&n.version, running) == Ordering::Greater)
        .max_by(|a, b| version_cmp(&a.version, &b.version))
        .map(|n| {
            let tries = n.counter.map_or(0, |c| c.done);
            if tries == 0 {
                return format!(
                    "rolled back from {} by request (entry {}); running {running}",
                    n.version,
                    n.file_name()
                );
            }
            format!(
                "upgrade to {} failed ({} boot{} tried, entry {}); rolled back to {running}",
                n.version,
                tries,
                if tries == 1 { "" } else { "s" },
                n.file_name()
            )
        })
}

/// The entry `rollback` returns to: the newest good entry other than the
/// running one.
pub fn previous_entry(entries: &[String], running: &str) -> Option<UkiName> {
    entries
        .iter()
        .filter_map(|e| UkiName::parse(e))
        .filter(|n| !n.is_bad() && n.version != running)
        .max_by(|a, b| version_cmp(&a.version, &b.version))
}

/// The name a new entry gets: counted, [`basalt_api::disk_layout::UPGRADE_TRIES`] tries.
pub fn trial_name(version: &str) -> UkiName {
    UkiName::new(
        version,
        Some(BootCounter {
            left: basalt_api::disk_layout::UPGRADE_TRIES,
            done: 0,
        }),
    )
}

/// Version order as systemd-boot sorts entries (`strverscmp_improved`,
/// for the characters a Basalt version may hold): runs of digits compare
/// as numbers, letters as text, digits after letters; other separators do
/// not count; `~` sorts before everything, even the end (a pre-release),
/// `^` after the end but before anything else (a post-release).
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (ta, tb) = (version_tokens(a), version_tokens(b));
    let mut i = 0;
    loop {
        match (ta.get(i), tb.get(i)) {
            (None, None) => return Ordering::Equal,
            (x, y) if x != y => return token_rank(x).cmp(&token_rank(y)),
            _ => i += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Token {
    Tilde,
    Caret,
    Alpha(String),
    /// Leading zeros dropped: `007` is 7.
    Num(usize, String),
}

fn version_tokens(v: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == '~' || c == '^' {
            out.push(if c == '~' { Token::Tilde } else { Token::Caret });
            chars.next();
        } else if c.is_ascii_alphanumeric() {
            let digit = c.is_ascii_digit();
            let mut run = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_alphanumeric() && d.is_ascii_digit() == digit {
                    run.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(if digit {
                let n = run.trim_start_matches('0').to_string();
                Token::Num(n.len(), n)
            } else {
                Token::Alpha(run)
            });
        } else {
            chars.next();
        }
    }
    out
}

/// Where a token (or the end, `None`) sorts among the others.
fn token_rank(t: Option<&Token>) -> (u8, Option<&Token>) {
    match t {
        Some(Token::Tilde) => (0, None),
        None => (1, None),
        Some(Token::Caret) => (2, None),
        Some(other) => (3, Some(other)),
    }
}

/// How long a trial boot has to become healthy before it is marked bad,
/// unless `basalt.bless_timeout=<seconds>` says otherwise.
pub const BLESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Healthy enough to keep: the API answers (this runs inside it) and, once
/// configured, every configured service is ready and the links are up.
fn healthy(st: &basalt_api::rpc::Status) -> Result<(), String> {
    if st.mode == basalt_api::rpc::NodeMode::Maintenance || st.ready {
        Ok(())
    } else {
        Err(st.not_ready.clone().unwrap_or_else(|| "not ready".into()))
    }
}

/// Judges this boot and keeps `status` told: a counted boot is blessed once
/// [`healthy`], or marked bad after `timeout` and the node rebooted.
pub async fn assess(
    node: std::sync::Arc<crate::node::Node>,
    slots: std::sync::Arc<disk_slots::DiskSlots>,
    mut status: basalt_api::rpc::BootStatus,
    timeout: std::time::Duration,
) {
    let esp = std::sync::Arc::clone(&slots.esp);
    let entry = slots.entry.clone();
    status.entry = entry.file_name();
    status.version = entry.version().map(str::to_string);
    if let Some(v) = entry.version() {
        match esp.list() {
            Ok(list) => status.last_upgrade = rolled_back(&list, v),
            Err(e) => tracing::warn!("listing boot entries: {e}"),
        }
        if let Some(u) = &status.last_upgrade {
            tracing::warn!("{u}");
        }
    }
    let Some(counted) = entry.counted.clone() else {
        status.assessment = if entry.selected.is_some() {
            "blessed".into()
        } else {
            "not counted (not booted by systemd-boot)".into()
        };
        node.set_boot(status);
        return;
    };
    let left = counted.counter.map_or(0, |c| c.left);
    status.assessment = format!("trial ({left} tries left)");
    node.set_boot(status.clone());
    tracing::info!(
        "trial boot of {}: blessing it once healthy (within {}s)",
        counted.file_name(),
        timeout.as_secs()
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let why = loop {
        match healthy(&node.status().await) {
            Ok(()) => break None,
            Err(why) if tokio::time::Instant::now() >= deadline => break Some(why),
            Err(_) => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
        }
    };
    let Some(why) = why else {
        match bless(esp.as_ref(), &counted) {
            Ok(blessed) => {
                tracing::info!("healthy: blessed {}", blessed.file_name());
                slots.blessed(&blessed.version);
                status.entry = Some(blessed.file_name());
                status.assessment = "blessed".into();
            }
            Err(e) => {
                tracing::error!("blessing {}: {e}", counted.file_name());
                status.assessment = format!("trial; blessing failed: {e}");
            }
        }
        node.set_boot(status);
        return;
    };
    let reason = format!("not healthy after {}s: {why}", timeout.as_secs());
    tracing::error!(
        "trial boot of {}: {reason}; marking it bad and rebooting",
        counted.file_name()
    );
    if let Err(e) = mark_bad(esp.as_ref(), &counted) {
        tracing::error!("marking {} bad: {e}", counted.file_name());
    }
    status.assessment = format!("marked bad: {reason}");
    node.set_boot(status);
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    node.request_power(crate::host::power::PowerEvent::Reboot);
}

pub mod disk_slots;

#[cfg(test)]
mod tests;

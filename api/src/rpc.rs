//! JSON bodies of the node API (`/v1/…`), shared by machined and basaltctl.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NonceResponse {
    pub nonce: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyMode {
    /// Apply now; reboot only if the change needs it.
    #[default]
    Auto,
    /// Apply now; refuse if the change needs a reboot.
    NoReboot,
    /// Persist, then reboot into it.
    Reboot,
    /// Persist; apply at the next boot.
    Staged,
    /// Apply now; roll back unless confirmed before the timeout.
    Try,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The config document, exactly as signed.
    pub config: String,
    /// The `.sig` file: one or more armored SSHSIG blocks.
    pub signatures: String,
    #[serde(default)]
    pub mode: ApplyMode,
    #[serde(default)]
    pub dry_run: bool,
    /// For `try`: seconds before an unconfirmed config rolls back.
    #[serde(default)]
    pub try_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub generation: u64,
    pub mode: ApplyMode,
    pub dry_run: bool,
    /// Human-readable steps the node takes (or would take).
    pub plan: Vec<String>,
    pub reboot_required: bool,
    pub signers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub hostname: String,
    /// `maintenance` (no config yet) or `configured`.
    pub mode: String,
    pub generation: u64,
    /// sha256 of the applied config document.
    pub config_sha256: Option<String>,
    pub signers: Vec<String>,
    pub boot_id: String,
    /// Where STATE lives, or `ram` when no STATE was found.
    pub state: String,
    /// The configured services are ready and the network is configured.
    pub ready: bool,
    /// Why `ready` is false (absent when ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<String>,
    pub staged_generation: Option<u64>,
    /// Seconds left before an unconfirmed `try` apply rolls back.
    pub try_pending_secs: Option<u64>,
    pub tls_fingerprint: String,
}

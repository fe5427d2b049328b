//! Basalt's shared vocabulary: the machine config schema and its validation,
//! OpenSSH keys and SSHSIG signatures, and the trust policy a node applies to
//! a signed config. Nothing here touches Linux, so every rule can be tested
//! anywhere.

pub mod config;
pub mod diff;
pub mod disk_layout;
pub mod gpt;
pub mod image_layout;
pub mod request;
pub mod route;
pub mod rpc;
pub mod scope;
pub mod secret;
pub mod signed;
pub mod sshkey;
pub mod sshsig;
pub mod text_position;
pub mod tls_pin;
pub mod trust;
pub mod upgrade;
mod wire;

/// The largest config document (and signature file) a node will look at.
/// Checked before anything parses the bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The SSHSIG namespace every config signature must carry, so a signature
/// made for another purpose (e.g. `git`, `file`) can never apply a config.
pub const CONFIG_NAMESPACE: &str = "basalt-config";

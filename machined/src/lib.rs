//! machined: Basalt's PID 1. See DESIGN.md "Boot sequence".
//!
//! Architecture: [`node::Node`] is a thin registry of [`controllers`], one
//! per concern, each owning its desired state (from the applied config) and
//! its observed state; an apply runs verify → plan → persist → converge
//! through them. Every side effect on the host goes through [`host`] (and
//! the few boundary modules it names), so the logic in the other modules
//! runs unprivileged in tests against a temp directory
//! (`machined --dev-root DIR`, see [`devmode`]) or a recording fake
//! ([`host::recording`]). `tests/boundary.rs` checks that claim.

pub mod api_views;
pub mod auth;
pub mod bootdisk;
pub mod containerd;
pub mod controllers;
pub mod devmode;
pub mod host;
pub mod installer;
pub mod kubernetes;
pub mod listen;
pub mod lock;
pub mod log_policy;
pub mod metrics;
pub mod network;
pub mod node;
pub mod peers;
pub mod pid1;
pub mod registries;
pub mod server;
pub mod slots;
pub mod state;
pub mod supervisor;
pub mod tls;
pub mod upgrade;

//! machined: Basalt's PID 1. See DESIGN.md "Boot sequence".
//!
//! Everything that touches the host goes through [`host`], so the logic in
//! the other modules runs unprivileged in tests against a temp directory
//! (`machined --dev-root DIR`, see [`devmode`]).

pub mod api_views;
pub mod auth;
pub mod containerd;
pub mod converge;
pub mod devmode;
pub mod host;
pub mod inspect;
pub mod network;
pub mod node;
pub mod peers;
pub mod pid1;
pub mod server;
pub mod state;
pub mod supervisor;
pub mod tls;

//! An apply's plan: typed steps, one per change a controller will make.
//! The wire (`ApplyResponse.plan`) carries their `Display` text.

use basalt_api::config::{FileOp, Role};
use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanStep {
    /// The machine's role changes: only a reboot can do that.
    Role {
        from: Role,
        to: Role,
    },
    /// Install settings change: they take effect at the next boot.
    Install,
    /// The installer wrote a Basalt disk (from the ISO); it boots next.
    Installed {
        summary: String,
    },
    /// A dry run's install (from the ISO): the disk it would write.
    WouldInstall {
        disk: String,
    },
    Hostname {
        to: String,
        from: String,
    },
    Sysctl {
        key: String,
        value: String,
    },
    File {
        op: FileOp,
        path: String,
        mode: u32,
        bytes: usize,
    },
    ResolvConf {
        nameservers: Vec<IpAddr>,
    },
    KernelModule(String),
    /// A Kubernetes certificate or kubeconfig is (re)issued.
    Certificate(String),
    /// A Kubernetes service starts, restarts (its settings changed) or stops.
    Service {
        name: String,
        action: ServiceAction,
    },
    /// A staged apply: nothing changes until the next boot.
    Staged {
        generation: u64,
    },
    Reboot,
    /// Persisted, but a controller failed to converge.
    ConvergeError(String),
    /// A `try` apply: rolled back unless confirmed in time.
    RollBackUnlessConfirmed {
        secs: u64,
    },
    NoChanges,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    Start,
    Restart,
    Stop,
}

impl PlanStep {
    /// Steps that only a reboot can carry out.
    pub fn needs_reboot(&self) -> bool {
        matches!(
            self,
            PlanStep::Role { .. }
                | PlanStep::Install
                | PlanStep::Installed { .. }
                | PlanStep::WouldInstall { .. }
        )
    }
}

impl fmt::Display for PlanStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanStep::Role { from, to } => write!(f, "role {from:?} -> {to:?} (reboot)"),
            PlanStep::Install => f.write_str("install settings changed (reboot)"),
            PlanStep::Installed { summary } => write!(f, "{summary} (reboot into it)"),
            PlanStep::WouldInstall { disk } => {
                write!(f, "would install to {disk} (reboot into it)")
            }
            PlanStep::Hostname { to, from } => write!(f, "set hostname {to} (was {from})"),
            PlanStep::Sysctl { key, value } => write!(f, "sysctl {key} = {value}"),
            PlanStep::File {
                op,
                path,
                mode,
                bytes,
            } => {
                let op = format!("{op:?}").to_lowercase();
                write!(f, "{op} {path} (mode {mode:o}, {bytes} bytes)")
            }
            PlanStep::ResolvConf { nameservers } => {
                let ns: Vec<String> = nameservers.iter().map(ToString::to_string).collect();
                write!(f, "resolv.conf: nameservers [{}]", ns.join(", "))
            }
            PlanStep::KernelModule(m) => write!(f, "require kernel module {m}"),
            PlanStep::Certificate(c) => f.write_str(c),
            PlanStep::Service { name, action } => match action {
                ServiceAction::Start => write!(f, "start service {name}"),
                ServiceAction::Restart => {
                    write!(f, "restart service {name} (its settings changed)")
                }
                ServiceAction::Stop => write!(f, "stop service {name}"),
            },
            PlanStep::Staged { generation } => {
                write!(f, "staged generation {generation} for the next boot")
            }
            PlanStep::Reboot => f.write_str("reboot"),
            PlanStep::ConvergeError(e) => write!(f, "converge error: {e}"),
            PlanStep::RollBackUnlessConfirmed { secs } => {
                write!(f, "roll back unless confirmed within {secs}s")
            }
            PlanStep::NoChanges => f.write_str("no changes"),
        }
    }
}

/// The wire form of a plan.
pub fn render(steps: &[PlanStep]) -> Vec<String> {
    steps.iter().map(ToString::to_string).collect()
}

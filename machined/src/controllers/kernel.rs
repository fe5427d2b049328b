//! The kernel controller: host name, sysctls and required kernel modules.
//! Desired state: the applied config's `machine.hostname`,
//! `machine.sysctls`, `machine.kernel.modules`; observed: the kernel's, read
//! through [`Host`].

use super::plan::PlanStep;
use super::resources::{Concern, Resource, ResourceState};
use crate::host::Host;
use basalt_api::config::MachineConfig;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "machine.kernel.modules: {name} is not loaded and this image does not provide it; add it to the image profile's [kernel] modules"
    )]
    Module { name: String },
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
}

#[derive(Debug, Clone)]
pub struct KernelController {
    host: Host,
}

impl KernelController {
    pub fn new(host: Host) -> Self {
        Self { host }
    }

    pub fn plan(&self, old: Option<&MachineConfig>, new: &MachineConfig) -> Vec<PlanStep> {
        let mut steps = Vec::new();
        if let Some(old) = old {
            if old.machine.role != new.machine.role {
                steps.push(PlanStep::Role {
                    from: old.machine.role,
                    to: new.machine.role,
                });
            }
            if old.machine.install != new.machine.install {
                steps.push(PlanStep::Install);
            }
        }
        if let Some(h) = &new.machine.hostname {
            let cur = self.host.hostname();
            if &cur != h {
                steps.push(PlanStep::Hostname {
                    to: h.clone(),
                    from: cur,
                });
            }
        }
        for (k, v) in &new.machine.sysctls {
            if self.host.read_sysctl(k).as_deref() != Some(v.as_str()) {
                steps.push(PlanStep::Sysctl {
                    key: k.clone(),
                    value: v.clone(),
                });
            }
        }
        steps
    }

    /// Modules ship in the image and are loaded at boot from its list; a
    /// config can only require one the image provides.
    pub fn check(&self, new: &MachineConfig) -> Result<(), KernelError> {
        for m in &new.machine.kernel.modules {
            if !self.host.module_present(m) {
                return Err(KernelError::Module { name: m.clone() });
            }
        }
        Ok(())
    }

    /// Steps for modules the new config requires and the old did not.
    pub fn plan_modules(&self, old: Option<&MachineConfig>, new: &MachineConfig) -> Vec<PlanStep> {
        new.machine
            .kernel
            .modules
            .iter()
            .filter(|m| !old.is_some_and(|o| o.machine.kernel.modules.contains(m)))
            .map(|m| PlanStep::KernelModule(m.clone()))
            .collect()
    }

    pub fn converge(&self, cfg: &MachineConfig) -> Result<(), KernelError> {
        if let Some(h) = &cfg.machine.hostname {
            self.host.set_hostname(h)?;
        }
        for (k, v) in &cfg.machine.sysctls {
            self.host.write_sysctl(k, v)?;
        }
        Ok(())
    }

    pub fn resources(&self, cfg: Option<&MachineConfig>) -> Vec<Resource> {
        let observed = self.host.hostname();
        let desired = cfg.and_then(|c| c.machine.hostname.clone());
        let mut out = vec![Resource::new(
            Concern::Kernel,
            "hostname",
            desired.as_ref().is_none_or(|d| *d == observed),
            ResourceState::Hostname { desired, observed },
        )];
        for (key, value) in cfg.map(|c| &c.machine.sysctls).into_iter().flatten() {
            let observed = self.host.read_sysctl(key);
            out.push(Resource::new(
                Concern::Kernel,
                format!("sysctl/{key}"),
                observed.as_deref() == Some(value.as_str()),
                ResourceState::Sysctl {
                    desired: value.clone(),
                    observed,
                },
            ));
        }
        for m in cfg.map(|c| &c.machine.kernel.modules).into_iter().flatten() {
            let present = self.host.module_present(m);
            out.push(Resource::new(
                Concern::Kernel,
                format!("module/{m}"),
                present,
                ResourceState::KernelModule { present },
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;

//! The services controller: the services a configured node runs
//! (containerd today) and what the supervisor observes of them. Services
//! start once the node has a config (DESIGN.md "Boot sequence" step 7).

use super::resources::{Concern, Resource, ResourceState};
use crate::supervisor::{ServiceSpec, Supervisor};
use std::sync::atomic::{AtomicBool, Ordering};

pub struct ServicesController {
    supervisor: Supervisor,
    /// Desired: what runs once the node has a config.
    specs: Vec<ServiceSpec>,
    started: AtomicBool,
}

impl ServicesController {
    pub fn new(supervisor: Supervisor, specs: Vec<ServiceSpec>) -> Self {
        Self {
            supervisor,
            specs,
            started: AtomicBool::new(false),
        }
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Start the services once; a failure is reported and retried at the
    /// next converge.
    pub fn converge(&self) -> Result<(), crate::supervisor::SupervisorError> {
        if self.started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let started = self.supervisor.start(self.specs.clone());
        if started.is_err() {
            self.started.store(false, Ordering::SeqCst);
        }
        started
    }

    /// Ok when every configured service runs and passed its readiness
    /// check; else the first that did not, and why.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.specs.is_empty() && !self.started.load(Ordering::SeqCst) {
            return Err("services not started".into());
        }
        for spec in &self.specs {
            match self.supervisor.status(&spec.name) {
                Ok(s) if s.ready => {}
                Ok(s) => return Err(format!("service {} is not ready ({:?})", s.name, s.state)),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    pub fn resources(&self) -> Vec<Resource> {
        self.supervisor
            .list()
            .into_iter()
            .map(|s| {
                Resource::new(
                    Concern::Services,
                    s.name.clone(),
                    s.ready,
                    ResourceState::Service {
                        observed: (&s).into(),
                    },
                )
            })
            .collect()
    }
}

//! Services: start in dependency order, watch, restart with backoff, stop in reverse.
//!
//! DESIGN "Boot sequence" steps 7–9. A [`Supervisor`] runs [`ServiceSpec`]s on
//! the current tokio runtime:
//!
//! - [`Supervisor::start`] orders the specs by dependency (a cycle or an
//!   unknown dependency is an error and nothing starts); each service starts
//!   once all its dependencies are ready ([`Readiness`]).
//! - A service that exits is restarted after a capped exponential
//!   [`Backoff`]; the backoff resets after a run lasting
//!   [`Backoff::reset_window`].
//! - [`Supervisor::stop_all`] stops services in reverse start order: SIGTERM to
//!   the service's process group, SIGKILL after its `stop_grace`.
//! - stdout/stderr are kept per service in a ring buffer ([`Supervisor::logs`],
//!   [`Supervisor::follow`]) and logged via `tracing`.
//! - With a cgroup2 root, each service runs in `<root>/<name>` (joined before
//!   `exec`), with `memory.max`, `pids.max` and `memory.current`.
//!
//! Children are reaped by one process-wide reaper ([`init_reaper`]) that also
//! reaps orphans; outside PID 1 the process becomes a child subreaper. Every
//! other child machined spawns must go through [`spawn_reaped`].

mod cgroup;
pub mod http_probe;
mod logs;
mod process;
mod reaper;
mod service;
mod spawn;
mod spec;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, oneshot, watch};

pub use cgroup::{NODE_CGROUP_ROOT, ServiceUsage};
pub use http_probe::{HttpProbe, TlsVerify};
pub use logs::{LogLine, Stream};
pub use process::{OneShot, OneShotError, run_once};
pub use reaper::{ExitInfo, init_reaper, spawn_reaped};
pub use service::ServiceState;
pub use spec::{Backoff, DEFAULT_PIDS_MAX, Readiness, ServiceSpec};

use crate::host::signals::{self, GroupSignal, Signals};
use crate::log_policy::KnownSecrets;
use cgroup::Cgroups;
use service::{Control, Service};

/// Errors of the supervisor.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// A service name unusable as a cgroup name.
    #[error("invalid service name {0:?} (1-64 of [A-Za-z0-9._-])")]
    InvalidName(String),
    /// A spec without a program.
    #[error("service {0}: empty argv")]
    EmptyArgv(String),
    /// The same name twice, or the name of a service that is not stopped.
    #[error("service {0} is defined twice")]
    Duplicate(String),
    /// A dependency names no service.
    #[error("service {service} depends on unknown service {dependency}")]
    UnknownDependency {
        /// The depending service.
        service: String,
        /// The missing one.
        dependency: String,
    },
    /// A dependency cycle, as a path that returns to its start.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// No service of that name.
    #[error("no such service: {0}")]
    UnknownService(String),
    /// [`Supervisor::wait_ready`] timed out.
    #[error("service {0} not ready within {1:?}")]
    NotReady(String, Duration),
    /// Spawning a process failed.
    #[error("spawn failed: {0}")]
    Spawn(#[source] std::io::Error),
    /// The process-wide reaper could not be started.
    #[error("child reaper: {0}")]
    Reaper(String),
    /// Called outside a tokio runtime.
    #[error("the supervisor must be used within a tokio runtime")]
    NoRuntime,
}

/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Parent of the per-service cgroups, e.g. `/sys/fs/cgroup/basalt`
    /// (created if its parent is cgroup2). `None`, or a path not on cgroup2,
    /// means no cgroups.
    pub cgroup_root: Option<PathBuf>,
    /// Lines of output kept per service.
    pub log_lines: usize,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            cgroup_root: None,
            log_lines: 1000,
        }
    }
}

/// The state of one service, as reported by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Life-cycle state.
    pub state: ServiceState,
    /// Pid of the running process.
    pub pid: Option<u32>,
    /// How many times it was started again after its first start.
    pub restarts: u32,
    /// How its last run ended.
    pub last_exit: Option<ExitInfo>,
    /// The last start failure, readiness timeout or kill failure.
    pub last_error: Option<String>,
    /// Whether its readiness check passed for the current run.
    pub ready: bool,
    /// `memory.current` of its cgroup, when cgroups with memory accounting are in use.
    pub memory_current: Option<u64>,
}

#[derive(Default)]
struct Services {
    /// Start order.
    order: Vec<String>,
    map: HashMap<String, Arc<Service>>,
}

struct Inner {
    log_lines: usize,
    /// Where stop and kill signals go.
    signals: Arc<dyn Signals>,
    cgroups: Option<Arc<Cgroups>>,
    services: Mutex<Services>,
    /// Redacted from every service's output ([`crate::log_policy`]).
    secrets: Arc<KnownSecrets>,
}

/// Supervises services; cheap to clone (all clones share the services).
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// Create a supervisor; starts the process-wide reaper if needed.
    pub fn new(config: SupervisorConfig) -> Result<Self, SupervisorError> {
        init_reaper()?;
        let cgroups = Cgroups::detect(config.cgroup_root.as_deref()).map(Arc::new);
        Ok(Supervisor {
            inner: Arc::new(Inner {
                log_lines: config.log_lines,
                signals: Arc::new(signals::Linux),
                cgroups,
                services: Mutex::new(Services::default()),
                secrets: KnownSecrets::new(),
            }),
        })
    }

    /// The secrets redacted from the services' output: the node adds what
    /// it learns ([`crate::log_policy::KnownSecrets::learn`]).
    pub fn known_secrets(&self) -> &Arc<KnownSecrets> {
        &self.inner.secrets
    }

    fn services(&self) -> MutexGuard<'_, Services> {
        crate::lock::lock(&self.inner.services)
    }

    fn get(&self, name: &str) -> Result<Arc<Service>, SupervisorError> {
        self.services()
            .map
            .get(name)
            .cloned()
            .ok_or_else(|| SupervisorError::UnknownService(name.to_string()))
    }

    /// Add and start services (on the current tokio runtime). Each starts once
    /// its dependencies, which may be among earlier services, are ready. A
    /// stopped service may be replaced by a spec of the same name. On error
    /// nothing is started.
    pub fn start(&self, specs: Vec<ServiceSpec>) -> Result<(), SupervisorError> {
        tokio::runtime::Handle::try_current().map_err(|_| SupervisorError::NoRuntime)?;
        let mut services = self.services();
        let known: HashSet<String> = services.map.keys().cloned().collect();
        let active: HashSet<String> = services
            .map
            .iter()
            .filter(|(_, s)| s.control().is_some())
            .map(|(n, _)| n.clone())
            .collect();
        let order = spec::start_order(&specs, &active, &known)?;

        let mut slots: Vec<Option<ServiceSpec>> = specs.into_iter().map(Some).collect();
        let mut added = Vec::with_capacity(order.len());
        for i in order {
            let Some(spec) = slots.get_mut(i).and_then(Option::take) else {
                continue;
            };
            let name = spec.name.clone();
            let ready = services.map.get(&name).map(|old| old.ready.clone());
            let svc = Arc::new(Service::new(
                spec,
                self.inner.log_lines,
                ready,
                Arc::clone(&self.inner.signals),
                Arc::clone(&self.inner.secrets),
            ));
            services.order.retain(|n| n != &name);
            services.order.push(name.clone());
            services.map.insert(name, Arc::clone(&svc));
            added.push(svc);
        }
        for svc in added {
            let deps = dependency_watches(&services, &svc);
            svc.launch(deps, self.inner.cgroups.clone());
        }
        Ok(())
    }

    /// Wait until `name` is ready.
    pub async fn wait_ready(&self, name: &str, within: Duration) -> Result<(), SupervisorError> {
        let mut rx = self.get(name)?.ready.subscribe();
        match tokio::time::timeout(within, rx.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(SupervisorError::NotReady(name.to_string(), within)),
        }
    }

    /// Stop one service (TERM, grace, KILL) and keep it stopped. Returns once
    /// its process is gone. Its dependents are not stopped.
    pub async fn stop(&self, name: &str) -> Result<(), SupervisorError> {
        let svc = self.get(name)?;
        send(&svc, Control::Stop).await;
        Ok(())
    }

    /// Stop every service, in reverse start order, one after the other.
    pub async fn stop_all(&self) {
        let order: Vec<Arc<Service>> = {
            let services = self.services();
            services
                .order
                .iter()
                .rev()
                .filter_map(|n| services.map.get(n).cloned())
                .collect()
        };
        for svc in order {
            send(&svc, Control::Stop).await;
        }
    }

    /// Restart a service now (stopping its current run first, resetting its
    /// backoff), or start a stopped one again.
    pub async fn restart(&self, name: &str) -> Result<(), SupervisorError> {
        let svc = self.get(name)?;
        let running = svc.control().clone();
        match running {
            Some(_) => send(&svc, Control::Restart).await,
            None => {
                tokio::runtime::Handle::try_current().map_err(|_| SupervisorError::NoRuntime)?;
                let deps = dependency_watches(&self.services(), &svc);
                svc.launch(deps, self.inner.cgroups.clone());
            }
        }
        Ok(())
    }

    /// SIGKILL a service's process group, as a crash would (a debugging
    /// aid); the service restarts with backoff. The killed pid, or `None`
    /// when the service is not running.
    pub fn kill(&self, name: &str) -> Result<Option<u32>, SupervisorError> {
        let Some(pid) = self.status(name)?.pid else {
            return Ok(None);
        };
        process::signal_group(&*self.inner.signals, name, pid, GroupSignal::Kill);
        Ok(Some(pid))
    }

    /// Status of one service.
    pub fn status(&self, name: &str) -> Result<ServiceStatus, SupervisorError> {
        let svc = self.get(name)?;
        Ok(self.status_of(&svc))
    }

    /// Status of every service, in start order.
    pub fn list(&self) -> Vec<ServiceStatus> {
        let all: Vec<Arc<Service>> = {
            let services = self.services();
            services
                .order
                .iter()
                .filter_map(|n| services.map.get(n).cloned())
                .collect()
        };
        all.iter().map(|s| self.status_of(s)).collect()
    }

    /// What each service's cgroup has used, in start order; empty when
    /// services run without cgroups. A service that never ran has no
    /// cgroup yet and is left out.
    pub fn usage(&self) -> Vec<(String, ServiceUsage)> {
        let Some(cg) = &self.inner.cgroups else {
            return Vec::new();
        };
        let names: Vec<String> = self.services().order.clone();
        names
            .into_iter()
            .filter_map(|n| {
                let u = cg.usage(&n);
                (u != ServiceUsage::default()).then_some((n, u))
            })
            .collect()
    }

    fn status_of(&self, svc: &Service) -> ServiceStatus {
        let name = svc.spec.name.clone();
        let (state, pid, restarts, last_exit, last_error) = {
            let run = svc.run_state();
            (
                run.state,
                run.pid,
                run.restarts,
                run.last_exit,
                run.last_error.clone(),
            )
        };
        let memory_current = match (&self.inner.cgroups, pid) {
            (Some(cg), Some(_)) => cg.memory_current(&name),
            _ => None,
        };
        ServiceStatus {
            name,
            state,
            pid: pid.and_then(|p| u32::try_from(p.as_raw_nonzero().get()).ok()),
            restarts,
            last_exit,
            last_error,
            ready: *svc.ready.borrow(),
            memory_current,
        }
    }

    /// The buffered output of a service, oldest first.
    pub fn logs(&self, name: &str) -> Result<Vec<LogLine>, SupervisorError> {
        Ok(self.get(name)?.logs.snapshot())
    }

    /// New output of a service as it comes (a slow reader gets `Lagged`).
    pub fn follow(&self, name: &str) -> Result<broadcast::Receiver<LogLine>, SupervisorError> {
        Ok(self.get(name)?.logs.subscribe())
    }
}

fn dependency_watches(services: &Services, svc: &Service) -> Vec<(String, watch::Receiver<bool>)> {
    svc.spec
        .depends_on
        .iter()
        .filter_map(|d| {
            services
                .map
                .get(d)
                .map(|s| (d.clone(), s.ready.subscribe()))
        })
        .collect()
}

/// Send an order to the service task and wait for its acknowledgement; a
/// stopped service (no task) acknowledges implicitly.
async fn send(svc: &Service, order: fn(oneshot::Sender<()>) -> Control) {
    let (ack, done) = oneshot::channel();
    let sent = svc
        .control()
        .as_ref()
        .is_some_and(|tx| tx.send(order(ack)).is_ok());
    if sent {
        let _ = done.await;
    }
}

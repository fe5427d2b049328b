//! What a service is: [`ServiceSpec`], its readiness check and restart backoff,
//! plus validation and dependency ordering of a set of specs.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::SupervisorError;

/// How the supervisor decides that a started service is ready, so that the
/// services depending on it may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready as soon as the process is spawned.
    None,
    /// Ready once a connection to this unix stream socket is accepted.
    UnixSocket(PathBuf),
    /// Ready once a TCP connection to this address is accepted.
    Tcp(SocketAddr),
    /// Ready once this path exists.
    Path(PathBuf),
    /// Ready once this command exits 0, e.g. a client asking the service for
    /// its version over its socket (a socket that accepts is not yet a
    /// service that answers).
    Command(Vec<String>),
    /// Ready once an HTTP(S) `GET` answers 200; over TLS the server is
    /// verified against a CA (the Kubernetes components' `/readyz`).
    Http(super::http_probe::HttpProbe),
}

/// Capped exponential restart backoff: the `n`-th consecutive restart (from 0)
/// waits `initial × factor^n`, never more than `max`.
///
/// Every exit of a service that was not asked to stop is a failure,
/// whatever ended it: an exit code, a crash, a SIGKILL from outside, the
/// OOM killer. The count of consecutive failures is reset once a run stayed
/// up for at least [`Backoff::reset_window`] (10 × `initial`), and by an
/// explicit restart. (Tested in `tests/supervisor.rs`, by killing a service
/// 100 times in a row.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// Growth factor per consecutive failure (1 = constant delay).
    pub factor: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2,
        }
    }
}

impl Backoff {
    /// Delay before restart number `attempt` (0-based count of consecutive
    /// failures before this one).
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self.max;
        if self.factor <= 1 {
            return self.initial.min(cap);
        }
        let mut d = self.initial;
        for _ in 0..attempt {
            if d >= cap {
                break;
            }
            d = d.saturating_mul(self.factor);
        }
        d.min(cap)
    }

    /// How long a run must stay up for the failure count to reset.
    pub fn reset_window(&self) -> Duration {
        self.initial.saturating_mul(10)
    }
}

/// A long-running service supervised by machined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Unique name: `[A-Za-z0-9._-]`, 1–64 characters, not `.`/`..` (used as the cgroup name).
    pub name: String,
    /// Program and arguments; `argv[0]` is looked up in the `PATH` of `env`
    /// (default `/usr/sbin:/usr/bin:/sbin:/bin`) unless it contains a `/`.
    pub argv: Vec<String>,
    /// The complete environment of the service (machined's own is not inherited).
    pub env: Vec<(String, String)>,
    /// Working directory (default: machined's, i.e. `/`).
    pub cwd: Option<PathBuf>,
    /// Services that must be ready before this one starts.
    pub depends_on: Vec<String>,
    /// A condition probed (like readiness) once the dependencies are ready;
    /// the service starts when it passes. For a service that needs another
    /// one up but not fully ready: the kubelet on a control-plane node starts
    /// once the apiserver's port listens, not once its `/readyz` passes.
    pub start_when: Option<Readiness>,
    /// Readiness check.
    pub readiness: Readiness,
    /// How long a started service may take to become ready before it is
    /// killed and restarted with backoff.
    pub ready_timeout: Duration,
    /// Restart backoff. Services are always restarted when they exit, unless stopped.
    pub restart: Backoff,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub stop_grace: Duration,
    /// `memory.max` of the service's cgroup, in bytes.
    pub memory_max: Option<u64>,
    /// `pids.max` of the service's cgroup: how many processes and threads
    /// it may have at once, so a fork bomb fails its forks instead of
    /// exhausting the node's pids. `None` = no limit.
    pub pids_max: Option<u64>,
}

/// The default [`ServiceSpec::pids_max`]: far above what a service needs
/// (containerd with a shim of ~12 threads per pod for 110 pods is under
/// 1,500; the kernel's `pid_max` is 4,194,304 on 64-bit), far below what
/// takes a node down.
pub const DEFAULT_PIDS_MAX: u64 = 8192;

impl ServiceSpec {
    /// A spec with defaults: no dependencies, readiness `None`, 60 s ready
    /// timeout, default backoff, 10 s stop grace, no memory limit,
    /// [`DEFAULT_PIDS_MAX`] tasks.
    pub fn new(name: impl Into<String>, argv: Vec<String>) -> Self {
        ServiceSpec {
            name: name.into(),
            argv,
            env: Vec::new(),
            cwd: None,
            depends_on: Vec::new(),
            start_when: None,
            readiness: Readiness::None,
            ready_timeout: Duration::from_secs(60),
            restart: Backoff::default(),
            stop_grace: Duration::from_secs(10),
            memory_max: None,
            pids_max: Some(DEFAULT_PIDS_MAX),
        }
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Validate `specs` and return their indices in start order (dependencies
/// first, otherwise input order). Names must not clash with the `active`
/// services; dependencies may name any `known` service.
pub(crate) fn start_order(
    specs: &[ServiceSpec],
    active: &HashSet<String>,
    known: &HashSet<String>,
) -> Result<Vec<usize>, SupervisorError> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, spec) in specs.iter().enumerate() {
        if !valid_name(&spec.name) {
            return Err(SupervisorError::InvalidName(spec.name.clone()));
        }
        if spec.argv.is_empty() {
            return Err(SupervisorError::EmptyArgv(spec.name.clone()));
        }
        if active.contains(&spec.name) || index.insert(&spec.name, i).is_some() {
            return Err(SupervisorError::Duplicate(spec.name.clone()));
        }
    }
    for spec in specs {
        for dep in &spec.depends_on {
            if !index.contains_key(dep.as_str()) && !known.contains(dep) {
                return Err(SupervisorError::UnknownDependency {
                    service: spec.name.clone(),
                    dependency: dep.clone(),
                });
            }
        }
    }

    // Kahn's algorithm, always picking the first startable spec in input order.
    let mut done: BTreeSet<usize> = BTreeSet::new();
    let mut order = Vec::with_capacity(specs.len());
    while order.len() < specs.len() {
        let next = specs.iter().enumerate().find(|(i, spec)| {
            !done.contains(i)
                && spec.depends_on.iter().all(|d| match index.get(d.as_str()) {
                    Some(j) => done.contains(j),
                    None => true, // an existing service
                })
        });
        match next {
            Some((i, _)) => {
                done.insert(i);
                order.push(i);
            }
            None => return Err(SupervisorError::Cycle(find_cycle(specs, &index, &done))),
        }
    }
    Ok(order)
}

/// Every spec not `done` has a dependency among the not-done specs: walk
/// those edges until a name repeats; the walk from its first visit is a cycle.
fn find_cycle(
    specs: &[ServiceSpec],
    index: &BTreeMap<&str, usize>,
    done: &BTreeSet<usize>,
) -> Vec<String> {
    let Some(mut cur) = (0..specs.len()).find(|i| !done.contains(i)) else {
        return Vec::new();
    };
    let mut path: Vec<usize> = Vec::new();
    loop {
        if let Some(pos) = path.iter().position(|&p| p == cur) {
            let mut cycle: Vec<String> = path
                .iter()
                .skip(pos)
                .filter_map(|&i| specs.get(i).map(|s| s.name.clone()))
                .collect();
            if let Some(first) = cycle.first().cloned() {
                cycle.push(first);
            }
            return cycle;
        }
        path.push(cur);
        let next = specs.get(cur).and_then(|s| {
            s.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .find(|j| !done.contains(j))
        });
        match next {
            Some(n) => cur = n,
            // Unreachable by construction; report what we have.
            None => {
                return path
                    .iter()
                    .filter_map(|&i| specs.get(i).map(|s| s.name.clone()))
                    .collect();
            }
        }
    }
}

#[cfg(test)]
mod tests;

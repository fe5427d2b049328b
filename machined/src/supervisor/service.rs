//! One supervised service: its shared state and the task that drives its
//! life cycle `Waiting → Starting → Running → Backoff → … → Stopping → Stopped`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::process::{Pid, probe, signal_group};
use crate::host::signals::{GroupSignal, Signals};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::cgroup::Cgroups;
use super::logs::{LogBuffer, Stream, capture};
use super::reaper::ExitInfo;
use super::spawn::{Spawned, spawn_service};
use super::spec::{Readiness, ServiceSpec};

/// How soon readiness is first probed; each failed probe doubles the wait up
/// to [`READY_POLL_MAX`]. A fast service (a socket) is seen ready at once; a
/// slow one is not hammered: an HTTPS probe is a TLS handshake and a request
/// (the apiserver's `/readyz` asks etcd) that the starting service must
/// answer, 40 times a second at a fixed 25 ms.
const READY_POLL: Duration = Duration::from_millis(25);
const READY_POLL_MAX: Duration = Duration::from_millis(500);
/// How long to wait for a SIGKILLed process to be reaped before giving up.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Where a service is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Waiting for its dependencies to be ready.
    Waiting,
    /// Spawned, not ready yet.
    Starting,
    /// Running and ready.
    Running,
    /// Exited; waiting for the backoff delay before restarting.
    Backoff,
    /// Could not be started or did not become ready (see `last_error`);
    /// retried after the backoff delay.
    Failed,
    /// Being stopped (SIGTERM sent, SIGKILL after the grace).
    Stopping,
    /// Stopped on request; not restarted.
    Stopped,
}

#[derive(Debug)]
pub(crate) struct RunState {
    pub state: ServiceState,
    pub pid: Option<Pid>,
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    pub last_error: Option<String>,
    runs: u64,
}

pub(crate) enum Control {
    Stop(oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
}

pub(crate) struct Service {
    pub spec: ServiceSpec,
    pub run: Mutex<RunState>,
    pub logs: Arc<LogBuffer>,
    pub ready: watch::Sender<bool>,
    /// Present while the life-cycle task runs.
    pub control: Mutex<Option<mpsc::UnboundedSender<Control>>>,
    /// Where stop and kill signals go.
    signals: Arc<dyn Signals>,
}

impl Service {
    /// `ready` is reused when a stopped service is replaced, so that its
    /// dependents keep watching the same signal.
    pub fn new(
        spec: ServiceSpec,
        log_lines: usize,
        ready: Option<watch::Sender<bool>>,
        signals: Arc<dyn Signals>,
        secrets: Arc<crate::log_policy::KnownSecrets>,
    ) -> Self {
        let logs = Arc::new(LogBuffer::new(&spec.name, log_lines, secrets));
        Service {
            spec,
            run: Mutex::new(RunState {
                state: ServiceState::Waiting,
                pid: None,
                restarts: 0,
                last_exit: None,
                last_error: None,
                runs: 0,
            }),
            logs,
            ready: ready.unwrap_or_else(|| watch::channel(false).0),
            control: Mutex::new(None),
            signals,
        }
    }

    pub fn run_state(&self) -> MutexGuard<'_, RunState> {
        crate::lock::lock(&self.run)
    }

    pub fn control(&self) -> MutexGuard<'_, Option<mpsc::UnboundedSender<Control>>> {
        crate::lock::lock(&self.control)
    }

    fn set_state(&self, state: ServiceState) {
        let mut run = self.run_state();
        if run.state != state {
            tracing::info!(service = %self.spec.name, "{:?} -> {:?}", run.state, state);
            run.state = state;
        }
    }

    fn set_ready(&self, ready: bool) {
        self.ready
            .send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }

    /// Start the life-cycle task on the current runtime, unless it runs already.
    pub fn launch(
        self: &Arc<Self>,
        deps: Vec<(String, watch::Receiver<bool>)>,
        cgroups: Option<Arc<Cgroups>>,
    ) {
        let mut control = self.control();
        if control.is_some() {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *control = Some(tx);
        drop(control);
        self.set_state(ServiceState::Waiting);
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let acks = svc.life_cycle(deps, cgroups.as_deref(), rx).await;
            // Mark stopped before acknowledging, and drop the channel so later
            // requests see a stopped service.
            svc.set_ready(false);
            {
                let mut run = svc.run_state();
                run.pid = None;
                run.state = ServiceState::Stopped;
            }
            *svc.control() = None;
            tracing::info!(service = %svc.spec.name, "stopped");
            for ack in acks {
                let _ = ack.send(());
            }
        });
    }

    /// Runs until stopped; returns the acknowledgements to send once stopped.
    /// Each round: wait for dependencies, spawn, run to an outcome, act on it.
    async fn life_cycle(
        &self,
        mut deps: Vec<(String, watch::Receiver<bool>)>,
        cgroups: Option<&Cgroups>,
        mut ctl: mpsc::UnboundedReceiver<Control>,
    ) -> Vec<oneshot::Sender<()>> {
        let mut failures: u32 = 0;
        loop {
            if let Some(acks) = self.wait_for_dependencies(&mut deps, &mut ctl).await {
                return acks;
            }
            if let Some(acks) = self.wait_for_start_condition(&mut ctl).await {
                return acks;
            }
            let mut child = match self.spawn(cgroups) {
                Ok(child) => child,
                Err(e) => {
                    let delay = self.spec.restart.delay(failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(service = %self.spec.name, "start failed: {e}");
                    {
                        let mut run = self.run_state();
                        run.last_error = Some(e);
                        run.state = ServiceState::Failed;
                    }
                    match self.wait_backoff(delay, &mut ctl).await {
                        Some(acks) => return acks,
                        None => continue,
                    }
                }
            };
            let started = Instant::now();
            let outcome = self.run(&mut child, started, &mut ctl).await;
            self.set_ready(false);
            let next = self
                .after(outcome, child, started, &mut failures, cgroups, &mut ctl)
                .await;
            if let Some(acks) = next {
                return acks;
            }
        }
    }

    /// Wait until every dependency is ready. `Some(acks)`: stop instead.
    async fn wait_for_dependencies(
        &self,
        deps: &mut [(String, watch::Receiver<bool>)],
        ctl: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Option<Vec<oneshot::Sender<()>>> {
        let name = self.spec.name.as_str();
        self.set_state(ServiceState::Waiting);
        for (dep, rx) in deps.iter_mut() {
            if *rx.borrow() {
                continue;
            }
            tracing::info!(service = name, "waiting for {dep}");
            let mut alive = true;
            loop {
                tokio::select! {
                    changed = rx.wait_for(|r| *r), if alive => match changed {
                        Ok(_) => break,
                        // The dependency is gone for good: only orders can move us.
                        Err(_) => {
                            tracing::warn!(service = name, "dependency {dep} was removed");
                            alive = false;
                        }
                    },
                    msg = ctl.recv() => match msg {
                        None => return Some(Vec::new()),
                        Some(Control::Stop(ack)) => return Some(vec![ack]),
                        // Not running: nothing to restart, we start when ready.
                        Some(Control::Restart(ack)) => { let _ = ack.send(()); }
                    },
                }
            }
        }
        None
    }

    /// Wait until [`ServiceSpec::start_when`] passes, probing with the
    /// readiness backoff. `Some(acks)`: stop instead.
    async fn wait_for_start_condition(
        &self,
        ctl: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Option<Vec<oneshot::Sender<()>>> {
        let condition = self.spec.start_when.as_ref()?;
        let mut poll = READY_POLL;
        let mut said = false;
        loop {
            if probe(condition).await {
                return None;
            }
            if !said {
                tracing::info!(service = %self.spec.name, "waiting for {condition:?}");
                said = true;
            }
            tokio::select! {
                _ = sleep(poll) => poll = (poll * 2).min(READY_POLL_MAX),
                msg = ctl.recv() => match msg {
                    None => return Some(Vec::new()),
                    Some(Control::Stop(ack)) => return Some(vec![ack]),
                    Some(Control::Restart(ack)) => { let _ = ack.send(()); }
                },
            }
        }
    }

    /// Start one run in the service's cgroup (or without one if that
    /// fails) and capture its output.
    fn spawn(&self, cgroups: Option<&Cgroups>) -> Result<Spawned, String> {
        let name = self.spec.name.as_str();
        self.set_state(ServiceState::Starting);
        let cgroup =
            match cgroups.map(|c| c.prepare(name, self.spec.memory_max, self.spec.pids_max)) {
                Some(Ok(cg)) => Some(cg.procs),
                Some(Err(e)) => {
                    tracing::warn!(service = name, "cgroup setup failed, starting without: {e}");
                    None
                }
                None => None,
            };
        let spawned = spawn_service(&self.spec, cgroup);
        {
            let mut run = self.run_state();
            if run.runs > 0 {
                run.restarts = run.restarts.saturating_add(1);
            }
            run.runs = run.runs.saturating_add(1);
        }
        let mut child = spawned.map_err(|e| e.to_string())?;
        self.run_state().pid = Some(child.pid);
        tracing::info!(
            service = name,
            pid = child.pid.as_raw_nonzero().get(),
            "started"
        );
        if let Some(fd) = child.stdout.take() {
            capture(Arc::clone(&self.logs), Stream::Stdout, fd);
        }
        if let Some(fd) = child.stderr.take() {
            capture(Arc::clone(&self.logs), Stream::Stderr, fd);
        }
        Ok(child)
    }

    /// Run until exit, readiness timeout or an order.
    async fn run(
        &self,
        child: &mut Spawned,
        started: Instant,
        ctl: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Outcome {
        let ready_deadline = started + self.spec.ready_timeout;
        let mut ready = false;
        let mut poll = READY_POLL;
        if self.spec.readiness == Readiness::None {
            ready = true;
            self.set_ready(true);
            self.set_state(ServiceState::Running);
        }
        loop {
            tokio::select! {
                exit = &mut child.exit => return Outcome::Exited(exit.ok()),
                msg = ctl.recv() => match msg {
                    None => return Outcome::Stop(None),
                    Some(Control::Stop(ack)) => return Outcome::Stop(Some(ack)),
                    Some(Control::Restart(ack)) => return Outcome::Restart(ack),
                },
                _ = sleep(poll), if !ready => {
                    if probe(&self.spec.readiness).await {
                        ready = true;
                        self.set_ready(true);
                        self.set_state(ServiceState::Running);
                        tracing::info!(service = %self.spec.name, "ready");
                    } else if Instant::now() >= ready_deadline {
                        return Outcome::NotReady;
                    } else {
                        poll = (poll * 2).min(READY_POLL_MAX);
                    }
                }
            }
        }
    }

    /// Act on how a run ended: back off and restart, or stop.
    /// `Some(acks)`: the service stops.
    async fn after(
        &self,
        outcome: Outcome,
        child: Spawned,
        started: Instant,
        failures: &mut u32,
        cgroups: Option<&Cgroups>,
        ctl: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Option<Vec<oneshot::Sender<()>>> {
        let name = self.spec.name.as_str();
        match outcome {
            Outcome::Exited(info) => {
                self.record_exit(info);
                if started.elapsed() >= self.spec.restart.reset_window() {
                    *failures = 0;
                }
                let delay = self.spec.restart.delay(*failures);
                *failures = failures.saturating_add(1);
                tracing::warn!(
                    service = name,
                    "exited ({}), restarting in {delay:?}",
                    info.map_or_else(|| "unknown".to_string(), |i| i.to_string())
                );
                self.set_state(ServiceState::Backoff);
                self.wait_backoff(delay, ctl).await
            }
            Outcome::NotReady => {
                let msg = format!("not ready within {:?}", self.spec.ready_timeout);
                tracing::warn!(service = name, "{msg}; killing it");
                let info = self.terminate(child.pid, child.exit).await;
                self.record_exit(info);
                self.run_state().last_error = Some(msg);
                self.set_state(ServiceState::Failed);
                let delay = self.spec.restart.delay(*failures);
                *failures = failures.saturating_add(1);
                self.wait_backoff(delay, ctl).await
            }
            Outcome::Stop(ack) => {
                let info = self.terminate(child.pid, child.exit).await;
                self.record_exit(info);
                if let Some(c) = cgroups {
                    c.remove(name);
                }
                Some(ack.into_iter().collect())
            }
            Outcome::Restart(ack) => {
                tracing::info!(service = name, "restart requested");
                let info = self.terminate(child.pid, child.exit).await;
                self.record_exit(info);
                *failures = 0;
                let _ = ack.send(());
                None
            }
        }
    }

    fn record_exit(&self, info: Option<ExitInfo>) {
        let mut run = self.run_state();
        run.pid = None;
        if info.is_some() {
            run.last_exit = info;
        }
    }

    /// Sleep `delay` unless told otherwise. `Some(acks)` = stop now.
    async fn wait_backoff(
        &self,
        delay: Duration,
        ctl: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Option<Vec<oneshot::Sender<()>>> {
        let until = Instant::now() + delay;
        tokio::select! {
            _ = sleep_until(until) => None,
            msg = ctl.recv() => match msg {
                None => Some(Vec::new()),
                Some(Control::Stop(ack)) => Some(vec![ack]),
                Some(Control::Restart(ack)) => {
                    let _ = ack.send(());
                    None
                }
            },
        }
    }

    /// SIGTERM the process group, wait the grace, SIGKILL it, wait for the
    /// main process to be reaped. Remaining group members are killed too.
    async fn terminate(&self, pid: Pid, mut exit: oneshot::Receiver<ExitInfo>) -> Option<ExitInfo> {
        let name = self.spec.name.as_str();
        let (signals, pgid) = (&*self.signals, pid.as_raw_nonzero().get().unsigned_abs());
        self.set_state(ServiceState::Stopping);
        signal_group(signals, name, pgid, GroupSignal::Term);
        let info = match timeout(self.spec.stop_grace, &mut exit).await {
            Ok(r) => r.ok(),
            Err(_) => {
                tracing::warn!(
                    service = name,
                    "still running {:?} after SIGTERM: SIGKILL",
                    self.spec.stop_grace
                );
                signal_group(signals, name, pgid, GroupSignal::Kill);
                match timeout(KILL_WAIT, &mut exit).await {
                    Ok(r) => r.ok(),
                    Err(_) => {
                        tracing::error!(service = name, "not reaped {KILL_WAIT:?} after SIGKILL");
                        self.run_state().last_error =
                            Some("did not exit after SIGKILL".to_string());
                        None
                    }
                }
            }
        };
        // Whatever is left of the group (children that ignored SIGTERM).
        signal_group(signals, name, pgid, GroupSignal::Kill);
        info
    }
}

enum Outcome {
    Exited(Option<ExitInfo>),
    NotReady,
    Stop(Option<oneshot::Sender<()>>),
    Restart(oneshot::Sender<()>),
}

#[cfg(test)]
mod tests;

//! The process-wide child reaper (DESIGN "Boot sequence" step 8).
//!
//! One thread owns `waitpid(-1, WNOHANG)`: on every SIGCHLD (and once a second
//! as a safety net) it reaps every exited child, dispatches the exit status to
//! whoever registered the pid, and logs the exits of unknown pids (orphans
//! re-parented to us). Outside PID 1 the process makes itself a child
//! subreaper, so orphaned grandchildren are re-parented to it and reaped too.
//!
//! **Every child of machined must be spawned through [`spawn_reaped`]**: a
//! `std`/`tokio` `Child::wait` would race with `waitpid(-1)`. Spawning and
//! reaping hold the same lock, so a pid is always registered before the
//! reaper can see its exit (and `std`'s own `waitpid` on a failed exec runs
//! before the reaper can steal it).

use std::collections::BTreeMap;
use std::fmt;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions, WaitStatus};
use serde::Serialize;
use tokio::sync::oneshot;

use super::SupervisorError;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Terminating signal number, when it was killed by a signal.
    pub signal: Option<i32>,
}

impl ExitInfo {
    fn from_status(status: WaitStatus) -> Self {
        ExitInfo {
            code: status.exit_status(),
            signal: status.terminating_signal(),
        }
    }

    /// Exited normally with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}"),
            (None, None) => write!(f, "unknown exit"),
        }
    }
}

type Table = BTreeMap<i32, oneshot::Sender<ExitInfo>>;

/// Registered pids → where to send their exit. Held while spawning and while reaping.
static TABLE: Mutex<Table> = Mutex::new(BTreeMap::new());
static REAPER: OnceLock<Result<(), String>> = OnceLock::new();

fn table() -> MutexGuard<'static, Table> {
    // A poisoned lock only means a panic elsewhere; the map is still consistent.
    crate::lock::lock(&TABLE)
}

/// Start the reaper once per process (idempotent) and, unless we are PID 1,
/// make this process a child subreaper.
pub fn init_reaper() -> Result<(), SupervisorError> {
    REAPER
        .get_or_init(start)
        .clone()
        .map_err(SupervisorError::Reaper)
}

fn start() -> Result<(), String> {
    let me = rustix::process::getpid();
    if !me.is_init() {
        rustix::process::set_child_subreaper(Some(me))
            .map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("basalt-reaper".into())
        .stack_size(256 * 1024)
        .spawn(move || reaper_thread(ready_tx))
        .map_err(|e| format!("spawning the reaper thread: {e}"))?;
    ready_rx
        .recv()
        .map_err(|_| "the reaper thread died while starting".to_string())?
}

fn reaper_thread(ready: std::sync::mpsc::Sender<Result<(), String>>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("reaper runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigchld = match signal(SignalKind::child()) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(format!("listening for SIGCHLD: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        tracing::debug!("reaper started");
        loop {
            reap_all();
            tokio::select! {
                _ = sigchld.recv() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

/// Reap every exited child now.
fn reap_all() {
    let mut table = table();
    loop {
        // `wait` is waitpid(-1): any child (rustix `waitpid(None)` would be our group only).
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                let info = ExitInfo::from_status(status);
                let raw = pid.as_raw_nonzero().get();
                match table.remove(&raw) {
                    // The receiver may be gone; nothing to do then.
                    Some(tx) => {
                        let _ = tx.send(info);
                    }
                    None => tracing::debug!(pid = raw, "reaped orphan: {info}"),
                }
            }
            Ok(None) | Err(Errno::CHILD) => break,
            Err(Errno::INTR) => continue,
            Err(e) => {
                tracing::warn!("waitpid: {e}");
                break;
            }
        }
    }
}

/// Spawn `cmd` and register its pid with the reaper; the receiver yields its
/// exit status. Never call `wait`/`try_wait` on the returned `Child` (its
/// pipes may be used freely). Starts the reaper if needed.
pub fn spawn_reaped(
    cmd: &mut Command,
) -> Result<(Child, oneshot::Receiver<ExitInfo>), SupervisorError> {
    init_reaper()?;
    reset_oom_score_adj(cmd);
    let mut table = table();
    let child = cmd.spawn().map_err(SupervisorError::Spawn)?;
    let (tx, rx) = oneshot::channel();
    match i32::try_from(child.id()) {
        Ok(pid) => {
            table.insert(pid, tx);
        }
        // Cannot happen on Linux (pid_max ≤ 2^22); the exit would be logged as an orphan.
        Err(_) => tracing::error!(pid = child.id(), "child pid out of range"),
    }
    Ok((child, rx))
}

/// PID 1 shields itself from the OOM killer (`oom_score_adj` -1000), and a
/// child inherits that: a service could then never be OOM-killed, not even
/// by its own cgroup's `memory.max`, where a hog with no killable task
/// stalls instead of dying. Each child puts its own score back to the
/// kernel's default (0) before `exec`. Best effort: lowering a score needs
/// CAP_SYS_RESOURCE, which PID 1 has; a test run without it keeps its score.
fn reset_oom_score_adj(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child before exec, where only
    // async-signal-safe operations are allowed: open(2), write(2) and
    // close(2) on a static path, with no allocation and no lock. It opens
    // `/proc/self` in the child, so it is the child's own score it writes,
    // never the parent's.
    unsafe {
        cmd.pre_exec(|| {
            let path = c"/proc/self/oom_score_adj";
            if let Ok(fd) = rustix::fs::open(
                path,
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                let _ = rustix::io::write(&fd, b"0");
            }
            Ok(())
        });
    }
}

/// Convert a std child id into a rustix pid.
pub(crate) fn pid_of(child: &Child) -> Option<Pid> {
    i32::try_from(child.id()).ok().and_then(Pid::from_raw)
}

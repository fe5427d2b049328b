//! The supervisor's side effects on processes: signals to a service's
//! process group (through [`Signals`]) and the readiness probes (paths,
//! sockets, commands). Part of the host boundary (see `crate::host`).

use super::spec::Readiness;
use crate::host::signals::{GroupSignal, Signals};
pub(crate) use rustix::process::Pid;
use rustix::process::Signal;
use std::time::Duration;
use tokio::time::timeout;

/// How long one probe may take, and a readiness command.
const READY_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const READY_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake and a readiness report; generous, as under emulation a
/// busy apiserver answers slowly.
const HTTPS_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Signal a service's process group by its leader's pid; a failure is
/// logged (a group already gone is none).
pub(crate) fn signal_group(signals: &dyn Signals, service: &str, pgid: u32, sig: GroupSignal) {
    if let Err(e) = signals.signal_group(pgid, sig) {
        tracing::warn!(service, "sending {sig:?} to process group {pgid}: {e}");
    }
}

/// One readiness probe.
pub(crate) async fn probe(readiness: &Readiness) -> bool {
    match readiness {
        Readiness::None => true,
        Readiness::Path(p) => tokio::fs::try_exists(p).await.unwrap_or(false),
        Readiness::UnixSocket(p) => matches!(
            timeout(READY_PROBE_TIMEOUT, tokio::net::UnixStream::connect(p)).await,
            Ok(Ok(_))
        ),
        Readiness::Tcp(addr) => matches!(
            timeout(READY_PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        ),
        Readiness::Command(argv) => command_succeeds(argv).await,
        Readiness::Http(probe) => probe.check(HTTPS_PROBE_TIMEOUT).await.is_ok(),
    }
}

/// Run a readiness command through the reaper (it owns waitpid(-1)); a
/// command that hangs counts as not ready and is killed.
async fn command_succeeds(argv: &[String]) -> bool {
    let Some((program, args)) = argv.split_first() else {
        return false;
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let Ok((child, exit)) = super::reaper::spawn_reaped(&mut cmd) else {
        return false;
    };
    match timeout(READY_COMMAND_TIMEOUT, exit).await {
        Ok(Ok(info)) => info.success(),
        _ => {
            if let Some(pid) = Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
            false
        }
    }
}

/// What a one-shot command left: how it ended and its output (stdout, then
/// stderr).
#[derive(Debug, Clone)]
pub struct OneShot {
    pub exit: super::ExitInfo,
    pub output: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    #[error("{program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: super::SupervisorError,
    },
    #[error("{program}: no exit within {}s (killed)", .limit.as_secs())]
    Timeout { program: String, limit: Duration },
    #[error("{program}: its exit status was lost")]
    Lost { program: String },
}

/// Run `argv` to completion through the reaper (PID 1 owns waitpid(-1)),
/// with only `PATH` in its environment, its output collected; killed after
/// `limit`. For short jobs against a service (`ctr images import`), not
/// for services.
pub async fn run_once(argv: &[String], limit: Duration) -> Result<OneShot, OneShotError> {
    use std::io::Read;
    use std::process::Stdio;
    let Some((program, args)) = argv.split_first() else {
        return Err(OneShotError::Lost {
            program: String::new(),
        });
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, exit) =
        super::reaper::spawn_reaped(&mut cmd).map_err(|source| OneShotError::Spawn {
            program: program.clone(),
            source,
        })?;
    // Both pipes are drained off the runtime's threads: the command may
    // fill one while we would be blocked on the other.
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    let readers = pipes.map(|pipe| {
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    });
    let exit = match timeout(limit, exit).await {
        Ok(Ok(info)) => info,
        Ok(Err(_)) => {
            return Err(OneShotError::Lost {
                program: program.clone(),
            });
        }
        Err(_) => {
            if let Some(pid) = Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
            return Err(OneShotError::Timeout {
                program: program.clone(),
                limit,
            });
        }
    };
    let mut output = Vec::new();
    for r in readers {
        output.extend(r.await.unwrap_or_default());
    }
    Ok(OneShot { exit, output })
}

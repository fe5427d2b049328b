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

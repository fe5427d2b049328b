//! Building and spawning a service process. The only `unsafe` of the
//! supervisor lives here: the `pre_exec` hook that joins the service cgroup.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustix::process::Pid;
use tokio::sync::oneshot;

use super::SupervisorError;
use super::reaper::{ExitInfo, pid_of, spawn_reaped};
use super::spec::ServiceSpec;

const DEFAULT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// A freshly spawned service process.
pub(crate) struct Spawned {
    pub pid: Pid,
    pub exit: oneshot::Receiver<ExitInfo>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Spawn the service in its own process group (pgid = pid, so signals reach
/// the whole group), stdin from /dev/null, stdout/stderr piped, with exactly
/// the spec's environment. When `cgroup_procs` is given (an open
/// `cgroup.procs` of the service cgroup), the child joins that cgroup before
/// `exec`, so no instruction of the service runs outside it.
pub(crate) fn spawn_service(
    spec: &ServiceSpec,
    cgroup_procs: Option<Arc<OwnedFd>>,
) -> Result<Spawned, SupervisorError> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| SupervisorError::EmptyArgv(spec.name.clone()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(fd) = cgroup_procs {
        // SAFETY: the hook runs in the forked child before exec, where only
        // async-signal-safe operations are allowed. It performs a single
        // write(2) on a descriptor opened (O_CLOEXEC) by the parent and kept
        // alive by the Arc captured here; it neither allocates nor takes
        // locks, and turning an errno into io::Error does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                // "0" moves the writing process itself into the cgroup.
                rustix::io::write(&*fd, b"0")?;
                Ok(())
            });
        }
    }
    let (mut child, exit) = spawn_reaped(&mut cmd)?;
    let pid = pid_of(&child)
        .ok_or_else(|| SupervisorError::Spawn(std::io::Error::other("child pid out of range")))?;
    Ok(Spawned {
        pid,
        exit,
        stdout: child.stdout.take().map(OwnedFd::from),
        stderr: child.stderr.take().map(OwnedFd::from),
    })
}

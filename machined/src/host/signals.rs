//! Signals to a service's process group, behind [`Signals`] so the
//! supervisor's stop and kill paths can be driven against the recording
//! fake ([`super::recording::RecordingKernel`]).

use std::io;

/// The signals the supervisor sends a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSignal {
    Term,
    Kill,
}

/// kill(2) on a process group.
pub trait Signals: Send + Sync {
    /// Send `sig` to the process group `pgid`. A group that is gone already
    /// is not an error.
    fn signal_group(&self, pgid: u32, sig: GroupSignal) -> io::Result<()>;
}

/// The real machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Signals for Linux {
    fn signal_group(&self, pgid: u32, sig: GroupSignal) -> io::Result<()> {
        use rustix::process::{Pid, Signal};
        let Some(pgid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let sig = match sig {
            GroupSignal::Term => Signal::TERM,
            GroupSignal::Kill => Signal::KILL,
        };
        match rustix::process::kill_process_group(pgid, sig) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

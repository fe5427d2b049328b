//! Power: flush filesystems and reboot(2), behind [`Power`] so PID 1's
//! power-off path can be driven against the recording fake
//! ([`super::recording::RecordingKernel`]).

use std::io;
use std::time::Duration;

/// What PID 1's main loop should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    Reboot,
    Shutdown,
}

/// The reboot(2) commands PID 1 uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootCommand {
    Restart,
    PowerOff,
    /// Ctrl-Alt-Del becomes SIGINT to PID 1 instead of an immediate reset.
    CtrlAltDelOff,
}

impl From<PowerEvent> for RebootCommand {
    fn from(event: PowerEvent) -> Self {
        match event {
            PowerEvent::Reboot => RebootCommand::Restart,
            PowerEvent::Shutdown => RebootCommand::PowerOff,
        }
    }
}

/// sync(2) and reboot(2).
pub trait Power: Send + Sync {
    /// Flush every filesystem's cached data.
    fn sync(&self);
    /// Restart, power off or reconfigure Ctrl-Alt-Del; a restart or
    /// power-off returns only on error.
    fn reboot(&self, cmd: RebootCommand) -> io::Result<()>;
}

/// The real machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Power for Linux {
    fn sync(&self) {
        rustix::fs::sync();
    }

    fn reboot(&self, cmd: RebootCommand) -> io::Result<()> {
        use rustix::system::RebootCommand as Cmd;
        let cmd = match cmd {
            RebootCommand::Restart => Cmd::Restart,
            RebootCommand::PowerOff => Cmd::PowerOff,
            RebootCommand::CtrlAltDelOff => Cmd::CadOff,
        };
        Ok(rustix::system::reboot(cmd)?)
    }
}

/// Ctrl-Alt-Del becomes SIGINT to PID 1 instead of an immediate reset.
pub fn disable_ctrl_alt_del(p: &dyn Power) {
    if let Err(e) = p.reboot(RebootCommand::CtrlAltDelOff) {
        tracing::warn!("disabling Ctrl-Alt-Del: {e}");
    }
}

/// Sync, then reboot or power off. Returns only if reboot(2) failed.
pub fn go_down(p: &dyn Power, event: PowerEvent) -> io::Error {
    p.sync();
    match p.reboot(event.into()) {
        Err(e) => e,
        Ok(()) => io::Error::other("reboot(2) returned"),
    }
}

/// [`go_down`] on the real machine. reboot(2) only returns on error: keep
/// PID 1 alive and try a restart again every few seconds.
pub fn power_off(event: PowerEvent) -> ! {
    let e = go_down(&Linux, event);
    tracing::error!("{event:?}: {e}; retrying a restart every 5s");
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let _ = Linux.reboot(RebootCommand::Restart);
    }
}

/// What a container manager or the hypervisor's ACPI button sends PID 1 to
/// ask for a power-off.
pub const SIGPWR: i32 = libc::SIGPWR;

#[cfg(test)]
mod tests;

//! Power: flush filesystems and reboot(2).

use std::time::Duration;

/// What PID 1's main loop should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    Reboot,
    Shutdown,
}

pub fn sync() {
    rustix::fs::sync();
}

/// Ctrl-Alt-Del becomes SIGINT to PID 1 instead of an immediate reset.
pub fn disable_ctrl_alt_del() {
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);
}

/// Sync and reboot or power off. reboot(2) only returns on error: keep
/// PID 1 alive and try a restart again every few seconds.
pub fn power_off(event: PowerEvent) -> ! {
    sync();
    let cmd = match event {
        PowerEvent::Reboot => rustix::system::RebootCommand::Restart,
        PowerEvent::Shutdown => rustix::system::RebootCommand::PowerOff,
    };
    let _ = rustix::system::reboot(cmd);
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    }
}

/// What a container manager or the hypervisor's ACPI button sends PID 1 to
/// ask for a power-off.
pub const SIGPWR: i32 = libc::SIGPWR;

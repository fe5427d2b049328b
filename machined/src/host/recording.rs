//! A recording fake of the host boundary for unprivileged tests: the
//! kernel's state lives in memory and every side effect is appended to a
//! log the test can assert on (youki's `Syscall` test double is the model).

use super::bpf::BpfProbe;
use super::clock::Clock;
use super::kernel::Kernel;
use super::modules::ModuleLoader;
use super::mounts::{MountSpec, Mounter};
use super::power::{Power, RebootCommand};
use super::signals::{GroupSignal, Signals};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

/// One side effect, as the boundary saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    SetHostname(String),
    WriteSysctl { key: String, value: String },
    Mount { target: String, fstype: String },
    Unmount(String),
    LoadModule(String),
    Sync,
    Reboot(RebootCommand),
    SignalGroup { pgid: u32, signal: GroupSignal },
    SetOwnOomScoreAdj(i32),
}

#[derive(Debug, Default)]
struct State {
    hostname: String,
    sysctls: BTreeMap<String, String>,
    modules: Vec<String>,
    calls: Vec<Call>,
    /// Mount targets whose mount fails, to test error paths.
    failing_mounts: Vec<String>,
    /// Module files whose load fails.
    failing_modules: Vec<String>,
    /// What the BPF probe reports (refused when unset).
    bpf: Option<BpfProbe>,
    /// `statfs` magic by mount point.
    filesystems: BTreeMap<String, u64>,
    /// The clock (the epoch, unsynchronized, until set).
    clock: Option<Clock>,
}

/// Cheap to clone; clones share the record.
#[derive(Debug, Clone, Default)]
pub struct RecordingKernel {
    state: Arc<Mutex<State>>,
}

impl RecordingKernel {
    pub fn new(hostname: &str) -> Self {
        let k = Self::default();
        k.state().hostname = hostname.to_string();
        k
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock::lock(&self.state)
    }

    pub fn with_module(self, name: &str) -> Self {
        self.state().modules.push(name.to_string());
        self
    }

    pub fn with_sysctl(self, key: &str, value: &str) -> Self {
        self.state().sysctls.insert(key.into(), value.into());
        self
    }

    pub fn with_bpf(self, probe: BpfProbe) -> Self {
        self.state().bpf = Some(probe);
        self
    }

    /// A filesystem with `statfs` magic `magic` mounted at `path`.
    pub fn with_filesystem(self, path: &str, magic: u64) -> Self {
        self.state().filesystems.insert(path.into(), magic);
        self
    }

    pub fn with_clock(self, clock: Clock) -> Self {
        self.state().clock = Some(clock);
        self
    }

    /// Make mounting `target` fail with EINVAL.
    pub fn failing_mount(self, target: &str) -> Self {
        self.state().failing_mounts.push(target.into());
        self
    }

    /// Make loading the module file `path` fail with ENOEXEC.
    pub fn failing_module(self, path: &str) -> Self {
        self.state().failing_modules.push(path.into());
        self
    }

    /// Whether a module of this name is loaded (given, or loaded since).
    pub fn module_loaded(&self, name: &str) -> bool {
        self.state().modules.iter().any(|m| m == name)
    }

    /// The signals sent so far, in order.
    pub fn signals(&self) -> Vec<GroupSignal> {
        self.state()
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::SignalGroup { signal, .. } => Some(*signal),
                _ => None,
            })
            .collect()
    }

    /// Every side effect so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }
}

impl Kernel for RecordingKernel {
    fn hostname(&self) -> String {
        self.state().hostname.clone()
    }

    fn set_hostname(&self, name: &str) -> io::Result<()> {
        let mut s = self.state();
        s.hostname = name.to_string();
        s.calls.push(Call::SetHostname(name.to_string()));
        Ok(())
    }

    fn read_sysctl(&self, key: &str) -> Option<String> {
        self.state().sysctls.get(key).cloned()
    }

    fn write_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let mut s = self.state();
        s.sysctls.insert(key.into(), value.into());
        s.calls.push(Call::WriteSysctl {
            key: key.into(),
            value: value.into(),
        });
        Ok(())
    }

    fn module_present(&self, name: &str) -> bool {
        self.state().modules.iter().any(|m| m == name)
    }

    fn bpf_probe(&self) -> BpfProbe {
        self.state()
            .bpf
            .clone()
            .unwrap_or_else(|| BpfProbe::Refused("no BPF in the recording kernel".into()))
    }

    fn filesystem_magic(&self, path: &str) -> Option<u64> {
        self.state().filesystems.get(path).copied()
    }

    fn clock(&self) -> Clock {
        self.state().clock.unwrap_or(Clock {
            unix: 0,
            synchronized: false,
        })
    }

    fn set_own_oom_score_adj(&self, score: i32) -> io::Result<()> {
        self.state().calls.push(Call::SetOwnOomScoreAdj(score));
        Ok(())
    }
}

impl Mounter for RecordingKernel {
    fn mount(&self, spec: &MountSpec<'_>) -> io::Result<()> {
        let mut s = self.state();
        if s.failing_mounts.iter().any(|t| t == spec.target) {
            return Err(io::Error::from_raw_os_error(22));
        }
        s.calls.push(Call::Mount {
            target: spec.target.into(),
            fstype: spec.fstype.into(),
        });
        Ok(())
    }

    fn unmount(&self, target: &str) -> io::Result<()> {
        self.state().calls.push(Call::Unmount(target.into()));
        Ok(())
    }
}

/// `/lib/modules/…/veth.ko.xz` → `veth`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split('.').next().unwrap_or(file).replace('-', "_")
}

impl ModuleLoader for RecordingKernel {
    fn load(&self, path: &str) -> io::Result<bool> {
        let mut s = self.state();
        if s.failing_modules.iter().any(|p| p == path) {
            return Err(io::Error::from_raw_os_error(8));
        }
        let name = module_name(path);
        if s.modules.contains(&name) {
            return Ok(false);
        }
        s.modules.push(name);
        s.calls.push(Call::LoadModule(path.into()));
        Ok(true)
    }
}

impl Power for RecordingKernel {
    fn sync(&self) {
        self.state().calls.push(Call::Sync);
    }

    fn reboot(&self, cmd: RebootCommand) -> io::Result<()> {
        self.state().calls.push(Call::Reboot(cmd));
        Ok(())
    }
}

impl Signals for RecordingKernel {
    fn signal_group(&self, pgid: u32, signal: GroupSignal) -> io::Result<()> {
        self.state().calls.push(Call::SignalGroup { pgid, signal });
        Ok(())
    }
}

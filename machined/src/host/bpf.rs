//! A live probe of the kernel's BPF support, as Cilium needs it: load the
//! smallest socket-filter program (`r0 = 0; exit`) through `bpf(2)` and ask
//! the kernel whether it JIT-compiled it. The program is closed at once;
//! nothing stays attached.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What the kernel did with the probe program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BpfProbe {
    /// Loaded and JIT-compiled to native code.
    Jited,
    /// Loaded, but run by the interpreter (`net.core.bpf_jit_enable = 0`).
    Interpreted,
    /// Refused: the kernel's reason (errno), e.g. no CAP_BPF or no BPF syscall.
    Refused(String),
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `prog_flags`.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The start of `struct bpf_prog_info`, as far as `jited_prog_len`.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
}

/// `bpf(cmd, attr, size_of::<T>())`.
///
/// # Safety
/// `T` must be the `#[repr(C)]` prefix of `union bpf_attr` that `cmd`
/// reads, and every pointer inside `attr` must point to memory that is
/// valid (and, where the kernel writes, writable and large enough for the
/// length given beside it) for the duration of the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is live and exclusively borrowed, and its exact size
    // is passed; the caller vouches for the pointers inside it. The kernel
    // writes only within that size (GET_INFO updates `info_len`).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Load the probe program and report what the kernel made of it.
pub fn probe() -> BpfProbe {
    // mov64 r0, 0 ; exit — each instruction is 8 bytes: code, regs, off, imm.
    let insns: [u64; 2] = [
        u64::from_le_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]),
        u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
    ];
    let license = c"GPL";
    let mut load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
    };
    // SAFETY: `insns` and `license` point into locals that outlive the
    // call; `insn_cnt` is the length of `insns`; no log buffer is given.
    let fd = match unsafe { bpf(BPF_PROG_LOAD, &mut load) } {
        Ok(fd) => fd,
        Err(e) => return BpfProbe::Refused(e.to_string()),
    };
    let Ok(raw) = i32::try_from(fd) else {
        return BpfProbe::Refused(format!("bpf(2) returned {fd}, not a descriptor"));
    };
    // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor that
    // nothing else owns; the OwnedFd closes it (unloading the program).
    let prog = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut info = ProgInfo::default();
    let mut get = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    // SAFETY: `info` points to `info`, a local of exactly `info_len`
    // bytes that outlives the call; the kernel writes at most that much.
    match unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut get) } {
        Ok(_) if info.jited_prog_len > 0 => BpfProbe::Jited,
        Ok(_) => BpfProbe::Interpreted,
        Err(e) => BpfProbe::Refused(format!("loaded, but its info was refused: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe against the kernel running the tests: as root it loads;
    /// without privileges the kernel's refusal is reported, never a panic.
    #[test]
    fn probe_reports_what_this_kernel_does() {
        let root = rustix::process::geteuid().is_root();
        match probe() {
            BpfProbe::Jited | BpfProbe::Interpreted => {}
            BpfProbe::Refused(reason) => assert!(!root, "refused as root: {reason}"),
        }
    }
}

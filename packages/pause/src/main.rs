//! The pod sandbox process, as upstream's `pause.c` behaves: PID 1 of the
//! pod's namespaces, it does nothing but reap orphans (SIGCHLD) and exit 0
//! on SIGINT or SIGTERM.
//!
//! Signals are blocked and taken with `sigwaitinfo` rather than handled: no
//! async-signal-safety to get right, and a blocked signal is never dropped
//! for having the default action, which the kernel otherwise does for a
//! namespace's PID 1.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().skip(1).any(|a| a == "-v" || a == "--version") {
        println!("pause.rs {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given; it is only read
    // after that.
    let mut set = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        set.assume_init()
    };
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD] {
        // SAFETY: `set` is an initialised sigset_t and `sig` a valid signal.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    // SAFETY: `set` is initialised; the old mask is not wanted (null).
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
        eprintln!("pause: sigprocmask: {}", std::io::Error::last_os_error());
        return ExitCode::FAILURE;
    }
    // Said once the signals are blocked, so a reader of stderr knows a
    // signal from now on is taken.
    if std::process::id() != 1 {
        eprintln!("Warning: pause should be the first process");
    }
    loop {
        // SAFETY: `set` is initialised; siginfo is not wanted (null).
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        match sig {
            libc::SIGINT | libc::SIGTERM => {
                eprintln!("Shutting down, got signal {sig}");
                return ExitCode::SUCCESS;
            }
            libc::SIGCHLD => reap(),
            // EINTR (e.g. after a debugger attach): wait again.
            _ => {}
        }
    }
}

/// Collect every exited child: one SIGCHLD may stand for several.
fn reap() {
    loop {
        // SAFETY: a null status pointer is allowed; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

//! Resource limits PID 1 sets for itself and everything it starts.

/// RLIMIT_NOFILE for machined and every service it starts.
pub const OPEN_FILES: u64 = 1 << 20;

/// The kernel starts init with 1024 open files; the API alone may hold 1024
/// connections, and containerd and the kubelet want many more.
pub fn raise_open_files() {
    let files = rustix::process::Rlimit {
        current: Some(OPEN_FILES),
        maximum: Some(OPEN_FILES),
    };
    if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nofile, files) {
        tracing::warn!("raising the open-file limit to {OPEN_FILES}: {e}");
    }
}

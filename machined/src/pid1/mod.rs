//! machined as PID 1 on a real kernel: DESIGN.md "Boot sequence", steps 1–9.
//! Nothing here returns: failures are logged and retried, or end in a reboot.

mod blockdev;
pub mod cmdline;
mod console;
mod kmod;
mod loopdev;
mod mounts;

use crate::host::Host;
use crate::network::{ControllerOptions, NetworkController};
use crate::node::{Node, PowerEvent};
use crate::server::{self, Limits};
use crate::state::StateStore;
use crate::supervisor::{self, Supervisor, SupervisorConfig};
use crate::tls::Identity;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const STATE_MOUNT: &str = "/var/lib/basalt/state";
pub const RAM_STATE: &str = "/run/basalt/state";
pub use basalt_api::image_layout::TRUST_ROOTS;

/// Never returns. Any error that would end PID 1 reboots the machine instead.
/// RLIMIT_NOFILE for machined and every service it starts.
const OPEN_FILES: u64 = 1 << 20;

pub fn run() -> ! {
    install_panic_hook();
    mounts::early();
    let tee = console::Tee::open();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let args = cmdline::parse(&cmdline);
    let filter = match args.log.as_str() {
        "debug" => tracing::Level::DEBUG,
        "warn" => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_writer(tee)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .with_max_level(filter)
        .init();
    tracing::info!("machined {} starting as PID 1", env!("CARGO_PKG_VERSION"));
    for u in &args.unknown {
        tracing::warn!("unknown kernel argument {u}");
    }
    // Ctrl-Alt-Del becomes SIGINT to us instead of an immediate reset.
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);
    // The kernel starts init with 1024 open files; the API alone may hold
    // 1024 connections, and containerd and the kubelet want many more.
    let files = rustix::process::Rlimit {
        current: Some(OPEN_FILES),
        maximum: Some(OPEN_FILES),
    };
    if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nofile, files) {
        tracing::warn!("raising the open-file limit to {OPEN_FILES}: {e}");
    }
    let n = kmod::load_list(kmod::LIST);
    tracing::info!("loaded {n} kernel modules");
    if std::path::Path::new(&args.root_image).exists() {
        match mounts::switch_root(&args.root_image) {
            Ok(()) => tracing::info!("switched into the read-only root {}", args.root_image),
            Err(e) => tracing::error!(
                "mounting the root image {}: {e}; staying in the initramfs",
                args.root_image
            ),
        }
    } else {
        tracing::warn!(
            "no root image at {}; running from the initramfs",
            args.root_image
        );
    }
    mounts::late();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fatal(&format!("starting the async runtime: {e}")),
    };
    let event = rt.block_on(serve(args));
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    power_off(event)
}

async fn serve(args: cmdline::BootArgs) -> PowerEvent {
    if let Err(e) = supervisor::init_reaper() {
        tracing::error!("reaper: {e}");
    }
    let sup = match Supervisor::new(SupervisorConfig {
        cgroup_root: Some("/sys/fs/cgroup/basalt".into()),
        log_lines: 2000,
    }) {
        Ok(s) => s,
        Err(e) => fatal(&format!("supervisor: {e}")),
    };
    let host = Host::node();
    let state = match blockdev::find_by_label(&args.state_label) {
        Some(dev) => match mounts::mount_state(&dev, STATE_MOUNT) {
            Ok(()) => {
                tracing::info!("STATE {dev} mounted at {STATE_MOUNT}");
                StateStore::open(STATE_MOUNT, false)
            }
            Err(e) => {
                tracing::error!("mounting STATE {dev}: {e}; running from RAM");
                StateStore::open(RAM_STATE, true)
            }
        },
        None => {
            tracing::warn!(
                "no {} partition: running from RAM, nothing persists",
                args.state_label
            );
            StateStore::open(RAM_STATE, true)
        }
    };
    let state = match state {
        Ok(s) => s,
        Err(e) => fatal(&format!("STATE: {e}")),
    };
    let trust = match std::fs::read_to_string(TRUST_ROOTS)
        .map_err(|e| e.to_string())
        .and_then(|t| basalt_api::trust::TrustRoots::from_toml(&t).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("trust roots {TRUST_ROOTS}: {e}; no apply can be accepted");
            basalt_api::trust::TrustRoots::none()
        }
    };
    let identity = match Identity::load_or_create(&state.dir().join("tls"), &host.hostname()) {
        Ok(i) => i,
        Err(e) => fatal(&format!("TLS identity: {e}")),
    };
    let fingerprint = identity.fingerprint();
    let nonces = match crate::auth::Nonces::new(crate::auth::NONCE_TTL) {
        Ok(n) => n,
        Err(_) => fatal("no randomness for the API nonce key"),
    };

    let net = match NetworkController::start(ControllerOptions::default()).await {
        Ok(n) => {
            if let Err(e) = n.apply(None).await {
                tracing::warn!("network: {e}");
            }
            Some(n)
        }
        Err(e) => {
            tracing::error!("network controller: {e}");
            None
        }
    };

    let (tx, mut power) = tokio::sync::mpsc::unbounded_channel();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string();
    let services = vec![crate::containerd::service(std::path::Path::new("/"))];
    if let Err(e) = host.write_atomic(
        crate::containerd::CONFIG,
        crate::containerd::config(std::path::Path::new("/")).as_bytes(),
        0o644,
    ) {
        tracing::error!("containerd config: {e}");
    }
    let node = Node::boot(
        host,
        sup.clone(),
        services,
        state,
        trust,
        boot_id,
        fingerprint.clone(),
        nonces,
        tx,
    );
    node.attach_network(net.clone()).await;
    node.start_runtime().await;

    let addr = SocketAddr::from(([0, 0, 0, 0], basalt_api::request::API_PORT));
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                tracing::error!("binding {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let tls = match identity.server_config() {
        Ok(t) => t,
        Err(e) => fatal(&format!("TLS: {e}")),
    };
    tokio::spawn(server::serve(
        listener,
        tls,
        Arc::clone(&node),
        Limits::default(),
    ));
    console::banner(&format!(
        "basalt: API listening on :{} ({})\nbasalt: TLS fingerprint {fingerprint}",
        basalt_api::request::API_PORT,
        node.status().await.mode
    ));

    let event = wait_for_power(&mut power).await;
    tracing::info!("{event:?}: stopping services");
    sup.stop_all().await;
    if let Some(n) = &net {
        n.release_all().await;
    }
    rustix::fs::sync();
    mounts::unmount_state(STATE_MOUNT);
    event
}

async fn wait_for_power(
    power: &mut tokio::sync::mpsc::UnboundedReceiver<PowerEvent>,
) -> PowerEvent {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut pwr)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::from_raw(libc::SIGPWR)),
    ) else {
        return power.recv().await.unwrap_or(PowerEvent::Reboot);
    };
    tokio::select! {
        ev = power.recv() => ev.unwrap_or(PowerEvent::Reboot),
        _ = term.recv() => PowerEvent::Reboot,
        _ = int.recv() => PowerEvent::Reboot,
        _ = pwr.recv() => PowerEvent::Shutdown,
    }
}

fn power_off(event: PowerEvent) -> ! {
    rustix::fs::sync();
    let cmd = match event {
        PowerEvent::Reboot => rustix::system::RebootCommand::Restart,
        PowerEvent::Shutdown => rustix::system::RebootCommand::PowerOff,
    };
    tracing::info!("{event:?} now");
    let _ = rustix::system::reboot(cmd);
    // reboot(2) only returns on error; keep PID 1 alive and try again.
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    }
}

/// An unrecoverable boot error: say so on the console, wait so it can be
/// read, then reboot (never let the kernel panic on PID 1's exit).
fn fatal(msg: &str) -> ! {
    tracing::error!("fatal: {msg}; rebooting in 10s");
    console::banner(&format!("basalt: FATAL: {msg}; rebooting in 10s"));
    std::thread::sleep(Duration::from_secs(10));
    power_off(PowerEvent::Reboot)
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        console::banner(&format!(
            "basalt: machined panicked: {info}; rebooting in 10s"
        ));
        std::thread::sleep(Duration::from_secs(10));
        rustix::fs::sync();
        let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    }));
}

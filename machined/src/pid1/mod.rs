//! machined as PID 1 on a real kernel: DESIGN.md "Boot sequence", steps 1–9.
//! Nothing here returns: failures are logged and retried, or end in a reboot.

pub mod cmdline;

use crate::bootdisk::{self, BootDisk};
use crate::host::kernel::Linux;
use crate::host::mounts::{self, Mounter};
use crate::host::power::{self, Power, power_off};
use crate::host::{Host, blockdev, console, disk, efivars, esp, modules};
use crate::installer::DiskInstaller;
use crate::network::{ControllerOptions, NetworkController};
use crate::node::{BootParts, Node, PowerEvent};
use crate::server::{self, Limits};
use crate::slots::disk_slots::DiskSlots;
use crate::slots::{self, BootEntry};
use crate::state::StateStore;
use crate::supervisor::{self, Supervisor, SupervisorConfig};
use crate::tls::Identity;
use basalt_api::disk_layout;
use cmdline::RootArg;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub const STATE_MOUNT: &str = "/var/lib/basalt/state";
pub const RAM_STATE: &str = "/run/basalt/state";
pub use basalt_api::image_layout::TRUST_ROOTS;

/// Never returns. Any error that would end PID 1 reboots the machine instead.
pub fn run() -> ! {
    install_panic_hook();
    mounts::early();
    let tee = console::ConsoleLog::open();
    let host = Host::node();
    let cmdline = host.cmdline();
    let args = cmdline::parse(&cmdline);
    let filter = match args.log.as_str() {
        "debug" => tracing::Level::DEBUG,
        "warn" => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    // kube-client logs every failed request at ERROR with no context
    // ("failed with error client error (Connect)") while the apiserver starts;
    // machined's own callers say what failed and what they will do instead.
    let quiet = Targets::new()
        .with_default(filter)
        .with_target("kube_client::client::builder", LevelFilter::OFF);
    tracing_subscriber::fmt()
        .with_writer(tee)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .with_max_level(filter)
        .finish()
        .with(quiet)
        .init();
    tracing::info!("machined {} starting as PID 1", env!("CARGO_PKG_VERSION"));
    for u in &args.unknown {
        tracing::warn!("unknown kernel argument {u}");
    }
    power::disable_ctrl_alt_del(&power::Linux);
    shield_from_oom_killer(&Linux);
    crate::host::limits::raise_open_files();
    let n = match host.read(modules::LIST) {
        Ok(list) => modules::load_list(&Linux, &String::from_utf8_lossy(&list)),
        Err(e) => {
            tracing::warn!("no module list: {e}");
            0
        }
    };
    tracing::info!("loaded {n} kernel modules");
    let boot_disk = mount_root(&host, &args.root);
    mounts::late();
    // Before the runtime and the reaper: mkfs runs as a plain child here.
    let disk_boot = boot_disk.map(prepare_disk);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fatal(&format!("starting the async runtime: {e}")),
    };
    let event = rt.block_on(serve(args, disk_boot));
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    tracing::info!("{event:?} now");
    power_off(event)
}

/// Step 3: switch into the read-only root: the slot the UKI names on the
/// boot disk, or a root image in the initramfs. A UKI whose slot cannot be
/// mounted is a failed boot: reboot, so systemd-boot's boot counting can
/// fall back to the previous entry.
fn mount_root(host: &Host, root: &RootArg) -> Option<BootDisk> {
    match root {
        RootArg::Image(image) => {
            if !host.exists(image) {
                tracing::warn!("no root image at {image}; running from the initramfs");
            } else {
                // The installer's payload sits beside the root image in the
                // initramfs, which the switch hides: keep it under /run.
                if host.exists(basalt_api::image_layout::INSTALL_DISK_HEAD)
                    && let Err(e) = mounts::bind("/basalt", crate::installer::MEDIA)
                {
                    tracing::error!("keeping the installer's payload: {e}");
                }
                match mounts::switch_root(image) {
                    Ok(()) => tracing::info!("switched into the read-only root {image}"),
                    Err(e) => tracing::error!(
                        "mounting the root image {image}: {e}; staying in the initramfs"
                    ),
                }
            }
            None
        }
        RootArg::Slot(guid) => {
            let found = bootdisk::find(&disk::Linux, *guid, bootdisk::DEVICE_WAIT)
                .and_then(|bd| Ok((bd.device(&disk::Linux, bd.slot.number(), bd.wait)?, bd)));
            let (dev, bd) = match found {
                Ok(f) => f,
                Err(e) => fatal(&format!("root slot: {e}")),
            };
            if let Err(e) = mounts::switch_root_from(&dev, "squashfs") {
                fatal(&format!("mounting root slot {} ({dev}): {e}", bd.slot));
            }
            tracing::info!(
                "switched into the read-only root: slot {} ({dev}) of /dev/{}",
                bd.slot,
                bd.disk.name
            );
            Some(bd)
        }
    }
}

/// What PID 1 sets its `oom_score_adj` to: the kernel never picks it, so a
/// runaway service (outside its cgroup's limits, or with none) is killed
/// instead of the process whose death panics the kernel. Children put their
/// own score back to 0 (see `supervisor::spawn_reaped`).
pub const PID1_OOM_SCORE_ADJ: i32 = -1000;

/// Step 1: keep the OOM killer away from PID 1 (logged, not fatal, if the
/// kernel refuses: the node still runs, only less protected).
pub fn shield_from_oom_killer(k: &dyn crate::host::kernel::Kernel) {
    match k.set_own_oom_score_adj(PID1_OOM_SCORE_ADJ) {
        Ok(()) => {
            tracing::info!("oom_score_adj {PID1_OOM_SCORE_ADJ}: the OOM killer never picks PID 1")
        }
        Err(e) => tracing::error!("setting PID 1's oom_score_adj to {PID1_OOM_SCORE_ADJ}: {e}"),
    }
}

/// Where STATE lives this boot, and whether PID 1 mounted it (and so must
/// unmount it at shutdown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePlace {
    pub dir: &'static str,
    pub ram: bool,
    pub mounted: Option<&'static str>,
}

/// Step 4: mount the STATE partition `dev` (if one was found), else run
/// from RAM.
pub fn place_state(m: &dyn Mounter, dev: Option<&str>, label: &str) -> StatePlace {
    let ram = StatePlace {
        dir: RAM_STATE,
        ram: true,
        mounted: None,
    };
    let Some(dev) = dev else {
        tracing::warn!("no {label} partition: running from RAM, nothing persists");
        return ram;
    };
    match m.mount(&mounts::state_spec(dev, STATE_MOUNT)) {
        Ok(()) => {
            tracing::info!("STATE {dev} mounted at {STATE_MOUNT}");
            StatePlace {
                dir: STATE_MOUNT,
                ram: false,
                mounted: Some(STATE_MOUNT),
            }
        }
        Err(e) => {
            tracing::error!("mounting STATE {dev}: {e}; running from RAM");
            ram
        }
    }
}

/// Step 4, on a boot disk: /var on EPHEMERAL (made at first boot in the
/// space after STATE), else it stays in RAM.
/// A disk boot's disk, once STATE and EPHEMERAL are ready.
struct DiskBoot {
    disk: BootDisk,
    /// Where /var lives: EPHEMERAL's device, or `ram`.
    var: String,
    /// STATE's device, unless it could not be made.
    state: Option<String>,
}

/// Step 4 on a disk boot: EPHEMERAL on /var and STATE, made at first boot.
fn prepare_disk(mut disk: BootDisk) -> DiskBoot {
    let var = place_ephemeral(&Linux, &mut disk);
    let state = match disk.prepare_state(&disk::Linux) {
        Ok(dev) => Some(dev),
        Err(e) => {
            tracing::error!("STATE on the boot disk: {e}");
            None
        }
    };
    DiskBoot { disk, var, state }
}

/// What [`DiskBoot::var`] says when /var stays in RAM.
const RAM_VAR: &str = "ram";

/// Returns where /var lives (the device, or `ram`).
pub fn place_ephemeral(m: &dyn Mounter, bd: &mut BootDisk) -> String {
    match bd.prepare_ephemeral(&disk::Linux) {
        Ok(Some(dev)) => match m.mount(&mounts::ephemeral_spec(&dev)) {
            Ok(()) => {
                tracing::info!("EPHEMERAL {dev} mounted at /var");
                return dev;
            }
            Err(e) => tracing::error!("mounting EPHEMERAL {dev}: {e}; /var stays in RAM"),
        },
        Ok(None) => tracing::warn!(
            "no room for EPHEMERAL on /dev/{} after STATE; /var stays in RAM",
            bd.disk.name
        ),
        Err(e) => tracing::error!("EPHEMERAL: {e}; /var stays in RAM"),
    }
    RAM_VAR.into()
}

/// Step 7 on a disk boot: judge this boot (see `crate::slots`), and let
/// upgrades write the other slot.
fn start_assessment(node: &Arc<Node>, d: &DiskBoot, state_dir: &str, timeout: Duration) {
    let bd = &d.disk;
    let entry = if efivars::mount_efivarfs() {
        BootEntry::from_vars(
            efivars::loader_string("LoaderEntrySelected").as_deref(),
            efivars::loader_string("LoaderBootCountPath").as_deref(),
        )
    } else {
        BootEntry::from_vars(None, None)
    };
    let esp_dev = match bd.device(&disk::Linux, disk_layout::ESP_NUMBER, bd.wait) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("the ESP: {e}; boot entries cannot be judged or upgraded");
            return;
        }
    };
    let status = basalt_api::rpc::BootStatus {
        disk: bd.disk.path(),
        slot: bd.slot.to_string(),
        var: d.var.clone(),
        ..Default::default()
    };
    let slots = Arc::new(DiskSlots {
        disks: Arc::new(disk::Linux),
        esp: Arc::new(esp::Esp { dev: esp_dev }),
        disk: std::sync::Mutex::new(bd.clone()),
        trial: entry.counted.is_some().into(),
        entry,
        host: Host::node(),
        counters_path: format!("{state_dir}/upgrade.json"),
    });
    node.attach_slots(Arc::clone(&slots) as Arc<dyn crate::upgrade::SlotWriter>);
    tokio::spawn(slots::assess(Arc::clone(node), slots, status, timeout));
}

/// Step 9: unmount what [`place_state`] mounted, and nothing else.
pub fn release_state(m: &dyn Mounter, place: &StatePlace) {
    if let Some(target) = place.mounted
        && let Err(e) = m.unmount(target)
    {
        tracing::warn!("unmounting {target}: {e}");
    }
}

/// The last step before power-off: flush, then unmount STATE if PID 1
/// mounted it, then EPHEMERAL (`var_mounted`; STATE's mount point lies
/// inside /var, so it goes first). A filesystem still busy stays mounted:
/// its data is flushed, and ext4's journal replays at the next mount.
pub fn flush_and_release(p: &dyn Power, m: &dyn Mounter, place: &StatePlace, var_mounted: bool) {
    p.sync();
    release_state(m, place);
    if var_mounted && let Err(e) = m.unmount(mounts::VAR) {
        tracing::warn!("unmounting EPHEMERAL at {}: {e}", mounts::VAR);
    }
}

fn image_trust(host: &Host) -> basalt_api::trust::TrustRoots {
    match host
        .read(TRUST_ROOTS)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            basalt_api::trust::TrustRoots::from_toml(&String::from_utf8_lossy(&t))
                .map_err(|e| e.to_string())
        }) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("trust roots {TRUST_ROOTS}: {e}; no apply can be accepted");
            basalt_api::trust::TrustRoots::none()
        }
    }
}

/// Step 5: loopback up and DHCP on every physical link.
async fn start_network() -> Option<NetworkController> {
    match NetworkController::start(ControllerOptions::default()).await {
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
    }
}

/// Step 6: serve the API until the listener fails (bind retried).
async fn serve_api(identity: &Identity, node: &Arc<Node>) {
    let port = basalt_api::request::API_PORT;
    let listener = loop {
        match crate::listen::bind_any(port) {
            Ok((l, None)) => break l,
            Ok((l, Some(v6))) => {
                tracing::warn!("API on IPv4 only: [::]:{port}: {v6}");
                break l;
            }
            Err(e) => {
                tracing::error!("binding the API's port {port}: {e}; retrying");
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
        Arc::clone(node),
        Limits::default(),
    ));
}

async fn serve(args: cmdline::BootArgs, disk_boot: Option<DiskBoot>) -> PowerEvent {
    if let Err(e) = supervisor::init_reaper() {
        tracing::error!("reaper: {e}");
    }
    let sup = match Supervisor::new(SupervisorConfig {
        cgroup_root: Some(supervisor::NODE_CGROUP_ROOT.into()),
        log_lines: 2000,
    }) {
        Ok(s) => s,
        Err(e) => fatal(&format!("supervisor: {e}")),
    };
    let host = Host::node();
    // The installer (an ISO boot) runs from RAM: a STATE it finds belongs
    // to a disk it may be about to overwrite.
    let installing = host.exists(&crate::installer::media_path(
        basalt_api::image_layout::INSTALL_DISK_HEAD,
    ));
    let dev = match &disk_boot {
        Some(d) => d.state.clone(),
        None if installing => None,
        None => blockdev::find_by_label(&args.state_label),
    };
    let place = place_state(&Linux, dev.as_deref(), &args.state_label);
    let state = match StateStore::open(place.dir, place.ram) {
        Ok(s) => s,
        Err(e) => fatal(&format!("STATE: {e}")),
    };
    let image_trust = image_trust(&host);
    let identity =
        match Identity::load_or_create(state.fs(), &state.dir().join("tls"), &host.hostname()) {
            Ok(i) => i,
            Err(e) => fatal(&format!("TLS identity: {e}")),
        };
    let fingerprint = identity.fingerprint();
    let net = start_network().await;

    let (tx, mut power) = tokio::sync::mpsc::unbounded_channel();
    let boot_id = host.boot_id();
    let services = vec![crate::containerd::service(
        std::path::Path::new("/"),
        std::path::Path::new(crate::containerd::BIN_DIR),
    )];
    if let Err(e) = host.write_atomic(
        crate::containerd::CONFIG,
        crate::containerd::config(std::path::Path::new("/")).as_bytes(),
        0o644,
    ) {
        tracing::error!("containerd config: {e}");
    }
    let nonces = match crate::auth::Nonces::new(crate::auth::NONCE_TTL) {
        Ok(n) => n,
        Err(_) => fatal("no randomness for the API nonce key"),
    };
    let images = crate::controllers::images::ImageImporter::node(&host);
    let node = Node::boot(BootParts {
        host,
        supervisor: sup.clone(),
        services,
        images: Some(images),
        state,
        image_trust,
        boot_id,
        tls_fingerprint: fingerprint.clone(),
        nonces,
        power: tx,
    });
    if let Some(i) = DiskInstaller::from_payload(
        &node.host,
        Arc::new(disk::Linux),
        Arc::new(Linux),
        place.dir,
    ) {
        tracing::info!("installer: a config with [machine.install] writes this image to a disk");
        node.set_installer(Arc::new(i));
    }
    node.clear_upgrade_spool().await;
    node.apply_baked_config().await;
    node.attach_network(net.clone()).await;
    node.start_runtime().await;
    serve_api(&identity, &node).await;
    if let Some(d) = &disk_boot {
        start_assessment(&node, d, place.dir, args.bless_timeout);
    }
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
    let var_mounted = disk_boot.as_ref().is_some_and(|d| d.var != RAM_VAR);
    flush_and_release(&power::Linux, &Linux, &place, var_mounted);
    event
}

async fn wait_for_power(
    power: &mut tokio::sync::mpsc::UnboundedReceiver<PowerEvent>,
) -> PowerEvent {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut pwr)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::from_raw(power::SIGPWR)),
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
        power_off(PowerEvent::Reboot)
    }));
}

#[cfg(test)]
mod tests;

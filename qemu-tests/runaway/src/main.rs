//! `/init` of the runaway-service QEMU test (`qemu-tests/tests/runaway.rs`).
//!
//! As PID 1 of a VM whose cgroup2 owns every controller, it does what
//! machined's PID 1 does first (the API filesystems, cgroup2 with `+memory
//! +pids`, `oom_score_adj` -1000), then runs machined's real [`Supervisor`]
//! over two runaway services, both this binary re-executed in a mode:
//!
//! - `hog`: allocates and touches memory until killed, under a
//!   `memory.max` far below the VM's memory;
//! - `forkbomb`: spawns copies of itself, each doing the same, under a
//!   `pids.max`;
//!
//! and a well-behaved `idle` service, started and stopped while each runs
//! wild to show the supervisor still serves. It prints one
//! `RUNAWAY-RESULT check=<name> key=value…` line per check on the console
//! (the host test asserts on the numbers), `RUNAWAY-DONE`, and powers off.
//! Any error prints `RUNAWAY-ERROR` and powers off too: PID 1 must not
//! exit, and a kernel panic would reboot the VM into another run.

use anyhow::{Context, Result, bail};
use machined::host::{kernel, mounts, power};
use machined::supervisor::{
    Backoff, NODE_CGROUP_ROOT, ServiceSpec, ServiceState, Supervisor, SupervisorConfig,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The hog's `memory.max`: 32 MiB in a 512 MiB VM, so hitting it is the
/// cgroup's limit and not the machine running out.
const HOG_MEMORY_MAX: u64 = 32 << 20;
/// The fork bomb's `pids.max`.
const BOMB_PIDS_MAX: u64 = 64;
/// OOM kills (and so restarts) the hog must go through.
const HOG_KILLS: u64 = 3;
/// How long the fork bomb runs at its limit while `pids.current` is sampled.
const BOMB_WATCH: Duration = Duration::from_secs(8);
/// Generous bounds for each phase under TCG.
const PHASE: Duration = Duration::from_secs(60);

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("hog") => hog(),
        Some("forkbomb") => forkbomb(),
        Some("idle") => loop {
            std::thread::sleep(Duration::from_secs(60));
        },
        _ => init(),
    }
}

/// Touch memory a MiB at a time, keeping all of it, until the kernel kills us.
fn hog() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.iter_mut().step_by(4096) {
            *page = 1;
        }
        kept.push(std::hint::black_box(chunk));
    }
}

/// Every copy spawns copies of itself as fast as it can and keeps them; a
/// refused spawn (EAGAIN once `pids.max` is reached) is retried.
fn forkbomb() -> ! {
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/init"));
    let mut children = Vec::new();
    loop {
        match std::process::Command::new(&me).arg("forkbomb").spawn() {
            Ok(child) => children.push(child),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn init() -> ! {
    mounts::early();
    machined::pid1::shield_from_oom_killer(&kernel::Linux);
    mounts::late();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .init();
    std::panic::set_hook(Box::new(|info| {
        println!("RUNAWAY-ERROR panic: {info}");
        power::power_off(power::PowerEvent::Shutdown)
    }));
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")
        .and_then(|rt| rt.block_on(run()));
    match outcome {
        Ok(lines) => {
            for line in lines {
                println!("RUNAWAY-RESULT {line}");
            }
            println!("RUNAWAY-DONE");
        }
        Err(e) => println!("RUNAWAY-ERROR {e:#}"),
    }
    power::power_off(power::PowerEvent::Shutdown)
}

/// This binary in `mode`, restarted quickly so the hog cycles a few times.
fn service(name: &str, mode: &str) -> Result<ServiceSpec> {
    let exe = std::env::current_exe().context("own path")?;
    let mut spec = ServiceSpec::new(name, vec![exe.display().to_string(), mode.into()]);
    spec.restart = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(500),
        factor: 2,
    };
    spec.stop_grace = Duration::from_secs(5);
    Ok(spec)
}

fn cgroup_file(service: &str, file: &str) -> PathBuf {
    PathBuf::from(NODE_CGROUP_ROOT).join(service).join(file)
}

fn read_trimmed(path: impl Into<PathBuf>) -> Result<String> {
    let path = path.into();
    let s =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(s.trim().to_string())
}

/// One `key value` line of a flat-keyed file (memory.events, /proc/vmstat).
fn keyed(path: impl Into<PathBuf>, key: &str) -> Result<u64> {
    let path = path.into();
    let text = read_trimmed(&path)?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("no {key} in {}: {text}", path.display()))
}

async fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + PHASE;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {PHASE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run() -> Result<Vec<String>> {
    let sup = Supervisor::new(SupervisorConfig {
        cgroup_root: Some(NODE_CGROUP_ROOT.into()),
        log_lines: 20,
    })?;
    let controllers = read_trimmed(PathBuf::from(NODE_CGROUP_ROOT).join("cgroup.subtree_control"))?;
    let mut lines = vec![
        format!(
            "check=pid1 pid={} oom_score_adj={} controllers={}",
            std::process::id(),
            read_trimmed("/proc/self/oom_score_adj")?,
            controllers.replace(' ', ",")
        ),
        hog_phase(&sup).await?,
        bomb_phase(&sup).await?,
    ];
    lines.push(stop_phase(&sup).await?);
    Ok(lines)
}

/// The supervisor starts, sees ready and stops another service while a
/// runaway one is at its limit: its pid, its `oom_score_adj` and its state
/// once stopped.
async fn serve_another(sup: &Supervisor, name: &str) -> Result<String> {
    sup.start(vec![service(name, "idle")?])?;
    sup.wait_ready(name, PHASE).await?;
    let pid = until("the bystander's pid", || sup.status(name).ok()?.pid).await?;
    let adj = read_trimmed(format!("/proc/{pid}/oom_score_adj"))?;
    sup.stop(name).await?;
    let state = sup.status(name)?.state;
    Ok(format!(
        "bystander_pid={pid} bystander_oom_score_adj={adj} bystander_after_stop={}",
        state_name(state)
    ))
}

fn state_name(state: ServiceState) -> String {
    format!("{state:?}").to_lowercase()
}

async fn hog_phase(sup: &Supervisor) -> Result<String> {
    let mut hog = service("hog", "hog")?;
    hog.memory_max = Some(HOG_MEMORY_MAX);
    sup.start(vec![hog])?;
    let events = cgroup_file("hog", "memory.events");
    // The hog's score while it runs (a child of PID 1 must not inherit -1000,
    // or its own cgroup's OOM killer could not pick it).
    let adj = until("the hog's oom_score_adj", || {
        let pid = sup.status("hog").ok()?.pid?;
        read_trimmed(format!("/proc/{pid}/oom_score_adj")).ok()
    })
    .await?;
    until("the hog's first OOM kill", || {
        keyed(&events, "oom_kill").ok().filter(|&n| n >= 1)
    })
    .await?;
    let serving = serve_another(sup, "bystander-hog").await?;
    let restarts = until("the hog's restarts", || {
        let n = keyed(&events, "oom_kill").ok()?;
        let status = sup.status("hog").ok()?;
        (n >= HOG_KILLS && u64::from(status.restarts) >= HOG_KILLS - 1).then_some(status)
    })
    .await?;
    let hog_oom_kill = keyed(&events, "oom_kill")?;
    // `oom` counts only the cgroup's own OOMs (its limit reached), where
    // `oom_kill` also counts a machine-wide OOM that picked the hog.
    let hog_oom = keyed(&events, "oom")?;
    let peak = read_trimmed(cgroup_file("hog", "memory.peak")).unwrap_or_else(|_| "absent".into());
    sup.stop("hog").await?;
    let after_stop = sup.status("hog")?.state;
    // After the stop (no kill can land between the two counts): the
    // basalt cgroup's memory.events is hierarchical and outlives the hog's
    // removed cgroup; /proc/vmstat counts every OOM kill in the VM.
    let basalt_oom_kill = keyed(
        PathBuf::from(NODE_CGROUP_ROOT).join("memory.events"),
        "oom_kill",
    )?;
    Ok(format!(
        "check=memory_hog memory_max={HOG_MEMORY_MAX} memory_peak={peak} oom={hog_oom} oom_kill={hog_oom_kill} \
         basalt_oom_kill={basalt_oom_kill} vm_oom_kill={} restarts={} last_signal={} \
         after_stop={} hog_oom_score_adj={adj} {serving}",
        keyed("/proc/vmstat", "oom_kill")?,
        restarts.restarts,
        // How the run before the last restart ended: the OOM killer's SIGKILL.
        restarts
            .last_exit
            .and_then(|e| e.signal)
            .map_or_else(|| "none".to_string(), |s| s.to_string()),
        state_name(after_stop),
    ))
}

/// Samples `pids.current` every few ms on its own thread until told to stop:
/// (highest seen, samples).
fn sample_pids(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let (mut highest, mut samples) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = read_trimmed(cgroup_file("forkbomb", "pids.current"))
                .map(|s| s.parse::<u64>().unwrap_or(u64::MAX))
            {
                highest = highest.max(n);
                samples += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (highest, samples)
    })
}

async fn bomb_phase(sup: &Supervisor) -> Result<String> {
    let mut bomb = service("forkbomb", "forkbomb")?;
    bomb.pids_max = Some(BOMB_PIDS_MAX);
    sup.start(vec![bomb])?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_pids(stop.clone());
    let events = cgroup_file("forkbomb", "pids.events");
    until("the fork bomb's first refused fork", || {
        keyed(&events, "max").ok().filter(|&n| n >= 1)
    })
    .await?;
    let at_limit = Instant::now();
    let serving = serve_another(sup, "bystander-bomb").await?;
    tokio::time::sleep(BOMB_WATCH.saturating_sub(at_limit.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let (highest, samples) = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the pids.current sampler panicked"))?;
    let status = sup.status("forkbomb")?;
    Ok(format!(
        "check=fork_bomb pids_max={BOMB_PIDS_MAX} pids_current_highest={highest} samples={samples} \
         pids_events_max={} pids_peak={} bomb_state={} bomb_restarts={} {serving}",
        keyed(&events, "max")?,
        read_trimmed(cgroup_file("forkbomb", "pids.peak")).unwrap_or_else(|_| "absent".into()),
        state_name(status.state),
        status.restarts,
    ))
}

/// Processes in the VM: PID 1, its tokio threads' owners and whatever
/// the services left behind.
fn vm_processes() -> Result<usize> {
    Ok(std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .count())
}

/// Stop everything while the fork bomb is still at its limit: every
/// service stopped, no process left in its cgroup.
async fn stop_phase(sup: &Supervisor) -> Result<String> {
    let before = vm_processes()?;
    let t = Instant::now();
    sup.stop_all().await;
    let took = t.elapsed();
    let procs = PathBuf::from(NODE_CGROUP_ROOT).join("forkbomb/cgroup.procs");
    let members = || std::fs::read_to_string(&procs).map_or(0, |s| s.lines().count());
    // The group's members other than its leader may still be exiting when
    // stop returns (the supervisor then keeps the emptying cgroup): wait for
    // them, failing the run if they outlive the phase bound.
    let at_stop = members();
    until("the fork bomb's cgroup to empty", || {
        (members() == 0).then_some(())
    })
    .await?;
    let emptied = t.elapsed();
    let states: Vec<String> = sup
        .list()
        .into_iter()
        .map(|s| format!("{}:{}", s.name, state_name(s.state)))
        .collect();
    Ok(format!(
        "check=stop_all took_ms={} emptied_ms={} processes_before={before} processes_after={} \
         bomb_members_at_stop={at_stop} bomb_cgroup_removed={} states={} vm_oom_kill={}",
        took.as_millis(),
        emptied.as_millis(),
        vm_processes()?,
        !procs.exists(),
        states.join(","),
        keyed("/proc/vmstat", "oom_kill")?,
    ))
}

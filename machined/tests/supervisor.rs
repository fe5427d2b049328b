//! Supervisor integration tests with real child processes (tier 2 of DESIGN "Tests").
//!
//! All tests share one process, hence one reaper and the subreaper setting
//! (installed once by `Supervisor::new`). Nothing here may spawn children
//! other than through the supervisor: the reaper owns `waitpid(-1)`.
//! Helpers are `/bin/sh` scripts and this very test binary (see
//! `helper_process`), so no tool beyond a POSIX shell and coreutils is needed.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use machined::supervisor::{
    Backoff, DEFAULT_PIDS_MAX, Readiness, ServiceSpec, ServiceState, ServiceStatus, Stream,
    Supervisor, SupervisorConfig, SupervisorError,
};

const HELPER_ENV: &str = "BASALT_SUPERVISOR_HELPER";

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn supervisor(log_lines: usize) -> Supervisor {
    Supervisor::new(SupervisorConfig {
        cgroup_root: None,
        log_lines,
    })
    .unwrap()
}

fn fast(mut spec: ServiceSpec) -> ServiceSpec {
    spec.restart = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        factor: 2,
    };
    spec.stop_grace = Duration::from_secs(2);
    spec.ready_timeout = Duration::from_secs(5);
    spec
}

/// A service running this test binary in helper mode `mode`.
fn helper(name: &str, mode: &str) -> ServiceSpec {
    let exe = std::env::current_exe().unwrap();
    let mut spec = ServiceSpec::new(
        name,
        vec![
            exe.to_string_lossy().into_owned(),
            "--exact".into(),
            "helper_process".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
        ],
    );
    spec.env = vec![(HELPER_ENV.into(), mode.into())];
    fast(spec)
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Not a test of its own: when run as a child with `BASALT_SUPERVISOR_HELPER`
/// set, this acts as a small daemon.
/// - `listen:<socket>:<delay ms>:<stamp file>`: after the delay, write the time
///   to the stamp file, listen on the unix socket, accept forever. The stamp
///   comes first so that anything started on readiness is stamped later.
/// - `stamp:<file>`: write the time to the file, then idle forever.
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let parts: Vec<&str> = mode.split(':').collect();
    match parts.as_slice() {
        ["listen", sock, delay, stamp] => {
            std::thread::sleep(Duration::from_millis(delay.parse().unwrap()));
            write_stamp(stamp);
            let listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
            for conn in listener.incoming() {
                drop(conn);
            }
        }
        ["stamp", file] => {
            write_stamp(file);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        _ => panic!("bad helper mode {mode}"),
    }
}

/// Written whole or not at all (rename), so a reader that sees the file never
/// sees it empty.
fn write_stamp(path: &str) {
    let partial = format!("{path}.partial");
    std::fs::write(&partial, now_nanos().to_string()).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status(sup: &Supervisor, name: &str) -> ServiceStatus {
    sup.status(name).unwrap()
}

/// `(state, ppid)` of a process from /proc, if it exists.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Zombie children of this process.
fn our_zombies() -> BTreeSet<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid) == Some(('Z', me)))
        .collect()
}

#[tokio::test]
async fn restarts_crashing_child_with_growing_capped_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let script = format!(
        "date +%s%N >> '{}'; echo out $$; echo err $$ >&2; exit 3",
        starts.display()
    );
    let sup = supervisor(5);
    sup.start(vec![fast(ServiceSpec::new("crasher", sh(&script)))])
        .unwrap();

    let count = || {
        std::fs::read_to_string(&starts)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    wait_until("7 starts", Duration::from_secs(10), || count() >= 7).await;
    let st = status(&sup, "crasher");
    sup.stop_all().await;

    let times: Vec<u128> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect();
    println!("gaps between starts (ms): {gaps:?}");
    // Delays 50, 100, 200, 400, 400, …: each gap is a delay plus a short run.
    assert!(gaps[0] >= 45, "first restart too early: {gaps:?}");
    for w in gaps.windows(2) {
        assert!(w[1] + 40 >= w[0], "gaps decreased: {gaps:?}");
    }
    assert!(gaps[2] >= 190, "backoff does not grow: {gaps:?}");
    for &g in &gaps[4..] {
        assert!((390..800).contains(&g), "not capped at 400 ms: {gaps:?}");
    }

    assert!(st.restarts >= 6, "{st:?}");
    let exit = st.last_exit.expect("an exit");
    assert_eq!(exit.code, Some(3));
    assert_eq!(exit.signal, None);

    // The ring holds the last 5 lines, from more than one run.
    let logs = sup.logs("crasher").unwrap();
    assert_eq!(logs.len(), 5, "{logs:?}");
    assert!(logs[0].seq > 0, "oldest lines must have been dropped");
    for w in logs.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
    let pids: BTreeSet<&str> = logs
        .iter()
        .map(|l| l.line.split(' ').nth(1).unwrap())
        .collect();
    assert!(pids.len() >= 2, "lines from one run only: {logs:?}");
    assert!(
        logs.iter()
            .any(|l| l.stream == Stream::Stdout && l.line.starts_with("out "))
    );
    assert!(
        logs.iter()
            .any(|l| l.stream == Stream::Stderr && l.line.starts_with("err "))
    );
    assert_eq!(status(&sup, "crasher").state, ServiceState::Stopped);
}

/// Kill-100: a service SIGKILLed 100 times in a row, each time as soon as it
/// is back, is restarted every time, and each restart waits its backoff.
///
/// What is asserted is the documented policy ([`Backoff`]): a kill is an
/// exit like any crash, so it counts as a failure and the next delay grows
/// (`initial × factor^n`, capped at `max`); the count resets only after a
/// run that stayed up for [`Backoff::reset_window`].
#[tokio::test]
async fn killed_100_times_is_restarted_every_time_with_its_backoff() {
    const KILLS: u32 = 100;
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(160),
        factor: 2,
    };
    let sup = supervisor(10);
    let mut spec = fast(ServiceSpec::new("victim", sh("exec sleep 1000")));
    spec.restart = backoff;
    sup.start(vec![spec]).unwrap();

    // Kill the running pid; return how long until a new pid runs.
    let kill_and_time_return = |pid: u32| {
        let sup = sup.clone();
        async move {
            let raw = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
            let killed_at = Instant::now();
            rustix::process::kill_process(raw, rustix::process::Signal::KILL).unwrap();
            let deadline = killed_at + Duration::from_secs(5);
            loop {
                let st = status(&sup, "victim");
                if let Some(new) = st.pid.filter(|&p| p != pid) {
                    return (killed_at.elapsed(), new, st);
                }
                assert!(
                    Instant::now() < deadline,
                    "not restarted after kill: {st:?}"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };

    wait_until("first start", Duration::from_secs(5), || {
        status(&sup, "victim").pid.is_some()
    })
    .await;
    let mut pid = status(&sup, "victim").pid.unwrap();
    let mut gaps = Vec::new();
    for n in 0..KILLS {
        let (gap, new, st) = kill_and_time_return(pid).await;
        assert_eq!(st.restarts, n + 1, "restart count after kill {n}: {st:?}");
        let exit = st.last_exit.expect("the kill is recorded");
        assert_eq!(exit.signal, Some(9), "{exit:?}");
        gaps.push(gap);
        pid = new;
    }
    let ms: Vec<u128> = gaps.iter().map(Duration::as_millis).collect();
    println!("kill -> back (ms): {ms:?}");
    for (n, gap) in gaps.iter().enumerate() {
        let delay = backoff.delay(u32::try_from(n).unwrap());
        // Never earlier than the backoff: 20, 40, 80, 160, 160, …
        assert!(
            *gap >= delay,
            "restart {n} after {gap:?}, before its backoff {delay:?}: {ms:?}"
        );
        // And capped: an uncapped schedule would be 320 ms at n = 4 and
        // seconds soon after; slack for a loaded machine, well under that.
        assert!(
            *gap < delay + Duration::from_millis(140),
            "restart {n} after {gap:?}, backoff {delay:?}: {ms:?}"
        );
    }
    assert_eq!(
        backoff.delay(KILLS - 1),
        backoff.max,
        "the schedule reached its cap"
    );

    // A run that stays up past the reset window clears the failure count:
    // the next kill waits `initial` again, not the cap.
    tokio::time::sleep(backoff.reset_window() * 2).await;
    let (gap, _, st) = kill_and_time_return(pid).await;
    assert_eq!(st.restarts, KILLS + 1);
    assert!(
        gap >= backoff.initial && gap < backoff.max,
        "after a healthy run the backoff must restart at {:?}, took {gap:?}",
        backoff.initial
    );
    sup.stop_all().await;
    assert_eq!(status(&sup, "victim").state, ServiceState::Stopped);
}

/// PID 1 runs with `oom_score_adj` -1000; its services must not inherit
/// that, or the OOM killer could never stop a runaway one: each child sets
/// its own score back to 0 before exec. Lowering a score below 0 needs
/// CAP_SYS_RESOURCE (PID 1 has it, this test's sandbox may not), so here
/// the supervisor stands at +500 instead: the child inherits 500 unless the
/// reset happens, the same write either way.
#[tokio::test]
async fn services_do_not_inherit_the_supervisors_oom_score() {
    let own = "/proc/self/oom_score_adj";
    let before = std::fs::read_to_string(own).unwrap();
    std::fs::write(own, "500").unwrap();
    let sup = supervisor(10);
    sup.start(vec![fast(ServiceSpec::new("scored", sh("exec sleep 30")))])
        .unwrap();
    wait_until("start", Duration::from_secs(5), || {
        status(&sup, "scored").pid.is_some()
    })
    .await;
    let pid = status(&sup, "scored").pid.unwrap();
    // The score is reset before exec, so once `sleep` runs it is final.
    wait_until("exec", Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.starts_with("sleep"))
    })
    .await;
    let child = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    let parent = std::fs::read_to_string(own).unwrap();
    std::fs::write(own, before.trim()).unwrap();
    sup.stop_all().await;
    assert_eq!(parent.trim(), "500");
    assert_eq!(
        child.trim(),
        "0",
        "the service inherited its supervisor's score"
    );
}

#[tokio::test]
async fn reaps_orphaned_grandchildren() {
    let sup = supervisor(100);
    let mut spec = fast(ServiceSpec::new(
        "orphaner",
        sh("sleep 1 & echo $!; exit 0"),
    ));
    // No restart within this test.
    spec.restart.initial = Duration::from_secs(30);
    spec.restart.max = Duration::from_secs(30);
    sup.start(vec![spec]).unwrap();

    let mut grandchild = None;
    wait_until("the grandchild pid", Duration::from_secs(5), || {
        grandchild = sup
            .logs("orphaner")
            .unwrap()
            .first()
            .and_then(|l| l.line.parse::<u32>().ok());
        grandchild.is_some()
    })
    .await;
    let grandchild = grandchild.unwrap();
    wait_until("the service exit", Duration::from_secs(5), || {
        status(&sup, "orphaner").last_exit.is_some()
    })
    .await;
    assert_eq!(status(&sup, "orphaner").last_exit.unwrap().code, Some(0));

    // Its parent is gone: the grandchild was re-parented to us (the subreaper).
    let me = std::process::id();
    match proc_stat(grandchild) {
        Some((_, ppid)) => assert_eq!(ppid, me, "grandchild not re-parented to the subreaper"),
        None => panic!("grandchild {grandchild} vanished before its 1 s sleep ended"),
    }
    // It exits after 1 s and must then be reaped, not left a zombie.
    wait_until(
        "the grandchild to be reaped",
        Duration::from_secs(5),
        || proc_stat(grandchild).is_none(),
    )
    .await;

    // No zombie of ours survives (other tests may have one for an instant).
    let first = our_zombies();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lasting: Vec<u32> = our_zombies().intersection(&first).copied().collect();
    assert!(lasting.is_empty(), "zombies not reaped: {lasting:?}");
    sup.stop_all().await;
}

#[tokio::test]
async fn starts_dependents_after_readiness_and_refuses_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("a.sock");
    let a_stamp = dir.path().join("a.about-to-listen");
    let b_stamp = dir.path().join("b.started");

    let mut a = helper(
        "a",
        &format!("listen:{}:700:{}", sock.display(), a_stamp.display()),
    );
    a.readiness = Readiness::UnixSocket(sock.clone());
    let mut b = helper("b", &format!("stamp:{}", b_stamp.display()));
    b.depends_on = vec!["a".into()];

    let sup = supervisor(100);
    let t0 = now_nanos();
    // Input order b, a: the supervisor orders by dependency.
    sup.start(vec![b, a]).unwrap();
    sup.wait_ready("b", Duration::from_secs(10)).await.unwrap();
    wait_until("b's stamp", Duration::from_secs(5), || b_stamp.exists()).await;

    let read = |p: &Path| -> u128 { std::fs::read_to_string(p).unwrap().parse().unwrap() };
    let (a_listen, b_start) = (read(&a_stamp), read(&b_stamp));
    assert!(
        b_start > a_listen,
        "b started {} ms before a listened",
        (a_listen - b_start) / 1_000_000
    );
    assert!((b_start - t0) / 1_000_000 >= 650, "b did not wait for a");
    let names: Vec<String> = sup.list().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(status(&sup, "a").ready && status(&sup, "a").state == ServiceState::Running);
    sup.stop_all().await;

    // A cycle is refused, naming its services, and nothing starts.
    let sup = supervisor(10);
    let mut x = fast(ServiceSpec::new("x", sh("sleep 30")));
    x.depends_on = vec!["y".into()];
    let mut y = fast(ServiceSpec::new("y", sh("sleep 30")));
    y.depends_on = vec!["x".into()];
    let z = fast(ServiceSpec::new("z", sh("sleep 30")));
    let err = sup.start(vec![z.clone(), x, y]).unwrap_err();
    assert!(matches!(err, SupervisorError::Cycle(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("x -> y") || msg.contains("y -> x"), "{msg}");
    assert!(sup.list().is_empty());

    let mut w = z.clone();
    w.name = "w".into();
    w.depends_on = vec!["nope".into()];
    let err = sup.start(vec![z, w]).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(sup.list().is_empty());
}

#[tokio::test]
async fn start_when_holds_a_service_until_its_condition_passes() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("apiserver-listens");
    let stamp = dir.path().join("kubelet.started");
    let mut k = helper("k", &format!("stamp:{}", stamp.display()));
    k.start_when = Some(Readiness::Path(gate.clone()));
    let sup = supervisor(10);
    sup.start(vec![k]).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(status(&sup, "k").state, ServiceState::Waiting);
    assert!(!stamp.exists(), "started before its condition passed");
    std::fs::write(&gate, "").unwrap();
    sup.wait_ready("k", Duration::from_secs(10)).await.unwrap();
    wait_until("k's stamp", Duration::from_secs(5), || stamp.exists()).await;
    // Stopping a service that waits for its condition does not hang.
    let mut w = fast(ServiceSpec::new("w", sh("sleep 30")));
    w.start_when = Some(Readiness::Path(dir.path().join("never")));
    sup.start(vec![w]).unwrap();
    tokio::time::timeout(Duration::from_secs(10), sup.stop_all())
        .await
        .expect("stop_all while w waits");
}

#[tokio::test]
async fn kills_services_ignoring_sigterm_after_the_grace() {
    let sup = supervisor(100);
    let mut spec = ServiceSpec::new(
        "stubborn",
        sh("trap '' TERM; echo started; while :; do sleep 0.05; done"),
    );
    spec.stop_grace = Duration::from_millis(300);
    sup.start(vec![spec]).unwrap();
    wait_until("started", Duration::from_secs(5), || {
        !sup.logs("stubborn").unwrap().is_empty()
    })
    .await;
    let pid = status(&sup, "stubborn").pid.unwrap();

    let t = Instant::now();
    sup.stop("stubborn").await.unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "killed before the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let st = status(&sup, "stubborn");
    assert_eq!(st.state, ServiceState::Stopped);
    assert_eq!(st.pid, None);
    assert_eq!(st.last_exit.unwrap().signal, Some(9), "{st:?}");
    assert!(proc_stat(pid).is_none(), "stopped process still present");
}

#[tokio::test]
async fn stops_in_reverse_start_order() {
    let dir = tempfile::tempdir().unwrap();
    let order = dir.path().join("order");
    let svc = |name: &str, dep: Option<&str>| {
        let ready = dir.path().join(format!("{name}.ready"));
        let script = format!(
            "echo start {name} >> '{o}'; trap 'echo stop {name} >> \"{o}\"; exit 0' TERM; \
             touch '{r}'; while :; do sleep 0.05; done",
            o = order.display(),
            r = ready.display()
        );
        let mut s = fast(ServiceSpec::new(name, sh(&script)));
        s.readiness = Readiness::Path(ready);
        s.depends_on = dep.into_iter().map(String::from).collect();
        s
    };
    let sup = supervisor(10);
    sup.start(vec![
        svc("c", Some("b")),
        svc("b", Some("a")),
        svc("a", None),
    ])
    .unwrap();
    sup.wait_ready("c", Duration::from_secs(10)).await.unwrap();
    sup.stop_all().await;
    let got = std::fs::read_to_string(&order).unwrap();
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        [
            "start a", "start b", "start c", "stop c", "stop b", "stop a"
        ]
    );
    for s in sup.list() {
        assert_eq!(s.state, ServiceState::Stopped, "{s:?}");
        assert_eq!(s.last_exit.unwrap().code, Some(0), "{s:?}");
    }
}

#[tokio::test]
async fn restart_follow_and_failures() {
    let sup = supervisor(100);
    sup.start(vec![fast(ServiceSpec::new(
        "echoer",
        sh("echo hello $$; exec sleep 30"),
    ))])
    .unwrap();
    let mut follow = sup.follow("echoer").unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), follow.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first.line.starts_with("hello "), "{first:?}");
    sup.restart("echoer").await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), follow.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(second.line.starts_with("hello ") && second.line != first.line);
    assert_eq!(second.seq, first.seq + 1);
    let st = status(&sup, "echoer");
    assert_eq!(st.restarts, 1);
    assert_eq!(st.last_exit.unwrap().signal, Some(15));
    assert_eq!(st.memory_current, None);

    // A program that does not exist: reported, retried, no panic.
    sup.start(vec![fast(ServiceSpec::new(
        "missing",
        vec!["/nonexistent/basalt-test".into()],
    ))])
    .unwrap();
    // A service that never becomes ready: killed and retried.
    let mut never = fast(ServiceSpec::new("never", sh("exec sleep 30")));
    never.readiness = Readiness::Path(PathBuf::from("/nonexistent/ready"));
    never.ready_timeout = Duration::from_millis(200);
    sup.start(vec![never]).unwrap();
    wait_until("failures reported", Duration::from_secs(5), || {
        let m = status(&sup, "missing");
        let n = status(&sup, "never");
        m.restarts >= 2
            && m.last_error
                .as_deref()
                .is_some_and(|e| e.contains("No such file"))
            && n.restarts >= 1
            && n.last_error
                .as_deref()
                .is_some_and(|e| e.contains("not ready"))
    })
    .await;
    assert!(matches!(
        sup.start(vec![fast(ServiceSpec::new("echoer", sh("true")))]),
        Err(SupervisorError::Duplicate(_))
    ));
    sup.stop_all().await;
    assert!(sup.list().iter().all(|s| s.state == ServiceState::Stopped));
    // A stopped service can be started again.
    sup.restart("echoer").await.unwrap();
    sup.wait_ready("echoer", Duration::from_secs(5))
        .await
        .unwrap();
    sup.stop_all().await;
}

#[tokio::test]
async fn without_cgroup2_runs_without_cgroups() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(SupervisorConfig {
        cgroup_root: Some(dir.path().to_path_buf()),
        log_lines: 10,
    })
    .unwrap();
    let mut spec = fast(ServiceSpec::new("plain", sh("echo up; exec sleep 30")));
    spec.memory_max = Some(64 << 20);
    sup.start(vec![spec]).unwrap();
    wait_until("output", Duration::from_secs(5), || {
        !sup.logs("plain").unwrap().is_empty()
    })
    .await;
    let st = status(&sup, "plain");
    assert_eq!(st.state, ServiceState::Running);
    assert_eq!(st.memory_current, None);
    assert!(!dir.path().join("plain").exists());
    sup.stop_all().await;
}

/// A writable cgroup2 mount: (mount point, its root inside the hierarchy).
fn cgroup2_mount() -> Option<(PathBuf, String)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let f: Vec<&str> = left.split(' ').collect();
        Some((PathBuf::from(f.get(4)?), f.get(3)?.to_string()))
    })
}

struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test]
/// Needs root and a writable cgroup2 mount (CI has both); without them it
/// fails, saying so, rather than pass without having checked anything.
async fn places_services_in_real_cgroups() {
    let (mnt, mnt_root) = cgroup2_mount().expect(
        "no cgroup2 mount: this test needs one (run as root on a cgroup2 host, as CI does)",
    );
    let root = mnt.join(format!("basalt-test-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&root) {
        panic!(
            "cgroup2 at {} is not writable ({e}): this test needs root, as CI runs it",
            mnt.display()
        );
    }
    let _cleanup = RemoveDir(root.clone());
    let sup = Supervisor::new(SupervisorConfig {
        cgroup_root: Some(root.clone()),
        log_lines: 10,
    })
    .unwrap();
    let mut spec = fast(ServiceSpec::new("cg", sh("echo up; exec sleep 30")));
    spec.memory_max = Some(256 << 20);
    sup.start(vec![spec]).unwrap();
    wait_until("output", Duration::from_secs(5), || {
        !sup.logs("cg").unwrap().is_empty()
    })
    .await;
    let st = status(&sup, "cg");
    let pid = st.pid.unwrap();
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = membership
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("no cgroup2 line");
    let expected = format!(
        "{}/basalt-test-{}/cg",
        mnt_root.trim_end_matches('/'),
        std::process::id()
    );
    assert_eq!(v2, expected, "service not placed in its cgroup");
    let procs = std::fs::read_to_string(root.join("cg/cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()));

    match std::fs::read_to_string(root.join("cg/memory.max")) {
        Ok(max) => {
            assert_eq!(max.trim(), (256u64 << 20).to_string());
            assert!(st.memory_current.is_some_and(|m| m > 0), "{st:?}");
        }
        Err(_) => {
            println!(
                "NOTE: memory controller not available under {}: memory.max/current NOT checked",
                mnt.display()
            );
            assert_eq!(st.memory_current, None);
        }
    }
    match std::fs::read_to_string(root.join("cg/pids.max")) {
        Ok(max) => assert_eq!(max.trim(), DEFAULT_PIDS_MAX.to_string()),
        Err(_) => println!(
            "NOTE: pids controller not available under {}: pids.max NOT checked",
            mnt.display()
        ),
    }
    sup.stop_all().await;
    assert!(
        !root.join("cg").exists(),
        "service cgroup not removed on stop"
    );
}

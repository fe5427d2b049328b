//! A runaway service cannot take the node down: on the Debian kernel under
//! QEMU, where cgroup2 owns the memory and pids controllers (on the test
//! hosts they sit on cgroup v1, so `machined/tests/supervisor.rs` cannot see
//! them), machined's supervisor runs a memory hog under `memory.max` and a
//! fork bomb under `pids.max`. The guest is `qemu-tests/runaway` as /init;
//! it prints what it measured and powers off, and this test asserts on it.

use qemu_tests::image::{self, Image};
use qemu_tests::vm::{Vm, VmOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Boot, three hog OOM kills, eight seconds of fork bomb, stop: about a
/// minute under TCG; doubled and then some.
const RUN: Duration = Duration::from_secs(240);
/// The guest's memory: the hog's 32 MiB limit is far below it.
const VM_MEMORY_MIB: u32 = 512;
const HOG_MEMORY_MAX: u64 = 32 << 20;
const BOMB_PIDS_MAX: u64 = 64;

/// Where scripts/test builds the static binaries (as tests/kubernetes.rs).
fn static_dir() -> PathBuf {
    std::env::var_os("BASALT_STATIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| image::target_dir().join("x86_64-unknown-linux-gnu/release"))
}

/// The one Debian kernel in /boot (as configs/images/debian.toml takes it).
fn debian_kernel() -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .expect("/boot")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        .map(|e| e.path())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want exactly one /boot/vmlinuz-* (install linux-image-amd64): {found:?}"
    );
    found.into_iter().next().unwrap()
}

/// An initramfs of the static guest as /init and /dev/console, uncompressed.
fn guest_image(guest: &Path) -> Image {
    let dir = image::target_dir().join("qemu-runs/runaway-image");
    std::fs::create_dir_all(&dir).unwrap();
    let mut a = initramfs::Archive::new(1);
    a.add_file("init", guest, 0o755).unwrap();
    a.add_char_device("dev/console", 5, 1, 0o600).unwrap();
    let initrd = dir.join("runaway.cpio");
    initramfs::Compression::None
        .write_archive(&a, std::fs::File::create(&initrd).unwrap())
        .unwrap();
    Image {
        dir,
        kernel: debian_kernel(),
        initramfs: initrd,
    }
}

/// `RUNAWAY-RESULT check=NAME k=v …` lines, by check name.
fn results(console: &str) -> HashMap<String, HashMap<String, String>> {
    console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once("RUNAWAY-RESULT "))
        .map(|(_, rest)| {
            let kv: HashMap<String, String> = rest
                .split_whitespace()
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (kv.get("check").cloned().unwrap_or_default(), kv)
        })
        .collect()
}

fn num(check: &HashMap<String, String>, key: &str) -> i64 {
    check
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key} in {check:?}"))
}

#[test]
fn a_memory_hog_and_a_fork_bomb_stay_in_their_cgroups() {
    let guest = static_dir().join("runaway");
    assert!(
        guest.exists(),
        "{} is missing: build it static as scripts/test does \
         (CARGO_ENCODED_RUSTFLAGS=-Ctarget-feature=+crt-static cargo build --release \
         --target x86_64-unknown-linux-gnu -p runaway)",
        guest.display()
    );
    let img = guest_image(&guest);
    let opts = VmOptions {
        memory_mib: Some(VM_MEMORY_MIB),
        // The kernel's error lines (the OOM killer's verdicts) but not its
        // multi-screen OOM reports, which crawl over TCG's serial port.
        append: "loglevel=4".into(),
        ..VmOptions::default()
    };
    let t = Instant::now();
    let mut vm = Vm::boot(&img, "runaway", &opts).expect("boot");
    let exit = vm.wait_exit(RUN).expect("the guest powers off");
    let console = vm.console();
    eprintln!("guest ran {:.1?}, QEMU {exit}", t.elapsed());
    let tail = vm.console_tail(60);
    assert!(
        console.contains("RUNAWAY-DONE"),
        "the guest did not finish its run:\n{tail}"
    );
    assert!(!console.contains("RUNAWAY-ERROR"), "{tail}");
    assert_eq!(vm.panic_line(), None, "{tail}");
    let r = results(&console);
    eprintln!("{r:#?}");
    let get = |name: &str| {
        r.get(name)
            .unwrap_or_else(|| panic!("no {name} result on the console:\n{tail}"))
    };

    // PID 1 shielded itself; the VM's cgroup2 has both controllers.
    let pid1 = get("pid1");
    assert_eq!(num(pid1, "pid"), 1);
    assert_eq!(num(pid1, "oom_score_adj"), -1000);
    let controllers = &pid1["controllers"];
    assert!(
        controllers.contains("memory") && controllers.contains("pids"),
        "{controllers}"
    );

    // The hog was OOM-killed in its cgroup, again and again, and restarted.
    // Each kill was its cgroup's own OOM (`oom`: its limit reached; a
    // machine-wide OOM that picked the hog counts in `oom_kill` only), and
    // no OOM kill happened anywhere else in the VM.
    let hog = get("memory_hog");
    assert_eq!(num(hog, "memory_max"), HOG_MEMORY_MAX as i64);
    assert!(num(hog, "oom_kill") >= 3, "{hog:?}");
    assert!(num(hog, "oom") >= num(hog, "oom_kill"), "{hog:?}");
    assert!(num(hog, "restarts") >= 2, "{hog:?}");
    assert_eq!(
        num(hog, "last_signal"),
        9,
        "SIGKILL from the OOM killer: {hog:?}"
    );
    assert!(num(hog, "memory_peak") <= HOG_MEMORY_MAX as i64, "{hog:?}");
    assert_eq!(
        num(hog, "basalt_oom_kill"),
        num(hog, "vm_oom_kill"),
        "{hog:?}"
    );
    assert!(
        num(hog, "basalt_oom_kill") >= num(hog, "oom_kill"),
        "{hog:?}"
    );
    assert_eq!(num(hog, "hog_oom_score_adj"), 0, "{hog:?}");
    assert_eq!(hog["after_stop"], "stopped");
    // Meanwhile the supervisor started and stopped another service.
    assert!(num(hog, "bystander_pid") > 1, "{hog:?}");
    assert_eq!(num(hog, "bystander_oom_score_adj"), 0, "{hog:?}");
    assert_eq!(hog["bystander_after_stop"], "stopped");
    // The kernel says which OOM it was: the memory cgroup's, never the machine's.
    assert!(
        console.contains("Memory cgroup out of memory: Killed process"),
        "{tail}"
    );
    assert!(!console.contains("Out of memory: Killed process"), "{tail}");

    // The fork bomb reached its pids.max, never passed it, had forks
    // refused, and the supervisor still started and stopped a service.
    let bomb = get("fork_bomb");
    assert_eq!(num(bomb, "pids_max"), BOMB_PIDS_MAX as i64);
    // The kernel charges a fork before checking the limit and takes the
    // charge back when it is over, so a sample of pids.current can catch
    // the limit plus one per CPU forking at that instant (65 was seen on
    // this 2-CPU guest); pids.peak, which records only successful charges,
    // is what never passes it.
    let highest = num(bomb, "pids_current_highest");
    assert!(
        (BOMB_PIDS_MAX as i64..=BOMB_PIDS_MAX as i64 + 2).contains(&highest),
        "{bomb:?}"
    );
    if bomb["pids_peak"] != "absent" {
        assert!(num(bomb, "pids_peak") <= BOMB_PIDS_MAX as i64, "{bomb:?}");
    }
    assert!(num(bomb, "samples") >= 100, "{bomb:?}");
    assert!(num(bomb, "pids_events_max") > 0, "{bomb:?}");
    assert_eq!(bomb["bomb_state"], "running");
    assert!(num(bomb, "bystander_pid") > 1, "{bomb:?}");
    assert_eq!(bomb["bystander_after_stop"], "stopped");

    // Stopping everything ends every process of the bomb.
    let stop = get("stop_all");
    for s in stop["states"].split(',') {
        assert!(s.ends_with(":stopped"), "{stop:?}");
    }
    assert!(
        num(stop, "processes_before") - num(stop, "processes_after") >= BOMB_PIDS_MAX as i64 - 1,
        "{stop:?}"
    );
    assert_eq!(
        num(stop, "vm_oom_kill"),
        num(hog, "vm_oom_kill"),
        "{stop:?}"
    );
}

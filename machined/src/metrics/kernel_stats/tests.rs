//! Fixtures are real files: from a Debian 12 host's /proc (6.18 kernel)
//! and a service cgroup of a Basalt node (Debian's 6.1 kernel).

use super::*;

const STAT: &str = "cpu  1353771 595563 269805 307413 5082 0 2069 10871 0 0\n\
cpu0 650619 300914 141807 178728 1365 0 415 5358 0 0\n\
intr 123 0 0\n\
ctxt 4567\n\
btime 1796121294\n\
processes 9762\n";

#[test]
fn cpu_seconds_per_mode_from_ticks() {
    let cpu = cpu_seconds(STAT, 100);
    assert_eq!(cpu.len(), 8);
    assert_eq!(cpu[0], ("user", 13537.71));
    assert_eq!(cpu[3], ("idle", 3074.13));
    assert_eq!(cpu[7], ("steal", 108.71));
    // The per-CPU lines are not the total.
    assert!(cpu_seconds("cpu0 1 2 3 4 5 6 7 8\n", 100).is_empty());
    assert_eq!(boot_time(STAT), Some(1796121294));
    assert_eq!(boot_time("cpu 1 2\n"), None);
}

#[test]
fn meminfo_in_bytes_and_missing_fields_stay_missing() {
    let m = meminfo(
        "MemTotal:       24683584 kB\nMemFree:        17361772 kB\n\
         MemAvailable:   21612064 kB\nBuffers:           40236 kB\n\
         Cached:          3995920 kB\nSwapCached:            0 kB\n",
    );
    assert_eq!(m.total, Some(24683584 * 1024));
    assert_eq!(m.available, Some(21612064 * 1024));
    assert_eq!(m.cached, Some(3995920 * 1024), "SwapCached is not Cached");
    let old = meminfo("MemTotal: 1024 kB\n");
    assert_eq!(old.available, None);
}

#[test]
fn load_and_uptime() {
    assert_eq!(
        loadavg("2.25 1.68 1.82 3/93 9762\n"),
        Some([2.25, 1.68, 1.82])
    );
    assert_eq!(loadavg("2.25\n"), None);
    assert_eq!(uptime("13033.21 3074.13\n"), Some(13033.21));
}

#[test]
fn net_dev_links_and_counters() {
    let text = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo: 57112854   63011    0    0    0     0          0         0 57112854   63011    0    0    0     0       0          0\n  \
eth0:123456789012 9 3 4 0 0 0 0 987 8 5 6 0 0 0 0\n";
    let links = net_dev(text);
    assert_eq!(links.len(), 2);
    assert_eq!(links[0].name, "lo");
    assert_eq!(links[0].receive_bytes, 57112854);
    assert_eq!(
        links[1],
        LinkCounters {
            name: "eth0".into(),
            receive_bytes: 123456789012,
            receive_errors: 3,
            receive_drops: 4,
            transmit_bytes: 987,
            transmit_errors: 5,
            transmit_drops: 6,
        }
    );
}

#[test]
fn pressure_lines_in_ratio_and_seconds() {
    let p = pressure(
        "some avg10=6.74 avg60=5.40 avg300=10.36 total=5703088108\n\
         full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    let some = p.some.unwrap();
    assert!((some.avg10 - 0.0674).abs() < 1e-12);
    assert!((some.total_seconds - 5703.088108).abs() < 1e-9);
    assert_eq!(p.full.unwrap().total_seconds, 0.0);
    // The node's cpu file before 5.13 has no `full` line.
    let cpu = pressure("some avg10=1.00 avg60=0.50 avg300=0.10 total=42\n");
    assert_eq!(cpu.lines().map(|(k, _)| k).collect::<Vec<_>>(), ["some"]);
    assert_eq!(pressure("garbage\n"), Pressure::default());
}

#[test]
fn cgroup_files() {
    let cpu = "usage_usec 2534000\nuser_usec 2000000\nsystem_usec 534000\n\
               nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";
    assert_eq!(cgroup_cpu_seconds(cpu), Some(2.534));
    assert_eq!(cgroup_cpu_seconds(""), None);
    let io = "254:0 rbytes=1048576 wbytes=4096 rios=12 wios=1 dbytes=0 dios=0\n\
              7:0 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";
    assert_eq!(cgroup_io_bytes(io), (1049088, 4096));
    assert_eq!(cgroup_io_bytes(""), (0, 0));
    assert_eq!(number("8192000\n"), Some(8192000));
    assert_eq!(number("max\n"), None);
}

//! The kernel's statistics files, parsed: `/proc/stat`, `meminfo`,
//! `loadavg`, `uptime`, `net/dev`, pressure (PSI) files and a cgroup's
//! `cpu.stat` and `io.stat`. Text in, numbers out (no file access here:
//! [`crate::host::stats`] reads them), each in the base unit Prometheus
//! wants (seconds, bytes, ratios).
//!
//! A field the kernel does not print (an older kernel, a cgroup without the
//! controller) is `None` or absent, never 0: a missing value must not look
//! like a measured one.

/// The CPU time columns of `/proc/stat`'s `cpu` line, in their order.
/// `guest` and `guest_nice` are left out: the kernel already counts them in
/// `user` and `nice`.
pub const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Seconds of CPU time per mode, summed over CPUs (`/proc/stat`'s `cpu`
/// line, in clock ticks of `ticks_per_second`).
pub fn cpu_seconds(stat: &str, ticks_per_second: u64) -> Vec<(&'static str, f64)> {
    let Some(line) = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))
    else {
        return Vec::new();
    };
    let ticks = ticks_per_second.max(1) as f64;
    CPU_MODES
        .iter()
        .zip(line.split_whitespace().skip(1))
        .filter_map(|(mode, v)| Some((*mode, v.parse::<u64>().ok()? as f64 / ticks)))
        .collect()
}

/// The boot time, in seconds since the epoch (`/proc/stat`'s `btime`).
pub fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Memory of the node, in bytes (`/proc/meminfo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub total: Option<u64>,
    pub available: Option<u64>,
    pub free: Option<u64>,
    pub buffers: Option<u64>,
    pub cached: Option<u64>,
}

pub fn meminfo(text: &str) -> Memory {
    let kib = |key: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            kib.checked_mul(1024)
        })
    };
    Memory {
        total: kib("MemTotal"),
        available: kib("MemAvailable"),
        free: kib("MemFree"),
        buffers: kib("Buffers"),
        cached: kib("Cached"),
    }
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`).
pub fn loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Seconds since boot (`/proc/uptime`'s first field).
pub fn uptime(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// One link's counters (`/proc/net/dev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCounters {
    pub name: String,
    pub receive_bytes: u64,
    pub receive_errors: u64,
    pub receive_drops: u64,
    pub transmit_bytes: u64,
    pub transmit_errors: u64,
    pub transmit_drops: u64,
}

/// Every link of `/proc/net/dev` (its two header lines have no `:` before
/// the counters and are skipped; a long counter can touch the colon).
pub fn net_dev(text: &str) -> Vec<LinkCounters> {
    text.lines()
        .filter_map(|l| {
            let (name, counters) = l.split_once(':')?;
            let v: Vec<u64> = counters
                .split_whitespace()
                .map(|c| c.parse().ok())
                .collect::<Option<_>>()?;
            // receive: bytes packets errs drop fifo frame compressed multicast;
            // transmit: bytes packets errs drop fifo colls carrier compressed.
            Some(LinkCounters {
                name: name.trim().to_string(),
                receive_bytes: *v.first()?,
                receive_errors: *v.get(2)?,
                receive_drops: *v.get(3)?,
                transmit_bytes: *v.get(8)?,
                transmit_errors: *v.get(10)?,
                transmit_drops: *v.get(11)?,
            })
        })
        .collect()
}

/// One line of a pressure file: the share of the last 10 s that tasks were
/// stalled, and the total stall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    /// `avg10` as a ratio (the kernel prints a percentage).
    pub avg10: f64,
    /// `total`, in seconds (the kernel prints microseconds).
    pub total_seconds: f64,
}

/// A pressure file (`/proc/pressure/<resource>` or a cgroup's
/// `<resource>.pressure`): `some` (at least one task stalled) and `full`
/// (all non-idle tasks stalled; absent for the node's CPU before 5.13).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub some: Option<Stall>,
    pub full: Option<Stall>,
}

impl Pressure {
    /// `(kind, stall)` for each line present: `kind` is `some` or `full`.
    pub fn lines(&self) -> impl Iterator<Item = (&'static str, Stall)> {
        [("some", self.some), ("full", self.full)]
            .into_iter()
            .filter_map(|(k, s)| Some((k, s?)))
    }
}

/// The resources with a pressure file, as Prometheus label values.
pub const PRESSURE_RESOURCES: [&str; 3] = ["cpu", "memory", "io"];

pub fn pressure(text: &str) -> Pressure {
    let mut out = Pressure::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("some") => &mut out.some,
            Some("full") => &mut out.full,
            _ => continue,
        };
        let (mut avg10, mut total) = (None, None);
        for w in words {
            match w.split_once('=') {
                Some(("avg10", v)) => avg10 = v.parse::<f64>().ok(),
                Some(("total", v)) => total = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        if let (Some(avg10), Some(total)) = (avg10, total) {
            *slot = Some(Stall {
                avg10: avg10 / 100.0,
                total_seconds: total as f64 / 1e6,
            });
        }
    }
    out
}

/// CPU seconds a cgroup used (`cpu.stat`'s `usage_usec`, present with or
/// without the cpu controller).
pub fn cgroup_cpu_seconds(cpu_stat: &str) -> Option<f64> {
    cpu_stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|us| us as f64 / 1e6)
}

/// Bytes a cgroup read and wrote, summed over devices (`io.stat`: one line
/// per device, `MAJ:MIN rbytes=… wbytes=… rios=… …`).
pub fn cgroup_io_bytes(io_stat: &str) -> (u64, u64) {
    let mut read = 0u64;
    let mut written = 0u64;
    for word in io_stat.split_whitespace() {
        match word.split_once('=') {
            Some(("rbytes", v)) => read = read.saturating_add(v.parse().unwrap_or(0)),
            Some(("wbytes", v)) => written = written.saturating_add(v.parse().unwrap_or(0)),
            _ => {}
        }
    }
    (read, written)
}

/// A single-number file (`memory.current`, `memory.peak`).
pub fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests;

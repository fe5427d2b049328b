//! The node figures the dashboard shows, from `/v1/metrics` samples (the
//! families of README.md's "Metrics" section).

use crate::promtext::Sample;

/// `basalt_node_cpu_seconds_total` summed over modes: all CPU time, and
/// the part not idle (idle and iowait are time the CPUs had nothing to run).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTotals {
    pub busy: f64,
    pub total: f64,
}

impl CpuTotals {
    /// None when the node reports no CPU time.
    pub fn from_samples(samples: &[Sample]) -> Option<Self> {
        let mut t = CpuTotals {
            busy: 0.0,
            total: 0.0,
        };
        let mut any = false;
        for s in samples
            .iter()
            .filter(|s| s.name == "basalt_node_cpu_seconds_total")
        {
            any = true;
            t.total += s.value;
            if !matches!(s.label("mode"), Some("idle" | "iowait")) {
                t.busy += s.value;
            }
        }
        any.then_some(t)
    }

    /// The share of all CPUs' time that was busy since `before`, in percent;
    /// None if no CPU time passed (or the counters went back: a reboot).
    pub fn percent_since(&self, before: &CpuTotals) -> Option<f64> {
        let total = self.total - before.total;
        let busy = self.busy - before.busy;
        (total > 0.0 && busy >= 0.0).then(|| (busy / total * 100.0).clamp(0.0, 100.0))
    }
}

/// `basalt_node_memory_{total,available}_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub total: u64,
    pub available: u64,
}

impl Memory {
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }

    pub fn used_percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.used() as f64 / self.total as f64 * 100.0
        }
    }
}

/// One `basalt_node_pressure_avg10_ratio{resource,kind}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pressure {
    pub resource: String,
    pub kind: String,
    /// Share of the last 10 s stalled, 0..1.
    pub avg10: f64,
}

/// The figures of one refresh.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Figures {
    /// None on the first refresh (a rate needs two).
    pub cpu_percent: Option<f64>,
    pub memory: Option<Memory>,
    pub pressure: Vec<Pressure>,
}

impl Figures {
    pub fn from_samples(
        samples: &[Sample],
        cpu_before: Option<CpuTotals>,
        cpu_now: Option<CpuTotals>,
    ) -> Self {
        let gauge = |name: &str| {
            samples
                .iter()
                .find(|s| s.name == name && s.value.is_finite() && s.value >= 0.0)
                .map(|s| s.value as u64)
        };
        let memory = match (
            gauge("basalt_node_memory_total_bytes"),
            gauge("basalt_node_memory_available_bytes"),
        ) {
            (Some(total), Some(available)) => Some(Memory { total, available }),
            _ => None,
        };
        let mut pressure: Vec<Pressure> = samples
            .iter()
            .filter(|s| s.name == "basalt_node_pressure_avg10_ratio")
            .filter_map(|s| {
                Some(Pressure {
                    resource: s.label("resource")?.to_string(),
                    kind: s.label("kind")?.to_string(),
                    avg10: s.value,
                })
            })
            .collect();
        // The node's encoder orders them by label values (`full` first);
        // read as cpu, memory, io, each `some` then `full`.
        pressure.sort_by_key(|p| {
            (
                rank(&p.resource, &["cpu", "memory", "io"]),
                p.resource.clone(),
                rank(&p.kind, &["some", "full"]),
            )
        });
        let cpu_percent = match (cpu_before, cpu_now) {
            (Some(before), Some(now)) => now.percent_since(&before),
            _ => None,
        };
        Figures {
            cpu_percent,
            memory,
            pressure,
        }
    }

    /// `cpu some 0.0%  memory some 0.0% full 0.0%  io …`, resources in the
    /// node's order.
    pub fn pressure_text(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut last: Option<&str> = None;
        for p in &self.pressure {
            let item = format!("{} {:.1}%", p.kind, p.avg10 * 100.0);
            match (last, parts.last_mut()) {
                (Some(r), Some(part)) if r == p.resource => {
                    part.push(' ');
                    part.push_str(&item);
                }
                _ => parts.push(format!("{} {item}", p.resource)),
            }
            last = Some(&p.resource);
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join("  ")
        }
    }

    pub fn cpu_text(&self) -> String {
        self.cpu_percent
            .map_or_else(|| "…".to_string(), |p| format!("{p:.1}%"))
    }

    pub fn memory_text(&self) -> String {
        self.memory.map_or_else(
            || "-".to_string(),
            |m| {
                format!(
                    "{} used of {} ({:.0}%)",
                    human_bytes(m.used()),
                    human_bytes(m.total),
                    m.used_percent()
                )
            },
        )
    }
}

/// Where `v` is in `order`; anything else after, in name order.
fn rank(v: &str, order: &[&str]) -> usize {
    order.iter().position(|o| *o == v).unwrap_or(order.len())
}

/// `512 B`, `3.5 KiB`, `1.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

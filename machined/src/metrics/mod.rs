//! What the node tells Prometheus, in the Prometheus text format (0.0.4),
//! built with the `prometheus` crate's data model and encoder:
//!
//! - machined's own instruments ([`Metrics`]), kept across scrapes: API
//!   requests by route and status, authentication failures by reason, apply
//!   durations;
//! - a snapshot taken at each scrape ([`Scrape`]): per service from its
//!   cgroup and the supervisor, per node from the kernel's statistics files,
//!   and the node's status.
//!
//! Conventions: base units (seconds, bytes, ratios), `_total` counters,
//! labels with bounded values only (route and reason names are fixed sets,
//! services and links are the node's own) and never a secret.

pub mod kernel_stats;

use crate::supervisor::ServiceUsage;
use basalt_api::rpc::{NodeMode, ServiceState, ServiceStatus, Status};
use kernel_stats::{LinkCounters, Memory, PRESSURE_RESOURCES, Pressure};
use prometheus::core::{Collector, GenericCounterVec, GenericGaugeVec};
use prometheus::{CounterVec, GaugeVec, Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use std::time::Duration;

/// Apply durations' bucket bounds, in seconds: a dev-mode apply takes
/// milliseconds, a live apply that restarts Kubernetes services tens of
/// seconds.
const APPLY_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

/// machined's own instruments.
pub struct Metrics {
    /// `None` only if the crate refused our own definitions, which a unit
    /// test rules out; machined then serves the snapshot alone.
    own: Option<Own>,
}

struct Own {
    registry: Registry,
    api_requests: IntCounterVec,
    auth_failures: IntCounterVec,
    apply_seconds: Histogram,
}

impl Own {
    fn new() -> prometheus::Result<Own> {
        let registry = Registry::new();
        let api_requests = IntCounterVec::new(
            Opts::new(
                "basalt_api_requests_total",
                "API requests answered, by route and HTTP status.",
            ),
            &["route", "code"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "basalt_api_auth_failures_total",
                "API requests refused by authentication, by reason.",
            ),
            &["reason"],
        )?;
        let apply_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "basalt_apply_duration_seconds",
                "Time from receiving a config to answering its apply (verified, persisted, converged or planned).",
            )
            .buckets(APPLY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(api_requests.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(apply_seconds.clone()))?;
        Ok(Own {
            registry,
            api_requests,
            auth_failures,
            apply_seconds,
        })
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let own = Own::new()
            .map_err(|e| tracing::error!("metrics: machined's own instruments are off: {e}"))
            .ok();
        Metrics { own }
    }

    /// An answered API request (`route` is [`basalt_api::route::Route::name`]
    /// or `unknown`).
    pub fn api_request(&self, route: &str, code: u16) {
        if let Some(own) = &self.own
            && let Ok(c) = own
                .api_requests
                .get_metric_with_label_values(&[route, &code.to_string()])
        {
            c.inc();
        }
    }

    /// A request authentication refused (`reason`: a fixed name).
    pub fn auth_failure(&self, reason: &str) {
        if let Some(own) = &self.own
            && let Ok(c) = own.auth_failures.get_metric_with_label_values(&[reason])
        {
            c.inc();
        }
    }

    /// An apply answered after `took`.
    pub fn apply_took(&self, took: Duration) {
        if let Some(own) = &self.own {
            own.apply_seconds.observe(took.as_secs_f64());
        }
    }

    /// The exposition text of machined's instruments and `scrape`.
    pub fn render(&self, scrape: &Scrape) -> prometheus::Result<String> {
        let snapshot = Snapshot::default();
        snapshot.status(scrape.status, scrape.machined_resident_bytes)?;
        snapshot.services(scrape.services, scrape.usage)?;
        snapshot.node(&scrape.node)?;
        let mut families = snapshot.registry.gather();
        if let Some(own) = &self.own {
            families.extend(own.registry.gather());
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        prometheus::TextEncoder::new().encode_to_string(&families)
    }
}

/// What one scrape reports besides machined's instruments.
pub struct Scrape<'a> {
    pub status: &'a Status,
    pub machined_resident_bytes: Option<u64>,
    pub services: &'a [ServiceStatus],
    pub usage: &'a [(String, ServiceUsage)],
    pub node: NodeStats,
}

/// The node-wide figures, parsed ([`kernel_stats`]).
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    pub cpu_seconds: Vec<(&'static str, f64)>,
    pub memory: Memory,
    /// cpu, memory, io.
    pub pressure: [Pressure; 3],
    pub load: Option<[f64; 3]>,
    pub uptime_seconds: Option<f64>,
    pub boot_time_seconds: Option<u64>,
    pub links: Vec<LinkCounters>,
    /// `(volume, size, available)` in bytes.
    pub filesystems: Vec<(&'static str, u64, u64)>,
    pub kernel_release: String,
    pub image_version: String,
    pub image_variant: String,
}

impl NodeStats {
    /// Parse the files [`crate::host::stats::node_stats`] read.
    pub fn parse(text: &crate::host::stats::NodeStatsText, ticks_per_second: u64) -> NodeStats {
        let os_release = |key: &str| {
            text.os_release
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        NodeStats {
            cpu_seconds: kernel_stats::cpu_seconds(&text.stat, ticks_per_second),
            memory: kernel_stats::meminfo(&text.meminfo),
            pressure: text.pressure.clone().map(|t| kernel_stats::pressure(&t)),
            load: kernel_stats::loadavg(&text.loadavg),
            uptime_seconds: kernel_stats::uptime(&text.uptime),
            boot_time_seconds: kernel_stats::boot_time(&text.stat),
            links: kernel_stats::net_dev(&text.net_dev),
            filesystems: Vec::new(),
            kernel_release: text.kernel_release.trim().to_string(),
            image_version: os_release("VERSION_ID"),
            image_variant: os_release("VARIANT_ID"),
        }
    }
}

/// The registry one scrape fills and drops.
#[derive(Default)]
struct Snapshot {
    registry: Registry,
}

impl Snapshot {
    fn add<C: Collector + Clone + 'static>(&self, c: C) -> prometheus::Result<C> {
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        self.add(GenericGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<CounterVec> {
        self.add(GenericCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn status(&self, s: &Status, rss: Option<u64>) -> prometheus::Result<()> {
        self.one_gauge(
            "basalt_config_generation",
            "Generation of the applied machine config.",
            Some(s.generation as f64),
        )?;
        self.one_gauge(
            "basalt_maintenance_mode",
            "1 while the node waits for its first config.",
            Some(f64::from(u8::from(s.mode == NodeMode::Maintenance))),
        )?;
        self.one_gauge(
            "basalt_node_ready",
            "1 when the configured services are ready and the network is configured.",
            Some(f64::from(u8::from(s.ready))),
        )?;
        if let Some(rss) = rss {
            self.one_gauge(
                "basalt_machined_resident_bytes",
                "machined's resident memory.",
                Some(rss as f64),
            )?;
        }
        if !s.host_checks.is_empty() {
            let g = self.gauge(
                "basalt_host_check_ok",
                "1 when a host prerequisite of the node's CNI holds (see `basaltctl status` for why not).",
                &["check"],
            )?;
            for c in &s.host_checks {
                g.get_metric_with_label_values(&[c.name.as_str()])?
                    .set(f64::from(u8::from(c.ok)));
            }
        }
        Ok(())
    }

    fn services(
        &self,
        services: &[ServiceStatus],
        usage: &[(String, ServiceUsage)],
    ) -> prometheus::Result<()> {
        let restarts = self.counter(
            "basalt_service_restarts_total",
            "Times the service was started again after its first start.",
            &["service"],
        )?;
        let state = self.gauge(
            "basalt_service_state",
            "1 for the service's current life-cycle state, 0 for the others.",
            &["service", "state"],
        )?;
        let ready = self.gauge(
            "basalt_service_ready",
            "1 when the service's readiness check passed for its current run.",
            &["service"],
        )?;
        let exit = self.gauge(
            "basalt_service_last_exit_code",
            "How the service's last run ended: its exit code, or 128 + the signal that killed it.",
            &["service"],
        )?;
        for s in services {
            let name = s.name.as_str();
            restarts
                .get_metric_with_label_values(&[name])?
                .inc_by(f64::from(s.restarts));
            for st in ServiceState::ALL {
                state
                    .get_metric_with_label_values(&[name, st.as_str()])?
                    .set(f64::from(u8::from(s.state == st)));
            }
            ready
                .get_metric_with_label_values(&[name])?
                .set(f64::from(u8::from(s.ready)));
            if let Some(code) = s
                .last_exit
                .as_ref()
                .and_then(|e| e.code.or(e.signal.map(|sig| 128 + sig)))
            {
                exit.get_metric_with_label_values(&[name])?
                    .set(f64::from(code));
            }
        }
        self.usage(usage)
    }

    fn usage(&self, usage: &[(String, ServiceUsage)]) -> prometheus::Result<()> {
        let cpu = self.counter(
            "basalt_service_cpu_seconds_total",
            "CPU time the service's cgroup used (cpu.stat usage_usec).",
            &["service"],
        )?;
        let memory = self.gauge(
            "basalt_service_memory_bytes",
            "Memory the service's cgroup uses now (memory.current).",
            &["service"],
        )?;
        let peak = self.gauge(
            "basalt_service_memory_peak_bytes",
            "The most memory the service's cgroup has used (memory.peak).",
            &["service"],
        )?;
        let read = self.counter(
            "basalt_service_io_read_bytes_total",
            "Bytes the service's cgroup read from block devices (io.stat rbytes).",
            &["service"],
        )?;
        let written = self.counter(
            "basalt_service_io_written_bytes_total",
            "Bytes the service's cgroup wrote to block devices (io.stat wbytes).",
            &["service"],
        )?;
        let (stalled, avg10) = self.pressure_pair(
            "basalt_service_pressure",
            "the service's cgroup",
            &["service", "resource", "kind"],
        )?;
        for (name, u) in usage {
            let name = name.as_str();
            set_counter(&cpu, &[name], u.cpu_seconds)?;
            if let Some(v) = u.memory_current {
                memory.get_metric_with_label_values(&[name])?.set(v as f64);
            }
            if let Some(v) = u.memory_peak {
                peak.get_metric_with_label_values(&[name])?.set(v as f64);
            }
            set_counter(&read, &[name], u.io_read_bytes.map(|v| v as f64))?;
            set_counter(&written, &[name], u.io_written_bytes.map(|v| v as f64))?;
            for (resource, p) in PRESSURE_RESOURCES.iter().zip(&u.pressure) {
                for (kind, stall) in p.lines() {
                    let labels = [name, resource, kind];
                    stalled
                        .get_metric_with_label_values(&labels)?
                        .inc_by(stall.total_seconds);
                    avg10
                        .get_metric_with_label_values(&labels)?
                        .set(stall.avg10);
                }
            }
        }
        Ok(())
    }

    /// The two pressure families of `prefix`: total stall time and the
    /// share of the last 10 s stalled.
    fn pressure_pair(
        &self,
        prefix: &str,
        whose: &str,
        labels: &[&str],
    ) -> prometheus::Result<(CounterVec, GaugeVec)> {
        Ok((
            self.counter(
                &format!("{prefix}_stalled_seconds_total"),
                &format!("Time tasks of {whose} were stalled on the resource (PSI total; kind some: at least one task, full: all)."),
                labels,
            )?,
            self.gauge(
                &format!("{prefix}_avg10_ratio"),
                &format!("Share of the last 10 seconds tasks of {whose} were stalled on the resource (PSI avg10)."),
                labels,
            )?,
        ))
    }

    fn node(&self, n: &NodeStats) -> prometheus::Result<()> {
        let cpu = self.counter(
            "basalt_node_cpu_seconds_total",
            "CPU time of the node, summed over CPUs, by mode.",
            &["mode"],
        )?;
        for (mode, secs) in &n.cpu_seconds {
            cpu.get_metric_with_label_values(&[*mode])?.inc_by(*secs);
        }
        self.memory(&n.memory)?;
        let (stalled, avg10) =
            self.pressure_pair("basalt_node_pressure", "the node", &["resource", "kind"])?;
        for (resource, p) in PRESSURE_RESOURCES.iter().zip(&n.pressure) {
            for (kind, stall) in p.lines() {
                stalled
                    .get_metric_with_label_values(&[*resource, kind])?
                    .inc_by(stall.total_seconds);
                avg10
                    .get_metric_with_label_values(&[*resource, kind])?
                    .set(stall.avg10);
            }
        }
        if let Some(load) = n.load {
            for (name, v) in [
                "basalt_node_load1",
                "basalt_node_load5",
                "basalt_node_load15",
            ]
            .into_iter()
            .zip(load)
            {
                self.one_gauge(
                    name,
                    "The node's load average over 1, 5 or 15 minutes (as named).",
                    Some(v),
                )?;
            }
        }
        self.one_gauge(
            "basalt_node_uptime_seconds",
            "Seconds since the node booted.",
            n.uptime_seconds,
        )?;
        self.one_gauge(
            "basalt_node_boot_time_seconds",
            "When the node booted, in seconds since the epoch.",
            n.boot_time_seconds.map(|v| v as f64),
        )?;
        self.filesystems(&n.filesystems)?;
        self.links(&n.links)?;
        self.gauge(
            "basalt_node_info",
            "The node's kernel, image and machined versions (always 1).",
            &[
                "kernel",
                "image_version",
                "image_variant",
                "machined_version",
            ],
        )?
        .get_metric_with_label_values(&[
            n.kernel_release.as_str(),
            &n.image_version,
            &n.image_variant,
            env!("CARGO_PKG_VERSION"),
        ])?
        .set(1.0);
        Ok(())
    }

    fn one_gauge(&self, name: &str, help: &str, v: Option<f64>) -> prometheus::Result<()> {
        if let Some(v) = v {
            self.add(prometheus::Gauge::with_opts(Opts::new(name, help))?)?
                .set(v);
        }
        Ok(())
    }

    fn memory(&self, m: &Memory) -> prometheus::Result<()> {
        for (name, help, v) in [
            ("total", "Memory of the node (MemTotal).", m.total),
            (
                "available",
                "Memory available for new work without swapping (MemAvailable).",
                m.available,
            ),
            ("free", "Memory unused (MemFree).", m.free),
            (
                "buffers",
                "Memory in block device buffers (Buffers).",
                m.buffers,
            ),
            ("cached", "Memory in the page cache (Cached).", m.cached),
        ] {
            self.one_gauge(
                &format!("basalt_node_memory_{name}_bytes"),
                help,
                v.map(|v| v as f64),
            )?;
        }
        Ok(())
    }

    fn filesystems(&self, fss: &[(&'static str, u64, u64)]) -> prometheus::Result<()> {
        let size = self.gauge(
            "basalt_node_filesystem_size_bytes",
            "Size of the filesystem holding a node volume (state: STATE, var: /var).",
            &["volume"],
        )?;
        let avail = self.gauge(
            "basalt_node_filesystem_avail_bytes",
            "Space left to unprivileged writers on the filesystem holding a node volume.",
            &["volume"],
        )?;
        for (volume, s, a) in fss {
            size.get_metric_with_label_values(&[*volume])?
                .set(*s as f64);
            avail
                .get_metric_with_label_values(&[*volume])?
                .set(*a as f64);
        }
        Ok(())
    }

    fn links(&self, links: &[LinkCounters]) -> prometheus::Result<()> {
        type Field = fn(&LinkCounters) -> u64;
        let families: [(&str, &str, Field); 6] = [
            ("receive_bytes", "Bytes received", |l| l.receive_bytes),
            ("transmit_bytes", "Bytes sent", |l| l.transmit_bytes),
            ("receive_errors", "Receive errors", |l| l.receive_errors),
            ("transmit_errors", "Transmit errors", |l| l.transmit_errors),
            ("receive_drops", "Received packets dropped", |l| {
                l.receive_drops
            }),
            ("transmit_drops", "Packets to send dropped", |l| {
                l.transmit_drops
            }),
        ];
        for (name, what, field) in families {
            let c = self.counter(
                &format!("basalt_node_network_{name}_total"),
                &format!("{what} on the link (/proc/net/dev)."),
                &["link"],
            )?;
            for l in links {
                c.get_metric_with_label_values(&[l.name.as_str()])?
                    .inc_by(field(l) as f64);
            }
        }
        Ok(())
    }
}

/// A counter set to a value read from the kernel (a fresh counter per
/// scrape: its increment is the reading).
fn set_counter(c: &CounterVec, labels: &[&str], v: Option<f64>) -> prometheus::Result<()> {
    if let Some(v) = v.filter(|v| v.is_finite() && *v >= 0.0) {
        c.get_metric_with_label_values(labels)?.inc_by(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

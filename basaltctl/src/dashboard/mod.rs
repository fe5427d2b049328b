//! `basaltctl dashboard`: one or several nodes followed live. What a
//! refresh of a node brings ([`Fetched`], through the signed API) is folded
//! into a [`DashboardState`]: figures derived from it (CPU use between two
//! refreshes, memory, pressure), the services and the log of the chosen
//! one. The state is drawn by [`render`] into any ratatui backend (a
//! terminal, or a test's buffer) or printed once by [`plain_text`].

mod figures;
mod render;
mod text;

pub use figures::{CpuTotals, Figures, Memory, Pressure, human_bytes};
pub use render::render;
pub use text::plain_text;

use crate::client::NodeClient;
use crate::promtext::{self, Sample};
use basalt_api::route::Route;
use basalt_api::rpc::{ServiceStatus, Status};
use std::io::Read;
use std::time::Duration;

/// How many of a log's last lines are kept (more than any screen shows).
pub const LOG_LINES: usize = 500;

/// One refresh of one node.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: Status,
    pub services: Vec<ServiceStatus>,
    pub metrics: Vec<Sample>,
    pub log: Option<ServiceLog>,
}

/// The last lines of a service's log, or why they could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceLog {
    pub service: String,
    pub lines: Result<Vec<String>, String>,
}

/// Status, services and metrics of the node behind `client`, and the log of
/// `log_service` if one is asked for. A log that cannot be read is shown
/// as such; anything else failing fails the refresh.
pub fn fetch(client: &NodeClient, log_service: Option<&str>) -> Result<Fetched, String> {
    let err = |e: &(dyn std::error::Error + 'static)| crate::fanout::error_chain(e);
    let status: Status = client.call(&Route::Status).map_err(|e| err(&e))?;
    let services: Vec<ServiceStatus> = client.call(&Route::Services).map_err(|e| err(&e))?;
    let metrics_text = read_text(client, &Route::Metrics)?;
    let metrics = promtext::parse(&metrics_text).map_err(|e| err(&e))?;
    let log = log_service.map(|name| ServiceLog {
        service: name.to_string(),
        lines: read_text(
            client,
            &Route::Logs {
                service: name.to_string(),
                follow: false,
            },
        )
        .map(|t| last_lines(&t, LOG_LINES)),
    });
    Ok(Fetched {
        status,
        services,
        metrics,
        log,
    })
}

/// A text endpoint's whole answer; bytes that are not UTF-8 (a log may
/// hold any) replaced.
fn read_text(client: &NodeClient, route: &Route) -> Result<String, String> {
    let mut resp = client
        .open_text(route)
        .map_err(|e| crate::fanout::error_chain(&e))?;
    let mut bytes = Vec::new();
    resp.read_to_end(&mut bytes)
        .map_err(|e| format!("reading {}: {e}", route.path_and_query()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// What the dashboard knows of one node.
#[derive(Debug, Clone)]
pub struct NodePane {
    /// The node as the operator named it.
    pub node: String,
    /// None until its first refresh comes back.
    pub data: Option<Result<NodeData, String>>,
    /// The service whose log is shown; the first service until one is chosen.
    pub chosen: Option<String>,
    /// The CPU counters of the last refresh, for the next one's rate.
    cpu_before: Option<CpuTotals>,
}

/// A node's last successful refresh, with its derived figures.
#[derive(Debug, Clone)]
pub struct NodeData {
    pub status: Status,
    pub services: Vec<ServiceStatus>,
    pub figures: Figures,
    pub log: Option<ServiceLog>,
}

/// Everything the dashboard shows.
#[derive(Debug, Clone)]
pub struct DashboardState {
    pub nodes: Vec<NodePane>,
    /// The node whose service selection and log the keys act on.
    pub focus: usize,
    pub interval: Duration,
}

impl DashboardState {
    pub fn new(nodes: &[String], interval: Duration) -> Self {
        Self {
            nodes: nodes
                .iter()
                .map(|n| NodePane {
                    node: n.clone(),
                    data: None,
                    chosen: None,
                    cpu_before: None,
                })
                .collect(),
            focus: 0,
            interval,
        }
    }

    /// Fold node `index`'s refresh in. A failed refresh replaces what was
    /// shown (stale figures would look live); the CPU counters are kept so
    /// the next good refresh has a rate again.
    pub fn update(&mut self, index: usize, result: Result<Fetched, String>) {
        let Some(pane) = self.nodes.get_mut(index) else {
            return;
        };
        pane.data = Some(result.map(|f| {
            let cpu_now = CpuTotals::from_samples(&f.metrics);
            let figures = Figures::from_samples(&f.metrics, pane.cpu_before, cpu_now);
            if cpu_now.is_some() {
                pane.cpu_before = cpu_now;
            }
            if !pane
                .chosen
                .as_ref()
                .is_some_and(|c| f.services.iter().any(|s| &s.name == c))
            {
                pane.chosen = f.services.first().map(|s| s.name.clone());
            }
            NodeData {
                status: f.status,
                services: f.services,
                figures,
                log: f.log,
            }
        }));
    }

    /// The focused node's index and the service whose log to fetch.
    pub fn log_request(&self) -> Option<(usize, String)> {
        let pane = self.nodes.get(self.focus)?;
        pane.chosen.clone().map(|c| (self.focus, c))
    }

    /// Focus the next (`forward`) or previous node, wrapping around.
    pub fn cycle_node(&mut self, forward: bool) {
        let n = self.nodes.len();
        if n > 0 {
            self.focus = if forward {
                (self.focus + 1) % n
            } else {
                (self.focus + n - 1) % n
            };
        }
    }

    /// Choose the next (`forward`) or previous service of the focused node
    /// for the log pane; stops at either end.
    pub fn cycle_service(&mut self, forward: bool) {
        let Some(pane) = self.nodes.get_mut(self.focus) else {
            return;
        };
        let Some(Ok(data)) = &pane.data else {
            return;
        };
        let names: Vec<&str> = data.services.iter().map(|s| s.name.as_str()).collect();
        let at = pane
            .chosen
            .as_deref()
            .and_then(|c| names.iter().position(|n| *n == c));
        let next = match (at, forward) {
            (None, _) => 0,
            (Some(i), true) => (i + 1).min(names.len().saturating_sub(1)),
            (Some(i), false) => i.saturating_sub(1),
        };
        pane.chosen = names.get(next).map(|n| n.to_string());
    }
}

#[cfg(test)]
mod tests;

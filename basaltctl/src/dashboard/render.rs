//! The dashboard drawn with ratatui: a header line, one box per node
//! (summary and services), and the log of the focused node's chosen service.

use super::text::yes_no;
use super::{DashboardState, NodeData, NodePane};
use basalt_api::rpc::ServiceState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};

/// Draw `state` on the whole frame.
pub fn render(state: &DashboardState, frame: &mut Frame) {
    let [header, nodes_area, log_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(65),
        Constraint::Min(3),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_line(state)), header);
    let n = state.nodes.len().max(1) as u32;
    let rows =
        Layout::vertical(state.nodes.iter().map(|_| Constraint::Ratio(1, n))).split(nodes_area);
    for (i, (pane, area)) in state.nodes.iter().zip(rows.iter()).enumerate() {
        node_box(frame, pane, i == state.focus, *area);
    }
    if let Some(pane) = state.nodes.get(state.focus) {
        log_box(frame, pane, log_area);
    }
}

fn header_line(state: &DashboardState) -> Line<'static> {
    let nodes = state.nodes.len();
    Line::from(vec![
        Span::styled(
            "basaltctl dashboard",
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "  {nodes} node{}, every {}s  ←/→ node  ↑/↓ service  q quit",
            if nodes == 1 { "" } else { "s" },
            state.interval.as_secs_f64()
        )),
    ])
}

fn node_box(frame: &mut Frame, pane: &NodePane, focused: bool, area: Rect) {
    let border = if focused {
        Style::default().fg(Color::Yellow)
    } else {
        Style::default()
    };
    let block = Block::bordered()
        .title(format!(" {} ", pane.node))
        .border_style(border);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match &pane.data {
        None => frame.render_widget(Paragraph::new("connecting…"), inner),
        Some(Err(e)) => frame.render_widget(
            Paragraph::new(format!("error: {e}"))
                .style(Style::default().fg(Color::Red))
                .wrap(Wrap { trim: false }),
            inner,
        ),
        Some(Ok(d)) => {
            let [summary, services] =
                Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(inner);
            frame.render_widget(Paragraph::new(summary_lines(d)), summary);
            let chosen = focused.then_some(pane.chosen.as_deref()).flatten();
            frame.render_widget(services_table(d, chosen), services);
        }
    }
}

fn summary_lines(d: &NodeData) -> Vec<Line<'static>> {
    let st = &d.status;
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let signers = if st.signers.is_empty() {
        "-".to_string()
    } else {
        st.signers.join(", ")
    };
    vec![
        Line::from(format!(
            "{}  {}  ready {}  generation {}  signers {signers}",
            st.hostname,
            st.mode,
            yes_no(st.ready),
            st.generation
        )),
        Line::from(vec![
            Span::styled("CPU ", bold),
            Span::raw(format!("{:<8}", d.figures.cpu_text())),
            Span::styled("memory ", bold),
            Span::raw(d.figures.memory_text()),
        ]),
        Line::from(vec![
            Span::styled("PSI avg10 ", bold),
            Span::raw(d.figures.pressure_text()),
        ]),
    ]
}

fn state_color(s: ServiceState) -> Color {
    match s {
        ServiceState::Running => Color::Green,
        ServiceState::Backoff | ServiceState::Failed => Color::Red,
        _ => Color::Yellow,
    }
}

fn services_table(d: &NodeData, chosen: Option<&str>) -> Table<'static> {
    let rows = d.services.iter().map(|s| {
        let mark = if chosen == Some(s.name.as_str()) {
            "▶ "
        } else {
            "  "
        };
        Row::new(vec![
            Cell::from(format!("{mark}{}", s.name)),
            Cell::from(s.state.to_string()).style(Style::default().fg(state_color(s.state))),
            Cell::from(yes_no(s.ready)),
            Cell::from(s.restarts.to_string()),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Length(24),
            Constraint::Length(12),
            Constraint::Length(6),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new(["  SERVICE", "STATE", "READY", "RESTARTS"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
}

fn log_box(frame: &mut Frame, pane: &NodePane, area: Rect) {
    let log = match &pane.data {
        Some(Ok(d)) => d.log.as_ref(),
        _ => None,
    };
    let title = match log {
        Some(l) => format!(" log of {} on {} ", l.service, pane.node),
        None => format!(" log ({}: no service chosen) ", pane.node),
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines: Vec<Line> = match log.map(|l| &l.lines) {
        None => vec![],
        Some(Err(e)) => vec![Line::styled(
            format!("cannot read the log: {e}"),
            Style::default().fg(Color::Red),
        )],
        Some(Ok(lines)) => {
            let skip = lines.len().saturating_sub(inner.height as usize);
            lines[skip..].iter().map(|l| Line::raw(l.clone())).collect()
        }
    };
    frame.render_widget(Paragraph::new(lines), inner);
}

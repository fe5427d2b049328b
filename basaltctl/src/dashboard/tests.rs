use super::*;
use basalt_api::rpc::{NodeMode, ServiceState};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn status(hostname: &str, generation: u64, signers: &[&str]) -> Status {
    Status {
        version: "0.1.0".into(),
        hostname: hostname.into(),
        mode: NodeMode::Configured,
        generation,
        config_sha256: None,
        signers: signers.iter().map(|s| s.to_string()).collect(),
        boot_id: "b".into(),
        state: "ram".into(),
        ready: true,
        not_ready: None,
        staged_generation: None,
        try_pending_secs: None,
        tls_fingerprint: "SHA256:x".into(),
        host_checks: vec![],
        identity: basalt_api::scope::NodeIdentity::from_firmware(None, None, vec![]),
        trusted_time: None,
        min_generation: 0,
        boot: None,
    }
}

fn service(name: &str, state: ServiceState, ready: bool, restarts: u32) -> ServiceStatus {
    ServiceStatus {
        name: name.into(),
        state,
        pid: None,
        restarts,
        last_exit: None,
        last_error: None,
        ready,
        memory_current: None,
    }
}

/// Metrics text as machined writes it (series in label order): CPU time
/// per mode, memory, PSI.
fn metrics(user: f64, idle: f64) -> Vec<Sample> {
    promtext::parse(&format!(
        "# TYPE basalt_node_cpu_seconds_total counter\n\
         basalt_node_cpu_seconds_total{{mode=\"user\"}} {user}\n\
         basalt_node_cpu_seconds_total{{mode=\"system\"}} 10\n\
         basalt_node_cpu_seconds_total{{mode=\"idle\"}} {idle}\n\
         basalt_node_cpu_seconds_total{{mode=\"iowait\"}} 5\n\
         basalt_node_memory_total_bytes 4294967296\n\
         basalt_node_memory_available_bytes 3221225472\n\
         basalt_node_pressure_avg10_ratio{{kind=\"full\",resource=\"memory\"}} 0.5\n\
         basalt_node_pressure_avg10_ratio{{kind=\"some\",resource=\"cpu\"}} 0.125\n\
         basalt_node_pressure_avg10_ratio{{kind=\"some\",resource=\"memory\"}} 0\n"
    ))
    .unwrap()
}

fn fetched(host: &str, user: f64, idle: f64, services: Vec<ServiceStatus>) -> Fetched {
    Fetched {
        status: status(host, 7, &["ops@lab"]),
        services,
        metrics: metrics(user, idle),
        log: None,
    }
}

/// Two nodes: `alpha` refreshed twice (25 s busy of 100 s CPU time between
/// them: 25%), `beta` failed.
fn two_nodes() -> DashboardState {
    let mut st = DashboardState::new(
        &["alpha:50443".to_string(), "beta:50443".to_string()],
        Duration::from_secs(2),
    );
    let svcs = || {
        vec![
            service("containerd", ServiceState::Running, true, 0),
            service("kubelet", ServiceState::Backoff, false, 3),
        ]
    };
    st.update(0, Ok(fetched("alpha-host", 100.0, 1000.0, svcs())));
    let mut second = fetched("alpha-host", 125.0, 1075.0, svcs());
    second.log = Some(ServiceLog {
        service: "containerd".into(),
        lines: Ok(vec!["level=info msg=\"serving\"".into()]),
    });
    st.update(0, Ok(second));
    st.update(
        1,
        Err("connecting to beta:50443: connection refused".into()),
    );
    st
}

fn screen(st: &DashboardState, w: u16, h: u16) -> Vec<String> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| render(st, f)).unwrap();
    let buf = term.backend().buffer();
    (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect()
}

#[test]
fn cpu_is_the_busy_share_between_two_refreshes() {
    let st = two_nodes();
    let Some(Ok(d)) = &st.nodes[0].data else {
        panic!("alpha has no data")
    };
    assert_eq!(d.figures.cpu_percent, Some(25.0));
    assert_eq!(d.figures.memory_text(), "1.0 GiB used of 4.0 GiB (25%)");
    assert_eq!(
        d.figures.pressure_text(),
        "cpu some 12.5%  memory some 0.0% full 50.0%"
    );
    // One refresh has no rate yet.
    let mut fresh = DashboardState::new(&["x".to_string()], Duration::from_secs(2));
    fresh.update(0, Ok(fetched("x", 1.0, 1.0, vec![])));
    let Some(Ok(d)) = &fresh.nodes[0].data else {
        panic!()
    };
    assert_eq!(d.figures.cpu_percent, None);
    assert_eq!(d.figures.cpu_text(), "…");
}

#[test]
fn the_screen_shows_both_nodes_services_cpu_memory_and_the_log() {
    let st = two_nodes();
    let rows = screen(&st, 100, 40);
    let all = rows.join("\n");
    let row_with = |needle: &str| {
        rows.iter()
            .find(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle:?} in\n{all}"))
    };
    assert!(row_with(" alpha:50443 ").contains('┌'), "{all}");
    assert!(row_with(" beta:50443 ").contains('┌'), "{all}");
    assert!(
        row_with("alpha-host").contains("generation 7  signers ops@lab"),
        "{all}"
    );
    assert!(row_with("CPU 25.0%").contains("memory 1.0 GiB used of 4.0 GiB (25%)"));
    assert!(row_with("PSI avg10").contains("cpu some 12.5%"));
    let words = |r: &str| -> Vec<String> {
        r.split(['│', ' ', '▶'])
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(
        words(row_with("containerd")),
        ["containerd", "running", "yes", "0"]
    );
    assert_eq!(
        words(row_with("kubelet")),
        ["kubelet", "backoff", "no", "3"]
    );
    // The chosen service is marked, and its log shown.
    assert!(row_with("containerd").contains("▶ containerd"), "{all}");
    assert!(row_with(" log of containerd on alpha:50443 ").contains('┌'));
    assert!(row_with("level=info msg=\"serving\"").starts_with('│'));
    assert!(
        row_with("error: connecting to beta:50443").contains("connection refused"),
        "{all}"
    );
}

#[test]
fn keys_move_between_nodes_and_services() {
    let mut st = two_nodes();
    assert_eq!(st.log_request(), Some((0, "containerd".into())));
    st.cycle_service(true);
    assert_eq!(st.log_request(), Some((0, "kubelet".into())));
    st.cycle_service(true);
    assert_eq!(
        st.log_request(),
        Some((0, "kubelet".into())),
        "stops at the end"
    );
    st.cycle_service(false);
    assert_eq!(st.log_request(), Some((0, "containerd".into())));
    st.cycle_node(true);
    assert_eq!(
        (st.focus, st.log_request()),
        (1, None),
        "beta has no services"
    );
    st.cycle_node(true);
    assert_eq!(st.focus, 0);
    st.cycle_node(false);
    assert_eq!(st.focus, 1);
    let all = screen(&st, 100, 40).join("\n");
    assert!(
        all.contains(" log (beta:50443: no service chosen) "),
        "{all}"
    );
    assert!(
        !all.contains('▶'),
        "no mark outside the focused node\n{all}"
    );
}

#[test]
fn the_one_shot_text_names_node_generation_and_services() {
    let st = two_nodes();
    let Some(Ok(d)) = &st.nodes[0].data else {
        panic!()
    };
    let text = plain_text("alpha:50443", d);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "node        alpha:50443");
    assert!(lines.contains(&"generation  7"), "{text}");
    assert!(lines.contains(&"signers     ops@lab"), "{text}");
    assert!(lines.contains(&"cpu         25.0%"), "{text}");
    let row: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("kubelet"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row, ["kubelet", "backoff", "no", "3"]);
}

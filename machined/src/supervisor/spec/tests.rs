use super::*;

fn spec(name: &str, deps: &[&str]) -> ServiceSpec {
    let mut s = ServiceSpec::new(name, vec!["true".into()]);
    s.depends_on = deps.iter().map(|d| d.to_string()).collect();
    s
}

#[test]
fn backoff_grows_and_caps() {
    let b = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        factor: 2,
    };
    let d: Vec<u128> = (0..7).map(|n| b.delay(n).as_millis()).collect();
    assert_eq!(d, [50, 100, 200, 400, 400, 400, 400]);
    assert_eq!(b.delay(u32::MAX), Duration::from_millis(400));
    assert_eq!(b.reset_window(), Duration::from_millis(500));
    let flat = Backoff { factor: 1, ..b };
    assert_eq!(flat.delay(1000), Duration::from_millis(50));
    let huge = Backoff {
        initial: Duration::MAX,
        max: Duration::MAX,
        factor: 3,
    };
    assert_eq!(huge.delay(5), Duration::MAX);
}

#[test]
fn order_respects_dependencies_and_input_order() {
    let specs = vec![
        spec("kubelet", &["containerd"]),
        spec("containerd", &[]),
        spec("other", &[]),
    ];
    let order = start_order(&specs, &HashSet::new(), &HashSet::new()).unwrap();
    assert_eq!(order, [1, 0, 2]);
}

#[test]
fn cycle_names_the_services() {
    let specs = vec![
        spec("c", &[]),
        spec("a", &["b"]),
        spec("b", &["a"]),
        spec("d", &["a"]),
    ];
    match start_order(&specs, &HashSet::new(), &HashSet::new()) {
        Err(SupervisorError::Cycle(c)) => assert_eq!(c, ["a", "b", "a"]),
        other => panic!("unexpected {other:?}"),
    }
    let selfdep = vec![spec("x", &["x"])];
    assert!(matches!(
        start_order(&selfdep, &HashSet::new(), &HashSet::new()),
        Err(SupervisorError::Cycle(c)) if c == ["x", "x"]
    ));
}

#[test]
fn unknown_duplicate_invalid() {
    let existing: HashSet<String> = ["containerd".to_string()].into();
    assert!(start_order(&[spec("kubelet", &["containerd"])], &existing, &existing).is_ok());
    assert!(matches!(
        start_order(&[spec("kubelet", &["nope"])], &existing, &existing),
        Err(SupervisorError::UnknownDependency { .. })
    ));
    assert!(matches!(
        start_order(&[spec("containerd", &[])], &existing, &existing),
        Err(SupervisorError::Duplicate(_))
    ));
    for bad in ["", ".", "..", "a/b", "a b"] {
        assert!(!valid_name(bad), "{bad:?}");
    }
    assert!(valid_name("kube-let_1.2"));
}

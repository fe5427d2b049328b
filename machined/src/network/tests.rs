use super::*;

#[test]
fn resolv_conf_caps_like_glibc() {
    let ns: Vec<IpAddr> = (1..=4).map(|i| IpAddr::from([10, 0, 0, i])).collect();
    let search: Vec<String> = (1..=7).map(|i| format!("d{i}.test")).collect();
    let text = resolv_conf(&ns, &search);
    assert_eq!(text.matches("nameserver").count(), 3);
    assert!(text.contains("search d1.test d2.test d3.test d4.test d5.test d6.test\n"));
    assert_eq!(resolv_conf(&[], &[]).lines().count(), 1);
}

#[test]
fn apply_errors_join() {
    let e = ApplyErrors(vec![
        NetworkError::NoSuchLink("eth9".into()),
        NetworkError::DuplicateMatch("eth0".into()),
    ]);
    assert_eq!(
        e.to_string(),
        "no link matches eth9; link eth0 is matched by more than one [[machine.network.interfaces]] entry"
    );
}

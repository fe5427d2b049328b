use super::*;
use basalt_api::config::{Interface, Route};

fn link(index: u32, name: &str, mac: u8, physical: bool) -> Link {
    Link {
        index,
        name: name.into(),
        mac: Some(MacAddr([2, 0, 0, 0, 0, mac])),
        mtu: 1500,
        up: false,
        kind: (!physical).then(|| "veth".into()),
        loopback: false,
        physical,
    }
}

fn links() -> Vec<Link> {
    let mut lo = link(1, "lo", 0, false);
    lo.loopback = true;
    lo.mac = None;
    vec![
        lo,
        link(2, "eth0", 1, true),
        link(3, "eth1", 2, true),
        link(4, "veth0", 3, false),
    ]
}

fn iface(name: Option<&str>, mac: Option<u8>) -> Interface {
    Interface {
        name: name.map(Into::into),
        mac: mac.map(|m| MacAddr([2, 0, 0, 0, 0, m])),
        dhcp: false,
        addresses: vec![],
        routes: vec![],
        mtu: None,
    }
}

#[test]
fn no_config_is_dhcp_on_physical_links() {
    let (d, e) = desired(None, &links(), &LinkSelector::Physical);
    assert!(e.is_empty());
    assert_eq!(d.keys().collect::<Vec<_>>(), ["eth0", "eth1"]);
    assert!(d.values().all(|(_, w)| w.dhcp && w.addrs.is_empty()));
    // A config that names no interfaces does not say otherwise.
    let (d, _) = desired(Some(&Network::default()), &links(), &LinkSelector::Physical);
    assert_eq!(d.len(), 2);
    let (d, _) = desired(
        None,
        &links(),
        &LinkSelector::Named(vec!["veth0".into(), "lo".into()]),
    );
    assert_eq!(d.keys().collect::<Vec<_>>(), ["veth0"]);
}

#[test]
fn interfaces_match_by_name_and_mac() {
    let mut by_mac = iface(None, Some(2));
    by_mac.dhcp = true;
    let mut by_name = iface(Some("veth0"), None);
    by_name.addresses = vec!["10.0.0.2/24".parse().unwrap()];
    by_name.routes = vec![Route {
        to: "10.1.0.0/16".parse().unwrap(),
        via: Some("10.0.0.1".parse().unwrap()),
        metric: Some(5),
    }];
    by_name.mtu = Some(9000);
    let both_mismatch = iface(Some("eth0"), Some(9));
    let missing = iface(Some("eth7"), None);
    let dup = iface(Some("eth1"), None);
    let net = Network {
        interfaces: vec![by_mac, by_name, both_mismatch, missing, dup],
        ..Network::default()
    };
    let (d, e) = desired(Some(&net), &links(), &LinkSelector::Physical);
    assert_eq!(d.keys().collect::<Vec<_>>(), ["eth1", "veth0"]);
    assert!(d["eth1"].1.dhcp);
    let v = &d["veth0"].1;
    assert_eq!(
        (v.mtu, v.addrs.len(), v.routes[0].metric),
        (Some(9000), 1, Some(5))
    );
    let msgs: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "no link matches interface with name eth0 and mac 02:00:00:00:00:09",
            "no link matches interface with name eth7",
            "link eth1 is matched by more than one [[machine.network.interfaces]] entry",
        ]
    );
}

fn want(addrs: &[&str], routes: &[RouteSpec], mtu: Option<u32>, dhcp: bool) -> Want {
    Want {
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        routes: routes.to_vec(),
        mtu,
        dhcp,
    }
}

fn rs(to: &str, metric: u32) -> RouteSpec {
    RouteSpec {
        to: to.parse().unwrap(),
        via: None,
        metric: Some(metric),
    }
}

#[test]
fn a_new_dhcp_link_comes_up_and_starts_its_client() {
    let l = link(2, "eth0", 1, true);
    let ops = link_ops(&l, &Want::default(), false, &want(&[], &[], None, true));
    assert_eq!(
        ops,
        [
            LinkOp::PromoteSecondaries,
            LinkOp::SetUp(true),
            LinkOp::StartDhcp { apply_mtu: true }
        ]
    );
    // A running client is left alone: its lease survives the apply.
    let w = want(&[], &[], None, true);
    assert!(!link_ops(&l, &w, true, &w).contains(&LinkOp::StartDhcp { apply_mtu: true }));
    // A configured MTU is the config's, not the DHCP server's.
    let ops = link_ops(
        &l,
        &Want::default(),
        false,
        &want(&[], &[], Some(9000), true),
    );
    assert!(ops.contains(&LinkOp::SetMtu(9000)));
    assert!(ops.contains(&LinkOp::StartDhcp { apply_mtu: false }));
}

#[test]
fn reconcile_removes_what_is_no_longer_wanted_and_releases_first() {
    let l = link(2, "eth0", 1, true);
    let had = want(
        &["10.0.0.2/24", "10.0.0.3/24"],
        &[rs("10.9.0.0/16", 5)],
        Some(1500),
        true,
    );
    let now = want(
        &["10.0.0.3/24", "10.0.0.4/24"],
        &[rs("10.8.0.0/16", 5)],
        Some(1500),
        false,
    );
    let ops = link_ops(&l, &had, true, &now);
    assert_eq!(
        ops,
        [
            LinkOp::PromoteSecondaries,
            LinkOp::ReleaseDhcp,
            LinkOp::SetUp(true),
            LinkOp::DelRoute(rs("10.9.0.0/16", 5)),
            LinkOp::DelAddress("10.0.0.2/24".parse().unwrap()),
            LinkOp::AddAddress {
                addr: "10.0.0.3/24".parse().unwrap(),
                new: false
            },
            LinkOp::AddAddress {
                addr: "10.0.0.4/24".parse().unwrap(),
                new: true
            },
            LinkOp::AddRoute {
                route: rs("10.8.0.0/16", 5),
                new: true
            },
        ],
        "the MTU already matches: no SetMtu"
    );
}

#[test]
fn an_unchanged_link_only_reasserts() {
    let l = link(2, "eth0", 1, true);
    let w = want(&["10.0.0.2/24"], &[rs("10.9.0.0/16", 5)], Some(1500), false);
    let ops = link_ops(&l, &w, false, &w);
    assert!(
        ops.iter().all(|op| matches!(
            op,
            LinkOp::PromoteSecondaries
                | LinkOp::SetUp(true)
                | LinkOp::AddAddress { new: false, .. }
                | LinkOp::AddRoute { new: false, .. }
        )),
        "{ops:?}"
    );
}

#[test]
fn teardown_strips_and_downs_only_links_that_still_exist() {
    let had = want(&["10.0.0.2/24"], &[rs("10.9.0.0/16", 5)], None, true);
    assert_eq!(
        teardown_ops(&had, true, true),
        [
            LinkOp::ReleaseDhcp,
            LinkOp::DelRoute(rs("10.9.0.0/16", 5)),
            LinkOp::DelAddress("10.0.0.2/24".parse().unwrap()),
            LinkOp::SetUp(false),
        ]
    );
    assert_eq!(teardown_ops(&had, true, false), [LinkOp::ReleaseDhcp]);
    assert!(teardown_ops(&Want::default(), false, false).is_empty());
}

#[test]
fn stale_links_are_the_unwanted_vanished_and_renumbered() {
    let all = links();
    let had: BTreeMap<String, Link> = [
        ("eth0".to_string(), link(2, "eth0", 1, true)),
        ("eth1".to_string(), link(3, "eth1", 2, true)),
        // Renumbered since we configured it: index 9 then, 4 now.
        ("veth0".to_string(), link(9, "veth0", 3, false)),
        ("gone0".to_string(), link(7, "gone0", 7, false)),
    ]
    .into();
    let mut desired = BTreeMap::new();
    desired.insert("eth0".to_string(), (all[1].clone(), Want::default()));
    desired.insert("veth0".to_string(), (all[3].clone(), Want::default()));
    assert_eq!(
        stale_links(&had, &desired, &all),
        [
            ("eth1".to_string(), true),
            ("gone0".to_string(), false),
            ("veth0".to_string(), false),
        ]
    );
}

/// A recording fake of the link side of netlink; `fail` makes every
/// operation on that address fail the way the kernel would.
#[derive(Default)]
struct RecordingLinks {
    calls: std::sync::Mutex<Vec<String>>,
    fail: Option<Cidr>,
}

impl RecordingLinks {
    fn record(&self, call: String) {
        crate::lock::lock(&self.calls).push(call);
    }
    fn calls(&self) -> Vec<String> {
        crate::lock::lock(&self.calls).clone()
    }
}

impl LinkOps for RecordingLinks {
    async fn set_up(&self, link: &Link, up: bool) -> Result<(), NetworkError> {
        self.record(format!("{} up={up}", link.name));
        Ok(())
    }
    async fn set_mtu(&self, link: &Link, mtu: u32) -> Result<(), NetworkError> {
        self.record(format!("{} mtu={mtu}", link.name));
        Ok(())
    }
    async fn add_address(&self, link: &Link, addr: Cidr) -> Result<(), NetworkError> {
        if self.fail == Some(addr) {
            return Err(NetworkError::Address {
                link: link.name.clone(),
                addr,
                op: "adding",
                source: std::io::Error::from_raw_os_error(19),
            });
        }
        self.record(format!("{} +addr {addr}", link.name));
        Ok(())
    }
    async fn del_address(&self, link: &Link, addr: Cidr) -> Result<(), NetworkError> {
        self.record(format!("{} -addr {addr}", link.name));
        Ok(())
    }
    async fn add_route(&self, link: &Link, route: &RouteSpec) -> Result<(), NetworkError> {
        self.record(format!("{} +route {route}", link.name));
        Ok(())
    }
    async fn del_route(&self, link: &Link, route: &RouteSpec) -> Result<(), NetworkError> {
        self.record(format!("{} -route {route}", link.name));
        Ok(())
    }
}

#[tokio::test]
async fn the_executor_carries_out_the_diff_and_keeps_going_past_a_failure() {
    let l = link(2, "eth0", 1, true);
    let had = want(&["10.0.0.2/24"], &[], Some(1500), false);
    let now = want(
        &["10.0.0.3/24", "10.0.0.4/24"],
        &[rs("10.8.0.0/16", 5)],
        Some(9000),
        false,
    );
    let nl = RecordingLinks {
        fail: Some("10.0.0.3/24".parse().unwrap()),
        ..RecordingLinks::default()
    };
    let mut errors = Vec::new();
    for op in link_ops(&l, &had, false, &now) {
        if let Err(e) = apply_link_op(&nl, &l, &op).await {
            errors.push(e.to_string());
        }
    }
    assert_eq!(
        nl.calls(),
        [
            "eth0 up=true",
            "eth0 mtu=9000",
            "eth0 -addr 10.0.0.2/24",
            "eth0 +addr 10.0.0.4/24",
            "eth0 +route 10.8.0.0/16 metric 5",
        ]
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("10.0.0.3/24"), "{errors:?}");
}

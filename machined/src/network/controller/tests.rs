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

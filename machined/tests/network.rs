//! Network tests against the real kernel and a real DHCP server (dnsmasq).
//! They need root (CI runs as root) and fail, saying so, without it.
//!
//! Isolation: every test creates its own network namespaces
//! (`ip netns add basalt-test-<pid>-<tag>`) and veth pairs created inside
//! them; the host's interfaces are never touched, and a guard deletes the
//! namespaces (and kills dnsmasq) even when an assertion fails.
//!
//! Running our code inside a namespace: network namespaces are per thread,
//! so [`in_netns`] starts a thread that `setns(2)`s into the namespace and
//! runs a current-thread tokio runtime there. Every socket the code opens
//! (rtnetlink, the DHCP UDP socket) belongs to that namespace, and tasks of a
//! current-thread runtime never leave the thread. The checks use the peer
//! tool, `ip -n NS -j …` (JSON), and dnsmasq's lease file.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod netns;

use basalt_api::config::{Cidr, Interface, MacAddr, Network, Route};
use machined::network::dhcp::Phase;
use machined::network::{ControllerOptions, LinkSelector, NetworkController};
use netns::*;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// A veth pair: `vA` in the client's namespace, `vB` (10.77.0.1/24, up)
/// in the server's, where a DHCP server listens.
fn server_link(srv: &Netns, cli: &Netns) {
    run(&[
        "ip", "-n", &cli.0, "link", "add", "vA", "type", "veth", "peer", "name", "vB", "netns",
        &srv.0,
    ]);
    run(&[
        "ip",
        "-n",
        &srv.0,
        "addr",
        "add",
        "10.77.0.1/24",
        "dev",
        "vB",
    ]);
    run(&["ip", "-n", &srv.0, "link", "set", "vB", "up"]);
}

#[test]
fn dhcp_lease_renew_release_against_dnsmasq() {
    require_root("dhcp_lease_renew_release_against_dnsmasq");
    let srv = Netns::new("dhcp-srv");
    let cli = Netns::new("dhcp-cli");
    server_link(&srv, &cli);
    let mac = link(&cli.0, "vA")["address"].as_str().unwrap().to_string();
    let dnsmasq = Dnsmasq::start(&srv.0, "vB");

    let ns = cli.0.clone();
    let lease_file = dnsmasq.path("leases");
    let leases = move || Dnsmasq::parse_leases(&lease_file);
    in_netns(&cli.0, move || async move {
        let opts = ControllerOptions {
            dhcp_links: LinkSelector::Named(vec!["vA".into()]),
            dhcp_timing: fast_timing(),
            ..ControllerOptions::default()
        };
        let net = NetworkController::start(opts).await.unwrap();
        let mut changes = net.changes();
        net.apply(None).await.unwrap();

        // lo comes up with 127.0.0.1/8.
        assert!(addrs(&ns, "lo").contains(&"127.0.0.1/8".to_string()));
        assert!(is_up(&ns, "lo"));

        // DISCOVER/OFFER/REQUEST/ACK.
        let lease = wait_for("a DHCP lease", Duration::from_secs(20), || {
            net.status()
                .links
                .iter()
                .find_map(|l| l.dhcp.as_ref()?.lease.clone())
        })
        .await;
        let last = u32::from(lease.address).to_be_bytes()[3];
        assert!(
            lease.address.octets()[..3] == [10, 77, 0] && (50..=99).contains(&last),
            "{lease:?}"
        );
        assert_eq!(lease.prefix_len, 24);
        assert_eq!(lease.routers, [Ipv4Addr::new(10, 77, 0, 1)]);
        assert_eq!(
            lease.dns,
            [Ipv4Addr::new(10, 77, 0, 53), Ipv4Addr::new(10, 77, 0, 54)]
        );
        assert_eq!(lease.server, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(lease.lease_secs, 120);
        assert_eq!(lease.domain_name.as_deref(), Some("basalt.test"));
        assert_eq!(
            net.dns(),
            [IpAddr::from([10, 77, 0, 53]), IpAddr::from([10, 77, 0, 54])]
        );
        assert_eq!(net.search_domains(), ["basalt.test"]);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();

        // Installed for real, as `ip` sees it.
        assert!(
            addrs(&ns, "vA").contains(&format!("{}/24", lease.address)),
            "{:?}",
            addrs(&ns, "vA")
        );
        let default: Vec<Value> = ip_json(&ns, &["route", "show", "default"]);
        assert_eq!(default.len(), 1, "{default:?}");
        assert_eq!(default[0]["gateway"], "10.77.0.1");
        assert_eq!(default[0]["dev"], "vA");
        assert_eq!(default[0]["metric"], 1024);
        assert_eq!(default[0]["protocol"], "dhcp");
        // And dnsmasq agrees.
        let held = leases();
        assert!(
            held.iter()
                .any(|(_, m, ip)| *m == mac && *ip == lease.address.to_string()),
            "{held:?}"
        );
        let expiry = held[0].0;

        // Renew (unicast REQUEST to the server) now instead of at T1.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(net.renew_now("vA").await);
        wait_for("the renewal ACK", Duration::from_secs(10), || {
            let s = net.status();
            let d = s.links[0].dhcp.as_ref()?;
            (d.renewals == 1 && d.phase == Phase::Bound).then_some(())
        })
        .await;
        assert_eq!(
            net.status().links[0]
                .dhcp
                .as_ref()
                .unwrap()
                .lease
                .as_ref()
                .unwrap()
                .address,
            lease.address
        );
        wait_for(
            "dnsmasq to extend the lease",
            Duration::from_secs(5),
            || {
                leases()
                    .iter()
                    .any(|(e, m, _)| *m == mac && *e > expiry)
                    .then_some(())
            },
        )
        .await;
        assert!(changes.has_changed().unwrap());

        // A config that turns DHCP off on the link: RELEASE, the lease's
        // address and route go, the static address comes.
        let cfg = Network {
            interfaces: vec![Interface {
                name: Some("vA".into()),
                mac: None,
                dhcp: false,
                addresses: vec!["10.77.0.200/24".parse().unwrap()],
                routes: vec![],
                mtu: None,
            }],
            nameservers: vec![IpAddr::from([192, 0, 2, 53])],
            search_domains: vec![],
        };
        net.apply(Some(&cfg)).await.unwrap();
        wait_for(
            "dnsmasq to drop the released lease",
            Duration::from_secs(5),
            || (!leases().iter().any(|(_, m, _)| *m == mac)).then_some(()),
        )
        .await;
        let now = addrs(&ns, "vA");
        assert!(!now.contains(&format!("{}/24", lease.address)), "{now:?}");
        assert!(now.contains(&"10.77.0.200/24".to_string()), "{now:?}");
        assert!(ip_json(&ns, &["route", "show", "default"]).is_empty());
        assert_eq!(net.dns(), [IpAddr::from([192, 0, 2, 53])]);
        assert!(net.status().links[0].dhcp.is_none());
    });
    drop(dnsmasq);
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn iface(name: &str, addresses: &[&str], routes: Vec<Route>, mtu: Option<u32>) -> Interface {
    Interface {
        name: Some(name.into()),
        mac: None,
        dhcp: false,
        addresses: addresses.iter().map(|a| cidr(a)).collect(),
        routes,
        mtu,
    }
}

fn route(to: &str, via: Option<&str>, metric: Option<u32>) -> Route {
    Route {
        to: cidr(to),
        via: via.map(|v| v.parse().unwrap()),
        metric,
    }
}

fn find_route<'a>(rs: &'a [Value], dst: &str) -> Option<&'a Value> {
    rs.iter().find(|r| r["dst"] == dst)
}

#[test]
fn static_config_applies_and_reconciles() {
    require_root("static_config_applies_and_reconciles");
    let ns = Netns::new("static");
    run(&[
        "ip", "-n", &ns.0, "link", "add", "s0", "type", "veth", "peer", "name", "s1",
    ]);
    run(&["ip", "-n", &ns.0, "link", "set", "s1", "up"]);
    let s1_mac: MacAddr = link(&ns.0, "s1")["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let n = ns.0.clone();
    in_netns(&ns.0, move || async move {
        let opts = ControllerOptions {
            dhcp_links: LinkSelector::Named(vec![]),
            ..ControllerOptions::default()
        };
        let net = NetworkController::start(opts).await.unwrap();

        // 1: two addresses, MTU, a gatewayed route with a metric, an on-link route.
        let first = Network {
            interfaces: vec![iface(
                "s0",
                &["10.88.0.2/24", "fd00:88::2/64"],
                vec![
                    route("10.99.0.0/16", Some("10.88.0.1"), Some(123)),
                    route("10.98.0.0/16", None, None),
                ],
                Some(1400),
            )],
            nameservers: vec![IpAddr::from([10, 88, 0, 53])],
            search_domains: vec!["static.test".into()],
        };
        net.apply(Some(&first)).await.unwrap();
        let l = link(&n, "s0");
        assert_eq!(l["mtu"], 1400);
        assert!(is_up(&n, "s0"));
        let a = addrs(&n, "s0");
        assert!(
            a.contains(&"10.88.0.2/24".into()) && a.contains(&"fd00:88::2/64".into()),
            "{a:?}"
        );
        let rs = routes(&n, "s0");
        let r = find_route(&rs, "10.99.0.0/16").unwrap_or_else(|| panic!("{rs:?}"));
        assert_eq!(
            (&r["gateway"], &r["metric"], &r["protocol"]),
            (&"10.88.0.1".into(), &123.into(), &"static".into())
        );
        let r = find_route(&rs, "10.98.0.0/16").unwrap_or_else(|| panic!("{rs:?}"));
        assert_eq!(r["scope"], "link");
        assert_eq!(net.dns(), [IpAddr::from([10, 88, 0, 53])]);
        assert_eq!(net.search_domains(), ["static.test"]);
        // Applying the same config again changes nothing and fails nothing.
        net.apply(Some(&first)).await.unwrap();
        assert_eq!(addrs(&n, "s0"), a);

        // 2: reconcile to a new address, route and MTU: the old ones go.
        let second = Network {
            interfaces: vec![iface(
                "s0",
                &["10.88.0.3/24"],
                vec![route("10.97.0.0/16", Some("10.88.0.1"), Some(7))],
                Some(1450),
            )],
            ..Network::default()
        };
        net.apply(Some(&second)).await.unwrap();
        let a = addrs(&n, "s0");
        assert!(a.contains(&"10.88.0.3/24".into()), "{a:?}");
        assert!(
            !a.contains(&"10.88.0.2/24".into()) && !a.contains(&"fd00:88::2/64".into()),
            "{a:?}"
        );
        let rs = routes(&n, "s0");
        assert!(
            find_route(&rs, "10.99.0.0/16").is_none() && find_route(&rs, "10.98.0.0/16").is_none(),
            "{rs:?}"
        );
        assert_eq!(find_route(&rs, "10.97.0.0/16").unwrap()["metric"], 7);
        assert_eq!(link(&n, "s0")["mtu"], 1450);
        let st = net.status();
        assert_eq!(st.links.len(), 1);
        assert_eq!(st.links[0].addresses, [cidr("10.88.0.3/24")]);
        assert!(net.dns().is_empty());

        // 3: s0 no longer listed (s1 matched by MAC instead), plus an entry
        // that matches nothing: s0 is stripped and set down, the rest applies,
        // the error names the interface.
        let mut by_mac = iface("unused", &["10.66.0.1/24"], vec![], None);
        by_mac.name = None;
        by_mac.mac = Some(s1_mac);
        let third = Network {
            interfaces: vec![by_mac, iface("nope0", &[], vec![], None)],
            ..Network::default()
        };
        let err = net.apply(Some(&third)).await.unwrap_err();
        assert_eq!(err.to_string(), "no link matches interface with name nope0");
        assert!(!is_up(&n, "s0"));
        let a = addrs(&n, "s0");
        assert!(!a.iter().any(|x| x.starts_with("10.")), "{a:?}");
        assert!(addrs(&n, "s1").contains(&"10.66.0.1/24".into()));
        let st = net.status();
        assert_eq!(st.errors, ["no link matches interface with name nope0"]);
        assert_eq!(
            st.links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["s1"]
        );
        serde_json::to_string(&st).unwrap();
    });
}

/// A hostile DHCP server (a raw responder on the other end of a veth):
/// a /0 mask, an off-link default gateway, 200 DNS servers, a domain name
/// and a search entry that carry a resolv.conf line, a host name of 300
/// bytes with `/` and a control character, a 0 s lease, an MTU of 100.
/// The client installs what is sound (clamped), nothing else, and the
/// resolv.conf it would produce has no line of the server's making. Then
/// the server NAKs every REQUEST: the client drops the lease and asks
/// again on its backoff, not at the rate NAKs arrive.
#[test]
fn a_hostile_dhcp_server_is_clamped_and_its_nak_storm_backed_off() {
    require_root("a_hostile_dhcp_server_is_clamped_and_its_nak_storm_backed_off");
    let srv = Netns::new("hostile-srv");
    let cli = Netns::new("hostile-cli");
    server_link(&srv, &cli);
    let server = HostileDhcp::start(&srv.0, "vB", Ipv4Addr::new(10, 77, 0, 60));
    let (answer, discovers) = (server.answer.clone(), server.discovers.clone());
    let ns = cli.0.clone();
    in_netns(&cli.0, move || async move {
        let opts = ControllerOptions {
            dhcp_links: LinkSelector::Named(vec!["vA".into()]),
            dhcp_timing: fast_timing(),
            ..ControllerOptions::default()
        };
        let net = NetworkController::start(opts).await.unwrap();
        net.apply(None).await.unwrap();
        let lease = wait_for("a lease", Duration::from_secs(20), || {
            net.status()
                .links
                .iter()
                .find_map(|l| l.dhcp.as_ref()?.lease.clone())
        })
        .await;
        assert_eq!(lease.address, Ipv4Addr::new(10, 77, 0, 60));
        assert_eq!(
            lease.prefix_len, 8,
            "the /0 mask gives way to the classful /8"
        );
        assert_eq!(lease.lease_secs, 60);
        assert!(lease.routers.is_empty(), "{:?}", lease.routers);
        assert_eq!(lease.dns.len(), 8);
        assert_eq!(
            (lease.hostname.as_deref(), lease.domain_name.as_deref()),
            (None, None)
        );
        assert_eq!(lease.search, ["good.test"]);
        assert_eq!(lease.mtu, None, "an MTU below 576 is ignored");
        assert!(lease.refused.len() >= 6, "{:?}", lease.refused);
        // As `ip` sees it: the address, no default route, the MTU kept.
        assert!(addrs(&ns, "vA").contains(&"10.77.0.60/8".to_string()));
        assert!(ip_json(&ns, &["route", "show", "default"]).is_empty());
        assert_eq!(link(&ns, "vA")["mtu"], 1500);
        // The resolv.conf the DNS controller writes from these leases.
        let text = machined::controllers::dns::ResolvConf::merge(None, &net.lease_dns()).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[1..4]
                .iter()
                .all(|l| l.starts_with("nameserver 10.77.1.")),
            "{text}"
        );
        assert_eq!(lines[4], "search good.test");

        // The NAK storm: renew, and every REQUEST from now on is NAKed.
        *answer.lock().unwrap() = Answer::Nak;
        let from = std::time::Instant::now();
        assert!(net.renew_now("vA").await);
        wait_for("the NAKed lease to go", Duration::from_secs(10), || {
            (!addrs(&ns, "vA").contains(&"10.77.0.60/8".to_string())).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let count = discovers
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t >= from)
            .count();
        // Backoff 0.5 s doubling to 2 s (fast timing): about six in 8 s;
        // without it, one per round trip (hundreds).
        assert!((3..=12).contains(&count), "{count} DISCOVERs in the storm");
    });
    drop(server);
}

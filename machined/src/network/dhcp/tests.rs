use super::*;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn timing() -> Timing {
    Timing {
        jitter: Duration::ZERO,
        ..Timing::default()
    }
}

fn sent(actions: &[Action]) -> Vec<(MessageType, Dest, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { msg, dest } => {
                Some((msg.opts().msg_type().unwrap(), *dest, (**msg).clone()))
            }
            _ => None,
        })
        .collect()
}

fn reply(to: &Message, kind: MessageType, yiaddr: Ipv4Addr, extra: &[DhcpOption]) -> Message {
    let u = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(to.xid(), u, yiaddr, u, u, &MAC);
    m.set_opcode(Opcode::BootReply);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    for o in extra {
        m.opts_mut().insert(o.clone());
    }
    m
}

fn full_opts(lease: u32) -> Vec<DhcpOption> {
    vec![
        DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
        DhcpOption::Router(vec![SERVER]),
        DhcpOption::DomainNameServer(vec![
            Ipv4Addr::new(10, 0, 0, 53),
            Ipv4Addr::new(10, 0, 0, 54),
        ]),
        DhcpOption::DomainName("example.test".into()),
        DhcpOption::Hostname("node-7".into()),
        DhcpOption::AddressLeaseTime(lease),
    ]
}

/// Drive a client from INIT to BOUND; returns the client and t0.
fn bound(lease_secs: u32) -> (Client, Instant) {
    let t0 = Instant::now();
    let mut c = Client::new(MAC, None, timing(), 42, t0);
    let d = sent(&c.poll(t0));
    assert_eq!(d.len(), 1);
    let (kind, dest, discover) = &d[0];
    assert_eq!((*kind, *dest), (MessageType::Discover, Dest::Broadcast));
    assert!(discover.flags().broadcast());
    let addr = Ipv4Addr::new(10, 0, 0, 50);
    let r = sent(&c.handle(
        &reply(discover, MessageType::Offer, addr, &full_opts(lease_secs)),
        t0,
    ));
    let (kind, dest, req) = &r[0];
    assert_eq!((*kind, *dest), (MessageType::Request, Dest::Broadcast));
    assert_eq!(req.xid(), discover.xid());
    assert_eq!(
        req.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(addr))
    );
    assert_eq!(
        req.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    let acts = c.handle(
        &reply(req, MessageType::Ack, addr, &full_opts(lease_secs)),
        t0,
    );
    assert!(matches!(&acts[..], [Action::Bind(l)] if l.address == addr && l.prefix_len == 24));
    assert_eq!(c.phase(), Phase::Bound);
    (c, t0)
}

#[test]
fn backoff_doubles_and_caps() {
    let t = Timing::default();
    let secs: Vec<u64> = (0..8).map(|a| t.backoff(a).as_secs()).collect();
    assert_eq!(secs, [4, 8, 16, 32, 64, 64, 64, 64]);
    assert_eq!(t.backoff(u32::MAX).as_secs(), 64);
}

#[test]
fn discover_retransmit_schedule() {
    let t0 = Instant::now();
    let mut c = Client::new(MAC, None, timing(), 7, t0);
    let first = sent(&c.poll(t0));
    let xid = first[0].2.xid();
    assert_eq!(c.next_wakeup(), Some(t0 + Duration::from_secs(4)));
    // Nothing before the deadline.
    assert!(c.poll(t0 + Duration::from_secs(3)).is_empty());
    let mut at = t0;
    let mut gaps = Vec::new();
    for _ in 0..6 {
        let next = c.next_wakeup().unwrap();
        gaps.push((next - at).as_secs());
        at = next;
        let s = sent(&c.poll(at));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, MessageType::Discover);
        assert_eq!(s[0].2.xid(), xid, "retransmissions keep the xid");
        assert_eq!(u64::from(s[0].2.secs()), (at - t0).as_secs());
    }
    assert_eq!(gaps, [4, 8, 16, 32, 64, 64]);
}

#[test]
fn jitter_stays_within_a_second() {
    let t0 = Instant::now();
    let mut c = Client::new(MAC, None, Timing::default(), 99, t0);
    c.poll(t0);
    let d = c.next_wakeup().unwrap() - t0;
    assert!(
        d >= Duration::from_secs(3) && d <= Duration::from_secs(5),
        "{d:?}"
    );
}

#[test]
fn request_gives_up_after_attempts_and_rediscovers() {
    let t0 = Instant::now();
    let mut c = Client::new(MAC, None, timing(), 7, t0);
    let d = sent(&c.poll(t0));
    let offer = reply(
        &d[0].2,
        MessageType::Offer,
        Ipv4Addr::new(10, 0, 0, 50),
        &full_opts(600),
    );
    c.handle(&offer, t0);
    assert_eq!(c.phase(), Phase::Requesting);
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let at = c.next_wakeup().unwrap();
        kinds.extend(sent(&c.poll(at)).into_iter().map(|s| s.0));
    }
    assert_eq!(
        kinds,
        [
            MessageType::Request,
            MessageType::Request,
            MessageType::Request,
            MessageType::Discover
        ]
    );
    assert_eq!(c.phase(), Phase::Selecting);
}

#[test]
fn ignores_foreign_replies() {
    let t0 = Instant::now();
    let mut c = Client::new(MAC, None, timing(), 7, t0);
    let d = sent(&c.poll(t0));
    let mut wrong_xid = reply(
        &d[0].2,
        MessageType::Offer,
        Ipv4Addr::new(10, 0, 0, 50),
        &full_opts(600),
    );
    wrong_xid.set_xid(d[0].2.xid().wrapping_add(1));
    assert!(c.handle(&wrong_xid, t0).is_empty());
    let mut wrong_mac = reply(
        &d[0].2,
        MessageType::Offer,
        Ipv4Addr::new(10, 0, 0, 50),
        &full_opts(600),
    );
    wrong_mac.set_chaddr(&[1, 2, 3, 4, 5, 6]);
    assert!(c.handle(&wrong_mac, t0).is_empty());
    let mut request = reply(
        &d[0].2,
        MessageType::Offer,
        Ipv4Addr::new(10, 0, 0, 50),
        &full_opts(600),
    );
    request.set_opcode(Opcode::BootRequest);
    assert!(c.handle(&request, t0).is_empty());
    // An ACK while selecting is not an answer to anything.
    let ack = reply(
        &d[0].2,
        MessageType::Ack,
        Ipv4Addr::new(10, 0, 0, 50),
        &full_opts(600),
    );
    assert!(c.handle(&ack, t0).is_empty());
    assert_eq!(c.phase(), Phase::Selecting);
}

/// Found by the `dhcp_client` fuzz target: a reply whose hardware address
/// length (hlen) is over chaddr's 16 bytes panicked `Message::chaddr`.
#[test]
fn ignores_a_reply_with_an_oversized_hardware_address_length() {
    use dhcproto::{Encodable, Encoder};
    let t0 = Instant::now();
    let mut c = Client::new(MAC, None, timing(), 7, t0);
    let d = sent(&c.poll(t0));
    let offer = reply(
        &d[0].2,
        MessageType::Offer,
        Ipv4Addr::new(10, 0, 0, 50),
        &full_opts(600),
    );
    let mut bytes = Vec::new();
    offer.encode(&mut Encoder::new(&mut bytes)).unwrap();
    for hlen in [17u8, 64, 255] {
        bytes[2] = hlen;
        let msg = wire::decode_reply(&bytes).unwrap();
        assert!(c.handle(&msg, t0).is_empty(), "hlen {hlen}");
    }
    assert_eq!(c.phase(), Phase::Selecting);
    // The same reply with an Ethernet address length is taken.
    bytes[2] = 6;
    assert!(
        !c.handle(&wire::decode_reply(&bytes).unwrap(), t0)
            .is_empty()
    );
    assert_eq!(c.phase(), Phase::Requesting);
}

#[test]
fn t1_renews_unicast_then_t2_rebinds_then_expiry_restarts() {
    let (mut c, t0) = bound(1000);
    let lease = c.lease().unwrap().clone();
    assert_eq!((lease.t1_secs, lease.t2_secs), (500, 875));
    assert_eq!(c.next_wakeup(), Some(t0 + Duration::from_secs(500)));
    assert!(c.poll(t0 + Duration::from_secs(499)).is_empty());

    let s = sent(&c.poll(t0 + Duration::from_secs(500)));
    assert_eq!(c.phase(), Phase::Renewing);
    let (kind, dest, req) = &s[0];
    assert_eq!((*kind, *dest), (MessageType::Request, Dest::Server(SERVER)));
    assert_eq!(req.ciaddr(), lease.address);
    assert!(!req.flags().broadcast());
    assert!(req.opts().get(OptionCode::ServerIdentifier).is_none());
    assert!(req.opts().get(OptionCode::RequestedIpAddress).is_none());
    // Retry after half of the 375 s left before T2 (≥ 60 s).
    assert_eq!(
        c.next_wakeup(),
        Some(t0 + Duration::from_millis(500_000 + 187_500))
    );

    let s = sent(&c.poll(t0 + Duration::from_secs(875)));
    assert_eq!(c.phase(), Phase::Rebinding);
    assert_eq!(s[0].1, Dest::Broadcast);
    assert_eq!(s[0].2.ciaddr(), lease.address);
    // Half of 125 s, but at least 60 s.
    assert_eq!(
        c.next_wakeup(),
        Some(t0 + Duration::from_millis(875_000 + 62_500))
    );
    assert_eq!(sent(&c.poll(t0 + Duration::from_millis(937_500))).len(), 1);
    // 62.5 s left: the 60 s floor applies.
    assert_eq!(c.next_wakeup(), Some(t0 + Duration::from_millis(997_500)));
    assert_eq!(sent(&c.poll(t0 + Duration::from_millis(997_500))).len(), 1);
    // 2.5 s left: the retry is clamped to the expiry.
    assert_eq!(c.next_wakeup(), Some(t0 + Duration::from_secs(1000)));

    let acts = c.poll(t0 + Duration::from_secs(1000));
    assert!(matches!(&acts[0], Action::Unbind(l) if *l == lease));
    assert!(
        matches!(&acts[1], Action::Send { msg, dest: Dest::Broadcast } if msg.opts().msg_type() == Some(MessageType::Discover))
    );
    assert_eq!(c.phase(), Phase::Selecting);
}

#[test]
fn renewal_ack_rebinds_from_request_time() {
    let (mut c, t0) = bound(1000);
    let t1 = t0 + Duration::from_secs(500);
    let s = sent(&c.poll(t1));
    let ack = reply(
        &s[0].2,
        MessageType::Ack,
        Ipv4Addr::new(10, 0, 0, 50),
        &full_opts(1000),
    );
    let acts = c.handle(&ack, t1 + Duration::from_secs(1));
    assert!(matches!(&acts[..], [Action::Bind(_)]));
    assert_eq!(c.phase(), Phase::Bound);
    // The new lease counts from when the REQUEST was sent.
    assert_eq!(c.next_wakeup(), Some(t1 + Duration::from_secs(500)));
}

#[test]
fn renew_now_forces_a_unicast_request() {
    let (mut c, t0) = bound(120);
    let s = sent(&c.renew_now(t0 + Duration::from_secs(1)));
    assert_eq!(
        (s[0].0, s[0].1),
        (MessageType::Request, Dest::Server(SERVER))
    );
    assert_eq!(c.phase(), Phase::Renewing);
}

#[test]
fn nak_while_renewing_drops_lease_and_rediscovers() {
    let (mut c, t0) = bound(1000);
    let lease = c.lease().unwrap().clone();
    let s = sent(&c.poll(t0 + Duration::from_secs(500)));
    let nak = reply(&s[0].2, MessageType::Nak, Ipv4Addr::UNSPECIFIED, &[]);
    let acts = c.handle(&nak, t0 + Duration::from_secs(501));
    assert!(matches!(&acts[0], Action::Unbind(l) if *l == lease));
    assert_eq!(sent(&acts)[0].0, MessageType::Discover);
    assert_eq!(c.phase(), Phase::Selecting);
    assert!(c.lease().is_none());
}

#[test]
fn nak_while_requesting_restarts_without_unbind() {
    let t0 = Instant::now();
    let mut c = Client::new(MAC, None, timing(), 7, t0);
    let d = sent(&c.poll(t0));
    let r = sent(&c.handle(
        &reply(
            &d[0].2,
            MessageType::Offer,
            Ipv4Addr::new(10, 0, 0, 50),
            &full_opts(600),
        ),
        t0,
    ));
    let acts = c.handle(
        &reply(&r[0].2, MessageType::Nak, Ipv4Addr::UNSPECIFIED, &[]),
        t0,
    );
    assert!(!acts.iter().any(|a| matches!(a, Action::Unbind(_))));
    let s = sent(&acts);
    assert_eq!(s[0].0, MessageType::Discover);
    assert_ne!(s[0].2.xid(), d[0].2.xid(), "a new exchange gets a new xid");
}

#[test]
fn nak_from_another_server_is_ignored_while_requesting() {
    let t0 = Instant::now();
    let mut c = Client::new(MAC, None, timing(), 7, t0);
    let d = sent(&c.poll(t0));
    let r = sent(&c.handle(
        &reply(
            &d[0].2,
            MessageType::Offer,
            Ipv4Addr::new(10, 0, 0, 50),
            &full_opts(600),
        ),
        t0,
    ));
    let mut nak = reply(&r[0].2, MessageType::Nak, Ipv4Addr::UNSPECIFIED, &[]);
    nak.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 2)));
    assert!(c.handle(&nak, t0).is_empty());
    assert_eq!(c.phase(), Phase::Requesting);
}

#[test]
fn release_sends_to_server_and_stops() {
    let (mut c, t0) = bound(600);
    let acts = c.release(t0);
    let s = sent(&acts);
    assert_eq!(
        (s[0].0, s[0].1),
        (MessageType::Release, Dest::Server(SERVER))
    );
    assert_eq!(s[0].2.ciaddr(), Ipv4Addr::new(10, 0, 0, 50));
    assert_eq!(
        s[0].2.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert!(matches!(acts.last(), Some(Action::Unbind(_))));
    assert_eq!(c.phase(), Phase::Stopped);
    assert_eq!(c.next_wakeup(), None);
    // Releasing without a lease sends nothing.
    let mut idle = Client::new(MAC, None, timing(), 1, t0);
    assert!(idle.release(t0).is_empty());
}

#[test]
fn infinite_lease_never_renews() {
    let (c, _) = bound(INFINITE);
    assert_eq!(c.next_wakeup(), None);
    assert_eq!(c.lease().unwrap().t1_secs, INFINITE);
}

#[test]
fn lease_parsing_full() {
    let req = Message::default();
    let mut opts = full_opts(3600);
    opts.push(DhcpOption::Renewal(1000));
    opts.push(DhcpOption::Rebinding(2000));
    opts.push(DhcpOption::InterfaceMtu(1400));
    let l = parse_lease(
        &reply(&req, MessageType::Ack, Ipv4Addr::new(10, 0, 0, 50), &opts),
        None,
    )
    .unwrap();
    assert_eq!(
        l,
        Lease {
            address: Ipv4Addr::new(10, 0, 0, 50),
            prefix_len: 24,
            server: SERVER,
            routers: vec![SERVER],
            dns: vec![Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(10, 0, 0, 54)],
            domain_name: Some("example.test".into()),
            search: vec![],
            hostname: Some("node-7".into()),
            mtu: Some(1400),
            lease_secs: 3600,
            t1_secs: 1000,
            t2_secs: 2000,
            refused: vec![],
        }
    );
    assert_eq!(l.cidr().unwrap().to_string(), "10.0.0.50/24");
}

#[test]
fn lease_parsing_missing_options() {
    let req = Message::default();
    let only_time = [DhcpOption::AddressLeaseTime(100)];
    let l = parse_lease(
        &reply(
            &req,
            MessageType::Ack,
            Ipv4Addr::new(172, 16, 5, 9),
            &only_time,
        ),
        None,
    )
    .unwrap();
    assert_eq!(l.prefix_len, 16, "classful fallback without a mask");
    assert!(l.routers.is_empty() && l.dns.is_empty() && l.search.is_empty());
    assert_eq!((l.domain_name, l.hostname, l.mtu), (None, None, None));
    assert_eq!((l.t1_secs, l.t2_secs), (50, 87));

    let a = parse_lease(
        &reply(
            &req,
            MessageType::Ack,
            Ipv4Addr::new(10, 1, 2, 3),
            &only_time,
        ),
        None,
    )
    .unwrap();
    assert_eq!(a.prefix_len, 8);
    let c = parse_lease(
        &reply(
            &req,
            MessageType::Ack,
            Ipv4Addr::new(192, 168, 1, 3),
            &only_time,
        ),
        None,
    )
    .unwrap();
    assert_eq!(c.prefix_len, 24);

    assert_eq!(
        parse_lease(
            &reply(&req, MessageType::Ack, Ipv4Addr::new(10, 0, 0, 50), &[]),
            None
        ),
        Err(LeaseError::NoLeaseTime)
    );
    assert_eq!(
        parse_lease(
            &reply(&req, MessageType::Ack, Ipv4Addr::UNSPECIFIED, &only_time),
            None
        ),
        Err(LeaseError::NoAddress)
    );
    let mut no_sid = reply(
        &req,
        MessageType::Ack,
        Ipv4Addr::new(10, 0, 0, 50),
        &only_time,
    );
    no_sid.opts_mut().remove(OptionCode::ServerIdentifier);
    assert_eq!(parse_lease(&no_sid, None), Err(LeaseError::NoServerId));
    assert_eq!(parse_lease(&no_sid, Some(SERVER)).unwrap().server, SERVER);

    let bad_mask = [
        DhcpOption::AddressLeaseTime(100),
        DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0)),
    ];
    assert_eq!(
        parse_lease(
            &reply(
                &req,
                MessageType::Ack,
                Ipv4Addr::new(10, 0, 0, 50),
                &bad_mask
            ),
            None
        ),
        Err(LeaseError::BadMask(Ipv4Addr::new(255, 0, 255, 0)))
    );
    // T1/T2 out of order or beyond the lease fall back to the defaults.
    let odd = [
        DhcpOption::AddressLeaseTime(100),
        DhcpOption::Renewal(95),
        DhcpOption::Rebinding(200),
    ];
    let l = parse_lease(
        &reply(&req, MessageType::Ack, Ipv4Addr::new(10, 0, 0, 50), &odd),
        None,
    )
    .unwrap();
    assert_eq!((l.t1_secs, l.t2_secs), (50, 87));
}

#[test]
fn lease_survives_a_wire_round_trip() {
    use dhcproto::{Decodable, Decoder, Encodable, Encoder};
    let req = Message::default();
    let mut m = reply(
        &req,
        MessageType::Ack,
        Ipv4Addr::new(10, 0, 0, 50),
        &full_opts(600),
    );
    let names = ["corp.example.", "example."]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    m.opts_mut().insert(DhcpOption::DomainSearch(names));
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    let back = Message::decode(&mut Decoder::new(&buf)).unwrap();
    let l = parse_lease(&back, None).unwrap();
    assert_eq!(l.search, ["corp.example", "example"]);
    assert_eq!(l.dns.len(), 2);
}

#[test]
fn mask_prefixes() {
    assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
    assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
    assert_eq!(mask_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
    assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 128, 0)), Some(17));
    assert_eq!(mask_prefix(Ipv4Addr::new(0, 255, 255, 0)), None);
}

/// A hostile server's reply, through the wire codec: every value is either
/// what it claims to be or dropped (and listed), lists are capped, the
/// lease time and prefix are clamped. Nothing it sends can put a line into
/// resolv.conf.
#[test]
fn hostile_replies_are_clamped_and_sanitised() {
    use dhcproto::{Decodable, Decoder, Encodable, Encoder, Name};
    let req = Message::default();
    let addr = Ipv4Addr::new(10, 0, 0, 50);
    let dns: Vec<Ipv4Addr> = (0..200u8)
        .map(|i| Ipv4Addr::new(10, 1, 0, i))
        .chain([Ipv4Addr::BROADCAST, Ipv4Addr::new(224, 0, 0, 1)])
        .collect();
    let injected = Name::from_labels(vec![b"x\nnameserver 6".to_vec(), b"6".to_vec()]).unwrap();
    let opts = vec![
        DhcpOption::SubnetMask(Ipv4Addr::new(0, 0, 0, 0)),
        // Off-link (the /0 mask is refused: the classful /8 applies), and
        // not unicast.
        DhcpOption::Router(vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::UNSPECIFIED]),
        DhcpOption::DomainNameServer(dns),
        DhcpOption::DomainName("corp.test\nnameserver 6.6.6.6".into()),
        DhcpOption::Hostname(format!("../../etc/{}", "a".repeat(300))),
        DhcpOption::DomainSearch(vec![
            injected,
            "ok.test.".parse().unwrap(),
            "a.test.".parse().unwrap(),
            "b.test.".parse().unwrap(),
            "c.test.".parse().unwrap(),
            "d.test.".parse().unwrap(),
            "e.test.".parse().unwrap(),
            "f.test.".parse().unwrap(),
        ]),
        DhcpOption::AddressLeaseTime(0),
    ];
    let mut m = reply(&req, MessageType::Ack, addr, &opts);
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    m = Message::decode(&mut Decoder::new(&buf)).unwrap();
    let l = parse_lease(&m, None).unwrap();
    assert_eq!(
        l.prefix_len, 8,
        "a /0 mask falls back to the classful prefix"
    );
    assert_eq!(l.lease_secs, limits::MIN_LEASE_SECS);
    assert!(l.t1_secs <= l.t2_secs && l.t2_secs <= l.lease_secs);
    assert!(l.routers.is_empty(), "{:?}", l.routers);
    assert_eq!(l.dns.len(), limits::MAX_DNS);
    assert!(l.dns.iter().all(|d| limits::unicast(*d)));
    assert_eq!(l.domain_name, None);
    assert_eq!(l.hostname, None);
    assert_eq!(
        l.search,
        ["ok.test", "a.test", "b.test", "c.test", "d.test", "e.test"]
    );
    let refused = l.refused.join("\n");
    for want in [
        "lease time 0 s: raised to 60 s",
        "subnet mask /0",
        "router 0.0.0.0: not a unicast address",
        "router 192.0.2.1: outside 10.0.0.50/8 (off-link)",
        "DNS server 255.255.255.255: not a unicast address",
        "DNS servers: 200 offered, the first 8 kept",
        "domain name \"corp.test\\nnameserver 6.6.6.6\": not a DNS name",
        "host name \"../../etc/aaaa",
        "(310 bytes)",
        "search domain",
        "search domains: 7 offered, the first 6 kept",
    ] {
        assert!(refused.contains(want), "{want:?} not in:\n{refused}");
    }
    // Every refusal is one printable line.
    assert!(l.refused.iter().all(|r| !r.chars().any(char::is_control)));
}

#[test]
fn a_lease_for_a_non_unicast_address_is_refused() {
    let req = Message::default();
    for a in [
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(239, 1, 1, 1),
    ] {
        let m = reply(&req, MessageType::Ack, a, &full_opts(600));
        assert_eq!(parse_lease(&m, None), Err(LeaseError::NotUnicast(a)));
    }
}

/// A server that NAKs every REQUEST gets DISCOVERs on the retransmit
/// backoff, not as fast as it can send NAKs; a lease resets the count.
#[test]
fn a_nak_storm_is_met_with_backoff() {
    let t0 = Instant::now();
    let mut c = Client::new(MAC, None, timing(), 7, t0);
    let mut now = t0;
    let mut discover = sent(&c.poll(now)).remove(0).2;
    let addr = Ipv4Addr::new(10, 0, 0, 50);
    let mut waits = Vec::new();
    for _ in 0..8 {
        let r = sent(&c.handle(
            &reply(&discover, MessageType::Offer, addr, &full_opts(600)),
            now,
        ));
        let request = r[0].2.clone();
        let after = c.handle(&reply(&request, MessageType::Nak, addr, &[]), now);
        // Nothing goes out until the client's wakeup.
        let (wait, d) = match sent(&after).pop() {
            Some(d) => (Duration::ZERO, d),
            None => {
                let at = c.next_wakeup().unwrap();
                let wait = at - now;
                now = at;
                (wait, sent(&c.poll(now)).remove(0))
            }
        };
        waits.push(wait);
        assert_eq!(d.0, MessageType::Discover);
        discover = d.2;
    }
    let secs: Vec<u64> = waits.iter().map(|w| w.as_secs()).collect();
    assert_eq!(secs, [0, 4, 8, 16, 32, 64, 64, 64], "{waits:?}");
}

/// Option overload (52) asks the client to read options from the `sname`
/// and `file` fields; this client does not, so a server cannot smuggle
/// options past it there.
#[test]
fn overloaded_fields_are_not_read_as_options() {
    use dhcproto::{Decodable, Decoder, Encodable, Encoder};
    let req = Message::default();
    let mut m = reply(
        &req,
        MessageType::Ack,
        Ipv4Addr::new(10, 0, 0, 50),
        &full_opts(600),
    );
    m.opts_mut().insert(DhcpOption::OptionOverload(3));
    // Option 6 (DNS 6.6.6.6) and an end, in both fields.
    let smuggled = [6u8, 4, 6, 6, 6, 6, 255];
    m.set_sname(&smuggled);
    m.set_fname(&smuggled);
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    let back = Message::decode(&mut Decoder::new(&buf)).unwrap();
    let l = parse_lease(&back, None).unwrap();
    assert!(!l.dns.contains(&Ipv4Addr::new(6, 6, 6, 6)), "{:?}", l.dns);
}

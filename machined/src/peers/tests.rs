use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

fn small() -> Arc<Peers> {
    Peers::new(PeerLimits {
        connections: 3,
        handshakes: 2,
        unauthenticated_per_second: 10.0,
        unauthenticated_burst: 5.0,
        tracked_peers: 2,
    })
}

#[test]
fn a_peer_at_its_caps_does_not_touch_another_peers_share() {
    let peers = small();
    let now = Instant::now();
    let a1 = peers.admit(ip(1), now).unwrap();
    let a2 = peers.admit(ip(1), now).unwrap();
    let a3 = peers.admit(ip(1), now).unwrap();
    assert_eq!(
        peers.admit(ip(1), now).unwrap_err(),
        Refusal::TooManyConnections
    );
    // Two handshakes at a time for the peer, whichever connection asks.
    let h1 = a1.handshake_slots().try_acquire_owned().unwrap();
    let _h2 = a2.handshake_slots().try_acquire_owned().unwrap();
    assert!(
        a3.handshake_slots().try_acquire_owned().is_err(),
        "the third waits"
    );
    drop(h1);
    assert!(a3.handshake_slots().try_acquire_owned().is_ok());
    // Another peer still gets its full share.
    let b = peers.admit(ip(2), now).unwrap();
    assert!(b.handshake_slots().try_acquire_owned().is_ok());
    drop(a3);
    assert!(
        peers.admit(ip(1), now).is_ok(),
        "a closed connection gives its slot back"
    );
}

#[test]
fn unauthenticated_requests_are_a_token_bucket_per_peer() {
    let peers = small();
    let t0 = Instant::now();
    let _a = peers.admit(ip(1), t0).unwrap();
    let _b = peers.admit(ip(2), t0).unwrap();
    let served = (0..100)
        .filter(|_| peers.allow_unauthenticated(ip(1), t0))
        .count();
    assert_eq!(served, 5, "the burst, then nothing");
    assert!(
        peers.allow_unauthenticated(ip(2), t0),
        "the other peer is unaffected"
    );
    let t1 = t0 + Duration::from_millis(300);
    let served = (0..100)
        .filter(|_| peers.allow_unauthenticated(ip(1), t1))
        .count();
    assert_eq!(served, 3, "10/s refills 3 in 300 ms");
}

#[test]
fn the_table_is_bounded_and_forgets_only_idle_peers() {
    let peers = small();
    let t0 = Instant::now();
    let a = peers.admit(ip(1), t0).unwrap();
    let b = peers.admit(ip(2), t0).unwrap();
    assert_eq!(peers.admit(ip(3), t0).unwrap_err(), Refusal::TooManyPeers);
    drop(a);
    assert!(peers.allow_unauthenticated(ip(2), t0));
    drop(b);
    // ip(1) is idle with a full bucket, ip(2) spent a token: only ip(1) goes.
    let _c = peers.admit(ip(3), t0).unwrap();
    assert_eq!(peers.tracked(), 2);
    // Once ip(2)'s bucket refills it can be forgotten too.
    let later = t0 + Duration::from_secs(1);
    let _d = peers.admit(ip(4), later).unwrap();
    assert_eq!(peers.tracked(), 2);
}

#[test]
fn an_ipv6_slash_64_is_one_peer_and_a_mapped_ipv4_address_is_its_ipv4_self() {
    let peers = small();
    let now = Instant::now();
    // Three addresses in one /64 share its three connections.
    let in_64 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
    let _held: Vec<_> = (1..=3)
        .map(|i| peers.admit(in_64(i), now).unwrap())
        .collect();
    assert_eq!(
        peers.admit(in_64(0xffff), now).unwrap_err(),
        Refusal::TooManyConnections
    );
    // The next /64 is someone else (the table holds two peers).
    let _other = peers
        .admit(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]), now)
        .unwrap();
    // 10.0.0.1 seen through the dual-stack listener is 10.0.0.1.
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(peer_key(mapped), ip(1));
    assert_eq!(
        peer_key(in_64(7)),
        IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, 0])
    );
}

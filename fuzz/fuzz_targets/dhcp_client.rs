//! DHCP replies fed to machined's DHCPv4 client state machine
//! (`machined::network::dhcp::Client`): no sockets and no clock, time is
//! whatever this target says.
//!
//! Input: a script of steps, each starting with an opcode byte:
//! - `0 S S` (op % 4 == 0): advance the clock by the big-endian u16 `SS`
//!   times 16 s and poll;
//! - `1 L L BYTES` (op % 4 == 1): a datagram of `LL` bytes arrives on port
//!   68 and is decoded as machined's receive loop does
//!   (`dhcp::wire::decode_reply`); with op bit 2 set
//!   it is aimed at the client (opcode BOOTREPLY, this MAC, the xid of the
//!   client's last message), else delivered as it is;
//! - op % 4 == 2: the operator asks for a renewal;
//! - op % 4 == 3 with op ≥ 0x80: release (the client stops).
//!
//! Properties, after every step:
//! - nothing panics;
//! - every lease the client installs holds to `dhcp::limits`: a unicast
//!   address with a prefix no wider than `MIN_PREFIX`, at least
//!   `MIN_LEASE_SECS`, T1 ≤ T2 ≤ lease, at most `MAX_ROUTERS` unicast
//!   on-link routers, `MAX_DNS` unicast DNS servers and `MAX_SEARCH` search
//!   domains, domain, host and search names that are DNS names, an MTU of
//!   at least 576, and refusal notes without control characters;
//! - the client removes only the lease it holds, and the lease it reports
//!   is the one it last installed;
//! - polled when it says it is due, it stops being due (the driver never
//!   spins);
//! - every message it sends is a BOOTREQUEST from its MAC that encodes.
#![no_main]

use basalt_api::config::dns_name;
use dhcproto::v4::Opcode;
use dhcproto::{Encodable, Encoder};
use libfuzzer_sys::fuzz_target;
use machined::network::dhcp::{Action, Client, INFINITE, Lease, Phase, Timing, limits, wire};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

struct Harness {
    client: Client,
    now: Instant,
    held: Option<Lease>,
    last_xid: Option<u32>,
}

fn check_lease(l: &Lease) {
    assert!(limits::unicast(l.address), "{l:?}");
    assert!((limits::MIN_PREFIX..=32).contains(&l.prefix_len), "{l:?}");
    let cidr = l.cidr().expect("address and prefix form a CIDR");
    assert!(l.lease_secs >= limits::MIN_LEASE_SECS, "{l:?}");
    if l.lease_secs == INFINITE {
        assert_eq!((l.t1_secs, l.t2_secs), (INFINITE, INFINITE), "{l:?}");
    } else {
        assert!(l.t1_secs <= l.t2_secs && l.t2_secs <= l.lease_secs, "{l:?}");
    }
    assert!(l.routers.len() <= limits::MAX_ROUTERS, "{l:?}");
    for r in &l.routers {
        assert!(limits::unicast(*r), "{l:?}");
        assert!(cidr.0.contains(&IpAddr::V4(*r)), "off-link router: {l:?}");
    }
    assert!(l.dns.len() <= limits::MAX_DNS, "{l:?}");
    assert!(l.dns.iter().all(|a| limits::unicast(*a)), "{l:?}");
    assert!(l.search.len() <= limits::MAX_SEARCH, "{l:?}");
    let names = l.search.iter().chain(&l.domain_name).chain(&l.hostname);
    for n in names {
        assert!(dns_name(n).is_ok() && !n.ends_with('.'), "{n:?} in {l:?}");
    }
    assert!(l.mtu.is_none_or(|m| m >= 576), "{l:?}");
    for note in &l.refused {
        assert!(!note.chars().any(char::is_control), "{note:?}");
    }
}

impl Harness {
    fn actions(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { msg, .. } => {
                    assert_eq!(msg.opcode(), Opcode::BootRequest);
                    assert_eq!(msg.chaddr().get(..6), Some(&MAC[..]));
                    let mut buf = Vec::new();
                    msg.encode(&mut Encoder::new(&mut buf))
                        .expect("our message encodes");
                    self.last_xid = Some(msg.xid());
                }
                Action::Bind(lease) => {
                    check_lease(&lease);
                    self.held = Some(lease);
                }
                Action::Unbind(lease) => {
                    assert_eq!(self.held.as_ref(), Some(&lease), "removed a lease not held");
                    self.held = None;
                }
            }
        }
        assert_eq!(self.client.lease(), self.held.as_ref());
        if self.held.is_some() {
            let phase = self.client.phase();
            assert!(
                matches!(phase, Phase::Bound | Phase::Renewing | Phase::Rebinding),
                "{phase:?} with a lease"
            );
        }
    }

    /// Poll while the client says it is due, as the link's driver does: a
    /// client that stays due after a few polls would spin the driver.
    fn settle(&mut self) {
        for _ in 0..4 {
            match self.client.next_wakeup() {
                Some(at) if at <= self.now => {
                    let actions = self.client.poll(self.now);
                    self.actions(actions);
                }
                _ => return,
            }
        }
        panic!("still due after four polls: {:?}", self.client.phase());
    }

    fn reply(&mut self, bytes: &[u8], aimed: bool) {
        let Ok(mut msg) = wire::decode_reply(bytes) else {
            return;
        };
        if aimed {
            msg.set_opcode(Opcode::BootReply).set_chaddr(&MAC);
            if let Some(xid) = self.last_xid {
                msg.set_xid(xid);
            }
        }
        let actions = self.client.handle(&msg, self.now);
        self.actions(actions);
    }
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Some(head)
}

fn u16_at(data: &mut &[u8]) -> Option<u16> {
    take(data, 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let start = Instant::now();
    let mut h = Harness {
        client: Client::new(MAC, Some("node-1".into()), Timing::default(), 42, start),
        now: start,
        held: None,
        last_xid: None,
    };
    let first = h.client.poll(start);
    h.actions(first);
    while let Some(&[op]) = take(&mut data, 1) {
        match op % 4 {
            0 => {
                let Some(secs) = u16_at(&mut data) else { break };
                h.now += Duration::from_secs(u64::from(secs) * 16);
                let actions = h.client.poll(h.now);
                h.actions(actions);
            }
            1 => {
                let Some(len) = u16_at(&mut data) else { break };
                let len = usize::from(len).min(data.len());
                let Some(bytes) = take(&mut data, len) else {
                    break;
                };
                h.reply(bytes, op & 4 != 0);
            }
            2 => {
                let actions = h.client.renew_now(h.now);
                h.actions(actions);
            }
            _ if op >= 0x80 => {
                let actions = h.client.release(h.now);
                h.actions(actions);
                assert!(h.held.is_none(), "release keeps no lease");
                assert_eq!(h.client.phase(), Phase::Stopped);
            }
            _ => {}
        }
        h.settle();
    }
});

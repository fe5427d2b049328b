//! A DHCPv4 client (RFC 2131) as a pure state machine: no sockets, no clock.
//!
//! The caller feeds it the current time ([`Client::poll`]) and every reply
//! that arrives ([`Client::handle`]), and carries out the [`Action`]s it
//! returns: send a message, install a lease, remove a lease. It sleeps until
//! [`Client::next_wakeup`]. Time is injected, so the retransmit schedule and
//! the T1/T2/expiry transitions are tested without waiting.
//!
//! States: INIT → SELECTING (DISCOVER, collect the first OFFER) → REQUESTING
//! (broadcast REQUEST for it) → BOUND (ACK) → RENEWING at T1 (REQUEST
//! unicast to the server) → REBINDING at T2 (REQUEST broadcast) → back to
//! INIT when the lease expires. A NAK anywhere drops the lease and restarts.
//! [`Client::release`] sends RELEASE and stops.

pub mod limits;
pub mod wire;

use super::netlink::v4_cidr;
use basalt_api::config::Cidr;
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Retransmission parameters. The defaults are RFC 2131's: 4 s doubling to
/// 64 s with ±1 s of jitter; four REQUESTs before starting over; while
/// renewing or rebinding, retry after half the remaining time, at least 60 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial: Duration,
    pub max: Duration,
    pub jitter: Duration,
    pub request_attempts: u32,
    pub renew_min: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(4),
            max: Duration::from_secs(64),
            jitter: Duration::from_secs(1),
            request_attempts: 4,
            renew_min: Duration::from_secs(60),
        }
    }
}

impl Timing {
    /// The delay before retransmission number `attempt + 1`, without jitter:
    /// `initial · 2^attempt`, capped at `max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Lease time that never expires (RFC 2132 §9.2).
pub const INFINITE: u32 = u32::MAX;

/// What a server granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// The server identifier (option 54): where renewals and RELEASE go.
    pub server: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain_name: Option<String>,
    /// Option 119 (domain search), without trailing dots.
    pub search: Vec<String>,
    /// Option 12: the name the server suggests for this host.
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    /// Seconds; [`INFINITE`] never expires.
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
    /// What the server sent that was not taken, and why ([`limits`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

impl Lease {
    /// The address with its prefix, as it is installed on the link.
    pub fn cidr(&self) -> Option<Cidr> {
        v4_cidr(self.address, self.prefix_len)
    }

    /// T1, T2 and expiry as instants, counting from `start`; `None` for an
    /// infinite lease.
    fn deadlines(&self, start: Instant) -> Option<(Instant, Instant, Instant)> {
        if self.lease_secs == INFINITE {
            return None;
        }
        let at = |s: u32| start.checked_add(Duration::from_secs(u64::from(s)));
        Some((at(self.t1_secs)?, at(self.t2_secs)?, at(self.lease_secs)?))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("no address offered (yiaddr is 0.0.0.0)")]
    NoAddress,
    #[error("address {0} offered: not a unicast address")]
    NotUnicast(Ipv4Addr),
    #[error("no server identifier (option 54)")]
    NoServerId,
    #[error("no lease time (option 51)")]
    NoLeaseTime,
    #[error("subnet mask {0} is not contiguous")]
    BadMask(Ipv4Addr),
}

/// Read a lease from an OFFER or ACK. Missing options fall back as RFC 2131
/// and common clients do: no subnet mask → the classful prefix; no T1/T2 →
/// 50 % / 87.5 % of the lease (also when they are out of order); no server
/// identifier → `fallback_server` (the server of the OFFER being requested).
/// The address and the lease time are required. Values are held to
/// [`limits`]: what breaks them is dropped (and listed in `refused`), a
/// lease shorter than [`limits::MIN_LEASE_SECS`] is lengthened, a prefix
/// wider than [`limits::MIN_PREFIX`] is replaced by the classful one.
pub fn parse_lease(msg: &Message, fallback_server: Option<Ipv4Addr>) -> Result<Lease, LeaseError> {
    let address = msg.yiaddr();
    if address.is_unspecified() {
        return Err(LeaseError::NoAddress);
    }
    if !limits::unicast(address) {
        return Err(LeaseError::NotUnicast(address));
    }
    let mut refused = Vec::new();
    let opts = msg.opts();
    let server = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => *s,
        _ => fallback_server.ok_or(LeaseError::NoServerId)?,
    };
    let mut lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(t)) => *t,
        _ => return Err(LeaseError::NoLeaseTime),
    };
    if lease_secs < limits::MIN_LEASE_SECS {
        refused.push(format!(
            "lease time {lease_secs} s: raised to {} s",
            limits::MIN_LEASE_SECS
        ));
        lease_secs = limits::MIN_LEASE_SECS;
    }
    let mut prefix_len = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(m)) => mask_prefix(*m).ok_or(LeaseError::BadMask(*m))?,
        _ => classful_prefix(address),
    };
    if prefix_len < limits::MIN_PREFIX {
        let classful = classful_prefix(address);
        refused.push(format!(
            "subnet mask /{prefix_len}: wider than /{}, the classful /{classful} used",
            limits::MIN_PREFIX
        ));
        prefix_len = classful;
    }
    let (t1, t2) = renewal_times(opts, lease_secs);
    let list = |code| match opts.get(code) {
        Some(DhcpOption::Router(v)) | Some(DhcpOption::DomainNameServer(v)) => v.clone(),
        _ => Vec::new(),
    };
    let mut text = |code, what| match opts.get(code) {
        Some(DhcpOption::DomainName(s)) | Some(DhcpOption::Hostname(s)) => {
            limits::dns_name(what, s, &mut refused)
        }
        _ => None,
    };
    let domain_name = text(OptionCode::DomainName, "domain name");
    let hostname = text(OptionCode::Hostname, "host name");
    let search = match opts.get(OptionCode::DomainSearch) {
        Some(DhcpOption::DomainSearch(names)) => names
            .iter()
            .filter_map(|n| limits::dns_name("search domain", &n.to_ascii(), &mut refused))
            .collect(),
        _ => Vec::new(),
    };
    let search = limits::capped("search domains", search, limits::MAX_SEARCH, &mut refused);
    let routers = limits::unicast_only("router", list(OptionCode::Router), &mut refused);
    let routers = limits::on_link(routers, v4_cidr(address, prefix_len), &mut refused);
    let routers = limits::capped("routers", routers, limits::MAX_ROUTERS, &mut refused);
    let dns = limits::unicast_only(
        "DNS server",
        list(OptionCode::DomainNameServer),
        &mut refused,
    );
    let dns = limits::capped("DNS servers", dns, limits::MAX_DNS, &mut refused);
    let mtu = match opts.get(OptionCode::InterfaceMtu) {
        Some(DhcpOption::InterfaceMtu(m)) if *m >= 576 => Some(*m),
        _ => None,
    };
    Ok(Lease {
        address,
        prefix_len,
        server,
        routers,
        dns,
        domain_name,
        search,
        hostname,
        mtu,
        lease_secs,
        t1_secs: t1,
        t2_secs: t2,
        refused,
    })
}

/// T1 and T2: the server's when they are in order and inside the lease,
/// else 50 % and 87.5 % of it; both infinite for an infinite lease.
fn renewal_times(opts: &dhcproto::v4::DhcpOptions, lease_secs: u32) -> (u32, u32) {
    if lease_secs == INFINITE {
        return (INFINITE, INFINITE);
    }
    let (mut t1, mut t2) = (lease_secs / 2, (u64::from(lease_secs) * 7 / 8) as u32);
    if let Some(DhcpOption::Rebinding(x)) = opts.get(OptionCode::Rebinding)
        && *x < lease_secs
    {
        t2 = *x;
    }
    if let Some(DhcpOption::Renewal(x)) = opts.get(OptionCode::Renewal)
        && *x < t2
    {
        t1 = *x;
    }
    (t1.min(t2), t2)
}

fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let n = m.leading_ones();
    let expect = if n == 0 { 0 } else { u32::MAX << (32 - n) };
    (m == expect).then_some(n as u8)
}

fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// 255.255.255.255:67 out of the link.
    Broadcast,
    /// The server's address, port 67.
    Server(Ipv4Addr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send {
        msg: Box<Message>,
        dest: Dest,
    },
    /// Install this lease: address, routes, DNS. It may replace a lease
    /// installed before (a renewal, possibly with changed options).
    Bind(Lease),
    /// Remove this lease from the link (expired, NAKed or released).
    Unbind(Lease),
}

/// The client's state as shown in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Init,
    Selecting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
    Stopped,
}

#[derive(Debug, Clone)]
struct Exchange {
    xid: u32,
    started: Instant,
    attempt: u32,
    next: Instant,
    /// When the last REQUEST went out: a lease counts from there.
    sent: Instant,
}

#[derive(Debug, Clone)]
enum State {
    Init {
        at: Instant,
    },
    Selecting(Exchange),
    Requesting {
        ex: Exchange,
        offer: Lease,
    },
    Bound {
        lease: Lease,
        at: Instant,
    },
    Renewing {
        ex: Exchange,
        lease: Lease,
        at: Instant,
    },
    Rebinding {
        ex: Exchange,
        lease: Lease,
        at: Instant,
    },
    Stopped,
}

/// The DHCPv4 client of one link.
#[derive(Debug, Clone)]
pub struct Client {
    mac: [u8; 6],
    hostname: Option<String>,
    timing: Timing,
    rng: u64,
    state: State,
    /// NAKs since the last lease: a server that NAKs every REQUEST (a NAK
    /// storm) is answered with DISCOVERs on the retransmit backoff, not at
    /// the rate it can send.
    naks: u32,
}

const REQUESTED: &[OptionCode] = &[
    OptionCode::SubnetMask,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::Hostname,
    OptionCode::DomainName,
    OptionCode::InterfaceMtu,
    OptionCode::AddressLeaseTime,
    OptionCode::Renewal,
    OptionCode::Rebinding,
    OptionCode::DomainSearch,
];

impl Client {
    /// A client that sends its first DISCOVER at `now`. `seed` drives the
    /// transaction ids and jitter (pass real randomness on a node).
    pub fn new(
        mac: [u8; 6],
        hostname: Option<String>,
        timing: Timing,
        seed: u64,
        now: Instant,
    ) -> Self {
        Self {
            mac,
            hostname,
            timing,
            rng: seed | 1,
            state: State::Init { at: now },
            naks: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Init { .. } => Phase::Init,
            State::Selecting(_) => Phase::Selecting,
            State::Requesting { .. } => Phase::Requesting,
            State::Bound { .. } => Phase::Bound,
            State::Renewing { .. } => Phase::Renewing,
            State::Rebinding { .. } => Phase::Rebinding,
            State::Stopped => Phase::Stopped,
        }
    }

    /// The lease held (bound, renewing or rebinding).
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            State::Bound { lease, .. }
            | State::Renewing { lease, .. }
            | State::Rebinding { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// When [`Client::poll`] next has something to do; `None` when stopped
    /// or holding an infinite lease.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match &self.state {
            State::Init { at } => Some(*at),
            State::Selecting(ex) | State::Requesting { ex, .. } => Some(ex.next),
            State::Bound { lease, at } => lease.deadlines(*at).map(|(t1, _, _)| t1),
            State::Renewing { ex, lease, at } => {
                lease.deadlines(*at).map(|(_, t2, _)| ex.next.min(t2))
            }
            State::Rebinding { ex, lease, at } => {
                lease.deadlines(*at).map(|(_, _, exp)| ex.next.min(exp))
            }
            State::Stopped => None,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: plenty for xids and jitter.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn delay(&mut self, attempt: u32) -> Duration {
        let base = self.timing.backoff(attempt);
        let j = self.timing.jitter.as_millis() as u64;
        if j == 0 {
            return base;
        }
        let r = self.random() % (2 * j + 1);
        base.saturating_add(Duration::from_millis(r))
            .saturating_sub(Duration::from_millis(j))
    }

    fn exchange(&mut self, now: Instant) -> Exchange {
        let xid = self.random() as u32;
        let next = now + self.delay(0);
        Exchange {
            xid,
            started: now,
            attempt: 0,
            next,
            sent: now,
        }
    }

    fn retry(&mut self, ex: &mut Exchange, now: Instant) {
        ex.attempt += 1;
        ex.sent = now;
        ex.next = now + self.delay(ex.attempt);
    }

    /// Retry after half the time left before `deadline`, at least
    /// `renew_min`, never past the deadline.
    fn renew_retry(&self, ex: &mut Exchange, now: Instant, deadline: Instant) {
        ex.attempt += 1;
        ex.sent = now;
        let half = deadline.saturating_duration_since(now) / 2;
        ex.next = (now + half.max(self.timing.renew_min)).min(deadline);
    }

    /// Advance timers: (re)transmit, start renewing/rebinding, expire.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        // Bound → expired → INIT → SELECTING is the longest chain.
        for _ in 0..4 {
            if !self.step(now, &mut out) {
                break;
            }
        }
        out
    }

    /// One transition; true when the new state should be looked at again.
    fn step(&mut self, now: Instant, out: &mut Vec<Action>) -> bool {
        let state = std::mem::replace(&mut self.state, State::Stopped);
        self.state = match state {
            State::Init { at } if now >= at => {
                let ex = self.exchange(now);
                out.push(self.discover(&ex, now));
                State::Selecting(ex)
            }
            State::Selecting(mut ex) if now >= ex.next => {
                self.retry(&mut ex, now);
                out.push(self.discover(&ex, now));
                State::Selecting(ex)
            }
            State::Requesting { mut ex, offer } if now >= ex.next => {
                if ex.attempt + 1 >= self.timing.request_attempts {
                    tracing::info!(server = %offer.server, "dhcp: no ACK for the REQUEST; starting over");
                    self.state = State::Init { at: now };
                    return true;
                }
                self.retry(&mut ex, now);
                out.push(self.request_selecting(&ex, &offer, now));
                State::Requesting { ex, offer }
            }
            State::Bound { lease, at } => match lease.deadlines(at) {
                Some((_, _, exp)) if now >= exp => return self.expire(lease, now, out),
                Some((_, t2, exp)) if now >= t2 => {
                    let mut ex = self.exchange(now);
                    self.renew_retry(&mut ex, now, exp);
                    ex.attempt = 0;
                    out.push(self.request_bound(&ex, &lease, Dest::Broadcast, now));
                    State::Rebinding { ex, lease, at }
                }
                Some((t1, t2, _)) if now >= t1 => {
                    let mut ex = self.exchange(now);
                    self.renew_retry(&mut ex, now, t2);
                    ex.attempt = 0;
                    out.push(self.request_bound(&ex, &lease, Dest::Server(lease.server), now));
                    State::Renewing { ex, lease, at }
                }
                _ => State::Bound { lease, at },
            },
            State::Renewing { mut ex, lease, at } => match lease.deadlines(at) {
                Some((_, _, exp)) if now >= exp => return self.expire(lease, now, out),
                Some((_, t2, _)) if now >= t2 => {
                    // T2: give up on the server; ask anyone.
                    self.state = State::Bound { lease, at };
                    return true;
                }
                Some((_, t2, _)) if now >= ex.next => {
                    self.renew_retry(&mut ex, now, t2);
                    out.push(self.request_bound(&ex, &lease, Dest::Server(lease.server), now));
                    State::Renewing { ex, lease, at }
                }
                _ => State::Renewing { ex, lease, at },
            },
            State::Rebinding { mut ex, lease, at } => match lease.deadlines(at) {
                Some((_, _, exp)) if now >= exp => return self.expire(lease, now, out),
                Some((_, _, exp)) if now >= ex.next => {
                    self.renew_retry(&mut ex, now, exp);
                    out.push(self.request_bound(&ex, &lease, Dest::Broadcast, now));
                    State::Rebinding { ex, lease, at }
                }
                _ => State::Rebinding { ex, lease, at },
            },
            other => other,
        };
        false
    }

    /// When to start over after a NAK: at once after the first since the
    /// last lease, then on the retransmit backoff.
    fn after_nak(&mut self, now: Instant) -> Instant {
        let wait = match self.naks {
            0 => Duration::ZERO,
            n => self.delay(n - 1),
        };
        self.naks = self.naks.saturating_add(1);
        now + wait
    }

    fn expire(&mut self, lease: Lease, now: Instant, out: &mut Vec<Action>) -> bool {
        tracing::warn!(address = %lease.address, "dhcp: lease expired");
        out.push(Action::Unbind(lease));
        self.state = State::Init { at: now };
        true
    }

    fn xid(&self) -> Option<u32> {
        match &self.state {
            State::Selecting(ex)
            | State::Requesting { ex, .. }
            | State::Renewing { ex, .. }
            | State::Rebinding { ex, .. } => Some(ex.xid),
            _ => None,
        }
    }

    /// Feed a message that arrived on the link's port 68.
    pub fn handle(&mut self, msg: &Message, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        // `Message::chaddr` slices chaddr's 16 bytes by the hardware address
        // length the sender wrote: past 16 it would panic.
        if msg.opcode() != Opcode::BootReply
            || usize::from(msg.hlen()) > 16
            || msg.chaddr().get(..6) != Some(&self.mac[..])
        {
            return out;
        }
        if self.xid() != Some(msg.xid()) {
            return out;
        }
        let Some(kind) = msg.opts().msg_type() else {
            return out;
        };
        let server_id = match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
            _ => None,
        };
        let state = std::mem::replace(&mut self.state, State::Stopped);
        self.state = match (state, kind) {
            (State::Selecting(ex), MessageType::Offer) => match parse_lease(msg, None) {
                Ok(offer) => {
                    tracing::info!(address = %offer.address, server = %offer.server, "dhcp: OFFER");
                    let next = now + self.delay(0);
                    let ex = Exchange {
                        attempt: 0,
                        next,
                        sent: now,
                        ..ex
                    };
                    out.push(self.request_selecting(&ex, &offer, now));
                    State::Requesting { ex, offer }
                }
                Err(e) => {
                    tracing::info!("dhcp: ignoring an OFFER: {e}");
                    State::Selecting(ex)
                }
            },
            (State::Requesting { ex, offer }, MessageType::Ack)
                if server_id.is_none_or(|s| s == offer.server) =>
            {
                match parse_lease(msg, Some(offer.server)) {
                    Ok(lease) => {
                        self.naks = 0;
                        out.push(Action::Bind(lease.clone()));
                        State::Bound { lease, at: ex.sent }
                    }
                    Err(e) => {
                        tracing::info!("dhcp: ignoring an ACK: {e}");
                        State::Requesting { ex, offer }
                    }
                }
            }
            (
                State::Renewing { ex, lease: old, at } | State::Rebinding { ex, lease: old, at },
                MessageType::Ack,
            ) => match parse_lease(msg, Some(old.server)) {
                Ok(lease) => {
                    if lease.address != old.address {
                        out.push(Action::Unbind(old));
                    }
                    self.naks = 0;
                    out.push(Action::Bind(lease.clone()));
                    State::Bound { lease, at: ex.sent }
                }
                Err(e) => {
                    tracing::info!("dhcp: ignoring an ACK: {e}");
                    State::Bound { lease: old, at }
                }
            },
            (State::Requesting { offer, .. }, MessageType::Nak)
                if server_id.is_none_or(|s| s == offer.server) =>
            {
                let at = self.after_nak(now);
                tracing::info!(server = %offer.server, naks = self.naks, "dhcp: NAK; starting over");
                State::Init { at }
            }
            (State::Renewing { lease, .. } | State::Rebinding { lease, .. }, MessageType::Nak) => {
                let at = self.after_nak(now);
                tracing::info!(address = %lease.address, naks = self.naks, "dhcp: NAK; dropping the lease and starting over");
                out.push(Action::Unbind(lease));
                State::Init { at }
            }
            (other, _) => other,
        };
        if matches!(self.state, State::Init { .. }) {
            out.extend(self.poll(now));
        }
        out
    }

    /// Start renewing now instead of at T1 (an operator's request, or a test).
    pub fn renew_now(&mut self, now: Instant) -> Vec<Action> {
        let state = std::mem::replace(&mut self.state, State::Stopped);
        let mut out = Vec::new();
        self.state = match state {
            State::Bound { lease, at } | State::Renewing { lease, at, .. } => {
                let mut ex = self.exchange(now);
                let deadline = lease
                    .deadlines(at)
                    .map_or(now + self.timing.max, |(_, t2, _)| t2);
                self.renew_retry(&mut ex, now, deadline.max(now + self.timing.initial));
                ex.attempt = 0;
                out.push(self.request_bound(&ex, &lease, Dest::Server(lease.server), now));
                State::Renewing { ex, lease, at }
            }
            other => other,
        };
        out
    }

    /// Give the lease back (RELEASE to its server) and stop.
    pub fn release(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(lease) = self.lease().cloned() {
            let xid = self.random() as u32;
            let mut m = self.message(MessageType::Release, xid, 0, lease.address, false);
            m.opts_mut()
                .insert(DhcpOption::ServerIdentifier(lease.server));
            out.push(Action::Send {
                msg: Box::new(m),
                dest: Dest::Server(lease.server),
            });
            out.push(Action::Unbind(lease));
        }
        let _ = now;
        self.state = State::Stopped;
        out
    }

    fn message(
        &self,
        kind: MessageType,
        xid: u32,
        secs: u16,
        ciaddr: Ipv4Addr,
        broadcast: bool,
    ) -> Message {
        let u = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(xid, ciaddr, u, u, u, &self.mac);
        m.set_opcode(Opcode::BootRequest).set_secs(secs);
        if broadcast {
            // No address yet: the kernel would drop a unicast reply.
            m.set_flags(Flags::default().set_broadcast());
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        let mut client_id = vec![1u8];
        client_id.extend_from_slice(&self.mac);
        o.insert(DhcpOption::ClientIdentifier(client_id));
        if kind != MessageType::Release {
            o.insert(DhcpOption::ParameterRequestList(REQUESTED.to_vec()));
            o.insert(DhcpOption::MaxMessageSize(1500));
            if let Some(h) = &self.hostname {
                o.insert(DhcpOption::Hostname(h.clone()));
            }
        }
        m
    }

    fn secs(ex: &Exchange, now: Instant) -> u16 {
        now.saturating_duration_since(ex.started)
            .as_secs()
            .min(u64::from(u16::MAX)) as u16
    }

    fn discover(&self, ex: &Exchange, now: Instant) -> Action {
        let m = self.message(
            MessageType::Discover,
            ex.xid,
            Self::secs(ex, now),
            Ipv4Addr::UNSPECIFIED,
            true,
        );
        Action::Send {
            msg: Box::new(m),
            dest: Dest::Broadcast,
        }
    }

    fn request_selecting(&self, ex: &Exchange, offer: &Lease, now: Instant) -> Action {
        let mut m = self.message(
            MessageType::Request,
            ex.xid,
            Self::secs(ex, now),
            Ipv4Addr::UNSPECIFIED,
            true,
        );
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(offer.address));
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(offer.server));
        Action::Send {
            msg: Box::new(m),
            dest: Dest::Broadcast,
        }
    }

    /// RENEWING/REBINDING REQUEST: ciaddr set, no server id or requested IP.
    fn request_bound(&self, ex: &Exchange, lease: &Lease, dest: Dest, now: Instant) -> Action {
        let m = self.message(
            MessageType::Request,
            ex.xid,
            Self::secs(ex, now),
            lease.address,
            false,
        );
        Action::Send {
            msg: Box::new(m),
            dest,
        }
    }
}

#[cfg(test)]
mod tests;

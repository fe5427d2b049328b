//! What one network peer (an IP address) may hold of the API at a time.
//!
//! The API is reachable before anyone has configured the node, so a stranger
//! must not be able to use up what an admin needs: each peer gets a share of
//! the connection slots (beyond it, new connections are closed at once), a
//! few TLS handshakes in flight (the expensive part of a connection before
//! anything is authenticated; more wait their turn), and a token bucket for
//! the requests it may make without a verified signature (`GET /v1/nonce`,
//! and requests whose signature fails). Everything here is bookkeeping on an
//! explicit clock, so it is tested without sockets.
//!
//! A peer is an IPv4 address, or an IPv6 /64: one host (or one customer of
//! a provider) is normally given a whole /64 and can pick any address in
//! it, so counting IPv6 addresses one by one would give a stranger 2⁶⁴
//! shares. IPv4 peers reaching the dual-stack listener as `::ffff:a.b.c.d`
//! count as the IPv4 address they are.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, PartialEq)]
pub struct PeerLimits {
    /// Open connections per peer.
    pub connections: usize,
    /// TLS handshakes in flight per peer; more connections wait for one.
    pub handshakes: usize,
    /// Unauthenticated requests per second, sustained.
    pub unauthenticated_per_second: f64,
    /// …and in a burst.
    pub unauthenticated_burst: f64,
    /// Peers tracked at once; beyond that, new peers wait for idle ones to
    /// be forgotten.
    pub tracked_peers: usize,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            // Half of the node's connection slots: one peer (an operator's
            // NAT, a CI runner with a connection pool) can be very busy and
            // still leave the other half to everyone else.
            connections: 512,
            handshakes: 16,
            // Generous for operators and scripts (basaltctl takes one nonce
            // per call), small next to what a flood client can send.
            unauthenticated_per_second: 100.0,
            unauthenticated_burst: 256.0,
            tracked_peers: 4096,
        }
    }
}

/// The share `ip` counts against (see the module docs).
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::MAX >> 64);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[derive(Debug)]
struct Peer {
    connections: usize,
    handshakes: Arc<Semaphore>,
    tokens: f64,
    refilled: Instant,
}

/// Why a peer was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyConnections,
    TooManyPeers,
}

#[derive(Debug)]
pub struct Peers {
    limits: PeerLimits,
    table: Mutex<HashMap<IpAddr, Peer>>,
}

impl Peers {
    pub fn new(limits: PeerLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            table: Mutex::default(),
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<IpAddr, Peer>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection from `ip`. Refused when the peer holds its share of
    /// connections, or when too many peers are tracked.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Admission, Refusal> {
        let ip = peer_key(ip);
        let mut table = self.table();
        if !table.contains_key(&ip) && table.len() >= self.limits.tracked_peers {
            self.forget_idle(&mut table, now);
            if table.len() >= self.limits.tracked_peers {
                return Err(Refusal::TooManyPeers);
            }
        }
        let peer = table.entry(ip).or_insert_with(|| Peer {
            connections: 0,
            handshakes: Arc::new(Semaphore::new(self.limits.handshakes)),
            tokens: self.limits.unauthenticated_burst,
            refilled: now,
        });
        if peer.connections >= self.limits.connections {
            return Err(Refusal::TooManyConnections);
        }
        peer.connections += 1;
        Ok(Admission {
            peers: Arc::clone(self),
            ip,
            handshakes: Arc::clone(&peer.handshakes),
        })
    }

    /// Take one unauthenticated request from `ip`'s bucket; false when empty.
    pub fn allow_unauthenticated(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = peer_key(ip);
        let mut table = self.table();
        let Some(peer) = table.get_mut(&ip) else {
            // Requests only arrive on admitted connections, which keep
            // their peer's entry; refuse if that ever stops being true.
            return false;
        };
        self.refill(peer, now);
        if peer.tokens >= 1.0 {
            peer.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a peer's bucket holds another token.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.limits.unauthenticated_per_second.max(0.001))
    }

    fn refill(&self, peer: &mut Peer, now: Instant) {
        let elapsed = now.saturating_duration_since(peer.refilled).as_secs_f64();
        peer.tokens = (peer.tokens + elapsed * self.limits.unauthenticated_per_second)
            .min(self.limits.unauthenticated_burst);
        peer.refilled = now;
    }

    /// Drop peers with no connection whose bucket has refilled: they hold
    /// nothing that forgetting them would give back.
    fn forget_idle(&self, table: &mut HashMap<IpAddr, Peer>, now: Instant) {
        table.retain(|_, peer| {
            self.refill(peer, now);
            peer.connections > 0 || peer.tokens < self.limits.unauthenticated_burst
        });
    }

    /// Peers tracked now.
    pub fn tracked(&self) -> usize {
        self.table().len()
    }
}

/// A connection's claim on its peer's share; given back on drop.
#[derive(Debug)]
pub struct Admission {
    peers: Arc<Peers>,
    ip: IpAddr,
    handshakes: Arc<Semaphore>,
}

impl Admission {
    /// The peer's handshake slots: hold a permit while doing TLS.
    pub fn handshake_slots(&self) -> Arc<Semaphore> {
        Arc::clone(&self.handshakes)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut table = self.peers.table();
        if let Some(peer) = table.get_mut(&self.ip) {
            peer.connections = peer.connections.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests;

//! What a lease may carry. Every byte of a DHCP reply comes from whoever
//! answers on the link, so each value is checked to be what it claims to be
//! (a unicast address, a DNS name) and lists are capped before anything
//! downstream (netlink, resolv.conf, status) sees them. What is refused is
//! recorded on the lease ([`super::Lease::refused`]) and logged when the
//! lease is installed.

use basalt_api::config::Cidr;
use std::net::Ipv4Addr;

/// DNS servers kept from one lease (resolv.conf uses three in all).
pub const MAX_DNS: usize = 8;
/// Routers kept from one lease (the default route uses the first).
pub const MAX_ROUTERS: usize = 4;
/// Search domains kept from one lease (glibc before 2.26 read six).
pub const MAX_SEARCH: usize = 6;
/// The shortest lease honoured: a 0 s lease would have the client renew
/// in a tight loop.
pub const MIN_LEASE_SECS: u32 = 60;
/// The widest prefix accepted with a leased address: a mask of /0 would
/// put every destination on the link.
pub const MIN_PREFIX: u8 = 8;
/// How much of a refused value a log line shows.
const SHOWN: usize = 64;

/// `s` for a log line: escaped (no control character reaches a log) and cut.
pub fn shown(s: &str) -> String {
    let escaped: String = s.escape_debug().collect();
    match escaped.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}… ({} bytes)", &escaped[..at], s.len()),
        None => escaped,
    }
}

/// A text option that must be a DNS name (host name, domain name, a search
/// entry), without the trailing dot or NULs servers add.
pub fn dns_name(what: &str, raw: &str, refused: &mut Vec<String>) -> Option<String> {
    let s = raw.trim_end_matches(['\0', '.']);
    if s.is_empty() {
        return None;
    }
    match basalt_api::config::dns_name(s) {
        Ok(()) => Some(s.to_string()),
        Err(_) => {
            refused.push(format!("{what} \"{}\": not a DNS name", shown(s)));
            None
        }
    }
}

/// An address a host can be or talk to: not 0.0.0.0, loopback, multicast,
/// broadcast or reserved (240/4).
pub fn unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || a.is_broadcast()
        || a.octets()[0] >= 240)
}

/// The first `max` of `items`, saying how many were dropped.
pub fn capped<T>(what: &str, mut items: Vec<T>, max: usize, refused: &mut Vec<String>) -> Vec<T> {
    if items.len() > max {
        refused.push(format!(
            "{what}: {} offered, the first {max} kept",
            items.len()
        ));
        items.truncate(max);
    }
    items
}

/// Unicast addresses only.
pub fn unicast_only(what: &str, items: Vec<Ipv4Addr>, refused: &mut Vec<String>) -> Vec<Ipv4Addr> {
    items
        .into_iter()
        .filter(|a| {
            let ok = unicast(*a);
            if !ok {
                refused.push(format!("{what} {a}: not a unicast address"));
            }
            ok
        })
        .collect()
}

/// Routers the leased prefix reaches directly: a gateway off the link
/// cannot carry a route (the kernel refuses it, or it would need a route
/// of its own that nothing vouches for).
pub fn on_link(
    routers: Vec<Ipv4Addr>,
    lease: Option<Cidr>,
    refused: &mut Vec<String>,
) -> Vec<Ipv4Addr> {
    routers
        .into_iter()
        .filter(|r| {
            let ok = lease.is_some_and(|c| c.0.contains(&std::net::IpAddr::V4(*r)));
            if !ok {
                let net = lease.map_or("the lease".to_string(), |c| c.to_string());
                refused.push(format!("router {r}: outside {net} (off-link), not used"));
            }
            ok
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(shown("a\nb"), "a\\nb");
        let long = "x".repeat(300);
        assert_eq!(shown(&long), format!("{}… (300 bytes)", "x".repeat(64)));
    }

    #[test]
    fn names_must_be_dns_names() {
        let mut refused = Vec::new();
        assert_eq!(
            dns_name("hostname", "node-1.example.", &mut refused),
            Some("node-1.example".into())
        );
        for bad in [
            "a/b",
            "a..b",
            "x\nnameserver 6.6.6.6",
            "a b",
            &"l".repeat(300),
        ] {
            assert_eq!(dns_name("hostname", bad, &mut refused), None, "{bad:?}");
        }
        assert_eq!(refused.len(), 5, "{refused:?}");
        assert!(refused.iter().all(|r| !r.contains('\n')), "{refused:?}");
    }
}

//! Stand-in for the egress policy until `crate::egress` lands (another change writes it).
//!
//! Same shape as the real module: [`EgressPolicy::check`] and [`parse_host_literal`]. This
//! shim forbids what std can classify (loopback, private, link-local, unspecified,
//! multicast, broadcast, unique-local, IPv4-mapped forms of those) unless an allowlisted
//! prefix holds the address, and recognises only the spellings std parses. The engine uses
//! it through `Edge::egress` and `connect::parse_authority` only.

use std::net::IpAddr;

/// An address the policy forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forbidden;

/// Which target addresses a tunnel may reach.
#[derive(Debug, Clone, Default)]
pub(crate) struct EgressPolicy {
    allow: Vec<(IpAddr, u8)>,
}

impl EgressPolicy {
    /// A policy whose default denials are lifted for the `allow` prefixes (CIDR text).
    pub(crate) fn from_allowlist(allow: &[String]) -> Result<Self, String> {
        let allow = allow
            .iter()
            .map(|prefix| parse_prefix(prefix).ok_or_else(|| prefix.clone()))
            .collect::<Result<_, _>>()?;
        Ok(Self { allow })
    }

    /// `Ok` when a tunnel may go to `ip`.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Forbidden> {
        if self.allow.iter().any(|&(net, len)| in_prefix(ip, net, len)) {
            return Ok(());
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        let forbidden = match ip {
            IpAddr::V4(v4) => {
                v4.is_loopback()
                    || v4.is_private()
                    || v4.is_link_local()
                    || v4.is_unspecified()
                    || v4.is_multicast()
                    || v4.is_broadcast()
            }
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        if forbidden { Err(Forbidden) } else { Ok(()) }
    }
}

/// The IP address `host` spells, if it is an IP literal (`[v6]` brackets allowed).
pub(crate) fn parse_host_literal(host: &str) -> Option<IpAddr> {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    unbracketed.parse().ok()
}

fn parse_prefix(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = text.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn defaults_forbid_local_ranges_and_the_allowlist_lifts_them() {
        let policy = EgressPolicy::default();
        assert_eq!(policy.check(Ipv4Addr::LOCALHOST.into()), Err(Forbidden));
        assert_eq!(policy.check(Ipv6Addr::LOCALHOST.into()), Err(Forbidden));
        assert_eq!(
            policy.check("::ffff:10.1.2.3".parse().expect("ip")),
            Err(Forbidden)
        );
        assert_eq!(policy.check("192.0.2.1".parse().expect("ip")), Ok(()));
        let policy = EgressPolicy::from_allowlist(&["127.0.0.0/8".to_owned()]).expect("prefix");
        assert_eq!(policy.check(Ipv4Addr::LOCALHOST.into()), Ok(()));
        assert!(EgressPolicy::from_allowlist(&["127.0.0.0/33".to_owned()]).is_err());
    }

    #[test]
    fn literals_parse_with_or_without_brackets() {
        assert_eq!(
            parse_host_literal("[::1]"),
            Some(Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(
            parse_host_literal("127.0.0.1"),
            Some(Ipv4Addr::LOCALHOST.into())
        );
        assert_eq!(parse_host_literal("example.com"), None);
    }
}

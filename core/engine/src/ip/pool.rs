//! The edge's address pool: which client address belongs to which CONNECT-IP tunnel.
//!
//! The edge assigns each tunnel addresses from configured prefixes (RFC 9484 §4.7.1,
//! answering `ADDRESS_REQUEST`, §4.7.2) and must then tell, for every packet, whose
//! address it is. [`AddressPool`] keeps both directions of that map in one table, so that
//! an address is owned by at most one tunnel and the two maps never disagree.
//!
//! # Reserved addresses
//!
//! In each prefix the network address (offset 0), the first host address (offset 1: the
//! edge's own address there, the source of the ICMP errors it generates, see
//! [`AddressPool::gateway`]) and, for IPv4, the broadcast address (the last) are never
//! assigned. Small prefixes:
//!
//! - IPv4 `/31` (RFC 3021) and IPv6 `/127` (RFC 6164) are point-to-point links with no
//!   network or broadcast address: the first address is the gateway and the second is
//!   assignable.
//! - IPv4 `/30`: network, gateway, one assignable address, broadcast.
//! - `/32` and `/128` hold one address, too few for a gateway and a client: the address is
//!   assignable and the prefix has no gateway; [`AddressPool::gateway`] then falls back to
//!   a later prefix of the family, or `None`.
//!
//! A prefix that overlaps an earlier one (one contains the other) is ignored, so that every
//! address belongs to at most one prefix and the per-prefix bookkeeping stays exact.
//!
//! # Cost
//!
//! Assignment never scans a prefix: each prefix keeps a cursor that advances (wrapping)
//! past the last address it handed out, skipping addresses in use, and a count of its
//! addresses in use, so a free address is found within `in_use + 1` steps and a full
//! prefix is skipped at once. Handing out addresses in order rather than reusing the most
//! recently released one also keeps a released address out of use for as long as the
//! prefix allows, so packets still in flight to a closed tunnel do not reach its successor.
//!
//! The pool does not randomize addresses or remember clients: RFC 9484 §11 asks proxies to
//! avoid persistent per-client assignment, and a cursor shared by all clients gives none.

use crate::map::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::egress::IpNet;
use crate::types::TunnelId;

/// One configured prefix and its assignment state. Addresses are kept as `u128` bits (an
/// IPv4 address in the low 32 bits), so that both families share the arithmetic.
#[derive(Debug, Clone)]
struct Range {
    v6: bool,
    net: IpNet,
    /// The edge's own address in this prefix, if it has room for one.
    gateway: Option<IpAddr>,
    /// First and last assignable addresses (inclusive); `first <= last` always.
    first: u128,
    last: u128,
    /// The next address to try.
    cursor: u128,
    /// How many addresses of `first..=last` are in use.
    used: u128,
}

impl Range {
    fn new(net: IpNet) -> Self {
        let (v6, base, host_bits) = match net.addr() {
            IpAddr::V4(a) => (
                false,
                u128::from(a.to_bits()),
                32 - u32::from(net.prefix_len()),
            ),
            IpAddr::V6(a) => (true, a.to_bits(), 128 - u32::from(net.prefix_len())),
        };
        // Host bits below the prefix: all ones. 128 host bits (`::/0`) is every bit.
        let span = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
        let top = base | span;
        let (gateway, first, last) = match host_bits {
            // A single address: assignable, no gateway.
            0 => (None, base, base),
            // Point-to-point (RFC 3021, RFC 6164): gateway, then the client.
            1 => (Some(base), top, top),
            // Network, gateway, clients, and for IPv4 the broadcast address.
            _ => (Some(base + 1), base + 2, if v6 { top } else { top - 1 }),
        };
        Self {
            v6,
            net,
            gateway: gateway.map(|bits| from_bits(v6, bits)),
            first,
            last,
            cursor: first,
            used: 0,
        }
    }

    /// Whether `bits` is an assignable address of this prefix.
    fn holds(&self, bits: u128) -> bool {
        (self.first..=self.last).contains(&bits)
    }

    /// How many addresses are assignable (saturating: `::/0` holds 2^128 - 2).
    fn capacity(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// The address after `bits`, wrapping to `first`.
    fn next(&self, bits: u128) -> u128 {
        if bits >= self.last {
            self.first
        } else {
            bits + 1
        }
    }
}

/// The addresses a CONNECT-IP edge assigns, and to which tunnel.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddressPool {
    ranges: Vec<Range>,
    owners: HashMap<IpAddr, TunnelId>,
    by_tunnel: HashMap<TunnelId, Vec<IpAddr>>,
}

impl AddressPool {
    /// A pool over `prefixes`, IPv4 and/or IPv6, in order of preference. A prefix that
    /// overlaps an earlier one is ignored (see the module documentation).
    pub(crate) fn new(prefixes: &[IpNet]) -> Self {
        let mut ranges: Vec<Range> = Vec::with_capacity(prefixes.len());
        for &net in prefixes {
            let overlaps = ranges
                .iter()
                .any(|r| r.net.contains(net.addr()) || net.contains(r.net.addr()));
            if !overlaps {
                ranges.push(Range::new(net));
            }
        }
        Self {
            ranges,
            owners: HashMap::default(),
            by_tunnel: HashMap::default(),
        }
    }

    /// Whether no prefix is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether a prefix of that family (IPv6 if `v6`) is configured.
    pub(crate) fn has_family(&self, v6: bool) -> bool {
        self.ranges.iter().any(|r| r.v6 == v6)
    }

    /// The edge's own address for that family: the gateway of the first prefix of the
    /// family that has one (host prefixes have none). The source of the ICMP errors the
    /// edge generates.
    pub(crate) fn gateway(&self, v6: bool) -> Option<IpAddr> {
        self.ranges
            .iter()
            .filter(|r| r.v6 == v6)
            .find_map(|r| r.gateway)
    }

    /// Assigns `tunnel` one unused address of that family (IPv6 if `v6`): `preferred` if it
    /// is of that family, in a prefix, not reserved and free; otherwise the next free one.
    /// `None` when every prefix of the family is full, or there is none.
    pub(crate) fn assign(
        &mut self,
        tunnel: TunnelId,
        v6: bool,
        preferred: Option<IpAddr>,
    ) -> Option<IpAddr> {
        let chosen = preferred
            .filter(|addr| addr.is_ipv6() == v6 && !self.owners.contains_key(addr))
            .and_then(|addr| {
                let bits = to_bits(addr);
                self.ranges
                    .iter()
                    .position(|r| r.v6 == v6 && r.holds(bits))
                    .map(|index| (index, bits))
            })
            .or_else(|| self.next_free(v6))?;
        let (index, bits) = chosen;
        let addr = from_bits(v6, bits);
        let range = self.ranges.get_mut(index)?;
        range.used += 1;
        range.cursor = range.next(bits);
        self.owners.insert(addr, tunnel);
        self.by_tunnel.entry(tunnel).or_default().push(addr);
        Some(addr)
    }

    /// The first free address of the family, from the first prefix that is not full,
    /// starting at its cursor: at most `used + 1` steps.
    fn next_free(&self, v6: bool) -> Option<(usize, u128)> {
        self.ranges
            .iter()
            .enumerate()
            .filter(|(_, r)| r.v6 == v6 && r.used < r.capacity())
            .find_map(|(index, range)| {
                let mut bits = range.cursor;
                // `used < capacity`, so one of the first `used + 1` candidates is free; the
                // bound only guards against a broken count.
                let mut steps = range.used;
                loop {
                    if !self.owners.contains_key(&from_bits(v6, bits)) {
                        return Some((index, bits));
                    }
                    steps = steps.checked_sub(1)?;
                    bits = range.next(bits);
                }
            })
    }

    /// Frees every address of `tunnel`.
    pub(crate) fn release(&mut self, tunnel: TunnelId) {
        let Some(addresses) = self.by_tunnel.remove(&tunnel) else {
            return;
        };
        for addr in addresses {
            // Every address listed for the tunnel is owned by it (the invariant); checking
            // keeps a broken table from freeing another tunnel's address.
            let Entry::Occupied(owner) = self.owners.entry(addr) else {
                continue;
            };
            if *owner.get() != tunnel {
                continue;
            }
            owner.remove();
            let bits = to_bits(addr);
            if let Some(range) = self
                .ranges
                .iter_mut()
                .find(|r| r.v6 == addr.is_ipv6() && r.holds(bits))
            {
                range.used = range.used.saturating_sub(1);
            }
        }
    }

    /// The tunnel `addr` is assigned to.
    pub(crate) fn owner(&self, addr: IpAddr) -> Option<TunnelId> {
        self.owners.get(&addr).copied()
    }

    /// The addresses assigned to `tunnel`, in the order they were assigned.
    pub(crate) fn addresses_of(&self, tunnel: TunnelId) -> &[IpAddr] {
        self.by_tunnel.get(&tunnel).map_or(&[], Vec::as_slice)
    }

    /// How many addresses are assigned.
    pub(crate) fn in_use(&self) -> usize {
        self.owners.len()
    }
}

fn to_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

fn from_bits(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        Ipv6Addr::from_bits(bits).into()
    } else {
        // IPv4 ranges only ever hold 32-bit values.
        Ipv4Addr::from_bits(u32::try_from(bits).unwrap_or(u32::MAX)).into()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    const A: TunnelId = TunnelId(1);
    const B: TunnelId = TunnelId(2);

    #[test]
    fn reserves_network_gateway_and_broadcast() {
        let mut pool = AddressPool::new(&[net("10.0.0.0/29"), net("2001:db8::/126")]);
        assert_eq!(pool.gateway(false), Some(ip("10.0.0.1")));
        assert_eq!(pool.gateway(true), Some(ip("2001:db8::1")));
        for reserved in ["10.0.0.0", "10.0.0.1", "10.0.0.7"] {
            let got = pool.assign(A, false, Some(ip(reserved)));
            assert_ne!(got, Some(ip(reserved)), "{reserved} was assigned");
        }
        // The three preferred-but-reserved requests got .2, .3, .4; then .5, .6; then none.
        let mut v4: Vec<IpAddr> = pool.addresses_of(A).to_vec();
        v4.extend(pool.assign(B, false, None));
        v4.extend(pool.assign(B, false, None));
        assert_eq!(pool.assign(B, false, None), None);
        let expected: Vec<IpAddr> = (2..=6).map(|i| ip(&format!("10.0.0.{i}"))).collect();
        assert_eq!(v4, expected);
        // IPv6 has no broadcast: ::2 and ::3 are both assignable; ::0 and ::1 are not.
        assert_eq!(
            pool.assign(A, true, Some(ip("2001:db8::"))),
            Some(ip("2001:db8::2"))
        );
        assert_eq!(
            pool.assign(A, true, Some(ip("2001:db8::1"))),
            Some(ip("2001:db8::3"))
        );
        assert_eq!(pool.assign(A, true, None), None);
    }

    #[test]
    fn small_prefixes() {
        // /30: one client address.
        let mut pool = AddressPool::new(&[net("192.0.2.0/30")]);
        assert_eq!(pool.assign(A, false, None), Some(ip("192.0.2.2")));
        assert_eq!(pool.assign(B, false, None), None);
        assert_eq!(pool.gateway(false), Some(ip("192.0.2.1")));
        // /31 and /127: point to point, gateway first, client second.
        let mut pool = AddressPool::new(&[net("192.0.2.4/31"), net("2001:db8::/127")]);
        assert_eq!(pool.gateway(false), Some(ip("192.0.2.4")));
        assert_eq!(pool.assign(A, false, None), Some(ip("192.0.2.5")));
        assert_eq!(pool.assign(A, false, None), None);
        assert_eq!(pool.gateway(true), Some(ip("2001:db8::")));
        assert_eq!(pool.assign(A, true, None), Some(ip("2001:db8::1")));
        assert_eq!(pool.assign(A, true, None), None);
        // /32 and /128: assignable, no gateway; a later prefix provides it.
        let mut pool = AddressPool::new(&[net("192.0.2.9/32"), net("198.51.100.0/24")]);
        assert_eq!(pool.gateway(false), Some(ip("198.51.100.1")));
        assert_eq!(pool.assign(A, false, None), Some(ip("192.0.2.9")));
        assert_eq!(pool.assign(A, false, None), Some(ip("198.51.100.2")));
        let pool = AddressPool::new(&[net("2001:db8::5/128")]);
        assert_eq!(pool.gateway(true), None);
    }

    #[test]
    fn families_and_empty() {
        let mut pool = AddressPool::new(&[]);
        assert!(pool.is_empty());
        assert!(!pool.has_family(false) && !pool.has_family(true));
        assert_eq!(pool.assign(A, false, None), None);
        assert_eq!(pool.gateway(false), None);
        let mut pool = AddressPool::new(&[net("10.0.0.0/24")]);
        assert!(!pool.is_empty());
        assert!(pool.has_family(false) && !pool.has_family(true));
        assert_eq!(pool.assign(A, true, None), None);
        // A preferred address of the other family is ignored, not assigned.
        assert_eq!(
            pool.assign(A, false, Some(ip("2001:db8::9"))),
            Some(ip("10.0.0.2"))
        );
    }

    #[test]
    fn preferred_address() {
        let mut pool = AddressPool::new(&[net("10.0.0.0/24"), net("10.1.0.0/24")]);
        assert_eq!(
            pool.assign(A, false, Some(ip("10.1.0.77"))),
            Some(ip("10.1.0.77"))
        );
        assert_eq!(pool.owner(ip("10.1.0.77")), Some(A));
        // Taken: the next free one instead (from the first prefix).
        assert_eq!(
            pool.assign(B, false, Some(ip("10.1.0.77"))),
            Some(ip("10.0.0.2"))
        );
        // Outside every prefix: the next free one.
        assert_eq!(
            pool.assign(B, false, Some(ip("172.16.0.5"))),
            Some(ip("10.0.0.3"))
        );
        assert_eq!(pool.owner(ip("10.1.0.77")), Some(A));
    }

    #[test]
    fn overlapping_prefixes_are_ignored() {
        let mut pool = AddressPool::new(&[net("10.0.0.0/30"), net("10.0.0.0/24")]);
        assert_eq!(pool.assign(A, false, None), Some(ip("10.0.0.2")));
        assert_eq!(pool.assign(A, false, None), None);
        assert_eq!(pool.assign(A, false, Some(ip("10.0.0.100"))), None);
    }

    #[test]
    fn release_and_reuse() {
        let mut pool = AddressPool::new(&[net("192.0.2.0/29")]);
        let a1 = pool.assign(A, false, None).expect("free");
        let b1 = pool.assign(B, false, None).expect("free");
        let a2 = pool.assign(A, false, None).expect("free");
        assert_eq!(pool.addresses_of(A), &[a1, a2]);
        assert_eq!(pool.in_use(), 3);
        pool.release(A);
        assert_eq!(pool.in_use(), 1);
        assert_eq!(pool.owner(a1), None);
        assert_eq!(pool.owner(a2), None);
        assert_eq!(pool.owner(b1), Some(B));
        assert!(pool.addresses_of(A).is_empty());
        // The cursor goes on (.5, .6) before it wraps to the released ones (.2, .4).
        let got: Vec<IpAddr> = (0..4)
            .filter_map(|_| pool.assign(TunnelId(3), false, None))
            .collect();
        assert_eq!(got, [ip("192.0.2.5"), ip("192.0.2.6"), a1, a2]);
        assert_eq!(pool.assign(TunnelId(3), false, None), None);
        // Releasing an unknown tunnel changes nothing.
        pool.release(TunnelId(99));
        assert_eq!(pool.in_use(), 5);
    }

    #[test]
    fn a_slash_64_assigns_fast() {
        let mut pool = AddressPool::new(&[net("2001:db8:1:2::/64")]);
        let start = Instant::now();
        for i in 0..10_000_u64 {
            assert!(pool.assign(TunnelId(i), true, None).is_some());
        }
        // Free the even ones and assign again: the cursor skips the odd ones in use.
        for i in (0..10_000_u64).step_by(2) {
            pool.release(TunnelId(i));
        }
        for i in 10_000..15_000_u64 {
            assert!(pool.assign(TunnelId(i), true, None).is_some());
        }
        assert_eq!(pool.in_use(), 10_000);
        // A scan of 2^64 addresses would never finish; O(in_use) takes milliseconds.
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // Cursor, not a scan: the assignments after the first 10 000 continue past them.
        assert_eq!(pool.owner(ip("2001:db8:1:2::2712")), Some(TunnelId(10_000)));
    }

    /// One step of a random sequence.
    #[derive(Debug, Clone)]
    enum Op {
        Assign {
            tunnel: u64,
            v6: bool,
            preferred: Option<u8>,
        },
        Release {
            tunnel: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..6_u64, any::<bool>(), proptest::option::of(any::<u8>()))
                .prop_map(|(tunnel, v6, preferred)| Op::Assign { tunnel, v6, preferred }),
            1 => (0..6_u64).prop_map(|tunnel| Op::Release { tunnel }),
        ]
    }

    /// The address numbered `n` of the test prefixes' family, reserved ones included.
    fn candidate(v6: bool, n: u8) -> IpAddr {
        if v6 {
            Ipv6Addr::from_bits(0x2001_0db8_u128 << 96 | u128::from(n % 8)).into()
        } else if n % 2 == 0 {
            Ipv4Addr::new(10, 0, 0, n % 16).into()
        } else {
            Ipv4Addr::new(10, 9, 0, n % 4).into()
        }
    }

    proptest! {
        /// Against a model (a map from address to owner): the pool never gives an address
        /// twice, gives only assignable addresses, honours a free preferred one, gives
        /// `None` only when the family is full, and its two maps agree.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec(op(), 1..120)) {
            let mut pool = AddressPool::new(&[
                net("10.0.0.0/28"), net("10.9.0.0/30"), net("2001:db8::/125"),
            ]);
            // Assignable: 10.0.0.2-14 (13), 10.9.0.2 (1), 2001:db8::2-7 (6).
            let capacity = |v6: bool| if v6 { 6 } else { 14 };
            let assignable = |addr: IpAddr| match addr {
                IpAddr::V4(a) => {
                    let [o0, o1, o2, o3] = a.octets();
                    (o0, o1, o2) == (10, 0, 0) && (2..=14).contains(&o3)
                        || (o0, o1, o2, o3) == (10, 9, 0, 2)
                }
                IpAddr::V6(a) => (2..=7).contains(&(a.to_bits() ^ 0x2001_0db8_u128 << 96)),
            };
            let mut model: BTreeMap<IpAddr, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Assign { tunnel, v6, preferred } => {
                        let preferred = preferred.map(|n| candidate(v6, n));
                        let used = model.keys().filter(|a| a.is_ipv6() == v6).count();
                        let got = pool.assign(TunnelId(tunnel), v6, preferred);
                        match got {
                            None => prop_assert_eq!(used, capacity(v6)),
                            Some(addr) => {
                                prop_assert!(assignable(addr), "{} is reserved", addr);
                                prop_assert_eq!(addr.is_ipv6(), v6);
                                prop_assert!(model.insert(addr, tunnel).is_none(), "{} twice", addr);
                                if let Some(p) = preferred.filter(|p| assignable(*p)) {
                                    if !model.contains_key(&p) || p == addr {
                                        prop_assert_eq!(addr, p);
                                    }
                                }
                            }
                        }
                    }
                    Op::Release { tunnel } => {
                        pool.release(TunnelId(tunnel));
                        model.retain(|_, owner| *owner != tunnel);
                    }
                }
                prop_assert_eq!(pool.in_use(), model.len());
                for (addr, owner) in &model {
                    prop_assert_eq!(pool.owner(*addr), Some(TunnelId(*owner)));
                }
                for tunnel in 0..6 {
                    let listed: BTreeSet<IpAddr> =
                        pool.addresses_of(TunnelId(tunnel)).iter().copied().collect();
                    let modelled: BTreeSet<IpAddr> =
                        model.iter().filter(|(_, o)| **o == tunnel).map(|(a, _)| *a).collect();
                    prop_assert_eq!(listed.len(), pool.addresses_of(TunnelId(tunnel)).len());
                    prop_assert_eq!(listed, modelled);
                }
            }
        }
    }
}

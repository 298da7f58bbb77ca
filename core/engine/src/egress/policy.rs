//! The edge's decision: may it open a connection to this address?

use std::fmt;
use std::net::IpAddr;

use super::class::{AddressClass, class_v4, class_v6};
use super::net::IpNet;
use super::transition::{Nat64Prefix, Transition, embedded_ipv4};

/// Which destinations the edge refuses to connect to on a client's behalf.
///
/// An address is refused when it (or the IPv4 address an IPv6 address carries, see
/// [`Transition`]) falls in a refused [`AddressClass`] or is one of the edge's own
/// addresses, unless an allowlist entry covers it:
///
/// - An entry matches the address as asked or the IPv4 address it carries, so
///   `127.0.0.0/8` also allows `::ffff:127.0.0.1` and `64:ff9b::7f00:1`.
/// - An entry overrides every class, [`AddressClass::Own`] included, except
///   [`AddressClass::CloudMetadata`]: a metadata address is allowed only by a host entry
///   naming it (`169.254.169.254/32`), so opening `169.254.0.0/16` or `0.0.0.0/0` does not
///   hand out the machine's credentials by accident.
///
/// The policy is pure and cheap (no allocation, a few dozen comparisons): check every
/// address, including each packet's destination on a CONNECT-IP tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<IpNet>,
    /// Sorted and deduplicated, IPv4-mapped addresses stored as IPv4.
    own: Vec<IpAddr>,
    /// Longest prefix first.
    nat64: Vec<Nat64Prefix>,
}

impl EgressPolicy {
    /// A policy that refuses every special-purpose address except those in `allow`.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow,
            ..Self::default()
        }
    }

    /// Also refuses the edge's own addresses: those it listens on and, when it listens on
    /// an unspecified address (`0.0.0.0`, `::`), those of every local interface, which the
    /// adapter must list. Unspecified addresses add nothing here: they are always refused.
    #[must_use]
    pub fn with_own_addresses(mut self, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.own.extend(
            addrs
                .into_iter()
                .map(|addr| addr.to_canonical())
                .filter(|addr| !addr.is_unspecified()),
        );
        self.own.sort_unstable();
        self.own.dedup();
        self
    }

    /// Unwraps addresses under these NAT64 prefixes (besides the well-known
    /// `64:ff9b::/96`) and checks the IPv4 address they carry. Configure every prefix a
    /// NAT64 translator reachable from the edge serves. Where prefixes overlap, the
    /// longest one that covers an address applies, as it would in routing.
    #[must_use]
    pub fn with_nat64_prefixes(mut self, prefixes: impl IntoIterator<Item = Nat64Prefix>) -> Self {
        self.nat64.extend(prefixes);
        self.nat64.sort_by_key(|prefix| {
            let net = prefix.net();
            (std::cmp::Reverse(net.prefix_len()), net)
        });
        self.nat64.dedup();
        self
    }

    /// The allowlist.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// Decides whether the edge may connect to `addr`.
    ///
    /// The caller then dials `addr` itself, not a name that resolves to it again.
    pub fn check(&self, addr: IpAddr) -> Result<(), Forbidden> {
        let (checked, transition) = self.canonical(addr);
        let class = match special_class(checked) {
            Some(class) => class,
            None if self.is_own(addr) || self.is_own(checked) => AddressClass::Own,
            None => return Ok(()),
        };
        if self.is_allowed(addr, checked, class) {
            return Ok(());
        }
        Err(Forbidden {
            addr,
            checked,
            transition,
            class,
        })
    }

    /// Checks the answers of one resolution of a name: the addresses allowed, in order,
    /// or the first refusal when none is. The caller dials only addresses from the list it
    /// gets back and never resolves the name again, so the address checked is the address
    /// dialed. An empty answer gives an empty list (a DNS failure, not a refusal).
    pub fn check_resolved(&self, resolved: &[IpAddr]) -> Result<Vec<IpAddr>, Forbidden> {
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(resolved.len());
        for &addr in resolved {
            match self.check(addr) {
                Ok(()) => allowed.push(addr),
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        match first_refusal {
            Some(refusal) if allowed.is_empty() => Err(refusal),
            _ => Ok(allowed),
        }
    }

    /// The address the classes apply to: the IPv4 address `addr` carries, if it does.
    fn canonical(&self, addr: IpAddr) -> (IpAddr, Option<Transition>) {
        match addr {
            IpAddr::V6(v6) => match embedded_ipv4(v6, &self.nat64) {
                Some((ipv4, transition)) => (ipv4.into(), Some(transition)),
                None => (addr, None),
            },
            IpAddr::V4(_) => (addr, None),
        }
    }

    fn is_own(&self, addr: IpAddr) -> bool {
        self.own.binary_search(&addr).is_ok()
    }

    fn is_allowed(&self, addr: IpAddr, checked: IpAddr, class: AddressClass) -> bool {
        self.allow
            .iter()
            .filter(|net| class != AddressClass::CloudMetadata || net.is_host())
            .any(|net| net.contains(addr) || net.contains(checked))
    }
}

/// The class of an address that carries no other address.
fn special_class(addr: IpAddr) -> Option<AddressClass> {
    match addr {
        IpAddr::V4(v4) => class_v4(v4),
        IpAddr::V6(v6) => class_v6(v6),
    }
}

/// A refused destination. The engine answers 403 with Proxy-Status
/// `destination_ip_prohibited` (RFC 9209 §2.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forbidden {
    /// The address as it was asked for.
    pub addr: IpAddr,
    /// The address that was classified: `addr`, or the IPv4 address it carries.
    pub checked: IpAddr,
    /// How `addr` carries `checked`, when they differ.
    pub transition: Option<Transition>,
    /// Why `checked` is refused.
    pub class: AddressClass,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "egress to {} refused: ", self.addr)?;
        match self.transition {
            Some(transition) => write!(
                f,
                "it carries {} ({transition}), {}",
                self.checked, self.class
            ),
            None => write!(f, "{}", self.class),
        }
    }
}

impl std::error::Error for Forbidden {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn nets(texts: &[&str]) -> Vec<IpNet> {
        texts.iter().map(|t| t.parse().expect("prefix")).collect()
    }

    fn class(policy: &EgressPolicy, addr: &str) -> Option<AddressClass> {
        policy.check(ip(addr)).err().map(|refusal| refusal.class)
    }

    #[test]
    fn default_policy_refuses_special_and_allows_public() {
        let policy = EgressPolicy::default();
        assert_eq!(class(&policy, "127.0.0.1"), Some(AddressClass::Loopback));
        assert_eq!(
            class(&policy, "::ffff:10.1.2.3"),
            Some(AddressClass::Private)
        );
        assert_eq!(class(&policy, "fe80::1"), Some(AddressClass::LinkLocal));
        assert_eq!(class(&policy, "1.1.1.1"), None);
        assert_eq!(class(&policy, "2606:4700::1111"), None);
        assert_eq!(class(&policy, "64:ff9b::1.1.1.1"), None);
        assert_eq!(class(&policy, "2002:101:101::1"), None);
    }

    #[test]
    fn refusal_names_the_carried_address() {
        let refusal = EgressPolicy::default()
            .check(ip("64:ff9b::a9fe:a9fe"))
            .expect_err("metadata");
        assert_eq!(refusal.addr, ip("64:ff9b::a9fe:a9fe"));
        assert_eq!(refusal.checked, ip("169.254.169.254"));
        assert_eq!(refusal.transition, Some(Transition::Nat64));
        assert_eq!(refusal.class, AddressClass::CloudMetadata);
        assert_eq!(
            refusal.to_string(),
            "egress to 64:ff9b::a9fe:a9fe refused: it carries 169.254.169.254 (NAT64), \
             a cloud metadata service address"
        );

        let direct = EgressPolicy::default()
            .check(ip("10.0.0.1"))
            .expect_err("private");
        assert_eq!(direct.checked, direct.addr);
        assert_eq!(direct.transition, None);
        assert_eq!(
            direct.to_string(),
            "egress to 10.0.0.1 refused: a private-use address (RFC 1918)"
        );
    }

    #[test]
    fn allowlist_matches_the_carried_ipv4_address() {
        let policy = EgressPolicy::new(nets(&["127.0.0.0/8"]));
        for addr in [
            "127.0.0.1",
            "127.1.2.3",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
        ] {
            assert_eq!(policy.check(ip(addr)), Ok(()), "{addr}");
        }
        assert_eq!(class(&policy, "::1"), Some(AddressClass::Loopback));
        assert_eq!(
            class(&policy, "::127.0.0.1"),
            Some(AddressClass::Ipv4Compatible)
        );
        assert_eq!(class(&policy, "10.0.0.1"), Some(AddressClass::Private));
    }

    #[test]
    fn allowlist_may_name_the_ipv6_form() {
        let policy = EgressPolicy::new(nets(&["::ffff:10.0.0.0/104", "2001::/32"]));
        assert_eq!(policy.check(ip("::ffff:10.9.9.9")), Ok(()));
        assert_eq!(class(&policy, "10.9.9.9"), Some(AddressClass::Private));
        assert_eq!(policy.check(ip("2001::1")), Ok(()));
    }

    #[test]
    fn metadata_needs_an_exact_host_entry() {
        let broad = EgressPolicy::new(nets(&["169.254.0.0/16", "0.0.0.0/0", "fd00::/8"]));
        assert_eq!(broad.check(ip("169.254.1.1")), Ok(()));
        assert_eq!(
            class(&broad, "169.254.169.254"),
            Some(AddressClass::CloudMetadata)
        );
        assert_eq!(
            class(&broad, "::ffff:169.254.169.254"),
            Some(AddressClass::CloudMetadata)
        );
        assert_eq!(
            class(&broad, "fd00:ec2::254"),
            Some(AddressClass::CloudMetadata)
        );
        assert_eq!(broad.check(ip("fd00:ec2::255")), Ok(()));

        let exact = EgressPolicy::new(nets(&["169.254.169.254/32", "fd00:ec2::254/128"]));
        assert_eq!(exact.check(ip("169.254.169.254")), Ok(()));
        assert_eq!(exact.check(ip("::ffff:169.254.169.254")), Ok(()));
        assert_eq!(exact.check(ip("fd00:ec2::254")), Ok(()));
        assert_eq!(
            class(&exact, "169.254.170.2"),
            Some(AddressClass::CloudMetadata)
        );
    }

    #[test]
    fn own_addresses_are_refused_in_every_form() {
        let policy = EgressPolicy::default().with_own_addresses([
            ip("203.0.113.9"),
            ip("::ffff:198.51.100.4"),
            ip("2a01:4f8::1"),
            ip("0.0.0.0"),
            ip("1.1.1.1"),
            ip("1.1.1.1"),
        ]);
        assert_eq!(
            policy.own,
            [
                ip("1.1.1.1"),
                ip("198.51.100.4"),
                ip("203.0.113.9"),
                ip("2a01:4f8::1")
            ]
        );
        assert_eq!(class(&policy, "1.1.1.1"), Some(AddressClass::Own));
        assert_eq!(class(&policy, "::ffff:1.1.1.1"), Some(AddressClass::Own));
        assert_eq!(class(&policy, "64:ff9b::101:101"), Some(AddressClass::Own));
        assert_eq!(class(&policy, "2a01:4f8::1"), Some(AddressClass::Own));
        assert_eq!(policy.check(ip("2a01:4f8::2")), Ok(()));
        assert_eq!(policy.check(ip("1.0.0.1")), Ok(()));
        // A special class is reported rather than Own.
        assert_eq!(
            class(&policy, "203.0.113.9"),
            Some(AddressClass::Documentation)
        );

        let allowed = policy.clone().with_own_addresses([]);
        assert_eq!(allowed, policy);
        let overridden =
            EgressPolicy::new(nets(&["1.1.1.0/24"])).with_own_addresses([ip("1.1.1.1")]);
        assert_eq!(overridden.check(ip("1.1.1.1")), Ok(()));
    }

    #[test]
    fn configured_nat64_prefix_is_unwrapped() {
        let local: Nat64Prefix = "64:ff9b:1:fffe::/96".parse().expect("prefix");
        let policy = EgressPolicy::default().with_nat64_prefixes([local]);
        assert_eq!(
            class(&policy, "64:ff9b:1:fffe::a00:1"),
            Some(AddressClass::Private)
        );
        assert_eq!(policy.check(ip("64:ff9b:1:fffe::101:101")), Ok(()));
        assert_eq!(
            class(&policy, "64:ff9b:1:ffff::101:101"),
            Some(AddressClass::Nat64LocalUse)
        );
        assert_eq!(
            class(&EgressPolicy::default(), "64:ff9b:1:fffe::101:101"),
            Some(AddressClass::Nat64LocalUse)
        );

        let operator: Nat64Prefix = "2a01:4f8:64::/64".parse().expect("prefix");
        let policy = EgressPolicy::default().with_nat64_prefixes([operator]);
        assert_eq!(
            class(&policy, "2a01:4f8:64:0:7f:0:100:0"),
            Some(AddressClass::Loopback)
        );
        assert_eq!(
            class(&EgressPolicy::default(), "2a01:4f8:64:0:7f:0:100:0"),
            None
        );
    }

    #[test]
    fn longest_configured_nat64_prefix_applies() {
        // 192.0.2.33 under 2001:db8:100::/40 (RFC 6052 §2.4). Read under the enclosing
        // /32 instead, the same bits would be 1.192.0.2, a public address.
        let addr = ip("2001:db8:1c0:2:21::");
        let wide: Nat64Prefix = "2001:db8::/32".parse().expect("prefix");
        let narrow: Nat64Prefix = "2001:db8:100::/40".parse().expect("prefix");
        for prefixes in [[wide, narrow], [narrow, wide]] {
            let policy = EgressPolicy::default().with_nat64_prefixes(prefixes);
            let refusal = policy.check(addr).expect_err("documentation");
            assert_eq!(refusal.checked, ip("192.0.2.33"));
            assert_eq!(refusal.class, AddressClass::Documentation);
        }
        let twice = EgressPolicy::default().with_nat64_prefixes([wide, narrow, wide, narrow]);
        assert_eq!(twice.nat64, [narrow, wide]);
    }

    #[test]
    fn check_resolved_keeps_allowed_answers_in_order() {
        let policy = EgressPolicy::default();
        let answers = [
            ip("10.0.0.1"),
            ip("1.1.1.1"),
            ip("::1"),
            ip("2606:4700::1111"),
        ];
        assert_eq!(
            policy.check_resolved(&answers),
            Ok(vec![ip("1.1.1.1"), ip("2606:4700::1111")])
        );
        let refusal = policy
            .check_resolved(&[ip("127.0.0.1"), ip("10.0.0.1")])
            .expect_err("all refused");
        assert_eq!(refusal.addr, ip("127.0.0.1"));
        assert_eq!(refusal.class, AddressClass::Loopback);
        assert_eq!(policy.check_resolved(&[]), Ok(vec![]));
    }

    #[test]
    fn allowed_returns_the_allowlist() {
        let allow = nets(&["10.0.0.0/8", "::1/128"]);
        assert_eq!(EgressPolicy::new(allow.clone()).allowed(), allow.as_slice());
    }
}

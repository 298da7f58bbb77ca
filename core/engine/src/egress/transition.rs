//! IPv6 addresses that carry an IPv4 address, and the IPv4 address they carry.
//!
//! A packet to such an address ends up at the IPv4 address inside it (a dual-stack socket,
//! a NAT64 translator or a 6to4 relay does the conversion), so the policy judges the
//! address by the IPv4 address it carries. Three forms are unwrapped:
//!
//! | form | prefix | where the IPv4 address sits |
//! |---|---|---|
//! | IPv4-mapped (RFC 4291 §2.5.5.2) | `::ffff:0:0/96` | last 32 bits |
//! | NAT64 (RFC 6052) | `64:ff9b::/96`, or a configured [`Nat64Prefix`] | after the prefix, skipping bits 64–71 |
//! | 6to4 (RFC 3056 §2) | `2002::/16` | bits 16–47 |
//!
//! Other forms are refused outright by their [`AddressClass`](super::AddressClass):
//! IPv4-compatible `::/96` (deprecated), Teredo `2001::/32` (the address names a client
//! behind a NAT, with an obfuscated IPv4 address and port chosen by whoever wrote it), and
//! the local-use NAT64 block `64:ff9b:1::/48` unless a configured prefix covers the
//! address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use super::net::{FromStrVisitor, IpNet, IpNetError};

/// How an IPv6 address carries the IPv4 address that was checked in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transition {
    /// `::ffff:a.b.c.d`, the form dual-stack sockets use for IPv4 peers.
    //# RFC 4291 §2.5.5.2: "This address type is used to represent the addresses of IPv4
    //# nodes as IPv6 addresses."
    Ipv4Mapped,
    /// An address under the NAT64 well-known prefix or a configured NAT64 prefix.
    Nat64,
    /// A 6to4 address, `2002:V4ADDR::/48`.
    //# RFC 3056 §2: "Its numeric value is 0x0002, i.e., it is 2002::/16 when expressed as an
    //# IPv6 address prefix."
    //# RFC 3056 §2: "It can be abbreviated as 2002:V4ADDR::/48."
    SixToFour,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ipv4Mapped => "IPv4-mapped",
            Self::Nat64 => "NAT64",
            Self::SixToFour => "6to4",
        })
    }
}

/// A prefix a NAT64 translator reachable from the edge uses to represent IPv4 addresses
/// (RFC 6052 §2.2): an IPv6 prefix of length 32, 40, 48, 56, 64 or 96.
///
/// The well-known prefix `64:ff9b::/96` is always unwrapped. A network-specific prefix
/// (such as one from the local-use block `64:ff9b:1::/48`, or one carved from the
/// operator's own space) must be configured: otherwise an address under it is judged as
/// an IPv6 address, and the IPv4 address the translator would reach goes unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nat64Prefix(IpNet);

impl Nat64Prefix {
    /// The well-known prefix `64:ff9b::/96` (RFC 6052 §2.1).
    //# RFC 6052 §3.1: "The Well-Known Prefix MUST NOT be used to represent non-global IPv4
    //# addresses, such as those defined in [RFC1918] or listed in Section 3 of [RFC5735]."
    // Translators are not all faithful to that rule, and a draft update turns the MUST NOT
    // into a MAY, so the embedded address is checked rather than trusted to be global.
    pub const WELL_KNOWN: Self = Self(IpNet::from_parts(
        IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0)),
        96,
    ));

    /// Checks that `net` is an IPv6 prefix of a length RFC 6052 §2.2 allows.
    pub fn new(net: IpNet) -> Result<Self, Nat64PrefixError> {
        if !net.addr().is_ipv6() {
            return Err(Nat64PrefixError::NotIpv6);
        }
        match net.prefix_len() {
            32 | 40 | 48 | 56 | 64 | 96 => Ok(Self(net)),
            other => Err(Nat64PrefixError::UnsupportedLength(other)),
        }
    }

    /// The prefix.
    pub const fn net(&self) -> IpNet {
        self.0
    }

    /// The IPv4 address `addr` carries, if `addr` is under this prefix.
    //# RFC 6052 §2.2: "Bits 64 to 71 of the address are reserved for compatibility with the
    //# host identifier format defined in the IPv6 addressing architecture [RFC4291]. These
    //# bits MUST be set to zero."
    // The IPv4 address fills the octets after the prefix, stepping over octet 8. Nonzero
    // reserved or suffix bits do not stop the extraction: a translator that accepts such an
    // address reaches the same IPv4 address, and one that drops it reaches nothing.
    fn embedded(&self, addr: Ipv6Addr) -> Option<Ipv4Addr> {
        if !self.0.contains(addr.into()) {
            return None;
        }
        let octets = addr.octets();
        let start = usize::from(self.0.prefix_len() / 8);
        let mut ipv4 = [0; 4];
        let positions = (start..octets.len()).filter(|&index| index != 8);
        for (out, index) in ipv4.iter_mut().zip(positions) {
            *out = *octets.get(index)?;
        }
        Some(Ipv4Addr::from(ipv4))
    }
}

impl fmt::Display for Nat64Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<IpNet> for Nat64Prefix {
    type Error = Nat64PrefixError;

    fn try_from(net: IpNet) -> Result<Self, Self::Error> {
        Self::new(net)
    }
}

impl FromStr for Nat64Prefix {
    type Err = Nat64PrefixError;

    /// Parses an [`IpNet`] (`64:ff9b:1:fffe::/96`) and checks it with [`Nat64Prefix::new`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(text.parse().map_err(Nat64PrefixError::Prefix)?)
    }
}

impl<'de> Deserialize<'de> for Nat64Prefix {
    /// Reads the text form, as [`FromStr`] does.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FromStrVisitor::<Self>::new(
            "a NAT64 prefix such as \"64:ff9b:1:fffe::/96\"",
        ))
    }
}

/// Why a prefix cannot be a [`Nat64Prefix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Nat64PrefixError {
    /// The text is not a valid prefix.
    Prefix(IpNetError),
    /// An IPv4 prefix: NAT64 prefixes are IPv6.
    NotIpv6,
    /// A length other than 32, 40, 48, 56, 64 or 96.
    UnsupportedLength(u8),
}

impl fmt::Display for Nat64PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Prefix(error) => error.fmt(f),
            Self::NotIpv6 => f.write_str("a NAT64 prefix must be an IPv6 prefix"),
            Self::UnsupportedLength(len) => write!(
                f,
                "a NAT64 prefix is /32, /40, /48, /56, /64 or /96, not /{len}"
            ),
        }
    }
}

impl std::error::Error for Nat64PrefixError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Prefix(error) => Some(error),
            Self::NotIpv6 | Self::UnsupportedLength(_) => None,
        }
    }
}

/// The IPv4 address `addr` carries and how, if it has the form of one of the unwrapped
/// transition mechanisms. Configured NAT64 prefixes are tried before 6to4, since a
/// network that configures one routes it to its translator.
pub(super) fn embedded_ipv4(
    addr: Ipv6Addr,
    configured: &[Nat64Prefix],
) -> Option<(Ipv4Addr, Transition)> {
    if let Some(ipv4) = addr.to_ipv4_mapped() {
        return Some((ipv4, Transition::Ipv4Mapped));
    }
    let nat64 = std::iter::once(&Nat64Prefix::WELL_KNOWN).chain(configured);
    if let Some(ipv4) = nat64.into_iter().find_map(|prefix| prefix.embedded(addr)) {
        return Some((ipv4, Transition::Nat64));
    }
    six_to_four(addr).map(|ipv4| (ipv4, Transition::SixToFour))
}

/// The `V4ADDR` of a 6to4 address.
fn six_to_four(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    match addr.octets() {
        [0x20, 0x02, a, b, c, d, ..] => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().expect("IPv6")
    }

    fn prefix(text: &str) -> Nat64Prefix {
        text.parse().expect("NAT64 prefix")
    }

    #[test]
    fn unwraps_mapped_nat64_and_6to4() {
        let none: &[Nat64Prefix] = &[];
        let cases = [
            (
                "::ffff:127.0.0.1",
                Some(([127, 0, 0, 1], Transition::Ipv4Mapped)),
            ),
            (
                "::ffff:7f00:1",
                Some(([127, 0, 0, 1], Transition::Ipv4Mapped)),
            ),
            (
                "64:ff9b::10.0.0.1",
                Some(([10, 0, 0, 1], Transition::Nat64)),
            ),
            (
                "64:ff9b::a9fe:a9fe",
                Some(([169, 254, 169, 254], Transition::Nat64)),
            ),
            (
                "2002:7f00:1::",
                Some(([127, 0, 0, 1], Transition::SixToFour)),
            ),
            (
                "2002:a00:1:ffff::1",
                Some(([10, 0, 0, 1], Transition::SixToFour)),
            ),
            ("::127.0.0.1", None),
            ("64:ff9b:1::a00:1", None),
            ("64:ff9b:0:0:1::a00:1", None),
            ("2001::1", None),
            ("2003:7f00:1::", None),
        ];
        for (addr, expected) in cases {
            let expected = expected.map(|(ipv4, how)| (Ipv4Addr::from(ipv4), how));
            assert_eq!(embedded_ipv4(v6(addr), none), expected, "{addr}");
        }
    }

    #[test]
    fn configured_prefixes_follow_rfc_6052_layout() {
        // RFC 6052 §2.4 example table: 192.0.2.33 under 2001:db8::/32 .. /96.
        let cases = [
            ("2001:db8::/32", "2001:db8:c000:221::"),
            ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
            ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
        ];
        for (net, addr) in cases {
            let configured = [prefix(net)];
            assert_eq!(
                embedded_ipv4(v6(addr), &configured),
                Some((Ipv4Addr::new(192, 0, 2, 33), Transition::Nat64)),
                "{addr} under {net}"
            );
            assert_eq!(embedded_ipv4(v6(addr), &[]), None, "{addr} unconfigured");
        }
    }

    #[test]
    fn nat64_prefix_validation() {
        assert_eq!(prefix("64:ff9b::/96"), Nat64Prefix::WELL_KNOWN);
        assert_eq!(
            "10.0.0.0/8".parse::<Nat64Prefix>(),
            Err(Nat64PrefixError::NotIpv6)
        );
        assert_eq!(
            "64:ff9b:1::/80".parse::<Nat64Prefix>(),
            Err(Nat64PrefixError::UnsupportedLength(80))
        );
        assert_eq!(
            "64:ff9b:1::1/96".parse::<Nat64Prefix>(),
            Err(Nat64PrefixError::Prefix(IpNetError::HostBitsSet {
                network: "64:ff9b:1::/96".parse().expect("prefix"),
            }))
        );
        assert_eq!(
            Nat64PrefixError::UnsupportedLength(80).to_string(),
            "a NAT64 prefix is /32, /40, /48, /56, /64 or /96, not /80"
        );
        assert_eq!(
            prefix("64:ff9b:1:fffe::/96").to_string(),
            "64:ff9b:1:fffe::/96"
        );
    }

    #[test]
    fn transition_names() {
        assert_eq!(Transition::Ipv4Mapped.to_string(), "IPv4-mapped");
        assert_eq!(Transition::Nat64.to_string(), "NAT64");
        assert_eq!(Transition::SixToFour.to_string(), "6to4");
    }
}

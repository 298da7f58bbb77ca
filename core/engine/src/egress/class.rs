//! Which special-purpose block an address falls in.
//!
//! The blocks follow the IANA IPv4 and IPv6 Special-Purpose Address Registries, which
//! RFC 6890 set up. Every block the registries mark not globally reachable is refused,
//! plus multicast, the deprecated relay and site-local blocks, the well-known cloud
//! metadata services, and on IPv6 everything outside global unicast `2000::/3` (the rest
//! of the space is unassigned or reserved by the IETF). IPv6 blocks that carry an IPv4 address are unwrapped before
//! this table is consulted (see [`super::transition`]).

//# RFC 6890, Abstract: "Upon restructuring, the aforementioned registries will record all
//# special-purpose address blocks, maintaining a common set of information regarding each
//# address block."

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::net::{mask_v4, mask_v6};

/// Why an address is refused as an egress destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddressClass {
    /// `0.0.0.0` and `::`. Connecting to them reaches the edge itself on most systems.
    Unspecified,
    /// `127.0.0.0/8` and `::1`.
    Loopback,
    /// RFC 1918 private use: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// RFC 6598 shared address space for carrier-grade NAT: `100.64.0.0/10`.
    SharedCgnat,
    /// `169.254.0.0/16` and `fe80::/10`.
    LinkLocal,
    /// A cloud metadata or platform service that hands out credentials and configuration:
    /// `169.254.169.254` (the instance metadata of AWS, Google Cloud, Azure and
    /// `OpenStack`), `169.254.170.2` (AWS ECS task credentials), `169.254.170.23` and
    /// `fd00:ec2::23` (AWS EKS Pod Identity), `fd00:ec2::254` (AWS instance metadata over
    /// IPv6), `fe80::a9fe:a9fe` (`OpenStack` metadata over IPv6), `100.100.100.200`
    /// (Alibaba Cloud metadata) and `168.63.129.16` (the Azure platform address: public,
    /// but it answers only from inside Azure). Only an allowlist entry naming the exact
    /// address allows one of these.
    CloudMetadata,
    /// `224.0.0.0/4` and `ff00::/8`.
    Multicast,
    /// The limited broadcast address `255.255.255.255`.
    Broadcast,
    /// Special-purpose or reserved space with no destination on the Internet: `0.0.0.0/8`
    /// ("this network"), `192.0.0.0/24` (IETF protocol assignments), `192.88.99.0/24`
    /// (the deprecated 6to4 relay anycast), `240.0.0.0/4`, the discard-only `100::/64`,
    /// the ORCHID identifiers `2001:10::/28` and `2001:20::/28`, and every IPv6 address
    /// outside `2000::/3` that no other class covers.
    Reserved,
    /// Benchmarking networks: `198.18.0.0/15` (RFC 2544) and `2001:2::/48` (RFC 5180).
    Benchmarking,
    /// Documentation networks: `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`
    /// (RFC 5737), `2001:db8::/32` (RFC 3849) and `3fff::/20` (RFC 9637). Nothing public
    /// lives there, and some private networks misuse them, so dialing one gains nothing
    /// and may reach something internal.
    Documentation,
    /// `fc00::/7` unique local addresses, and the deprecated site-local `fec0::/10`.
    UniqueLocal,
    /// The deprecated IPv4-compatible IPv6 addresses `::/96` (other than `::` and
    /// `::1`). Systems that still route them tunnel the packet to the IPv4 address they
    /// carry, and nothing legitimate uses them.
    Ipv4Compatible,
    /// Teredo `2001::/32`. A Teredo address names a client behind a NAT, never a server; a
    /// host running a Teredo client sends to the obfuscated IPv4 address and port the
    /// address carries, which the requester chooses freely.
    Teredo,
    /// The local-use NAT64 block `64:ff9b:1::/48` (RFC 8215) when no configured NAT64
    /// prefix covers the address: the position of the embedded IPv4 address depends on a
    /// prefix length only the local network knows, so it cannot be checked.
    Nat64LocalUse,
    /// One of the edge's own addresses (its interfaces, its listening addresses).
    Own,
}

impl AddressClass {
    /// A short noun phrase for logs and error messages.
    pub const fn description(self) -> &'static str {
        match self {
            Self::Unspecified => "the unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private-use address (RFC 1918)",
            Self::SharedCgnat => "a shared carrier-grade NAT address (RFC 6598)",
            Self::LinkLocal => "a link-local address",
            Self::CloudMetadata => "a cloud metadata service address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the limited broadcast address",
            Self::Reserved => "a reserved or special-purpose address",
            Self::Benchmarking => "a benchmarking address",
            Self::Documentation => "a documentation address",
            Self::UniqueLocal => "a unique-local or site-local address",
            Self::Ipv4Compatible => "a deprecated IPv4-compatible IPv6 address",
            Self::Teredo => "a Teredo address",
            Self::Nat64LocalUse => "a local-use NAT64 address with no configured prefix",
            Self::Own => "one of the edge's own addresses",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// One row of an address table: a prefix and the class of its addresses.
struct Block<A> {
    net: A,
    len: u8,
    class: AddressClass,
}

const fn v4(net: [u8; 4], len: u8, class: AddressClass) -> Block<Ipv4Addr> {
    Block {
        net: Ipv4Addr::new(net[0], net[1], net[2], net[3]),
        len,
        class,
    }
}

const fn v6(net: [u16; 8], len: u8, class: AddressClass) -> Block<Ipv6Addr> {
    Block {
        net: Ipv6Addr::new(
            net[0], net[1], net[2], net[3], net[4], net[5], net[6], net[7],
        ),
        len,
        class,
    }
}

use AddressClass::{
    Benchmarking, Broadcast, CloudMetadata, Documentation, Ipv4Compatible, LinkLocal, Loopback,
    Multicast, Nat64LocalUse, Private, Reserved, SharedCgnat, Teredo, UniqueLocal, Unspecified,
};

/// The IPv4 table. The first matching row wins, so single addresses precede the blocks
/// that hold them.
const IPV4_BLOCKS: &[Block<Ipv4Addr>] = &[
    v4([0, 0, 0, 0], 32, Unspecified),
    v4([0, 0, 0, 0], 8, Reserved),
    v4([10, 0, 0, 0], 8, Private),
    v4([100, 100, 100, 200], 32, CloudMetadata),
    //# RFC 6598 §4: "Packets with Shared Address Space source or destination addresses
    //# MUST NOT be forwarded across Service Provider boundaries."
    v4([100, 64, 0, 0], 10, SharedCgnat),
    v4([127, 0, 0, 0], 8, Loopback),
    v4([168, 63, 129, 16], 32, CloudMetadata),
    v4([169, 254, 169, 254], 32, CloudMetadata),
    v4([169, 254, 170, 2], 32, CloudMetadata),
    v4([169, 254, 170, 23], 32, CloudMetadata),
    v4([169, 254, 0, 0], 16, LinkLocal),
    v4([172, 16, 0, 0], 12, Private),
    v4([192, 0, 0, 0], 24, Reserved),
    v4([192, 0, 2, 0], 24, Documentation),
    v4([192, 88, 99, 0], 24, Reserved),
    v4([192, 168, 0, 0], 16, Private),
    v4([198, 18, 0, 0], 15, Benchmarking),
    v4([198, 51, 100, 0], 24, Documentation),
    v4([203, 0, 113, 0], 24, Documentation),
    v4([224, 0, 0, 0], 4, Multicast),
    v4([255, 255, 255, 255], 32, Broadcast),
    v4([240, 0, 0, 0], 4, Reserved),
];

/// The IPv6 table, first match wins. IPv4-mapped, NAT64 and 6to4 addresses never reach
/// it: they are checked as the IPv4 address they carry.
const IPV6_BLOCKS: &[Block<Ipv6Addr>] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, Unspecified),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, Loopback),
    //# RFC 4291 §2.5.5.1: "The "IPv4-Compatible IPv6 address" is now deprecated because
    //# the current IPv6 transition mechanisms no longer use these addresses."
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96, Ipv4Compatible),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Nat64LocalUse),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Reserved),
    //# RFC 4380 §2.6: "Global Teredo IPv6 Service Prefix: An IPv6 addressing prefix whose
    //# value is 2001:0000:/32."
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, Teredo),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, Benchmarking),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, Reserved),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, Reserved),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Documentation),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Documentation),
    v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128, CloudMetadata),
    v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23], 128, CloudMetadata),
    v6([0xfe80, 0, 0, 0, 0, 0, 0xa9fe, 0xa9fe], 128, CloudMetadata),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, UniqueLocal),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, UniqueLocal),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
];

/// Global unicast, `2000::/3`: the only IPv6 space IANA allocates for the Internet.
const GLOBAL_UNICAST: Block<Ipv6Addr> = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3, Reserved);

/// The class of an IPv4 address, or `None` if it is an ordinary public address.
pub(super) fn class_v4(addr: Ipv4Addr) -> Option<AddressClass> {
    let bits = addr.to_bits();
    IPV4_BLOCKS
        .iter()
        .find(|block| bits & mask_v4(block.len) == block.net.to_bits())
        .map(|block| block.class)
}

/// The class of an IPv6 address that carries no IPv4 address, or `None` if it is an
/// ordinary global unicast address.
pub(super) fn class_v6(addr: Ipv6Addr) -> Option<AddressClass> {
    let bits = addr.to_bits();
    let within = |block: &Block<Ipv6Addr>| bits & mask_v6(block.len) == block.net.to_bits();
    match IPV6_BLOCKS.iter().find(|block| within(block)) {
        Some(block) => Some(block.class),
        None if within(&GLOBAL_UNICAST) => None,
        None => Some(Reserved),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class4(text: &str) -> Option<AddressClass> {
        class_v4(text.parse().expect("IPv4"))
    }

    fn class6(text: &str) -> Option<AddressClass> {
        class_v6(text.parse().expect("IPv6"))
    }

    #[test]
    fn ipv4_blocks_and_their_edges() {
        let cases = [
            ("0.0.0.0", Some(Unspecified)),
            ("0.0.0.1", Some(Reserved)),
            ("0.255.255.255", Some(Reserved)),
            ("1.0.0.0", None),
            ("9.255.255.255", None),
            ("10.0.0.0", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("11.0.0.0", None),
            ("100.63.255.255", None),
            ("100.64.0.0", Some(SharedCgnat)),
            ("100.127.255.255", Some(SharedCgnat)),
            ("100.100.100.200", Some(CloudMetadata)),
            ("100.128.0.0", None),
            ("126.255.255.255", None),
            ("127.0.0.0", Some(Loopback)),
            ("127.255.255.255", Some(Loopback)),
            ("128.0.0.0", None),
            ("168.63.129.16", Some(CloudMetadata)),
            ("168.63.129.17", None),
            ("169.254.0.0", Some(LinkLocal)),
            ("169.254.169.254", Some(CloudMetadata)),
            ("169.254.169.253", Some(LinkLocal)),
            ("169.254.170.2", Some(CloudMetadata)),
            ("169.254.170.23", Some(CloudMetadata)),
            ("169.254.255.255", Some(LinkLocal)),
            ("169.255.0.0", None),
            ("172.15.255.255", None),
            ("172.16.0.0", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.0", None),
            ("192.0.0.9", Some(Reserved)),
            ("192.0.1.0", None),
            ("192.0.2.1", Some(Documentation)),
            ("192.88.99.1", Some(Reserved)),
            ("192.167.255.255", None),
            ("192.168.0.0", Some(Private)),
            ("192.168.255.255", Some(Private)),
            ("192.169.0.0", None),
            ("198.17.255.255", None),
            ("198.18.0.0", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("198.20.0.0", None),
            ("198.51.100.1", Some(Documentation)),
            ("203.0.113.1", Some(Documentation)),
            ("223.255.255.255", None),
            ("224.0.0.0", Some(Multicast)),
            ("239.255.255.255", Some(Multicast)),
            ("240.0.0.0", Some(Reserved)),
            ("255.255.255.254", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
        ];
        for (addr, class) in cases {
            assert_eq!(class4(addr), class, "{addr}");
        }
    }

    #[test]
    fn ipv6_blocks_and_their_edges() {
        let cases = [
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::2", Some(Ipv4Compatible)),
            ("::7f00:1", Some(Ipv4Compatible)),
            ("::1:0:0:0", Some(Reserved)),
            ("::ffff:0:0:1", Some(Reserved)),
            ("64:ff9b:1::a00:1", Some(Nat64LocalUse)),
            ("64:ff9b:2::", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("100:0:0:1::", Some(Reserved)),
            ("2001::1", Some(Teredo)),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Some(Teredo)),
            ("2001:1::1", None),
            ("2001:2::1", Some(Benchmarking)),
            ("2001:2:1::", None),
            ("2001:10::1", Some(Reserved)),
            ("2001:2f::1", Some(Reserved)),
            ("2001:30::1", None),
            ("2001:db8::1", Some(Documentation)),
            ("2001:db9::1", None),
            ("2001:4860:4860::8888", None),
            ("2606:4700::1111", None),
            ("3fff::1", Some(Documentation)),
            ("3fff:fff::1", Some(Documentation)),
            ("3fff:1000::1", None),
            ("3fff:ffff::1", None),
            ("4000::1", Some(Reserved)),
            ("1fff::1", Some(Reserved)),
            ("5f00::1", Some(Reserved)),
            ("fc00::1", Some(UniqueLocal)),
            ("fdff::1", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(CloudMetadata)),
            ("fd00:ec2::23", Some(CloudMetadata)),
            ("fd00:ec2::253", Some(UniqueLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("fe80::a9fe:a9fe", Some(CloudMetadata)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(UniqueLocal)),
            ("ff02::1", Some(Multicast)),
            ("ff0e::1", Some(Multicast)),
        ];
        for (addr, class) in cases {
            assert_eq!(class6(addr), class, "{addr}");
        }
    }

    #[test]
    fn descriptions_read_as_phrases() {
        assert_eq!(Private.to_string(), "a private-use address (RFC 1918)");
        assert_eq!(
            AddressClass::Own.to_string(),
            "one of the edge's own addresses"
        );
        assert_eq!(
            CloudMetadata.to_string(),
            "a cloud metadata service address"
        );
    }
}

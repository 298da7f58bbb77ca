//! ICMP and ICMPv6 error messages about packets the edge cannot deliver, and the rules on
//! when they may be sent.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::encode::{ipv4_header, ipv6_header};
use super::packet::{IPV4_HEADER_LEN, IPV6_HEADER_LEN, IpPacket, IpVersion, ipv6_addresses};
use super::transport::{Transport, is_icmp_error};
use super::{checksum, protocol};
use crate::cursor::Writer;
use crate::error::BufferTooSmall;

/// Largest ICMPv4 error packet [`encode_icmpv4_error`] writes, IP header included.
//# RFC 1812 §4.3.2.3: "the ICMP datagram SHOULD contain as much of the original datagram as
//# possible without the length of the ICMP datagram exceeding 576 bytes."
pub const ICMPV4_ERROR_MAX_LEN: usize = 576;

/// Largest ICMPv6 error packet [`encode_icmpv6_error`] writes: the IPv6 minimum MTU.
//# RFC 4443 §2.4: "(c) Every ICMPv6 error message (type < 128) MUST include as much of the
//# IPv6 offending (invoking) packet (the packet that caused the error) as possible without
//# making the error message packet exceed the minimum IPv6 MTU [IPv6]."
pub const ICMPV6_ERROR_MAX_LEN: usize = 1280;

const ICMP_HEADER_LEN: usize = 8;

/// An ICMPv4 error message (RFC 792).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Error {
    /// Destination Unreachable (type 3).
    DestinationUnreachable(Icmpv4Unreachable),
    /// Time Exceeded, TTL exceeded in transit (type 11, code 0).
    TimeExceeded,
}

/// Why an IPv4 destination is unreachable: the Destination Unreachable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Unreachable {
    /// Net unreachable (code 0).
    Network,
    /// Host unreachable (code 1).
    Host,
    /// Protocol unreachable (code 2).
    Protocol,
    /// Port unreachable (code 3).
    Port,
    /// Fragmentation needed and DF set (code 4), with the MTU of the next hop.
    //# RFC 1191 §4: "the router MUST include the MTU of that next-hop network in the low-order
    //# 16 bits of the ICMP header field that is labelled "unused" in the ICMP specification
    //# [7]. The high-order 16 bits remain unused, and MUST be set to zero."
    FragmentationNeeded {
        /// The largest packet the next hop carries.
        next_hop_mtu: u16,
    },
    /// Communication administratively prohibited (code 13, RFC 1812 §5.2.7.1).
    AdministrativelyProhibited,
}

impl Icmpv4Error {
    /// Type, code and header bytes 4 to 7.
    const fn fields(self) -> (u8, u8, [u8; 4]) {
        match self {
            Self::DestinationUnreachable(reason) => {
                let (code, rest) = match reason {
                    Icmpv4Unreachable::Network => (0, [0; 4]),
                    Icmpv4Unreachable::Host => (1, [0; 4]),
                    Icmpv4Unreachable::Protocol => (2, [0; 4]),
                    Icmpv4Unreachable::Port => (3, [0; 4]),
                    Icmpv4Unreachable::FragmentationNeeded { next_hop_mtu } => {
                        let [hi, lo] = next_hop_mtu.to_be_bytes();
                        (4, [0, 0, hi, lo])
                    }
                    Icmpv4Unreachable::AdministrativelyProhibited => (13, [0; 4]),
                };
                (3, code, rest)
            }
            Self::TimeExceeded => (11, 0, [0; 4]),
        }
    }
}

/// An ICMPv6 error message (RFC 4443 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Error {
    /// Destination Unreachable (type 1).
    DestinationUnreachable(Icmpv6Unreachable),
    /// Packet Too Big (type 2), with the MTU of the next hop.
    PacketTooBig {
        /// The Maximum Transmission Unit of the next-hop link.
        mtu: u32,
    },
    /// Time Exceeded, hop limit exceeded in transit (type 3, code 0).
    TimeExceeded,
}

/// Why an IPv6 destination is unreachable: the Destination Unreachable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Unreachable {
    /// No route to destination (code 0).
    NoRoute,
    /// Communication with destination administratively prohibited (code 1).
    AdministrativelyProhibited,
    /// Beyond scope of source address (code 2).
    BeyondScope,
    /// Address unreachable (code 3).
    Address,
    /// Port unreachable (code 4).
    Port,
    /// Source address failed ingress/egress policy (code 5).
    SourcePolicyFailed,
    /// Reject route to destination (code 6).
    RejectRoute,
}

impl Icmpv6Error {
    /// Type, code and header bytes 4 to 7.
    const fn fields(self) -> (u8, u8, [u8; 4]) {
        match self {
            Self::DestinationUnreachable(reason) => {
                let code = match reason {
                    Icmpv6Unreachable::NoRoute => 0,
                    Icmpv6Unreachable::AdministrativelyProhibited => 1,
                    Icmpv6Unreachable::BeyondScope => 2,
                    Icmpv6Unreachable::Address => 3,
                    Icmpv6Unreachable::Port => 4,
                    Icmpv6Unreachable::SourcePolicyFailed => 5,
                    Icmpv6Unreachable::RejectRoute => 6,
                };
                (1, code, [0; 4])
            }
            Self::PacketTooBig { mtu } => (2, 0, mtu.to_be_bytes()),
            Self::TimeExceeded => (3, 0, [0; 4]),
        }
    }
}

/// Why an ICMP error message was not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeIcmpError {
    /// The output buffer cannot hold the message ([`icmp_error_len`] tells how much it needs).
    BufferTooSmall(BufferTooSmall),
    /// The offending packet is of the other IP version.
    VersionMismatch,
    /// The rules of [`may_send_icmp_error_for`] forbid an error about this packet.
    Suppressed,
    /// An echo's data does not fit in one IP packet of its version.
    PayloadTooLarge {
        /// The data's length.
        len: usize,
        /// The most this IP version can carry.
        max: usize,
    },
}

impl From<BufferTooSmall> for EncodeIcmpError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall(e)
    }
}

impl fmt::Display for EncodeIcmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall(e) => e.fmt(f),
            Self::VersionMismatch => {
                f.write_str("ICMP error and offending packet are of different IP versions")
            }
            Self::Suppressed => f.write_str("no ICMP error may be sent about this packet"),
            Self::PayloadTooLarge { len, max } => {
                write!(
                    f,
                    "ICMP echo data of {len} bytes exceeds the maximum of {max}"
                )
            }
        }
    }
}

impl core::error::Error for EncodeIcmpError {}

/// Length of the ICMP error message about `invoking`: headers plus as much of the packet as
/// fits in [`ICMPV4_ERROR_MAX_LEN`] or [`ICMPV6_ERROR_MAX_LEN`].
pub fn icmp_error_len(invoking: &IpPacket<'_>) -> usize {
    headers_len(invoking.version()) + quote(invoking).len()
}

/// Length of the IP and ICMP headers of an error message.
const fn headers_len(version: IpVersion) -> usize {
    match version {
        IpVersion::V4 => IPV4_HEADER_LEN + ICMP_HEADER_LEN,
        IpVersion::V6 => IPV6_HEADER_LEN + ICMP_HEADER_LEN,
    }
}

/// The start of `invoking` that fits in an error message about it.
fn quote<'a>(invoking: &IpPacket<'a>) -> &'a [u8] {
    let max = match invoking.version() {
        IpVersion::V4 => ICMPV4_ERROR_MAX_LEN,
        IpVersion::V6 => ICMPV6_ERROR_MAX_LEN,
    };
    let bytes = invoking.as_bytes();
    bytes
        .get(..max - headers_len(invoking.version()))
        .unwrap_or(bytes)
}

/// Writes an ICMPv4 error message from `source` about the IPv4 packet `invoking`, to its
/// sender, into `out`. Returns the message's length, [`icmp_error_len`].
///
/// The message quotes `invoking` as received (including its TTL, which a router does not
/// decrement for a packet it drops), as much of it as fits in [`ICMPV4_ERROR_MAX_LEN`]
/// bytes. Fails with [`EncodeIcmpError::Suppressed`] where [`may_send_icmp_error_for`] says
/// no.
//# RFC 1122 §3.2.2: "Every ICMP error message includes the Internet header and at least the
//# first 8 data octets of the datagram that triggered the error; more than 8 octets MAY be
//# sent; this header and data MUST be unchanged from the received datagram."
//# RFC 1122 §3.2.2: "An ICMP error message SHOULD be sent with normal (i.e., zero) TOS bits."
pub fn encode_icmpv4_error(
    out: &mut [u8],
    source: Ipv4Addr,
    invoking: &IpPacket<'_>,
    message: Icmpv4Error,
) -> Result<usize, EncodeIcmpError> {
    let IpAddr::V4(destination) = invoking.source() else {
        return Err(EncodeIcmpError::VersionMismatch);
    };
    if !may_send_icmp_error_for(invoking) {
        return Err(EncodeIcmpError::Suppressed);
    }
    let quote = quote(invoking);
    let total = headers_len(IpVersion::V4) + quote.len();
    let mut w = Writer::new(out);
    w.reserve(total)?;
    let (icmp_type, code, rest) = message.fields();
    let mut icmp = icmp_header(icmp_type, code, rest);
    let sum = checksum::sum(&icmp).add_slice(quote);
    icmp[2..4].copy_from_slice(&checksum::field(&sum));
    w.bytes(&ipv4_header(
        len_u16(total),
        protocol::ICMP,
        source,
        destination,
    ))?;
    w.bytes(&icmp)?;
    w.bytes(quote)?;
    Ok(w.finish())
}

/// Writes an ICMPv6 error message from `source` about the IPv6 packet `invoking`, to its
/// sender, into `out`. Returns the message's length, [`icmp_error_len`].
///
/// The message quotes `invoking` as received, as much of it as fits in
/// [`ICMPV6_ERROR_MAX_LEN`] bytes. Fails with [`EncodeIcmpError::Suppressed`] where
/// [`may_send_icmp_error_for`] says no, except that Packet Too Big may answer a packet sent
/// to a multicast address.
pub fn encode_icmpv6_error(
    out: &mut [u8],
    source: Ipv6Addr,
    invoking: &IpPacket<'_>,
    message: Icmpv6Error,
) -> Result<usize, EncodeIcmpError> {
    let IpAddr::V6(destination) = invoking.source() else {
        return Err(EncodeIcmpError::VersionMismatch);
    };
    let packet_too_big = matches!(message, Icmpv6Error::PacketTooBig { .. });
    if !may_send(invoking, packet_too_big) {
        return Err(EncodeIcmpError::Suppressed);
    }
    let quote = quote(invoking);
    let icmp_len = ICMP_HEADER_LEN + quote.len();
    let mut w = Writer::new(out);
    w.reserve(IPV6_HEADER_LEN + icmp_len)?;
    let ip = ipv6_header(len_u16(icmp_len), protocol::ICMPV6, source, destination);
    let (icmp_type, code, rest) = message.fields();
    let mut icmp = icmp_header(icmp_type, code, rest);
    // RFC 4443 §2.3: the checksum covers a pseudo header and the whole ICMPv6 message.
    let sum = checksum::pseudo_header(ipv6_addresses(&ip), protocol::ICMPV6, icmp_len)
        .add_slice(&icmp)
        .add_slice(quote);
    icmp[2..4].copy_from_slice(&checksum::field(&sum));
    w.bytes(&ip)?;
    w.bytes(&icmp)?;
    w.bytes(quote)?;
    Ok(w.finish())
}

/// Writes an ICMP echo reply (ICMPv4 type 0, ICMPv6 type 129, code 0) from `source` to
/// `destination`, with `identifier`, `sequence` and `data`, in an IPv4 or IPv6 packet as
/// the addresses are, into `out`. Returns the packet's length.
///
/// The edge's way back into the tunnel for a decapsulated ping: the reply a ping socket
/// returned, rebuilt with the client's identifier. The checksum is computed here: over the
/// message for ICMPv4, over the pseudo header and the message for ICMPv6.
//# RFC 792: "The data received in the echo message must be returned in the echo reply
//# message."
//# RFC 4443 §2.3: "The checksum is the 16-bit one's complement of the one's complement sum
//# of the entire ICMPv6 message, starting with the ICMPv6 message type field, and prepended
//# with a "pseudo-header" of IPv6 header fields"
pub fn encode_icmp_echo_reply(
    out: &mut [u8],
    source: IpAddr,
    destination: IpAddr,
    identifier: u16,
    sequence: u16,
    data: &[u8],
) -> Result<usize, EncodeIcmpError> {
    let [i0, i1] = identifier.to_be_bytes();
    let [s0, s1] = sequence.to_be_bytes();
    let rest = [i0, i1, s0, s1];
    let icmp_len = ICMP_HEADER_LEN + data.len();
    match (source, destination) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => {
            let max = usize::from(u16::MAX) - IPV4_HEADER_LEN - ICMP_HEADER_LEN;
            if data.len() > max {
                return Err(EncodeIcmpError::PayloadTooLarge {
                    len: data.len(),
                    max,
                });
            }
            let total = IPV4_HEADER_LEN + icmp_len;
            let mut w = Writer::new(out);
            w.reserve(total)?;
            let mut icmp = icmp_header(0, 0, rest);
            let sum = checksum::sum(&icmp).add_slice(data);
            icmp[2..4].copy_from_slice(&checksum::field(&sum));
            w.bytes(&ipv4_header(
                len_u16(total),
                protocol::ICMP,
                source,
                destination,
            ))?;
            w.bytes(&icmp)?;
            w.bytes(data)?;
            Ok(w.finish())
        }
        (IpAddr::V6(source), IpAddr::V6(destination)) => {
            let max = usize::from(u16::MAX) - ICMP_HEADER_LEN;
            if data.len() > max {
                return Err(EncodeIcmpError::PayloadTooLarge {
                    len: data.len(),
                    max,
                });
            }
            let mut w = Writer::new(out);
            w.reserve(IPV6_HEADER_LEN + icmp_len)?;
            let ip = ipv6_header(len_u16(icmp_len), protocol::ICMPV6, source, destination);
            let mut icmp = icmp_header(129, 0, rest);
            let sum = checksum::pseudo_header(ipv6_addresses(&ip), protocol::ICMPV6, icmp_len)
                .add_slice(&icmp)
                .add_slice(data);
            icmp[2..4].copy_from_slice(&checksum::field(&sum));
            w.bytes(&ip)?;
            w.bytes(&icmp)?;
            w.bytes(data)?;
            Ok(w.finish())
        }
        _ => Err(EncodeIcmpError::VersionMismatch),
    }
}

/// An ICMP header with its checksum zeroed.
const fn icmp_header(icmp_type: u8, code: u8, [r0, r1, r2, r3]: [u8; 4]) -> [u8; ICMP_HEADER_LEN] {
    [icmp_type, code, 0, 0, r0, r1, r2, r3]
}

/// A length checked against 65535 by the caller, as a header field.
fn len_u16(len: usize) -> u16 {
    // Saturating is never reached: error messages are at most 1280 bytes, echo replies
    // checked against the 16-bit fields.
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// Whether an ICMP error message may be sent about `packet`.
///
/// No, if the packet is itself an ICMP error (or an ICMPv6 Redirect, or a first fragment
/// of one, or a fragment too short to tell), is a fragment other than the first, is sent to
/// a multicast or limited-broadcast address, or comes from a source that is not one host:
/// unspecified or zero network, loopback, multicast, limited broadcast or class E. The
/// link-layer broadcast and multicast rules have no counterpart in a tunnel; directed
/// broadcast and anycast addresses depend on subnets only the engine knows. The IPv6
/// exception for Packet Too Big is applied by [`encode_icmpv6_error`].
//# RFC 1122 §3.2.2: "An ICMP error message MUST NOT be sent as the result of receiving: an
//# ICMP error message, or a datagram destined to an IP broadcast or IP multicast address, or
//# a datagram sent as a link-layer broadcast, or a non-initial fragment, or a datagram whose
//# source address does not define a single host -- e.g., a zero address, a loopback address,
//# a broadcast address, a multicast address, or a Class E address."
//# RFC 4443 §2.4: "(e) An ICMPv6 error message MUST NOT be originated as a result of
//# receiving the following: (e.1) An ICMPv6 error message. (e.2) An ICMPv6 redirect message
//# [IPv6-DISC]. (e.3) A packet destined to an IPv6 multicast address. (There are two
//# exceptions to this rule: (1) the Packet Too Big Message (Section 3.2) to allow Path MTU
//# discovery to work for IPv6 multicast, and (2) the Parameter Problem Message, Code 2
//# (Section 3.4) reporting an unrecognized IPv6 option (see Section 4.2 of [IPv6]) that has
//# the Option Type highest-order two bits set to 10). [...] (e.6) A packet whose source
//# address does not uniquely identify a single node -- e.g., the IPv6 Unspecified Address,
//# an IPv6 multicast address, or an address known by the ICMP message originator to be an
//# IPv6 anycast address."
pub fn may_send_icmp_error_for(packet: &IpPacket<'_>) -> bool {
    may_send(packet, false)
}

/// [`may_send_icmp_error_for`], letting an IPv6 Packet Too Big answer a multicast packet.
fn may_send(packet: &IpPacket<'_>, packet_too_big: bool) -> bool {
    // RFC 4443 keeps no rule on fragments, but a later fragment of an ICMPv6 error cannot be
    // told apart from other data, so IPv6 follows RFC 1122 here too.
    let first_piece = packet.fragment().is_none_or(|fragment| fragment.is_first());
    let multicast_allowed = packet_too_big && packet.version() == IpVersion::V6;
    first_piece
        && !carries_icmp_error(packet)
        && (multicast_allowed || !is_group_destination(packet.destination()))
        && is_single_host(packet.source())
}

/// Whether `packet` is, or starts, an ICMP error message or an ICMPv6 Redirect.
fn carries_icmp_error(packet: &IpPacket<'_>) -> bool {
    match packet.transport() {
        Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp) => {
            forbids_error_reply(packet.version(), icmp.icmp_type())
        }
        Transport::Fragment => first_fragment_carries_icmp_error(packet),
        Transport::Udp(_) | Transport::Tcp(_) | Transport::Other => false,
    }
}

/// Whether no ICMP error may answer an ICMP message of `icmp_type`: an error, or an ICMPv6
/// Redirect (type 137, RFC 4861 §4.5).
const fn forbids_error_reply(version: IpVersion, icmp_type: u8) -> bool {
    is_icmp_error(version, icmp_type) || matches!((version, icmp_type), (IpVersion::V6, 137))
}

/// For a first fragment, whether its data starts an ICMP error; a fragment too short to
/// hold the type counts as one.
fn first_fragment_carries_icmp_error(packet: &IpPacket<'_>) -> bool {
    let icmp = match packet.version() {
        IpVersion::V4 => protocol::ICMP,
        IpVersion::V6 => protocol::ICMPV6,
    };
    packet.protocol() == icmp
        && packet
            .payload()
            .first()
            .is_none_or(|&icmp_type| forbids_error_reply(packet.version(), icmp_type))
}

/// Whether `destination` names a group: IPv4 limited broadcast or multicast, IPv6
/// multicast. (Directed broadcast addresses depend on subnets this layer does not know.)
fn is_group_destination(destination: IpAddr) -> bool {
    match destination {
        IpAddr::V4(address) => address.is_broadcast() || address.is_multicast(),
        IpAddr::V6(address) => address.is_multicast(),
    }
}

/// Whether `source` can be one host. IPv6 loopback is refused like IPv4 loopback: it never
/// legitimately arrives from outside the node.
fn is_single_host(source: IpAddr) -> bool {
    match source {
        IpAddr::V4(address) => {
            let [first, ..] = address.octets();
            // 0/8 is the zero network (RFC 1812 §4.3.2.7: "a network prefix of zero"); 224/4
            // multicast; 240/4 class E, limited broadcast included.
            first != 0 && !address.is_loopback() && first < 224
        }
        IpAddr::V6(address) => {
            !address.is_unspecified() && !address.is_loopback() && !address.is_multicast()
        }
    }
}

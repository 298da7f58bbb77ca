//! IPv4 and IPv6 packet views and builders, for CONNECT-IP decapsulation (RFC 9484).
//!
//! The edge receives whole IP packets in HTTP Datagrams and turns the UDP and TCP ones into
//! flows. [`IpPacket::new_checked`] validates a packet once, without copying or allocating,
//! and hands back a borrowing view: version, addresses, hop limit, the upper-layer protocol
//! found after the IPv6 extension headers, fragment information, a typed [`Transport`] view
//! and a [`FlowKey`]. The builders write into caller buffers: UDP in IPv4 or IPv6
//! ([`encode_udp`], [`encode_udp_in_place`] for payloads already placed behind headroom) and
//! ICMP errors that quote the offending packet ([`encode_icmpv4_error`],
//! [`encode_icmpv6_error`], gated by [`may_send_icmp_error_for`]). [`decrement_hop_limit`]
//! forwards a packet in place.
//!
//! # Decisions
//!
//! - **Trailing bytes** after the length the IP header announces (IPv4 Total Length, IPv6
//!   Payload Length) are ignored, as every IP stack ignores link-layer padding:
//!   [`IpPacket::as_bytes`] is the packet proper. An engine that wants to count or refuse
//!   padded datagrams compares its length with the buffer's. Likewise bytes after the UDP
//!   Length are not part of the UDP payload.
//! - **The IPv4 header checksum is verified**; transport checksums are not (that would touch
//!   every payload byte, and packets that arrived in QUIC datagrams are already
//!   integrity-protected). Each transport view has a `checksum_valid` helper; an IPv4 UDP
//!   checksum of 0 ("none") passes, an IPv6 one fails. The pseudo header uses the IPv6
//!   header's destination, not a Routing header's final one: packets still routed through
//!   other hops are not for the edge anyway.
//! - **Fragments are not reassembled.** Any fragment, first or not, has
//!   [`Transport::Fragment`] and no flow key; [`IpPacket::fragment`] says which piece it is.
//!   An IPv6 atomic fragment (offset 0, no more fragments) is a whole packet. Two IPv6
//!   Fragment headers in one packet are refused.
//! - **The extension-header walk is bounded** by [`MAX_EXTENSION_HEADERS`]. It walks
//!   Hop-by-Hop Options (first only), Routing, Fragment, Destination Options and
//!   Authentication headers (the last in IPv4 too); it stops at a non-first fragment, whose
//!   data is not headers. ESP and every other number is the upper-layer protocol
//!   ([`Transport::Other`]).
//! - **IPv6 jumbograms** (RFC 2675) are not supported: a Payload Length of 0 means an empty
//!   payload.
//! - **Errors** are veil's own [`ParseError`], one variant per malformation, each carrying
//!   the offending field where there is one.
//! - **ICMP errors** quote the offending packet as received, as much as fits in 576 bytes
//!   for ICMPv4 (RFC 1812, more than RFC 792's header and 8 bytes) and in 1280 for ICMPv6
//!   (RFC 4443). The builders refuse ([`EncodeIcmpError::Suppressed`]) what
//!   [`may_send_icmp_error_for`] forbids, so the rules cannot be skipped by mistake; rate
//!   limiting (RFC 4443 §2.4 (f)) is the engine's, which has the clock.
//! - **The hop-limit decrement** updates the IPv4 checksum incrementally (RFC 1624) rather
//!   than recomputing it: two additions, and a corrupted header stays detectably corrupted.
//! - **Built packets** carry hop limit [`DEFAULT_HOP_LIMIT`], zero DSCP/ECN and flow label;
//!   IPv4 ones are atomic (Don't Fragment set, Identification 0).
//!
//! # etherparse
//!
//! etherparse does the Internet checksum summation (`etherparse::checksum`), and the tests
//! use its slicers and builders as an independent oracle. The views do their own slicing,
//! because etherparse's `IpSlice` follows rules that differ from the ones above: it reads an
//! IPv6 Payload Length of 0 as "the rest of the buffer", walks on past the Fragment header of
//! a non-first fragment (whose data it then parses as headers), has no bound on the walk and
//! does not expose the IPv6 fragment offset; its `UdpSlice` reads a UDP Length of 0 as "the
//! rest", and `Icmpv4Slice` refuses timestamp messages of unusual length. Its header-level
//! slices would only replace two or three comparisons per header with an error mapping. So no
//! etherparse type appears in this module's API, and none of its errors need mapping.

// "ICMPv4" and "ICMPv6" are protocol names in prose, not code to put in backticks.
#![allow(clippy::doc_markdown)]

mod checksum;
mod encode;
mod error;
mod hop_limit;
mod icmp;
mod packet;
mod transport;
mod udp;

pub use error::ParseError;
pub use hop_limit::{HopLimitError, decrement_hop_limit};
pub use icmp::{
    EncodeIcmpError, ICMPV4_ERROR_MAX_LEN, ICMPV6_ERROR_MAX_LEN, Icmpv4Error, Icmpv4Unreachable,
    Icmpv6Error, Icmpv6Unreachable, encode_icmp_echo_reply, encode_icmpv4_error,
    encode_icmpv6_error, icmp_error_len, may_send_icmp_error_for,
};
pub use packet::{Fragment, IpPacket, IpVersion, MAX_EXTENSION_HEADERS};
pub use transport::{FlowKey, FlowProtocol, IcmpView, TcpFlags, TcpView, Transport, UdpView};
pub use udp::{EncodeUdpError, encode_udp, encode_udp_in_place, udp_headroom};

/// Hop limit (IPv4 TTL) of every packet the builders write.
pub const DEFAULT_HOP_LIMIT: u8 = 64;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers") this module knows.
pub mod protocol {
    /// IPv6 Hop-by-Hop Options (RFC 8200 §4.3).
    pub const HOP_BY_HOP: u8 = 0;
    /// ICMP for IPv4 (RFC 792).
    pub const ICMP: u8 = 1;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// IPv6 Routing header (RFC 8200 §4.4).
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment header (RFC 8200 §4.5).
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating Security Payload (RFC 4303); its contents are opaque.
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302).
    pub const AUTHENTICATION: u8 = 51;
    /// ICMP for IPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// IPv6 "No Next Header" (RFC 8200 §4.7).
    pub const NO_NEXT_HEADER: u8 = 59;
    /// IPv6 Destination Options (RFC 8200 §4.6).
    pub const DESTINATION_OPTIONS: u8 = 60;
}

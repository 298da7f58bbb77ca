//! Forwarding a packet in place: the TTL / Hop Limit decrement.

use core::fmt;

use super::checksum;
use super::packet::{IPV4_HEADER_LEN, IPV6_HEADER_LEN};

/// Why [`decrement_hop_limit`] left the packet unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HopLimitError {
    /// The TTL or Hop Limit is 0 or 1: forwarding would send it out as 0. Drop the packet
    /// and answer with Time Exceeded ([`Icmpv4Error::TimeExceeded`],
    /// [`Icmpv6Error::TimeExceeded`]) if [`may_send_icmp_error_for`] allows.
    ///
    /// [`Icmpv4Error::TimeExceeded`]: super::Icmpv4Error::TimeExceeded
    /// [`Icmpv6Error::TimeExceeded`]: super::Icmpv6Error::TimeExceeded
    /// [`may_send_icmp_error_for`]: super::may_send_icmp_error_for
    Expired,
    /// The buffer is shorter than the fixed IP header.
    Truncated,
    /// The version nibble is neither 4 nor 6.
    UnsupportedVersion(u8),
}

impl fmt::Display for HopLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired => f.write_str("hop limit exceeded in transit"),
            Self::Truncated => f.write_str("buffer shorter than an IP header"),
            Self::UnsupportedVersion(version) => write!(f, "unsupported IP version {version}"),
        }
    }
}

impl core::error::Error for HopLimitError {}

/// Decrements the IPv4 TTL or IPv6 Hop Limit of the packet in `packet`, updating the IPv4
/// header checksum, and returns the new value.
///
/// Meant for a packet [`IpPacket::new_checked`](super::IpPacket::new_checked) accepted:
/// only the version and the fixed header's length are checked again. The IPv4 checksum is
/// updated incrementally (RFC 1624), so a header that was corrupt stays detectably corrupt.
/// On error nothing is written.
//# RFC 1812 §4.2.2.9: "A router MUST NOT originate or forward a datagram with a Time-to-Live
//# (TTL) value of zero."
//# RFC 4443 §3.3: "If a router receives a packet with a Hop Limit of zero, or if a router
//# decrements a packet's Hop Limit to zero, it MUST discard the packet and originate an
//# ICMPv6 Time Exceeded message with Code 0 to the source of the packet."
pub fn decrement_hop_limit(packet: &mut [u8]) -> Result<u8, HopLimitError> {
    match packet.first().map(|first| first >> 4) {
        Some(4) => decrement_ipv4_ttl(packet),
        Some(6) => decrement_ipv6_hop_limit(packet),
        Some(version) => Err(HopLimitError::UnsupportedVersion(version)),
        None => Err(HopLimitError::Truncated),
    }
}

//# RFC 1812 §4.2.2.5: "A router MAY use incremental IP header checksum updating when the only
//# change to the IP header is the time to live."
fn decrement_ipv4_ttl(packet: &mut [u8]) -> Result<u8, HopLimitError> {
    let header = packet
        .first_chunk_mut::<IPV4_HEADER_LEN>()
        .ok_or(HopLimitError::Truncated)?;
    let ttl = decremented(header[8])?;
    // TTL shares its 16-bit word with Protocol.
    let old_word = u16::from_be_bytes([header[8], header[9]]);
    header[8] = ttl;
    let new_word = u16::from_be_bytes([header[8], header[9]]);
    let old_checksum = u16::from_be_bytes([header[10], header[11]]);
    let [c0, c1] = checksum::update(old_checksum, old_word, new_word).to_be_bytes();
    header[10] = c0;
    header[11] = c1;
    Ok(ttl)
}

fn decrement_ipv6_hop_limit(packet: &mut [u8]) -> Result<u8, HopLimitError> {
    let header = packet
        .first_chunk_mut::<IPV6_HEADER_LEN>()
        .ok_or(HopLimitError::Truncated)?;
    let hop_limit = decremented(header[7])?;
    header[7] = hop_limit;
    Ok(hop_limit)
}

/// The value after one hop, unless that would be 0.
fn decremented(hop_limit: u8) -> Result<u8, HopLimitError> {
    match hop_limit.checked_sub(1) {
        Some(0) | None => Err(HopLimitError::Expired),
        Some(next) => Ok(next),
    }
}

//! IP headers for the packets the builders write.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::packet::{IPV4_HEADER_LEN, IPV6_HEADER_LEN};
use super::{DEFAULT_HOP_LIMIT, checksum};

/// An IPv4 header without options, with its checksum: DSCP/ECN 0, Don't Fragment set,
/// Identification 0, TTL [`DEFAULT_HOP_LIMIT`].
//# RFC 6864 §4.1: "In atomic datagrams, the IPv4 ID field has no meaning; thus, it can be set
//# to an arbitrary value"
pub(super) fn ipv4_header(
    total_len: u16,
    protocol: u8,
    source: Ipv4Addr,
    destination: Ipv4Addr,
) -> [u8; IPV4_HEADER_LEN] {
    let [len_hi, len_lo] = total_len.to_be_bytes();
    let [s0, s1, s2, s3] = source.octets();
    let [d0, d1, d2, d3] = destination.octets();
    #[rustfmt::skip]
    let mut header = [
        0x45, 0x00, len_hi, len_lo,             // version 4, IHL 5; DSCP/ECN; Total Length
        0x00, 0x00, 0x40, 0x00,                 // Identification; flags DF, offset 0
        DEFAULT_HOP_LIMIT, protocol, 0x00, 0x00, // TTL; Protocol; checksum, filled below
        s0, s1, s2, s3,
        d0, d1, d2, d3,
    ];
    let [c0, c1] = checksum::field(&checksum::sum(&header));
    header[10] = c0;
    header[11] = c1;
    header
}

/// An IPv6 header: traffic class and flow label 0, Hop Limit [`DEFAULT_HOP_LIMIT`].
pub(super) fn ipv6_header(
    payload_len: u16,
    next_header: u8,
    source: Ipv6Addr,
    destination: Ipv6Addr,
) -> [u8; IPV6_HEADER_LEN] {
    let mut header = [0; IPV6_HEADER_LEN];
    header[0] = 0x60;
    header[4..6].copy_from_slice(&payload_len.to_be_bytes());
    header[6] = next_header;
    header[7] = DEFAULT_HOP_LIMIT;
    header[8..24].copy_from_slice(&source.octets());
    header[24..40].copy_from_slice(&destination.octets());
    header
}

//! Hand-made IP packets shared by the `ip_*` tests, each byte group commented.
//!
//! Checksums were computed with an independent script and are re-checked here against
//! [`internet_checksum`], a naive RFC 1071 implementation, and against etherparse.
// Each test crate uses its own subset of these fixtures.
#![allow(dead_code)]

use std::vec::Vec;

/// IPv4 + UDP, 192.0.2.1:5353 → 198.51.100.7:53, payload "veil". Exactly what
/// `encode_udp` writes for these endpoints.
#[rustfmt::skip]
pub(crate) const IPV4_UDP: [u8; 32] = [
    0x45, 0x00, 0x00, 0x20, // version 4, IHL 5; DSCP/ECN 0; Total Length 32
    0x00, 0x00, 0x40, 0x00, // Identification 0; flags DF, Fragment Offset 0
    0x40, 0x11, 0x4e, 0x91, // TTL 64; Protocol 17 (UDP); header checksum
    0xc0, 0x00, 0x02, 0x01, // source 192.0.2.1
    0xc6, 0x33, 0x64, 0x07, // destination 198.51.100.7
    0x14, 0xe9, 0x00, 0x35, // UDP source port 5353; destination port 53
    0x00, 0x0c, 0x1e, 0xaa, // UDP Length 12; UDP checksum
    b'v', b'e', b'i', b'l', // payload
];

/// The UDP datagram 2001:db8::1:40000 → 2001:db8::2:443, payload "quic", valid for the
/// IPv6 fixtures' addresses.
#[rustfmt::skip]
pub(crate) const UDP_FOR_IPV6: [u8; 12] = [
    0x9c, 0x40, 0x01, 0xbb, // source port 40000; destination port 443
    0x00, 0x0c, 0x2b, 0x8d, // Length 12; checksum
    b'q', b'u', b'i', b'c', // payload
];

/// An IPv6 header from 2001:db8::1 to 2001:db8::2, hop limit 64, with the given Payload
/// Length and Next Header.
pub(crate) fn ipv6_header(payload_len: u16, next_header: u8) -> [u8; 40] {
    let mut header = [0; 40];
    header[0] = 0x60; // version 6, traffic class and flow label 0
    header[4..6].copy_from_slice(&payload_len.to_be_bytes());
    header[6] = next_header;
    header[7] = 64; // Hop Limit
    header[8..24].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    header[24..40].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    header
}

/// An IPv6 packet: the header above, then `rest` as its payload.
pub(crate) fn ipv6_packet(next_header: u8, rest: &[&[u8]]) -> Vec<u8> {
    let payload: Vec<u8> = rest.concat();
    let len = u16::try_from(payload.len()).expect("fixture fits");
    [&ipv6_header(len, next_header)[..], &payload].concat()
}

/// Hop-by-Hop Options (next: Destination Options), one PadN option filling 8 bytes.
#[rustfmt::skip]
pub(crate) const HOP_BY_HOP_TO_DEST: [u8; 8] = [
    60, 0,                  // Next Header 60 (Destination Options); Hdr Ext Len 0 (8 bytes)
    0x01, 0x04, 0, 0, 0, 0, // PadN, 4 bytes of padding
];

/// Destination Options (next: Routing), PadN.
#[rustfmt::skip]
pub(crate) const DEST_TO_ROUTING: [u8; 8] = [
    43, 0,                  // Next Header 43 (Routing); Hdr Ext Len 0
    0x01, 0x04, 0, 0, 0, 0, // PadN
];

/// Routing header (next: UDP), experimental type 253, no segments left.
#[rustfmt::skip]
pub(crate) const ROUTING_TO_UDP: [u8; 8] = [
    17, 0,                  // Next Header 17 (UDP); Hdr Ext Len 0
    253, 0,                 // Routing Type 253 (RFC 3692 experiment); Segments Left 0
    0, 0, 0, 0,             // type-specific data
];

/// IPv6 + Hop-by-Hop + Destination Options + Routing + UDP.
pub(crate) fn ipv6_extensions_udp() -> Vec<u8> {
    ipv6_packet(
        0,
        &[
            &HOP_BY_HOP_TO_DEST,
            &DEST_TO_ROUTING,
            &ROUTING_TO_UDP,
            &UDP_FOR_IPV6,
        ],
    )
}

/// An IPv6 Fragment header.
pub(crate) fn fragment_header(next_header: u8, offset: u16, more: bool, id: u32) -> [u8; 8] {
    let [o0, o1] = (offset << 3 | u16::from(more)).to_be_bytes();
    let [i0, i1, i2, i3] = id.to_be_bytes();
    // Next Header; Reserved; Fragment Offset (13 bits), Res, M; Identification
    [next_header, 0, o0, o1, i0, i1, i2, i3]
}

/// A non-first IPv6 fragment (offset 1480 bytes, last) whose Fragment header names
/// Destination Options as the first header of the fragmentable part. Its data is not a
/// header: read as one, 0xff would claim 2048 bytes.
pub(crate) fn ipv6_later_fragment() -> Vec<u8> {
    ipv6_packet(
        44,
        &[&fragment_header(60, 185, false, 0xdead_beef), &[0xff; 8]],
    )
}

/// The first fragment of a UDP datagram whose UDP Length (2000) covers later fragments.
#[rustfmt::skip]
pub(crate) fn ipv6_first_fragment() -> Vec<u8> {
    let udp_start: [u8; 16] = [
        0x9c, 0x40, 0x01, 0xbb, // ports 40000 → 443
        0x07, 0xd0, 0x12, 0x34, // Length 2000 (the whole datagram); checksum
        0, 1, 2, 3, 4, 5, 6, 7, // the first data bytes
    ];
    ipv6_packet(44, &[&fragment_header(17, 0, true, 7), &udp_start])
}

/// An IPv6 atomic fragment: offset 0, no more fragments, so a whole UDP datagram.
pub(crate) fn ipv6_atomic_fragment() -> Vec<u8> {
    ipv6_packet(44, &[&fragment_header(17, 0, false, 9), &UDP_FOR_IPV6])
}

/// IPv4 first fragment: More Fragments, offset 0, UDP Length 3000 covering the rest.
#[rustfmt::skip]
pub(crate) const IPV4_FIRST_FRAGMENT: [u8; 36] = [
    0x45, 0x00, 0x00, 0x24, // version 4, IHL 5; Total Length 36
    0xbe, 0xef, 0x20, 0x00, // Identification 0xbeef; flags MF, offset 0
    0x40, 0x11, 0xaf, 0x9d, // TTL 64; UDP; header checksum
    0xc0, 0x00, 0x02, 0x01, // 192.0.2.1
    0xc6, 0x33, 0x64, 0x07, // 198.51.100.7
    0x14, 0xe9, 0x00, 0x35, // UDP ports 5353 → 53
    0x0b, 0xb8, 0x11, 0x11, // UDP Length 3000; checksum (over the whole datagram)
    b'A', b'B', b'C', b'D', b'E', b'F', b'G', b'H',
];

/// IPv4 later fragment: offset 185 (1480 bytes), last; its data is not a UDP header.
#[rustfmt::skip]
pub(crate) const IPV4_LATER_FRAGMENT: [u8; 28] = [
    0x45, 0x00, 0x00, 0x1c, // version 4, IHL 5; Total Length 28
    0xbe, 0xef, 0x00, 0xb9, // Identification 0xbeef; no flags, offset 185
    0x40, 0x11, 0xce, 0xec, // TTL 64; UDP; header checksum
    0xc0, 0x00, 0x02, 0x01, // 192.0.2.1
    0xc6, 0x33, 0x64, 0x07, // 198.51.100.7
    b'I', b'J', b'K', b'L', b'M', b'N', b'O', b'P',
];

/// IPv4 + TCP SYN, 10.0.0.1:51000 → 10.0.0.2:80, with an MSS option.
#[rustfmt::skip]
pub(crate) const IPV4_TCP_SYN: [u8; 44] = [
    0x45, 0x00, 0x00, 0x2c, // version 4, IHL 5; Total Length 44
    0x00, 0x00, 0x40, 0x00, // Identification 0; DF
    0x40, 0x06, 0x26, 0xca, // TTL 64; Protocol 6 (TCP); header checksum
    0x0a, 0x00, 0x00, 0x01, // 10.0.0.1
    0x0a, 0x00, 0x00, 0x02, // 10.0.0.2
    0xc7, 0x38, 0x00, 0x50, // TCP ports 51000 → 80
    0x01, 0x02, 0x03, 0x04, // Sequence Number
    0x00, 0x00, 0x00, 0x00, // Acknowledgment Number
    0x60, 0x02, 0xfa, 0xf0, // Data Offset 6 (24 bytes); flags SYN; Window 64240
    0xbd, 0xa4, 0x00, 0x00, // checksum; Urgent Pointer
    0x02, 0x04, 0x05, 0xb4, // option MSS (kind 2, length 4) 1460
];

/// IPv4 + ICMP Echo Request, 192.0.2.1 → 198.51.100.7, id 0x1234, seq 1, "ping".
#[rustfmt::skip]
pub(crate) const IPV4_ICMP_ECHO: [u8; 32] = [
    0x45, 0x00, 0x00, 0x20, // version 4, IHL 5; Total Length 32
    0x00, 0x00, 0x40, 0x00, // Identification 0; DF
    0x40, 0x01, 0x4e, 0xa1, // TTL 64; Protocol 1 (ICMP); header checksum
    0xc0, 0x00, 0x02, 0x01, // 192.0.2.1
    0xc6, 0x33, 0x64, 0x07, // 198.51.100.7
    0x08, 0x00, 0x06, 0xfa, // Type 8 (Echo), Code 0; checksum
    0x12, 0x34, 0x00, 0x01, // Identifier; Sequence Number
    b'p', b'i', b'n', b'g',
];

/// ICMPv6 Echo Request from 2001:db8::1 to 2001:db8::2, id 0x1234, seq 1, "ping".
#[rustfmt::skip]
pub(crate) const ICMPV6_ECHO: [u8; 12] = [
    0x80, 0x00, 0x33, 0x3e, // Type 128 (Echo Request), Code 0; checksum
    0x12, 0x34, 0x00, 0x01, // Identifier; Sequence Number
    b'p', b'i', b'n', b'g',
];

/// IPv4 + Authentication Header + the UDP datagram of [`IPV4_UDP`].
#[rustfmt::skip]
pub(crate) const IPV4_AH_UDP: [u8; 56] = [
    0x45, 0x00, 0x00, 0x38, // version 4, IHL 5; Total Length 56
    0x00, 0x00, 0x40, 0x00, // Identification 0; DF
    0x40, 0x33, 0x4e, 0x57, // TTL 64; Protocol 51 (AH); header checksum
    0xc0, 0x00, 0x02, 0x01, // 192.0.2.1
    0xc6, 0x33, 0x64, 0x07, // 198.51.100.7
    0x11, 0x04, 0x00, 0x00, // AH: Next Header 17; Payload Len 4 ((4+2)*4 = 24 bytes); Reserved
    0x00, 0x00, 0x01, 0x00, // SPI
    0x00, 0x00, 0x00, 0x07, // Sequence Number
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, // ICV
    0x14, 0xe9, 0x00, 0x35, // UDP ports 5353 → 53
    0x00, 0x0c, 0x1e, 0xaa, // UDP Length 12; checksum
    b'v', b'e', b'i', b'l',
];

/// The RFC 1071 Internet checksum, computed the slow and obvious way.
pub(crate) fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded")
}

/// Rewrites the IPv4 header checksum of `packet` (header length from its IHL).
pub(crate) fn fix_ipv4_checksum(packet: &mut [u8]) {
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    packet[10] = 0;
    packet[11] = 0;
    let checksum = internet_checksum(&packet[..header_len]);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
}

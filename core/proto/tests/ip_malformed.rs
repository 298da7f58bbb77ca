//! Every malformation `IpPacket::new_checked` refuses, with its exact error.
#![allow(missing_docs, clippy::doc_markdown)]

mod ip_fixtures;

use ip_fixtures::*;
use veil_proto::ip::{IpPacket, MAX_EXTENSION_HEADERS, ParseError, Transport, protocol};

fn parse(bytes: &[u8]) -> Result<IpPacket<'_>, ParseError> {
    IpPacket::new_checked(bytes)
}

/// IPV4_UDP with `edit` applied and the header checksum fixed again.
fn ipv4_udp_with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = IPV4_UDP.to_vec();
    edit(&mut bytes);
    fix_ipv4_checksum(&mut bytes);
    bytes
}

#[test]
fn empty_buffer() {
    assert_eq!(
        parse(&[]).unwrap_err(),
        ParseError::Truncated {
            needed: 20,
            available: 0
        }
    );
}

#[test]
fn unsupported_versions() {
    for version in [0u8, 5, 7, 15] {
        assert_eq!(
            parse(&[version << 4; 40]).unwrap_err(),
            ParseError::UnsupportedVersion(version)
        );
    }
}

#[test]
fn ipv4_shorter_than_its_fixed_header() {
    assert_eq!(
        parse(&IPV4_UDP[..19]).unwrap_err(),
        ParseError::Truncated {
            needed: 20,
            available: 19
        }
    );
}

#[test]
fn ipv4_header_length_below_five_words() {
    for ihl in 0..5 {
        let mut bytes = IPV4_UDP;
        bytes[0] = 0x40 | ihl;
        assert_eq!(
            parse(&bytes).unwrap_err(),
            ParseError::Ipv4HeaderLength(ihl)
        );
    }
}

#[test]
fn ipv4_options_beyond_the_buffer() {
    // IHL 15 claims 60 header bytes; the buffer has 32.
    let mut bytes = IPV4_UDP;
    bytes[0] = 0x4f;
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::Truncated {
            needed: 60,
            available: 32
        }
    );
}

#[test]
fn ipv4_bad_header_checksum() {
    let mut bytes = IPV4_UDP;
    bytes[11] ^= 0x01;
    assert_eq!(parse(&bytes).unwrap_err(), ParseError::Ipv4HeaderChecksum);
    // Any changed header field is caught, the TTL as well.
    let mut bytes = IPV4_UDP;
    bytes[8] = 63;
    assert_eq!(parse(&bytes).unwrap_err(), ParseError::Ipv4HeaderChecksum);
}

#[test]
fn ipv4_total_length_smaller_than_the_header() {
    let bytes = ipv4_udp_with(|b| b[2..4].copy_from_slice(&19u16.to_be_bytes()));
    assert_eq!(parse(&bytes).unwrap_err(), ParseError::Ipv4TotalLength(19));
}

#[test]
fn ipv4_total_length_beyond_the_buffer() {
    let bytes = ipv4_udp_with(|b| b[2..4].copy_from_slice(&33u16.to_be_bytes()));
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::Truncated {
            needed: 33,
            available: 32
        }
    );
}

#[test]
fn ipv6_shorter_than_its_header() {
    let bytes = ipv6_extensions_udp();
    assert_eq!(
        parse(&bytes[..39]).unwrap_err(),
        ParseError::Truncated {
            needed: 40,
            available: 39
        }
    );
}

#[test]
fn ipv6_payload_length_beyond_the_buffer() {
    let bytes = ipv6_extensions_udp();
    let cut = &bytes[..bytes.len() - 1];
    assert_eq!(
        parse(cut).unwrap_err(),
        ParseError::Truncated {
            needed: 76,
            available: 75
        }
    );
}

#[test]
fn ipv6_payload_length_zero_is_not_a_jumbogram() {
    // Payload Length 0 with UDP next: the datagram has no room for its header.
    let bytes = [&ipv6_header(0, protocol::UDP)[..], &UDP_FOR_IPV6].concat();
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::HeaderTruncated {
            protocol: protocol::UDP
        }
    );
}

#[test]
fn hop_by_hop_after_another_extension_header() {
    // Destination Options, then Hop-by-Hop.
    let bytes = ipv6_packet(60, &[&[0, 0, 1, 4, 0, 0, 0, 0], &HOP_BY_HOP_TO_DEST]);
    assert_eq!(parse(&bytes).unwrap_err(), ParseError::HopByHopNotFirst);
}

#[test]
fn extension_header_overrunning_the_payload() {
    // A Destination Options header whose Hdr Ext Len 1 claims 16 bytes; 8 are there.
    let bytes = ipv6_packet(60, &[&[17, 1, 1, 4, 0, 0, 0, 0]]);
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::HeaderTruncated {
            protocol: protocol::DESTINATION_OPTIONS
        }
    );
    // A Routing header cut before its length byte.
    let bytes = ipv6_packet(43, &[&[17]]);
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::HeaderTruncated {
            protocol: protocol::ROUTING
        }
    );
    // A Fragment header of 7 bytes.
    let bytes = ipv6_packet(44, &[&[17, 0, 0, 0, 0, 0, 0]]);
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::HeaderTruncated {
            protocol: protocol::FRAGMENT
        }
    );
}

/// `count` Destination Options headers, then UDP.
fn destination_options_chain(count: usize) -> Vec<u8> {
    let mut headers = vec![[60, 0, 1, 4, 0, 0, 0, 0]; count];
    headers.last_mut().expect("count > 0")[0] = protocol::UDP;
    let parts: Vec<&[u8]> = headers
        .iter()
        .map(|h| &h[..])
        .chain([&UDP_FOR_IPV6[..]])
        .collect();
    ipv6_packet(60, &parts)
}

#[test]
fn extension_header_walk_is_bounded() {
    let at_limit = destination_options_chain(MAX_EXTENSION_HEADERS);
    let packet = parse(&at_limit).unwrap();
    assert!(matches!(packet.transport(), Transport::Udp(_)));
    assert_eq!(packet.header_len(), 40 + 8 * MAX_EXTENSION_HEADERS);

    let beyond = destination_options_chain(MAX_EXTENSION_HEADERS + 1);
    assert_eq!(
        parse(&beyond).unwrap_err(),
        ParseError::TooManyExtensionHeaders
    );
}

#[test]
fn two_fragment_headers() {
    let bytes = ipv6_packet(
        44,
        &[
            &fragment_header(44, 0, true, 1),
            &fragment_header(17, 0, true, 1),
            &UDP_FOR_IPV6,
        ],
    );
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::RepeatedFragmentHeader
    );
}

#[test]
fn authentication_header_with_zero_payload_length() {
    let bytes = ipv6_packet(51, &[&[17, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 7], &UDP_FOR_IPV6]);
    assert_eq!(parse(&bytes).unwrap_err(), ParseError::AuthHeaderLength);
}

#[test]
fn authentication_header_overrunning_the_payload() {
    // Payload Len 4 claims 24 bytes; the IPv4 payload has 20 in all.
    let mut bytes = IPV4_AH_UDP[..40].to_vec();
    bytes[2..4].copy_from_slice(&40u16.to_be_bytes());
    fix_ipv4_checksum(&mut bytes);
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::HeaderTruncated {
            protocol: protocol::AUTHENTICATION
        }
    );
}

#[test]
fn udp_header_cut_short() {
    let bytes = ipv4_udp_with(|b| {
        b.truncate(27);
        b[2..4].copy_from_slice(&27u16.to_be_bytes());
    });
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::HeaderTruncated {
            protocol: protocol::UDP
        }
    );
}

#[test]
fn udp_length_below_its_header() {
    let mut bytes = IPV4_UDP;
    bytes[25] = 7;
    assert_eq!(parse(&bytes).unwrap_err(), ParseError::UdpLength(7));
    bytes[25] = 0;
    assert_eq!(parse(&bytes).unwrap_err(), ParseError::UdpLength(0));
}

#[test]
fn udp_length_beyond_the_ip_payload() {
    let mut bytes = IPV4_UDP;
    bytes[25] = 13;
    assert_eq!(parse(&bytes).unwrap_err(), ParseError::UdpLength(13));
}

#[test]
fn tcp_data_offset_below_five_words() {
    let mut bytes = IPV4_TCP_SYN;
    bytes[32] = 0x40;
    assert_eq!(parse(&bytes).unwrap_err(), ParseError::TcpDataOffset(4));
}

#[test]
fn tcp_options_beyond_the_segment() {
    // Data Offset 7 claims 28 header bytes; the segment has 24.
    let mut bytes = IPV4_TCP_SYN;
    bytes[32] = 0x70;
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::HeaderTruncated {
            protocol: protocol::TCP
        }
    );
    // Fewer than 20 bytes of TCP.
    let short = ipv4_udp_with(|b| {
        b[9] = protocol::TCP;
    });
    assert_eq!(
        parse(&short).unwrap_err(),
        ParseError::HeaderTruncated {
            protocol: protocol::TCP
        }
    );
}

#[test]
fn icmp_header_cut_short() {
    let bytes = ipv4_udp_with(|b| {
        b.truncate(27);
        b[2..4].copy_from_slice(&27u16.to_be_bytes());
        b[9] = protocol::ICMP;
    });
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::HeaderTruncated {
            protocol: protocol::ICMP
        }
    );
    let bytes = ipv6_packet(protocol::ICMPV6, &[&ICMPV6_ECHO[..7]]);
    assert_eq!(
        parse(&bytes).unwrap_err(),
        ParseError::HeaderTruncated {
            protocol: protocol::ICMPV6
        }
    );
}

#[test]
fn errors_display_a_message() {
    assert_eq!(
        ParseError::Truncated {
            needed: 40,
            available: 3
        }
        .to_string(),
        "IP packet truncated: needs 40 bytes, buffer has 3"
    );
    assert_eq!(
        ParseError::UdpLength(7).to_string(),
        "UDP length 7 is below 8 or beyond the IP payload"
    );
}
